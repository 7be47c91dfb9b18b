//! Leases: TTLs, expiry deleting attached keys, keep-alive, revoke, and `LeaseKeeper`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::FutureExt;
use pacer_store::{
    EventKind, LeaseId, LeaseKeeper, Store, StoreError, Txn, TxnOutcome, WatchEvent,
};

use crate::harness::{WAIT, assert_err, assert_quiet, b, eventually, next_events};

async fn put_with_lease(store: &dyn Store, keys: &[&str], lease: LeaseId) -> Result<i64> {
    let mut txn = Txn::new();
    for key in keys {
        txn = txn.put_with_lease(*key, format!("value of {key}").into_bytes(), Some(lease));
    }
    match store.txn(txn).await? {
        TxnOutcome::Committed { revision } => Ok(revision),
        other => bail!("unexpected {other:?}"),
    }
}

/// Checks that `events` delete exactly `keys` (in any order) at one revision, with their values.
fn check_lease_deletes(events: &[WatchEvent], keys: &[&str]) -> Result<()> {
    let mut deleted: Vec<&str> = events.iter().map(|event| event.kv.key.as_str()).collect();
    deleted.sort_unstable();
    ensure!(deleted == keys, "deleted {deleted:?}, expected {keys:?}");
    for event in events {
        ensure!(event.kind == EventKind::Delete, "not a delete: {event:?}");
        ensure!(
            event.revision() == events[0].revision(),
            "a lease's keys are deleted at one revision: {events:?}"
        );
        let previous = event
            .prev_kv
            .as_ref()
            .context("a delete carries the old value")?;
        ensure!(previous.value == format!("value of {}", event.kv.key).into_bytes());
    }
    Ok(())
}

/// Grant, time-to-live and keep-alive report the TTL; distinct leases get distinct ids.
pub async fn lease_grant_and_ttl(store: Arc<dyn Store>) -> Result<()> {
    let first = store.lease_grant(10).await?;
    let second = store.lease_grant(20).await?;
    assert_ne!(first, second);
    let ttl = store.lease_time_to_live(first).await?;
    assert!(
        (1..=10).contains(&ttl),
        "time to live {ttl} of a 10 s lease"
    );
    let ttl = store.lease_time_to_live(second).await?;
    assert!(
        (1..=20).contains(&ttl),
        "time to live {ttl} of a 20 s lease"
    );
    assert_eq!(
        store.lease_keep_alive(first).await?,
        10,
        "keep-alive returns the lease's TTL"
    );
    let ttl = store.lease_time_to_live(first).await?;
    assert!(
        (1..=10).contains(&ttl),
        "time to live {ttl} after keep-alive"
    );
    // Granting a lease writes nothing.
    let before = store.current_revision().await?;
    store.lease_grant(5).await?;
    assert_eq!(store.current_revision().await?, before);
    Ok(())
}

/// Keys on a 2 s lease that nobody keeps alive vanish, with delete events at one revision;
/// other keys stay; the lease is gone afterwards.
pub async fn lease_expiry_deletes_keys(store: Arc<dyn Store>) -> Result<()> {
    let lease = store.lease_grant(2).await?;
    let ttl = store.lease_time_to_live(lease).await?;
    assert!((0..=2).contains(&ttl), "time to live {ttl} of a 2 s lease");
    store.create("/le/plain", b("stays"), None).await?;
    let r = put_with_lease(store.as_ref(), &["/le/a", "/le/b", "/le/c"], lease).await?;
    let mut stream = store.watch("/le/", r).await?;

    eventually("the leased keys vanish", WAIT, || async {
        Ok(store.get("/le/a").await?.is_none())
    })
    .await?;
    for key in ["/le/b", "/le/c"] {
        assert_eq!(store.get(key).await?, None, "{key} vanished with its lease");
    }
    assert!(store.get("/le/plain").await?.is_some());
    let events = next_events(&mut stream, 3).await?;
    check_lease_deletes(&events, &["/le/a", "/le/b", "/le/c"])?;
    assert_eq!(
        store.current_revision().await?,
        events[0].revision(),
        "expiry is one revision"
    );
    assert_quiet(&mut stream).await?;

    assert_err!(store.lease_time_to_live(lease).await, StoreError::LeaseNotFound(id) if id == lease);
    assert_err!(store.lease_keep_alive(lease).await, StoreError::LeaseNotFound(id) if id == lease);
    assert_err!(
        store.create("/le/late", b("x"), Some(lease)).await,
        StoreError::LeaseNotFound(_)
    );
    Ok(())
}

