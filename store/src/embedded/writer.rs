//! The single writer: one OS thread that owns every write to the database.
//!
//! Callers send [`Command`]s over a bounded channel and await a reply. The writer takes the
//! first waiting command plus whatever else is queued (up to [`MAX_BATCH`]) and applies them
//! in order inside one redb write transaction, then commits once (group commit: one fsync for
//! the whole batch). Only after the commit is durable does it publish the batch's watch events
//! (in revision order) and answer the callers; if the commit fails, every caller of the batch
//! gets the error and the in-memory state is reloaded from disk, so nothing unacknowledged is
//! ever visible.
//!
//! Each command in a batch sees the effects of the ones before it, exactly as if it had run
//! alone, and a command that fails validation (a failed compare, an unknown lease, a compaction
//! of a compacted revision) writes nothing. Before each batch the writer revokes leases whose
//! deadline has passed, so expiry is exact to within the tick that wakes an idle writer.
//! After compaction it purges the compacted history in bounded steps between batches.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, Table, WriteTransaction};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::backend;
use super::codec::{LeaseRecord, Record, Stored, decode_keys, encode_keys, key_string, rev_key};
use super::tables::{
    CURRENT, EVENTS, FORMAT_VERSION, HISTORY, HistoryKey, LEASE_KEYS, LEASES, META, META_COMPACTED,
    META_FORMAT, META_NEXT_LEASE, META_PURGED, META_REVISION, current_record, deleted_key_value,
    meta_value, state_at,
};
use crate::error::{Result, StoreError};
use crate::kv::{EventKind, LeaseId, Revision, WatchEvent};
use crate::txn::{Observed, Op, Txn, TxnOutcome};

/// Most commands applied in one write transaction.
const MAX_BATCH: usize = 256;

/// A batch stops taking more commands once their keys and values reach this many bytes.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Most compacted revisions purged in one write transaction.
#[cfg(not(test))]
const PURGE_REVISIONS_PER_STEP: Revision = 1000;
/// Tiny in unit tests, so that they exercise a purge in several steps.
#[cfg(test)]
const PURGE_REVISIONS_PER_STEP: Revision = 3;

/// How long to wait before retrying a purge that failed.
const PURGE_RETRY: Duration = Duration::from_secs(1);

/// etcd's largest lease TTL (`MaxLeaseTTL`), in seconds.
const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// What the writer is asked to do.
pub(super) enum Command {
    /// A write, answered once it is durable (or known to have written nothing).
    Request {
        /// The write.
        operation: Operation,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Response>>,
    },
    /// Wakes the writer so it expires leases even when nothing else happens.
    Tick,
}

impl Command {
    /// Bytes of keys and values this command writes (bounds a batch's size).
    fn payload_bytes(&self) -> usize {
        match self {
            Command::Request {
                operation: Operation::Txn(txn),
                ..
            } => txn
                .ops
                .iter()
                .map(|op| match op {
                    Op::Put { key, value, .. } => key.len() + value.len(),
                    Op::Delete { key } => key.len(),
                })
                .sum(),
            _ => 0,
        }
    }
}

/// A write the writer applies.
#[derive(Debug)]
pub(super) enum Operation {
    /// A transaction (already validated).
    Txn(Txn),
    /// Compact up to this revision.
    Compact(Revision),
    /// Grant a lease with this TTL in seconds.
    LeaseGrant(i64),
    /// Renew a lease.
    LeaseKeepAlive(LeaseId),
    /// Revoke a lease.
    LeaseRevoke(LeaseId),
}

/// The writer's answer to an [`Operation`].
#[derive(Debug)]
pub(super) enum Response {
    /// To [`Operation::Txn`].
    Txn(TxnOutcome),
    /// To [`Operation::Compact`] and [`Operation::LeaseRevoke`].
    Done,
    /// To [`Operation::LeaseGrant`].
    Lease(LeaseId),
    /// To [`Operation::LeaseKeepAlive`]: the lease's TTL.
    Ttl(i64),
}

