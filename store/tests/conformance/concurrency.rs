//! Many writers at once: compare-and-swap races with exactly one winner, and a watcher that
//! sees every one of 10,000 concurrent writes exactly once, in order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use pacer_store::{EventKind, Revision, Store, StoreError, Txn, TxnOutcome, WatchEvent};
use tokio::sync::Barrier;

use crate::harness::{assert_quiet, b, next_event};

/// What one task saw in one round of the race.
#[derive(Debug)]
struct Attempt {
    round: usize,
    task: usize,
    observed: Revision,
    outcome: Result<Revision, StoreError>,
}

/// 16 tasks × 50 rounds: each round all read the key, then all try `update(observed)`;
/// exactly one wins, the others get `Conflict` naming the winner's revision.
pub async fn cas_race_one_winner(store: Arc<dyn Store>) -> Result<()> {
    const TASKS: usize = 16;
    const ROUNDS: usize = 50;
    let key = "/race/key";
    let r0 = store.create(key, b("start"), None).await?;
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            let mut attempts = Vec::with_capacity(ROUNDS);
            for round in 0..ROUNDS {
                barrier.wait().await;
                let current = store.get(key).await?.context("the raced key exists")?;
                barrier.wait().await;
                let value = format!("round {round} task {task}").into_bytes();
                let outcome = store.update(key, value, current.mod_revision, None).await;
                attempts.push(Attempt {
                    round,
                    task,
                    observed: current.mod_revision,
                    outcome,
                });
            }
            anyhow::Ok(attempts)
        }));
    }
    let mut by_round: BTreeMap<usize, Vec<Attempt>> = BTreeMap::new();
    for task in tasks {
        for attempt in task.await?? {
            by_round.entry(attempt.round).or_default().push(attempt);
        }
    }

    let mut previous = r0;
    let mut last_winner = None;
    for (round, attempts) in &by_round {
        ensure!(
            attempts.len() == TASKS,
            "round {round}: {} attempts",
            attempts.len()
        );
        ensure!(
            attempts.iter().all(|attempt| attempt.observed == previous),
            "round {round}: every task read before anyone wrote, so all saw {previous}: {attempts:?}"
        );
        let winners: Vec<&Attempt> = attempts
            .iter()
            .filter(|attempt| attempt.outcome.is_ok())
            .collect();
        let [winner] = winners.as_slice() else {
            bail!(
                "round {round}: {} winners for revision {previous}: {winners:?}",
                winners.len()
            );
        };
        let won = *winner
            .outcome
            .as_ref()
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        for attempt in attempts.iter().filter(|attempt| attempt.outcome.is_err()) {
            match &attempt.outcome {
                Err(StoreError::Conflict {
                    expected, actual, ..
                }) if *expected == previous && *actual == won => {}
                other => bail!(
                    "round {round}, task {}: expected a conflict with {won}, got {other:?}",
                    attempt.task
                ),
            }
        }
        previous = won;
        last_winner = Some(winner.task);
    }
    let last_winner = last_winner.context("no rounds")?;
    let kv = store.get(key).await?.context("the raced key")?;
    assert_eq!(
        kv.value,
        format!("round {} task {last_winner}", ROUNDS - 1).into_bytes()
    );
    assert_eq!(
        (kv.mod_revision, kv.version, kv.create_revision),
        (previous, ROUNDS as i64 + 1, r0)
    );
    assert_eq!(
        store.current_revision().await?,
        r0 + ROUNDS as i64,
        "only the winners wrote"
    );
    Ok(())
}

