//! [`PdTsoClient`]: timestamps over the PD door as PD's own clients take
//! them: every caller's request waits in one queue, and whatever is queued
//! goes out as **one** `TsoRequest` whose count is the sum; as tikv-client's
//! timestamp oracle does, requests are pipelined on the one stream (by
//! default [`MAX_IN_FLIGHT`] unanswered), and each answer's range is split
//! among its callers in order. It is the project's load generator for the
//! door (`benches/peers`) and a small Rust client for programs that want
//! PD's protocol without a TiKV client.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::Channel;

use crate::pdpb::pd_client::PdClient;
use crate::pdpb::{RequestHeader, TsoRequest};

/// The most timestamps one request asks for (one millisecond's worth).
pub const MAX_COUNT: u32 = (1 << 18) - 1;

/// A packed timestamp (`physical_ms << 18 | logical`): the last of a range.
pub type Packed = u64;

struct Waiting {
    count: u32,
    reply: oneshot::Sender<Result<Packed, Status>>,
}

/// One PD `Tso` stream, shared by any number of callers (clone it).
#[derive(Clone, Debug)]
pub struct PdTsoClient {
    queue: mpsc::UnboundedSender<Waiting>,
}

impl PdTsoClient {
    /// Opens the stream at `url` (`http://HOST:PORT`) for cluster
    /// `cluster_id`; its dispatcher runs on the current tokio runtime.
    pub async fn connect(url: &str, cluster_id: u64) -> Result<PdTsoClient, Status> {
        PdTsoClient::connect_with(url, cluster_id, MAX_IN_FLIGHT).await
    }

    /// [`PdTsoClient::connect`] with at most `in_flight` requests
    /// unanswered on the stream (at least one).
    pub async fn connect_with(url: &str, cluster_id: u64, in_flight: usize) -> Result<PdTsoClient, Status> {
        let channel = Channel::from_shared(url.to_string())
            .map_err(|e| Status::invalid_argument(format!("{url}: {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("{url}: {e}")))?;
        let in_flight = in_flight.max(1);
        let (requests, outgoing) = mpsc::channel(in_flight);
        let answers = PdClient::new(channel).tso(ReceiverStream::new(outgoing)).await?.into_inner();
        // Unbounded: each caller waits for its answer before asking again,
        // so the queue never holds more than one entry per caller.
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(cluster_id, in_flight, waiting, requests, answers));
        Ok(PdTsoClient { queue })
    }

    /// One timestamp.
    pub async fn get_ts(&self) -> Result<Packed, Status> {
        self.get_ts_n(1).await
    }

    /// A range of `count`: the last timestamp of it.
    pub async fn get_ts_n(&self, count: u32) -> Result<Packed, Status> {
        if count == 0 || count > MAX_COUNT {
            return Err(Status::invalid_argument(format!("count {count}: 1 to {MAX_COUNT}")));
        }
        let (reply, answer) = oneshot::channel();
        self.queue.send(Waiting { count, reply }).map_err(|_| Status::unavailable("the stream has ended"))?;
        answer.await.map_err(|_| Status::unavailable("the stream has ended"))?
    }
}

/// Requests in flight on one stream at most, by default. With two, the
/// stream is busy while the last answer is split among its callers (one
/// leaves it idle then); many more split a busy client's callers into small
/// requests, each costing a message, a lock and a write on both sides
/// (tikv-client's oracle pipelines deeper). BENCHMARKS.md section 16.
pub const MAX_IN_FLIGHT: usize = 2;

type Batch = (Vec<Waiting>, u32, tokio::sync::OwnedSemaphorePermit);

/// The stream's sending side: take what is queued (waiting for the first
/// caller), ask for the sum, hand the batch to the receiving side; at most
/// `in_flight` requests unanswered.
async fn dispatch(
    cluster_id: u64,
    in_flight_max: usize,
    mut waiting: mpsc::UnboundedReceiver<Waiting>,
    requests: mpsc::Sender<TsoRequest>,
    answers: tonic::Streaming<crate::pdpb::TsoResponse>,
) {
    let room = std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight_max));
    let (in_flight, due) = mpsc::unbounded_channel::<Batch>();
    tokio::spawn(receive(answers, due));
    let header = Some(RequestHeader { cluster_id, ..RequestHeader::default() });
    let mut held: Option<Waiting> = None;
    loop {
        let first = match held.take() {
            Some(w) => w,
            None => match waiting.recv().await {
                Some(w) => w,
                None => return,
            },
        };
        // Callers keep queueing while the stream is full: the batch grows.
        let Ok(permit) = std::sync::Arc::clone(&room).acquire_owned().await else { return };
        let mut total = first.count;
        let mut batch = vec![first];
        while let Ok(next) = waiting.try_recv() {
            if total + next.count > MAX_COUNT {
                held = Some(next);
                break;
            }
            total += next.count;
            batch.push(next);
        }
        // The batch is due before its request leaves, so the receiving side
        // always has it when the answer arrives.
        if in_flight.send((batch, total, permit)).is_err() {
            return;
        }
        let request = TsoRequest { header: header.clone(), count: total, dc_location: String::new() };
        if requests.send(request).await.is_err() {
            return;
        }
    }
}

/// The stream's receiving side: answers arrive in the order the requests
/// left (D1 on the server), each split among its batch in order.
async fn receive(
    mut answers: tonic::Streaming<crate::pdpb::TsoResponse>,
    mut due: mpsc::UnboundedReceiver<Batch>,
) {
    let mut failed: Option<Status> = None;
    while let Some((mut batch, total, permit)) = due.recv().await {
        let result = match &failed {
            Some(status) => Err(status.clone()),
            None => next_answer(&mut answers, total).await,
        };
        if let Err(status) = &result {
            failed = Some(status.clone());
        }
        answer(&mut batch, total, result);
        drop(permit);
    }
}

async fn next_answer(
    answers: &mut tonic::Streaming<crate::pdpb::TsoResponse>,
    count: u32,
) -> Result<Packed, Status> {
    let response = answers.message().await?.ok_or_else(|| Status::unavailable("the stream has ended"))?;
    if response.count != count {
        return Err(Status::internal(format!("asked for {count}, answered {}", response.count)));
    }
    let ts = response.timestamp.ok_or_else(|| Status::internal("an answer without a timestamp"))?;
    let (physical, logical) = (u64::try_from(ts.physical), u64::try_from(ts.logical));
    match (physical, logical) {
        (Ok(p), Ok(l)) if l < 1 << 18 => Ok(p << 18 | l),
        _ => Err(Status::internal(format!("an impossible timestamp {ts:?}"))),
    }
}

/// Splits `result` (the last of `total`) among `batch` in order: the
/// first caller gets the lowest part of the range.
fn answer(batch: &mut Vec<Waiting>, total: u32, result: Result<Packed, Status>) {
    match result {
        Ok(last) => {
            let mut end = last - u64::from(total);
            for w in batch.drain(..) {
                end += u64::from(w.count);
                let _ = w.reply.send(Ok(end));
            }
        }
        Err(status) => {
            for w in batch.drain(..) {
                let _ = w.reply.send(Err(status.clone()));
            }
        }
    }
}
