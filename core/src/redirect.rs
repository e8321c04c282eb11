//! Where a client goes after a failure, and how long it waits first.
//!
//! Only a cluster's leader serves; the other nodes answer `NotLeader` with a
//! hint naming the leader (with its client address when they know it). A
//! client is given one or more *seed* addresses (typically every node's
//! client address) and finds the leader from them. The rules, which
//! [`plan`] enforces:
//!
//! * **R1** a hint naming another address is followed at once: landing on a
//!   follower costs one extra round trip, not a pause;
//! * **R2** a hinted address that refuses the connection or does not answer
//!   is stale (the leader it names is dead, and the followers keep naming it
//!   until its lease runs out), so the client goes back to the seeds, from
//!   the one after the seed it tried last, at once;
//! * **R3** `NotLeader` with no hint (nobody serves yet, or the node does not
//!   know who does) moves to the next seed after a pause. A hint naming the
//!   node itself means it holds the lease and is loading the window: it is
//!   asked again after a pause. Hints with an unspecified address
//!   (`0.0.0.0`, port 0) are ignored: they name no reachable node;
//! * **R4** a connection lost to a server that was there a moment ago (it
//!   closed an idle connection, or restarted) is reopened once at once; a
//!   second loss at the same address is treated as a refusal, so that a node
//!   accepting and closing every connection cannot hold the client;
//! * **R5** at most [`AT_ONCE`] moves in a row are made without a pause. Two
//!   nodes naming each other, or seeds repeating the hint of a dead leader,
//!   would otherwise keep the client in a tight loop; after two, the next
//!   attempt waits, and every pause breaks the row.
//!
//! Pauses grow exponentially from the first pause to the longest and are
//! jittered (uniform in `[pause/2, pause]`, from the seeded [`Rng`]) so that
//! the clients of a dead leader do not reach the new one in lockstep
//! ([`Redirect::after_failure`]).

use core::net::SocketAddr;
use core::time::Duration;

use crate::rng::Rng;
use crate::wire::{ErrorCode, LeaderHint};

/// How many moves may follow one another without a pause (R5): enough to
/// follow a hint and to fall back from a stale one to a seed, not enough to
/// spin between two nodes naming each other.
pub const AT_ONCE: u32 = 2;

/// The least that pauses grow by, so that a zero first pause still backs off.
const MIN_STEP: Duration = Duration::from_millis(1);

/// A retryable failure, as the redirect rules tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The server answered a retryable error code (`NotLeader`,
    /// `LogicalExhausted`, `Internal`), with its leader hint.
    Server {
        /// The code.
        code: ErrorCode,
        /// Who serves, as far as the server knows.
        leader: LeaderHint,
    },
    /// An open connection failed: closed by the server, or an I/O error.
    Lost,
    /// No connection could be made, or the server did not answer in time.
    Unreachable,
}

/// Where the next attempt goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    /// The same address again.
    Stay,
    /// The hinted leader's address.
    Hint(SocketAddr),
    /// The seed after the one tried last.
    NextSeed,
}

/// What to do after a retryable failure: where to go, and whether it may be
/// done at once (still subject to [`AT_ONCE`]) or only after a pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Where the next attempt goes.
    pub to: Move,
    /// Whether it may start without a pause.
    pub at_once: bool,
}

/// The redirect decision (rules R1-R4 of the module documentation) for a
/// retryable `failure` at `addr`, which came from a hint if `hinted`;
/// `lost_here` says whether a connection to `addr` was already lost since
/// the last move or success.
pub fn plan(failure: Failure, addr: SocketAddr, hinted: bool, lost_here: bool) -> Step {
    let step = |to, at_once| Step { to, at_once };
    match failure {
        Failure::Server { code: ErrorCode::NotLeader, leader } => {
            match leader.addr.filter(|a| !a.ip().is_unspecified() && a.port() != 0) {
                // R1: redirected, go there at once.
                Some(to) if to != addr => step(Move::Hint(to), true),
                // R3: it names itself: it holds the lease and is loading the
                // window; it serves shortly.
                Some(_) => step(Move::Stay, false),
                // R3: nobody serves yet, or this node does not know who does.
                None => step(Move::NextSeed, false),
            }
        }
        // The window is being extended, here.
        Failure::Server { code: ErrorCode::LogicalExhausted, .. } => step(Move::Stay, false),
        // `Internal`: this node is failing; another may take over from it.
        Failure::Server { .. } => step(Move::NextSeed, false),
        // R4: reopen once at once.
        Failure::Lost if !lost_here => step(Move::Stay, true),
        // R2: refused, timed out, or lost again. A hinted leader that does
        // not answer is stale: back to the seeds at once. A seed that does
        // not answer: the next one, after a pause.
        Failure::Lost | Failure::Unreachable => step(Move::NextSeed, hinted),
    }
}

/// What [`Redirect::after_failure`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The address moved to, if the next attempt goes elsewhere: a
    /// connection to the old one is to be dropped.
    pub moved_to: Option<SocketAddr>,
    /// How long to wait before the next attempt (zero: at once).
    pub pause: Duration,
}

