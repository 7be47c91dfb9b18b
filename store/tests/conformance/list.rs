//! Listing: prefix isolation, byte order, pagination consistent at one revision while others
//! write, continue-token errors, and reads at an older revision.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use pacer_store::list::ContinueToken;
use pacer_store::{KeyValue, ListOptions, ListPage, Revision, Store, StoreError, Txn};

use crate::harness::{WAIT, assert_err, b};

/// Lists every page of `prefix` from `first` options on, checking the page invariants:
/// one revision on every page, exactly `limit` items on pages with a token, none after the
/// last. Returns the items and the list revision.
pub async fn list_all_pages(
    store: &dyn Store,
    prefix: &str,
    limit: usize,
    revision: Option<Revision>,
) -> Result<(Vec<KeyValue>, Revision)> {
    let mut options = ListOptions {
        limit,
        continue_token: None,
        revision,
    };
    let mut items = Vec::new();
    let mut list_revision = None;
    for page_number in 0.. {
        let page = store.list(prefix, &options).await?;
        check_page(&page, limit, page_number)?;
        let expected_revision = *list_revision.get_or_insert(page.revision);
        ensure!(
            page.revision == expected_revision,
            "page {page_number} is at revision {}, the first page at {expected_revision}",
            page.revision
        );
        items.extend(page.items);
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => break,
        }
    }
    Ok((items, list_revision.context("no page")?))
}

fn check_page(page: &ListPage, limit: usize, page_number: usize) -> Result<()> {
    if page.continue_token.is_some() {
        ensure!(
            limit > 0 && page.items.len() == limit,
            "page {page_number} has a continue token but {} items (limit {limit})",
            page.items.len()
        );
    } else if limit > 0 {
        ensure!(
            page.items.len() <= limit,
            "page {page_number} is over the limit"
        );
    }
    ensure!(
        page.items
            .windows(2)
            .all(|pair| pair[0].key.as_bytes() < pair[1].key.as_bytes()),
        "page {page_number} is not in ascending byte order: {:?}",
        page.items.iter().map(|kv| &kv.key).collect::<Vec<_>>()
    );
    Ok(())
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

/// Only keys under the prefix, in ascending byte order, with full key-values; `limit`
/// boundaries; empty prefixes.
pub async fn list_prefix_and_order(store: Arc<dyn Store>) -> Result<()> {
    let all = [
        "/l/a/1", "/l/a/10", "/l/a/2", "/l/a/b/c", "/l/a/~", "/l/a/-", "/l/a/Z", "/l/a/ü",
        "/l/a/ab", "/l/ab", "/l/a", "/l/a0", "/l/a.", "/l/b/1", "/m",
    ];
    for (index, key) in all.iter().enumerate() {
        store
            .create(key, format!("value {index}").into_bytes(), None)
            .await?;
    }
    let current = store.current_revision().await?;

    let check = |prefix: &'static str| {
        let mut expected: Vec<&str> = all
            .iter()
            .copied()
            .filter(|key| key.starts_with(prefix))
            .collect();
        expected.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        expected
    };
    for prefix in [
        "/l/a/",
        "/l/a",
        "/l/",
        "/",
        "/l/a/b/",
        "/l/a/b",
        "/l/nothing/",
        "/n",
    ] {
        let page = store.list(prefix, &ListOptions::default()).await?;
        check_page(&page, 0, 0)?;
        assert_eq!(keys(&page.items), check(prefix), "list({prefix:?})");
        assert_eq!(page.revision, current, "list({prefix:?}) revision");
        assert_eq!(page.continue_token, None, "list({prefix:?}) with no limit");
        for kv in &page.items {
            assert_eq!(
                Some(kv),
                store.get(&kv.key).await?.as_ref(),
                "list and get agree"
            );
        }
    }
    // `/l/a/` holds 9 keys: limits above, at and below that.
    for limit in [9, 10, 100] {
        let page = store
            .list(
                "/l/a/",
                &ListOptions {
                    limit,
                    ..ListOptions::default()
                },
            )
            .await?;
        assert_eq!(page.items.len(), 9, "limit {limit}");
        assert_eq!(
            page.continue_token, None,
            "limit {limit}: everything fit, so no token"
        );
    }
    for limit in [1, 2, 3, 4, 8] {
        let (items, revision) = list_all_pages(store.as_ref(), "/l/a/", limit, None).await?;
        assert_eq!(keys(&items), check("/l/a/"), "pages of {limit}");
        assert_eq!(revision, current);
    }
    Ok(())
}

