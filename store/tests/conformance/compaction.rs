//! Compaction: history at and below the compacted revision is gone for watches, old reads and
//! continue tokens; current keys stay readable; live watches go on.

use std::sync::Arc;

use anyhow::{Context, Result};
use pacer_store::{EventKind, ListOptions, Store, StoreError};

use crate::harness::{assert_err, b, expect_watch_expired, next_event, next_events};

/// After `compact(r)`: `watch(r - 1)` and reads at `r - 1` are `Expired`, `watch(r)` replays
/// what followed, keys written before `r` are still there, a future revision is refused.
pub async fn compaction(store: Arc<dyn Store>) -> Result<()> {
    let r_old = store.create("/c/old", b("old"), None).await?;
    let mut hot = store.create("/c/hot", b("0"), None).await?;
    for round in 1..=5 {
        hot = store
            .update("/c/hot", format!("{round}").into_bytes(), hot, None)
            .await?;
    }
    let r = store.current_revision().await?;
    assert_eq!(r, hot);
    // A paginated list begun at r - 1, to continue after the compaction.
    let old_page = store
        .list(
            "/c/",
            &ListOptions {
                limit: 1,
                revision: Some(r - 1),
                continue_token: None,
            },
        )
        .await?;
    let old_token = old_page.continue_token.context("2 keys, limit 1")?;
    let mut late = Vec::new();
    for index in 0..3 {
        late.push(
            store
                .create(&format!("/c/late{index}"), b("late"), None)
                .await?,
        );
    }
    let before_compaction = store.current_revision().await?;
    let mut live = store.watch("/c/", before_compaction).await?;

    store.compact(r).await?;

    let compacted = expect_watch_expired(store.as_ref(), "/c/", r - 1).await?;
    assert_eq!(compacted, r, "Expired reports the compacted revision");
    expect_watch_expired(store.as_ref(), "/c/", r_old).await?;
    expect_watch_expired(store.as_ref(), "/c/hot", 1).await?;

    // Watching from r itself replays what came after it.
    let mut from_r = store.watch("/c/", r).await?;
    let events = next_events(&mut from_r, 3).await?;
    assert_eq!(
        events
            .iter()
            .map(|event| event.revision())
            .collect::<Vec<_>>(),
        late
    );

    assert_err!(
        store.list("/c/", &ListOptions { revision: Some(r - 1), ..ListOptions::default() }).await,
        StoreError::Expired { requested, compacted } if requested == r - 1 && compacted == r
    );
    assert_err!(
        store
            .list(
                "/c/",
                &ListOptions {
                    limit: 1,
                    continue_token: Some(old_token),
                    revision: None
                }
            )
            .await,
        StoreError::Expired { .. }
    );
    // At r itself the state is still there.
    let at_r = store
        .list(
            "/c/",
            &ListOptions {
                revision: Some(r),
                ..ListOptions::default()
            },
        )
        .await?;
    assert_eq!(
        at_r.items
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
            .collect::<Vec<_>>(),
        vec![("/c/hot", &b"5"[..]), ("/c/old", &b"old"[..])]
    );
    // Current reads are untouched, including a key last written long before r.
    let old = store
        .get("/c/old")
        .await?
        .context("/c/old survives compaction")?;
    assert_eq!(
        (old.value, old.mod_revision, old.version),
        (b("old"), r_old, 1)
    );
    let hot_kv = store.get("/c/hot").await?.context("/c/hot")?;
    assert_eq!((hot_kv.mod_revision, hot_kv.version), (r, 6));
    assert_eq!(
        store
            .list("/c/", &ListOptions::default())
            .await?
            .items
            .len(),
        5
    );

    // A watch established before the compaction goes on.
    let r_after = store.update("/c/old", b("new"), r_old, None).await?;
    let event = next_event(&mut live).await?;
    assert_eq!(
        (event.kind, event.kv.key.as_str(), event.revision()),
        (EventKind::Put, "/c/old", r_after)
    );
    assert_eq!(
        event.prev_kv.map(|kv| kv.value),
        Some(b("old")),
        "the previous value survived compaction"
    );

    let current = store.current_revision().await?;
    assert_err!(
        store.compact(current + 10).await,
        StoreError::FutureRevision { requested, current: now } if requested == current + 10 && now == current
    );
    // Compacting up to the current revision is allowed; watching from it works.
    store.compact(current).await?;
    let mut stream = store.watch("/c/", current).await?;
    let r_last = store.create("/c/last", b("x"), None).await?;
    assert_eq!(next_event(&mut stream).await?.revision(), r_last);
    expect_watch_expired(store.as_ref(), "/c/", current - 1).await?;
    Ok(())
}