/// The seeds, the address talked to now, and the retry state since the
/// last success: the next pause, the moves made in a row without one (R5),
/// and whether a connection was lost at the current address (R4).
#[derive(Clone, Debug)]
pub struct Redirect {
    /// The addresses the client was given; never empty ([`Redirect::new`]
    /// refuses an empty list).
    seeds: Vec<SocketAddr>,
    /// The seed tried last: falling back starts after it.
    seed: usize,
    /// The server talked to now.
    addr: SocketAddr,
    /// Whether `addr` came from a leader hint rather than from the seeds.
    hinted: bool,
    /// The first pause, where `pause` starts again after a success.
    first: Duration,
    /// The longest next pause (the pause is drawn from its upper half).
    pause: Duration,
    /// The longest pause.
    max: Duration,
    /// Moves made at once since the last pause.
    at_once: u32,
    /// Whether a connection to `addr` was lost since the last move or reset.
    lost_here: bool,
    rng: Rng,
}

impl Redirect {
    /// Starts at the first seed. `None` for an empty list: a client with no
    /// address has nowhere to go. Allocates the seed list once.
    pub fn new(seeds: &[SocketAddr], first_pause: Duration, max_pause: Duration, rng: Rng) -> Option<Self> {
        let &addr = seeds.first()?;
        let first = first_pause.min(max_pause);
        Some(Redirect {
            seeds: seeds.to_vec(),
            seed: 0,
            addr,
            hinted: false,
            first,
            pause: first,
            max: max_pause,
            at_once: 0,
            lost_here: false,
            rng,
        })
    }

    /// The server talked to now.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the current address came from a leader hint.
    pub fn hinted(&self) -> bool {
        self.hinted
    }

    /// The seeds, in the order given.
    pub fn seeds(&self) -> &[SocketAddr] {
        &self.seeds
    }

    /// Moves to the `i`-th seed, counting round.
    pub fn go_seed(&mut self, i: usize) {
        // `seeds` is never empty (`new`), so the modulo is defined.
        self.seed = i % self.seeds.len();
        self.addr = self.seeds[self.seed];
        self.hinted = false;
        self.lost_here = false;
    }

    /// Forgets the retry state, as after a success: the next pause is the
    /// first one again and no move or loss is counted.
    pub fn reset(&mut self) {
        self.pause = self.first;
        self.at_once = 0;
        self.lost_here = false;
    }

