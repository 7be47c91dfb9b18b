//! Unit tests of the embedded store through the `Store` trait, plus a few looks inside (how
//! much history a purge leaves, a SIGKILL drill). A random workload is checked against a
//! simple model of etcd's MVCC: every past revision, every page size, every replay.
//!
//! Unit tests build with tiny buffers (watch broadcast 8 revisions, replay chunks of 5, purge
//! steps of 3), so lag recovery, chunked replay and chunked purges run all the time here.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redb::{ReadableDatabase, ReadableTableMetadata};

use super::EmbeddedStore;
use super::tables::{EVENTS, HISTORY, META, META_PURGED, meta_value};
use crate::error::StoreError;
use crate::kv::{EventKind, KeyValue, LeaseId, Revision, WatchEvent, WatchStream};
use crate::list::{ContinueToken, ListOptions};
use crate::store::Store;
use crate::txn::{Compare, Expect, Observed, Op, Txn, TxnOutcome};

const WAIT: Duration = Duration::from_secs(20);

fn open(dir: &Path) -> Result<EmbeddedStore> {
    Ok(EmbeddedStore::open(&dir.join("store.redb"))?)
}

fn temp() -> Result<(tempfile::TempDir, EmbeddedStore)> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    Ok((dir, store))
}

async fn put(store: &EmbeddedStore, key: &str, value: &str) -> Result<Revision> {
    committed(store.txn(Txn::new().put(key, value)).await?)
}

fn committed(outcome: TxnOutcome) -> Result<Revision> {
    match outcome {
        TxnOutcome::Committed { revision } => Ok(revision),
        other => bail!("expected a commit, got {other:?}"),
    }
}

async fn next(stream: &mut WatchStream) -> Result<WatchEvent> {
    match tokio::time::timeout(WAIT, stream.next()).await {
        Ok(Some(Ok(event))) => Ok(event),
        other => bail!("expected a watch event, got {other:?}"),
    }
}

async fn quiet(stream: &mut WatchStream) -> Result<()> {
    match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
        Err(_) => Ok(()),
        Ok(item) => bail!("expected no watch event, got {item:?}"),
    }
}

async fn list_all(
    store: &EmbeddedStore,
    prefix: &str,
    revision: Revision,
    limit: usize,
) -> Result<Vec<KeyValue>> {
    let mut items = Vec::new();
    let mut options = ListOptions {
        limit,
        continue_token: None,
        revision: Some(revision),
    };
    loop {
        let page = store.list(prefix, &options).await?;
        ensure!(
            page.revision == revision,
            "page at {} instead of {revision}",
            page.revision
        );
        if limit > 0 {
            ensure!(page.items.len() <= limit, "page over the limit");
        }
        let full = limit > 0 && page.items.len() == limit;
        items.extend(page.items);
        match page.continue_token {
            Some(token) => {
                ensure!(full, "a token after a page that is not full");
                options.continue_token = Some(token);
            }
            None => return Ok(items),
        }
    }
}

/// Counts of entries in the history and events tables, and the purged revision.
fn storage(store: &EmbeddedStore) -> Result<(u64, u64, Revision)> {
    let txn = store.core.db.begin_read()?;
    let history = txn.open_table(HISTORY)?.len()?;
    let events = txn.open_table(EVENTS)?.len()?;
    let purged = meta_value(&txn.open_table(META)?, META_PURGED)?;
    Ok((history, events, purged))
}

