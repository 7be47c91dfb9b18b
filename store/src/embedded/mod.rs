//! The embedded backend: a durable, in-process [`Store`] on redb, for `pacer dev` and tests.
//!
//! It mimics etcd 3.4's semantics (revisions, MVCC reads at old revisions, compaction, watch
//! from a revision, leases) on one local file, so that everything built on the [`Store`] trait
//! behaves the same on both backends.
//!
//! Shape:
//! - [`tables`]: what is stored (current state, full history by key and revision, the keys of
//!   each revision, leases and their keys) and every read of it, on a redb read snapshot run
//!   on tokio's blocking pool;
//! - [`writer`]: one thread owns all writes, applies queued commands in one redb transaction
//!   per batch (group commit, fsync before anyone is answered), expires leases and purges
//!   compacted history;
//! - [`watch`]: watch streams replay the durable event log, then follow the writer's
//!   broadcast of committed revisions, and go back to the log when they fall behind;
//! - [`codec`]: byte layouts of the records.
//!
//! Durability: every acknowledged write was committed with redb's default durability
//! (`Immediate`: fsync before the commit returns); a process killed at any point reopens at
//! its last commit. Lease deadlines are wall-clock unix milliseconds, so a lease whose deadline
//! passed while the process was down expires right after reopening.
//!
//! Like etcd, a new store is at revision 1 and its first write gets revision 2; reads at the
//! compacted revision itself still succeed (compaction keeps the state at it), while watches
//! must start at or after it.

mod codec;
mod tables;
#[cfg(test)]
mod tests;
mod watch;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, DatabaseError};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use self::tables::Snapshot;
use self::writer::{Command, Operation, Response, RevisionEvents, State, Writer};
use crate::error::{Result, StoreError};
use crate::key::{validate_key, validate_prefix};
use crate::kv::{KeyValue, LeaseId, Revision, WatchStream};
use crate::list::{ContinueToken, ListOptions, ListPage};
use crate::store::Store;
use crate::txn::{Txn, TxnOutcome};

/// How often idle leases are checked for expiry.
const LEASE_TICK: Duration = Duration::from_millis(100);

/// Commands that may wait for the writer before senders wait too.
const COMMAND_QUEUE: usize = 4096;

/// Committed revisions a live watcher may fall behind before it replays from the log.
#[cfg(not(test))]
const WATCH_BUFFER: usize = 1024;
/// Tiny in unit tests, so that they exercise the replay after a lag.
#[cfg(test)]
const WATCH_BUFFER: usize = 8;

/// How long `open` waits for a previous handle of the same file (in this process) to let go.
const OPEN_RETRY: Duration = Duration::from_secs(5);

/// redb's page cache.
const CACHE_BYTES: usize = 256 * 1024 * 1024;

/// A durable, in-process store in one redb file: the backend of `pacer dev`.
///
/// Cloning is cheap and shares the store. The file stays open (and leases keep expiring)
/// until the last clone is dropped; watch streams do not keep it open: they end with
/// [`StoreError::Closed`] once it is.
#[derive(Clone)]
pub struct EmbeddedStore {
    core: Arc<Core>,
}

/// What every handle shares.
struct Core {
    path: PathBuf,
    db: Arc<Database>,
    commands: mpsc::Sender<Command>,
    live: broadcast::Sender<Arc<RevisionEvents>>,
    /// The last committed revision (updated by the writer after each commit).
    revision: Arc<AtomicI64>,
    /// Stops the lease ticker.
    cancel: CancellationToken,
}

