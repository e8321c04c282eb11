//! The store rounds of a leadership: the load that syncs the window and the
//! saves that extend it, each sent to every replica and done on a quorum of
//! distinct successes, fenced by the leadership's ballot.

use crate::ballot::NodeId;
use crate::quorum::{NodeSet, majority};
use crate::store::{StoreOk, StoreOp, StoreReject, StoreReply, StoreRequest};
use crate::time::Instant;

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum RoundKind {
    Load,
    Save {
        window_end_ms: u64,
    },
    /// A primary registers itself before it campaigns.
    Register,
    /// A yielded node reads the registration.
    ReadPrimary,
}

/// One store operation sent to every replica, done on a quorum of distinct
/// successes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Round {
    pub(super) id: u64,
    pub(super) kind: RoundKind,
    pub(super) deadline: Instant,
    pub(super) acks: NodeSet,
    pub(super) failures: NodeSet,
    /// Read rounds: replicas that report a registration.
    pub(super) registered: NodeSet,
    pub(super) max_window_ms: u64,
}

impl Node {
    /// A replica's reply to a store request this node sent.
    ///
    /// A reply to a round that is over is still read for what must not be
    /// missed (ARCHITECTURE.md, "Store contract"): `PrimaryExists` makes a
    /// deferring node yield even after its save reached a quorum without
    /// it, and `Fenced` by a ballot above this leadership's fence ends it.
    pub fn handle_store_reply(
        &mut self,
        replica: NodeId,
        request_id: u64,
        reply: StoreReply,
        now: Instant,
        wall_ms: u64,
    ) {
        self.now = self.now.max(now);
        if replica.0 >= self.cfg.nodes {
            return;
        }
        // B1: an answer no correct replica gives is that replica's failure,
        // and nothing of it is adopted (a fence caught up to, a window loaded).
        let reply =
            match crate::bounds::check_store_reply(&reply, self.held_counter(), self.cfg.nodes, wall_ms) {
                Ok(()) => reply,
                Err(what) => {
                    self.outputs.push_back(Output::Event(Event::Refused { from: replica, what }));
                    Err(StoreReject::Failed)
                }
            };
        if self.admin.is_some_and(|r| r.id == request_id) {
            self.admin_reply(replica, reply, now);
            self.deliver_local(now);
            return;
        }
        let Some(round) = self.round.as_mut().filter(|r| r.id == request_id) else {
            self.late_reply(request_id, reply, now);
            self.deliver_local(now);
            return;
        };
        match (round.kind, reply) {
            (RoundKind::Load, Ok(StoreOk::Loaded { window_end_ms })) => {
                if round.acks.insert(replica) {
                    round.max_window_ms = round.max_window_ms.max(window_end_ms);
                }
            }
            // A replica already at or above the window holds it: success.
            (RoundKind::Save { .. }, Ok(StoreOk::Saved) | Err(StoreReject::NotGreater { .. })) => {
                #[cfg(feature = "broken-variants")]
                if self.cfg.bugs.abdicate_on_not_greater
                    && matches!(reply, Err(StoreReject::NotGreater { .. }))
                {
                    self.abdicate(StepDown::StoreFailed, now);
                    self.deliver_local(now);
                    return;
                }
                round.acks.insert(replica);
            }
            (_, Err(StoreReject::Fenced { by })) => {
                // A newer leadership loaded: stop at once, and catch up.
                self.proposer.catch_up(by);
                self.abdicate(StepDown::Fenced { by }, now);
                self.deliver_local(now);
                return;
            }
            (_, Err(StoreReject::PrimaryExists { id })) => {
                self.yield_to(id, now);
                self.deliver_local(now);
                return;
            }
            _ => {
                round.failures.insert(replica);
            }
        }
        let quorum = majority(self.cfg.nodes);
        let round = *round;
        if round.acks.len() >= quorum {
            self.round = None;
            self.round_done(round, now, wall_ms);
        } else if self.cfg.nodes - round.failures.len() < quorum {
            self.abdicate(StepDown::StoreFailed, now);
        }
        self.deliver_local(now);
    }

    /// A reply to a round of this start that is over.
    pub(super) fn late_reply(&mut self, request_id: u64, reply: StoreReply, now: Instant) {
        if request_id >> 32 != self.restart {
            return; // An earlier incarnation's: nothing it says concerns this one.
        }
        match reply {
            Err(StoreReject::PrimaryExists { id }) => {
                #[cfg(feature = "broken-variants")]
                if self.cfg.bugs.ignore_late_primary {
                    return;
                }
                self.yield_to(id, now);
            }
            Err(StoreReject::Fenced { by }) if self.fence.is_some_and(|f| f < by) => {
                self.proposer.catch_up(by);
                self.abdicate(StepDown::Fenced { by }, now);
            }
            _ => {}
        }
    }

    pub(super) fn start_round(&mut self, kind: RoundKind, now: Instant) {
        let Some(fence) = self.fence else { return };
        let round = self.new_round(kind, now);
        let id = round.id;
        self.round = Some(round);
        // Deferring nodes check for a primary in the same transaction as the
        // write (S2); a primary writes regardless.
        let check_primary = self.cfg.mode == Mode::Deferring;
        let op = match kind {
            RoundKind::Load => StoreOp::Load { fence, check_primary },
            RoundKind::Save { window_end_ms } => StoreOp::Save { window_end_ms, fence, check_primary },
            RoundKind::Register | RoundKind::ReadPrimary => return,
        };
        self.fan_out(id, op);
    }

    /// A round with a fresh request id, done or failed by `now + store_timeout`.
    pub(super) fn new_round(&mut self, kind: RoundKind, now: Instant) -> Round {
        let id = self.next_request_id;
        self.next_request_id += 1;
        Round {
            id,
            kind,
            deadline: now + self.cfg.store_timeout,
            acks: NodeSet::EMPTY,
            failures: NodeSet::EMPTY,
            registered: NodeSet::EMPTY,
            max_window_ms: 0,
        }
    }

    pub(super) fn fan_out(&mut self, id: u64, op: StoreOp) {
        for replica in 0..self.cfg.nodes {
            self.outputs
                .push_back(Output::Store { replica: NodeId(replica), request: StoreRequest { id, op } });
        }
    }

    pub(super) fn round_done(&mut self, round: Round, now: Instant, wall_ms: u64) {
        match round.kind {
            RoundKind::Load => match self.oracle.loaded(round.max_window_ms, wall_ms) {
                Some(window_end_ms) => self.start_round(RoundKind::Save { window_end_ms }, now),
                // B3: the window starts too far ahead of the wall clock; the
                // periodic update asks for the save once it has caught up.
                None if self.oracle.is_waiting() => {
                    self.next_update = now + self.cfg.oracle.update_interval;
                }
                None => self.abdicate(StepDown::StoreFailed, now),
            },
            RoundKind::Register | RoundKind::ReadPrimary => {}
            RoundKind::Save { window_end_ms } => {
                let was_serving = self.oracle.is_serving();
                if !self.oracle.saved(window_end_ms) {
                    return;
                }
                let event = if was_serving {
                    Event::WindowExtended { window_end_ms }
                } else {
                    self.next_update = now + self.cfg.oracle.update_interval;
                    Event::Serving { window_end_ms }
                };
                self.outputs.push_back(Output::Event(event));
            }
        }
    }
}
