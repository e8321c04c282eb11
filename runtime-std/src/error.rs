//! Errors of the server and of the client.
//!
//! Both are `leasetso-runtime-common`'s, the same types in both runtimes:
//! [`ClientError`] is the union of what either client reports (with
//! [`ClientError::from_call`], the converter from the core's `CallError`),
//! [`ServerError`] why a server could not start.

pub use leasetso_runtime_common::ClientError;
#[cfg(feature = "server")]
pub use leasetso_runtime_common::ServerError;
