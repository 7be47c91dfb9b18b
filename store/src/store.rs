//! The `Store` trait: the one contract both backends (etcd and embedded) implement, and the
//! conveniences built on it identically for both.

use async_trait::async_trait;

use crate::error::{Result, StoreError};
use crate::key::validate_key;
use crate::kv::{KeyValue, LeaseId, Revision, WatchStream};
use crate::list::{ListOptions, ListPage};
use crate::txn::{Expect, Txn, TxnOutcome};

/// A revisioned key-value store with compare-and-swap, watch and leases (etcd's model).
///
/// Semantics every backend guarantees (the conformance suite checks them):
/// - every transaction that changes something gets the next revision; all its changes carry it;
/// - `list` is consistent at one revision across all its pages;
/// - `watch(prefix, after)` yields every change with revision `> after` under `prefix`, in
///   order, with no gap and no duplicate, then live changes; if `after` is below the compacted
///   revision it fails with [`StoreError::Expired`];
/// - keys attached to a lease are deleted when the lease is revoked or expires.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Reads one key at the current revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Lists keys under `prefix` in ascending order, one page at a time.
    async fn list(&self, prefix: &str, options: &ListOptions) -> Result<ListPage>;

    /// Applies `txn` atomically if all its compares hold.
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome>;

    /// Watches every key under `prefix` for changes after revision `after` (`0`: from now
    /// on, that is after the current revision).
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The store's current revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// Discards history before `revision` (etcd's compaction): the state at `revision` stays
    /// readable, reads below it and watches with `after < revision` get
    /// [`StoreError::Expired`].
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Grants a lease that ends `ttl_seconds` after its last keep-alive.
    async fn lease_grant(&self, ttl_seconds: i64) -> Result<LeaseId>;

    /// Renews a lease; returns its TTL in seconds.
    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<i64>;

    /// Ends a lease now, deleting its keys.
    async fn lease_revoke(&self, lease: LeaseId) -> Result<()>;

    /// Seconds until the lease ends, unless kept alive.
    async fn lease_time_to_live(&self, lease: LeaseId) -> Result<i64>;

    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if it exists. Returns the new
    /// revision.
    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        validate_key(key)?;
        let txn = Txn::new()
            .when(key, Expect::Absent)
            .put_with_lease(key, value, lease);
        match self.txn(txn).await? {
            TxnOutcome::Committed { revision } => Ok(revision),
            TxnOutcome::CompareFailed { .. } => Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            }),
        }
    }

    /// Replaces `key`'s value if its `mod_revision` is still `expected`; otherwise fails with
    /// [`StoreError::Conflict`] (or [`StoreError::NotFound`]) and writes nothing.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision> {
        validate_key(key)?;
        let txn = Txn::new()
            .when(key, Expect::ModRevision(expected))
            .put_with_lease(key, value, lease);
        cas_outcome(key, expected, self.txn(txn).await?)
    }

    /// Deletes `key` if its `mod_revision` is still `expected`; otherwise fails with
    /// [`StoreError::Conflict`] (or [`StoreError::NotFound`]).
    async fn delete(&self, key: &str, expected: Revision) -> Result<Revision> {
        validate_key(key)?;
        let txn = Txn::new()
            .when(key, Expect::ModRevision(expected))
            .delete(key);
        cas_outcome(key, expected, self.txn(txn).await?)
    }
}

fn cas_outcome(key: &str, expected: Revision, outcome: TxnOutcome) -> Result<Revision> {
    match outcome {
        TxnOutcome::Committed { revision } => Ok(revision),
        TxnOutcome::CompareFailed { observed, .. } => {
            let actual = observed.first().map_or(0, |state| state.mod_revision);
            if actual == 0 {
                Err(StoreError::NotFound {
                    key: key.to_owned(),
                })
            } else {
                Err(StoreError::Conflict {
                    key: key.to_owned(),
                    expected,
                    actual,
                })
            }
        }
    }
}
