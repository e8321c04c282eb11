//! The clocks the core is fed with: a monotonic [`Instant`] and the wall
//! clock in milliseconds.
//!
//! The monotonic clock must keep counting while the machine is suspended or
//! the VM is paused: a lease deadline measured on a clock that stops would
//! outlive the acceptors' view of the lease. On Linux that is
//! `CLOCK_BOOTTIME`; `std::time::Instant` (`CLOCK_MONOTONIC`) stops during a
//! suspend, so it is only the fallback where there is no boot-time clock.
//! This is the same clock `leasetso-std` reads: nodes of both runtimes may
//! share a cluster, and their lease timing rests on the same clock kind.
//!
//! Async timers (`async_io::Timer`) run on `std::time::Instant`; the runtime
//! only uses them to wake up and always reads this clock again on waking, so
//! a timer that fires late after a suspend costs a wake-up, never safety.

use std::time::{SystemTime, UNIX_EPOCH};

use leasetso_core::Instant;

/// The node's monotonic clock. Cheap to copy; copies read the same clock
/// with the same origin, so instants from different tasks compare.
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

    /// Whether this clock keeps counting across a suspend, which cluster mode needs.
    pub fn is_boottime() -> bool {
        cfg!(any(target_os = "linux", target_os = "android"))
    }

    /// Now.
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

/// The wall clock in milliseconds since the Unix epoch; 0 if the system
/// clock is before the epoch, which is safe to feed the oracle (the
/// physical part never moves backwards, it freezes until the wall clock
/// passes it again).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
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
        assert!(b.saturating_since(a) >= std::time::Duration::from_millis(5), "{a:?} then {b:?}");
        assert!(wall_ms() > 1_577_836_800_000, "wall clock before 2020");
    }
}
