//! Simulated clocks: each node's monotonic clock runs at its own rate,
//! within the configured drift bound, against the simulator's true time.
//!
//! True time and local time are nanoseconds. A clock is piecewise linear:
//! `local = base_local + (true − base_true)·(1 + ppm/10⁶)`, rounded down, with
//! the rate changed at random moments (keeping the clock continuous, so it
//! never goes back). Rounding down is monotonic; it can make an interval look
//! up to 1 ns longer or shorter than the rate says, which is why rates are
//! drawn at least 1 ppm inside the bound (1 µs of slack per second, far more
//! than a nanosecond of rounding).

/// One node's monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    base_true: u64,
    base_local: u64,
    /// The rate error, parts per million (negative: slow).
    ppm: i64,
}

const MILLION: i128 = 1_000_000;

impl Clock {
    /// A clock reading `origin` at true time `at`, with rate error `ppm`.
    pub fn new(at: u64, origin: u64, ppm: i64) -> Self {
        Clock { base_true: at, base_local: origin, ppm }
    }

    /// The rate error in parts per million.
    pub fn ppm(&self) -> i64 {
        self.ppm
    }

    /// The local reading at true time `t` (not before the last rate change).
    pub fn local(&self, t: u64) -> u64 {
        debug_assert!(t >= self.base_true, "a clock is read at or after its last change");
        let dt = t.saturating_sub(self.base_true);
        // ⌊dt·(10⁶ + ppm)/10⁶⌋ = dt + ⌊dt·ppm/10⁶⌋, in 64 bits while it fits
        // (the hot path: every event reads clocks), else in 128.
        let skew = i64::try_from(dt).ok().and_then(|dt| dt.checked_mul(self.ppm)).map_or_else(
            || (i128::from(dt) * i128::from(self.ppm)).div_euclid(MILLION),
            |x| i128::from(x.div_euclid(MILLION as i64)),
        );
        let dl = i128::from(dt) + skew;
        self.base_local.saturating_add(u64::try_from(dl).unwrap_or(u64::MAX))
    }

    /// Changes the rate at true time `at`, keeping the reading continuous.
    pub fn set_rate(&mut self, at: u64, ppm: i64) {
        self.base_local = self.local(at);
        self.base_true = at;
        self.ppm = ppm;
    }

    /// The earliest true time, not before `now`, at which the clock reads at
    /// least `local`; `None` if that is beyond any simulation.
    pub fn true_at(&self, local: u64, now: u64) -> Option<u64> {
        if local <= self.local(now) {
            return Some(now);
        }
        let dl = local - self.base_local;
        let rate = 1_000_000 + self.ppm;
        // Smallest dt with floor(dt·rate/10⁶) ≥ dl, i.e. dt·rate ≥ dl·10⁶
        // (in 64 bits while it fits).
        let dt = i64::try_from(dl)
            .ok()
            .and_then(|dl| dl.checked_mul(1_000_000)?.checked_add(rate - 1))
            .map_or_else(
                || (i128::from(dl) * MILLION + i128::from(rate) - 1) / i128::from(rate),
                |num| i128::from(num / rate),
            );
        let t = i128::from(self.base_true) + dt;
        u64::try_from(t).ok().filter(|&t| t < u64::MAX / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 64-bit fast paths compute exactly what the 128-bit formulas do.
    #[test]
    fn fast_paths_agree_with_128_bit_arithmetic() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for ppm in [-50_000i64, -9_999, -1, 0, 1, 9_999, 50_000] {
            let c = Clock::new(0, 1 << 40, ppm);
            for _ in 0..10_000 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let t = x >> (x % 40);
                let dl = i128::from(t) * (MILLION + i128::from(ppm)) / MILLION;
                let want = (1u64 << 40).saturating_add(u64::try_from(dl).unwrap_or(u64::MAX));
                assert_eq!(c.local(t), want, "ppm {ppm} t {t}");
                let target = (1u64 << 40) + (x >> (x % 50));
                let dl = i128::from(target - (1 << 40));
                let rate = MILLION + i128::from(ppm);
                let want = u64::try_from((dl * MILLION + rate - 1) / rate).ok().filter(|&t| t < u64::MAX / 2);
                assert_eq!(c.true_at(target, 0), want, "ppm {ppm} target {target}");
            }
        }
    }

    #[test]
    fn true_at_inverts_local_exactly() {
        for ppm in [-50_000i64, -9_999, -1, 0, 1, 9_999, 50_000] {
            let mut c = Clock::new(1_000, 77, ppm);
            c.set_rate(5_000_000, ppm);
            for target in [5_000_000u64, 5_000_001, 6_000_003, 1_000_000_007, 3_141_592_653] {
                let t = c.true_at(target, 5_000_000).unwrap();
                assert!(c.local(t) >= target);
                assert!(t == 5_000_000 || c.local(t - 1) < target, "ppm {ppm} target {target}");
            }
        }
    }
}
