//! [`PdTsoClient`]: timestamps over the PD door as PD's own clients take
//! them: every caller's request waits in one queue, and whatever is queued
//! when the stream is free goes out as **one** `TsoRequest` whose count is
//! the sum, one request in flight per stream; the answer's range is split
//! among the callers in order. It is the project's load generator for the
//! door (`benches/peers`) and a small Rust client for programs that want
//! PD's protocol without a TiKV client.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::Channel;

use crate::pdpb::pd_client::PdClient;
use crate::pdpb::{RequestHeader, TsoRequest};

/// Callers queued at most; more wait to queue.
pub const QUEUE: usize = 16 * 1024;
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
    queue: mpsc::Sender<Waiting>,
}

impl PdTsoClient {
    /// Opens the stream at `url` (`http://HOST:PORT`) for cluster
    /// `cluster_id`; its dispatcher runs on the current tokio runtime.
    pub async fn connect(url: &str, cluster_id: u64) -> Result<PdTsoClient, Status> {
        let channel = Channel::from_shared(url.to_string())
            .map_err(|e| Status::invalid_argument(format!("{url}: {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("{url}: {e}")))?;
        let (requests, outgoing) = mpsc::channel(1);
        let answers = PdClient::new(channel).tso(ReceiverStream::new(outgoing)).await?.into_inner();
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(dispatch(cluster_id, waiting, requests, answers));
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
        self.queue
            .send(Waiting { count, reply })
            .await
            .map_err(|_| Status::unavailable("the stream has ended"))?;
        answer.await.map_err(|_| Status::unavailable("the stream has ended"))?
    }
}

/// The stream's one loop: take what is queued, ask for the sum, split the
/// answer in order; on an error, fail every caller and end.
async fn dispatch(
    cluster_id: u64,
    mut waiting: mpsc::Receiver<Waiting>,
    requests: mpsc::Sender<TsoRequest>,
    mut answers: tonic::Streaming<crate::pdpb::TsoResponse>,
) {
    let mut batch: Vec<Waiting> = Vec::with_capacity(1024);
    let header = Some(RequestHeader { cluster_id, ..RequestHeader::default() });
    while let Some(first) = waiting.recv().await {
        let mut total = first.count;
        batch.push(first);
        while let Ok(next) = waiting.try_recv() {
            if total + next.count > MAX_COUNT {
                // The next batch's first; the channel keeps no pushback, so
                // it is served alone right after this one.
                let result = ask(&requests, &mut answers, header.clone(), total).await;
                if !answer(&mut batch, total, result) {
                    let _ = next.reply.send(Err(Status::unavailable("the stream has ended")));
                    return;
                }
                total = 0;
            }
            total += next.count;
            batch.push(next);
        }
        let result = ask(&requests, &mut answers, header.clone(), total).await;
        if !answer(&mut batch, total, result) {
            return;
        }
    }
}

async fn ask(
    requests: &mpsc::Sender<TsoRequest>,
    answers: &mut tonic::Streaming<crate::pdpb::TsoResponse>,
    header: Option<RequestHeader>,
    count: u32,
) -> Result<Packed, Status> {
    let request = TsoRequest { header, count, dc_location: String::new() };
    requests.send(request).await.map_err(|_| Status::unavailable("the stream has ended"))?;
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

/// Splits `result` (the last of `total`) among `batch` in order; `false`
/// once the stream failed.
fn answer(batch: &mut Vec<Waiting>, total: u32, result: Result<Packed, Status>) -> bool {
    match result {
        Ok(last) => {
            let mut end = last - u64::from(total);
            for w in batch.drain(..) {
                end += u64::from(w.count);
                let _ = w.reply.send(Ok(end));
            }
            true
        }
        Err(status) => {
            for w in batch.drain(..) {
                let _ = w.reply.send(Err(status.clone()));
            }
            false
        }
    }
}
