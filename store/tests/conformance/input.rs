//! Bad input fails with a typed error and writes nothing: oversized values, malformed keys and
//! prefixes, unknown leases, bad lease TTLs.

use std::sync::Arc;

use anyhow::{Context, Result};
use pacer_store::key::{MAX_KEY_BYTES, MAX_TXN_BYTES, MAX_VALUE_BYTES};
use pacer_store::{LeaseId, ListOptions, Store, StoreError, Txn};

use crate::harness::{assert_err, b};

/// A lease id no backend hands out in a fresh store.
const UNKNOWN_LEASE: LeaseId = LeaseId(0x0bad_cafe_1234);

/// Values over the limit fail; a value of exactly the limit is stored whole.
pub async fn value_size_limit(store: Arc<dyn Store>) -> Result<()> {
    let r0 = store.create("/size/small", b("x"), None).await?;
    let too_big = vec![b'x'; MAX_VALUE_BYTES + 1];
    let too_big_error = |key: &'static str| {
        move |error: &StoreError| {
            matches!(error, StoreError::ValueTooLarge { key: k, size, limit }
                if k == key && *size == MAX_VALUE_BYTES + 1 && *limit == MAX_VALUE_BYTES)
        }
    };

    let result = store.create("/size/big", too_big.clone(), None).await;
    assert!(
        result.as_ref().is_err_and(too_big_error("/size/big")),
        "create: {result:?}"
    );
    let result = store.update("/size/small", too_big.clone(), r0, None).await;
    assert!(
        result.as_ref().is_err_and(too_big_error("/size/small")),
        "update: {result:?}"
    );
    let result = store
        .txn(
            Txn::new()
                .put("/size/other", b("ok"))
                .put("/size/big", too_big),
        )
        .await;
    assert!(
        result.as_ref().is_err_and(too_big_error("/size/big")),
        "txn: {result:?}"
    );
    // Two values under the limit that are together over it.
    let half = vec![b'h'; MAX_TXN_BYTES / 2 + 1];
    assert_err!(
        store
            .txn(
                Txn::new()
                    .put("/size/h1", half.clone())
                    .put("/size/h2", half)
            )
            .await,
        StoreError::TxnTooLarge { .. }
    );
    assert_eq!(
        store.current_revision().await?,
        r0,
        "oversized writes write nothing"
    );
    for key in ["/size/big", "/size/other", "/size/h1", "/size/h2"] {
        assert_eq!(store.get(key).await?, None, "{key}");
    }
    assert_eq!(
        store.get("/size/small").await?.context("small")?.value,
        b("x")
    );

    // Exactly the limit is accepted (our test etcd runs with --max-request-bytes 2 MiB),
    // on create and update, and read back byte for byte.
    let max: Vec<u8> = (0..MAX_VALUE_BYTES)
        .map(|index| (index % 251) as u8)
        .collect();
    let r1 = store.create("/size/max", max.clone(), None).await?;
    let stored = store.get("/size/max").await?.context("max-size key")?;
    assert_eq!(stored.value.len(), MAX_VALUE_BYTES);
    assert!(stored.value == max, "the max-size value came back altered");
    let mut max2 = max;
    max2.reverse();
    let r2 = store.update("/size/max", max2.clone(), r1, None).await?;
    let stored = store.get("/size/max").await?.context("max-size key")?;
    assert!(
        stored.value == max2 && stored.mod_revision == r2,
        "the max-size update came back altered"
    );
    Ok(())
}

