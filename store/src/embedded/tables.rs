//! The embedded store's redb tables and every read of them: one key, a list page at any
//! retained revision, the watch events of a revision range, a lease.
//!
//! Tables (all keys and values bytes or integers; layouts in `codec`):
//!
//! | table | key | value | holds |
//! |---|---|---|---|
//! | `meta` | name | `i64` | `revision`, `compacted`, `purged`, `next_lease`, `format` |
//! | `current` | key | live record | the latest state of every existing key (fast reads) |
//! | `history` | (key, revision) | record or tombstone | every retained state of every key (MVCC) |
//! | `events` | revision | key list | the keys each revision changed, in operation order |
//! | `leases` | lease id | TTL, deadline | live leases |
//! | `lease_keys` | (lease id, key) | `()` | which keys each lease holds |
//!
//! The read helpers are generic over [`ReadableTable`] so that the writer (inside its write
//! transaction) and readers (on a snapshot) share one implementation.

use std::ops::Bound;

use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
};

use super::backend;
use super::codec::{LeaseRecord, Record, Stored, decode_keys, key_string, rev_key};
use crate::error::{Result, StoreError};
use crate::key::prefix_end;
use crate::kv::{EventKind, KeyValue, Revision, WatchEvent};

/// Counters and markers.
pub(super) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// Latest state of each existing key.
pub(super) const CURRENT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("current");
/// Every retained state of each key, by (key, revision).
pub(super) const HISTORY: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("history");
/// The keys each revision changed, in operation order.
pub(super) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Live leases.
pub(super) const LEASES: TableDefinition<u64, &[u8]> = TableDefinition::new("leases");
/// Index from a lease to the keys attached to it.
pub(super) const LEASE_KEYS: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("lease_keys");

/// `meta`: the store's current revision.
pub(super) const META_REVISION: &str = "revision";
/// `meta`: the compacted revision (reads below it and watches from before it are expired).
pub(super) const META_COMPACTED: &str = "compacted";
/// `meta`: how far history has physically been purged (lags `compacted` while a purge runs).
pub(super) const META_PURGED: &str = "purged";
/// `meta`: the next lease id to hand out.
pub(super) const META_NEXT_LEASE: &str = "next_lease";
/// `meta`: the on-disk format version.
pub(super) const META_FORMAT: &str = "format";
/// The on-disk format this code reads and writes.
pub(super) const FORMAT_VERSION: i64 = 1;