/// The events of one committed revision, as published to live watchers.
#[derive(Debug)]
pub(super) struct RevisionEvents {
    /// The revision.
    pub revision: Revision,
    /// Its events in operation order (never empty).
    pub events: Vec<WatchEvent>,
}

/// The writer's in-memory copy of what it needs on every command; the database is the truth
/// and this is reloaded from it after a failed commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct State {
    /// Current revision.
    pub revision: Revision,
    /// Compacted revision.
    pub compacted: Revision,
    /// Revision up to which compacted history has been physically removed.
    pub purged: Revision,
    /// Next lease id.
    pub next_lease: i64,
    /// Live leases by id.
    pub leases: HashMap<i64, LeaseRecord>,
    /// No lease expires before this (a lower bound: keep-alives only push deadlines later),
    /// so that most batches skip the scan of every lease.
    earliest_deadline_ms: i64,
}

impl State {
    /// Reads the state from the database.
    pub fn load(db: &Database) -> Result<Self> {
        let txn = db
            .begin_read()
            .map_err(backend("begin a read transaction"))?;
        let meta = txn
            .open_table(META)
            .map_err(backend("open the meta table"))?;
        let table = txn
            .open_table(LEASES)
            .map_err(backend("open the leases table"))?;
        let mut leases = HashMap::new();
        for entry in table.iter().map_err(backend("scan the leases table"))? {
            let (id, record) = entry.map_err(backend("scan the leases table"))?;
            let id = i64::try_from(id.value())
                .map_err(|_| StoreError::Backend("embedded store is corrupt: a lease id".into()))?;
            leases.insert(id, LeaseRecord::decode(record.value())?);
        }
        Ok(Self {
            revision: meta_value(&meta, META_REVISION)?,
            compacted: meta_value(&meta, META_COMPACTED)?,
            purged: meta_value(&meta, META_PURGED)?,
            next_lease: meta_value(&meta, META_NEXT_LEASE)?.max(1),
            earliest_deadline_ms: earliest_deadline(&leases),
            leases,
        })
    }

    /// Leases whose deadline is at or before `now_ms`, in id order.
    fn expired(&mut self, now_ms: i64) -> Vec<LeaseId> {
        if now_ms < self.earliest_deadline_ms {
            return Vec::new();
        }
        let mut expired: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, record)| record.deadline_ms <= now_ms)
            .map(|(id, _)| LeaseId(*id))
            .collect();
        expired.sort_unstable();
        self.earliest_deadline_ms = self
            .leases
            .values()
            .map(|record| record.deadline_ms)
            .filter(|deadline| *deadline > now_ms)
            .min()
            .unwrap_or(i64::MAX);
        expired
    }

    /// Records a lease's new or renewed state.
    fn set_lease(&mut self, id: i64, record: LeaseRecord) {
        self.earliest_deadline_ms = self.earliest_deadline_ms.min(record.deadline_ms);
        self.leases.insert(id, record);
    }
}

fn earliest_deadline(leases: &HashMap<i64, LeaseRecord>) -> i64 {
    leases
        .values()
        .map(|record| record.deadline_ms)
        .min()
        .unwrap_or(i64::MAX)
}

/// Creates every table and checks (or records) the on-disk format.
pub(super) fn initialize(db: &Database) -> Result<()> {
    let txn = db
        .begin_write()
        .map_err(backend("begin a write transaction"))?;
    {
        let mut meta = txn
            .open_table(META)
            .map_err(backend("create the meta table"))?;
        let format = meta
            .get(META_FORMAT)
            .map_err(backend("read the meta table"))?
            .map(|format| format.value());
        match format {
            Some(FORMAT_VERSION) => {}
            Some(format) => {
                return Err(StoreError::Backend(format!(
                    "the embedded store's file has format {format}, this build reads format \
                     {FORMAT_VERSION}"
                )));
            }
            None => {
                // A new store. Like etcd, an empty store is at revision 1 and the first write
                // gets revision 2, so that `watch(prefix, current_revision())` on a fresh store
                // means "after revision 1" (replay everything) rather than `0` ("from now").
                meta.insert(META_FORMAT, FORMAT_VERSION)
                    .map_err(backend("write the meta table"))?;
                meta.insert(META_REVISION, 1)
                    .map_err(backend("write the meta table"))?;
            }
        }
        txn.open_table(CURRENT)
            .map_err(backend("create the current table"))?;
        txn.open_table(HISTORY)
            .map_err(backend("create the history table"))?;
        txn.open_table(EVENTS)
            .map_err(backend("create the events table"))?;
        txn.open_table(LEASES)
            .map_err(backend("create the leases table"))?;
        txn.open_table(LEASE_KEYS)
            .map_err(backend("create the lease_keys table"))?;
    }
    txn.commit().map_err(backend("commit the table creation"))
}

