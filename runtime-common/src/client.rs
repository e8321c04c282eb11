//! What both clients share around the core's [`ClientSession`]: their
//! options, the status they return, seeds, and the ticket map their callers
//! wait in.
//!
//! The protocol is the session's; the waiting (parked threads in
//! `leasetso-std`, woken tasks in `leasetso-smol`) is each client's own.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use leasetso_core::client::ClientConfigError;
use leasetso_core::{ClientConfig, ClientSession, Ticket};

use crate::error::ClientError;

/// The largest count one request can carry: a range must fit one millisecond.
pub const MAX_COUNT: u32 = leasetso_core::client::MAX_COUNT;

/// A client's TLS: the cluster's CA and the user's certificate
/// ([`crate::tls::CertsDir::client_config`]). Cheap to clone; two are equal
/// when they are the same configuration.
#[derive(Clone, Debug)]
pub struct ClientTls(pub Arc<rustls::ClientConfig>);

impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ClientTls {}

impl ClientTls {
    /// User `user`'s TLS from a `--certs-dir` (`ca.crt`, `client.USER.crt`
    /// and `.key`).
    pub fn from_dir(dir: &std::path::Path, user: &str) -> Result<Self, crate::tls::TlsError> {
        Ok(ClientTls(crate::tls::CertsDir::new(dir).client_config("client", user)?))
    }
}

/// How a client behaves; one type for both runtimes' clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// The cluster the client expects; 0 accepts any. A server of another
    /// cluster refuses the handshake.
    pub cluster_id: u64,
    /// How long one TCP connect may take. Zero waits as long as the system does.
    pub connect_timeout: Duration,
    /// How long one request may wait for its reply. Zero waits forever. A
    /// request that times out is retried (elsewhere) within the deadline.
    pub request_timeout: Duration,
    /// How long one call keeps retrying failures that may pass (not the
    /// leader, logical clock exhausted, internal error, connection refused,
    /// lost or closed, timeout) before it returns the last one. Counted from
    /// the call (for merged calls: from the oldest caller of the request).
    /// No new attempt starts after it, but the attempt under way finishes,
    /// so a call may return up to one connect and one request timeout later.
    /// Zero makes exactly one attempt. It should outlast a failover, about
    /// 2 × D_A.
    pub deadline: Duration,
    /// The first pause before a retry; it doubles per pause up to
    /// `max_backoff`, and each pause is drawn uniformly from `[pause/2, pause]`.
    pub retry_backoff: Duration,
    /// The longest pause between retries.
    pub max_backoff: Duration,
    /// The most timestamps merged into one request (PD: 10,000). A single
    /// call for more than this is sent alone. At most [`MAX_COUNT`]. A server
    /// configured with fewer timestamps per millisecond refuses a large merged
    /// batch as `CountTooLarge`; the client then halves its cap and resends
    /// the same callers, so only a caller whose own count is too large gets
    /// that error.
    pub max_batch: u32,
    /// The most requests outstanding on the connection at once. 0, the
    /// default, is the client's own choice, which both clients name with
    /// [`ClientOptions::in_flight`]: the blocking client keeps one (its
    /// sender thread writes a request and waits for the answer; callers
    /// arriving meanwhile are merged into the next request, which at many
    /// callers beats pipelining smaller ones), the async client two (callers
    /// arriving while a request is out go at once instead of waiting a round
    /// trip).
    pub max_in_flight: usize,
    /// TLS to the servers (`--certs-dir` and `--user`), or plaintext if `None`.
    pub tls: Option<ClientTls>,
}

impl Default for ClientOptions {
    /// Any cluster, 3 s to connect and per reply, retries for 7 s (over
    /// 2 × D_A = 6.1 s with the default 3 s lease) with pauses from 10 ms
    /// doubling to 250 ms, batches of up to 10,000 (the core's defaults,
    /// [`ClientConfig`]), and the client's own number of requests in flight.
    fn default() -> Self {
        let core = ClientConfig::default();
        ClientOptions {
            cluster_id: core.cluster_id,
            connect_timeout: Duration::from_secs(3),
            request_timeout: core.request_timeout,
            deadline: core.deadline,
            retry_backoff: core.retry_backoff,
            max_backoff: core.max_backoff,
            max_batch: core.max_batch,
            max_in_flight: 0,
            tls: None,
        }
    }
}

impl ClientOptions {
    /// The requests in flight these options allow a client whose own choice
    /// is `client_default`.
    pub fn in_flight(&self, client_default: usize) -> usize {
        if self.max_in_flight == 0 { client_default } else { self.max_in_flight }
    }

