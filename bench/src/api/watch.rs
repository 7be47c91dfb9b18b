//! The watch scenario: many concurrent HTTP watchers on one namespace's Apps while one App is
//! updated at a modest rate, beside one raw store watcher on the same prefix of the baseline
//! store, updated the same way.
//!
//! Each update carries its sequence number in an annotation; the writer notes the time just
//! before sending it (and when it is acknowledged), and every watcher notes when each frame
//! arrived (before decoding it). Latency is from the send time to receipt, at every watcher, for
//! every measured update. The watchers connect with the `resourceVersion` of the App's creation,
//! so none can miss an update; a few unmeasured warm-up updates, which every watcher must see
//! before the measured ones start, prove that every watch is established and live.
//!
//! Other writers may change the App too (`pacer dev`'s controllers write its status and
//! finalizers): an event carrying a sequence number a watcher has already seen, under a new
//! `resourceVersion`, is such a change and is not counted; the same `resourceVersion` twice is
//! a duplicate delivery.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use pacer_store::{Store as _, Txn};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Bench, Side};
use crate::load::{self, Clock, LatencyMs, Phases};

/// Namespace and name of the App that is updated.
const NAMESPACE: &str = "bench-watch";
const NAME: &str = "watched";

/// The annotation carrying an update's sequence number.
const SEQ_ANNOTATION: &str = "bench.pacer.dev/seq";

/// Unmeasured updates before the measured ones, per side.
const WARMUP_UPDATES: u64 = 3;

/// Watch requests opened at once while connecting the watchers.
const CONNECT_CONCURRENCY: usize = 64;

/// How long every watcher may take to receive the warm-up updates.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the watchers may take, once a round's writes are done, to receive them all.
const DRAIN: Duration = Duration::from_secs(30);

/// Timeout of one update.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the scenario needs.
#[derive(Debug, Clone, Copy)]
pub struct WatchParams {
    /// Concurrent HTTP watchers.
    pub watchers: usize,
    /// Measured updates per side, split over the rounds.
    pub updates: usize,
    /// Updates per second.
    pub rate: f64,
    /// Rounds: each writes a share of the updates through the API and to the store, in turn.
    pub rounds: usize,
}

/// The watch scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct WatchResult {
    /// What is measured.
    pub description: &'static str,
    /// Updates per second while writing.
    pub rate: f64,
    /// Seconds to open every HTTP watch and see the warm-up updates arrive at all of them.
    pub setup_secs: f64,
    /// API first, then the baseline.
    pub figures: Vec<WatchFigure>,
}

/// One side's figure.
#[derive(Debug, Clone, Serialize)]
pub struct WatchFigure {
    /// API or store.
    pub side: Side,
    /// Its name in the table.
    pub label: &'static str,
    /// Watchers.
    pub watchers: usize,
    /// Measured updates written.
    pub updates: u64,
    /// Deliveries expected: watchers × updates.
    pub expected: u64,
    /// Distinct measured updates received, over all watchers.
    pub delivered: u64,
    /// Expected deliveries that never came (within the drain time): should be 0.
    pub lost: u64,
    /// Updates a watcher received more than once: should be 0.
    pub duplicates: u64,
    /// From just before an update was sent to its receipt, over every watcher.
    pub latency_ms: LatencyMs,
    /// From the update's acknowledgement to its receipt (clamped at 0.001 ms).
    pub from_ack_ms: LatencyMs,
    /// The updates themselves: from send to acknowledgement.
    pub write_ms: LatencyMs,
    /// p99 delivery latency of each round, ms.
    pub rounds_p99_ms: Vec<f64>,
}

/// Send and acknowledgement times of one side's updates, by sequence number, in nanoseconds
/// since the run's origin.
struct SeqTimes {
    sent: Vec<AtomicU64>,
    acked: Vec<AtomicU64>,
}

impl SeqTimes {
    fn new(count: u64) -> Self {
        let zeros = || (0..count).map(|_| AtomicU64::new(0)).collect();
        Self {
            sent: zeros(),
            acked: zeros(),
        }
    }

    fn len(&self) -> u64 {
        self.sent.len() as u64
    }

    fn set(times: &[AtomicU64], seq: u64, nanos: u64) -> Result<()> {
        usize::try_from(seq)
            .ok()
            .and_then(|index| times.get(index))
            .context("an update beyond the planned count")?
            .store(nanos, Ordering::Relaxed);
        Ok(())
    }

