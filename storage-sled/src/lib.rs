//! leasetso-sled: the durable window store of leasetso, on sled 0.34.7.
//!
//! [`SledStore`] implements the store contract of `leasetso_core::store`
//! (rules S1 fence, S2 primary, S3 growth) with the same replies as the
//! reference `MemStore`. Every mutating operation is one sled transaction,
//! flushed before it returns, so a reply of success means the change is on disk.
//!
//! Durability caveat: sled flushes with `sync_file_range`, which survives a
//! process crash but not necessarily a power loss (or a kernel crash) on every
//! filesystem. A deployment that must survive losing power on a quorum of
//! nodes at once needs more than this store.
#![warn(missing_docs, unreachable_pub)]

use std::path::Path;
use std::time::Duration;

use leasetso_core::{Ballot, NodeId, StoreHealth, StoreOk, StoreOp, StoreReject, StoreReply};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

/// The key of the cluster id the data dir was created for (u64).
const CLUSTER_ID: &str = "cluster_id";
/// The key of the saved window end in milliseconds (u64).
const WINDOW: &str = "window_end_ms";
/// The key of the registered primary: node id u16 and tag ballot (20 bytes);
/// absent when none is.
const PRIMARY: &str = "primary";
/// The key of the node's restart counter (u64).
const RESTART: &str = "restart";
/// The key of the node id (u16) the data dir belongs to.
const NODE_ID: &str = "node_id";
/// The key of the fence (ballot, 18 bytes): one lease, one fence.
const FENCE: &str = "fence/leader";

/// The file beside sled's log holding the last restart counter stored, as a
/// check on the log: sled recovers a log cut short (a torn write, a copy
/// of part of a dir) by serving the prefix it can read, silently, so a
/// replica could come back with an older state than it acknowledged. The
/// restart counter is bumped at every start and the marker written after
/// it; a log whose counter is below its marker lost acknowledged writes and
/// is refused.
const RESTART_MARKER: &str = "restart.marker";

/// The length of an encoded ballot: counter u64, restart u64, node u16.
const BALLOT_LEN: usize = 18;

