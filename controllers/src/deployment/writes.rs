//! Batched, fenced store writes for the deployment controller.
//!
//! A round produces *units*: groups of key writes that must commit together (an App's new
//! version, its Deployment and the App's status; or a single Instance create). Units are packed
//! into transactions of at most [`batch_limit`] compares (one fewer under a leadership, whose
//! fencing compare is added) and about 1 MiB of values, each run by [`commit`], up to
//! [`IN_FLIGHT`] of them at once so that the store commits them together. Every write
//! compares its key: `Absent` for a create, the `mod_revision` read for an update or delete.
//! When a transaction loses a compare, the units whose keys changed are dropped (the next round
//! plans them again from fresh caches) and the rest is retried at once; when the fence fails,
//! this replica no longer leads and the writer stops with [`ControllerError::LostLeadership`].

use std::collections::{HashMap, HashSet};

use futures::StreamExt as _;
use pacer_store::key::MAX_TXN_OPS;
use pacer_store::{Compare, Expect, Leadership, Revision, Store, Txn, TxnOutcome};

use crate::rounds::{ControllerError, batch_limit, commit};

/// Bytes of values per transaction, well under the store's 1.5 MiB.
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// One key write with its compare.
#[derive(Clone, Debug)]
pub struct KeyWrite {
    /// The key.
    pub key: String,
    /// What the key must be for the write to apply.
    pub expect: Expect,
    /// The new value, or `None` to delete the key.
    pub value: Option<Vec<u8>>,
}

impl KeyWrite {
    /// Creates `key` (it must not exist).
    pub fn create(key: String, value: Vec<u8>) -> Self {
        Self {
            key,
            expect: Expect::Absent,
            value: Some(value),
        }
    }

    /// Replaces `key`, read at `revision`.
    pub fn update(key: String, revision: Revision, value: Vec<u8>) -> Self {
        Self {
            key,
            expect: Expect::ModRevision(revision),
            value: Some(value),
        }
    }

    /// Deletes `key`, read at `revision`.
    pub fn delete(key: String, revision: Revision) -> Self {
        Self {
            key,
            expect: Expect::ModRevision(revision),
            value: None,
        }
    }

    fn bytes(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, Vec::len)
    }
}

/// Writes that commit together, with a description for logs.
#[derive(Clone, Debug)]
pub struct Unit {
    /// What the unit does (`app default/web: new version 3`).
    pub what: String,
    /// The writes.
    pub writes: Vec<KeyWrite>,
}

impl Unit {
    /// A unit of `writes`.
    pub fn new(what: impl Into<String>, writes: Vec<KeyWrite>) -> Self {
        Self {
            what: what.into(),
            writes,
        }
    }

    fn bytes(&self) -> usize {
        self.writes.iter().map(KeyWrite::bytes).sum()
    }
}

/// What writing a list of units did.
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// Units committed.
    pub committed: usize,
    /// Units dropped because a key they compare changed meanwhile.
    pub conflicts: usize,
    /// Per key prefix (`/registry/<plural>/`), the last revision written under it.
    pub revisions: HashMap<String, Revision>,
}

/// Transactions a writer keeps in flight at once. The store commits concurrent transactions
/// together (the embedded store's writer applies whatever is queued in one write transaction
/// and one fsync; etcd pipelines them), so a round's batches need not each wait for the
/// previous one's commit. Each transaction still stands alone: its own compares, its own fence.
pub const IN_FLIGHT: usize = 16;

