//! Leader election on the store: one leader at a time, the next takes over when the first
//! resigns or loses its lease, and a deposed leader's fenced writes fail.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use pacer_store::{Election, FencingToken, ListOptions, Store, Txn, TxnOutcome};

use crate::harness::{WAIT, b, eventually};

const PREFIX: &str = "/election/placement/";

async fn data(store: &dyn Store) -> Result<Option<Vec<u8>>> {
    Ok(store.get("/election-data/x").await?.map(|kv| kv.value))
}

async fn candidates(store: &dyn Store) -> Result<usize> {
    Ok(store
        .list(PREFIX, &ListOptions::default())
        .await?
        .items
        .len())
}

/// A write fenced by `token`, made directly on the store (as a deposed leader would).
async fn fenced_write(store: &dyn Store, token: &FencingToken, value: &str) -> Result<TxnOutcome> {
    let txn = Txn::new()
        .put("/election-data/x", b(value))
        .when_compare(token.compare());
    Ok(store.txn(txn).await?)
}

/// First candidate leads; the second waits until the first resigns; the deposed leader's
/// fenced writes fail; `leader()` and `next_leader()` follow.
pub async fn election_resign(store: Arc<dyn Store>) -> Result<()> {
    let election = Election::new(Arc::clone(&store), PREFIX)?;
    let (lease_a, lease_b) = (store.lease_grant(60).await?, store.lease_grant(60).await?);

    let a = tokio::time::timeout(WAIT, election.campaign(lease_a, b("a")))
        .await
        .context("a's campaign")??;
    assert_eq!(a.lease(), lease_a);
    assert!(a.is_leader().await?);
    let leader_a = election.leader().await?.context("a leads")?;
    assert_eq!(
        (leader_a.key.as_str(), leader_a.value.as_slice()),
        (a.token().key.as_str(), &b"a"[..])
    );
    assert_eq!(leader_a.create_revision, a.token().create_revision);

    let b_campaign = tokio::spawn({
        let election = election.clone();
        async move { election.campaign(lease_b, b("b")).await }
    });
    let next = tokio::spawn({
        let (election, current) = (election.clone(), leader_a.clone());
        async move { election.next_leader(Some(&current)).await }
    });
    eventually("b's candidacy is registered", WAIT, || async {
        Ok(candidates(store.as_ref()).await? == 2)
    })
    .await?;
    // b must still be waiting: a has neither resigned nor lost its lease.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!b_campaign.is_finished(), "b won while a still leads");
    assert!(
        !next.is_finished(),
        "next_leader returned while a still leads"
    );
    assert_eq!(election.leader().await?.as_ref(), Some(&leader_a));

    assert!(
        a.fenced_txn(Txn::new().put("/election-data/x", b("from a")))
            .await?
            .committed()
    );
    let token_a = a.token().clone();
    a.resign().await?;

    let b_leads = tokio::time::timeout(WAIT, b_campaign)
        .await
        .context("b never took over")???;
    assert_eq!(b_leads.lease(), lease_b);
    assert!(b_leads.token().create_revision > token_a.create_revision);
    let new_leader = tokio::time::timeout(WAIT, next)
        .await
        .context("next_leader never returned")???;
    let new_leader = new_leader.context("someone leads")?;
    assert_eq!(
        (new_leader.key.as_str(), new_leader.value.as_slice()),
        (b_leads.token().key.as_str(), &b"b"[..])
    );
    assert_eq!(election.leader().await?.as_ref(), Some(&new_leader));

    match fenced_write(store.as_ref(), &token_a, "from deposed a").await? {
        TxnOutcome::CompareFailed { .. } => {}
        other => bail!("the deposed leader's fenced write went through: {other:?}"),
    }
    assert_eq!(data(store.as_ref()).await?, Some(b("from a")));
    assert!(
        b_leads
            .fenced_txn(Txn::new().put("/election-data/x", b("from b")))
            .await?
            .committed()
    );
    assert_eq!(data(store.as_ref()).await?, Some(b("from b")));

    // Campaigning again with the leading lease returns the same leadership.
    let again = tokio::time::timeout(WAIT, election.campaign(lease_b, b("b")))
        .await
        .context("b again")??;
    assert_eq!(again.token(), b_leads.token());
    b_leads.resign().await?;
    assert_eq!(election.leader().await?, None);
    Ok(())
}

/// The leader's lease is revoked: the next in line takes over, skipping a candidate that
/// dropped out meanwhile; the old leader learns it no longer leads and cannot write.
pub async fn election_lease_revoked(store: Arc<dyn Store>) -> Result<()> {
    let election = Election::new(Arc::clone(&store), PREFIX)?;
    let leases = [
        store.lease_grant(60).await?,
        store.lease_grant(60).await?,
        store.lease_grant(60).await?,
    ];

    let a = tokio::time::timeout(WAIT, election.campaign(leases[0], b("a")))
        .await
        .context("a's campaign")??;
    let spawn_campaign = |lease, name: &'static str| {
        let election = election.clone();
        tokio::spawn(async move { election.campaign(lease, b(name)).await })
    };
    let b_campaign = spawn_campaign(leases[1], "b");
    eventually("b's candidacy is registered", WAIT, || async {
        Ok(candidates(store.as_ref()).await? == 2)
    })
    .await?;
    let c_campaign = spawn_campaign(leases[2], "c");
    eventually("c's candidacy is registered", WAIT, || async {
        Ok(candidates(store.as_ref()).await? == 3)
    })
    .await?;

    // b drops out while a leads: c must keep waiting behind a, not take b's place.
    store.lease_revoke(leases[1]).await?;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!c_campaign.is_finished(), "c won while a still leads");
    assert!(a.is_leader().await?);

    store.lease_revoke(leases[0]).await?;
    let c = tokio::time::timeout(WAIT, c_campaign)
        .await
        .context("c never took over")???;
    // b's campaign ends (at the latest once its predecessor is gone) without leadership.
    let b_result = tokio::time::timeout(WAIT, b_campaign)
        .await
        .context("b's campaign never ended")??;
    assert!(
        b_result.is_err(),
        "b's campaign succeeded without a lease: {b_result:?}"
    );
    assert!(c.is_leader().await?);
    assert!(
        !a.is_leader().await?,
        "a still thinks it leads after its lease was revoked"
    );
    let outcome = a
        .fenced_txn(Txn::new().put("/election-data/x", b("from deposed a")))
        .await?;
    assert!(
        !outcome.committed(),
        "the deposed leader's fenced write went through: {outcome:?}"
    );
    assert_eq!(data(store.as_ref()).await?, None);
    assert!(
        c.fenced_txn(Txn::new().put("/election-data/x", b("from c")))
            .await?
            .committed()
    );
    let leader = election.leader().await?.context("c leads")?;
    assert_eq!(leader.value, b("c"));
    assert_eq!(leader.lease, Some(leases[2]));
    Ok(())
}
