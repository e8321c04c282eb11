//! The `Tso` stream: a client's pending requests served together, each
//! answered in order with its own count.
//!
//! PD's clients batch their callers: each `TsoRequest` asks for as many
//! timestamps as callers were waiting, and the next request goes out as
//! soon as the previous answer is back (or earlier, when the client
//! pipelines). The door, as PD's server does, answers whatever requests
//! have arrived together under **one** lock of the node
//! ([`leasetso_runtime_common::NodeCell::serve_run`]), so one stream of a
//! batching client costs one lock and one write per round trip.
//!
//! Rules, next to the code that enforces them:
//! * **D1 (order and count)**: each response answers the request before
//!   it, in order, with the same count; its timestamp is the last of the
//!   range (the range is `logical - count + 1 ..= logical`).
//! * **D2 (refusals end the stream)**: see the service's rule G2. Answers
//!   already made go out first, then the status.
//! * **D3 (exhausted logical clock)**: a request that finds the logical
//!   clock exhausted waits for the window's next extension and is served
//!   then (PD's server retries the same way), for at most
//!   [`EXHAUSTED_PATIENCE`]; then the stream ends `UNAVAILABLE`.
//! * **D4 (no allocation per request)**: the stream's buffers are reused;
//!   only the gRPC layer allocates its messages.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use leasetso_core::{GetTsError, Timestamp, TsRefusal};
use leasetso_runtime_common::stats::{DoorKind, DoorTally};
use tokio_stream::Stream;
use tonic::{Status, Streaming};

use crate::members;
use crate::pdpb::{self, TsoRequest, TsoResponse};
use crate::service::check_header;
use leasetso_runtime_common::SharedKit;

/// Requests served together at most (the rest wait for the next batch).
pub const MAX_BATCH: usize = 256;
/// How long a request waits between tries on an exhausted logical clock (D3).
pub const EXHAUSTED_RETRY: Duration = Duration::from_millis(2);
/// How long a request may wait on an exhausted logical clock in all (D3).
pub const EXHAUSTED_PATIENCE: Duration = Duration::from_secs(3);

/// One client's `Tso` stream: reads requests, answers them in order.
pub struct TsoStream {
    kit: SharedKit,
    inbound: Streaming<TsoRequest>,
    /// The counts of the requests being served, in arrival order.
    counts: Vec<u32>,
    /// The node's answers to `counts`, same index.
    results: Vec<Result<Timestamp, TsRefusal>>,
    /// Answers made, not yet taken by the gRPC layer.
    ready: VecDeque<TsoResponse>,
    /// The status that ends the stream once `ready` is sent (D2).
    ending: Option<Status>,
    /// No more requests will be read: the client closed its side, or a
    /// status ends the stream.
    done: bool,
    /// D3: the wait before the next try, and how many tries were made.
    retry: Option<Pin<Box<tokio::time::Sleep>>>,
    retries: u32,
    /// What this stream served since its last flush to the counters.
    tally: DoorTally,
}

impl TsoStream {
    /// The stream answering `inbound` from `kit`'s node.
    pub fn new(kit: SharedKit, inbound: Streaming<TsoRequest>) -> Self {
        TsoStream {
            kit,
            inbound,
            counts: Vec::with_capacity(16),
            results: Vec::with_capacity(16),
            ready: VecDeque::with_capacity(16),
            ending: None,
            done: false,
            retry: None,
            retries: 0,
            tally: DoorTally::default(),
        }
    }

    /// A request's count, once its header and allocator are checked.
    fn admit(&self, request: &TsoRequest) -> Result<u32, Status> {
        check_header(self.kit.cluster_id, request.header.as_ref())?;
        match request.dc_location.as_str() {
            "" | "global" => Ok(request.count),
            other => Err(Status::invalid_argument(format!(
                "dc_location {other:?} is not served: leasetso has one global allocator (\"\" or \"global\")"
            ))),
        }
    }

    /// Reads what has arrived, waiting only for the first request of a
    /// batch; `true` when there is something to serve.
    fn read(&mut self, cx: &mut Context<'_>) -> bool {
        while !self.done && self.counts.len() < MAX_BATCH {
            match Pin::new(&mut self.inbound).poll_next(cx) {
                Poll::Ready(Some(Ok(request))) => match self.admit(&request) {
                    Ok(count) => self.counts.push(count),
                    Err(status) => {
                        self.ending = Some(status);
                        self.done = true;
                    }
                },
                // The client reset its side or closed it: what it asked
                // before is still answered, then the stream ends.
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => self.done = true,
                Poll::Pending => break,
            }
        }
        !self.counts.is_empty()
    }

