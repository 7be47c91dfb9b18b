//! Fenced writes for leaders that talk to Pacer over HTTP: a write request that carries
//! `Pacer-Fence: <namespace>/<lease>/<holderIdentity>` is applied only while that holder holds
//! that `Lease`, so a deposed leader's writes fail even when they race the takeover.
//!
//! How it works, in two steps that both live here:
//!
//! 1. **Terms.** Every change of a Lease's `spec.holderIdentity` (a takeover, a release, an
//!    acquisition of a free lease) starts a new *term*: the update that changes the holder also
//!    writes the lease's *term key* `/fences/leases/<namespace>/<name>`, in the same store
//!    transaction ([`update`]). Renewals by the same holder leave the term key alone. (Why not
//!    recreate the Lease key itself so that its create revision marks the term? etcd rejects a
//!    transaction that deletes and puts the same key, and two transactions would leave the
//!    Lease missing in between.) The term key is written only on holder changes, never on
//!    create; deleting a Lease leaves it behind, which is harmless: a re-created Lease has a
//!    new create revision, and the fence compares that too.
//! 2. **Fences.** For a request with the header, [`arm`] reads the term key, *then* the Lease
//!    (in that order, so a takeover between the reads is caught by one of them), refuses the
//!    request with 409 `Conflict` unless the Lease exists, names the holder and has not expired
//!    (`renewTime + leaseDurationSeconds` after the server's clock), and otherwise returns a
//!    [`FencedStore`]: the request's store, which adds two compares to every transaction the
//!    request makes — the Lease key's create revision and the term key's mod revision, both as
//!    read. A takeover committed after the check changes one of them, so the write fails and
//!    writes nothing; [`FencedStore::lost`] then tells the dispatcher to answer 409 naming
//!    the fence instead of the write's own error.
//!
//! Every write verb of `/apis` (POST, PUT, PATCH including server-side apply, DELETE, delete
//! collection, `/status`, `/scale`) goes through the request's store, so all honour the
//! fence; reads ignore the header. The server does not judge takeovers: any writer may change
//! the holder (as in Kubernetes); electors take over only expired leases.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use axum::http::HeaderMap;
use pacer_schemas::lease::FENCE_HEADER;
use pacer_schemas::{Lease, LeaseFence as Fence, Time};
use pacer_store::{
    Compare, Expect, KeyValue, LeaseId, ListOptions, ListPage, Revision, Store, StoreError, Txn,
    TxnOutcome, WatchStream,
};
use serde_json::Value;

use crate::error::ApiError;
use crate::kinds::{self, KindDef};
use crate::object;

/// Prefix of the term keys (outside `/registry/`, so lists and watches never see them).
const TERM_PREFIX: &str = "/fences/leases/";

/// The fence of a request (the `Pacer-Fence` header), `None` without the header; 400 when it
/// is malformed.
pub fn from_headers(headers: &HeaderMap) -> Result<Option<Fence>, ApiError> {
    let Some(value) = headers.get(FENCE_HEADER) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(value.as_bytes()).map_err(|_| {
        ApiError::BadRequest(format!("the {FENCE_HEADER} header is not valid UTF-8"))
    })?;
    Fence::parse(text)
        .map(Some)
        .map_err(|error| ApiError::BadRequest(error.to_string()))
}

/// The Lease kind as the registry serves it.
fn lease_kind() -> Result<&'static KindDef, ApiError> {
    kinds::find(<Lease as pacer_schemas::Resource>::PLURAL)
        .ok_or_else(|| ApiError::Internal("the Lease kind is not registered".to_owned()))
}

/// The term key of a Lease.
pub fn term_key(namespace: &str, name: &str) -> String {
    format!("{TERM_PREFIX}{namespace}/{name}")
}

/// The 409 of a request whose fence does not hold; `why` says what failed.
fn refused(fence: &Fence, why: &str) -> ApiError {
    match lease_kind() {
        Ok(kind) => ApiError::Conflict {
            kind,
            name: fence.lease.clone(),
            detail: format!("fence {fence} (Pacer-Fence header) does not hold: {why}"),
        },
        Err(error) => error,
    }
}

