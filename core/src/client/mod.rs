//! The client session: batching, splitting, pipelining, reply matching and
//! redirects, without I/O.
//!
//! A [`ClientSession`] is one client's protocol state over a succession of
//! connections. Its runtime (the blocking `leasetso-std` client, the async
//! `leasetso-smol` one) moves bytes, opens sockets, reads clocks and wakes
//! callers; everything the protocol decides happens here:
//!
//! * **Callers** are queued with what they ask and when they asked
//!   ([`ClientSession::push`], [`ClientSession::push_call`]), each under a
//!   [`Ticket`]. Concurrent GetTS callers are merged into one request with
//!   the summed count (as PD's client does), at most
//!   [`ClientConfig::max_batch`] timestamps (a single caller asking for more
//!   goes alone), and the reply's range is split among them exactly, in
//!   queue order: each caller gets the last timestamp of its own sub-range,
//!   the first caller the lowest (C1).
//! * **Pipelining**: up to [`ClientConfig::max_in_flight`] requests are
//!   outstanding on one connection, the first ones right behind the Hello
//!   (PROTOCOL.md, "Conversation"). The server answers in order, but replies
//!   are matched by request id anyway; a reply that answers nothing
//!   outstanding closes the connection (C2).
//! * **Handshake**: a connection's first frame is Hello; its answer must be a
//!   Welcome of this version and, unless the configured cluster id is 0, of
//!   this cluster (C3). An Error with id 0 and a fatal code closes the
//!   connection (C4).
//! * **Failures**: on a retryable one (NotLeader, LogicalExhausted, Internal;
//!   a connection refused, lost or timed out) the callers of the failed
//!   requests go back into the queue in arrival order, never lost and never
//!   answered twice (C5), and the [`redirect`](crate::redirect) rules decide
//!   where the next attempt goes and after which pause; the runtime learns it
//!   from [`ClientSession::poll_action`] and [`ClientSession::poll_timeout`].
//!   A request whose oldest caller arrived more than
//!   [`ClientConfig::deadline`] ago is not retried: its callers get the error
//!   (C6), as do the callers queued when a connection that failed was asked
//!   for (a refused connect is their attempt too, though nothing was sent
//!   for them). No new attempt starts after the deadline, but the attempt under
//!   way finishes, and the last pause is cut short so that the last attempt
//!   starts at the deadline rather than not at all.
//! * **Completions** are drained with [`ClientSession::poll_completion`].
//!
//! Status, ReadPrimary and ClearPrimary go through the same session (one
//! request each, never merged): Status retries like GetTS (every node
//! answers it, so only connection failures retry it), the primary requests
//! are never retried (they are about the replica of the node talked to,
//! and an operator decides what to do after a failure).
//!
//! # Driving it
//!
//! After every input (`push`, [`connected`](ClientSession::connected),
//! [`handle_input`](ClientSession::handle_input),
//! [`connection_failed`](ClientSession::connection_failed),
//! [`handle_timeout`](ClientSession::handle_timeout)) the runtime drains
//! completions, performs the actions ([`Action::Connect`]: open a connection
//! and report `connected` or `connection_failed`; [`Action::Close`]: drop the
//! socket, nothing more is read from it), writes what
//! [`poll_transmit`](ClientSession::poll_transmit) encodes, reads while
//! [`awaiting_reply`](ClientSession::awaiting_reply), and calls
//! `handle_timeout` when [`poll_timeout`](ClientSession::poll_timeout)
//! passes. The runtime enforces its connect timeout itself (a connect that
//! takes too long is `connection_failed` with [`Broken::Unreachable`]); the
//! session enforces the request timeout through `poll_timeout`. Time is
//! always an argument. Nothing allocates per call once the queues have grown
//! to the load: they keep their capacity.
//!
//! The runtime's own transport errors (an `io::Error`, say) are carried as
//!
//! # Where each piece lives
//!
//! * [`config`]: what a session is told ([`ClientConfig`]) and why one
//!   cannot be made.
//! * [`call`]: what a caller asks ([`Call`]), what it gets back
//!   ([`Answer`], [`Completion`]) and the [`Ticket`] that names it.
//! * [`error`]: how a call fails ([`CallError`], [`Broken`]).
//! * [`session`]: the [`ClientSession`] and the inputs a runtime feeds it.
//! * [`batch`]: the queue of callers, merged into requests and a reply's
//!   range split among them (C1).
//! * [`handshake`]: the Hello and its answer (C3).
//! * [`reply`]: reassembling the bytes read and matching replies to
//!   requests by id (C2, C4).
//! * [`retry`]: failures: requeueing callers (C5), deadlines (C6), the
//!   redirect rules and the retry epochs.

pub mod batch;
pub mod call;
pub mod config;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod handshake;
pub mod reply;
pub mod retry;
pub mod session;

pub use call::{Answer, Call, Completion, StatusReply, Ticket};
pub use config::{ClientConfig, ClientConfigError, MAX_COUNT};
pub use error::{Broken, CallError};
pub use session::{Action, ClientSession, ConnState};