/// A counter incremented by racing read-modify-CAS loops loses no update.
pub async fn cas_counter_no_lost_updates(store: Arc<dyn Store>) -> Result<()> {
    const TASKS: usize = 8;
    const INCREMENTS: usize = 25;
    let key = "/race/counter";
    let r0 = store.create(key, b("0"), None).await?;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            while revisions.len() < INCREMENTS {
                let kv = store.get(key).await?.context("the counter exists")?;
                let count: u64 = String::from_utf8(kv.value)?.parse()?;
                match store
                    .update(
                        key,
                        (count + 1).to_string().into_bytes(),
                        kv.mod_revision,
                        None,
                    )
                    .await
                {
                    Ok(revision) => revisions.push(revision),
                    Err(StoreError::Conflict { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            anyhow::Ok(revisions)
        }));
    }
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.extend(task.await??);
    }
    revisions.sort_unstable();
    let expected: Vec<Revision> = (1..=(TASKS * INCREMENTS) as i64)
        .map(|offset| r0 + offset)
        .collect();
    assert_eq!(
        revisions, expected,
        "every successful update has its own revision, no gaps"
    );
    let kv = store.get(key).await?.context("the counter")?;
    assert_eq!(
        kv.value,
        (TASKS * INCREMENTS).to_string().into_bytes(),
        "lost updates"
    );
    assert_eq!(kv.version, (TASKS * INCREMENTS) as i64 + 1);
    Ok(())
}

/// 10,000 single-put transactions from 8 writers while a watcher consumes: it sees each
/// exactly once, in revision order, with no gap and the written value.
pub async fn watch_10k_concurrent_writes(store: Arc<dyn Store>) -> Result<()> {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 1250;
    const TOTAL: usize = WRITERS * PER_WRITER;
    let start = store.current_revision().await?;
    let mut stream = store.watch("/bulk/", start).await?;
    let watcher = tokio::spawn(async move {
        let mut events: Vec<WatchEvent> = Vec::with_capacity(TOTAL);
        while events.len() < TOTAL {
            let event = next_event(&mut stream)
                .await
                .with_context(|| format!("after {} of {TOTAL} events", events.len()))?;
            events.push(event);
        }
        anyhow::Ok((events, stream))
    });

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            let mut written = Vec::with_capacity(PER_WRITER);
            for index in 0..PER_WRITER {
                let key = format!("/bulk/{writer}/{}", index % 10);
                let value = format!("{writer}:{index}").into_bytes();
                let revision = match store
                    .txn(Txn::new().put(key.clone(), value.clone()))
                    .await?
                {
                    TxnOutcome::Committed { revision } => revision,
                    other => bail!("unexpected {other:?}"),
                };
                written.push((revision, key, value));
            }
            anyhow::Ok(written)
        }));
    }
    let mut written: HashMap<Revision, (String, Vec<u8>)> = HashMap::with_capacity(TOTAL);
    for writer in writers {
        let mut previous = start;
        for (revision, key, value) in writer.await?? {
            ensure!(
                revision > previous,
                "a writer's revisions went from {previous} to {revision}"
            );
            previous = revision;
            ensure!(
                written.insert(revision, (key, value)).is_none(),
                "two writes got revision {revision}"
            );
        }
    }
    // Every write was its own transaction and nobody else wrote: the revisions are exactly
    // start+1 ..= start+TOTAL.
    let mut revisions: Vec<Revision> = written.keys().copied().collect();
    revisions.sort_unstable();
    ensure!(
        revisions.first() == Some(&(start + 1))
            && revisions.last() == Some(&(start + TOTAL as i64)),
        "write revisions span {:?}..={:?}, expected {}..={}",
        revisions.first(),
        revisions.last(),
        start + 1,
        start + TOTAL as i64
    );

    let (events, mut stream) = watcher.await??;
    ensure!(events.len() == TOTAL);
    let mut previous = start;
    for (index, event) in events.iter().enumerate() {
        let revision = event.revision();
        ensure!(
            revision == previous + 1,
            "event {index}: revision {revision} after {previous} (a gap, a duplicate or out of order)"
        );
        previous = revision;
        let (key, value) = written
            .get(&revision)
            .context("an event at a revision nobody wrote")?;
        ensure!(
            event.kind == EventKind::Put && &event.kv.key == key && &event.kv.value == value,
            "event {index} at {revision}: {event:?}, expected {key} = {:?}",
            String::from_utf8_lossy(value)
        );
    }
    // Nothing else is pending, and the stream goes on.
    let r = store.create("/bulk/last", b("last"), None).await?;
    let event = next_event(&mut stream).await?;
    ensure!(
        event.revision() == r && event.kv.key == "/bulk/last",
        "after the 10,000: {event:?}"
    );
    assert_quiet(&mut stream).await?;
    Ok(())
}