async fn wait_purged(store: &EmbeddedStore, compacted: Revision) -> Result<()> {
    let start = std::time::Instant::now();
    while storage(store)?.2 < compacted {
        ensure!(start.elapsed() < WAIT, "the purge did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn revisions_versions_and_noop_transactions() -> Result<()> {
    let (_dir, store) = temp()?;
    // Like etcd, an empty store is at revision 1.
    assert_eq!(store.current_revision().await?, 1);
    assert_eq!(committed(store.txn(Txn::new()).await?)?, 1, "an empty txn");
    assert_eq!(
        committed(store.txn(Txn::new().delete("/a")).await?)?,
        1,
        "a delete of nothing"
    );

    let r1 = put(&store, "/a", "1").await?;
    let r2 = put(&store, "/a", "2").await?;
    assert_eq!((r1, r2), (2, 3));
    let a = store.get("/a").await?.context("/a")?;
    assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 3, 2));

    // Several ops, one revision; a delete of an absent key inside a changing txn is fine.
    let r3 = committed(
        store
            .txn(Txn::new().put("/b", "b").delete("/a").delete("/zzz"))
            .await?,
    )?;
    assert_eq!(r3, 4);
    assert_eq!(store.get("/a").await?, None);
    assert_eq!(store.get("/b").await?.map(|kv| kv.mod_revision), Some(4));
    assert_eq!(committed(store.txn(Txn::new().delete("/a")).await?)?, 4);
    assert_eq!(store.current_revision().await?, 4);

    // Recreated: a new incarnation.
    let r4 = put(&store, "/a", "again").await?;
    let a = store.get("/a").await?.context("/a")?;
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r4, r4, 1));

    assert!(matches!(
        store.get("relative").await,
        Err(StoreError::InvalidKey { .. })
    ));
    assert!(matches!(
        store.txn(Txn::new().put("/x", "1").put("/x", "2")).await,
        Err(StoreError::InvalidTxn(_))
    ));
    Ok(())
}

#[tokio::test]
async fn failed_compares_report_what_they_saw_and_write_nothing() -> Result<()> {
    let (_dir, store) = temp()?;
    let r1 = put(&store, "/a", "1").await?;
    let txn = Txn::new()
        .when("/a", Expect::ModRevision(r1))
        .when("/missing", Expect::Present)
        .when("/a", Expect::CreateRevision(r1))
        .put("/a", "2");
    assert_eq!(
        store.txn(txn).await?,
        TxnOutcome::CompareFailed {
            revision: r1,
            observed: vec![
                Observed {
                    key: "/a".into(),
                    mod_revision: r1,
                    create_revision: r1
                },
                Observed {
                    key: "/missing".into(),
                    mod_revision: 0,
                    create_revision: 0
                },
                Observed {
                    key: "/a".into(),
                    mod_revision: r1,
                    create_revision: r1
                },
            ],
        }
    );
    assert_eq!(store.current_revision().await?, r1);
    assert_eq!(
        store.get("/a").await?.map(|kv| kv.value),
        Some(b"1".to_vec())
    );

    // Compares fail before leases are checked (etcd's order).
    let txn = Txn::new()
        .when("/a", Expect::Absent)
        .put_with_lease("/b", "x", Some(LeaseId(999)));
    assert!(!store.txn(txn).await?.committed());
    // With the compare holding, the unknown lease fails the whole txn.
    let txn = Txn::new()
        .when("/a", Expect::Present)
        .put("/c", "c")
        .put_with_lease("/b", "x", Some(LeaseId(999)));
    assert!(matches!(
        store.txn(txn).await,
        Err(StoreError::LeaseNotFound(LeaseId(999)))
    ));
    assert_eq!(
        store.get("/c").await?,
        None,
        "nothing of the txn was written"
    );
    assert_eq!(store.current_revision().await?, r1);
    Ok(())
}