    fn get(times: &[AtomicU64], seq: u64) -> u64 {
        usize::try_from(seq)
            .ok()
            .and_then(|index| times.get(index))
            .map_or(0, |time| time.load(Ordering::Relaxed))
    }
}

/// (sequence number, receipt time in nanoseconds since the run's origin).
type Deliveries = Vec<(u64, u64)>;

/// What a watcher task needs to report into.
#[derive(Clone)]
struct Probe {
    clock: Clock,
    /// Deliveries on this side so far, over all its watchers.
    progress: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
}

/// Runs the scenario.
pub async fn run(bench: &Bench, params: WatchParams) -> Result<WatchResult> {
    let created = bench.create_app(NAMESPACE, NAME).await?;
    let resource_version = created
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .context("the created App has no resourceVersion")?
        .to_owned();
    let key = super::app_key(NAMESPACE, NAME);
    let mut stored: Value = serde_json::from_slice(&super::stored_form(created)?)?;
    let outcome = bench
        .store
        .txn(Txn::new().put(key.clone(), serde_json::to_vec(&stored)?))
        .await
        .context("write the object into the baseline store")?;
    ensure!(outcome.committed(), "an unconditional put failed");
    let store_revision = bench.store.current_revision().await?;

    let clock = Clock::start(Phases {
        warmup: Duration::ZERO,
        measure: Duration::ZERO,
    });
    let total = WARMUP_UPDATES + params.updates as u64;
    let times = [SeqTimes::new(total), SeqTimes::new(total)];
    let progress = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
    let watchers = [params.watchers as u64, 1];
    let (stop, stop_receiver) = watch::channel(false);
    let probe = |side: Side| Probe {
        clock,
        progress: Arc::clone(&progress[side as usize]),
        stop: stop_receiver.clone(),
    };

    // Connect the HTTP watchers and the store watcher.
    let setup_began = Instant::now();
    eprint!(
        "{:<15} connecting {} HTTP watchers ",
        format!("WATCH x{}", params.watchers),
        params.watchers
    );
    let watch_url = format!(
        "{}?watch=1&resourceVersion={resource_version}&timeoutSeconds=1800",
        bench.apps_url(NAMESPACE)
    );
    let responses: Vec<reqwest::Response> = futures::stream::iter(0..params.watchers)
        .map(|_| open_watch(&bench.client, &watch_url))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    let mut tasks: JoinSet<(Side, Result<Deliveries>)> = JoinSet::new();
    for response in responses {
        let probe = probe(Side::Api);
        tasks.spawn(async move {
            (
                Side::Api,
                read_http(Box::pin(response.bytes_stream()), probe).await,
            )
        });
    }
    let store_stream = bench
        .store
        .watch(&format!("/registry/apps/{NAMESPACE}/"), store_revision)
        .await
        .context("watch the baseline store")?;
    {
        let probe = probe(Side::Store);
        tasks.spawn(async move { (Side::Store, read_store(store_stream, probe).await) });
    }
    eprint!("in {:.1}s; warm-up ", setup_began.elapsed().as_secs_f64());

    let writer = Writer {
        bench,
        url: format!("{}/{NAME}", bench.apps_url(NAMESPACE)),
        key,
        clock,
        rate: params.rate,
    };
    let outcome = async {
        // Warm-up: every watcher must see these before anything is measured.
        for side in [Side::Api, Side::Store] {
            let index = side as usize;
            writer
                .write(side, 0..WARMUP_UPDATES, &times[index], &mut stored)
                .await?;
            let expected = watchers[index] * WARMUP_UPDATES;
            if !wait_for(&progress[index], expected, Instant::now() + SETUP_TIMEOUT).await {
                bail!(
                    "{side:?}: only {} of {expected} warm-up deliveries arrived within \
                     {SETUP_TIMEOUT:?}",
                    progress[index].load(Ordering::Relaxed)
                );
            }
        }
        let setup_secs = setup_began.elapsed().as_secs_f64();
        eprintln!("done, {setup_secs:.1}s in all");

        // The measured rounds.
        let mut round_ranges: [Vec<Range<u64>>; 2] = [Vec::new(), Vec::new()];
        let mut next = [WARMUP_UPDATES; 2];
        for round in 0..params.rounds {
            let share = params.updates / params.rounds
                + usize::from(round < params.updates % params.rounds);
            for side in Side::rotated(round) {
                let index = side as usize;
                let seqs = next[index]..next[index] + share as u64;
                next[index] = seqs.end;
                eprint!(
                    "{:<15} {:<22} round {}/{} ",
                    format!("WATCH x{}", params.watchers),
                    format!("{side:?} ({} watchers)", watchers[index]),
                    round + 1,
                    params.rounds
                );
                writer
                    .write(side, seqs.clone(), &times[index], &mut stored)
                    .await?;
                let expected = watchers[index] * seqs.end;
                let complete = wait_for(&progress[index], expected, Instant::now() + DRAIN).await;
                eprintln!(
                    "{} updates written, {} deliveries{}",
                    seqs.end - seqs.start,
                    progress[index].load(Ordering::Relaxed),
                    if complete { "" } else { " (INCOMPLETE)" }
                );
                round_ranges[index].push(seqs);
            }
        }
        anyhow::Ok((setup_secs, round_ranges))
    }
    .await;

    // Stop the watchers, whatever happened, and collect what they saw.
    let _ = stop.send(true);
    let mut logs: [Vec<Deliveries>; 2] = [Vec::new(), Vec::new()];
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((side, Ok(deliveries))) => logs[side as usize].push(deliveries),
            Ok((side, Err(error))) => {
                failure.get_or_insert(error.context(format!("a {side:?} watcher failed")));
            }
            Err(error) => {
                failure.get_or_insert(anyhow!("a watcher panicked or was cancelled: {error}"));
            }
        }
    }
    let (setup_secs, round_ranges) = outcome?;
    if let Some(error) = failure {
        return Err(error);
    }
    let figures = [Side::Api, Side::Store]
        .into_iter()
        .map(|side| {
            let index = side as usize;
            summarise(side, &logs[index], &times[index], &round_ranges[index])
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(WatchResult {
        description: "concurrent HTTP watchers (resourceVersion = the App's creation) while one \
                      App is updated at a fixed rate; latency from just before each update is \
                      sent to its receipt at every watcher; one raw store watcher on the \
                      baseline store, updated the same way, beside it",
        rate: params.rate,
        setup_secs,
        figures,
    })
}

/// Writes the updates, through the API (merge patches of the annotation) or to the store
/// (the whole object, as the API server would), at the scenario's rate.
struct Writer<'a> {
    bench: &'a Bench,
    url: String,
    key: String,
    clock: Clock,
    rate: f64,
}

