//! The timestamp window, after PD's `pkg/tso/tso.go`.
//!
//! The oracle hands out hybrid timestamps `(physical_ms, logical)` from memory
//! and persists only the upper bound of what it may hand out, the *saved
//! window*, ahead of time. Three rules protect "never a timestamp twice, never
//! one backwards", across restarts and failovers:
//!
//! * **W1 (sync)**: after a fresh acquisition, serve nothing until the highest
//!   window any earlier leader saved has been loaded from a quorum and a new
//!   window above it has been saved; then start at `max(wall, last + 1 ms)`.
//! * **W2 (window)**: never hand out a timestamp whose physical part is at or
//!   beyond the saved window. Every earlier leader's timestamps are therefore
//!   below the window it saved, which the next leader loads (W1).
//! * **W3 (monotonic)**: physical only moves forward, whatever the wall clock
//!   does; a wall clock that steps back freezes physical until it catches up.
//! * **B3 (ahead)**: no window is saved more than `max_ahead_ms` beyond the
//!   leader's wall clock as read when it decides the save, so physical,
//!   always below the window (W2), never runs that far ahead of the highest
//!   wall clock reading of the leadership. A save normally reaches
//!   `next + save_interval`; near the bound it is cut to `wall + max_ahead`,
//!   and once no millisecond is left a request that needs a new one is
//!   `LogicalExhausted` (W2 says so already: the hot path has no extra
//!   check). A leadership whose start `max(wall, last + 1)` leaves no room
//!   below the bound waits for the wall clock before it saves and serves.
//!   PD's `tso.go` has no such bound: there, demand above 2^18 timestamps per
//!   millisecond moves physical ahead without limit, and so does a quick
//!   succession of leaderships (each starts above its predecessor's window
//!   and saves a save interval further), while databases read physical as
//!   time (GC safe points, stale reads). Every window a correct leader saves
//!   is at most `wall + max_ahead_ms`: the premise of the replicas' window
//!   bound (B2, [`crate::bounds`]).
//!
//! The oracle performs no I/O: it asks its node to save a window end and is told
//! when the save has succeeded ([`Oracle::saved`]) or failed ([`Oracle::reset`]).

use core::time::Duration;

use crate::bounds::MAX_AHEAD_LIMIT_MS;
use crate::timestamp::{MAX_LOGICAL, MAX_PHYSICAL_MS, Timestamp};

/// The oracle's tunables, PD's constants as defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OracleConfig {
    /// How often physical follows the wall clock (PD: 50 ms).
    pub update_interval: Duration,
    /// How far ahead of physical a window is saved (PD: 3 s).
    pub save_interval_ms: u64,
    /// Margin kept between physical and the saved window (PD: 1 ms).
    pub guard_ms: u64,
    /// Timestamps per millisecond, at most 2^18 (PD's layout). Lower values
    /// exist for tests that want to exhaust the logical clock quickly.
    pub max_logical: u32,
    /// A wall clock this far ahead of physical is reported as jet lag (PD: 150 ms).
    pub jet_lag_warning_ms: u64,
    /// B3: no window reaches further than this ahead of the wall clock, so
    /// physical stays below it (not in PD). The default, 5 s, is the default
    /// save interval plus 2 s: a leadership that follows a normal one starts
    /// one save interval ahead (above the window its predecessor saved), so
    /// it serves at once unless the two leaders' wall clocks differ by about
    /// 2 s.
    pub max_ahead_ms: u64,
}

/// The default of [`OracleConfig::max_ahead_ms`] for a save interval:
/// `save_interval_ms + 2,000` (5 s with PD's 3 s), capped at the most a
/// node may be configured with.
pub const fn default_max_ahead_ms(save_interval_ms: u64) -> u64 {
    let ms = save_interval_ms.saturating_add(2_000);
    if ms < MAX_AHEAD_LIMIT_MS { ms } else { MAX_AHEAD_LIMIT_MS }
}

impl Default for OracleConfig {
    fn default() -> Self {
        OracleConfig {
            update_interval: Duration::from_millis(50),
            save_interval_ms: 3_000,
            guard_ms: 1,
            max_logical: MAX_LOGICAL,
            jet_lag_warning_ms: 150,
            max_ahead_ms: default_max_ahead_ms(3_000),
        }
    }
}

