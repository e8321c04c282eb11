//! Time as the core sees it: values passed in, never read.
//!
//! The core never reads a clock. Every input carries the monotonic [`Instant`]
//! at which the runtime observed it (and, where the oracle needs it, the wall
//! clock in milliseconds). That keeps the core deterministic, so a simulator can
//! replay a year of cluster life bit for bit, with drifting and jumping clocks.
//!
//! The clock behind [`Instant`] must keep counting while the machine is
//! suspended (Linux `CLOCK_BOOTTIME`). A lease deadline measured on a clock that
//! stops during a suspend would outlive the acceptors' view of the lease.

use core::fmt;
use core::ops::{Add, AddAssign};
use core::time::Duration;

/// A point on the node's monotonic clock, in nanoseconds since an arbitrary
/// origin fixed when the runtime started.
///
/// Arithmetic saturates instead of wrapping: an `Instant` near `u64::MAX`
/// nanoseconds (584 years) is "never", and comparing before subtracting is
/// the only way the core computes a difference.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The origin of the clock.
    pub const ZERO: Instant = Instant(0);
    /// A point no deadline reaches.
    pub const NEVER: Instant = Instant(u64::MAX);

    /// An instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// Nanoseconds of a duration, saturating at `u64::MAX`.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(nanos(rhs)))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Instant::NEVER {
            return f.write_str("never");
        }
        write!(f, "{}.{:09}s", self.0 / 1_000_000_000, self.0 % 1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Instant::NEVER + Duration::from_secs(1), Instant::NEVER);
        assert_eq!(Instant::from_millis(1).saturating_since(Instant::from_millis(5)), Duration::ZERO);
        assert_eq!(
            Instant::from_millis(5).saturating_since(Instant::from_millis(1)),
            Duration::from_millis(4)
        );
    }
}
