//! Durability of the embedded store: acknowledged writes survive `kill -9`, and a clean
//! reopen keeps revisions, values, history and leases (running out those that expired while
//! closed).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use pacer_store::{EventKind, ListOptions, Revision, Store, StoreError};
use rand::Rng;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::{WAIT, assert_err, b, eventually, next_event, open_embedded, store_path};

/// Set (to the store's path) when the test binary runs as the child writer.
pub const CHILD_ENV: &str = "PACER_CONFORMANCE_DURABILITY_STORE";

/// The child test's name, as `--exact` needs it.
pub const CHILD_TEST: &str = "embedded_durability_child_writer";

const CHILD_WRITERS: usize = 4;

fn value_of(key: &str) -> Vec<u8> {
    // Sizes vary from a few bytes to a few KiB.
    let repeat = 1 + key.len() * 37 % 300;
    format!("<{key}>").repeat(repeat).into_bytes()
}

/// The child: writes keys from a few tasks forever, printing `ACK <key> <revision>` after each
/// write returns. Called by the child "test" when [`CHILD_ENV`] is set.
pub fn child_writer(path: &Path) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = open_embedded(path)?;
        let mut tasks = Vec::new();
        for writer in 0..CHILD_WRITERS {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                for index in 0u64.. {
                    let key = format!("/durable/{writer}/{index:08}");
                    let revision = store.create(&key, value_of(&key), None).await?;
                    // Acknowledge only after the write returned. A failed print means the
                    // parent is gone: stop.
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {key} {revision}")?;
                    out.flush()?;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        anyhow::Ok(())
    })
}

/// Runs the child writer, SIGKILLs it after a random number of acknowledged writes, reopens the
/// store and checks that every acknowledged write is there, whole.
pub async fn kill_9_keeps_acknowledged_writes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = store_path(dir.path());
    let kill_after = rand::rng().random_range(200..600);
    let acked = run_child_until_killed(&path, kill_after).await?;
    ensure!(
        acked.len() >= kill_after,
        "only {} acknowledgements",
        acked.len()
    );

    let store = open_embedded(&path)?;
    let max_acked = acked.values().copied().max().context("no acks")?;
    let current = store.current_revision().await?;
    ensure!(
        current >= max_acked,
        "reopened at revision {current}, below the acknowledged {max_acked}"
    );
    for (key, revision) in &acked {
        let kv = store.get(key).await?.with_context(|| {
            format!("acknowledged write {key} at {revision} lost after kill -9")
        })?;
        ensure!(
            kv.value == value_of(key),
            "{key}: value damaged after kill -9"
        );
        ensure!(
            (kv.create_revision, kv.mod_revision, kv.version) == (*revision, *revision, 1),
            "{key}: acknowledged at {revision}, reopened as {kv:?}"
        );
    }
    // Writes that were not acknowledged may or may not be there, but whole and each at its
    // own revision.
    let page = store.list("/durable/", &ListOptions::default()).await?;
    let mut revisions = std::collections::HashSet::new();
    for kv in &page.items {
        ensure!(
            kv.value == value_of(&kv.key),
            "{}: value damaged after kill -9",
            kv.key
        );
        ensure!(
            revisions.insert(kv.mod_revision),
            "two keys at revision {}",
            kv.mod_revision
        );
        ensure!(kv.mod_revision <= current);
    }
    // Each writer's keys are a gap-free sequence: a later write never survives an earlier one.
    for writer in 0..CHILD_WRITERS {
        let prefix = format!("/durable/{writer}/");
        let indexes: Vec<u64> = page
            .items
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(&prefix))
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        ensure!(
            indexes
                .iter()
                .enumerate()
                .all(|(position, index)| *index == position as u64),
            "writer {writer}'s surviving keys have a hole"
        );
    }
    println!(
        "killed the child writer after {} acknowledged writes (target {kill_after}); {} keys \
         survived, reopened at revision {current}",
        acked.len(),
        page.items.len()
    );
    // And the store goes on from there.
    let next = store.create("/durable/after", b("x"), None).await?;
    ensure!(
        next == current + 1,
        "first write after reopening got {next}, current was {current}"
    );
    Ok(())
}