/// Why an oracle configuration cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OracleConfigError {
    /// `max_logical` must be in `2..=2^18`.
    #[error("max_logical must be between 2 and {MAX_LOGICAL}, got {0}")]
    MaxLogical(u32),
    /// The save interval must leave room above the guard for at least one millisecond.
    #[error("save interval {save_interval_ms} ms must exceed the guard {guard_ms} ms by at least 2 ms")]
    SaveInterval {
        /// The configured save interval.
        save_interval_ms: u64,
        /// The configured guard.
        guard_ms: u64,
    },
    /// The update interval must be positive and shorter than the save interval.
    #[error("update interval must be positive and shorter than the save interval")]
    UpdateInterval,
    /// B3: the ahead bound must exceed the save interval by more than the
    /// guard (a new leadership starts up to one save interval ahead of the
    /// wall clock and must still save above its start), and stay within the
    /// most a replica accepts (B2).
    #[error(
        "max ahead {max_ahead_ms} ms must exceed the save interval {save_interval_ms} ms by more than the guard, \
         and be at most {MAX_AHEAD_LIMIT_MS} ms"
    )]
    MaxAhead {
        /// The configured bound.
        max_ahead_ms: u64,
        /// The configured save interval.
        save_interval_ms: u64,
    },
}

impl OracleConfig {
    /// Checks the configuration can serve at all.
    pub fn validate(&self) -> Result<(), OracleConfigError> {
        if !(2..=MAX_LOGICAL).contains(&self.max_logical) {
            return Err(OracleConfigError::MaxLogical(self.max_logical));
        }
        if self.save_interval_ms < self.guard_ms.saturating_add(2) {
            return Err(OracleConfigError::SaveInterval {
                save_interval_ms: self.save_interval_ms,
                guard_ms: self.guard_ms,
            });
        }
        let update_ms = self.update_interval.as_millis();
        if self.update_interval.is_zero() || update_ms >= u128::from(self.save_interval_ms) {
            return Err(OracleConfigError::UpdateInterval);
        }
        let least = self.save_interval_ms.saturating_add(self.guard_ms).saturating_add(2);
        if self.max_ahead_ms < least || self.max_ahead_ms > MAX_AHEAD_LIMIT_MS {
            return Err(OracleConfigError::MaxAhead {
                max_ahead_ms: self.max_ahead_ms,
                save_interval_ms: self.save_interval_ms,
            });
        }
        Ok(())
    }
}

/// Why a GetTS request got no timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GetTsError {
    /// A request for zero timestamps.
    #[error("count must be at least 1")]
    ZeroCount,
    /// A request that can never fit one millisecond.
    #[error("count {count} can never be served: at most {max} timestamps per request")]
    CountTooLarge {
        /// The requested count.
        count: u32,
        /// The largest count a request may ask for.
        max: u32,
    },
    /// This node does not serve now; `leader` is a hint of who does, if known.
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader {
        /// The node believed to hold the lease, for redirecting the client.
        leader: Option<crate::NodeId>,
    },
    /// The logical clock is exhausted and the saved window does not allow the
    /// physical clock to advance yet; retry after the next save.
    #[error("logical clock exhausted until the window is extended; retry")]
    LogicalExhausted,
}

impl GetTsError {
    /// Whether the same request may succeed if sent again (here or to the hint).
    pub fn is_retryable(&self) -> bool {
        matches!(self, GetTsError::NotLeader { .. } | GetTsError::LogicalExhausted)
    }
}

/// What the oracle asks of its node after a periodic update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Update {
    /// Save this window end (durably, on a quorum) and report it with
    /// [`Oracle::saved`] before physical may move past the current window.
    pub save_window_ms: Option<u64>,
    /// The wall clock ran this far ahead of physical (over the warning threshold).
    pub jet_lag_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    /// No leadership, or reset after a failure: serves nothing.
    Idle,
    /// Waiting for the quorum load (W1).
    Loading,
    /// Loaded, but the window starts more than the ahead bound ahead of the
    /// wall clock (B3): waits for the wall clock before it saves.
    Waiting,
    /// Loaded; waiting for the first save (W1).
    Syncing,
    /// Handing out timestamps.
    Serving,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PendingSave {
    window_end_ms: u64,
    next_physical_ms: u64,
}

/// The timestamp window state machine. See the module docs for its rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Oracle {
    cfg: OracleConfig,
    phase: Phase,
    physical_ms: u64,
    logical: u32,
    saved_window_ms: u64,
    pending: Option<PendingSave>,
    /// Waiting: the loaded window end to start above.
    loaded_ms: u64,
    /// The wall clock as the last update or sync saw it (B3's share rule).
    wall_ms: u64,
}