impl Writer<'_> {
    async fn write(
        &self,
        side: Side,
        seqs: Range<u64>,
        times: &SeqTimes,
        stored: &mut Value,
    ) -> Result<()> {
        let began = tokio::time::Instant::now();
        for (count, seq) in seqs.enumerate() {
            tokio::time::sleep_until(began + Duration::from_secs_f64(count as f64 / self.rate))
                .await;
            match side {
                Side::Api => {
                    let body = serde_json::json!({
                        "metadata": {"annotations": {SEQ_ANNOTATION: seq.to_string()}}
                    })
                    .to_string();
                    SeqTimes::set(&times.sent, seq, self.clock.nanos(Instant::now()))?;
                    let response = self
                        .bench
                        .client
                        .patch(&self.url)
                        .header(
                            reqwest::header::CONTENT_TYPE,
                            "application/merge-patch+json",
                        )
                        .body(body)
                        .timeout(WRITE_TIMEOUT)
                        .send()
                        .await
                        .with_context(|| format!("PATCH update {seq}"))?;
                    let status = response.status();
                    let reply = response.bytes().await?;
                    ensure!(
                        status.is_success(),
                        "PATCH update {seq}: {status}: {}",
                        String::from_utf8_lossy(&reply)
                    );
                }
                Side::Store => {
                    let annotations = stored
                        .pointer_mut("/metadata")
                        .and_then(Value::as_object_mut)
                        .context("the stored App has no metadata")?
                        .entry("annotations")
                        .or_insert_with(|| Value::Object(serde_json::Map::new()));
                    if let Some(annotations) = annotations.as_object_mut() {
                        annotations.insert(SEQ_ANNOTATION.to_owned(), seq.to_string().into());
                    }
                    let value = serde_json::to_vec(stored)?;
                    SeqTimes::set(&times.sent, seq, self.clock.nanos(Instant::now()))?;
                    let outcome = self
                        .bench
                        .store
                        .txn(Txn::new().put(self.key.clone(), value))
                        .await
                        .with_context(|| format!("store update {seq}"))?;
                    ensure!(outcome.committed(), "an unconditional put failed");
                }
            }
            SeqTimes::set(&times.acked, seq, self.clock.nanos(Instant::now()))?;
        }
        Ok(())
    }
}

