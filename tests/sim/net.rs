//! What travels between nodes: lease messages, store requests and store
//! replies, the faults the network may inflict on them, and the scripted
//! rules targeted scenarios use to steer particular messages.

use leasetso_core_variants::{LeaseMsg, StoreOp, StoreReply, StoreRequest};

/// What a store operation does, for scripted rules and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A fenced load.
    Load,
    /// A fenced save.
    Save,
    /// A registration, clear or read of the primary registration.
    Admin,
}

impl OpKind {
    /// The kind of `op`.
    pub fn of(op: &StoreOp) -> OpKind {
        match op {
            StoreOp::Load { .. } => OpKind::Load,
            StoreOp::Save { .. } => OpKind::Save,
            _ => OpKind::Admin,
        }
    }
}

/// The kind of a packet, for fault biases and scripted rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// P1 → A1.
    Prepare,
    /// A1 → P2.
    Promise,
    /// A1/A2 → proposer.
    Rejected,
    /// P3 → A2.
    Accept,
    /// A2 → P4.
    Accepted,
    /// P4 → learners.
    LearnChosen,
    /// P6 → A3.
    Release,
    /// A store operation on its way to a replica.
    StoreReq,
    /// A replica's answer on its way back.
    StoreReply,
}

impl Kind {
    /// How many kinds there are.
    pub const COUNT: usize = 9;
    /// Every kind, in index order.
    pub const ALL: [Kind; Kind::COUNT] = [
        Kind::Prepare,
        Kind::Promise,
        Kind::Rejected,
        Kind::Accept,
        Kind::Accepted,
        Kind::LearnChosen,
        Kind::Release,
        Kind::StoreReq,
        Kind::StoreReply,
    ];

    /// The index of the kind in per-kind tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Messages an acceptor handles (and a quarantined one ignores).
    pub fn to_acceptor(self) -> bool {
        matches!(self, Kind::Prepare | Kind::Accept | Kind::Release)
    }
}

/// The content of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A PaxosLease message.
    Lease(LeaseMsg),
    /// A store operation for the addressee's replica. `incarnation` is the
    /// sender's: an operation a node sends its own replica is a local disk
    /// write, which dies with the process that issued it.
    StoreReq {
        /// The operation and its id.
        request: StoreRequest,
        /// The sender's incarnation when it sent the request.
        incarnation: u32,
    },
    /// A replica's answer to request `id`.
    StoreReply {
        /// The request's id.
        id: u64,
        /// The answer.
        reply: StoreReply,
        /// The requester's incarnation when it sent the request (the
        /// simulator's bookkeeping: the core sees only `id` and `reply`).
        incarnation: u32,
        /// What the request was.
        op: OpKind,
    },
}

/// A message in flight between two nodes (possibly a node and itself, for
/// its own store replica).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The sender.
    pub from: u16,
    /// The addressee.
    pub to: u16,
    /// The content.
    pub payload: Payload,
    /// True time it was sent at.
    pub sent_at: u64,
}

impl Packet {
    /// What the store operation of a request or reply is (`None` for lease messages).
    pub fn op(&self) -> Option<OpKind> {
        match self.payload {
            Payload::Lease(_) => None,
            Payload::StoreReq { request, .. } => Some(OpKind::of(&request.op)),
            Payload::StoreReply { op, .. } => Some(op),
        }
    }

    /// The packet's kind.
    pub fn kind(&self) -> Kind {
        match self.payload {
            Payload::Lease(m) => match m {
                LeaseMsg::Prepare { .. } => Kind::Prepare,
                LeaseMsg::Promise { .. } => Kind::Promise,
                LeaseMsg::Rejected { .. } => Kind::Rejected,
                LeaseMsg::Accept { .. } => Kind::Accept,
                LeaseMsg::Accepted { .. } => Kind::Accepted,
                LeaseMsg::LearnChosen { .. } => Kind::LearnChosen,
                LeaseMsg::Release { .. } => Kind::Release,
            },
            Payload::StoreReq { .. } => Kind::StoreReq,
            Payload::StoreReply { .. } => Kind::StoreReply,
        }
    }

