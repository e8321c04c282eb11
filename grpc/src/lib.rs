//! leasetso's PD-compatible gRPC door (`serve --pd ADDR`): PD's own clients
//! (tikv/pd's Go client, the `tikv-client` crate) take timestamps from a
//! leasetso node unchanged.
//!
//! The door serves `pdpb.PD/GetMembers`, `pdpb.PD/Tso`,
//! `pdpb.PD/GetClusterInfo` and `grpc.health.v1.Health` on tonic, on a
//! small tokio runtime of its own (tokio lives in this crate only). It
//! drives the node through the server kit, as the native and Redis doors
//! do: the same lock, the same counters, the same TLS and connection cap.
//!
//! * [`pdpb`]: the messages and the service glue, generated from the
//!   project's own `proto/pdpb.proto` (PD's names and field numbers).
//! * [`door`]: [`PdDoor`], the listener and its runtime.
//! * [`service`]: the three `pdpb.PD` calls, and the header check.
//! * [`tso`]: the `Tso` stream: pending requests served together, answered
//!   in order.
//! * [`members`]: who the members are and which one leads, as URLs.
//! * [`accept`]: connections under the cap, TLS handshakes off the accept
//!   loop.
//! * [`client`]: [`PdTsoClient`], callers batched into one `Tso` stream as
//!   PD's clients do (the load generator of `benches/peers`).
#![warn(missing_docs, unreachable_pub)]

/// PD's `pdpb` messages and service, as far as the door serves them.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pdpb {
    tonic::include_proto!("pdpb");
}

mod accept;
pub mod client;
pub mod door;
pub mod members;
pub mod service;
pub mod tso;

pub use client::PdTsoClient;
pub use door::{GrpcError, PdDoor};
