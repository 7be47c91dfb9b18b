//! Transactions: atomic at one revision up to 128 operations, failed compares that write
//! nothing and report what they saw, limits, no-op deletes, and create-revision fencing.

use std::sync::Arc;

use anyhow::{Result, bail};
use pacer_store::key::MAX_TXN_OPS;
use pacer_store::{
    EventKind, Expect, ListOptions, Observed, Revision, Store, StoreError, Txn, TxnOutcome,
};

use crate::harness::{assert_err, assert_quiet, b, next_event};

async fn commit(store: &dyn Store, txn: Txn) -> Result<Revision> {
    match store.txn(txn).await? {
        TxnOutcome::Committed { revision } => Ok(revision),
        other => bail!("expected the transaction to commit, got {other:?}"),
    }
}

fn observed(key: &str, mod_revision: Revision, create_revision: Revision) -> Observed {
    Observed {
        key: key.to_owned(),
        mod_revision,
        create_revision,
    }
}

/// 128 puts land at one revision; so do 128 compares with 128 updates, and mixed puts and
/// deletes.
pub async fn txn_max_ops_atomic(store: Arc<dyn Store>) -> Result<()> {
    let before = store.current_revision().await?;
    let key = |index: usize| format!("/t/big/{index:03}");
    let mut txn = Txn::new();
    for index in 0..MAX_TXN_OPS {
        txn = txn.put(key(index), format!("v{index}").into_bytes());
    }
    let r1 = commit(store.as_ref(), txn).await?;
    assert_eq!(r1, before + 1, "one transaction, one revision");
    assert_eq!(store.current_revision().await?, r1);
    let page = store.list("/t/big/", &ListOptions::default()).await?;
    assert_eq!(page.items.len(), MAX_TXN_OPS);
    for (index, kv) in page.items.iter().enumerate() {
        assert_eq!(
            (
                kv.key.as_str(),
                kv.value.as_slice(),
                kv.create_revision,
                kv.mod_revision,
                kv.version
            ),
            (
                key(index).as_str(),
                format!("v{index}").as_bytes(),
                r1,
                r1,
                1
            )
        );
    }

    // The most compares and the most writes together.
    let mut txn = Txn::new();
    for index in 0..MAX_TXN_OPS {
        txn = txn
            .when(key(index), Expect::ModRevision(r1))
            .put(key(index), b("updated"));
    }
    let r2 = commit(store.as_ref(), txn).await?;
    assert_eq!(r2, r1 + 1);
    let page = store.list("/t/big/", &ListOptions::default()).await?;
    assert!(
        page.items.iter().all(|kv| kv.mod_revision == r2
            && kv.create_revision == r1
            && kv.version == 2
            && kv.value == b"updated"),
        "not every key was updated at revision {r2}"
    );

    // Half deletes, half puts.
    let mut txn = Txn::new();
    for index in 0..MAX_TXN_OPS {
        txn = if index % 2 == 0 {
            txn.delete(key(index))
        } else {
            txn.put(key(index), b("odd"))
        };
    }
    let r3 = commit(store.as_ref(), txn).await?;
    assert_eq!(r3, r2 + 1);
    let page = store.list("/t/big/", &ListOptions::default()).await?;
    assert_eq!(page.items.len(), MAX_TXN_OPS / 2);
    assert!(
        page.items
            .iter()
            .all(|kv| kv.mod_revision == r3 && kv.version == 3)
    );
    Ok(())
}

/// A failing compare writes nothing and reports every compared key's state, in order.
pub async fn txn_compare_failed_writes_nothing(store: Arc<dyn Store>) -> Result<()> {
    let ra = store.create("/t/a", b("a"), None).await?;
    let rb1 = store.create("/t/b", b("b"), None).await?;
    let rb2 = store.update("/t/b", b("b2"), rb1, None).await?;
    let before = store.current_revision().await?;

    let writes = |txn: Txn| txn.put("/t/a", b("x")).put("/t/c", b("c")).delete("/t/b");
    let txn = writes(
        Txn::new()
            .when("/t/a", Expect::ModRevision(ra)) // holds
            .when("/t/b", Expect::ModRevision(rb1)) // fails: b was updated
            .when("/t/missing", Expect::Absent) // holds
            .when("/t/a", Expect::Present) // holds
            .when("/t/b", Expect::CreateRevision(rb1)), // holds
    );
    match store.txn(txn).await? {
        TxnOutcome::CompareFailed {
            revision,
            observed: seen,
        } => {
            assert_eq!(
                revision, before,
                "compares are evaluated at the current revision"
            );
            assert_eq!(
                seen,
                vec![
                    observed("/t/a", ra, ra),
                    observed("/t/b", rb2, rb1),
                    observed("/t/missing", 0, 0),
                    observed("/t/a", ra, ra),
                    observed("/t/b", rb2, rb1),
                ]
            );
        }
        other => bail!("expected CompareFailed, got {other:?}"),
    }
    // Each kind of compare failing on its own.
    for (what, expect_key, expect) in [
        ("Absent on a present key", "/t/a", Expect::Absent),
        ("Present on a missing key", "/t/missing", Expect::Present),
        (
            "ModRevision(0) on a present key",
            "/t/a",
            Expect::ModRevision(0),
        ),
        ("a stale ModRevision", "/t/b", Expect::ModRevision(rb1)),
        (
            "a wrong CreateRevision",
            "/t/b",
            Expect::CreateRevision(rb2),
        ),
        (
            "CreateRevision on a missing key",
            "/t/missing",
            Expect::CreateRevision(ra),
        ),
    ] {
        let outcome = store
            .txn(writes(
                Txn::new()
                    .when("/t/a", Expect::Present)
                    .when(expect_key, expect),
            ))
            .await?;
        assert!(!outcome.committed(), "{what}: {outcome:?}");
    }
    assert_eq!(
        store.current_revision().await?,
        before,
        "failed compares write nothing"
    );
    assert_eq!(
        store.get("/t/a").await?.map(|kv| (kv.value, kv.version)),
        Some((b("a"), 1))
    );
    assert_eq!(store.get("/t/b").await?.map(|kv| kv.value), Some(b("b2")));
    assert_eq!(store.get("/t/c").await?, None);

    // ModRevision(0) holds on a missing key, like Absent.
    let r = commit(
        store.as_ref(),
        Txn::new()
            .when("/t/missing", Expect::ModRevision(0))
            .put("/t/c", b("c")),
    )
    .await?;
    assert_eq!(r, before + 1);
    Ok(())
}

