//! The simulator's own seeded generator.
//!
//! Every random choice of a run comes from generators derived from the run's
//! seed, and nothing else (no wall clock, no thread timing, no `HashMap`
//! order), so one seed replays bit for bit. Only integer arithmetic: floating
//! point could differ between platforms and break replays.

/// splitmix64: tiny, fast, every seed is a good seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

/// One in a million: the unit of probabilities.
pub const PPM: u32 = 1_000_000;

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// An independent generator for one concern of a run (network, chaos,
    /// clients), so that changing how often one concern draws does not shift
    /// the choices of the others.
    pub fn fork(&mut self, salt: u64) -> Rng {
        Rng(self.next_u64() ^ salt.wrapping_mul(0xD6E8_FEB8_6659_FD93))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `ppm` in a million.
    pub fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.below(u64::from(PPM)) < u64::from(ppm)
    }

    /// A gap with mean `mean`: uniform in `0..=2·mean`. (Not exponential: that
    /// needs a logarithm, and floating point is not bit-reproducible
    /// everywhere.)
    pub fn gap(&mut self, mean: u64) -> u64 {
        self.range(0, mean.saturating_mul(2))
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// An index drawn with the given weights (at least one positive).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        weights.len() - 1
    }
}