#[tokio::test]
async fn pagination_is_consistent_and_exact() -> Result<()> {
    let (_dir, store) = temp()?;
    for key in ["/p/a", "/p/b", "/p/b/c", "/p/c", "/p/d", "/pz", "/q"] {
        put(&store, key, key).await?;
    }
    let at = store.current_revision().await?;
    let keys = |items: &[KeyValue]| items.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();

    let page = store
        .list(
            "/p/",
            &ListOptions {
                limit: 2,
                ..ListOptions::default()
            },
        )
        .await?;
    assert_eq!(keys(&page.items), ["/p/a", "/p/b"]);
    assert_eq!(page.revision, at);
    let token = page.continue_token.context("more follow")?;
    assert_eq!(
        ContinueToken::decode(&token, "/p/")?,
        ContinueToken::after(at, "/p/b")
    );

    // Writes between pages do not show: the list stays at its revision.
    put(&store, "/p/bb", "new").await?;
    store.txn(Txn::new().delete("/p/c")).await?;
    let options = ListOptions {
        limit: 2,
        continue_token: Some(token),
        revision: None,
    };
    let page = store.list("/p/", &options).await?;
    assert_eq!(keys(&page.items), ["/p/b/c", "/p/c"]);
    assert_eq!(page.revision, at);
    let options = ListOptions {
        limit: 2,
        continue_token: page.continue_token,
        revision: None,
    };
    let page = store.list("/p/", &options).await?;
    assert_eq!(keys(&page.items), ["/p/d"]);
    assert_eq!(page.continue_token, None);

    // A page that ends exactly at the last key carries no token.
    for limit in [5, 6, 0] {
        let page = store
            .list(
                "/p/",
                &ListOptions {
                    limit,
                    revision: Some(at),
                    ..ListOptions::default()
                },
            )
            .await?;
        assert_eq!(page.items.len(), 5, "limit {limit}");
        assert_eq!(page.continue_token, None, "limit {limit}");
    }
    let page = store
        .list(
            "/p/",
            &ListOptions {
                limit: 4,
                revision: Some(at),
                ..ListOptions::default()
            },
        )
        .await?;
    assert!(page.continue_token.is_some());

    // The same at the current revision (served from the current table).
    let now = store.list("/p/", &ListOptions::default()).await?;
    assert_eq!(
        keys(&now.items),
        ["/p/a", "/p/b", "/p/b/c", "/p/bb", "/p/d"]
    );
    let all = store.list("/", &ListOptions::default()).await?;
    assert_eq!(all.items.len(), 7);
    // "/p" without a slash is a plain byte prefix, as in etcd.
    assert_eq!(
        store.list("/p", &ListOptions::default()).await?.items.len(),
        6
    );

    // Bad tokens and prefixes.
    let bad = ListOptions {
        continue_token: Some("garbage!".into()),
        ..ListOptions::default()
    };
    assert!(matches!(
        store.list("/p/", &bad).await,
        Err(StoreError::InvalidContinue(_))
    ));
    let other = ListOptions {
        continue_token: Some(ContinueToken::after(at, "/q").encode()),
        ..ListOptions::default()
    };
    assert!(matches!(
        store.list("/p/", &other).await,
        Err(StoreError::InvalidContinue(_))
    ));
    assert!(matches!(
        store.list("p", &ListOptions::default()).await,
        Err(StoreError::InvalidKey { .. })
    ));
    let future = ListOptions {
        revision: Some(at + 100),
        ..ListOptions::default()
    };
    assert!(matches!(
        store.list("/p/", &future).await,
        Err(StoreError::FutureRevision { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn compaction_bounds_reads_and_watches_like_etcd() -> Result<()> {
    let (_dir, store) = temp()?;
    // Revisions 2 to 10 write /c/k, 11 creates /c/other, 12 deletes it.
    for index in 0..9 {
        put(&store, "/c/k", &index.to_string()).await?;
    }
    put(&store, "/c/other", "x").await?;
    store.txn(Txn::new().delete("/c/other")).await?;
    store.compact(10).await?;
    let at = |revision| ListOptions {
        revision: Some(revision),
        ..ListOptions::default()
    };

    assert!(matches!(
        store.list("/c/", &at(9)).await,
        Err(StoreError::Expired {
            requested: 9,
            compacted: 10
        })
    ));
    // The compacted revision itself stays readable (etcd: `rev < compactMainRev` fails).
    let page = store.list("/c/", &at(10)).await?;
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        (page.items[0].value.as_slice(), page.items[0].version),
        (&b"8"[..], 9)
    );
    assert_eq!(store.list("/c/", &at(11)).await?.items.len(), 2);
    assert_eq!(store.list("/c/", &at(12)).await?.items.len(), 1);

    assert!(matches!(
        store.compact(10).await,
        Err(StoreError::Expired {
            requested: 10,
            compacted: 10
        })
    ));
    assert!(matches!(
        store.compact(3).await,
        Err(StoreError::Expired { .. })
    ));
    assert!(matches!(
        store.compact(13).await,
        Err(StoreError::FutureRevision {
            requested: 13,
            current: 12
        })
    ));

    assert!(matches!(
        store.watch("/c/", 9).await.err(),
        Some(StoreError::Expired {
            requested: 9,
            compacted: 10
        })
    ));
    let mut watch = store.watch("/c/", 10).await?;
    assert_eq!(next(&mut watch).await?.revision(), 11);
    let delete = next(&mut watch).await?;
    assert_eq!((delete.kind, delete.revision()), (EventKind::Delete, 12));
    assert_eq!(delete.prev_kv.map(|kv| kv.value), Some(b"x".to_vec()));

    // After the purge, the same answers; only the latest state of each key is left.
    wait_purged(&store, 10).await?;
    let (history, events, _) = storage(&store)?;
    assert_eq!(
        (history, events),
        (3, 2),
        "k@10, other@11, other@12 and two event lists"
    );
    assert_eq!(store.list("/c/", &at(10)).await?.items.len(), 1);
    let mut watch = store.watch("/c/", 10).await?;
    assert_eq!(next(&mut watch).await?.revision(), 11);

    // Compacting everything keeps live keys only.
    store.compact(12).await?;
    wait_purged(&store, 12).await?;
    assert_eq!(storage(&store)?.0, 1);
    assert_eq!(store.list("/c/", &at(12)).await?.items.len(), 1);
    assert_eq!(store.get("/c/k").await?.map(|kv| kv.version), Some(9));
    Ok(())
}

#[tokio::test]
async fn watch_replays_then_follows_live_events() -> Result<()> {
    let (_dir, store) = temp()?;
    let r1 = put(&store, "/w/a", "1").await?;
    put(&store, "/elsewhere", "x").await?;
    let r3 = put(&store, "/w/a", "2").await?;
    let r4 = committed(
        store
            .txn(Txn::new().delete("/w/a").put("/w/b", "b"))
            .await?,
    )?;

    let mut watch = store.watch("/w/", r1).await?;
    let mut now = store.watch("/w/", 0).await?;
    let update = next(&mut watch).await?;
    assert_eq!((update.kind, update.revision()), (EventKind::Put, r3));
    assert_eq!(update.kv.version, 2);
    assert_eq!(update.prev_kv.as_ref().map(|kv| kv.mod_revision), Some(r1));
    let delete = next(&mut watch).await?;
    assert_eq!(
        delete,
        WatchEvent {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: "/w/a".into(),
                value: Vec::new(),
                create_revision: 0,
                mod_revision: r4,
                version: 0,
                lease: None,
            },
            prev_kv: update.kv.clone().into(),
        }
    );
    let create = next(&mut watch).await?;
    assert_eq!(
        (create.kv.key.as_str(), create.revision(), create.prev_kv),
        ("/w/b", r4, None)
    );
    quiet(&mut watch).await?;
    quiet(&mut now).await?;

    // Live events: the same shape as replayed ones.
    let r5 = put(&store, "/w/b", "b2").await?;
    put(&store, "/outside", "x").await?;
    let live = next(&mut watch).await?;
    assert_eq!(next(&mut now).await?, live);
    assert_eq!((live.revision(), live.kv.version), (r5, 2));
    let mut replayed = store.watch("/w/", r5 - 1).await?;
    assert_eq!(next(&mut replayed).await?, live);
    quiet(&mut watch).await?;

    // A watch from the future waits for its revision.
    let current = store.current_revision().await?;
    let mut future = store.watch("/w/", current + 2).await?;
    put(&store, "/w/f", "1").await?;
    put(&store, "/w/f", "2").await?;
    let r = put(&store, "/w/f", "3").await?;
    assert_eq!(next(&mut future).await?.revision(), r);
    assert_eq!(r, current + 3);
    assert!(matches!(
        store.watch("bad", 0).await.err(),
        Some(StoreError::InvalidKey { .. })
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_sees_ten_thousand_writes_without_gaps() -> Result<()> {
    let (_dir, store) = temp()?;
    const N: i64 = 10_000;
    let mut watch = store.watch("/s/", 0).await?;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            // Four concurrent writers: revisions interleave, batches form.
            for task in 0..4 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for index in 0..N / 4 {
                        store
                            .txn(
                                Txn::new()
                                    .put(format!("/s/{task}/{}", index % 50), index.to_string()),
                            )
                            .await?;
                    }
                    anyhow::Ok(())
                }));
            }
            for task in tasks {
                task.await??;
            }
            anyhow::Ok(())
        })
    };
    let mut expected = store.current_revision().await? + 1;
    let last = expected + N - 1;
    let mut rng = StdRng::seed_from_u64(1);
    while expected <= last {
        let event = next(&mut watch)
            .await
            .with_context(|| format!("event {expected}"))?;
        assert_eq!(event.revision(), expected, "no gap, no duplicate, in order");
        expected += 1;
        if rng.random_ratio(1, 500) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    writer.await??;
    quiet(&mut watch).await?;
    Ok(())
}