/// Wall-clock now, in unix milliseconds (lease deadlines survive restarts this way).
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The writer thread's state.
pub(super) struct Writer {
    db: Arc<Database>,
    state: State,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<Arc<RevisionEvents>>,
    revision: Arc<AtomicI64>,
    /// Set when the state could not be reloaded after a failure: every command then fails.
    failure: Option<String>,
    /// A failed purge is retried after this instant.
    purge_paused_until: Option<Instant>,
}

impl Writer {
    /// A writer for `db`, whose state is `state`.
    pub fn new(
        db: Arc<Database>,
        state: State,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<Arc<RevisionEvents>>,
        revision: Arc<AtomicI64>,
    ) -> Self {
        Self {
            db,
            state,
            commands,
            events,
            revision,
            failure: None,
            purge_paused_until: None,
        }
    }

    /// Runs until every sender of commands is gone (the store was dropped).
    pub fn run(mut self) {
        tracing::debug!(
            revision = self.state.revision,
            "embedded store writer started"
        );
        loop {
            let purging = self.purge_due();
            let first = if purging {
                match self.commands.try_recv() {
                    Ok(command) => Some(command),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                match self.commands.blocking_recv() {
                    Some(command) => Some(command),
                    None => break,
                }
            };
            let mut batch = Vec::new();
            if let Some(first) = first {
                let mut bytes = first.payload_bytes();
                batch.push(first);
                while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                    match self.commands.try_recv() {
                        Ok(command) => {
                            bytes += command.payload_bytes();
                            batch.push(command);
                        }
                        Err(_) => break,
                    }
                }
            }
            self.process(batch);
            if purging && let Err(error) = self.purge_step() {
                tracing::warn!(%error, "purging compacted history failed; retrying later");
                self.purge_paused_until = Some(Instant::now() + PURGE_RETRY);
            }
        }
        tracing::debug!(
            revision = self.state.revision,
            "embedded store writer stopped"
        );
    }

    fn purge_due(&self) -> bool {
        self.failure.is_none()
            && self.state.purged < self.state.compacted
            && self
                .purge_paused_until
                .is_none_or(|until| Instant::now() >= until)
    }