/// Checks `fence` now and returns the store a fenced request writes through.
pub async fn arm(store: &Arc<dyn Store>, fence: Fence) -> Result<FencedStore, ApiError> {
    let kind = lease_kind()?;
    let term_key = term_key(&fence.namespace, &fence.lease);
    // The term key first, then the Lease: see the module docs.
    let term_revision = store
        .get(&term_key)
        .await?
        .map_or(0, |term| term.mod_revision);
    let lease_key = kind.key(Some(&fence.namespace), &fence.lease);
    let Some(kv) = store.get(&lease_key).await? else {
        return Err(refused(&fence, "the lease does not exist"));
    };
    let stored = object::from_store(&kv)?;
    let lease: Lease = serde_json::from_value(stored)
        .map_err(|error| ApiError::Internal(format!("decode stored Lease: {error}")))?;
    let now = Time::new(jiff::Timestamp::now());
    if lease.holder() != Some(fence.holder.as_str()) {
        let holder = lease.holder().unwrap_or("nobody");
        return Err(refused(&fence, &format!("the lease is held by {holder:?}")));
    }
    if !lease.is_held(now) {
        let since = lease.expires_at().map_or_else(
            || "never renewed".to_owned(),
            |end| format!("expired at {end}"),
        );
        return Err(refused(&fence, &format!("the lease has ended ({since})")));
    }
    tracing::debug!(%fence, term_revision, lease_revision = kv.create_revision, "fence armed");
    Ok(FencedStore {
        inner: Arc::clone(store),
        compares: vec![
            Compare {
                key: lease_key,
                expect: Expect::CreateRevision(kv.create_revision),
            },
            Compare {
                key: term_key,
                expect: Expect::ModRevision(term_revision),
            },
        ],
        fence,
        lost: Arc::new(AtomicBool::new(false)),
    })
}

/// The store of a fenced request: every transaction also compares the fence (see the module
/// docs); everything else goes to the real store unchanged.
#[derive(Clone, Debug)]
pub struct FencedStore {
    inner: Arc<dyn Store>,
    compares: Vec<Compare>,
    fence: Fence,
    lost: Arc<AtomicBool>,
}

impl FencedStore {
    /// Whether a transaction failed because the fence no longer held.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// The 409 answered when [`Self::lost`].
    pub fn lost_error(&self) -> ApiError {
        refused(
            &self.fence,
            "the lease changed hands before the write committed; nothing was written",
        )
    }

    /// The error a fenced transaction returns once the fence failed: a conflict on the Lease
    /// key (the write paths treat it as a lost race; the dispatcher answers with
    /// [`Self::lost_error`]).
    fn conflict(&self, observed: Option<Revision>) -> StoreError {
        // The first compare is the Lease key's create revision (see `arm`).
        let (key, expected) = match self.compares.first() {
            Some(Compare {
                key,
                expect: Expect::CreateRevision(revision),
            }) => (key.clone(), *revision),
            Some(other) => (other.key.clone(), 0),
            None => (String::new(), 0),
        };
        StoreError::Conflict {
            key,
            expected,
            actual: observed.unwrap_or(0),
        }
    }
}

#[async_trait]
impl Store for FencedStore {
    async fn get(&self, key: &str) -> pacer_store::Result<Option<KeyValue>> {
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str, options: &ListOptions) -> pacer_store::Result<ListPage> {
        self.inner.list(prefix, options).await
    }