impl Drop for Core {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl EmbeddedStore {
    /// Opens the store in the file at `path`, creating it (and its directory) if missing.
    ///
    /// Must be called inside a tokio runtime: it spawns the task that wakes the writer to
    /// expire leases. Reopening a file whose previous handle was just dropped waits (up to a
    /// few seconds) for that handle's writer to finish; a file held by another process fails
    /// with [`StoreError::Backend`].
    pub fn open(path: &Path) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::Backend("EmbeddedStore::open must be called inside a tokio runtime".into())
        })?;
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::Backend(format!("create directory {}: {error}", parent.display()))
            })?;
        }
        let db = open_database(path)?;
        writer::initialize(&db)?;
        let state = State::load(&db)?;
        tracing::info!(
            path = %path.display(),
            revision = state.revision,
            compacted = state.compacted,
            leases = state.leases.len(),
            "opened the embedded store"
        );

        let db = Arc::new(db);
        let revision = Arc::new(AtomicI64::new(state.revision));
        let (live, _) = broadcast::channel(WATCH_BUFFER);
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let writer = Writer::new(
            Arc::clone(&db),
            state,
            receiver,
            live.clone(),
            Arc::clone(&revision),
        );
        std::thread::Builder::new()
            .name("pacer-store-writer".into())
            .spawn(move || {
                // A panic is a bug; log it. Callers then get `Closed`.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| writer.run())).is_err()
                {
                    tracing::error!("the embedded store's writer thread panicked");
                }
            })
            .map_err(|error| StoreError::Backend(format!("start the writer thread: {error}")))?;

        let cancel = CancellationToken::new();
        runtime.spawn(tick_leases(commands.downgrade(), cancel.clone()));
        Ok(Self {
            core: Arc::new(Core {
                path: path.to_owned(),
                db,
                commands,
                live,
                revision,
                cancel,
            }),
        })
    }

    /// The file this store lives in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.core.path
    }

    /// Runs `read` on a fresh snapshot on the blocking pool.
    async fn read<T, F>(&self, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Snapshot) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.core.db);
        tokio::task::spawn_blocking(move || read(&Snapshot::open(&db)?))
            .await
            .map_err(|error| StoreError::Backend(format!("a read task failed: {error}")))?
    }

    /// Sends `operation` to the writer and waits for its durable answer.
    async fn write(&self, operation: Operation) -> Result<Response> {
        let (reply, answer) = oneshot::channel();
        self.core
            .commands
            .send(Command::Request { operation, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.core.path)
            .field("revision", &self.core.revision.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        validate_key(key)?;
        let key = key.to_owned();
        self.read(move |snapshot| snapshot.get(&key)).await
    }

    async fn list(&self, prefix: &str, options: &ListOptions) -> Result<ListPage> {
        validate_prefix(prefix)?;
        let (requested, start) = match &options.continue_token {
            Some(token) => {
                let token = ContinueToken::decode(token, prefix)?;
                (Some(token.revision), token.next_key)
            }
            // Like etcd, a revision of 0 (or below) means the current one.
            None => (
                options.revision.filter(|revision| *revision > 0),
                prefix.to_owned(),
            ),
        };
        let prefix = prefix.to_owned();
        let limit = options.limit;
        self.read(move |snapshot| {
            let revision = match requested {
                Some(revision) => {
                    snapshot.check_readable(revision)?;
                    revision
                }
                None => snapshot.revision,
            };
            let (items, more) = snapshot.list(&prefix, &start, revision, limit)?;
            let continue_token = match items.last() {
                Some(last) if more => Some(ContinueToken::after(revision, &last.key).encode()),
                _ => None,
            };
            Ok(ListPage {
                items,
                revision,
                continue_token,
            })
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        txn.validate()?;
        match self.write(Operation::Txn(txn)).await? {
            Response::Txn(outcome) => Ok(outcome),
            other => Err(unexpected(&other)),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        validate_prefix(prefix)?;
        watch::start(&self.core.db, &self.core.live, prefix, after).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.core.revision.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.write(Operation::Compact(revision)).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn lease_grant(&self, ttl_seconds: i64) -> Result<LeaseId> {
        match self.write(Operation::LeaseGrant(ttl_seconds)).await? {
            Response::Lease(lease) => Ok(lease),
            other => Err(unexpected(&other)),
        }
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<i64> {
        match self.write(Operation::LeaseKeepAlive(lease)).await? {
            Response::Ttl(ttl) => Ok(ttl),
            other => Err(unexpected(&other)),
        }
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<()> {
        match self.write(Operation::LeaseRevoke(lease)).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn lease_time_to_live(&self, lease: LeaseId) -> Result<i64> {
        let record = self.read(move |snapshot| snapshot.lease(lease.0)).await?;
        let remaining_ms = record
            .map(|record| record.deadline_ms.saturating_sub(writer::now_ms()))
            .filter(|remaining| *remaining > 0)
            // Expired but not yet revoked counts as gone, as for keep-alive.
            .ok_or(StoreError::LeaseNotFound(lease))?;
        // Rounded up: a lease with 200 ms left has 1 second left, not 0.
        Ok((remaining_ms + 999) / 1000)
    }
}

/// Maps a redb failure to [`StoreError::Backend`], saying what was being done.
fn backend<E: fmt::Display>(context: &'static str) -> impl FnOnce(E) -> StoreError {
    move |error| StoreError::Backend(format!("embedded store: {context}: {error}"))
}

fn unexpected(response: &Response) -> StoreError {
    StoreError::Backend(format!("embedded store: the writer answered {response:?}"))
}

/// Opens (or creates) the redb file, waiting briefly for a just-dropped handle to let go.
fn open_database(path: &Path) -> Result<Database> {
    let started = Instant::now();
    loop {
        match Database::builder().set_cache_size(CACHE_BYTES).create(path) {
            Ok(db) => return Ok(db),
            Err(DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < OPEN_RETRY => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => {
                return Err(StoreError::Backend(format!(
                    "open the embedded store at {}: {error}",
                    path.display()
                )));
            }
        }
    }
}

/// Wakes the writer every [`LEASE_TICK`] so that leases expire while nothing else happens.
/// Holds only a weak sender: the writer stops as soon as the last store handle is dropped.
async fn tick_leases(commands: mpsc::WeakSender<Command>, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(LEASE_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Some(commands) = commands.upgrade() else {
            return;
        };
        // A full queue means the writer is busy, and it checks leases before every batch.
        if let Err(mpsc::error::TrySendError::Closed(_)) = commands.try_send(Command::Tick) {
            return;
        }
    }
}