/// Opens one HTTP watch; returns once the server answered with its headers.
async fn open_watch(client: &reqwest::Client, url: &str) -> Result<reqwest::Response> {
    let response = client.get(url).send().await.context("open a watch")?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("open a watch: {status}: {body}");
    }
    Ok(response)
}

/// Reads one HTTP watch (newline-delimited JSON frames) until told to stop.
async fn read_http<S, B, E>(mut body: S, mut probe: Probe) -> Result<Deliveries>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut deliveries = Vec::new();
    let mut updates = SeenUpdates::default();
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let chunk = tokio::select! {
            _ = probe.stop.wait_for(|stop| *stop) => return Ok(deliveries),
            chunk = body.next() => chunk,
        };
        let received = probe.clock.nanos(Instant::now());
        let chunk = match chunk {
            Some(chunk) => chunk.context("read a watch")?,
            None => bail!("the server ended a watch early"),
        };
        buffer.extend_from_slice(chunk.as_ref());
        let mut consumed = 0;
        while let Some(end) = buffer[consumed..].iter().position(|&byte| byte == b'\n') {
            let line = &buffer[consumed..consumed + end];
            consumed += end + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Some((seq, version)) = frame_seq(line)? {
                updates.record(seq, version, received, &mut deliveries, &probe);
            }
        }
        buffer.drain(..consumed);
    }
}

/// Reads the raw store watch until told to stop.
async fn read_store(mut stream: pacer_store::WatchStream, mut probe: Probe) -> Result<Deliveries> {
    let mut deliveries = Vec::new();
    let mut updates = SeenUpdates::default();
    loop {
        let event = tokio::select! {
            _ = probe.stop.wait_for(|stop| *stop) => return Ok(deliveries),
            event = stream.next() => event,
        };
        let received = probe.clock.nanos(Instant::now());
        let event = event
            .context("the store watch ended")?
            .context("the store watch failed")?;
        let object: FrameObject =
            serde_json::from_slice(&event.kv.value).context("decode a watched value")?;
        if let Some(seq) = object.seq()? {
            let version = event.kv.mod_revision.to_string();
            updates.record(seq, version, received, &mut deliveries, &probe);
        }
    }
}

/// The part of a watch frame the benchmark reads.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    object: FrameObject,
}