    /// A one-line description for traces.
    pub fn describe(&self) -> String {
        let body = match self.payload {
            Payload::Lease(m) => match m {
                LeaseMsg::Prepare { ballot } => format!("Prepare {ballot}"),
                LeaseMsg::Promise { ballot, lease } => match lease {
                    Some(l) => format!("Promise {ballot} lease {l}"),
                    None => format!("Promise {ballot} no lease"),
                },
                LeaseMsg::Rejected { refused, promised } => format!("Rejected {refused} promised {promised}"),
                LeaseMsg::Accept { ballot } => format!("Accept {ballot}"),
                LeaseMsg::Accepted { ballot } => format!("Accepted {ballot}"),
                LeaseMsg::LearnChosen { ballot, remaining_ms } => {
                    format!("LearnChosen {ballot} {remaining_ms}ms left")
                }
                LeaseMsg::Release { ballot } => format!("Release {ballot}"),
            },
            Payload::StoreReq { request, .. } => match request.op {
                StoreOp::Load { fence, .. } => format!("Load#{:x} fence {fence}", request.id),
                StoreOp::Save { window_end_ms, fence, .. } => {
                    format!("Save#{:x} window {window_end_ms} fence {fence}", request.id)
                }
                other => format!("{other:?}#{:x}", request.id),
            },
            Payload::StoreReply { id, reply, .. } => format!("Reply#{id:x} {reply:?}"),
        };
        format!("n{}→n{} {body}", self.from, self.to)
    }
}

/// Fault probabilities for one kind of packet, in parts per million.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindFaults {
    /// Lost.
    pub loss: u32,
    /// Delivered more than once (one or two extra copies, each with its own delay).
    pub dup: u32,
    /// Delayed far beyond the usual delay (up to several lease periods).
    pub long: u32,
}

/// The random network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetFaults {
    /// Shortest ordinary delay, ns.
    pub delay_min: u64,
    /// Longest ordinary delay, ns.
    pub delay_max: u64,
    /// Longest long delay, ns.
    pub long_max: u64,
    /// Longest delay of an operation on the node's own replica, ns.
    pub local_max: u64,
    /// Per-kind faults, indexed by [`Kind::index`].
    pub kinds: [KindFaults; Kind::COUNT],
}

impl NetFaults {
    /// A network with delays in `delay_min..=delay_max` and no faults.
    pub fn clean(delay_min: u64, delay_max: u64) -> Self {
        NetFaults {
            delay_min,
            delay_max,
            long_max: delay_max,
            local_max: delay_max.min(1_000_000),
            kinds: [KindFaults::default(); Kind::COUNT],
        }
    }
}

/// What a scripted rule does to the packets it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Lose it.
    Drop,
    /// Keep it aside until the script releases it.
    Hold,
    /// Deliver it this many times (each copy with its own random delay).
    Copies(u8),
}

/// A scripted rule: packets that match go through `action` instead of the
/// random network. The first matching rule wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Only packets from this node (any if `None`).
    pub from: Option<u16>,
    /// Only packets to this node (any if `None`).
    pub to: Option<u16>,
    /// Only packets of this kind (any if `None`).
    pub kind: Option<Kind>,
    /// Only store requests and replies of this operation (any packet if `None`).
    pub op: Option<OpKind>,
    /// What happens to them.
    pub action: Action,
}

impl Rule {
    /// Whether `p` matches.
    pub fn matches(&self, p: &Packet) -> bool {
        self.from.is_none_or(|f| f == p.from)
            && self.to.is_none_or(|t| t == p.to)
            && self.kind.is_none_or(|k| k == p.kind())
            && self.op.is_none_or(|o| p.op() == Some(o))
    }

    /// Every packet from `from` to `to`.
    pub fn link(from: u16, to: u16, action: Action) -> Rule {
        Rule { from: Some(from), to: Some(to), kind: None, op: None, action }
    }

    /// Packets of `kind` from `from` to `to`.
    pub fn of(kind: Kind, from: u16, to: u16, action: Action) -> Rule {
        Rule { from: Some(from), to: Some(to), kind: Some(kind), op: None, action }
    }

    /// Replica `from`'s replies to node `to`'s `op` requests.
    pub fn replies(op: OpKind, from: u16, to: u16, action: Action) -> Rule {
        Rule { from: Some(from), to: Some(to), kind: Some(Kind::StoreReply), op: Some(op), action }
    }
}
