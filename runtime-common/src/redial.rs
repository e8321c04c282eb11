//! The redial policy of an outgoing peer link, and what it logs.
//!
//! A link dials its peer, runs the handshake, writes until the connection
//! fails, and dials again, for as long as the server runs. Between two
//! failed dials it pauses: a jittered exponential backoff from
//! [`MIN_BACKOFF`] to [`MAX_BACKOFF`] while the peer cannot be reached, and
//! [`REFUSED_BACKOFF`] once the peer refused the handshake (a configuration
//! an operator must fix: no point in hammering it). A link that came up
//! starts the backoff over. Each distinct failure is logged once, not at
//! every redial, so a peer that is down for an hour leaves one line.
//!
//! Both runtimes' links hold a [`Redial`] and only do its waiting.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use leasetso_core::rng::Rng;
use leasetso_core::{HandshakeError, LinkError, NodeId};

use crate::directory::{MAX_BACKOFF, MIN_BACKOFF, REFUSED_BACKOFF};

/// Why a dial did not bring the link up.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The connection could not be made, or broke during the handshake.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer refused the handshake, or answered one this node refuses
    /// (boxed: it carries both handshakes, and the error travels in every
    /// dial's `Result`).
    #[error("{0}")]
    Refused(Box<HandshakeError>),
    /// The peer broke the link protocol during the handshake.
    #[error("{0}")]
    Broken(Box<LinkError>),
}

impl From<LinkError> for DialError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Handshake(h) => DialError::Refused(Box::new(h)),
            other => DialError::Broken(Box::new(other)),
        }
    }
}

/// One outgoing link's redial state.
#[derive(Debug)]
pub struct Redial {
    to: NodeId,
    addr: SocketAddr,
    backoff: Duration,
    /// The last failure logged, so the next identical one is not.
    last_error: String,
    rng: Rng,
}

impl Redial {
    /// The policy of the link to `to` at `addr`. Each link of a node, and
    /// each node of a cluster (`seed`), jitters its pauses differently.
    pub fn new(to: NodeId, addr: SocketAddr, seed: u64) -> Self {
        let rng = Rng::new(seed ^ (u64::from(to.0) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Redial { to, addr, backoff: MIN_BACKOFF, last_error: String::new(), rng }
    }

    /// The peer's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The link came up: the backoff starts over, and the next failure is
    /// logged whatever it is.
    pub fn up(&mut self) {
        self.backoff = MIN_BACKOFF;
        self.last_error.clear();
        crate::info_quiet!(crate::quiet::LINK_FLAPS, peer = self.to.0 + 1, addr = %self.addr, "peer link up");
    }

    /// The link that was up went down.
    pub fn down(&self, error: &dyn std::fmt::Display) {
        crate::info_quiet!(crate::quiet::LINK_FLAPS, peer = self.to.0 + 1, %error, "peer link down");
    }

    /// A dial failed: logs it if it differs from the last failure, and
    /// returns how long to wait before the next dial.
    pub fn failed(&mut self, error: &DialError) -> Duration {
        let refused = matches!(error, DialError::Refused(_));
        let text = error.to_string();
        if text != self.last_error {
            let (peer, addr) = (self.to.0 + 1, self.addr);
            if refused {
                crate::log_quiet_cause!(
                    tracing::Level::ERROR,
                    crate::quiet::PEER_REFUSED,
                    &text,
                    peer,
                    %addr,
                    "peer link refused: {text}"
                );
            } else {
                tracing::debug!(peer, %addr, error = %text, "cannot reach peer");
            }
            self.last_error = text;
        }
        let pause = if refused { REFUSED_BACKOFF } else { self.rng.jitter(self.backoff) };
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable() -> DialError {
        DialError::Io(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"))
    }

    #[test]
    fn the_backoff_doubles_to_its_cap_and_starts_over_once_up() {
        let mut r = Redial::new(NodeId(1), "127.0.0.1:1".parse().unwrap(), 7);
        let mut last = Duration::ZERO;
        for _ in 0..12 {
            let pause = r.failed(&unreachable());
            assert!(pause <= MAX_BACKOFF, "{pause:?}");
            last = pause;
        }
        assert!(last >= MAX_BACKOFF / 4, "the backoff grew: {last:?}");
        r.up();
        assert!(r.failed(&unreachable()) <= MIN_BACKOFF, "an up link starts over");
    }

    #[test]
    fn a_refused_handshake_waits_the_long_pause() {
        let mut r = Redial::new(NodeId(2), "127.0.0.1:1".parse().unwrap(), 7);
        let refused = DialError::from(LinkError::Handshake(HandshakeError::NotHandshake));
        assert!(matches!(refused, DialError::Refused(_)));
        assert_eq!(r.failed(&refused), REFUSED_BACKOFF);
    }
}