/// Pages read at the first page's revision, however keys change between and during pages.
pub async fn list_pagination_consistent_under_writes(store: Arc<dyn Store>) -> Result<()> {
    for index in 0..60 {
        store
            .create(
                &format!("/p/k{index:03}"),
                format!("v{index}").into_bytes(),
                None,
            )
            .await?;
    }
    store.create("/p0", b("outside"), None).await?;
    let (model, r0) = list_all_pages(store.as_ref(), "/p/", 0, None).await?;
    assert_eq!(model.len(), 60);
    // The first page is read before anything changes, so the whole list must equal `model`.
    let first = store
        .list(
            "/p/",
            &ListOptions {
                limit: 7,
                ..ListOptions::default()
            },
        )
        .await?;
    assert_eq!(
        first.revision, r0,
        "nothing was written before the first page"
    );

    // A writer that keeps changing the prefix while we page through it.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn({
        let (store, stop, writes) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&writes));
        async move {
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                // The updated and the deleted key never coincide (6 * round + 5 is never 0 mod 60).
                let txn = Txn::new()
                    .put(
                        format!("/p/k{:03}", (round * 7) % 60),
                        format!("changed {round}").into_bytes(),
                    )
                    .put(format!("/p/k{:03}x{round}", round % 60), b("new"))
                    .delete(format!("/p/k{:03}", (round * 13 + 5) % 60))
                    .put(format!("/p/zz{round}"), b("after everything"))
                    .put(format!("/p/{round}"), b("before everything"));
                store.txn(txn).await?;
                writes.fetch_add(1, Ordering::Relaxed);
                round += 1;
                // Paced, so that pages and writes interleave without flooding the store.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            anyhow::Ok(())
        }
    });

    let items = page_on_while_writing(store.as_ref(), "/p/", 7, first, &writes).await?;
    assert!(
        items == model,
        "pages of 7 differ from the state at the first page: {:?}",
        keys(&items)
    );

    // Again with the writer already running: the pages must equal a one-shot read at the
    // revision of the first page.
    let first = store
        .list(
            "/p/",
            &ListOptions {
                limit: 10,
                ..ListOptions::default()
            },
        )
        .await?;
    let revision = first.revision;
    let items = page_on_while_writing(store.as_ref(), "/p/", 10, first, &writes).await?;
    stop.store(true, Ordering::Relaxed);
    writer.await??;
    assert!(
        writes.load(Ordering::Relaxed) > 0,
        "the concurrent writer never wrote"
    );
    let (snapshot, snapshot_revision) =
        list_all_pages(store.as_ref(), "/p/", 0, Some(revision)).await?;
    assert_eq!(snapshot_revision, revision);
    assert!(
        items == snapshot,
        "pages of 10 differ from the snapshot at revision {revision}"
    );

    // The first snapshot is still readable, paged differently.
    let (old, old_revision) = list_all_pages(store.as_ref(), "/p/", 13, Some(r0)).await?;
    assert_eq!(old_revision, r0);
    assert!(
        old == model,
        "paging at the old revision differs from the model"
    );
    Ok(())
}