/// Why a store operation was refused or failed.
///
/// The first three are the contract's rejections: nothing was changed. The
/// others are failures of this replica; the caller must assume nothing about
/// its state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// S1: a newer leadership has fenced this lease.
    #[error("fenced by newer ballot {by}")]
    Fenced {
        /// The stored fence.
        by: Ballot,
    },
    /// S2: a dedicated primary is registered.
    #[error("primary {id} is registered")]
    PrimaryExists {
        /// The registered primary.
        id: NodeId,
    },
    /// S3: the stored window is already at least the one offered.
    #[error("stored window {stored} ms is not below the one offered")]
    NotGreater {
        /// The stored window end, in milliseconds.
        stored: u64,
    },
    /// The data dir belongs to another cluster: serving it would mix the
    /// windows and fences of two clusters.
    #[error("data dir belongs to cluster {stored}, not {expected}")]
    ClusterMismatch {
        /// The cluster id recorded in the data dir.
        stored: u64,
        /// The cluster id this node was configured with.
        expected: u64,
    },
    /// The data dir belongs to another node of the cluster: serving it would
    /// make this node answer for another's replica and reuse its ballots.
    #[error("data dir belongs to node {}, not node {}", stored.0 + 1, expected.0 + 1)]
    NodeMismatch {
        /// The node id recorded in the data dir.
        stored: NodeId,
        /// The node id this node was configured with.
        expected: NodeId,
    },
    /// sled failed (I/O error, or corruption sled itself detected).
    #[error("sled: {0}")]
    Io(#[from] sled::Error),
    /// An offline tool found no store in the directory.
    #[error("no leasetso store in {0} (no sled log `db`)")]
    NoStore(std::path::PathBuf),
    /// An offline tool found the store in use: its node runs.
    #[error("the store in {0} is in use: stop its node first")]
    InUse(std::path::PathBuf),
    /// A stored value does not decode: the data dir was damaged or written by
    /// something else.
    #[error("corrupt value under key {key:?}: {detail}")]
    Corrupt {
        /// The key whose value is bad.
        key: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

impl StoreError {
    /// The contract's answer for this error, as the core expects it: the
    /// rejections keep their meaning, every failure becomes
    /// [`StoreReject::Failed`] (state unknown to the caller).
    pub fn to_reject(&self) -> StoreReject {
        match *self {
            StoreError::Fenced { by } => StoreReject::Fenced { by },
            StoreError::PrimaryExists { id } => StoreReject::PrimaryExists { id },
            StoreError::NotGreater { stored } => StoreReject::NotGreater { stored },
            StoreError::ClusterMismatch { .. }
            | StoreError::NodeMismatch { .. }
            | StoreError::Io(_)
            | StoreError::NoStore(_)
            | StoreError::InUse(_)
            | StoreError::Corrupt { .. } => StoreReject::Failed,
        }
    }

    /// The replica's health after this error: `None` for the contract's
    /// rejections (the replica works; it said no), the kind of failure
    /// otherwise, as `status` reports it.
    pub fn health(&self) -> Option<StoreHealth> {
        match self {
            StoreError::Fenced { .. } | StoreError::PrimaryExists { .. } | StoreError::NotGreater { .. } => {
                None
            }
            StoreError::Corrupt { .. }
            | StoreError::ClusterMismatch { .. }
            | StoreError::NodeMismatch { .. } => Some(StoreHealth::Corrupt),
            StoreError::Io(sled::Error::Io(io)) => Some(match io.kind() {
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => StoreHealth::NoSpace,
                std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied => {
                    StoreHealth::ReadOnly
                }
                // sled reports some failures as `Other` with the OS's words.
                _ if io.raw_os_error() == Some(28) || io.to_string().contains("No space left") => {
                    StoreHealth::NoSpace
                }
                _ => StoreHealth::Io,
            }),
            StoreError::Io(sled::Error::Corruption { .. }) => Some(StoreHealth::Corrupt),
            StoreError::Io(e) if e.to_string().contains("No space left") => Some(StoreHealth::NoSpace),
            StoreError::Io(_) | StoreError::NoStore(_) | StoreError::InUse(_) => Some(StoreHealth::Io),
        }
    }
}

/// What a stopped node's store holds (`leasetso data inspect`), read
/// without writing anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// The cluster the store was created for.
    pub cluster_id: Option<u64>,
    /// The node the store belongs to.
    pub node: Option<NodeId>,
    /// The restart counter in the log.
    pub restart: u64,
    /// The restart counter in the marker file beside the log (`None`: no marker).
    pub marker: Option<u64>,
    /// The fence ([`Ballot::ZERO`]: never raised).
    pub fence: Ballot,
    /// The saved window end in ms (0: never saved).
    pub window_end_ms: u64,
    /// The primary registration, if any.
    pub primary: Option<(NodeId, Ballot)>,
}

/// What a transaction closure returns: aborts carry a [`StoreError`].
type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// One node's durable store replica: the saved window, a fence per lease
/// name, the registered primary and the node's restart counter.
///
/// Cloning is cheap and clones share the same database (sled's `Db` is
/// reference-counted); sled serializes their transactions.
#[derive(Clone, Debug)]
pub struct SledStore {
    db: sled::Db,
    dir: std::path::PathBuf,
}

impl SledStore {
    /// Opens or creates the store in `dir`, for the cluster `cluster_id`.
    ///
    /// The first open records `cluster_id`; a later open with another id
    /// fails with [`StoreError::ClusterMismatch`], so a data dir never serves
    /// the wrong cluster. Every stored value is decoded once here, so a
    /// damaged dir fails at startup ([`StoreError::Corrupt`] or sled's own
    /// error) rather than at the first save.
    ///
    /// sled recovers a damaged log by dropping what it cannot read, silently:
    /// a garbled `db` file opens as an empty database. An empty replica would
    /// answer loads with window 0 and fence zero, undoing the quorum's
    /// guarantees, so a dir whose sled files predate this open but hold no
    /// cluster id is refused as [`StoreError::Corrupt`]. The price: if the very
    /// first start dies before the id is flushed, the operator must remove the
    /// dir.
    pub fn open(dir: impl AsRef<Path>, cluster_id: u64) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        // sled keeps its log in `db`: if it exists, this is not a new store.
        let existed = dir.join("db").try_exists().map_err(|e| StoreError::Io(sled::Error::Io(e)))?;
        let db = open_db(dir)?;
        let store = SledStore { db, dir: dir.to_path_buf() };
        store.transact(|t| {
            match read_u64(t, CLUSTER_ID)? {
                Some(stored) if stored != cluster_id => {
                    return Err(abort(StoreError::ClusterMismatch { stored, expected: cluster_id }));
                }
                Some(_) => {}
                None if existed => {
                    return Err(abort(StoreError::Corrupt {
                        key: CLUSTER_ID,
                        detail: "missing from an existing store: its data was lost, or its first \
                                 start was interrupted; remove the data dir to start afresh"
                            .into(),
                    }));
                }
                None => {
                    t.insert(CLUSTER_ID, &cluster_id.to_be_bytes()[..])?;
                    t.flush();
                }
            }
            read_u64(t, WINDOW)?;
            read_u64(t, RESTART)?;
            read_primary(t)?;
            read_fence(t)?;
            Ok(())
        })?;
        store.check_marker()?;
        Ok(store)
    }

    /// Refuses a log whose restart counter is below the marker (see
    /// [`RESTART_MARKER`]); a missing marker is written (a store made before
    /// markers existed, or one whose first start died before writing it).
    fn check_marker(&self) -> Result<(), StoreError> {
        let restart = self.restart()?;
        let path = self.dir.join(RESTART_MARKER);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let marker = <[u8; 8]>::try_from(bytes.as_slice()).map(u64::from_be_bytes).map_err(|_| {
                    StoreError::Corrupt {
                        key: RESTART_MARKER,
                        detail: format!("{} bytes, expected 8", bytes.len()),
                    }
                })?;
                if restart < marker {
                    return Err(StoreError::Corrupt {
                        key: RESTART,
                        detail: format!(
                            "restart counter {restart} is below the {marker} this dir last acknowledged: its log \
                             lost writes (cut short or copied in part); remove the data dir to start the node afresh"
                        ),
                    });
                }
                if restart > marker { self.write_marker(restart) } else { Ok(()) }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.write_marker(restart),
            Err(e) => Err(StoreError::Io(sled::Error::Io(e))),
        }
    }

    /// Writes the marker durably: a temporary file, fsync, rename, fsync of the dir.
    fn write_marker(&self, restart: u64) -> Result<(), StoreError> {
        use std::io::Write;
        let io = |e| StoreError::Io(sled::Error::Io(e));
        let tmp = self.dir.join("restart.marker.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&restart.to_be_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, self.dir.join(RESTART_MARKER)).map_err(io)?;
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)
    }

    /// Checks S2 (if `check_primary`) then S1, in the reference store's
    /// order so replies match it. Both reads are in the caller's
    /// transaction: the check and the write that follows are one atomic step.
    fn check(t: &TransactionalTree, fence: Ballot, check_primary: bool) -> TxResult<()> {
        if check_primary {
            if let Some((id, _)) = read_primary(t)? {
                return Err(abort(StoreError::PrimaryExists { id }));
            }
        }
        let by = read_fence(t)?;
        if by > fence { Err(abort(StoreError::Fenced { by })) } else { Ok(()) }
    }

    /// Raises the fence to `fence` (S1, S2 if `check_primary`) and returns
    /// the saved window end in milliseconds (0 if never saved).
    ///
    /// The raised fence is flushed before this returns: a new leader counts
    /// on it to stop an older one from saving after a crash of this node.
    pub fn load(&self, fence: Ballot, check_primary: bool) -> Result<u64, StoreError> {
        self.transact(|t| {
            Self::check(t, fence, check_primary)?;
            let window = read_u64(t, WINDOW)?.unwrap_or(0);
            t.insert(FENCE, &encode_ballot(fence)[..])?;
            t.flush();
            Ok(window)
        })
    }

    /// Saves a new window end, checking S2 (if `check_primary`), S1, then
    /// S3; on success writes the window and raises the fence, durably, in
    /// the same transaction as the checks.
    pub fn save(&self, window_end_ms: u64, fence: Ballot, check_primary: bool) -> Result<(), StoreError> {
        self.transact(|t| {
            Self::check(t, fence, check_primary)?;
            let stored = read_u64(t, WINDOW)?.unwrap_or(0);
            if window_end_ms <= stored {
                return Err(abort(StoreError::NotGreater { stored }));
            }
            t.insert(FENCE, &encode_ballot(fence)[..])?;
            t.insert(WINDOW, &window_end_ms.to_be_bytes()[..])?;
            t.flush();
            Ok(())
        })
    }

    /// Registers `(id, tag)` as the primary (S4), replacing any earlier
    /// registration, durably. Returns what is registered.
    pub fn register_primary(&self, id: NodeId, tag: Ballot) -> Result<Option<(NodeId, Ballot)>, StoreError> {
        self.transact(|t| {
            t.insert(PRIMARY, &encode_primary(id, tag)[..])?;
            t.flush();
            Ok(Some((id, tag)))
        })
    }

    /// Clears the registration if it is exactly `(id, tag)` (S4): a stale
    /// primary, or an operator with an old tag, never clears a newer one.
    /// Returns what is registered afterwards.
    pub fn clear_primary(&self, id: NodeId, tag: Ballot) -> Result<Option<(NodeId, Ballot)>, StoreError> {
        self.transact(|t| {
            let registered = read_primary(t)?;
            if registered == Some((id, tag)) {
                t.remove(PRIMARY)?;
                t.flush();
                return Ok(None);
            }
            Ok(registered)
        })
    }

    /// Increments the node's restart counter, flushes it and returns the new
    /// value (1 on the first start). Ballots carry it so that a ballot is
    /// never reused after a crash, which is why it must be durable before
    /// the node campaigns.
    pub fn bump_restart(&self) -> Result<u64, StoreError> {
        self.transact(|t| {
            let restart = read_u64(t, RESTART)?.unwrap_or(0);
            let next = restart.checked_add(1).ok_or_else(|| {
                abort(StoreError::Corrupt { key: RESTART, detail: "restart counter at u64::MAX".into() })
            })?;
            t.insert(RESTART, &next.to_be_bytes()[..])?;
            t.flush();
            Ok(next)
        })
        .and_then(|next| self.write_marker(next).map(|()| next))
    }

    /// Records that this data dir belongs to node `node` (on its first
    /// start), or checks that it does: a dir of another node is refused with
    /// [`StoreError::NodeMismatch`] and nothing is written.
    pub fn claim_node(&self, node: NodeId) -> Result<(), StoreError> {
        self.transact(|t| match t.get(NODE_ID)? {
            Some(v) => {
                let bytes: [u8; 2] = v.as_ref().try_into().map_err(|_| {
                    abort(StoreError::Corrupt { key: NODE_ID, detail: format!("{} bytes, not 2", v.len()) })
                })?;
                let stored = NodeId(u16::from_be_bytes(bytes));
                if stored == node {
                    Ok(())
                } else {
                    Err(abort(StoreError::NodeMismatch { stored, expected: node }))
                }
            }
            None => {
                t.insert(NODE_ID, &node.0.to_be_bytes()[..])?;
                t.flush();
                Ok(())
            }
        })
    }

    /// The restart counter as stored (0 for a data dir this node never
    /// started on: new, or replaced with its disk).
    pub fn restart(&self) -> Result<u64, StoreError> {
        Ok(decode_u64(RESTART, self.db.get(RESTART)?.as_deref())?.unwrap_or(0))
    }

    /// Raises the restart counter to at least `at_least`, durably, and
    /// returns it: a node that lost its counter with its disk starts above
    /// the restarts its peers saw from its earlier incarnations.
    pub fn raise_restart(&self, at_least: u64) -> Result<u64, StoreError> {
        self.transact(|t| {
            let restart = read_u64(t, RESTART)?.unwrap_or(0).max(at_least);
            t.insert(RESTART, &restart.to_be_bytes()[..])?;
            t.flush();
            Ok(restart)
        })
        .and_then(|restart| self.write_marker(restart).map(|()| restart))
    }

    /// Performs one contract operation, answering as the core expects (see
    /// [`StoreError::to_reject`]).
    pub fn execute(&self, op: StoreOp) -> StoreReply {
        self.execute_raw(op).map_err(|e| e.to_reject())
    }

    /// [`execute`](Self::execute) with the error as it happened, for the
    /// caller that keeps the replica's health (and logs the cause).
    pub fn execute_raw(&self, op: StoreOp) -> Result<StoreOk, StoreError> {
        match op {
            StoreOp::Load { fence, check_primary } => {
                self.load(fence, check_primary).map(|window_end_ms| StoreOk::Loaded { window_end_ms })
            }
            StoreOp::Save { window_end_ms, fence, check_primary } => {
                self.save(window_end_ms, fence, check_primary).map(|()| StoreOk::Saved)
            }
            StoreOp::RegisterPrimary { id, tag } => {
                self.register_primary(id, tag).map(|registered| StoreOk::Primary { registered })
            }
            StoreOp::ClearPrimary { id, tag } => {
                self.clear_primary(id, tag).map(|registered| StoreOk::Primary { registered })
            }
            StoreOp::ReadPrimary => self.primary().map(|registered| StoreOk::Primary { registered }),
        }
    }

    /// The directory it lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens the existing store in `dir` for an offline tool: nothing is
    /// created, no cluster id checked, nothing written.
    fn open_offline(dir: &Path) -> Result<SledStore, StoreError> {
        if !dir.join("db").is_file() {
            return Err(StoreError::NoStore(dir.to_path_buf()));
        }
        match open_db(dir) {
            Ok(db) => Ok(SledStore { db, dir: dir.to_path_buf() }),
            Err(e) if is_lock_contention(&e) => Err(StoreError::InUse(dir.to_path_buf())),
            Err(e) => Err(e.into()),
        }
    }

    /// What the stopped node's store in `dir` holds, read without writing.
    pub fn inspect(dir: impl AsRef<Path>) -> Result<Inspection, StoreError> {
        let store = Self::open_offline(dir.as_ref())?;
        let node = match store.db.get(NODE_ID)? {
            Some(v) => Some(NodeId(u16::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt { key: NODE_ID, detail: format!("{} bytes, not 2", v.len()) }
            })?))),
            None => None,
        };
        let marker = match std::fs::read(store.dir.join(RESTART_MARKER)) {
            Ok(bytes) => {
                Some(<[u8; 8]>::try_from(bytes.as_slice()).map(u64::from_be_bytes).map_err(|_| {
                    StoreError::Corrupt {
                        key: RESTART_MARKER,
                        detail: format!("{} bytes, expected 8", bytes.len()),
                    }
                })?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::Io(sled::Error::Io(e))),
        };
        Ok(Inspection {
            cluster_id: decode_u64(CLUSTER_ID, store.db.get(CLUSTER_ID)?.as_deref())?,
            node,
            restart: store.restart()?,
            marker,
            fence: store.fence()?,
            window_end_ms: store.window_end_ms()?,
            primary: store.primary()?,
        })
    }

    /// The repair of a store wedged by a fence no leadership can pass (a
    /// forged or corrupt one): resets the fence of the stopped node's store
    /// in `dir` to zero, durably, and returns the old one. The window, the
    /// registration and the restart counter stay. Safe with the whole
    /// cluster stopped: no leader is left for the fence to stop, and the
    /// next leadership raises the fence of every replica it loads again.
    pub fn reset_fence(dir: impl AsRef<Path>) -> Result<Ballot, StoreError> {
        let store = Self::open_offline(dir.as_ref())?;
        store.transact(|t| {
            let old = read_fence(t)?;
            t.remove(FENCE)?;
            t.flush();
            Ok(old)
        })
    }

    /// The saved window end in milliseconds (0 if never saved).
    pub fn window_end_ms(&self) -> Result<u64, StoreError> {
        Ok(decode_u64(WINDOW, self.db.get(WINDOW)?.as_deref())?.unwrap_or(0))
    }

    /// The stored fence ([`Ballot::ZERO`] if never raised).
    pub fn fence(&self) -> Result<Ballot, StoreError> {
        decode_ballot(FENCE, self.db.get(FENCE)?.as_deref())
    }

    /// The answer to a peer's restart query (the store-thread job both
    /// runtimes run for `PeerFrame::RestartQuery`): the bound of what this
    /// replica's fence and `seen_on_links` (what this node's peer links saw
    /// of the asker's lease messages) say about the ballots of node `asker`.
    /// The fence counts only if the asker holds it. A replica that cannot
    /// read its fence must not answer (the asker waits for a quorum of
    /// answers), hence the error.
    pub fn restart_info(&self, asker: NodeId, seen_on_links: Ballot) -> Result<Ballot, StoreError> {
        let fence = self.fence()?;
        let fence = if fence.node == asker { fence } else { Ballot::ZERO };
        Ok(leasetso_core::recovery::bound(fence, seen_on_links))
    }

    /// The registered primary and its tag, if any.
    pub fn primary(&self) -> Result<Option<(NodeId, Ballot)>, StoreError> {
        decode_primary(self.db.get(PRIMARY)?.as_deref())
    }

    /// Runs `f` as one transaction on the store's tree and unwraps sled's
    /// error layers into a [`StoreError`].
    ///
    /// `f` may run more than once (sled retries on conflicts), so it only
    /// reads and writes through the transactional tree it is given.
    fn transact<A>(&self, f: impl Fn(&TransactionalTree) -> TxResult<A>) -> Result<A, StoreError> {
        self.db.transaction(f).map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Io(e),
        })
    }
}

