//! Leader election on leases, the etcd "concurrency" recipe, built on the `Store` trait so it
//! behaves the same on both backends.
//!
//! Each candidate creates `<prefix><lease id>` attached to its lease; the candidate whose key
//! has the lowest create revision leads. A candidate waits for the key just before its own to
//! vanish. The leader's [`FencingToken`] is its key and create revision: a transaction that
//! carries the token's compare fails once the leader's lease has ended, so a deposed leader can
//! never write.

use std::sync::Arc;

use futures::StreamExt;

use crate::error::{Result, StoreError};
use crate::key::validate_prefix;
use crate::kv::{EventKind, KeyValue, LeaseId, Revision};
use crate::list::ListOptions;
use crate::store::Store;
use crate::txn::{Compare, Expect, Txn, TxnOutcome};

/// One election, named by its key prefix (for example `/elections/placement/`).
#[derive(Debug, Clone)]
pub struct Election {
    store: Arc<dyn Store>,
    prefix: String,
}

/// Proof of leadership: compare it in every write the leader makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencingToken {
    /// The leader's key.
    pub key: String,
    /// The create revision of the leader's key.
    pub create_revision: Revision,
}

impl FencingToken {
    /// The compare that holds only while this leadership lasts.
    #[must_use]
    pub fn compare(&self) -> Compare {
        Compare {
            key: self.key.clone(),
            expect: Expect::CreateRevision(self.create_revision),
        }
    }
}

/// A won election. Dropping it does not resign: the lease (or [`Leadership::resign`]) ends it.
#[derive(Debug)]
pub struct Leadership {
    store: Arc<dyn Store>,
    token: FencingToken,
    lease: LeaseId,
}

impl Election {
    /// An election under `prefix` (must end with `/`).
    pub fn new(store: Arc<dyn Store>, prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        validate_prefix(&prefix)?;
        if !prefix.ends_with('/') {
            return Err(StoreError::InvalidKey {
                key: prefix,
                reason: "an election prefix must end with '/'",
            });
        }
        Ok(Self { store, prefix })
    }

    /// Campaigns with `lease` (kept alive by the caller) and `value` (who the candidate is);
    /// returns once this candidate leads. Cancel the future to stop campaigning.
    pub async fn campaign(&self, lease: LeaseId, value: Vec<u8>) -> Result<Leadership> {
        let key = format!("{}{:016x}", self.prefix, lease.0);
        let create_revision = match self.store.create(&key, value, Some(lease)).await {
            Ok(revision) => revision,
            Err(StoreError::AlreadyExists { .. }) => self
                .store
                .get(&key)
                .await?
                .map(|kv| kv.create_revision)
                .ok_or(StoreError::LeaseNotFound(lease))?,
            Err(error) => return Err(error),
        };
        loop {
            let page = self
                .store
                .list(&self.prefix, &ListOptions::default())
                .await?;
            if !page.items.iter().any(|kv| kv.key == key) {
                // Our key vanished: the lease ended while we waited.
                return Err(StoreError::LeaseNotFound(lease));
            }
            let predecessor = page
                .items
                .iter()
                .filter(|kv| kv.create_revision < create_revision)
                .max_by_key(|kv| kv.create_revision);
            let Some(predecessor) = predecessor else {
                tracing::info!(election = %self.prefix, %lease, "won the election");
                return Ok(Leadership {
                    store: Arc::clone(&self.store),
                    token: FencingToken {
                        key,
                        create_revision,
                    },
                    lease,
                });
            };
            self.wait_deleted(&predecessor.key, page.revision).await?;
        }
    }

    /// The current leader's key-value, if anyone leads.
    pub async fn leader(&self) -> Result<Option<KeyValue>> {
        let page = self
            .store
            .list(&self.prefix, &ListOptions::default())
            .await?;
        Ok(page.items.into_iter().min_by_key(|kv| kv.create_revision))
    }

    /// Waits until the leader differs from `current` (compared by key and create revision) and
    /// returns the new one.
    pub async fn next_leader(&self, current: Option<&KeyValue>) -> Result<Option<KeyValue>> {
        let same = |a: Option<&KeyValue>, b: Option<&KeyValue>| {
            a.map(|kv| (&kv.key, kv.create_revision)) == b.map(|kv| (&kv.key, kv.create_revision))
        };
        loop {
            let page = self
                .store
                .list(&self.prefix, &ListOptions::default())
                .await?;
            let leader = page.items.into_iter().min_by_key(|kv| kv.create_revision);
            if !same(leader.as_ref(), current) {
                return Ok(leader);
            }
            let mut events = self.store.watch(&self.prefix, page.revision).await?;
            match events.next().await {
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Err(StoreError::Closed),
            }
        }
    }

    async fn wait_deleted(&self, key: &str, after: Revision) -> Result<()> {
        let mut events = self.store.watch(key, after).await?;
        while let Some(event) = events.next().await {
            let event = event?;
            if event.kind == EventKind::Delete && event.kv.key == key {
                return Ok(());
            }
        }
        Err(StoreError::Closed)
    }
}

impl Leadership {
    /// The token to compare in every write made as leader.
    #[must_use]
    pub fn token(&self) -> &FencingToken {
        &self.token
    }

    /// The lease this leadership hangs on.
    #[must_use]
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// Whether this candidate still leads (its key, same incarnation, still exists).
    pub async fn is_leader(&self) -> Result<bool> {
        Ok(self
            .store
            .get(&self.token.key)
            .await?
            .is_some_and(|kv| kv.create_revision == self.token.create_revision))
    }

    /// Applies `txn` only while still leader: the fencing compare is added to it.
    pub async fn fenced_txn(&self, txn: Txn) -> Result<TxnOutcome> {
        self.store.txn(txn.when_compare(self.token.compare())).await
    }

    /// Steps down: deletes the leader key (if it is still ours) so the next candidate leads.
    pub async fn resign(self) -> Result<()> {
        let txn = Txn::new()
            .when_compare(self.token.compare())
            .delete(self.token.key.clone());
        self.store.txn(txn).await?;
        tracing::info!(key = %self.token.key, "resigned leadership");
        Ok(())
    }
}
