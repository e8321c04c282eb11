//! The hybrid timestamp: PD's layout, `physical_ms << 18 | logical`.

use core::fmt;

/// Bits of the logical part of a packed timestamp (PD's layout).
pub const LOGICAL_BITS: u32 = 18;
/// Timestamps per physical millisecond: 2^18 = 262,144 (logical 0 is never handed out).
pub const MAX_LOGICAL: u32 = 1 << LOGICAL_BITS;
/// The largest physical part that still fits a packed `u64`.
pub const MAX_PHYSICAL_MS: u64 = u64::MAX >> LOGICAL_BITS;

/// A hybrid timestamp: wall-clock milliseconds and a logical counter within
/// that millisecond.
///
/// Fields are ordered physical-major, so the derived order is the order of the
/// packed `u64`, which is what clients compare.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Milliseconds since the Unix epoch, as the oracle's window allowed.
    pub physical_ms: u64,
    /// Position within the millisecond, `< MAX_LOGICAL`.
    pub logical: u32,
}

impl Timestamp {
    /// The timestamp before any other.
    pub const ZERO: Timestamp = Timestamp { physical_ms: 0, logical: 0 };

    /// A timestamp from its parts, or `None` if either does not fit the layout.
    pub const fn new(physical_ms: u64, logical: u32) -> Option<Self> {
        if physical_ms > MAX_PHYSICAL_MS || logical >= MAX_LOGICAL {
            return None;
        }
        Some(Timestamp { physical_ms, logical })
    }

    /// Packs into PD's `u64` layout. The fields are in range for every
    /// timestamp the oracle builds; out-of-range fields are masked, never spilled.
    pub const fn to_u64(self) -> u64 {
        (self.physical_ms << LOGICAL_BITS) | (self.logical & (MAX_LOGICAL - 1)) as u64
    }

    /// Unpacks PD's `u64` layout. Every `u64` is a valid timestamp.
    pub const fn from_u64(packed: u64) -> Self {
        Timestamp { physical_ms: packed >> LOGICAL_BITS, logical: (packed & (MAX_LOGICAL as u64 - 1)) as u32 }
    }
}

impl From<Timestamp> for u64 {
    fn from(ts: Timestamp) -> u64 {
        ts.to_u64()
    }
}

impl From<u64> for Timestamp {
    fn from(packed: u64) -> Timestamp {
        Timestamp::from_u64(packed)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.physical_ms, self.logical)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_like_pd() {
        let ts = Timestamp::new(1_700_000_000_000, 42).unwrap();
        assert_eq!(ts.to_u64(), (1_700_000_000_000u64 << 18) | 42);
        assert_eq!(Timestamp::from_u64(ts.to_u64()), ts);
        assert_eq!(Timestamp::new(1, MAX_LOGICAL), None);
        assert_eq!(Timestamp::new(MAX_PHYSICAL_MS + 1, 0), None);
    }

    #[test]
    fn order_is_packed_order() {
        let a = Timestamp::new(10, MAX_LOGICAL - 1).unwrap();
        let b = Timestamp::new(11, 1).unwrap();
        assert!(a < b);
        assert!(a.to_u64() < b.to_u64());
        let c = Timestamp::new(11, 2).unwrap();
        assert!(b < c && b.to_u64() < c.to_u64());
    }
}
