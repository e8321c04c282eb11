//! How a node's replica of the window store is doing, as `status` reports
//! it (ARCHITECTURE.md, rule H4).
//!
//! A replica that fails (a full disk, a disk gone read-only) must be visible
//! to operators before clients fail, and must heal by itself once writes
//! succeed again. The runtime that runs the store knows its health; the
//! core only carries it from there to the Status frame, as one byte, so a
//! status answer never grows with an error's text (the server's log has
//! the text).

use core::fmt;

/// The health of a node's replica: fine, or failing, and why in a word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum StoreHealth {
    /// Its last operation succeeded, or it has had none yet.
    #[default]
    Ok = 0,
    /// Failing: no space left on its device.
    NoSpace = 1,
    /// Failing: its device or files refuse writes (read-only, permissions).
    ReadOnly = 2,
    /// Failing: another I/O error.
    Io = 3,
    /// Failing: a stored value does not decode.
    Corrupt = 4,
}

impl StoreHealth {
    /// The health for a wire value; unknown values are `None`.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => StoreHealth::Ok,
            1 => StoreHealth::NoSpace,
            2 => StoreHealth::ReadOnly,
            3 => StoreHealth::Io,
            4 => StoreHealth::Corrupt,
            _ => return None,
        })
    }

    /// Whether the replica is fine.
    pub fn is_ok(self) -> bool {
        self == StoreHealth::Ok
    }
}

/// `ok`, or `failed: <why>`, as `leasetso status` prints it after `store=`.
impl fmt::Display for StoreHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreHealth::Ok => "ok",
            StoreHealth::NoSpace => "failed: No space left on device",
            StoreHealth::ReadOnly => "failed: writes refused (read-only or permissions)",
            StoreHealth::Io => "failed: I/O error",
            StoreHealth::Corrupt => "failed: corrupt data",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_health_round_trips_and_unknown_bytes_do_not() {
        for h in [
            StoreHealth::Ok,
            StoreHealth::NoSpace,
            StoreHealth::ReadOnly,
            StoreHealth::Io,
            StoreHealth::Corrupt,
        ] {
            assert_eq!(StoreHealth::from_u8(h as u8), Some(h));
        }
        assert_eq!(StoreHealth::from_u8(5), None);
        assert_eq!(StoreHealth::NoSpace.to_string(), "failed: No space left on device");
        assert!(StoreHealth::Ok.is_ok() && !StoreHealth::Io.is_ok());
    }
}