/// Revoking deletes the lease's keys at once, at one revision; a lease without keys revokes
/// without a new revision.
pub async fn lease_revoke(store: Arc<dyn Store>) -> Result<()> {
    let lease = store.lease_grant(60).await?;
    let keys = ["/lr/a", "/lr/b", "/lr/c"];
    put_with_lease(store.as_ref(), &keys[..2], lease).await?;
    store
        .create("/lr/c", b("value of /lr/c"), Some(lease))
        .await?;
    store.create("/lr/plain", b("stays"), None).await?;
    let before = store.current_revision().await?;
    let mut stream = store.watch("/lr/", before).await?;

    store.lease_revoke(lease).await?;
    for key in keys {
        assert_eq!(
            store.get(key).await?,
            None,
            "{key} is gone as soon as revoke returns"
        );
    }
    assert!(store.get("/lr/plain").await?.is_some());
    assert_eq!(
        store.current_revision().await?,
        before + 1,
        "revoke is one revision"
    );
    let events = next_events(&mut stream, 3).await?;
    check_lease_deletes(&events, &keys)?;
    assert_eq!(events[0].revision(), before + 1);
    assert_quiet(&mut stream).await?;
    assert_err!(
        store.lease_revoke(lease).await,
        StoreError::LeaseNotFound(_)
    );
    assert_err!(
        store.lease_time_to_live(lease).await,
        StoreError::LeaseNotFound(_)
    );

    let empty = store.lease_grant(60).await?;
    store.lease_revoke(empty).await?;
    assert_eq!(
        store.current_revision().await?,
        before + 1,
        "revoking a lease without keys changes nothing"
    );
    Ok(())
}

/// Keep-alive by hand and by `LeaseKeeper` keeps keys past twice the TTL; revoking the
/// keeper's lease fires `lost()`; once keep-alives stop, the lease runs out.
pub async fn lease_keep_alive_and_keeper(store: Arc<dyn Store>) -> Result<()> {
    const TTL: i64 = 3;
    let manual = store.lease_grant(TTL).await?;
    let kept = store.lease_grant(TTL).await?;
    put_with_lease(store.as_ref(), &["/lk/manual"], manual).await?;
    put_with_lease(store.as_ref(), &["/lk/kept"], kept).await?;
    let keeper = LeaseKeeper::start(Arc::clone(&store), kept, TTL);
    assert_eq!(keeper.lease(), kept);

    // Keep `manual` alive by hand every 500 ms for more than twice the TTL.
    let until = tokio::time::Instant::now() + Duration::from_secs(2 * TTL as u64 + 1);
    while tokio::time::Instant::now() < until {
        let ttl = store.lease_keep_alive(manual).await?;
        assert_eq!(ttl, TTL);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (key, lease) in [("/lk/manual", manual), ("/lk/kept", kept)] {
        let kv = store
            .get(key)
            .await?
            .with_context(|| format!("{key} outlived its TTL while kept alive"))?;
        assert_eq!(kv.lease, Some(lease));
        let ttl = store.lease_time_to_live(lease).await?;
        assert!(
            (1..=TTL).contains(&ttl),
            "time to live {ttl} of a kept-alive {TTL} s lease"
        );
    }
    assert!(
        keeper.lost().now_or_never().is_none(),
        "the keeper reports a live lease as lost"
    );

    store.lease_revoke(kept).await?;
    tokio::time::timeout(WAIT, keeper.lost())
        .await
        .context("LeaseKeeper::lost() did not fire after the lease was revoked")?;
    assert_eq!(store.get("/lk/kept").await?, None);

    // Without keep-alives the manual lease runs out: it really was a 3 s lease.
    eventually("the manual lease runs out", WAIT, || async {
        Ok(store.get("/lk/manual").await?.is_none())
    })
    .await?;
    assert_err!(
        store.lease_keep_alive(manual).await,
        StoreError::LeaseNotFound(_)
    );
    Ok(())
}