/// Writes `units` in as few transactions as the limits allow (see the module docs), up to
/// [`IN_FLIGHT`] at once. Batches whose keys are disjoint run concurrently; a unit that writes
/// a key an earlier batch of the round writes waits until those batches are done, so it sees
/// their outcome exactly as if every transaction ran one after the other.
pub async fn write_units(
    store: &dyn Store,
    leadership: Option<&Leadership>,
    units: Vec<Unit>,
) -> Result<Written, ControllerError> {
    let limit = batch_limit(MAX_TXN_OPS, leadership.is_some());
    // Waves of batches: batches in one wave write disjoint keys.
    let mut waves: Vec<Vec<Vec<Unit>>> = Vec::new();
    let (mut ops, mut bytes) = (0, 0);
    let mut batch_keys: HashSet<String> = HashSet::new();
    let mut wave_keys: HashSet<String> = HashSet::new();
    for unit in units {
        if unit.writes.is_empty() {
            continue;
        }
        // A key may be written once per transaction: a unit that writes a key of the batch
        // starts the next one (and, its compare then failing, waits for the next round). One
        // that writes a key of an earlier batch of the wave starts the next wave.
        let repeated = unit
            .writes
            .iter()
            .any(|write| wave_keys.contains(&write.key));
        if repeated || waves.is_empty() {
            waves.push(Vec::new());
            wave_keys.clear();
        }
        let Some(wave) = waves.last_mut() else {
            continue;
        };
        let full = wave.last().is_none_or(|_| {
            ops + unit.writes.len() > limit
                || bytes + unit.bytes() > MAX_BATCH_BYTES
                || unit
                    .writes
                    .iter()
                    .any(|write| batch_keys.contains(&write.key))
        });
        if full {
            wave.push(Vec::new());
            ops = 0;
            bytes = 0;
            batch_keys.clear();
        }
        for write in &unit.writes {
            batch_keys.insert(write.key.clone());
            wave_keys.insert(write.key.clone());
        }
        ops += unit.writes.len();
        bytes += unit.bytes();
        if let Some(batch) = wave.last_mut() {
            batch.push(unit);
        }
    }
    let mut written = Written::default();
    for wave in waves {
        let mut results = futures::stream::iter(
            wave.into_iter()
                .map(|batch| write_batch(store, leadership, batch)),
        )
        .buffer_unordered(IN_FLIGHT);
        while let Some(result) = results.next().await {
            let part = result?;
            written.committed += part.committed;
            written.conflicts += part.conflicts;
            for (prefix, revision) in part.revisions {
                let entry = written.revisions.entry(prefix).or_default();
                *entry = (*entry).max(revision);
            }
        }
    }
    Ok(written)
}

/// Writes one batch in one transaction; when it loses compares, again without the units whose
/// keys changed.
async fn write_batch(
    store: &dyn Store,
    leadership: Option<&Leadership>,
    mut batch: Vec<Unit>,
) -> Result<Written, ControllerError> {
    let mut written = Written::default();
    while !batch.is_empty() {
        let mut txn = Txn::new();
        for write in batch.iter().flat_map(|unit| &unit.writes) {
            txn = txn.when(write.key.clone(), write.expect);
            txn = match &write.value {
                Some(value) => txn.put(write.key.clone(), value.clone()),
                None => txn.delete(write.key.clone()),
            };
        }
        let compares = txn.compares.clone();
        match commit(store, leadership, txn).await? {
            TxnOutcome::Committed { revision } => {
                for write in batch.iter().flat_map(|unit| &unit.writes) {
                    let prefix = kind_prefix(&write.key);
                    let entry = written.revisions.entry(prefix).or_default();
                    *entry = (*entry).max(revision);
                }
                written.committed += batch.len();
                break;
            }
            TxnOutcome::CompareFailed { observed, .. } => {
                let failed: Vec<&str> = compares
                    .iter()
                    .zip(&observed)
                    .filter(|(compare, state)| !Compare::holds(compare, state))
                    .map(|(compare, _)| compare.key.as_str())
                    .collect();
                let before = batch.len();
                if failed.is_empty() {
                    // Nothing we compared changed (should not happen): give the batch up;
                    // the next round plans from fresh caches.
                    written.conflicts += before;
                    break;
                }
                let failed: HashSet<String> = failed.into_iter().map(str::to_owned).collect();
                batch.retain(|unit| {
                    let keep = !unit.writes.iter().any(|write| failed.contains(&write.key));
                    if !keep {
                        tracing::debug!(unit = %unit.what, "changed meanwhile; planned again next round");
                    }
                    keep
                });
                written.conflicts += before - batch.len();
            }
        }
    }
    Ok(written)
}