    /// Serves `counts` under one lock (D1), keeping any requests an
    /// exhausted logical clock holds back for the next try (D3).
    fn serve(&mut self) {
        let kit = &*self.kit;
        let began = kit.clock.now();
        let n = self.counts.len();
        self.results.clear();
        self.results.resize(n, Err(TsRefusal::Unavailable));
        let answered = kit.node.serve_run(&self.counts, &mut self.results);
        let mut served = answered;
        for (&count, result) in self.counts.iter().zip(&self.results).take(answered) {
            match *result {
                Ok(ts) => {
                    self.tally.record(count, result);
                    self.ready.push_back(response(kit.cluster_id, count, ts));
                }
                Err(TsRefusal::Node(GetTsError::LogicalExhausted)) if self.retries < patience_tries() => {
                    // D3: this request and the ones after it wait.
                    served -= 1;
                    self.retries += 1;
                    self.retry = Some(Box::pin(tokio::time::sleep(EXHAUSTED_RETRY)));
                }
                Err(refusal) => {
                    self.tally.record(count, result);
                    self.ending = Some(refusal_status(kit, refusal));
                    self.done = true;
                    served = n;
                }
            }
        }
        if answered < n && self.retry.is_none() && self.ending.is_none() {
            // serve_run answered fewer than asked without a refusal: the
            // node is gone; nothing after can be served.
            self.ending = Some(Status::unavailable("the node is unavailable"));
            self.done = true;
            served = n;
        }
        if self.retry.is_none() {
            self.retries = 0;
        }
        self.counts.drain(..served.min(n));
        kit.flush_tally(&mut self.tally, DoorKind::Grpc, began);
    }
}

/// D3: tries before an exhausted logical clock ends the stream.
fn patience_tries() -> u32 {
    u32::try_from(EXHAUSTED_PATIENCE.as_millis() / EXHAUSTED_RETRY.as_millis().max(1)).unwrap_or(u32::MAX)
}

/// D1: the answer to a request of `count`, carrying the last timestamp of
/// its range.
pub fn response(cluster_id: u64, count: u32, ts: Timestamp) -> TsoResponse {
    TsoResponse {
        header: Some(pdpb::ResponseHeader { cluster_id, error: None }),
        count,
        timestamp: Some(pdpb::Timestamp {
            // Milliseconds since 1970 fit an i64 for 292 million years.
            physical: i64::try_from(ts.physical_ms).unwrap_or(i64::MAX),
            logical: i64::from(ts.logical),
            suffix_bits: 0,
        }),
    }
}

/// D2: the status a refusal ends the stream with. A follower's names the
/// leader it knows, so an operator reading a client's log sees where to
/// look; its code is `UNAVAILABLE` and its message says "not leader", which
/// PD's clients take as a leader change.
pub fn refusal_status(kit: &leasetso_runtime_common::Kit, refusal: TsRefusal) -> Status {
    match refusal {
        TsRefusal::Node(GetTsError::NotLeader { leader }) => {
            let this = kit.node_id.0 + 1;
            match leader.map(|id| (id, kit.pd_addr(id))) {
                Some((id, Some(addr))) => Status::unavailable(format!(
                    "not leader: leasetso-{this} does not serve; the leader is leasetso-{} at {}",
                    id.0 + 1,
                    members::url(addr, kit.tls.is_some())
                )),
                Some((id, None)) => Status::unavailable(format!(
                    "not leader: leasetso-{this} does not serve; the leader is leasetso-{}",
                    id.0 + 1
                )),
                None => Status::unavailable(format!(
                    "not leader: leasetso-{this} does not serve and knows no leader yet"
                )),
            }
        }
        TsRefusal::Node(e @ (GetTsError::ZeroCount | GetTsError::CountTooLarge { .. })) => {
            Status::invalid_argument(format!("tso count: {e}"))
        }
        TsRefusal::Node(e @ GetTsError::LogicalExhausted) => Status::unavailable(e.to_string()),
        TsRefusal::Unavailable => Status::unavailable("the node is unavailable"),
    }
}

impl Stream for TsoStream {
    type Item = Result<TsoResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(answer) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(answer)));
            }
            if let Some(status) = this.ending.take() {
                return Poll::Ready(Some(Err(status)));
            }
            if let Some(wait) = this.retry.as_mut() {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.retry = None;
            }
            if !this.read(cx) {
                if this.ending.is_some() {
                    continue; // A refused request ends the stream (D2).
                }
                // Nothing to serve: wait for a request, or end.
                return if this.done { Poll::Ready(None) } else { Poll::Pending };
            }
            this.serve();
        }
    }
}

impl std::fmt::Debug for TsoStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsoStream")
            .field("pending", &self.counts.len())
            .field("ready", &self.ready.len())
            .field("done", &self.done)
            .finish()
    }
}
