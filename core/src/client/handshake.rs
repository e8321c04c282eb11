//! The handshake of each connection: the Hello goes first, and its answer
//! must be a Welcome of this version and, unless the configured cluster id
//! is 0, of this cluster (C3); an Error refuses the Hello.

use crate::ballot::NodeId;
use crate::time::Instant;
use crate::wire::{Frame, VERSION};

use super::error::CallError;
use super::session::{ClientSession, Conn};

impl<E: Clone> ClientSession<E> {
    /// Encodes the Hello at the start of `buf` and marks it sent: its size,
    /// or `None` if it does not fit (nothing is sent then).
    pub(super) fn put_hello(
        &mut self,
        buf: &mut [u8],
        welcomed: Option<NodeId>,
        now: Instant,
    ) -> Option<usize> {
        let hello = Frame::Hello { version: VERSION, cluster_id: self.config.cluster_id };
        let n = hello.encode(&mut &mut buf[..]).ok()?;
        self.conn = Conn::Open { hello_sent: true, welcomed, hello_at: now };
        Some(n)
    }

    /// The first frame after the Hello: a Welcome that passes C3 readies the
    /// connection; anything else closes it.
    pub(super) fn on_handshake_answer(&mut self, frame: Frame, now: Instant) {
        let Conn::Open { hello_sent, hello_at, .. } = self.conn else {
            return;
        };
        let addr = self.addr();
        match frame {
            // C3.
            Frame::Welcome { version, cluster_id, node }
                if version == VERSION
                    && (self.config.cluster_id == 0 || cluster_id == self.config.cluster_id) =>
            {
                self.conn = Conn::Open { hello_sent, welcomed: Some(node), hello_at };
                self.eager = false;
            }
            Frame::Welcome { .. } => self.fail_connection(
                CallError::Unexpected { addr, what: "a Welcome of another version or cluster" },
                now,
            ),
            // A refused Hello: the requests behind it had no effect.
            Frame::Error { code, leader, .. } => {
                self.fail_connection(CallError::Server { addr, code, leader }, now)
            }
            _ => self.fail_connection(
                CallError::Unexpected { addr, what: "the handshake was not answered with Welcome" },
                now,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::client::fixtures::*;

    #[test]
    fn handshake_checks() {
        // Another cluster's Welcome: the callers behind the Hello fail.
        let mut s = session(ClientConfig { cluster_id: 3, ..config(1) }, &[A]);
        s.push(1, ms(0));
        let out = connect(&mut s, A, ms(0));
        assert_eq!(out[0], Frame::Hello { version: VERSION, cluster_id: 3 });
        input(&mut s, &[welcome()], ms(1));
        assert_eq!(s.poll_action(), Some(Action::Close));
        let got = done(&mut s);
        assert!(matches!(got[..], [(0, Err(CallError::Unexpected { .. }))]), "{got:?}");
        // A refused Hello.
        let mut s = session(config(1), &[A]);
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        let refusal = Frame::Error { id: 0, code: ErrorCode::ClusterMismatch, leader: LeaderHint::default() };
        input(&mut s, &[refusal], ms(1));
        let got = done(&mut s);
        assert!(matches!(got[..], [(0, Err(CallError::Server { code: ErrorCode::ClusterMismatch, .. }))]));
        // An eager open reports its outcome without callers.
        let mut s = session(config(1), &[A, B]);
        s.open(1);
        assert!(s.opening());
        assert_eq!(connect(&mut s, B, ms(0)), [Frame::Hello { version: VERSION, cluster_id: 0 }]);
        input(&mut s, &[welcome()], ms(1));
        assert!(!s.opening());
        assert_eq!(s.state(), ConnState::Ready { addr: addr(B), node: NodeId(0) });
        assert_eq!(s.poll_action(), None);
    }
}