/// `/registry/<plural>/` of a registry key.
pub fn kind_prefix(key: &str) -> String {
    let mut parts = key.splitn(4, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(""), Some(registry), Some(plural)) => format!("/{registry}/{plural}/"),
        _ => key.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use pacer_store::embedded::EmbeddedStore;
    use pacer_store::{Election, ListOptions};

    use super::*;

    #[test]
    fn kind_prefixes() {
        assert_eq!(
            kind_prefix("/registry/instances/default/web-abc"),
            "/registry/instances/"
        );
        assert_eq!(
            kind_prefix("/registry/deployments/d1"),
            "/registry/deployments/"
        );
    }

    #[tokio::test]
    async fn a_unit_rewriting_a_key_of_an_earlier_batch_sees_that_batch_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
        // Three batches written concurrently, then a unit creating a key of the first batch:
        // it must run after that batch, so it loses its compare and the first value stays.
        let mut units: Vec<Unit> = (0..300)
            .map(|i| {
                Unit::new(
                    format!("create {i}"),
                    vec![KeyWrite::create(
                        format!("/registry/x/k{i:03}"),
                        b"first".to_vec(),
                    )],
                )
            })
            .collect();
        units.push(Unit::new(
            "again",
            vec![KeyWrite::create(
                "/registry/x/k005".into(),
                b"second".to_vec(),
            )],
        ));
        let written = write_units(store.as_ref(), None, units).await.unwrap();
        assert_eq!((written.committed, written.conflicts), (300, 1));
        let kv = store.get("/registry/x/k005").await.unwrap().unwrap();
        assert_eq!(kv.value, b"first".to_vec());
        assert_eq!(kv.version, 1);
    }

    #[tokio::test]
    async fn batches_under_the_limit_drop_conflicting_units_and_stop_when_deposed() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
        store
            .create("/registry/x/taken", b"1".to_vec(), None)
            .await
            .unwrap();
        let lease = store.lease_grant(30).await.unwrap();
        let election = Election::new(Arc::clone(&store), "/elections/test/").unwrap();
        let leadership = election.campaign(lease, b"me".to_vec()).await.unwrap();
        let mut units: Vec<Unit> = (0..300)
            .map(|i| {
                Unit::new(
                    format!("create {i}"),
                    vec![KeyWrite::create(
                        format!("/registry/x/k{i:03}"),
                        b"v".to_vec(),
                    )],
                )
            })
            .collect();
        units.push(Unit::new(
            "same key as a unit before",
            vec![KeyWrite::create(
                "/registry/x/k000".into(),
                b"again".to_vec(),
            )],
        ));
        units.push(Unit::new(
            "conflicting",
            vec![
                KeyWrite::create("/registry/x/new".into(), b"v".to_vec()),
                KeyWrite::create("/registry/x/taken".into(), b"v".to_vec()),
            ],
        ));
        let written = write_units(store.as_ref(), Some(&leadership), units)
            .await
            .unwrap();
        assert_eq!((written.committed, written.conflicts), (300, 2));
        let keys = store
            .list("/registry/x/", &ListOptions::default())
            .await
            .unwrap();
        assert_eq!(keys.items.len(), 301, "the conflicting unit wrote nothing");
        assert!(written.revisions.contains_key("/registry/x/"));
        store.lease_revoke(lease).await.unwrap();
        let result = write_units(
            store.as_ref(),
            Some(&leadership),
            vec![Unit::new(
                "late",
                vec![KeyWrite::create("/registry/x/late".into(), b"v".to_vec())],
            )],
        )
        .await;
        assert!(
            matches!(result, Err(ControllerError::LostLeadership)),
            "{result:?}"
        );
    }
}