/// Key type of [`HISTORY`].
pub(super) type HistoryKey = (&'static [u8], u64);

/// A consistent read-only view of the store at one moment.
pub(super) struct Snapshot {
    /// The store's revision in this snapshot.
    pub revision: Revision,
    /// The compacted revision in this snapshot.
    pub compacted: Revision,
    current: ReadOnlyTable<&'static [u8], &'static [u8]>,
    history: ReadOnlyTable<HistoryKey, &'static [u8]>,
    events: ReadOnlyTable<u64, &'static [u8]>,
    leases: ReadOnlyTable<u64, &'static [u8]>,
    // Kept last so that the tables drop first.
    _txn: ReadTransaction,
}

impl Snapshot {
    /// Begins a read transaction and opens every table.
    pub fn open(db: &Database) -> Result<Self> {
        let txn = db
            .begin_read()
            .map_err(backend("begin a read transaction"))?;
        let meta = txn
            .open_table(META)
            .map_err(backend("open the meta table"))?;
        let revision = meta_value(&meta, META_REVISION)?;
        let compacted = meta_value(&meta, META_COMPACTED)?;
        Ok(Self {
            revision,
            compacted,
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
            _txn: txn,
        })
    }

    /// Checks that `requested` can be read: not in the future, not compacted away. Like etcd,
    /// the compacted revision itself stays readable (compaction keeps the state at it).
    pub fn check_readable(&self, requested: Revision) -> Result<()> {
        if requested > self.revision {
            return Err(StoreError::FutureRevision {
                requested,
                current: self.revision,
            });
        }
        if requested < self.compacted {
            return Err(StoreError::Expired {
                requested,
                compacted: self.compacted,
            });
        }
        Ok(())
    }

    /// One key at the snapshot's revision.
    pub fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(current_record(&self.current, key)?.map(|record| record.into_key_value(key.to_owned())))
    }

    /// Up to `limit` keys (`0`: all) under `prefix`, from `start` on, at `revision` (which
    /// [`Snapshot::check_readable`] accepted); also whether more keys follow.
    pub fn list(
        &self,
        prefix: &str,
        start: &str,
        revision: Revision,
        limit: usize,
    ) -> Result<(Vec<KeyValue>, bool)> {
        let end = prefix_end(prefix);
        if revision == self.revision {
            self.list_current(start.as_bytes(), &end, limit)
        } else {
            self.list_history(start.as_bytes(), &end, revision, limit)
        }
    }

    /// Lists from the `current` table (the common case: a list at the current revision).
    fn list_current(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<(Vec<KeyValue>, bool)> {
        let mut items = Vec::new();
        if start >= end {
            return Ok((items, false));
        }
        let range = self
            .current
            .range::<&[u8]>(start..end)
            .map_err(backend("scan the current table"))?;
        for entry in range {
            let (key, value) = entry.map_err(backend("scan the current table"))?;
            if limit > 0 && items.len() == limit {
                return Ok((items, true));
            }
            let record = Record::decode(value.value())?;
            items.push(record.into_key_value(key_string(key.value())?));
        }
        Ok((items, false))
    }

    /// Lists at an older revision from the history: for each distinct key, one seek for its
    /// state at `revision`, then a seek past all its versions to the next key. The cost is
    /// per key, not per retained version.
    fn list_history(
        &self,
        start: &[u8],
        end: &[u8],
        revision: Revision,
        limit: usize,
    ) -> Result<(Vec<KeyValue>, bool)> {
        let mut items = Vec::new();
        let at = rev_key(revision);
        let mut lower: Vec<u8> = start.to_vec();
        let mut lower_inclusive = true;
        loop {
            let lower_bound = if lower_inclusive {
                Bound::Included((lower.as_slice(), 0))
            } else {
                Bound::Excluded((lower.as_slice(), u64::MAX))
            };
            if lower.as_slice() >= end {
                return Ok((items, false));
            }
            let next_key = {
                let mut range = self
                    .history
                    .range::<(&[u8], u64)>((lower_bound, Bound::Excluded((end, 0))))
                    .map_err(backend("scan the history table"))?;
                match range.next() {
                    None => None,
                    Some(entry) => {
                        let (key, _) = entry.map_err(backend("scan the history table"))?;
                        Some(key.value().0.to_vec())
                    }
                }
            };
            let Some(key) = next_key else {
                return Ok((items, false));
            };
            if let Some((_, Stored::Live(record))) = state_at(&self.history, &key, at)? {
                if limit > 0 && items.len() == limit {
                    return Ok((items, true));
                }
                items.push(record.into_key_value(key_string(&key)?));
            }
            lower = key;
            lower_inclusive = false;
        }
    }

    /// The events under `prefix` of revisions `after + 1 ..= until`, in order (the caller has
    /// checked that `after` is not below the compacted revision).
    pub fn events(
        &self,
        prefix: &str,
        after: Revision,
        until: Revision,
    ) -> Result<Vec<WatchEvent>> {
        let mut events = Vec::new();
        if until <= after {
            return Ok(events);
        }
        let range = self
            .events
            .range(rev_key(after) + 1..=rev_key(until))
            .map_err(backend("scan the events table"))?;
        for entry in range {
            let (revision, keys) = entry.map_err(backend("scan the events table"))?;
            let revision = revision.value();
            for key in decode_keys(keys.value())? {
                if key.starts_with(prefix) {
                    events.push(self.event(key, revision)?);
                }
            }
        }
        Ok(events)
    }

    /// The event that changed `key` at `revision`, rebuilt from the history.
    fn event(&self, key: String, revision: u64) -> Result<WatchEvent> {
        let stored = self
            .history
            .get((key.as_bytes(), revision))
            .map_err(backend("read the history table"))?
            .ok_or_else(|| {
                StoreError::Backend(format!(
                    "embedded store is corrupt: no history of {key:?} at revision {revision}"
                ))
            })
            .and_then(|guard| Stored::decode(guard.value()))?;
        let prev_kv = match state_at(&self.history, key.as_bytes(), revision - 1)? {
            Some((_, Stored::Live(prev))) => Some(prev.into_key_value(key.clone())),
            _ => None,
        };
        Ok(match stored {
            Stored::Live(record) => WatchEvent {
                kind: EventKind::Put,
                kv: record.into_key_value(key),
                prev_kv,
            },
            Stored::Tombstone { mod_revision } => {
                if prev_kv.is_none() {
                    tracing::warn!(%key, revision, "a delete event without a previous value");
                }
                WatchEvent {
                    kind: EventKind::Delete,
                    kv: deleted_key_value(key, mod_revision),
                    prev_kv,
                }
            }
        })
    }

    /// A lease, if it exists.
    pub fn lease(&self, lease: i64) -> Result<Option<LeaseRecord>> {
        let Ok(id) = u64::try_from(lease) else {
            return Ok(None);
        };
        match self
            .leases
            .get(id)
            .map_err(backend("read the leases table"))?
        {
            Some(guard) => Ok(Some(LeaseRecord::decode(guard.value())?)),
            None => Ok(None),
        }
    }
}

/// The `kv` of a delete event: the key, an empty value, the delete's revision, nothing else.
pub(super) fn deleted_key_value(key: String, revision: Revision) -> KeyValue {
    KeyValue {
        key,
        value: Vec::new(),
        create_revision: 0,
        mod_revision: revision,
        version: 0,
        lease: None,
    }
}

/// A key's live record in the `current` table.
pub(super) fn current_record(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &str,
) -> Result<Option<Record>> {
    match table
        .get(key.as_bytes())
        .map_err(backend("read the current table"))?
    {
        Some(guard) => Ok(Some(Record::decode(guard.value())?)),
        None => Ok(None),
    }
}

/// A key's latest history entry at or below `revision`, with its revision.
pub(super) fn state_at(
    history: &impl ReadableTable<HistoryKey, &'static [u8]>,
    key: &[u8],
    revision: u64,
) -> Result<Option<(u64, Stored)>> {
    let mut range = history
        .range::<(&[u8], u64)>((key, 0)..=(key, revision))
        .map_err(backend("scan the history table"))?;
    match range.next_back() {
        None => Ok(None),
        Some(entry) => {
            let (found, value) = entry.map_err(backend("scan the history table"))?;
            Ok(Some((found.value().1, Stored::decode(value.value())?)))
        }
    }
}

/// A `meta` value, `0` when unset.
pub(super) fn meta_value(meta: &impl ReadableTable<&'static str, i64>, name: &str) -> Result<i64> {
    Ok(meta
        .get(name)
        .map_err(backend("read the meta table"))?
        .map_or(0, |guard| guard.value()))
}
