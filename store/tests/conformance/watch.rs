//! Watches: replay from an older revision then live events, resuming without gaps or
//! duplicates, delete events with the previous value, transaction order, "from now on".

use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use pacer_store::{EventKind, KeyValue, Revision, Store, Txn, TxnOutcome, WatchEvent};

use crate::harness::{assert_quiet, b, next_event, next_events};

fn summary(events: &[WatchEvent]) -> Vec<(EventKind, &str, Revision)> {
    events
        .iter()
        .map(|event| (event.kind, event.kv.key.as_str(), event.revision()))
        .collect()
}

/// Events after an older revision are replayed exactly, then live ones follow; keys outside
/// the prefix never show; two watchers see the same.
pub async fn watch_replay_then_live(store: Arc<dyn Store>) -> Result<()> {
    let start = store.current_revision().await?;
    let mut revisions = Vec::new();
    for index in 0..20 {
        revisions.push(
            store
                .create(
                    &format!("/w/k{index:02}"),
                    format!("v{index}").into_bytes(),
                    None,
                )
                .await?,
        );
        // Neighbours outside the prefix.
        store
            .create(&format!("/wx/k{index:02}"), b("outside"), None)
            .await?;
    }
    let mid = revisions[9];
    let mut from_mid = store.watch("/w/", mid).await?;
    let mut from_start = store.watch("/w/", start).await?;

    let replayed = next_events(&mut from_mid, 10).await?;
    for (offset, event) in replayed.iter().enumerate() {
        let index = offset + 10;
        let key = format!("/w/k{index:02}");
        let expected = KeyValue {
            key,
            value: format!("v{index}").into_bytes(),
            create_revision: revisions[index],
            mod_revision: revisions[index],
            version: 1,
            lease: None,
        };
        assert_eq!(event.kind, EventKind::Put, "replayed event {offset}");
        assert_eq!(event.kv, expected, "replayed event {offset}");
        assert_eq!(event.prev_kv, None, "a create has no previous value");
    }
    let all = next_events(&mut from_start, 20).await?;
    assert_eq!(
        all.iter().map(WatchEvent::revision).collect::<Vec<_>>(),
        revisions,
        "replay from the start"
    );

    // Live: an update carries the previous value.
    let before = store.get("/w/k00").await?.context("k00")?;
    store.create("/wx/live", b("outside"), None).await?;
    let r = store
        .update("/w/k00", b("v0 again"), revisions[0], None)
        .await?;
    for stream in [&mut from_mid, &mut from_start] {
        let event = next_event(stream).await?;
        assert_eq!(
            (event.kind, event.kv.key.as_str(), event.revision()),
            (EventKind::Put, "/w/k00", r)
        );
        assert_eq!(
            (
                event.kv.value.as_slice(),
                event.kv.version,
                event.kv.create_revision
            ),
            (&b"v0 again"[..], 2, revisions[0])
        );
        assert_eq!(
            event.prev_kv.as_ref(),
            Some(&before),
            "an update carries the previous value"
        );
        assert_quiet(stream).await?;
    }
    Ok(())
}

/// Dropping a watch and resuming from the last revision seen, again and again while a writer
/// runs, sees every write exactly once.
pub async fn watch_resume_no_gaps(store: Arc<dyn Store>) -> Result<()> {
    const WRITES: usize = 300;
    let start = store.current_revision().await?;
    let writer = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            let mut revisions = Vec::with_capacity(WRITES);
            for index in 0..WRITES {
                let key = format!("/r/{}", index % 17);
                let revision = match store
                    .txn(Txn::new().put(key, format!("{index}").into_bytes()))
                    .await?
                {
                    TxnOutcome::Committed { revision } => revision,
                    other => bail!("unexpected {other:?}"),
                };
                revisions.push(revision);
            }
            Ok(revisions)
        }
    });

    let mut seen: Vec<WatchEvent> = Vec::with_capacity(WRITES);
    let mut last = start;
    let mut chunk = 1;
    while seen.len() < WRITES {
        let mut stream = store.watch("/r/", last).await?;
        let take = chunk.min(WRITES - seen.len());
        for event in next_events(&mut stream, take).await? {
            ensure!(
                event.revision() == last + 1,
                "resumed after {last} and got revision {} (the writer is the only one writing)",
                event.revision()
            );
            last = event.revision();
            seen.push(event);
        }
        chunk = chunk % 23 + 1;
    }
    let revisions = writer.await??;
    assert_eq!(
        seen.iter().map(WatchEvent::revision).collect::<Vec<_>>(),
        revisions
    );
    for (index, event) in seen.iter().enumerate() {
        assert_eq!(
            event.kv.value,
            format!("{index}").into_bytes(),
            "event {index}"
        );
        assert_eq!(event.kv.key, format!("/r/{}", index % 17), "event {index}");
        assert_eq!(event.kv.version, (index / 17 + 1) as i64, "event {index}");
    }
    // Nothing more after the last one.
    let mut stream = store.watch("/r/", last).await?;
    assert_quiet(&mut stream).await?;
    Ok(())
}