#[tokio::test]
async fn a_watcher_that_falls_behind_a_compaction_expires() -> Result<()> {
    let (_dir, store) = temp()?;
    let mut watch = store.watch("/e/", 0).await?;
    for index in 0..40 {
        put(&store, "/e/k", &index.to_string()).await?;
    }
    store.compact(30).await?;
    // The broadcast overflowed long ago; what it missed is compacted.
    match tokio::time::timeout(WAIT, watch.next()).await? {
        Some(Err(StoreError::Expired {
            requested: 1,
            compacted: 30,
        })) => {}
        other => bail!("expected Expired, got {other:?}"),
    }
    assert!(
        watch.next().await.is_none(),
        "the stream ends after the error"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers() -> Result<()> {
    let (_dir, store) = temp()?;
    let mut watches = Vec::new();
    for index in 0..1000 {
        watches.push(
            store
                .watch(if index % 2 == 0 { "/t/" } else { "/" }, 0)
                .await?,
        );
    }
    for index in 0..5 {
        put(&store, "/t/k", &index.to_string()).await?;
    }
    for watch in &mut watches {
        for revision in 2..=6 {
            assert_eq!(next(watch).await?.revision(), revision);
        }
    }
    Ok(())
}

#[tokio::test]
async fn leases_revoke_expire_and_keep_alive() -> Result<()> {
    let (_dir, store) = temp()?;
    assert!(matches!(
        store.lease_grant(0).await,
        Err(StoreError::InvalidLeaseTtl { ttl_seconds: 0, .. })
    ));
    let lease = store.lease_grant(60).await?;
    let other = store.lease_grant(60).await?;
    assert!(lease.0 > 0 && other.0 > lease.0, "positive, increasing ids");
    assert_eq!(store.lease_keep_alive(lease).await?, 60);
    let ttl = store.lease_time_to_live(lease).await?;
    assert!((59..=60).contains(&ttl), "{ttl}");

    let base = store.current_revision().await?;
    for key in ["/l/b", "/l/a", "/l/c"] {
        store.create(key, b"v".to_vec(), Some(lease)).await?;
    }
    // /l/c moves to no lease, /l/o to the other lease: revoking `lease` leaves both.
    store.update("/l/c", b"w".to_vec(), base + 3, None).await?;
    store.create("/l/o", b"o".to_vec(), Some(other)).await?;
    let mut watch = store.watch("/l/", 0).await?;
    let before = store.current_revision().await?;
    store.lease_revoke(lease).await?;
    let revoked = before + 1;
    assert_eq!(
        store.current_revision().await?,
        revoked,
        "one revision for all keys"
    );
    for key in ["/l/a", "/l/b"] {
        let event = next(&mut watch).await?;
        assert_eq!(
            (event.kind, event.kv.key.as_str(), event.revision()),
            (EventKind::Delete, key, revoked)
        );
        assert_eq!(event.prev_kv.and_then(|kv| kv.lease), Some(lease));
    }
    quiet(&mut watch).await?;
    assert!(store.get("/l/c").await?.is_some());
    assert!(store.get("/l/o").await?.is_some());
    for result in [
        store.lease_revoke(lease).await.map(|()| 0),
        store.lease_keep_alive(lease).await,
        store.lease_time_to_live(lease).await,
    ] {
        assert!(matches!(result, Err(StoreError::LeaseNotFound(found)) if found == lease));
    }

    // A revoke without keys changes no revision.
    let empty = store.lease_grant(5).await?;
    store.lease_revoke(empty).await?;
    assert_eq!(store.current_revision().await?, revoked);

    // Expiry: a 1-second lease goes within the tick, and its keys with it.
    let short = store.lease_grant(1).await?;
    store.create("/l/short", b"s".to_vec(), Some(short)).await?;
    assert_eq!(store.lease_time_to_live(short).await?, 1);
    let event = next(&mut watch).await?;
    assert_eq!(event.kind, EventKind::Put);
    let started = std::time::Instant::now();
    let event = next(&mut watch).await?;
    assert_eq!(
        (event.kind, event.kv.key.as_str()),
        (EventKind::Delete, "/l/short")
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(
        store.lease_time_to_live(short).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(matches!(
        store.create("/l/late", b"x".to_vec(), Some(short)).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    Ok(())
}

#[tokio::test]
async fn reopening_keeps_everything_and_expires_overdue_leases() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (lease, keeper) = {
        let store = open(dir.path())?;
        put(&store, "/r/a", "1").await?;
        put(&store, "/r/a", "2").await?;
        put(&store, "/r/b", "1").await?;
        store.compact(2).await?;
        let lease = store.lease_grant(1).await?;
        let keeper = store.lease_grant(3600).await?;
        store
            .create("/r/leased", b"x".to_vec(), Some(lease))
            .await?;
        store.create("/r/kept", b"x".to_vec(), Some(keeper)).await?;
        (lease, keeper)
    };
    // The writer thread lets go of the file shortly after the last handle drops: open waits.
    let store = open(dir.path())?;
    assert_eq!(store.current_revision().await?, 6);
    let a = store.get("/r/a").await?.context("/r/a")?;
    assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 3, 2));
    let old = ListOptions {
        revision: Some(3),
        ..ListOptions::default()
    };
    assert_eq!(store.list("/r/", &old).await?.items.len(), 1);
    assert!(matches!(
        store.compact(2).await,
        Err(StoreError::Expired { .. })
    ));
    drop(store);

    // Down for longer than the short lease's TTL: it expires soon after reopening.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let store = open(dir.path())?;
    let start = std::time::Instant::now();
    while store.get("/r/leased").await?.is_some() {
        ensure!(start.elapsed() < WAIT, "the overdue lease never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(
        store.lease_time_to_live(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(store.lease_time_to_live(keeper).await? > 3590);
    assert!(store.get("/r/kept").await?.is_some());
    let fresh = store.lease_grant(10).await?;
    assert!(fresh.0 > keeper.0, "lease ids are never reused");
    Ok(())
}

#[tokio::test]
async fn watches_end_when_the_store_is_dropped() -> Result<()> {
    let (_dir, store) = temp()?;
    let mut watch = store.watch("/", 0).await?;
    let debug = format!("{store:?}");
    assert!(
        debug.contains("EmbeddedStore") && debug.contains("store.redb"),
        "{debug}"
    );
    drop(store);
    match tokio::time::timeout(WAIT, watch.next()).await? {
        Some(Err(StoreError::Closed)) => {}
        other => bail!("expected Closed, got {other:?}"),
    }
    assert!(watch.next().await.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_each_get_their_own_revision() -> Result<()> {
    let (_dir, store) = temp()?;
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for task in 0..20 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for index in 0..25 {
                revisions.push(
                    store
                        .create(&format!("/cc/{task}/{index}"), vec![1], None)
                        .await?,
                );
            }
            // Everyone contends on one key too: exactly one create wins.
            let won = store
                .create("/cc/contended", vec![task], None)
                .await
                .is_ok();
            anyhow::Ok((revisions, won))
        }));
    }
    let mut all = Vec::new();
    let mut winners = 0;
    for task in tasks {
        let (revisions, won) = task.await??;
        all.extend(revisions);
        winners += usize::from(won);
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 500);
    assert_eq!(winners, 1);
    assert_eq!(store.current_revision().await?, 502);
    Ok(())
}

/// One step of the random workload's model: the state after each revision.
#[derive(Default)]
struct Model {
    states: Vec<BTreeMap<String, KeyValue>>,
    events: Vec<WatchEvent>,
}

impl Model {
    fn current(&self) -> &BTreeMap<String, KeyValue> {
        self.states
            .last()
            .expect("the model starts with revision 0")
    }

    fn revision(&self) -> Revision {
        i64::try_from(self.states.len()).expect("small") - 1
    }

    /// What the store must answer to `txn`, applying it to the model.
    fn apply(&mut self, txn: &Txn) -> TxnOutcome {
        let current = self.current().clone();
        let observed: Vec<Observed> = txn
            .compares
            .iter()
            .map(|compare| {
                let kv = current.get(&compare.key);
                Observed {
                    key: compare.key.clone(),
                    mod_revision: kv.map_or(0, |kv| kv.mod_revision),
                    create_revision: kv.map_or(0, |kv| kv.create_revision),
                }
            })
            .collect();
        if !txn
            .compares
            .iter()
            .zip(&observed)
            .all(|(compare, seen)| compare.holds(seen))
        {
            return TxnOutcome::CompareFailed {
                revision: self.revision(),
                observed,
            };
        }
        let revision = self.revision() + 1;
        let mut next = current;
        let mut events = Vec::new();
        for op in &txn.ops {
            match op {
                Op::Put { key, value, lease } => {
                    let prev = next.get(key).cloned();
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev
                            .as_ref()
                            .map_or(revision, |prev| prev.create_revision),
                        mod_revision: revision,
                        version: prev.as_ref().map_or(1, |prev| prev.version + 1),
                        lease: *lease,
                    };
                    next.insert(key.clone(), kv.clone());
                    events.push(WatchEvent {
                        kind: EventKind::Put,
                        kv,
                        prev_kv: prev,
                    });
                }
                Op::Delete { key } => {
                    if let Some(prev) = next.remove(key) {
                        events.push(WatchEvent {
                            kind: EventKind::Delete,
                            kv: KeyValue {
                                key: key.clone(),
                                value: Vec::new(),
                                create_revision: 0,
                                mod_revision: revision,
                                version: 0,
                                lease: None,
                            },
                            prev_kv: Some(prev),
                        });
                    }
                }
            }
        }
        if events.is_empty() {
            return TxnOutcome::Committed {
                revision: self.revision(),
            };
        }
        self.states.push(next);
        self.events.extend(events);
        TxnOutcome::Committed { revision }
    }

    fn random_txn(&self, rng: &mut StdRng) -> Txn {
        const KEYS: [&str; 7] = ["/m/a", "/m/b", "/m/b/c", "/m/bb", "/m/c", "/mx", "/n"];
        let mut txn = Txn::new();
        if rng.random_ratio(1, 3) {
            let key = KEYS[rng.random_range(0..KEYS.len())];
            let actual = self.current().get(key).map_or(0, |kv| kv.mod_revision);
            let expect = match rng.random_range(0..4) {
                0 => Expect::ModRevision(actual),
                1 => Expect::ModRevision(actual + 1),
                2 => Expect::Absent,
                _ => Expect::Present,
            };
            txn = txn.when_compare(Compare {
                key: key.to_owned(),
                expect,
            });
        }
        let mut keys = KEYS.to_vec();
        for _ in 0..rng.random_range(0..4) {
            let key = keys.swap_remove(rng.random_range(0..keys.len()));
            txn = if rng.random_ratio(2, 3) {
                let value: Vec<u8> = (0..rng.random_range(0..6)).map(|_| rng.random()).collect();
                txn.put(key, value)
            } else {
                txn.delete(key)
            };
        }
        txn
    }

    /// Checks every retained revision's list (several page sizes) and replay.
    async fn check(&self, store: &EmbeddedStore, compacted: Revision) -> Result<()> {
        let current = self.revision();
        for revision in compacted.max(1)..=current {
            let expected: Vec<KeyValue> = self.states[usize::try_from(revision)?]
                .values()
                .cloned()
                .collect();
            for limit in [0, 1, 2, 3, 7] {
                let listed = list_all(store, "/", revision, limit).await?;
                ensure!(listed == expected, "list at {revision} with limit {limit}");
                let under: Vec<KeyValue> = expected
                    .iter()
                    .filter(|kv| kv.key.starts_with("/m/"))
                    .cloned()
                    .collect();
                ensure!(
                    list_all(store, "/m/", revision, limit).await? == under,
                    "list /m/ at {revision}"
                );
            }
            let mut watch = store.watch("/m/", revision).await?;
            for event in self
                .events
                .iter()
                .filter(|e| e.revision() > revision && e.kv.key.starts_with("/m/"))
            {
                ensure!(&next(&mut watch).await? == event, "replay after {revision}");
            }
        }
        for revision in 1..compacted {
            let options = ListOptions {
                revision: Some(revision),
                ..ListOptions::default()
            };
            ensure!(matches!(
                store.list("/", &options).await,
                Err(StoreError::Expired { .. })
            ));
            ensure!(matches!(
                store.watch("/m/", revision).await,
                Err(StoreError::Expired { .. })
            ));
        }
        for (key, kv) in self.current() {
            ensure!(store.get(key).await?.as_ref() == Some(kv), "get {key}");
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_workload_matches_a_model_of_etcd() -> Result<()> {
    let (_dir, store) = temp()?;
    let mut rng = StdRng::seed_from_u64(42);
    let mut model = Model {
        // Revisions 0 and 1 (where an empty store starts) hold nothing.
        states: vec![BTreeMap::new(), BTreeMap::new()],
        events: Vec::new(),
    };
    let mut live = store.watch("/m/", 0).await?;
    let mut delivered = 0;
    let mut compacted = 0;
    for round in 0..3 {
        for _ in 0..80 {
            let txn = model.random_txn(&mut rng);
            let expected = model.apply(&txn);
            ensure!(store.txn(txn.clone()).await? == expected, "txn {txn:?}");
        }
        ensure!(store.current_revision().await? == model.revision());
        // The live watch saw exactly the model's events (through lags and replays).
        let wanted: Vec<&WatchEvent> = model
            .events
            .iter()
            .filter(|e| e.kv.key.starts_with("/m/"))
            .collect();
        for event in &wanted[delivered..] {
            ensure!(&&next(&mut live).await? == event, "live event");
        }
        delivered = wanted.len();
        model
            .check(&store, compacted)
            .await
            .with_context(|| format!("round {round}"))?;
        // Compact somewhere in the second half, check before and after the purge.
        let target = (compacted + model.revision()) / 2 + 1;
        if target > compacted && target <= model.revision() {
            store.compact(target).await?;
            compacted = target;
            model
                .check(&store, compacted)
                .await
                .with_context(|| format!("round {round}, compacted"))?;
            wait_purged(&store, compacted).await?;
            model
                .check(&store, compacted)
                .await
                .with_context(|| format!("round {round}, purged"))?;
        }
    }
    quiet(&mut live).await?;
    Ok(())
}

/// The child of [`sigkill_loses_no_acknowledged_write`]: writes until killed, printing every
/// acknowledged write. Does nothing when run as an ordinary test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() -> Result<()> {
    let Ok(path) = std::env::var("PACER_EMBEDDED_CRASH_CHILD") else {
        return Ok(());
    };
    let store = EmbeddedStore::open(Path::new(&path))?;
    let round: u32 = std::env::var("PACER_EMBEDDED_CRASH_ROUND")?.parse()?;
    let lease = store.lease_grant(3600).await?;
    let mut tasks = Vec::new();
    for task in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for index in 0u64.. {
                let key = format!("/crash/{round}/{task}/{index}");
                let value = vec![u8::try_from(index % 251).unwrap_or(0); 100];
                let revision = store.create(&key, value, Some(lease)).await?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {key} {revision}")?;
                out.flush()?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_write() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.redb");
    let mut acknowledged: Vec<(String, Revision)> = Vec::new();
    for (round, run_for) in [150u64, 400, 700].into_iter().enumerate() {
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args([
                "embedded::tests::crash_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PACER_EMBEDDED_CRASH_CHILD", &path)
            .env("PACER_EMBEDDED_CRASH_ROUND", round.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        let reader = std::thread::spawn(move || {
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(std::result::Result::ok)
                .filter_map(|line| {
                    let mut parts = line.strip_prefix("ack ")?.split(' ');
                    Some((parts.next()?.to_owned(), parts.next()?.parse().ok()?))
                })
                .collect::<Vec<(String, Revision)>>()
        });
        // Kill it mid-flight, once it has acknowledged something.
        tokio::time::sleep(Duration::from_millis(run_for)).await;
        child.kill()?; // SIGKILL
        child.wait()?;
        let acked = reader
            .join()
            .map_err(|_| anyhow::anyhow!("reader panicked"))?;
        ensure!(
            !acked.is_empty(),
            "round {round}: the child acknowledged nothing before the kill"
        );
        acknowledged.extend(acked);

        let store = EmbeddedStore::open(&path)?;
        let current = store.current_revision().await?;
        for (key, revision) in &acknowledged {
            let kv = store
                .get(key)
                .await?
                .with_context(|| format!("round {round}: lost {key}"))?;
            ensure!(
                kv.mod_revision == *revision,
                "round {round}: {key} at {} not {revision}",
                kv.mod_revision
            );
            ensure!(*revision <= current);
        }
        // The reopened store still writes, at the next revision.
        ensure!(put(&store, "/crash/after", &round.to_string()).await? == current + 1);
    }
    Ok(())
}
