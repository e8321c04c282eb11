//! The clocks the core is fed with.
//!
//! The core never reads a clock: every input carries a monotonic
//! [`Instant`] and, where the oracle needs it, the wall clock in
//! milliseconds. This module reads both.
//!
//! The monotonic clock must keep counting while the machine is suspended or
//! the VM is paused: a lease deadline measured on a clock that stops would
//! outlive the acceptors' view of the lease. On Linux that is
//! `CLOCK_BOOTTIME`. Rust's `std::time::Instant` is `CLOCK_MONOTONIC`, which
//! stops during a suspend, so it is only the fallback on systems without a
//! boot-time clock.
//!
//! Both runtimes read this one clock: nodes of either may share a cluster,
//! and their lease timing rests on the same clock kind. Their timers (std's
//! channel timeouts, `async_io::Timer`) run on `std::time::Instant`; they
//! only wake the runtime, which reads this clock again on waking, so a timer
//! that fires late after a suspend costs a wake-up, never safety.

use std::time::{SystemTime, UNIX_EPOCH};

use leasetso_core::Instant;

/// The node's monotonic clock.
///
/// Cheap to copy; every copy reads the same clock with the same origin, so
/// instants from different threads and tasks compare.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    origin: std::time::Instant,
}

impl Clock {
    /// The clock, with its origin fixed now (on Linux the origin is the boot).
    pub fn new() -> Self {
        Clock {
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            origin: std::time::Instant::now(),
        }
    }

    /// Whether this clock keeps counting across a suspend (`CLOCK_BOOTTIME`),
    /// which cluster mode needs.
    pub fn is_boottime() -> bool {
        cfg!(any(target_os = "linux", target_os = "android"))
    }

    /// Now, on the clock that keeps counting across suspend where the system has one.
    pub fn now(&self) -> Instant {
        Instant::from_nanos(self.nanos())
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn nanos(&self) -> u64 {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        // Boot time is never negative; a kernel reporting otherwise reads as the origin.
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
        secs.saturating_mul(1_000_000_000).saturating_add(nanos)
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// The wall clock in milliseconds since the Unix epoch, or `None` if the
/// system clock is set before the epoch.
pub fn wall_ms_checked() -> Option<u64> {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// The wall clock in milliseconds since the Unix epoch; 0 if the system clock
/// is set before the epoch.
///
/// 0 is safe to feed the oracle: the physical part of timestamps never moves
/// backwards (it freezes until the wall clock passes it again), so a broken
/// wall clock stalls the clock's progress but never repeats a timestamp.
pub fn wall_ms() -> u64 {
    wall_ms_checked().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_advancing() {
        let clock = Clock::new();
        let a = clock.now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = clock.now();
        assert!(b > a, "{b:?} after {a:?}");
        let elapsed = b.saturating_since(a);
        assert!(elapsed >= std::time::Duration::from_millis(5), "{elapsed:?}");
        // Copies read the same clock.
        let copy = clock;
        assert!(copy.now() >= b);
    }

    #[test]
    fn wall_clock_is_after_2020() {
        // 2020-01-01T00:00:00Z; a machine whose clock is earlier cannot run these tests meaningfully.
        assert!(wall_ms() > 1_577_836_800_000);
        assert_eq!(wall_ms_checked().map(|ms| ms > 0), Some(true));
    }
}