/// Deletes carry the old value; a transaction's changes arrive in op order at one revision.
pub async fn watch_deletes_and_txn_order(store: Arc<dyn Store>) -> Result<()> {
    let lease = store.lease_grant(60).await?;
    let ra = store.create("/d/a", b("A"), None).await?;
    let rb = store.create("/d/b", b("B"), Some(lease)).await?;
    let start = store.current_revision().await?;
    let mut stream = store.watch("/d/", start).await?;

    let old_a = store.get("/d/a").await?.context("a")?;
    let r1 = store.delete("/d/a", ra).await?;
    let event = next_event(&mut stream).await?;
    assert_eq!(
        (event.kind, event.kv.key.as_str(), event.revision()),
        (EventKind::Delete, "/d/a", r1)
    );
    assert!(
        event.kv.value.is_empty(),
        "a delete event has an empty value"
    );
    assert_eq!(event.kv.version, 0, "a delete event has version 0");
    assert_eq!(
        event.prev_kv.as_ref(),
        Some(&old_a),
        "a delete carries the old key-value"
    );

    let old_b = store.get("/d/b").await?.context("b")?;
    assert_eq!(old_b.lease, Some(lease));
    let txn = Txn::new()
        .put("/d/x", b("1"))
        .delete("/d/b")
        .delete("/d/absent")
        .put("/d/c", b("3"))
        .put("/d/a", b("again"));
    let r2 = match store.txn(txn).await? {
        TxnOutcome::Committed { revision } => revision,
        other => bail!("unexpected {other:?}"),
    };
    assert_eq!(r2, r1 + 1);
    let events = next_events(&mut stream, 4).await?;
    assert_eq!(
        summary(&events),
        vec![
            (EventKind::Put, "/d/x", r2),
            (EventKind::Delete, "/d/b", r2),
            (EventKind::Put, "/d/c", r2),
            (EventKind::Put, "/d/a", r2),
        ],
        "one event per change, in op order, at the transaction's revision"
    );
    assert_eq!(events[1].prev_kv.as_ref(), Some(&old_b));
    assert_eq!(
        events[1].prev_kv.as_ref().map(|kv| kv.mod_revision),
        Some(rb)
    );
    assert_eq!(
        (events[3].kv.version, events[3].kv.create_revision),
        (1, r2),
        "a recreated key starts over"
    );
    assert_eq!(events[3].prev_kv, None);
    assert_quiet(&mut stream).await?;

    // Replaying the same range gives the same events.
    let mut replay = store.watch("/d/", start).await?;
    let replayed = next_events(&mut replay, 5).await?;
    assert_eq!(replayed[0], event);
    assert_eq!(replayed[1..], events[..]);
    Ok(())
}

/// `after = 0` means from now on: nothing older shows, the next write does.
pub async fn watch_from_now(store: Arc<dyn Store>) -> Result<()> {
    for index in 0..5 {
        store.create(&format!("/n/{index}"), b("old"), None).await?;
    }
    let mut stream = store.watch("/n/", 0).await?;
    let mut current = store.watch("/n/", store.current_revision().await?).await?;
    let r = store.create("/n/new", b("new"), None).await?;
    for stream in [&mut stream, &mut current] {
        let event = next_event(stream).await?;
        assert_eq!(
            (event.kind, event.kv.key.as_str(), event.revision()),
            (EventKind::Put, "/n/new", r)
        );
        assert_quiet(stream).await?;
    }
    // A single key as the prefix.
    let mut one = store.watch("/n/new", 0).await?;
    let r2 = store.update("/n/new", b("newer"), r, None).await?;
    store.create("/n/other", b("x"), None).await?;
    let event = next_event(&mut one).await?;
    assert_eq!((event.kv.key.as_str(), event.revision()), ("/n/new", r2));
    Ok(())
}

/// A revision's events are handed out together: once the first event of a transaction is
/// received, all of its others are ready without waiting — also when the transaction is so
/// large that etcd splits its watch response into fragments (here ~2.8 MiB of values and
/// previous values against the test etcd's 2 MiB `--max-request-bytes`). Readers that take
/// what is ready (the controllers' informers) rely on it never to see part of a transaction.
pub async fn watch_hands_out_a_revision_whole(store: Arc<dyn Store>) -> Result<()> {
    use futures::FutureExt as _;
    use futures::StreamExt as _;

    const KEYS: usize = 100;
    let value = |fill: u8| vec![fill; 14 * 1024];
    let key = |index: usize| format!("/whole/{index:03}");
    let mut create = Txn::new();
    for index in 0..KEYS {
        create = create.put(key(index), value(b'a'));
    }
    let created = match store.txn(create).await? {
        TxnOutcome::Committed { revision } => revision,
        other => bail!("unexpected {other:?}"),
    };
    let mut stream = store.watch("/whole/", created).await?;
    let mut update = Txn::new();
    for index in 0..KEYS {
        update = update.put(key(index), value(b'b'));
    }
    let updated = match store.txn(update).await? {
        TxnOutcome::Committed { revision } => revision,
        other => bail!("unexpected {other:?}"),
    };
    let first = next_event(&mut stream).await?;
    ensure!(first.revision() == updated, "the update comes first");
    let mut ready = 1;
    while let Some(Some(event)) = stream.next().now_or_never() {
        let event = event?;
        ensure!(event.revision() == updated, "only the update's events");
        ensure!(
            event.prev_kv.as_ref().map(|kv| kv.value.len()) == Some(14 * 1024),
            "each with its previous value"
        );
        ready += 1;
    }
    ensure!(
        ready == KEYS,
        "{ready} of the transaction's {KEYS} events were ready with its first"
    );
    assert_quiet(&mut stream).await?;
    Ok(())
}