/// Over 128 operations, a key written twice, or no-op transactions.
pub async fn txn_limits_and_noops(store: Arc<dyn Store>) -> Result<()> {
    let r0 = store.create("/t/present", b("p"), None).await?;
    let mut too_many = Txn::new();
    for index in 0..=MAX_TXN_OPS {
        too_many = too_many.put(format!("/t/many/{index}"), b("v"));
    }
    assert_err!(
        store.txn(too_many).await,
        StoreError::TooManyOperations { count, limit } if count == MAX_TXN_OPS + 1 && limit == MAX_TXN_OPS
    );
    let mut too_many_compares = Txn::new().put("/t/many/x", b("v"));
    for index in 0..=MAX_TXN_OPS {
        too_many_compares = too_many_compares.when(format!("/t/c/{index}"), Expect::Absent);
    }
    assert_err!(store.txn(too_many_compares).await, StoreError::TooManyOperations { count, .. } if count == MAX_TXN_OPS + 1);
    assert_err!(
        store
            .txn(Txn::new().put("/t/dup", b("1")).put("/t/dup", b("2")))
            .await,
        StoreError::InvalidTxn(_)
    );
    assert_err!(
        store
            .txn(Txn::new().put("/t/dup", b("1")).delete("/t/dup"))
            .await,
        StoreError::InvalidTxn(_)
    );
    assert_err!(
        store
            .txn(Txn::new().delete("/t/present").delete("/t/present"))
            .await,
        StoreError::InvalidTxn(_)
    );
    assert_eq!(
        store.current_revision().await?,
        r0,
        "invalid transactions write nothing"
    );
    assert!(
        store
            .list("/t/many/", &ListOptions::default())
            .await?
            .items
            .is_empty()
    );
    assert_eq!(store.get("/t/dup").await?, None);
    assert!(store.get("/t/present").await?.is_some());

    // Changing nothing does not bump the revision, and no watch sees anything.
    let mut watch = store.watch("/t/", r0).await?;
    for txn in [
        Txn::new(),
        Txn::new().delete("/t/absent"),
        Txn::new().delete("/t/absent").delete("/t/absent2"),
        Txn::new().when("/t/present", Expect::Present),
        Txn::new()
            .when("/t/present", Expect::ModRevision(r0))
            .delete("/t/absent"),
    ] {
        let shown = format!("{txn:?}");
        let revision = commit(store.as_ref(), txn).await?;
        assert_eq!(revision, r0, "{shown} changed nothing");
    }
    assert_eq!(store.current_revision().await?, r0);
    // One real change among no-ops: one revision, one event.
    let r1 = commit(
        store.as_ref(),
        Txn::new().delete("/t/absent").put("/t/new", b("n")),
    )
    .await?;
    assert_eq!(r1, r0 + 1);
    let event = next_event(&mut watch).await?;
    assert_eq!(
        (event.kind, event.kv.key.as_str(), event.revision()),
        (EventKind::Put, "/t/new", r1)
    );
    assert_quiet(&mut watch).await?;
    Ok(())
}

/// `Expect::CreateRevision` holds across updates of the same incarnation and fails once the
/// key is deleted or recreated: the fencing a leader uses.
pub async fn txn_create_revision_fencing(store: Arc<dyn Store>) -> Result<()> {
    let leader = "/fence/leader";
    let r1 = store.create(leader, b("me"), None).await?;
    let r2 = store.update(leader, b("me, renewed"), r1, None).await?;
    let fenced = |value: &str| {
        Txn::new()
            .when(leader, Expect::CreateRevision(r1))
            .put("/fence/data", b(value))
    };

    let r3 = commit(store.as_ref(), fenced("1")).await?;
    assert_eq!(r3, r2 + 1);

    let r4 = store.delete(leader, r2).await?;
    match store.txn(fenced("2")).await? {
        TxnOutcome::CompareFailed { observed: seen, .. } => {
            assert_eq!(seen, vec![observed(leader, 0, 0)])
        }
        other => bail!("fenced write after the leader key was deleted: {other:?}"),
    }
    let r5 = store.create(leader, b("someone else"), None).await?;
    assert_eq!(r5, r4 + 1);
    match store.txn(fenced("3")).await? {
        TxnOutcome::CompareFailed {
            observed: seen,
            revision,
        } => {
            assert_eq!(seen, vec![observed(leader, r5, r5)]);
            assert_eq!(revision, r5);
        }
        other => bail!("fenced write after the leader key was recreated: {other:?}"),
    }
    assert_eq!(
        store
            .get("/fence/data")
            .await?
            .map(|kv| (kv.value, kv.mod_revision)),
        Some((b("1"), r3))
    );
    let r6 = commit(
        store.as_ref(),
        Txn::new()
            .when(leader, Expect::CreateRevision(r5))
            .put("/fence/data", b("4")),
    )
    .await?;
    assert_eq!(r6, r5 + 1);
    Ok(())
}