    /// Applies one batch: expired leases first, then the commands in order; commits once.
    fn process(&mut self, batch: Vec<Command>) {
        let (operations, replies): (Vec<Operation>, Vec<oneshot::Sender<Result<Response>>>) = batch
            .into_iter()
            .filter_map(|command| match command {
                Command::Request { operation, reply } => Some((operation, reply)),
                Command::Tick => None,
            })
            .unzip();
        if let Some(failure) = &self.failure {
            for reply in replies {
                let _ = reply.send(Err(StoreError::Backend(failure.clone())));
            }
            return;
        }
        let now = now_ms();
        let expired = self.state.expired(now);
        if operations.is_empty() && expired.is_empty() {
            return;
        }
        match self.apply(operations, expired, now) {
            Ok((results, published)) => {
                self.revision.store(self.state.revision, Ordering::Release);
                for revision in published {
                    // An error only means that no watcher is listening.
                    let _ = self.events.send(revision);
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, commands = replies.len(), "a write batch failed; nothing of it was written");
                let message = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Backend(message.clone())));
                }
                self.reload();
            }
        }
    }

    /// Runs the batch in one write transaction. Returns each operation's result and the
    /// revisions to publish; an `Err` means nothing was committed.
    #[allow(clippy::type_complexity)]
    fn apply(
        &mut self,
        operations: Vec<Operation>,
        expired: Vec<LeaseId>,
        now: i64,
    ) -> Result<(Vec<Result<Response>>, Vec<Arc<RevisionEvents>>)> {
        let txn = self
            .db
            .begin_write()
            .map_err(backend("begin a write transaction"))?;
        let (results, published, dirty) = {
            let mut batch = Batch::open(&txn, &mut self.state, now)?;
            for lease in expired {
                match batch.revoke(lease) {
                    Ok(()) => tracing::info!(%lease, "lease expired; its keys are deleted"),
                    Err(error @ StoreError::Backend(_)) => return Err(error),
                    Err(error) => tracing::warn!(%lease, %error, "could not expire a lease"),
                }
            }
            let mut results = Vec::with_capacity(operations.len());
            for operation in operations {
                let result = batch.apply(operation);
                if let Err(StoreError::Backend(message)) = &result {
                    return Err(StoreError::Backend(message.clone()));
                }
                results.push(result);
            }
            (results, batch.published, batch.dirty)
        };
        if dirty {
            txn.commit()
                .map_err(backend("commit a write transaction"))?;
        } else {
            txn.abort()
                .map_err(backend("abort a read-only write transaction"))?;
        }
        Ok((results, published))
    }

    /// Reloads the state from disk after a failed batch.
    fn reload(&mut self) {
        match State::load(&self.db) {
            Ok(state) => {
                self.state = state;
                self.revision.store(self.state.revision, Ordering::Release);
            }
            Err(error) => {
                tracing::error!(%error, "cannot reload the embedded store's state; it must be reopened");
                self.failure = Some(format!(
                    "the embedded store failed and must be reopened: {error}"
                ));
            }
        }
    }

    /// Physically removes compacted history for up to [`PURGE_REVISIONS_PER_STEP`] revisions:
    /// for every key those revisions changed, every history entry at or below them except the
    /// key's latest live state at the compacted revision; and those revisions' event lists.
    fn purge_step(&mut self) -> Result<()> {
        let from = self.state.purged;
        let compacted = self.state.compacted;
        let until = compacted.min(from.saturating_add(PURGE_REVISIONS_PER_STEP));
        let txn = self
            .db
            .begin_write()
            .map_err(backend("begin a write transaction"))?;
        let (n_keys, n_removed) = {
            let mut events = txn
                .open_table(EVENTS)
                .map_err(backend("open the events table"))?;
            let mut history = txn
                .open_table(HISTORY)
                .map_err(backend("open the history table"))?;
            let mut meta = txn
                .open_table(META)
                .map_err(backend("open the meta table"))?;
            let revisions = rev_key(from) + 1..=rev_key(until);
            let mut keys = BTreeSet::new();
            for entry in events
                .range(revisions.clone())
                .map_err(backend("scan the events table"))?
            {
                let (_, list) = entry.map_err(backend("scan the events table"))?;
                keys.extend(decode_keys(list.value())?);
            }
            let mut n_removed = 0usize;
            for key in &keys {
                let key = key.as_bytes();
                let keep = match state_at(&history, key, rev_key(compacted))? {
                    Some((revision, Stored::Live(_))) => Some(revision),
                    _ => None,
                };
                let mut doomed = Vec::new();
                for entry in history
                    .range::<(&[u8], u64)>((key, 0)..=(key, rev_key(until)))
                    .map_err(backend("scan the history table"))?
                {
                    let (found, _) = entry.map_err(backend("scan the history table"))?;
                    let revision = found.value().1;
                    if Some(revision) != keep {
                        doomed.push(revision);
                    }
                }
                for revision in doomed {
                    history
                        .remove((key, revision))
                        .map_err(backend("purge the history table"))?;
                    n_removed += 1;
                }
            }
            events
                .retain_in(revisions, |_, _| false)
                .map_err(backend("purge the events table"))?;
            meta.insert(META_PURGED, until)
                .map_err(backend("write the meta table"))?;
            (keys.len(), n_removed)
        };
        txn.commit().map_err(backend("commit a purge"))?;
        self.state.purged = until;
        self.purge_paused_until = None;
        tracing::debug!(
            from,
            until,
            compacted,
            keys = n_keys,
            removed = n_removed,
            "purged compacted history"
        );
        Ok(())
    }
}

