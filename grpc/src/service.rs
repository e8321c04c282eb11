//! The `pdpb.PD` calls the door serves, and the header check.
//!
//! Rules:
//! * **G1 (cluster id)**: a `Tso` request whose header names another
//!   cluster ends the stream with `FAILED_PRECONDITION` ("mismatch cluster
//!   id, need N but got M"), as PD's server answers it. `GetMembers` and
//!   `GetClusterInfo` are answered whatever the header says, as PD does:
//!   that is how a client learns the id (and checks it: PD's Go client
//!   refuses 0 and a mismatch; the Rust client sends no header at all).
//! * **G2 (errors end the stream)**: neither PD client reads
//!   `header.error` on the `Tso` stream, so every refusal there is a gRPC
//!   status that ends it. A follower's is `UNAVAILABLE` with a message that
//!   says "not leader" (PD's own says `codes.Unknown`, "... requested pd is
//!   not leader of cluster"; the Go client looks for "not leader" in the
//!   message, whatever the code), after which the clients ask `GetMembers`
//!   for the leader again.

use std::pin::Pin;

use tonic::{Request, Response, Status, Streaming};

use crate::members;
use crate::pdpb::pd_server::Pd;
use crate::pdpb::{
    GetClusterInfoRequest, GetClusterInfoResponse, GetMembersRequest, GetMembersResponse, RequestHeader,
    ServiceMode, TsoRequest,
};
use crate::tso::TsoStream;
use leasetso_runtime_common::SharedKit;

/// The `pdpb.PD` service over one node's kit.
#[derive(Clone)]
pub struct PdService {
    kit: SharedKit,
}

impl std::fmt::Debug for PdService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kit.debug_as("PdService", f)
    }
}

impl PdService {
    /// The service of `kit`'s node.
    pub fn new(kit: SharedKit) -> Self {
        PdService { kit }
    }
}

/// G1: the request's header must name this cluster.
pub fn check_header(cluster_id: u64, header: Option<&RequestHeader>) -> Result<(), Status> {
    let theirs = header.map_or(0, |h| h.cluster_id);
    if theirs == cluster_id {
        return Ok(());
    }
    Err(Status::failed_precondition(format!("mismatch cluster id, need {cluster_id} but got {theirs}")))
}

#[tonic::async_trait]
impl Pd for PdService {
    async fn get_members(
        &self,
        _request: Request<GetMembersRequest>,
    ) -> Result<Response<GetMembersResponse>, Status> {
        Ok(Response::new(members::members(&self.kit)))
    }

    type TsoStream = Pin<Box<TsoStream>>;

    async fn tso(
        &self,
        request: Request<Streaming<TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        Ok(Response::new(Box::pin(TsoStream::new(self.kit.clone(), request.into_inner()))))
    }

    async fn get_cluster_info(
        &self,
        _request: Request<GetClusterInfoRequest>,
    ) -> Result<Response<GetClusterInfoResponse>, Status> {
        // G1: answered whatever the header says, as PD does.
        Ok(Response::new(GetClusterInfoResponse {
            header: Some(members::header(&self.kit)),
            service_modes: vec![ServiceMode::PdSvcMode as i32],
            tso_urls: Vec::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g1_a_header_of_another_cluster_is_refused_as_pd_refuses_it() {
        let ours = RequestHeader { cluster_id: 7, ..RequestHeader::default() };
        assert!(check_header(7, Some(&ours)).is_ok());
        let theirs = RequestHeader { cluster_id: 8, ..RequestHeader::default() };
        let e = check_header(7, Some(&theirs)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert_eq!(e.message(), "mismatch cluster id, need 7 but got 8");
        assert_eq!(check_header(7, None).unwrap_err().message(), "mismatch cluster id, need 7 but got 0");
    }
}