/// How long [`SledStore::open`] waits for the file lock of a store dropped
/// just before in this process.
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Opens sled on `dir`, waiting up to [`LOCK_WAIT`] for its file lock.
///
/// sled 0.34 releases the lock only when its background threads let go of
/// the database, some time after the last handle is dropped, so an
/// immediate reopen in the same process can fail spuriously. The wait is
/// bounded so that a dir really held by another live store still fails:
/// that lock is what keeps two nodes from sharing one replica.
///
/// The periodic flusher is off: every commit flushes itself before it
/// returns, and the store writes nothing outside transactions.
fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new().path(dir).flush_every_ms(None).open() {
            Err(e) if is_lock_contention(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

/// Whether `e` is sled's failure to take the dir's file lock. sled 0.34.7
/// reports it only as an `Other` I/O error with this message.
fn is_lock_contention(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock"))
}

/// Wraps a typed reason to abort a transaction.
fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

/// Reads and decodes a u64 inside a transaction.
fn read_u64(t: &TransactionalTree, key: &'static str) -> TxResult<Option<u64>> {
    decode_u64(key, t.get(key)?.as_deref()).map_err(abort)
}

/// Reads and decodes the fence inside a transaction.
fn read_fence(t: &TransactionalTree) -> TxResult<Ballot> {
    decode_ballot(FENCE, t.get(FENCE)?.as_deref()).map_err(abort)
}

/// Reads and decodes the registered primary inside a transaction.
fn read_primary(t: &TransactionalTree) -> TxResult<Option<(NodeId, Ballot)>> {
    decode_primary(t.get(PRIMARY)?.as_deref()).map_err(abort)
}

/// The error for a value of the wrong length.
fn bad_len(key: &'static str, len: usize, expected: usize) -> StoreError {
    StoreError::Corrupt { key, detail: format!("{len} bytes, expected {expected}") }
}

/// Decodes a big-endian u64; `None` when the key is absent.
fn decode_u64(key: &'static str, bytes: Option<&[u8]>) -> Result<Option<u64>, StoreError> {
    bytes
        .map(|b| <[u8; 8]>::try_from(b).map(u64::from_be_bytes).map_err(|_| bad_len(key, b.len(), 8)))
        .transpose()
}

/// Decodes the registered primary (node id u16, tag ballot); `None` when absent.
fn decode_primary(bytes: Option<&[u8]>) -> Result<Option<(NodeId, Ballot)>, StoreError> {
    let Some(b) = bytes else { return Ok(None) };
    if b.len() != 2 + BALLOT_LEN {
        return Err(bad_len(PRIMARY, b.len(), 2 + BALLOT_LEN));
    }
    let id = NodeId(u16::from_be_bytes([b[0], b[1]]));
    Ok(Some((id, decode_ballot(PRIMARY, Some(&b[2..]))?)))
}

/// Encodes a registration: the node id, big-endian, then its tag.
fn encode_primary(id: NodeId, tag: Ballot) -> [u8; 2 + BALLOT_LEN] {
    let mut out = [0; 2 + BALLOT_LEN];
    out[..2].copy_from_slice(&id.0.to_be_bytes());
    out[2..].copy_from_slice(&encode_ballot(tag));
    out
}

/// Encodes a ballot as counter, restart, node, all big-endian, so the byte
/// order is also the ballot order.
fn encode_ballot(b: Ballot) -> [u8; BALLOT_LEN] {
    let mut out = [0; BALLOT_LEN];
    out[0..8].copy_from_slice(&b.counter.to_be_bytes());
    out[8..16].copy_from_slice(&b.restart.to_be_bytes());
    out[16..18].copy_from_slice(&b.node.0.to_be_bytes());
    out
}

/// Decodes a ballot; [`Ballot::ZERO`] when absent, as in the reference store.
fn decode_ballot(key: &'static str, bytes: Option<&[u8]>) -> Result<Ballot, StoreError> {
    let Some(b) = bytes else { return Ok(Ballot::ZERO) };
    let a = <[u8; BALLOT_LEN]>::try_from(b).map_err(|_| bad_len(key, b.len(), BALLOT_LEN))?;
    let (mut counter, mut restart, mut node) = ([0; 8], [0; 8], [0; 2]);
    counter.copy_from_slice(&a[0..8]);
    restart.copy_from_slice(&a[8..16]);
    node.copy_from_slice(&a[16..18]);
    Ok(Ballot::new(
        u64::from_be_bytes(counter),
        u64::from_be_bytes(restart),
        NodeId(u16::from_be_bytes(node)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(counter: u64) -> Ballot {
        Ballot::new(counter, 1, NodeId(0))
    }

    #[test]
    fn ballot_encoding_round_trips_and_orders_like_ballots() {
        let ballots = [
            Ballot::ZERO,
            Ballot::new(1, 9, NodeId(9)),
            Ballot::new(2, 0, NodeId(0)),
            Ballot::new(2, 0, NodeId(5)),
            Ballot::new(2, 1, NodeId(0)),
            Ballot::new(u64::MAX, u64::MAX, NodeId(u16::MAX)),
        ];
        for x in ballots {
            assert_eq!(decode_ballot(FENCE, Some(&encode_ballot(x))).unwrap(), x);
            for y in ballots {
                assert_eq!(encode_ballot(x).cmp(&encode_ballot(y)), x.cmp(&y), "{x} vs {y}");
            }
        }
    }

    /// Corruption that appears while the store is open (a value written
    /// behind its back) fails every operation that reads it, without a panic
    /// and without a write.
    #[test]
    fn corrupt_value_while_open_fails_the_operations_that_read_it() {
        let dir = tempfile::TempDir::new().unwrap();
        let s = SledStore::open(dir.path(), 7).unwrap();
        s.save(10, b(1), true).unwrap();

        s.db.insert(FENCE, &[1, 2, 3][..]).unwrap();
        fn corrupt<T>(r: Result<T, StoreError>, key: &str) -> bool {
            matches!(r, Err(StoreError::Corrupt { key: k, .. }) if k == key)
        }
        assert!(corrupt(s.load(b(2), false), FENCE));
        assert!(corrupt(s.save(20, b(2), false), FENCE));
        assert!(corrupt(s.fence(), FENCE));
        assert_eq!(s.execute(StoreOp::Load { fence: b(2), check_primary: false }), Err(StoreReject::Failed));
        s.db.insert(FENCE, &encode_ballot(b(2))[..]).unwrap();

        s.db.insert(WINDOW, &[0; 9][..]).unwrap();
        assert!(corrupt(s.load(b(3), false), WINDOW));
        assert!(corrupt(s.window_end_ms(), WINDOW));
        assert_eq!(s.fence().unwrap(), b(2), "a failed load raises nothing");

        s.db.insert(PRIMARY, &[0][..]).unwrap();
        assert!(corrupt(s.clear_primary(NodeId(0), b(3)), PRIMARY));
        assert!(corrupt(s.primary(), PRIMARY));
        // A checked save reads the registration: it fails, it does not pass.
        assert!(corrupt(s.save(30, b(3), true), PRIMARY));
        assert_eq!(s.fence().unwrap(), b(2), "a failed save raises nothing");

        s.db.insert(RESTART, &[][..]).unwrap();
        assert!(matches!(s.bump_restart(), Err(StoreError::Corrupt { key: RESTART, .. })));
    }

    /// The restart query's answer: the fence counts only when the asker
    /// holds it, and combines with what the links saw component-wise.
    #[test]
    fn restart_info_bounds_the_fence_of_the_asker_and_the_links() {
        let dir = tempfile::TempDir::new().unwrap();
        let s = SledStore::open(dir.path(), 7).unwrap();
        let seen = Ballot::new(4, 1, NodeId(0));
        assert_eq!(s.restart_info(NodeId(0), seen).unwrap(), seen, "no fence yet");
        s.save(10, Ballot::new(2, 3, NodeId(0)), true).unwrap();
        // Node 0's fence: its restart 3 and the links' counter 4.
        assert_eq!(s.restart_info(NodeId(0), seen).unwrap(), Ballot::new(4, 3, NodeId(0)));
        // Another node's fence says nothing about node 1.
        let other = Ballot::new(1, 1, NodeId(1));
        assert_eq!(s.restart_info(NodeId(1), other).unwrap(), other);
        s.db.insert(FENCE, &[1][..]).unwrap();
        assert!(s.restart_info(NodeId(0), seen).is_err(), "an unreadable fence is no answer");
    }

    #[test]
    fn registration_encoding_round_trips() {
        let tag = Ballot::new(0, 7, NodeId(2));
        assert_eq!(decode_primary(Some(&encode_primary(NodeId(2), tag))).unwrap(), Some((NodeId(2), tag)));
        assert_eq!(decode_primary(None).unwrap(), None);
    }

    #[test]
    fn restart_counter_overflow_is_an_error_not_a_wrap() {
        let dir = tempfile::TempDir::new().unwrap();
        let s = SledStore::open(dir.path(), 7).unwrap();
        s.db.insert(RESTART, &u64::MAX.to_be_bytes()[..]).unwrap();
        assert!(matches!(s.bump_restart(), Err(StoreError::Corrupt { key: RESTART, .. })));
    }
}