/// The open tables of one write transaction, with the batch's bookkeeping.
struct Batch<'a, 'txn> {
    state: &'a mut State,
    now_ms: i64,
    meta: Table<'txn, &'static str, i64>,
    current: Table<'txn, &'static [u8], &'static [u8]>,
    history: Table<'txn, HistoryKey, &'static [u8]>,
    events: Table<'txn, u64, &'static [u8]>,
    leases: Table<'txn, u64, &'static [u8]>,
    lease_keys: Table<'txn, (u64, &'static [u8]), ()>,
    /// Revisions committed by this batch, to publish after the commit.
    published: Vec<Arc<RevisionEvents>>,
    /// Whether anything was written (otherwise the transaction is aborted: no fsync).
    dirty: bool,
}

impl<'a, 'txn> Batch<'a, 'txn> {
    fn open(txn: &'txn WriteTransaction, state: &'a mut State, now_ms: i64) -> Result<Self> {
        Ok(Self {
            state,
            now_ms,
            meta: txn
                .open_table(META)
                .map_err(backend("open the meta table"))?,
            current: txn
                .open_table(CURRENT)
                .map_err(backend("open the current table"))?,
            history: txn
                .open_table(HISTORY)
                .map_err(backend("open the history table"))?,
            events: txn
                .open_table(EVENTS)
                .map_err(backend("open the events table"))?,
            leases: txn
                .open_table(LEASES)
                .map_err(backend("open the leases table"))?,
            lease_keys: txn
                .open_table(LEASE_KEYS)
                .map_err(backend("open the lease_keys table"))?,
            published: Vec::new(),
            dirty: false,
        })
    }

    fn apply(&mut self, operation: Operation) -> Result<Response> {
        match operation {
            Operation::Txn(txn) => self.txn(txn).map(Response::Txn),
            Operation::Compact(revision) => self.compact(revision).map(|()| Response::Done),
            Operation::LeaseGrant(ttl) => self.grant(ttl).map(Response::Lease),
            Operation::LeaseKeepAlive(lease) => self.keep_alive(lease).map(Response::Ttl),
            Operation::LeaseRevoke(lease) => self.revoke(lease).map(|()| Response::Done),
        }
    }

    /// A transaction: compares against the current state, then (if they hold) leases are
    /// checked, then the ops are applied at one new revision — or at none, if they change
    /// nothing. This is etcd's order: a failed compare wins over an unknown lease.
    fn txn(&mut self, txn: Txn) -> Result<TxnOutcome> {
        let mut observed = Vec::with_capacity(txn.compares.len());
        let mut holds = true;
        for compare in &txn.compares {
            let record = current_record(&self.current, &compare.key)?;
            let state = Observed {
                key: compare.key.clone(),
                mod_revision: record.as_ref().map_or(0, |record| record.mod_revision),
                create_revision: record.as_ref().map_or(0, |record| record.create_revision),
            };
            holds &= compare.holds(&state);
            observed.push(state);
        }
        if !holds {
            return Ok(TxnOutcome::CompareFailed {
                revision: self.state.revision,
                observed,
            });
        }
        for op in &txn.ops {
            if let Op::Put {
                lease: Some(lease), ..
            } = op
                && !self.state.leases.contains_key(&lease.0)
            {
                return Err(StoreError::LeaseNotFound(*lease));
            }
        }
        let mut changes = false;
        for op in &txn.ops {
            changes = match op {
                Op::Put { .. } => true,
                Op::Delete { key } => self.exists(key)?,
            };
            if changes {
                break;
            }
        }
        if !changes {
            return Ok(TxnOutcome::Committed {
                revision: self.state.revision,
            });
        }
        let revision = self.state.revision + 1;
        let mut events = Vec::with_capacity(txn.ops.len());
        for op in txn.ops {
            match op {
                Op::Put { key, value, lease } => {
                    events.push(self.put(key, value, lease, revision)?);
                }
                Op::Delete { key } => events.extend(self.delete(key, revision)?),
            }
        }
        self.finish_revision(revision, events)?;
        Ok(TxnOutcome::Committed { revision })
    }

