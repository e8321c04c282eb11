//! How a node is configured, and why a configuration cannot run.

use core::time::Duration;

use crate::ballot::NodeId;
use crate::lease::{Bugs, LeaseConfig, LeaseConfigError, LeaseTiming};
use crate::oracle::{OracleConfig, OracleConfigError};
use crate::quorum::MAX_NODES;
use crate::role::Mode;

/// How a node is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeConfig {
    /// This node's id, `0..nodes`.
    pub id: NodeId,
    /// The cluster's size: every node is an acceptor and a store replica.
    pub nodes: u16,
    /// The timestamp window's tunables.
    pub oracle: OracleConfig,
    /// The lease's tunables.
    pub lease: LeaseConfig,
    /// A store round (load or save on a quorum) not done within this time has
    /// failed: the node stops serving and releases its lease.
    pub store_timeout: Duration,
    /// Seeds the backoff jitter. Nodes of one cluster should differ.
    pub seed: u64,
    /// Deferring or primary.
    pub mode: Mode,
    /// How often a yielded node reads the primary registration from a
    /// quorum, and a primary retries its registration.
    pub primary_poll: Duration,
    /// Known-broken protocol variants; the default is the correct protocol.
    pub bugs: Bugs,
}

impl NodeConfig {
    /// Node `id` of a cluster of `nodes`, with the defaults.
    pub fn new(id: NodeId, nodes: u16) -> Self {
        NodeConfig {
            id,
            nodes,
            oracle: OracleConfig::default(),
            lease: LeaseConfig::default(),
            store_timeout: Duration::from_secs(2),
            seed: u64::from(id.0),
            mode: Mode::Deferring,
            primary_poll: Duration::from_secs(2),
            bugs: Bugs::default(),
        }
    }

    /// A single-node cluster with the defaults.
    pub fn single() -> Self {
        Self::new(NodeId(0), 1)
    }

    /// The timing digest peers compare in their handshake
    /// ([`crate::peer::timing_digest`]); `None` if the configuration is invalid.
    pub fn digest(&self) -> Option<u64> {
        let timing = self.validate().ok()?;
        Some(crate::peer::timing_digest(self.nodes, self.lease.drift_ppm, &timing))
    }
}

/// Why a configuration cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The oracle's tunables are inconsistent.
    #[error(transparent)]
    Oracle(#[from] OracleConfigError),
    /// The lease timing is unsafe or unusable.
    #[error(transparent)]
    Lease(#[from] LeaseConfigError),
    /// The cluster size is not supported.
    #[error("cluster of {0} nodes: must be between 1 and {MAX_NODES}")]
    ClusterSize(u16),
    /// The node id is not below the cluster size.
    #[error("node id {id} is outside a cluster of {nodes}")]
    NodeId {
        /// The configured id.
        id: NodeId,
        /// The cluster size.
        nodes: u16,
    },
    /// A store timeout (or primary poll interval) of zero could never complete a round.
    #[error("store timeout and primary poll interval must be positive")]
    StoreTimeout,
}

impl NodeConfig {
    /// Checks the configuration and derives the lease timing (T2, T3).
    pub fn validate(&self) -> Result<LeaseTiming, ConfigError> {
        self.oracle.validate()?;
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return Err(ConfigError::ClusterSize(self.nodes));
        }
        if self.id.0 >= self.nodes {
            return Err(ConfigError::NodeId { id: self.id, nodes: self.nodes });
        }
        if self.store_timeout.is_zero() || self.primary_poll.is_zero() {
            return Err(ConfigError::StoreTimeout);
        }
        #[cfg(feature = "broken-variants")]
        if self.bugs.unchecked_timing {
            return Ok(self.lease.timing_unchecked());
        }
        Ok(self.lease.timing()?)
    }
}