    async fn txn(&self, mut txn: Txn) -> pacer_store::Result<TxnOutcome> {
        if self.lost() {
            return Err(self.conflict(None));
        }
        let own = txn.compares.len();
        txn.compares.extend(self.compares.iter().cloned());
        match self.inner.txn(txn).await? {
            TxnOutcome::CompareFailed {
                revision,
                mut observed,
            } => {
                let fence_holds = observed
                    .iter()
                    .skip(own)
                    .zip(&self.compares)
                    .all(|(state, compare)| compare.holds(state));
                if fence_holds {
                    observed.truncate(own);
                    Ok(TxnOutcome::CompareFailed { revision, observed })
                } else {
                    self.lost.store(true, Ordering::SeqCst);
                    tracing::info!(fence = %self.fence, "fenced write refused: the lease changed hands");
                    Err(self.conflict(observed.get(own).map(|state| state.create_revision)))
                }
            }
            committed => Ok(committed),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> pacer_store::Result<WatchStream> {
        self.inner.watch(prefix, after).await
    }

    async fn current_revision(&self) -> pacer_store::Result<Revision> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: Revision) -> pacer_store::Result<()> {
        self.inner.compact(revision).await
    }

    async fn lease_grant(&self, ttl_seconds: i64) -> pacer_store::Result<LeaseId> {
        self.inner.lease_grant(ttl_seconds).await
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> pacer_store::Result<i64> {
        self.inner.lease_keep_alive(lease).await
    }

    async fn lease_revoke(&self, lease: LeaseId) -> pacer_store::Result<()> {
        self.inner.lease_revoke(lease).await
    }

    async fn lease_time_to_live(&self, lease: LeaseId) -> pacer_store::Result<i64> {
        self.inner.lease_time_to_live(lease).await
    }
}

/// Writes `new` over the stored `current` (a compare-and-swap on `expected`), as
/// [`Store::update`] does — except that for a Lease whose holder changes, the same transaction
/// also writes the term key, starting a new term.
pub async fn update(
    store: &dyn Store,
    kind: &KindDef,
    key: &str,
    current: &Value,
    new: &Value,
    stored: Vec<u8>,
    existing: &KeyValue,
) -> pacer_store::Result<Revision> {
    let holder = |object: &Value| {
        object
            .pointer("/spec/holderIdentity")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let new_holder = holder(new);
    if kind.kind != <Lease as pacer_schemas::Resource>::KIND || holder(current) == new_holder {
        return store
            .update(key, stored, existing.mod_revision, existing.lease)
            .await;
    }
    let namespace = new
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = object::name(new);
    let term = serde_json::json!({
        "holderIdentity": new_holder,
        "leaseTransitions": new.pointer("/spec/leaseTransitions"),
    });
    let txn = Txn::new()
        .when(key, Expect::ModRevision(existing.mod_revision))
        .put_with_lease(key, stored, existing.lease)
        .put(term_key(namespace, name), term.to_string());
    match store.txn(txn).await? {
        TxnOutcome::Committed { revision } => {
            tracing::info!(revision, holder = %new_holder, "lease changed hands: new term");
            Ok(revision)
        }
        TxnOutcome::CompareFailed { observed, .. } => {
            let actual = observed.first().map_or(0, |state| state.mod_revision);
            Err(if actual == 0 {
                StoreError::NotFound {
                    key: key.to_owned(),
                }
            } else {
                StoreError::Conflict {
                    key: key.to_owned(),
                    expected: existing.mod_revision,
                    actual,
                }
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn malformed_fences_are_bad_requests() {
        let mut headers = HeaderMap::new();
        assert!(from_headers(&headers).unwrap().is_none());
        let name = axum::http::HeaderName::from_bytes(FENCE_HEADER.as_bytes()).unwrap();
        headers.insert(name.clone(), "default/ctl/a".parse().unwrap());
        let fence = from_headers(&headers).unwrap().unwrap();
        assert_eq!(fence.to_string(), "default/ctl/a");
        headers.insert(name, "nope".parse().unwrap());
        let error = from_headers(&headers).unwrap_err();
        assert_eq!(error.to_status().http_code(), 400);
        assert!(error.to_string().contains("Pacer-Fence"), "{error}");
    }

    #[test]
    fn term_keys_live_outside_the_registry() {
        assert_eq!(term_key("default", "ctl"), "/fences/leases/default/ctl");
        assert!(!term_key("a", "b").starts_with("/registry/"));
    }
}