    fn exists(&self, key: &str) -> Result<bool> {
        Ok(self
            .current
            .get(key.as_bytes())
            .map_err(backend("read the current table"))?
            .is_some())
    }

    fn put(
        &mut self,
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        revision: Revision,
    ) -> Result<WatchEvent> {
        let prev = current_record(&self.current, &key)?;
        let record = Record {
            mod_revision: revision,
            create_revision: prev.as_ref().map_or(revision, |prev| prev.create_revision),
            version: prev.as_ref().map_or(1, |prev| prev.version + 1),
            lease,
            value,
        };
        let bytes = record.encode();
        self.current
            .insert(key.as_bytes(), bytes.as_slice())
            .map_err(backend("write the current table"))?;
        self.history
            .insert((key.as_bytes(), rev_key(revision)), bytes.as_slice())
            .map_err(backend("write the history table"))?;
        let prev_lease = prev.as_ref().and_then(|prev| prev.lease);
        if prev_lease != lease {
            if let Some(old) = prev_lease {
                self.unlink(old, &key)?;
            }
            if let Some(new) = lease {
                self.lease_keys
                    .insert((rev_key(new.0), key.as_bytes()), ())
                    .map_err(backend("write the lease_keys table"))?;
            }
        }
        let prev_kv = prev.map(|prev| prev.into_key_value(key.clone()));
        Ok(WatchEvent {
            kind: EventKind::Put,
            kv: record.into_key_value(key),
            prev_kv,
        })
    }

    /// Deletes `key` at `revision`; `None` if it does not exist.
    fn delete(&mut self, key: String, revision: Revision) -> Result<Option<WatchEvent>> {
        let Some(prev) = current_record(&self.current, &key)? else {
            return Ok(None);
        };
        self.current
            .remove(key.as_bytes())
            .map_err(backend("write the current table"))?;
        self.history
            .insert(
                (key.as_bytes(), rev_key(revision)),
                Stored::encode_tombstone(revision).as_slice(),
            )
            .map_err(backend("write the history table"))?;
        if let Some(lease) = prev.lease {
            self.unlink(lease, &key)?;
        }
        let prev_kv = prev.into_key_value(key.clone());
        Ok(Some(WatchEvent {
            kind: EventKind::Delete,
            kv: deleted_key_value(key, revision),
            prev_kv: Some(prev_kv),
        }))
    }

    fn unlink(&mut self, lease: LeaseId, key: &str) -> Result<()> {
        self.lease_keys
            .remove((rev_key(lease.0), key.as_bytes()))
            .map_err(backend("write the lease_keys table"))?;
        Ok(())
    }

    /// Records a revision's key list and the new current revision.
    fn finish_revision(&mut self, revision: Revision, events: Vec<WatchEvent>) -> Result<()> {
        let keys = encode_keys(events.iter().map(|event| event.kv.key.as_str()));
        self.events
            .insert(rev_key(revision), keys.as_slice())
            .map_err(backend("write the events table"))?;
        self.meta
            .insert(META_REVISION, revision)
            .map_err(backend("write the meta table"))?;
        self.state.revision = revision;
        self.published
            .push(Arc::new(RevisionEvents { revision, events }));
        self.dirty = true;
        Ok(())
    }