#[derive(Deserialize)]
struct FrameObject {
    #[serde(default)]
    metadata: FrameMeta,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct FrameMeta {
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
}

/// What one watcher has received: the updates' sequence numbers and the object versions.
#[derive(Default)]
struct SeenUpdates {
    seqs: HashSet<u64>,
    versions: HashSet<String>,
}

impl SeenUpdates {
    /// Logs the receipt of `seq` in an event of the object at `version`: the first event with
    /// a sequence number is its delivery, the same `version` again a duplicate delivery (logged
    /// again, so that it is counted), and a new `version` with a known sequence number another
    /// writer's change (ignored).
    fn record(
        &mut self,
        seq: u64,
        version: String,
        received: u64,
        deliveries: &mut Deliveries,
        probe: &Probe,
    ) {
        let new_version = self.versions.insert(version);
        let new_seq = self.seqs.insert(seq);
        if new_seq || !new_version {
            deliveries.push((seq, received));
        }
        if new_seq {
            probe.progress.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl FrameObject {
    /// The update's sequence number, if it carries one.
    fn seq(&self) -> Result<Option<u64>> {
        self.metadata
            .annotations
            .get(SEQ_ANNOTATION)
            .map(|seq| seq.parse().context("a malformed sequence number"))
            .transpose()
    }
}

/// The sequence number and object `resourceVersion` of an ADDED or MODIFIED frame; ERROR
/// frames fail the watcher.
fn frame_seq(line: &[u8]) -> Result<Option<(u64, String)>> {
    let frame: Frame = serde_json::from_slice(line).with_context(|| {
        format!(
            "decode a watch frame: {}",
            String::from_utf8_lossy(&line[..line.len().min(200)])
        )
    })?;
    match frame.kind.as_str() {
        "ADDED" | "MODIFIED" => Ok(frame
            .object
            .seq()?
            .map(|seq| (seq, frame.object.metadata.resource_version))),
        "DELETED" | "BOOKMARK" => Ok(None),
        "ERROR" => bail!(
            "the server sent an ERROR frame: {}",
            frame.object.message.unwrap_or_default()
        ),
        other => bail!("a watch frame of unknown type {other:?}"),
    }
}

/// Waits until `progress` reaches `expected`, or `deadline`; says whether it did.
async fn wait_for(progress: &AtomicU64, expected: u64, deadline: Instant) -> bool {
    loop {
        if progress.load(Ordering::Relaxed) >= expected {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn summarise(
    side: Side,
    logs: &[Deliveries],
    times: &SeqTimes,
    rounds: &[Range<u64>],
) -> Result<WatchFigure> {
    let mut latency = load::latency_histogram()?;
    let mut from_ack = load::latency_histogram()?;
    let mut per_round = rounds
        .iter()
        .map(|_| load::latency_histogram())
        .collect::<Result<Vec<_>>>()?;
    let measured: u64 = rounds.iter().map(|range| range.end - range.start).sum();
    let (mut delivered, mut duplicates) = (0u64, 0u64);
    let nanos = |nanos: u64| Duration::from_nanos(nanos);
    for log in logs {
        let mut seen = vec![false; times.sent.len()];
        for &(seq, received) in log {
            let slot = usize::try_from(seq)
                .ok()
                .and_then(|index| seen.get_mut(index))
                .with_context(|| format!("a watcher saw update {seq}, which was never sent"))?;
            if std::mem::replace(slot, true) {
                duplicates += 1;
                continue;
            }
            let Some(round) = rounds.iter().position(|range| range.contains(&seq)) else {
                continue; // a warm-up update
            };
            delivered += 1;
            let sent = SeqTimes::get(&times.sent, seq);
            let taken = nanos(received.saturating_sub(sent));
            load::record(&mut latency, taken);
            load::record(&mut per_round[round], taken);
            let acked = SeqTimes::get(&times.acked, seq);
            load::record(&mut from_ack, nanos(received.saturating_sub(acked)));
        }
    }
    let mut write = load::latency_histogram()?;
    for seq in rounds.iter().flat_map(Clone::clone) {
        let (sent, acked) = (
            SeqTimes::get(&times.sent, seq),
            SeqTimes::get(&times.acked, seq),
        );
        load::record(&mut write, nanos(acked.saturating_sub(sent)));
    }
    let expected = logs.len() as u64 * measured;
    debug_assert!(times.len() >= measured);
    Ok(WatchFigure {
        side,
        label: match side {
            Side::Api => "API: HTTP watchers",
            Side::Store => "store: watch (raw)",
        },
        watchers: logs.len(),
        updates: measured,
        expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        duplicates,
        latency_ms: LatencyMs::from_micros(&latency),
        from_ack_ms: LatencyMs::from_micros(&from_ack),
        write_ms: LatencyMs::from_micros(&write),
        rounds_p99_ms: per_round
            .iter()
            .map(|histogram| LatencyMs::from_micros(histogram).p99)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_frames() -> Result<()> {
        let modified = br#"{"type":"MODIFIED","object":{"kind":"App","metadata":{"name":"w","resourceVersion":"7","annotations":{"bench.pacer.dev/seq":"42"}},"spec":{}}}"#;
        assert_eq!(frame_seq(modified)?, Some((42, "7".to_owned())));
        let added = br#"{"type":"ADDED","object":{"metadata":{"name":"w"}}}"#;
        assert_eq!(frame_seq(added)?, None);
        let bookmark = br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}"#;
        assert_eq!(frame_seq(bookmark)?, None);
        let error =
            br#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old"}}"#;
        let failed = frame_seq(error).err().context("an ERROR frame fails")?;
        assert!(format!("{failed:#}").contains("too old"));
        Ok(())
    }

    #[test]
    fn another_writers_change_is_not_a_delivery_and_a_repeat_is_a_duplicate() {
        let (_stop, stop) = watch::channel(false);
        let probe = Probe {
            clock: Clock::start(Phases {
                warmup: Duration::ZERO,
                measure: Duration::ZERO,
            }),
            progress: Arc::new(AtomicU64::new(0)),
            stop,
        };
        let mut seen = SeenUpdates::default();
        let mut deliveries = Vec::new();
        for (seq, version) in [(1, "10"), (1, "11"), (2, "12"), (2, "12")] {
            seen.record(seq, version.to_owned(), 0, &mut deliveries, &probe);
        }
        // 1 at 10 delivered; 1 at 11 another writer's; 2 at 12 delivered, then duplicated.
        assert_eq!(deliveries, [(1, 0), (2, 0), (2, 0)]);
        assert_eq!(probe.progress.load(Ordering::Relaxed), 2);
    }
}
