//! The node: leadership, the oracle and the replicated window store, composed
//! into the one state machine a runtime drives.
//!
//! The loop every runtime follows (str0m states it well): after every input
//! (`handle_timeout`, `handle_store_reply`, ...), drain [`Node::poll_output`]
//! until `None`, then arm one timer at [`Node::poll_timeout`]. GetTS is a plain
//! call, [`Node::get_ts`]: the hot path, which allocates nothing.
//!
//! # Where each piece lives
//!
//! * [`config`]: [`NodeConfig`] and [`ConfigError`] ([`Mode`] is
//!   [`crate::role`]'s).
//! * [`events`]: what the node asks of its runtime ([`Output`]) and tells it
//!   ([`Event`], [`StepDown`]).
//! * [`machine`]: the [`Node`] itself and its input loop.
//! * [`leadership`]: the lease (proposer, acceptor, learner), campaigns, the
//!   hot path [`Node::get_ts`].
//! * [`rounds`]: the store rounds of a leadership (load, save).
//! * [`admin`]: the primary registration rounds (register, read).
//! * [`status`]: [`Status`], what the node reports of itself.

pub mod admin;
pub mod config;
pub mod events;
pub mod leadership;
pub mod machine;
pub mod rounds;
pub mod status;

/// How a node behaves toward a primary: defined in [`crate::role`] (a leaf
/// the codecs use too), re-exported at its old path.
pub use crate::role::Mode;
pub use config::{ConfigError, NodeConfig};
pub use events::{Event, Output, StepDown};
pub use machine::Node;
pub use status::Status;