    /// Applies the rules to a retryable `failure`: moves (R1-R4) and draws
    /// the pause (R5, jittered, grown for the next one). `left` is the time
    /// until the earliest deadline of the callers still waiting: the pause
    /// is cut to it, so that the last attempt starts at the deadline rather
    /// than not at all.
    pub fn after_failure(&mut self, failure: Failure, left: Duration) -> Decision {
        let step = plan(failure, self.addr, self.hinted, self.lost_here);
        let before = self.addr;
        match step.to {
            Move::Stay => self.lost_here |= failure == Failure::Lost,
            Move::Hint(to) => {
                self.addr = to;
                self.hinted = true;
                self.lost_here = false;
            }
            Move::NextSeed => self.go_seed(self.seed + 1),
        }
        let pause = if step.at_once && self.at_once < AT_ONCE {
            self.at_once += 1;
            Duration::ZERO
        } else {
            self.at_once = 0;
            let pause = self.rng.jitter(self.pause).min(left);
            self.pause = self.pause.saturating_mul(2).max(MIN_STEP).min(self.max);
            pause
        };
        Decision { moved_to: (self.addr != before).then_some(self.addr), pause }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ballot::NodeId;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn plan_follows_the_redirect_rules() {
        let here = addr("127.0.0.1:1");
        let there = addr("127.0.0.1:2");
        let not_leader = |addr| Failure::Server {
            code: ErrorCode::NotLeader,
            leader: LeaderHint { node: Some(NodeId(1)), addr },
        };
        let code = |code| Failure::Server { code, leader: LeaderHint::default() };
        let step = |to, at_once| Step { to, at_once };

        assert_eq!(plan(not_leader(Some(there)), here, false, false), step(Move::Hint(there), true));
        assert_eq!(plan(not_leader(Some(here)), here, false, false), step(Move::Stay, false));
        assert_eq!(plan(not_leader(None), here, true, false), step(Move::NextSeed, false));
        let wildcard = addr("0.0.0.0:2");
        assert_eq!(plan(not_leader(Some(wildcard)), here, false, false), step(Move::NextSeed, false));
        let port_zero = addr("127.0.0.1:0");
        assert_eq!(plan(not_leader(Some(port_zero)), here, false, false), step(Move::NextSeed, false));
        assert_eq!(plan(code(ErrorCode::LogicalExhausted), here, false, false), step(Move::Stay, false));
        assert_eq!(plan(code(ErrorCode::Internal), here, false, false), step(Move::NextSeed, false));
        // A hint that does not answer is stale: back to the seeds at once.
        assert_eq!(plan(Failure::Unreachable, here, true, false), step(Move::NextSeed, true));
        assert_eq!(plan(Failure::Unreachable, here, false, false), step(Move::NextSeed, false));
        // A lost connection is reopened once at once, then treated as refused.
        assert_eq!(plan(Failure::Lost, here, false, false), step(Move::Stay, true));
        assert_eq!(plan(Failure::Lost, here, false, true), step(Move::NextSeed, false));
        assert_eq!(plan(Failure::Lost, here, true, true), step(Move::NextSeed, true));
    }

    fn redirect(seeds: &[SocketAddr]) -> Redirect {
        Redirect::new(seeds, Duration::from_millis(10), Duration::from_millis(250), Rng::new(7)).unwrap()
    }

    #[test]
    fn no_seeds_no_redirect() {
        assert!(Redirect::new(&[], Duration::ZERO, Duration::ZERO, Rng::new(0)).is_none());
    }

    #[test]
    fn at_most_two_moves_in_a_row_without_a_pause() {
        let (a, b) = (addr("127.0.0.1:1"), addr("127.0.0.1:2"));
        let mut r = redirect(&[a, b]);
        let hint = |to| Failure::Server {
            code: ErrorCode::NotLeader,
            leader: LeaderHint { node: Some(NodeId(0)), addr: Some(to) },
        };
        let left = Duration::from_secs(10);
        // Two nodes naming each other: two moves at once, then a pause.
        assert_eq!(r.after_failure(hint(b), left), Decision { moved_to: Some(b), pause: Duration::ZERO });
        assert_eq!(r.after_failure(hint(a), left), Decision { moved_to: Some(a), pause: Duration::ZERO });
        let third = r.after_failure(hint(b), left);
        assert_eq!(third.moved_to, Some(b));
        assert!(third.pause >= Duration::from_millis(5) && third.pause <= Duration::from_millis(10));
        // The pause broke the row: the next move is at once again.
        assert_eq!(r.after_failure(hint(a), left).pause, Duration::ZERO);
    }

    #[test]
    fn pauses_grow_to_the_longest_and_are_cut_to_the_deadline() {
        let a = addr("127.0.0.1:1");
        let mut r = redirect(&[a]);
        let busy = Failure::Server { code: ErrorCode::LogicalExhausted, leader: LeaderHint::default() };
        let left = Duration::from_secs(10);
        let mut longest = Duration::ZERO;
        for _ in 0..20 {
            let d = r.after_failure(busy, left);
            assert_eq!(d.moved_to, None, "LogicalExhausted stays");
            assert!(d.pause <= Duration::from_millis(250));
            longest = longest.max(d.pause);
        }
        assert!(longest >= Duration::from_millis(125), "the pauses never grew: {longest:?}");
        assert_eq!(r.after_failure(busy, Duration::from_millis(3)).pause, Duration::from_millis(3));
        // A success starts the pauses from the first one again.
        r.reset();
        assert!(r.after_failure(busy, left).pause <= Duration::from_millis(10));
    }

    #[test]
    fn stale_hints_fall_back_to_the_seed_after_the_last_tried() {
        let (a, b, c, leader) =
            (addr("127.0.0.1:1"), addr("127.0.0.1:2"), addr("127.0.0.1:3"), addr("10.0.0.9:7"));
        let mut r = redirect(&[a, b, c]);
        let hint = Failure::Server {
            code: ErrorCode::NotLeader,
            leader: LeaderHint { node: Some(NodeId(3)), addr: Some(leader) },
        };
        let left = Duration::from_secs(10);
        assert_eq!(r.after_failure(hint, left).moved_to, Some(leader));
        assert!(r.hinted());
        // The hinted leader refuses: back to the seeds, after `a`, at once.
        assert_eq!(
            r.after_failure(Failure::Unreachable, left),
            Decision { moved_to: Some(b), pause: Duration::ZERO }
        );
        assert!(!r.hinted());
        // A second loss at a seed moves on; the first reopens it.
        r.reset();
        assert_eq!(r.after_failure(Failure::Lost, left), Decision { moved_to: None, pause: Duration::ZERO });
        assert_eq!(r.after_failure(Failure::Lost, left).moved_to, Some(c));
        r.go_seed(5);
        assert_eq!(r.addr(), c);
    }

    #[test]
    fn jitter_stays_in_the_upper_half_and_varies() {
        let mut rng = Rng::new(0x5eed);
        let pause = Duration::from_millis(100);
        let mut draws = [Duration::ZERO; 1_000];
        for d in &mut draws {
            *d = rng.jitter(pause);
        }
        assert!(draws.iter().all(|d| *d >= pause / 2 && *d <= pause));
        assert!(draws.iter().any(|d| *d < pause * 3 / 4) && draws.iter().any(|d| *d > pause * 3 / 4));
        assert_eq!(rng.jitter(Duration::ZERO), Duration::ZERO);
        assert!(rng.jitter(Duration::MAX) >= Duration::from_nanos(u64::MAX / 2));
        // Two seeds draw differently.
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