    fn compact(&mut self, revision: Revision) -> Result<()> {
        if revision > self.state.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.state.revision,
            });
        }
        if revision <= self.state.compacted {
            return Err(StoreError::Expired {
                requested: revision,
                compacted: self.state.compacted,
            });
        }
        self.meta
            .insert(META_COMPACTED, revision)
            .map_err(backend("write the meta table"))?;
        self.state.compacted = revision;
        self.dirty = true;
        tracing::info!(revision, "compacted the embedded store");
        Ok(())
    }

    fn grant(&mut self, ttl_seconds: i64) -> Result<LeaseId> {
        if ttl_seconds < 1 {
            return Err(StoreError::InvalidLeaseTtl {
                ttl_seconds,
                reason: "a lease TTL must be at least 1 second",
            });
        }
        if ttl_seconds > MAX_LEASE_TTL {
            return Err(StoreError::InvalidLeaseTtl {
                ttl_seconds,
                reason: "a lease TTL must be at most 9000000000 seconds (etcd's limit)",
            });
        }
        let id = self.state.next_lease;
        let record = LeaseRecord {
            ttl_seconds,
            deadline_ms: deadline(self.now_ms, ttl_seconds),
        };
        self.leases
            .insert(rev_key(id), record.encode().as_slice())
            .map_err(backend("write the leases table"))?;
        self.meta
            .insert(META_NEXT_LEASE, id + 1)
            .map_err(backend("write the meta table"))?;
        self.state.next_lease = id + 1;
        self.state.set_lease(id, record);
        self.dirty = true;
        Ok(LeaseId(id))
    }

    fn keep_alive(&mut self, lease: LeaseId) -> Result<i64> {
        let Some(record) = self.state.leases.get(&lease.0).copied() else {
            return Err(StoreError::LeaseNotFound(lease));
        };
        let now = now_ms();
        if record.deadline_ms <= now {
            // Like etcd: an expired lease cannot be renewed; it is revoked and reported gone.
            self.revoke(lease)?;
            tracing::info!(%lease, "lease expired before its keep-alive; its keys are deleted");
            return Err(StoreError::LeaseNotFound(lease));
        }
        let renewed = LeaseRecord {
            ttl_seconds: record.ttl_seconds,
            deadline_ms: deadline(now, record.ttl_seconds),
        };
        self.leases
            .insert(rev_key(lease.0), renewed.encode().as_slice())
            .map_err(backend("write the leases table"))?;
        self.state.set_lease(lease.0, renewed);
        self.dirty = true;
        Ok(record.ttl_seconds)
    }

    /// Ends a lease and deletes its keys, all at one new revision (none if it held no keys).
    fn revoke(&mut self, lease: LeaseId) -> Result<()> {
        if self.state.leases.remove(&lease.0).is_none() {
            return Err(StoreError::LeaseNotFound(lease));
        }
        self.leases
            .remove(rev_key(lease.0))
            .map_err(backend("write the leases table"))?;
        self.dirty = true;
        let id = rev_key(lease.0);
        let range = (id, &b""[..])..(id + 1, &b""[..]);
        let mut keys = Vec::new();
        for entry in self
            .lease_keys
            .range::<(u64, &[u8])>(range.clone())
            .map_err(backend("scan the lease_keys table"))?
        {
            let (found, _) = entry.map_err(backend("scan the lease_keys table"))?;
            keys.push(key_string(found.value().1)?);
        }
        if keys.is_empty() {
            return Ok(());
        }
        let revision = self.state.revision + 1;
        let mut events = Vec::with_capacity(keys.len());
        for key in keys {
            let attached = current_record(&self.current, &key)?
                .is_some_and(|record| record.lease == Some(lease));
            if attached {
                events.extend(self.delete(key, revision)?);
            } else {
                tracing::warn!(%lease, %key, "the lease index names a key not attached to the lease");
            }
        }
        self.lease_keys
            .retain_in::<(u64, &[u8]), _>(range, |_, ()| false)
            .map_err(backend("write the lease_keys table"))?;
        if !events.is_empty() {
            self.finish_revision(revision, events)?;
        }
        Ok(())
    }
}

fn deadline(now_ms: i64, ttl_seconds: i64) -> i64 {
    now_ms.saturating_add(ttl_seconds.saturating_mul(1000))
}
