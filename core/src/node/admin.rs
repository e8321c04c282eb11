//! The primary registration rounds of a node's mode: a primary registers
//! itself on a quorum before it campaigns; a deferring node that saw a
//! registration yields and reads it again until a quorum has none.

use crate::ballot::{Ballot, NodeId};
use crate::quorum::majority;
use crate::store::{StoreOk, StoreOp, StoreReply};
use crate::time::Instant;

use super::rounds::RoundKind;
use super::*;

impl Node {
    /// A reply to a registration or registration-read round.
    pub(super) fn admin_reply(&mut self, replica: NodeId, reply: StoreReply, now: Instant) {
        let Some(round) = self.admin.as_mut() else { return };
        match reply {
            Ok(StoreOk::Primary { registered }) => {
                if registered.is_some() {
                    self.primary_seen = registered;
                }
                match (round.kind, registered) {
                    (RoundKind::Register, _) | (RoundKind::ReadPrimary, None) => {
                        round.acks.insert(replica);
                    }
                    _ => {
                        round.registered.insert(replica);
                    }
                }
            }
            _ => {
                round.failures.insert(replica);
            }
        }
        let round = *round;
        let quorum = majority(self.cfg.nodes);
        let answered = round.acks.len() + round.registered.len() + round.failures.len();
        if round.acks.len() >= quorum {
            self.admin = None;
            match round.kind {
                RoundKind::Register => {
                    self.registered = true;
                    let tag = self.tag();
                    self.primary_seen = Some((self.cfg.id, tag));
                    self.outputs.push_back(Output::Event(Event::Registered { tag }));
                    self.proposer.schedule(Some(now));
                }
                _ => {
                    // A quorum has no registration: every later checked load
                    // or save meets one of these replicas, so campaigning is
                    // safe again (and a registration made later still stops us).
                    self.yielded = None;
                    self.primary_seen = None;
                    self.outputs.push_back(Output::Event(Event::Resumed));
                    self.proposer.schedule(Some(now));
                }
            }
        } else if answered >= self.cfg.nodes
            || self.cfg.nodes - round.failures.len() - round.registered.len() < quorum
        {
            self.admin = None;
            self.next_admin = now + self.cfg.primary_poll;
        }
    }

    /// This start's registration tag: a ballot of this node's, unique across
    /// its restarts.
    pub(super) fn tag(&self) -> Ballot {
        Ballot::new(0, self.restart, self.cfg.id)
    }

    /// A deferring node saw `PrimaryExists`: reset, release (P6) and stay out
    /// (Yielded) until a quorum reports no registration. A primary never
    /// checks, so never gets here.
    pub(super) fn yield_to(&mut self, primary: NodeId, now: Instant) {
        if self.cfg.mode != Mode::Deferring {
            return;
        }
        let first = self.yielded.is_none();
        self.yielded = Some(primary);
        self.abdicate(StepDown::PrimaryExists { id: primary }, now);
        if first {
            self.outputs.push_back(Output::Event(Event::Yielded { primary }));
            if self.admin.is_none() {
                self.next_admin = now + self.cfg.primary_poll;
            }
        }
    }

    /// A registration (primary) or registration read (yielded) on every replica.
    pub(super) fn start_admin(&mut self, kind: RoundKind, now: Instant) {
        let round = self.new_round(kind, now);
        let id = round.id;
        self.admin = Some(round);
        let op = match kind {
            RoundKind::Register => StoreOp::RegisterPrimary { id: self.cfg.id, tag: self.tag() },
            _ => StoreOp::ReadPrimary,
        };
        self.fan_out(id, op);
    }

    /// The primary this deferring node yielded to, while it stays out.
    pub fn yielded_to(&self) -> Option<NodeId> {
        self.yielded
    }
}