async fn run_child_until_killed(
    path: &Path,
    kill_after: usize,
) -> Result<BTreeMap<String, Revision>> {
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("start the child writer")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = BTreeMap::new();
    let mut killed = false;
    loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .with_context(|| {
                format!(
                    "the child printed nothing for {WAIT:?} ({} acks)",
                    acked.len()
                )
            })??;
        let Some(line) = line else { break };
        let Some(ack) = line.strip_prefix("ACK ") else {
            continue;
        };
        let (key, revision) = ack
            .split_once(' ')
            .with_context(|| format!("bad ack line {line:?}"))?;
        acked.insert(key.to_owned(), revision.parse::<Revision>()?);
        if !killed && acked.len() >= kill_after {
            child.start_kill()?; // SIGKILL
            killed = true;
        }
    }
    // Lines printed before the kill are acknowledged writes too: all were read above.
    let status = child.wait().await?;
    if !killed {
        bail!(
            "the child writer exited on its own ({status}) after {} acks",
            acked.len()
        );
    }
    Ok(acked)
}

/// Closing and reopening keeps the revision, values, history and leases; a lease whose TTL ran
/// out while the store was closed ends soon after it reopens.
pub async fn reopen_keeps_state() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = store_path(dir.path());
    let store = open_embedded(&path)?;
    let r1 = store.create("/ro/a", b("1"), None).await?;
    let r2 = store.update("/ro/a", b("2"), r1, None).await?;
    let rb = store.create("/ro/b", b("b"), None).await?;
    store.delete("/ro/b", rb).await?;
    let long = store.lease_grant(600).await?;
    let short = store.lease_grant(2).await?;
    store.create("/ro/long", b("long"), Some(long)).await?;
    store.create("/ro/short", b("short"), Some(short)).await?;
    let before = store.list("/", &ListOptions::default()).await?;
    let revision = before.revision;
    drop(store);

    // Closed for longer than the short lease's TTL.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let store = reopen(&path).await?;
    ensure!(store.current_revision().await? >= revision);
    let at_close = store
        .list(
            "/",
            &ListOptions {
                revision: Some(revision),
                ..ListOptions::default()
            },
        )
        .await?;
    assert_eq!(
        at_close, before,
        "the state at closing, read after reopening"
    );
    let a = store.get("/ro/a").await?.context("/ro/a")?;
    assert_eq!(
        (a.value, a.create_revision, a.mod_revision, a.version),
        (b("2"), r1, r2, 2)
    );
    assert_eq!(store.get("/ro/b").await?, None);

    // History survived: a watch from r1 replays the update and the delete.
    let mut stream = store.watch("/ro/", r1).await?;
    let event = next_event(&mut stream).await?;
    assert_eq!(
        (event.kind, event.kv.key.as_str(), event.revision()),
        (EventKind::Put, "/ro/a", r2)
    );
    let event = next_event(&mut stream).await?;
    assert_eq!(
        (event.kind, event.kv.key.as_str()),
        (EventKind::Put, "/ro/b")
    );

    // The long lease lives on.
    let ttl = store.lease_time_to_live(long).await?;
    assert!(
        (1..=600).contains(&ttl),
        "time to live {ttl} of the 600 s lease after reopening"
    );
    assert_eq!(store.lease_keep_alive(long).await?, 600);
    assert_eq!(
        store.get("/ro/long").await?.and_then(|kv| kv.lease),
        Some(long)
    );
    // The short one ran out while closed: it ends soon.
    eventually("the lease that expired while closed ends", WAIT, || async {
        Ok(store.get("/ro/short").await?.is_none())
    })
    .await?;
    assert_err!(
        store.lease_time_to_live(short).await,
        StoreError::LeaseNotFound(_)
    );

    // Revisions go on from where they were, and leases granted now do not reuse ids.
    let current = store.current_revision().await?;
    let next = store.create("/ro/next", b("n"), None).await?;
    assert_eq!(next, current + 1);
    let fresh = store.lease_grant(60).await?;
    assert!(
        fresh != long && fresh != short,
        "a lease id was reused after reopening"
    );
    drop(store);

    // Reopening again right away works too (nothing keeps the file locked).
    let store = reopen(&path).await?;
    assert_eq!(
        store.get("/ro/next").await?.map(|kv| kv.mod_revision),
        Some(next)
    );
    Ok(())
}

/// Reopens the store, allowing a moment for the previous handle's background work to let go.
async fn reopen(path: &Path) -> Result<Arc<dyn Store>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match open_embedded(path) {
            Ok(store) => return Ok(store),
            Err(error) if tokio::time::Instant::now() < deadline => {
                eprintln!("reopening the embedded store failed, retrying: {error:#}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(error.context("reopen the store after dropping it")),
        }
    }
}
