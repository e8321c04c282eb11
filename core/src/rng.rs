//! A small seeded generator for backoff jitter: simulations replay bit for
//! bit, so randomness comes from a seed given at construction, never from a
//! global source. The runtimes use it too (client retries, peer redials).

use core::time::Duration;

/// xorshift64*: tiny, fast, and good enough for jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        // splitmix64 scrambles the seed; a zero state would stay zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A pause drawn uniformly from `[pause/2, pause]` (to the nanosecond,
    /// with a negligible modulo bias): retries of many clients, or redials
    /// of many links, do not fall into lockstep.
    pub fn jitter(&mut self, pause: Duration) -> Duration {
        let nanos = u64::try_from(pause.as_nanos()).unwrap_or(u64::MAX);
        let half = nanos / 2;
        // `nanos - half + 1` is at least 1 and cannot overflow (`half` is
        // at least `nanos / 2`); the sum is at most `nanos`.
        Duration::from_nanos(half + self.next_u64() % (nanos - half + 1))
    }
}
