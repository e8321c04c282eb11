//! What a node is and how it behaves toward a primary: its [`Role`] (what
//! it does now) and its [`Mode`] (what it was configured to be).
//!
//! A leaf module: it imports nothing else of the crate, so the node (which
//! decides them) and the codecs (which carry them) both depend on it and
//! not on each other.

/// A node's role, as a status reports it ([`crate::wire::Frame::Status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// Holds no lease.
    Follower = 0,
    /// Holds the lease and is syncing the window; serves nothing yet.
    Syncing = 1,
    /// Holds the lease and serves timestamps.
    Leader = 2,
    /// Stands down while a dedicated primary is registered.
    Yielded = 3,
}

impl Role {
    /// The role of its wire code; `None` for a code no role has.
    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Role::Follower,
            1 => Role::Syncing,
            2 => Role::Leader,
            3 => Role::Yielded,
            _ => return None,
        })
    }

    /// The role as operators read it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Syncing => "syncing",
            Role::Leader => "leader",
            Role::Yielded => "yielded",
        }
    }
}

/// How a node writes the window store and whether it may campaign
/// (ARCHITECTURE.md, "Yielding to a primary"). Both modes compete for the same
/// lease, so at most one node serves at any instant whatever the modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Loads and saves check that no primary is registered (PD's service
    /// mode); on seeing one the node yields and stays out while it stands.
    #[default]
    Deferring,
    /// Registers itself on a quorum before it campaigns, then loads and saves
    /// without the check (PD's TSO microservice).
    Primary,
}

impl Mode {
    /// The mode as operators spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Deferring => "deferring",
            Mode::Primary => "primary",
        }
    }
}