/// B3's share rule: a request for more than this many timestamps takes a
/// fresh millisecond only while physical stays within the first half of the
/// ahead bound. A flood of large requests (each a whole millisecond) then
/// stops halfway and leaves the rest of the bound to small requests, which
/// are served throughout: one greedy client cannot starve the others.
pub const LARGE_COUNT: u32 = 1024;

impl Oracle {
    /// An idle oracle. Call [`OracleConfig::validate`] first; the node does.
    pub fn new(cfg: OracleConfig) -> Self {
        Oracle {
            cfg,
            phase: Phase::Idle,
            physical_ms: 0,
            logical: 0,
            saved_window_ms: 0,
            pending: None,
            loaded_ms: 0,
            wall_ms: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OracleConfig {
        &self.cfg
    }

    /// W1: a fresh acquisition starts here. Serving stops until the sync ends.
    pub fn begin_sync(&mut self) {
        self.reset();
        self.phase = Phase::Loading;
    }

    /// Whether the oracle waits for a quorum load.
    pub fn is_loading(&self) -> bool {
        self.phase == Phase::Loading
    }

    /// W1: the quorum load returned `last_window_ms` (the maximum over a
    /// quorum). Returns the window end to save before serving, or `None` if
    /// the oracle was not loading (a stale answer) or time ran out of bits.
    ///
    /// B3: if the leadership would start more than `max_ahead_ms` ahead of
    /// the wall clock, the oracle waits instead (see [`Oracle::is_waiting`]):
    /// a later [`Oracle::update`] asks for the save once the wall clock has
    /// caught up. So `Some(0)` is never returned: `None` with
    /// `is_waiting()` true means "wait".
    pub fn loaded(&mut self, last_window_ms: u64, wall_ms: u64) -> Option<u64> {
        if self.phase != Phase::Loading {
            return None;
        }
        self.phase = Phase::Waiting;
        self.loaded_ms = last_window_ms;
        self.sync_save(wall_ms)
    }

    /// Whether a loaded leadership waits for the wall clock to come within
    /// the ahead bound of its start (B3).
    pub fn is_waiting(&self) -> bool {
        self.phase == Phase::Waiting
    }

    /// The window end to save for a start at `next` (W1, W2): a save
    /// interval above it, cut to the ahead bound (B3); `None` if that leaves
    /// no millisecond above `next` and the guard.
    fn window_for(&self, next: u64, wall_ms: u64) -> Option<u64> {
        let limit = wall_ms.saturating_add(self.cfg.max_ahead_ms);
        let window = next.saturating_add(self.cfg.save_interval_ms).min(limit);
        (window > next.saturating_add(self.cfg.guard_ms)).then_some(window)
    }

    /// W1, B3: the first save of a leadership, once its start
    /// `max(wall, last + 1)` leaves room below the ahead bound.
    fn sync_save(&mut self, wall_ms: u64) -> Option<u64> {
        self.wall_ms = self.wall_ms.max(wall_ms);
        let next = wall_ms.max(self.loaded_ms.saturating_add(1));
        let window = self.window_for(next, wall_ms)?; // None: still waiting.
        if window > MAX_PHYSICAL_MS {
            self.phase = Phase::Idle;
            return None;
        }
        self.phase = Phase::Syncing;
        self.pending = Some(PendingSave { window_end_ms: window, next_physical_ms: next });
        Some(window)
    }

    /// A save of `window_end_ms` succeeded on a quorum. Returns whether it was
    /// the save the oracle was waiting for.
    pub fn saved(&mut self, window_end_ms: u64) -> bool {
        let Some(p) = self.pending.filter(|p| p.window_end_ms == window_end_ms) else {
            return false;
        };
        self.pending = None;
        self.saved_window_ms = p.window_end_ms;
        match self.phase {
            Phase::Syncing => {
                self.phase = Phase::Serving;
                self.physical_ms = p.next_physical_ms;
                self.logical = 0;
            }
            // W3: GetTS may have advanced physical past `next` while the save
            // was in flight; never move it back.
            Phase::Serving if p.next_physical_ms > self.physical_ms => {
                self.physical_ms = p.next_physical_ms;
                self.logical = 0;
            }
            _ => {}
        }
        true
    }

    /// The save in flight, if any.
    pub fn pending_save(&self) -> Option<u64> {
        self.pending.map(|p| p.window_end_ms)
    }

    /// Stops serving and forgets the window: after a failed save, a lost
    /// lease, or a newer leader's fence. Only a new sync (W1) serves again.
    pub fn reset(&mut self) {
        *self = Oracle::new(self.cfg);
    }

    /// Whether timestamps can be handed out.
    pub fn is_serving(&self) -> bool {
        self.phase == Phase::Serving
    }

    /// The saved window end in milliseconds (0 when not serving).
    pub fn window_end_ms(&self) -> u64 {
        self.saved_window_ms
    }

    /// The last timestamp handed out (or the start of the range), when serving.
    pub fn current(&self) -> Option<Timestamp> {
        self.is_serving().then_some(Timestamp { physical_ms: self.physical_ms, logical: self.logical })
    }

    /// PD's periodic update: let physical follow the wall clock (W3), and ask
    /// for the window to be extended before physical would reach it (W2).
    pub fn update(&mut self, wall_ms: u64) -> Update {
        self.wall_ms = self.wall_ms.max(wall_ms);
        let mut out = Update::default();
        if self.phase == Phase::Waiting {
            out.save_window_ms = self.sync_save(wall_ms);
            return out;
        }
        if self.phase != Phase::Serving {
            return out;
        }
        if self.pending.is_some() {
            return out;
        }
        // A wall clock behind physical is no lag (and no underflow).
        let jet_lag = wall_ms.saturating_sub(self.physical_ms);
        let interval_ms = u64::try_from(self.cfg.update_interval.as_millis()).unwrap_or(u64::MAX);
        if jet_lag > self.cfg.jet_lag_warning_ms && jet_lag > interval_ms.saturating_mul(3) {
            out.jet_lag_ms = Some(jet_lag);
        }
        // GetTS advances physical on its own under load (W2 allows it up to
        // the window), so physical can sit ahead of the wall clock at the
        // window's edge; the window must then grow, or requests that do not
        // fit the current millisecond would be refused until the wall clock
        // caught up.
        let at_edge = self.saved_window_ms <= self.physical_ms.saturating_add(1 + self.cfg.guard_ms);
        let next = if jet_lag > self.cfg.guard_ms {
            wall_ms
        } else if self.logical > self.cfg.max_logical / 2 || at_edge {
            self.physical_ms + 1
        } else {
            // W3: a wall clock that stepped back (or has not moved) changes nothing.
            return out;
        };
        if self.saved_window_ms <= next.saturating_add(self.cfg.guard_ms) {
            // B3: no room below the ahead bound: physical stays, and requests
            // that need a new millisecond are refused until the wall clock
            // moves on.
            let Some(window) = self.window_for(next, wall_ms) else { return out };
            if window > MAX_PHYSICAL_MS {
                return out;
            }
            self.pending = Some(PendingSave { window_end_ms: window, next_physical_ms: next });
            out.save_window_ms = Some(window);
        } else if next > self.physical_ms {
            self.physical_ms = next;
            self.logical = 0;
        }
        out
    }

    /// Whether `count` is a request that could ever be served.
    pub fn check_count(&self, count: u32) -> Result<(), GetTsError> {
        if count == 0 {
            return Err(GetTsError::ZeroCount);
        }
        if count >= self.cfg.max_logical {
            return Err(GetTsError::CountTooLarge { count, max: self.cfg.max_logical - 1 });
        }
        Ok(())
    }

    /// Hands out `count` timestamps and returns the last; the range is
    /// `logical - count + 1 ..= logical` within one physical millisecond.
    ///
    /// When the range does not fit the current millisecond, physical advances
    /// by 1 ms at once if it then stays more than the guard below the saved
    /// window (W2), so throughput is bounded by the window, not by the update
    /// interval (as PD since tikv/pd#10137).
    pub fn get_ts(&mut self, count: u32) -> Result<Timestamp, GetTsError> {
        self.check_count(count)?;
        if self.phase != Phase::Serving {
            return Err(GetTsError::NotLeader { leader: None });
        }
        // B3's share rule: large requests keep to the first half of the
        // ahead bound (whichever way physical got there).
        let half = self.wall_ms.saturating_add(self.cfg.max_ahead_ms / 2);
        if count > LARGE_COUNT && self.physical_ms >= half {
            return Err(GetTsError::LogicalExhausted);
        }
        // No overflow: both terms are below 2^18.
        let logical = self.logical + count;
        if logical < self.cfg.max_logical {
            self.logical = logical;
        } else {
            let physical = self.physical_ms + 1;
            // W2, compared before subtracting (and so B3: the window is
            // within the ahead bound).
            if self.saved_window_ms <= physical.saturating_add(self.cfg.guard_ms) {
                return Err(GetTsError::LogicalExhausted);
            }
            self.physical_ms = physical;
            self.logical = count;
        }
        Ok(Timestamp { physical_ms: self.physical_ms, logical: self.logical })
    }
}