/// Pages on from `first`; between pages, waits for the concurrent writer to write again, then
/// deletes the key right after the cursor, inserts one right after it, and updates one further
/// on.
async fn page_on_while_writing(
    store: &dyn Store,
    prefix: &str,
    limit: usize,
    first: ListPage,
    writes: &AtomicUsize,
) -> Result<Vec<KeyValue>> {
    let revision = first.revision;
    let mut page = first;
    let mut items = Vec::new();
    for page_number in 0.. {
        check_page(&page, limit, page_number)?;
        ensure!(
            page.revision == revision,
            "page {page_number} is at revision {}, the first at {revision}",
            page.revision
        );
        items.extend(page.items);
        let Some(token) = page.continue_token else {
            break;
        };
        let seen_writes = writes.load(Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + WAIT;
        while writes.load(Ordering::Relaxed) == seen_writes {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "the concurrent writer stalled"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let last = items
            .last()
            .context("a page with a token has items")?
            .key
            .clone();
        let inserted = format!("{last}-inserted");
        let now = store.list(prefix, &ListOptions::default()).await?;
        let mut after = now
            .items
            .iter()
            .map(|kv| kv.key.clone())
            .filter(|key| *key > last && *key != inserted);
        let mut txn = Txn::new().put(inserted.clone(), b("inserted"));
        if let Some(next) = after.next() {
            txn = txn.delete(next);
        }
        if let Some(further) = after.nth(3) {
            txn = txn.put(further, b("updated"));
        }
        store.txn(txn).await?;
        let options = ListOptions {
            limit,
            continue_token: Some(token),
            revision: None,
        };
        page = store.list(prefix, &options).await?;
    }
    Ok(items)
}

/// Tokens this store did not issue, or issued for another prefix, fail with `InvalidContinue`.
pub async fn list_invalid_continue(store: Arc<dyn Store>) -> Result<()> {
    for index in 0..5 {
        store.create(&format!("/c/a/{index}"), b("v"), None).await?;
        store.create(&format!("/c/b/{index}"), b("v"), None).await?;
    }
    let page = store
        .list(
            "/c/a/",
            &ListOptions {
                limit: 2,
                ..ListOptions::default()
            },
        )
        .await?;
    let token = page.continue_token.context("a token after 2 of 5 keys")?;
    let not_json = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"hello");
    let no_revision = ContinueToken {
        revision: 0,
        next_key: "/c/a/3".into(),
    }
    .encode();
    for (what, bad, prefix) in [
        ("garbage", "garbage!".to_owned(), "/c/a/"),
        ("base64 of not-json", not_json, "/c/a/"),
        ("token without revision", no_revision, "/c/a/"),
        ("another prefix's token", token.clone(), "/c/b/"),
    ] {
        let options = ListOptions {
            limit: 2,
            continue_token: Some(bad),
            revision: None,
        };
        let result = store.list(prefix, &options).await;
        assert!(
            matches!(result, Err(StoreError::InvalidContinue(_))),
            "{what}: {result:?}"
        );
    }
    // The genuine token still works afterwards, with another limit too.
    let options = ListOptions {
        limit: 10,
        continue_token: Some(token),
        revision: None,
    };
    let rest = store.list("/c/a/", &options).await?;
    assert_eq!(keys(&rest.items), ["/c/a/2", "/c/a/3", "/c/a/4"]);
    assert_eq!(rest.revision, page.revision);
    assert_eq!(rest.continue_token, None);
    Ok(())
}

/// A list at an older revision returns the state then; a future revision fails.
pub async fn list_at_old_revision(store: Arc<dyn Store>) -> Result<()> {
    let r1 = match store
        .txn(Txn::new().put("/o/a", b("a1")).put("/o/b", b("b1")))
        .await?
    {
        pacer_store::TxnOutcome::Committed { revision } => revision,
        other => anyhow::bail!("unexpected {other:?}"),
    };
    let r2 = store.update("/o/a", b("a2"), r1, None).await?;
    let r3 = store.delete("/o/b", r1).await?;
    let r4 = store.create("/o/c", b("c1"), None).await?;

    let state = |revision: Option<Revision>| {
        let store = Arc::clone(&store);
        async move {
            let page = store
                .list(
                    "/o/",
                    &ListOptions {
                        revision,
                        ..ListOptions::default()
                    },
                )
                .await?;
            let items: BTreeMap<String, (Vec<u8>, Revision, i64)> = page
                .items
                .into_iter()
                .map(|kv| (kv.key, (kv.value, kv.mod_revision, kv.version)))
                .collect();
            anyhow::Ok((items, page.revision))
        }
    };
    let entry = |key: &str, value: &str, revision: Revision, version: i64| {
        (key.to_owned(), (b(value), revision, version))
    };
    assert_eq!(
        state(Some(r1)).await?,
        (
            BTreeMap::from([entry("/o/a", "a1", r1, 1), entry("/o/b", "b1", r1, 1)]),
            r1
        )
    );
    assert_eq!(
        state(Some(r2)).await?,
        (
            BTreeMap::from([entry("/o/a", "a2", r2, 2), entry("/o/b", "b1", r1, 1)]),
            r2
        )
    );
    assert_eq!(
        state(Some(r3)).await?,
        (BTreeMap::from([entry("/o/a", "a2", r2, 2)]), r3)
    );
    let now = (
        BTreeMap::from([entry("/o/a", "a2", r2, 2), entry("/o/c", "c1", r4, 1)]),
        r4,
    );
    assert_eq!(state(Some(r4)).await?, now);
    assert_eq!(state(None).await?, now);

    // Paging at the old revision stays there.
    let (items, revision) = list_all_pages(store.as_ref(), "/o/", 1, Some(r1)).await?;
    assert_eq!((keys(&items), revision), (vec!["/o/a", "/o/b"], r1));
    assert_eq!(items[0].value, b("a1"));

    let future = r4 + 10;
    assert_err!(
        store.list("/o/", &ListOptions { revision: Some(future), ..ListOptions::default() }).await,
        StoreError::FutureRevision { requested, current } if requested == future && current == r4
    );
    Ok(())
}