    /// The session's share of the options for a client whose own number of
    /// requests in flight is `client_default` (the connect timeout stays
    /// with the runtime: the connect is its own).
    pub fn config(&self, client_default: usize) -> ClientConfig {
        ClientConfig {
            cluster_id: self.cluster_id,
            request_timeout: self.request_timeout,
            deadline: self.deadline,
            retry_backoff: self.retry_backoff,
            max_backoff: self.max_backoff,
            max_batch: self.max_batch,
            max_in_flight: self.in_flight(client_default),
        }
    }

    /// A client session over `seeds` with these options, for a client whose
    /// own number of requests in flight is `client_default`, its jitter
    /// seeded by [`rng_seed`].
    pub fn session<E: Clone>(
        &self,
        seeds: &[SocketAddr],
        client_default: usize,
    ) -> Result<ClientSession<E>, ClientError> {
        ClientSession::new(self.config(client_default), seeds, rng_seed()).map_err(|e| match e {
            ClientConfigError::NoSeeds => ClientError::NoSeeds,
            ClientConfigError::NoneInFlight => {
                ClientError::InvalidOptions { what: "max_in_flight must be at least 1" }
            }
        })
    }
}

/// A node's status, as it reports it (the core's, with its status line).
pub use leasetso_core::client::StatusReply as NodeStatus;

/// What each waiting caller of a client holds, by its ticket.
///
/// Tickets are numbered in the order the calls were queued, and calls are
/// answered mostly in that order (a reply's range goes to its callers in
/// queue order, C1). So a deque indexed from the oldest ticket still held
/// finds, inserts and removes in constant time without hashing; a removal
/// out of order leaves a hole, dropped once the holes before it are gone.
#[derive(Debug)]
pub struct TicketMap<V> {
    /// The ticket of `items[0]`.
    base: u64,
    items: VecDeque<Option<V>>,
    len: usize,
}

impl<V> Default for TicketMap<V> {
    fn default() -> Self {
        TicketMap { base: 0, items: VecDeque::new(), len: 0 }
    }
}

impl<V> TicketMap<V> {
    /// Holds `value` for `ticket`, returning what it held before.
    pub fn insert(&mut self, ticket: Ticket, value: V) -> Option<V> {
        let t = ticket.get();
        if self.items.is_empty() {
            self.base = t;
        }
        if t < self.base {
            // An older ticket than any held (never, for a session's own
            // increasing tickets): grow at the front.
            for _ in t..self.base {
                self.items.push_front(None);
            }
            self.base = t;
        }
        let i = self.index(t);
        if i >= self.items.len() {
            self.items.resize_with(i + 1, || None);
        }
        let old = self.items[i].replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// What `ticket` holds.
    pub fn get(&self, ticket: &Ticket) -> Option<&V> {
        self.items.get(self.position(ticket)?)?.as_ref()
    }

    /// What `ticket` holds, to change.
    pub fn get_mut(&mut self, ticket: &Ticket) -> Option<&mut V> {
        let i = self.position(ticket)?;
        self.items.get_mut(i)?.as_mut()
    }

    /// Takes what `ticket` holds.
    pub fn remove(&mut self, ticket: &Ticket) -> Option<V> {
        let i = self.position(ticket)?;
        let value = self.items.get_mut(i)?.take()?;
        self.len -= 1;
        while let Some(None) = self.items.front() {
            self.items.pop_front();
            self.base += 1;
        }
        while let Some(None) = self.items.back() {
            self.items.pop_back();
        }
        Some(value)
    }

    /// Every value held, oldest ticket first.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.items.iter().flatten()
    }

    /// How many tickets hold a value.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no ticket holds a value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where `ticket` would be in `items`; `None` for a ticket older than
    /// any held (it holds nothing).
    fn position(&self, ticket: &Ticket) -> Option<usize> {
        let t = ticket.get();
        (t >= self.base).then(|| self.index(t))
    }

    /// `t`'s place in `items`; `t >= base`. Tickets are dense (a session
    /// numbers its calls one by one), so the distance is at most the calls
    /// outstanding and fits a `usize`.
    fn index(&self, t: u64) -> usize {
        (t - self.base) as usize
    }
}

/// A seed that differs between clients: the wall clock's nanoseconds (apart
/// for processes started at different times), a process-wide count of
/// clients (apart within a process) and the process id.
pub fn rng_seed() -> u64 {
    static CLIENTS: AtomicU64 = AtomicU64::new(0);
    let n = CLIENTS.fetch_add(1, Ordering::Relaxed);
    // Truncating keeps the fast-changing low bits.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (u64::from(std::process::id()) << 40)
}