/// Malformed keys and prefixes fail with `InvalidKey` on every operation, writing nothing.
pub async fn invalid_keys(store: Arc<dyn Store>) -> Result<()> {
    let r0 = store.create("/good", b("g"), None).await?;
    let too_long = format!("/{}", "k".repeat(MAX_KEY_BYTES));
    let bad_keys = [
        "",
        "no-slash",
        "registry/x",
        "//",
        "/a//b",
        "/trailing/",
        "/",
        "/ctrl\nchar",
        "/nul\0byte",
        too_long.as_str(),
    ];
    for key in bad_keys {
        let invalid = |result: &str| format!("key {key:?}: {result}");
        assert!(
            matches!(store.get(key).await, Err(StoreError::InvalidKey { .. })),
            "{}",
            invalid("get")
        );
        assert!(
            matches!(
                store.create(key, b("v"), None).await,
                Err(StoreError::InvalidKey { .. })
            ),
            "{}",
            invalid("create")
        );
        assert!(
            matches!(
                store.update(key, b("v"), r0, None).await,
                Err(StoreError::InvalidKey { .. })
            ),
            "{}",
            invalid("update")
        );
        assert!(
            matches!(
                store.delete(key, r0).await,
                Err(StoreError::InvalidKey { .. })
            ),
            "{}",
            invalid("delete")
        );
        assert!(
            matches!(
                store
                    .txn(Txn::new().put("/fine", b("v")).put(key, b("v")))
                    .await,
                Err(StoreError::InvalidKey { .. })
            ),
            "{}",
            invalid("txn put")
        );
        assert!(
            matches!(
                store.txn(Txn::new().put("/fine", b("v")).delete(key)).await,
                Err(StoreError::InvalidKey { .. })
            ),
            "{}",
            invalid("txn delete")
        );
        assert!(
            matches!(
                store
                    .txn(
                        Txn::new()
                            .when(key, pacer_store::Expect::Absent)
                            .put("/fine", b("v"))
                    )
                    .await,
                Err(StoreError::InvalidKey { .. })
            ),
            "{}",
            invalid("txn compare")
        );
    }
    for prefix in ["", "no-slash", "//", "/a//", "/a//b/"] {
        assert!(
            matches!(
                store.list(prefix, &ListOptions::default()).await,
                Err(StoreError::InvalidKey { .. })
            ),
            "list prefix {prefix:?}"
        );
        assert!(
            matches!(
                store.watch(prefix, 0).await,
                Err(StoreError::InvalidKey { .. })
            ),
            "watch prefix {prefix:?}"
        );
    }
    assert_eq!(
        store.current_revision().await?,
        r0,
        "invalid keys write nothing"
    );
    assert_eq!(store.get("/fine").await?, None);
    let page = store.list("/", &ListOptions::default()).await?;
    assert_eq!(page.items.len(), 1, "only /good exists: {:?}", page.items);
    Ok(())
}

/// Unknown leases: writes with them fail with `LeaseNotFound` (the whole transaction), as do
/// keep-alive, revoke and time-to-live; TTLs below one second are refused.
pub async fn unknown_leases_and_bad_ttls(store: Arc<dyn Store>) -> Result<()> {
    let r0 = store.create("/lease/plain", b("p"), None).await?;

    assert_err!(
        store.create("/lease/k", b("v"), Some(UNKNOWN_LEASE)).await,
        StoreError::LeaseNotFound(id) if id == UNKNOWN_LEASE
    );
    assert_err!(
        store.update("/lease/plain", b("v"), r0, Some(UNKNOWN_LEASE)).await,
        StoreError::LeaseNotFound(id) if id == UNKNOWN_LEASE
    );
    assert_err!(
        store
            .txn(Txn::new().put("/lease/other", b("o")).put_with_lease("/lease/k", b("v"), Some(UNKNOWN_LEASE)))
            .await,
        StoreError::LeaseNotFound(id) if id == UNKNOWN_LEASE
    );
    assert_eq!(
        store.current_revision().await?,
        r0,
        "writes with an unknown lease write nothing"
    );
    assert_eq!(store.get("/lease/k").await?, None);
    assert_eq!(
        store.get("/lease/other").await?,
        None,
        "the transaction was not atomic"
    );
    assert_eq!(
        store.get("/lease/plain").await?.context("plain")?.value,
        b("p")
    );

    assert_err!(store.lease_keep_alive(UNKNOWN_LEASE).await, StoreError::LeaseNotFound(id) if id == UNKNOWN_LEASE);
    assert_err!(store.lease_revoke(UNKNOWN_LEASE).await, StoreError::LeaseNotFound(id) if id == UNKNOWN_LEASE);
    assert_err!(store.lease_time_to_live(UNKNOWN_LEASE).await, StoreError::LeaseNotFound(id) if id == UNKNOWN_LEASE);

    // A revoked lease is as unknown as one never granted.
    let lease = store.lease_grant(30).await?;
    store.lease_revoke(lease).await?;
    assert_err!(store.lease_keep_alive(lease).await, StoreError::LeaseNotFound(id) if id == lease);
    assert_err!(store.lease_revoke(lease).await, StoreError::LeaseNotFound(id) if id == lease);
    assert_err!(store.lease_time_to_live(lease).await, StoreError::LeaseNotFound(id) if id == lease);
    assert_err!(store.create("/lease/k", b("v"), Some(lease)).await, StoreError::LeaseNotFound(id) if id == lease);

    for ttl in [0, -1, i64::MIN] {
        assert_err!(
            store.lease_grant(ttl).await,
            StoreError::InvalidLeaseTtl { ttl_seconds, .. } if ttl_seconds == ttl
        );
    }
    assert_eq!(store.current_revision().await?, r0);
    Ok(())
}
