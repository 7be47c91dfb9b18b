//! [`InstrumentedStore`]: a [`Store`] decorator that times every call of the store it wraps
//! into `pacer_store_request_duration_seconds` (and counts failures in
//! `pacer_store_errors_total`), by operation. `pacer dev` and `pacer server` wrap their store
//! once, so the API server, the controllers and the elections are all measured, whichever
//! backend (etcd or embedded) is underneath.
//!
//! A watch is timed until its stream is open, not for its life. A transaction whose compare
//! fails is a success here (the store answered); only `Err` results count as errors.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pacer_store::{
    KeyValue, LeaseId, ListOptions, ListPage, Result, Revision, Store, Txn, TxnOutcome, WatchStream,
};

use crate::StoreMetrics;

/// Times every call of the store it wraps (see the module docs).
#[derive(Debug)]
pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
    metrics: StoreMetrics,
}

impl InstrumentedStore {
    /// `inner`, recording into the process-wide metrics ([`crate::global`]).
    pub fn wrap(inner: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(Self::new(inner, crate::global().store.clone()))
    }

    /// `inner`, recording into `metrics`.
    pub fn new(inner: Arc<dyn Store>, metrics: StoreMetrics) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .observe(operation, started.elapsed(), result.is_ok());
        result
    }
}

#[async_trait]
impl Store for InstrumentedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.timed("get", self.inner.get(key)).await
    }

    async fn list(&self, prefix: &str, options: &ListOptions) -> Result<ListPage> {
        self.timed("list", self.inner.list(prefix, options)).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        self.timed("txn", self.inner.txn(txn)).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.timed("watch", self.inner.watch(prefix, after)).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.timed("current_revision", self.inner.current_revision())
            .await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.timed("compact", self.inner.compact(revision)).await
    }

    async fn lease_grant(&self, ttl_seconds: i64) -> Result<LeaseId> {
        self.timed("lease_grant", self.inner.lease_grant(ttl_seconds))
            .await
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<i64> {
        self.timed("lease_keep_alive", self.inner.lease_keep_alive(lease))
            .await
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<()> {
        self.timed("lease_revoke", self.inner.lease_revoke(lease))
            .await
    }

    async fn lease_time_to_live(&self, lease: LeaseId) -> Result<i64> {
        self.timed("lease_time_to_live", self.inner.lease_time_to_live(lease))
            .await
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        self.timed("create", self.inner.create(key, value, lease))
            .await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision> {
        self.timed("update", self.inner.update(key, value, expected, lease))
            .await
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<Revision> {
        self.timed("delete", self.inner.delete(key, expected)).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use pacer_store::StoreError;
    use pacer_store::embedded::EmbeddedStore;

    use super::*;
    use crate::Metrics;

    #[tokio::test]
    async fn every_call_is_timed_and_failures_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
        let metrics = Metrics::new();
        let store = InstrumentedStore::new(inner, metrics.store.clone());
        let revision = store.create("/a", b"1".to_vec(), None).await.unwrap();
        assert!(matches!(
            store.create("/a", b"2".to_vec(), None).await,
            Err(StoreError::AlreadyExists { .. })
        ));
        assert_eq!(store.get("/a").await.unwrap().unwrap().value, b"1");
        store.delete("/a", revision).await.unwrap();
        let text = metrics.encode_prometheus().unwrap();
        for line in [
            "pacer_store_request_duration_seconds_count{operation=\"create\"} 2",
            "pacer_store_errors_total{operation=\"create\"} 1",
            "pacer_store_request_duration_seconds_count{operation=\"get\"} 1",
            "pacer_store_request_duration_seconds_count{operation=\"delete\"} 1",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }
}