/// Parses a comma-separated list of seed addresses, `"host:port,host:port"`,
/// as a command line gives them (`get-ts --addr a:7400,b:7400,c:7400`).
///
/// Whitespace around entries and empty entries (a trailing comma) are
/// ignored; host names are resolved, each to all its addresses, and an
/// address listed twice is kept once, in its first place. An empty list is
/// [`ClientError::NoSeeds`]; an entry that is not `host:port` or does not
/// resolve is [`ClientError::Seed`], naming the entry: a mistyped seed is
/// reported rather than silently skipped, since it may be the leader.
pub fn parse_seeds(list: &str) -> Result<Vec<SocketAddr>, ClientError> {
    let mut seeds = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let seed_err =
            |source: io::Error| ClientError::Seed { entry: entry.to_owned(), source: Arc::new(source) };
        let mut resolved = entry.to_socket_addrs().map_err(seed_err)?.peekable();
        if resolved.peek().is_none() {
            return Err(seed_err(io::Error::new(io::ErrorKind::NotFound, "resolves to no address")));
        }
        for addr in resolved {
            push_new(&mut seeds, addr);
        }
    }
    if seeds.is_empty() {
        return Err(ClientError::NoSeeds);
    }
    Ok(seeds)
}

/// Resolves `addr` to seeds, each address once, in order.
pub fn resolve_seeds(addr: impl ToSocketAddrs) -> Result<Vec<SocketAddr>, ClientError> {
    let mut seeds = Vec::new();
    for a in addr.to_socket_addrs().map_err(|e| ClientError::Resolve { source: Arc::new(e) })? {
        push_new(&mut seeds, a);
    }
    Ok(seeds)
}

/// Appends `addr` unless it is already there.
fn push_new(seeds: &mut Vec<SocketAddr>, addr: SocketAddr) {
    if !seeds.contains(&addr) {
        seeds.push(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_clients_made_at_once_draw_differently() {
        assert_ne!(rng_seed(), rng_seed());
    }

    /// The ticket map against a `BTreeMap` over a pseudo-random mix of
    /// inserts (in ticket order, as a client makes them) and removals (in
    /// any order, as callers leave and answers come).
    #[test]
    fn the_ticket_map_agrees_with_a_btree_map() {
        let mut session: ClientSession<()> =
            ClientOptions::default().session(&["127.0.0.1:1".parse().unwrap()], 2).unwrap();
        let mut map = TicketMap::default();
        let mut model = std::collections::BTreeMap::new();
        let mut held: Vec<Ticket> = Vec::new();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let now = leasetso_core::Instant::from_millis(0);
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 3 != 0 || held.is_empty() {
                let t = session.push_call(leasetso_core::client::Call::Ts { count: 1 }, now);
                assert_eq!(map.insert(t, step), None);
                model.insert(t, step);
                held.push(t);
            } else {
                // Mostly the oldest, sometimes any.
                let i = if x % 7 == 0 { (x >> 8) as usize % held.len() } else { 0 };
                let t = held.remove(i);
                assert_eq!(map.remove(&t), model.remove(&t));
                assert_eq!(map.remove(&t), None, "removed twice");
            }
            assert_eq!(map.len(), model.len());
            if step % 97 == 0 {
                assert!(map.values().copied().eq(model.values().copied()), "values in ticket order");
                for t in &held {
                    assert_eq!(map.get(t), model.get(t));
                }
            }
        }
        // The deque holds no more places than the span of live tickets.
        if let (Some(lo), Some(hi)) = (held.iter().min(), held.iter().max()) {
            assert!(map.items.len() as u64 <= hi.get() - lo.get() + 1);
        }
    }

    #[test]
    fn default_options_are_the_cores_with_the_clients_own_in_flight() {
        let opts = ClientOptions::default();
        assert_eq!(opts.config(1), ClientConfig { max_in_flight: 1, ..ClientConfig::default() });
        assert_eq!(opts.config(2), ClientConfig { max_in_flight: 2, ..ClientConfig::default() });
        assert_eq!(opts.connect_timeout, Duration::from_secs(3));
        let three = ClientOptions { max_in_flight: 3, ..opts.clone() };
        assert_eq!((three.in_flight(1), three.in_flight(2)), (3, 3), "a number given is kept");
        let seeds = ["127.0.0.1:1".parse().unwrap()];
        assert!(opts.session::<()>(&seeds, 1).is_ok());
        assert!(matches!(opts.session::<()>(&[], 1), Err(ClientError::NoSeeds)));
    }

    #[test]
    fn seeds_are_parsed_in_order_without_repeats() {
        let seeds = parse_seeds(" 127.0.0.1:1, 127.0.0.1:2,127.0.0.1:1,").unwrap();
        assert_eq!(seeds, vec!["127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap()]);
        assert!(matches!(parse_seeds(" , "), Err(ClientError::NoSeeds)));
        assert!(matches!(parse_seeds("nohostport"), Err(ClientError::Seed { .. })));
    }
}
