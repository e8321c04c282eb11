//! Lease timing: the proposer's duration, the acceptors' duration and the
//! quarantine, derived so that the protocol stays safe under bounded clock
//! rates (PaxosLease Revisited, T2 and T3).
//!
//! Clocks need not be synchronised, only their *rates* bounded:
//! `r_min·real ≤ local ≤ r_max·real` with `r_min = 1 − ρ`, `r_max = 1 + ρ`.
//! * **T2 (containment)**: `(D_P + m)·r_max ≤ D_A·r_min`. Whatever the owner
//!   believes it holds (until `d = t_prepare + D_P`, serving until `d − m`)
//!   ends, in real time, before any acceptor of its quorum forgets the lease
//!   (its timer starts later, at Accept receipt, and runs `D_A`).
//! * **T3 (quarantine)**: `Q·r_min ≥ (D_P + m)·r_max`. An acceptor that
//!   restarted forgot its promises; it stays silent until every attempt that
//!   could have counted on them has run out of time.

use core::time::Duration;

use crate::time::nanos;

/// Parts per million: the unit of the drift bound.
const PPM: u128 = 1_000_000;

/// The lease's tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseConfig {
    /// `D_P`: how long an owner holds a lease, measured on its clock from the
    /// moment it sent Prepare. Default 3 s.
    pub duration: Duration,
    /// `ρ` in parts per million: the bound on every clock's rate error. Default 1 %.
    pub drift_ppm: u32,
    /// `m`: the owner stops serving this long before its deadline. Default 0.
    pub margin: Duration,
    /// `D_A`, if set explicitly; derived by T2 when `None`.
    pub acceptor_duration: Option<Duration>,
    /// `Q`, if set explicitly; derived by T3 when `None`.
    pub quarantine: Option<Duration>,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            duration: Duration::from_secs(3),
            drift_ppm: 10_000,
            margin: Duration::ZERO,
            acceptor_duration: None,
            quarantine: None,
        }
    }
}

/// Why a lease configuration would be unsafe or could never work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseConfigError {
    /// `D_P` must be positive and larger than the margin.
    #[error("lease duration {duration:?} must be positive and larger than the margin {margin:?}")]
    Duration {
        /// `D_P`.
        duration: Duration,
        /// `m`.
        margin: Duration,
    },
    /// The drift bound must be below 100 %.
    #[error("drift bound {0} ppm must be below 1,000,000")]
    Drift(u32),
    /// T2 does not hold: an owner could outlive its acceptors' view of the lease.
    #[error("acceptor lease duration {acceptor:?} breaks T2: needs at least {required:?}")]
    AcceptorDuration {
        /// The configured `D_A`.
        acceptor: Duration,
        /// The smallest safe `D_A`.
        required: Duration,
    },
    /// T3 does not hold: a restarted acceptor could rejoin while an attempt
    /// that counted on its forgotten promise is still running.
    #[error("quarantine {quarantine:?} breaks T3: needs at least {required:?}")]
    Quarantine {
        /// The configured `Q`.
        quarantine: Duration,
        /// The smallest safe `Q`.
        required: Duration,
    },
}

/// The durations a node runs with, checked against T2 and T3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseTiming {
    /// `D_P`.
    pub proposer: Duration,
    /// `D_A`.
    pub acceptor: Duration,
    /// `Q`.
    pub quarantine: Duration,
    /// `m`.
    pub margin: Duration,
}

impl LeaseConfig {
    /// `⌈(D_P + m)·r_max / r_min⌉`, the least `D_A` for T2 and the least `Q` for T3.
    pub fn required_acceptor_duration(&self) -> Duration {
        let base = u128::from(nanos(self.duration)) + u128::from(nanos(self.margin));
        let rho = u128::from(self.drift_ppm).min(PPM - 1);
        let num = base * (PPM + rho);
        let den = PPM - rho;
        let ns = num.div_ceil(den);
        // Round up to whole milliseconds, as operators configure them.
        let ms = ns.div_ceil(1_000_000);
        Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// Derives `D_A` and `Q` (or checks explicit ones) against T2 and T3.
    pub fn timing(&self) -> Result<LeaseTiming, LeaseConfigError> {
        if self.duration.is_zero() || self.margin >= self.duration {
            return Err(LeaseConfigError::Duration { duration: self.duration, margin: self.margin });
        }
        if u128::from(self.drift_ppm) >= PPM {
            return Err(LeaseConfigError::Drift(self.drift_ppm));
        }
        let required = self.required_acceptor_duration();
        let acceptor = self.acceptor_duration.unwrap_or(required);
        if acceptor < required {
            return Err(LeaseConfigError::AcceptorDuration { acceptor, required });
        }
        let quarantine = self.quarantine.unwrap_or(required);
        if quarantine < required {
            return Err(LeaseConfigError::Quarantine { quarantine, required });
        }
        Ok(LeaseTiming { proposer: self.duration, acceptor, quarantine, margin: self.margin })
    }

    /// The durations as configured, without T2/T3: only for the broken
    /// variant the simulator must catch.
    #[cfg(feature = "broken-variants")]
    pub fn timing_unchecked(&self) -> LeaseTiming {
        let required = self.required_acceptor_duration();
        LeaseTiming {
            proposer: self.duration,
            acceptor: self.acceptor_duration.unwrap_or(required),
            quarantine: self.quarantine.unwrap_or(required),
            margin: self.margin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_derive_3061_ms() {
        let t = LeaseConfig::default().timing().unwrap();
        assert_eq!(t.acceptor, Duration::from_millis(3061));
        assert_eq!(t.quarantine, Duration::from_millis(3061));
        let no_drift = LeaseConfig { drift_ppm: 0, ..Default::default() }.timing().unwrap();
        assert_eq!(no_drift.acceptor, Duration::from_secs(3));
        let with_margin = LeaseConfig {
            duration: Duration::from_millis(1000),
            margin: Duration::from_millis(10),
            ..Default::default()
        };
        assert_eq!(with_margin.timing().unwrap().acceptor, Duration::from_millis(1031));
    }

    #[test]
    fn unsafe_configurations_are_rejected() {
        let short_q =
            LeaseConfig { drift_ppm: 0, quarantine: Some(Duration::from_millis(2999)), ..Default::default() };
        assert_eq!(
            short_q.timing(),
            Err(LeaseConfigError::Quarantine {
                quarantine: Duration::from_millis(2999),
                required: Duration::from_secs(3)
            })
        );
        let short_a = LeaseConfig { acceptor_duration: Some(Duration::from_secs(3)), ..Default::default() };
        assert!(matches!(short_a.timing(), Err(LeaseConfigError::AcceptorDuration { .. })));
        let zero = LeaseConfig { duration: Duration::ZERO, ..Default::default() };
        assert!(matches!(zero.timing(), Err(LeaseConfigError::Duration { .. })));
        let drift = LeaseConfig { drift_ppm: 1_000_000, ..Default::default() };
        assert_eq!(drift.timing(), Err(LeaseConfigError::Drift(1_000_000)));
    }
}
