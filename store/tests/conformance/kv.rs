//! Single keys: get, create, update and delete, the fields of a `KeyValue`, and CAS failures
//! that write nothing.

use std::sync::Arc;

use anyhow::{Context, Result};
use pacer_store::{KeyValue, Store, StoreError};

use crate::harness::{assert_err, b};

fn kv(key: &str, value: &[u8], create: i64, modified: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: value.to_vec(),
        create_revision: create,
        mod_revision: modified,
        version,
        lease: None,
    }
}

/// get of missing and present keys; create/mod revisions, version and lease as writes go by.
pub async fn get_and_key_value_fields(store: Arc<dyn Store>) -> Result<()> {
    assert_eq!(store.get("/kv/missing").await?, None);

    let r1 = store.create("/kv/a", b("one"), None).await?;
    assert_eq!(
        store.current_revision().await?,
        r1,
        "create returns the new revision"
    );
    assert_eq!(
        store.get("/kv/a").await?,
        Some(kv("/kv/a", b"one", r1, r1, 1))
    );
    // Neighbours of a key are other keys.
    for other in ["/kv", "/kv/a/b", "/kv/ab", "/kv/A"] {
        assert_eq!(store.get(other).await?, None, "get({other:?})");
    }

    let r2 = store.update("/kv/a", b("two"), r1, None).await?;
    assert_eq!(r2, r1 + 1, "a write gets the next revision");
    assert_eq!(
        store.get("/kv/a").await?,
        Some(kv("/kv/a", b"two", r1, r2, 2))
    );
    let r3 = store.update("/kv/a", b("three"), r2, None).await?;
    assert_eq!(
        store.get("/kv/a").await?,
        Some(kv("/kv/a", b"three", r1, r3, 3))
    );

    // A lease shows in the key; an update without one detaches it; another update attaches.
    let lease = store.lease_grant(60).await?;
    let r4 = store.create("/kv/leased", b("l"), Some(lease)).await?;
    let leased = store.get("/kv/leased").await?.context("leased key")?;
    assert_eq!(leased.lease, Some(lease));
    assert_eq!((leased.create_revision, leased.version), (r4, 1));
    let r5 = store.update("/kv/leased", b("l2"), r4, None).await?;
    assert_eq!(
        store.get("/kv/leased").await?,
        Some(kv("/kv/leased", b"l2", r4, r5, 2))
    );
    let r6 = store.update("/kv/leased", b("l3"), r5, Some(lease)).await?;
    let leased = store.get("/kv/leased").await?.context("leased key")?;
    assert_eq!(
        (leased.lease, leased.mod_revision, leased.version),
        (Some(lease), r6, 3)
    );

    // Delete, then create again: a new incarnation starts at version 1.
    let r7 = store.delete("/kv/a", r3).await?;
    assert_eq!(r7, r6 + 1);
    assert_eq!(store.get("/kv/a").await?, None);
    let r8 = store.create("/kv/a", b("again"), None).await?;
    assert_eq!(
        store.get("/kv/a").await?,
        Some(kv("/kv/a", b"again", r8, r8, 1))
    );

    // Empty, binary and non-ASCII round-trip unchanged.
    let r9 = store.create("/kv/empty", Vec::new(), None).await?;
    assert_eq!(
        store.get("/kv/empty").await?,
        Some(kv("/kv/empty", b"", r9, r9, 1))
    );
    let binary: Vec<u8> = (0..=255u8).rev().chain(0..=255u8).collect();
    let r10 = store.create("/kv/binary", binary.clone(), None).await?;
    assert_eq!(
        store.get("/kv/binary").await?,
        Some(kv("/kv/binary", &binary, r10, r10, 1))
    );
    let r11 = store.create("/kv/ünï/名前 x", b("ü"), None).await?;
    assert_eq!(
        store.get("/kv/ünï/名前 x").await?,
        Some(kv("/kv/ünï/名前 x", "ü".as_bytes(), r11, r11, 1))
    );
    assert_eq!(store.current_revision().await?, r11);
    Ok(())
}

/// create on an existing key, and update/delete with a stale or missing revision: the right
/// error, and nothing written.
pub async fn create_update_delete_conflicts(store: Arc<dyn Store>) -> Result<()> {
    let key = "/cas/k";
    let r1 = store.create(key, b("v1"), None).await?;

    assert_err!(
        store.create(key, b("other"), None).await,
        StoreError::AlreadyExists { key: ref k } if k == key
    );
    assert_eq!(
        store.current_revision().await?,
        r1,
        "a failed create writes nothing"
    );
    assert_eq!(store.get(key).await?, Some(kv(key, b"v1", r1, r1, 1)));

    let r2 = store.update(key, b("v2"), r1, None).await?;
    let intact = Some(kv(key, b"v2", r1, r2, 2));

    assert_err!(
        store.update(key, b("stale"), r1, None).await,
        StoreError::Conflict { key: ref k, expected, actual } if k == key && expected == r1 && actual == r2
    );
    assert_err!(
        store.delete(key, r1).await,
        StoreError::Conflict { key: ref k, expected, actual } if k == key && expected == r1 && actual == r2
    );
    // A revision from the future is as stale as one from the past.
    assert_err!(
        store.update(key, b("future"), r2 + 100, None).await,
        StoreError::Conflict { expected, actual, .. } if expected == r2 + 100 && actual == r2
    );
    assert_eq!(
        store.current_revision().await?,
        r2,
        "a conflict writes nothing"
    );
    assert_eq!(store.get(key).await?, intact);

    assert_err!(
        store.update("/cas/missing", b("x"), r2, None).await,
        StoreError::NotFound { key: ref k } if k == "/cas/missing"
    );
    assert_err!(
        store.delete("/cas/missing", r2).await,
        StoreError::NotFound { key: ref k } if k == "/cas/missing"
    );
    assert_eq!(store.get("/cas/missing").await?, None);
    assert_eq!(
        store.current_revision().await?,
        r2,
        "NotFound writes nothing"
    );

    let r3 = store.delete(key, r2).await?;
    assert_eq!(r3, r2 + 1);
    assert_eq!(store.get(key).await?, None);
    assert_err!(store.delete(key, r2).await, StoreError::NotFound { .. });
    assert_err!(
        store.update(key, b("x"), r2, None).await,
        StoreError::NotFound { .. }
    );
    assert_eq!(store.current_revision().await?, r3);

    // A recreated key conflicts with revisions of its previous incarnation.
    let r4 = store.create(key, b("v3"), None).await?;
    assert_err!(
        store.update(key, b("x"), r2, None).await,
        StoreError::Conflict { expected, actual, .. } if expected == r2 && actual == r4
    );
    assert_eq!(store.get(key).await?, Some(kv(key, b"v3", r4, r4, 1)));
    assert_eq!(store.current_revision().await?, r4);
    Ok(())
}
