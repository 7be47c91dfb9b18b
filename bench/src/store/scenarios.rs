//! The three store scenarios — single puts, 128-put transactions, watch delivery — each one
//! closed-loop run against one target, measured into a [`Measurement`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use futures::StreamExt as _;

use super::target::{Backend, Target};
use hdrhistogram::Histogram;

use crate::load::{self, Clock, LoadOutcome, Phases};

/// Operations in one transaction of the transaction scenario: etcd's `--max-txn-ops`.
pub const TXN_OPS: usize = pacer_store::key::MAX_TXN_OPS;

/// How long the watcher may still take, once the writers stopped, to deliver the rest.
const WATCH_DRAIN: Duration = Duration::from_secs(30);

/// Bytes at the start of each watch-scenario value: send time, worker and sequence number.
const WATCH_HEADER_BYTES: usize = 8 + 4 + 8;

/// The smallest value the scenarios can write (the watch scenario's header must fit).
pub const MIN_VALUE_BYTES: usize = WATCH_HEADER_BYTES;

/// What every run shares.
#[derive(Debug, Clone, Copy)]
pub struct RunParams {
    /// Concurrent tasks issuing operations.
    pub concurrency: usize,
    /// Warm-up and measured window.
    pub phases: Phases,
    /// Size of every value written.
    pub value_bytes: usize,
}

/// What one run of a scenario against one target measured; runs of several rounds merge.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Operations counted: completed (for watch: delivered) inside the measured window.
    pub operations: u64,
    /// Length of the measured window (summed over merged rounds).
    pub window: Duration,
    /// Keys each operation writes or delivers.
    pub keys_per_op: usize,
    /// Latency of the counted operations, in microseconds (for watch: from just before the
    /// write was sent to delivery at the watcher).
    pub latency_us: Histogram<u64>,
    /// Watch counts (the watch scenario only).
    pub watch: Option<WatchCounts>,
}

/// What the watch scenario saw besides throughput and send-to-delivery latency.
#[derive(Debug, Clone)]
pub struct WatchCounts {
    /// Latency from the writer receiving its acknowledgement to delivery at the watcher, in
    /// microseconds (clamped at 1: a watcher may see an event before its writer sees the reply).
    pub latency_from_ack_us: Histogram<u64>,
    /// Events the watcher saw before their writer saw the acknowledgement.
    pub delivered_before_ack: u64,
    /// Writes acknowledged (warm-up included).
    pub written: u64,
    /// Distinct events delivered.
    pub delivered: u64,
    /// Acknowledged writes never delivered (within the drain time): should be 0.
    pub lost: u64,
    /// Events delivered more than once: should be 0.
    pub duplicates: u64,
    /// Writes acknowledged inside the measured window.
    pub writes_measured: u64,
}

impl Measurement {
    /// Operations per second over the measured window.
    pub fn ops_per_sec(&self) -> f64 {
        load::per_sec(self.operations, self.window)
    }

    /// Adds another round's measurement of the same scenario and target.
    pub fn merge(&mut self, other: &Measurement) -> Result<()> {
        self.operations += other.operations;
        self.window += other.window;
        self.latency_us
            .add(&other.latency_us)
            .context("merge latency histograms")?;
        match (&mut self.watch, &other.watch) {
            (Some(mine), Some(theirs)) => {
                mine.latency_from_ack_us
                    .add(&theirs.latency_from_ack_us)
                    .context("merge latency histograms")?;
                mine.delivered_before_ack += theirs.delivered_before_ack;
                mine.written += theirs.written;
                mine.delivered += theirs.delivered;
                mine.lost += theirs.lost;
                mine.duplicates += theirs.duplicates;
                mine.writes_measured += theirs.writes_measured;
            }
            (None, None) => {}
            _ => bail!("cannot merge a watch measurement with another kind"),
        }
        Ok(())
    }

    fn from_load(outcome: LoadOutcome, keys_per_op: usize) -> Self {
        Self {
            operations: outcome.measured,
            window: outcome.window,
            keys_per_op,
            latency_us: outcome.latency_us,
            watch: None,
        }
    }
}

/// Single puts of distinct keys under `prefix`.
pub async fn puts(target: Target, prefix: String, params: RunParams) -> Result<Measurement> {
    let value = Arc::new(value_of(params.value_bytes));
    let outcome = load::closed_loop(
        params.concurrency,
        Clock::start(params.phases),
        move |worker, seq| {
            let (target, value) = (target.clone(), Arc::clone(&value));
            let key = format!("{prefix}{worker}/{seq}");
            async move { target.put(key, value.as_ref().clone()).await }
        },
    )
    .await?;
    Ok(Measurement::from_load(outcome, 1))
}

/// Transactions of [`TXN_OPS`] puts of distinct keys under `prefix`.
pub async fn txns(target: Target, prefix: String, params: RunParams) -> Result<Measurement> {
    let value = Arc::new(value_of(params.value_bytes));
    let outcome = load::closed_loop(
        params.concurrency,
        Clock::start(params.phases),
        move |worker, seq| {
            let (target, value) = (target.clone(), Arc::clone(&value));
            let kvs = (0..TXN_OPS)
                .map(|op| {
                    (
                        format!("{prefix}{worker}/{seq}/{op}"),
                        value.as_ref().clone(),
                    )
                })
                .collect();
            async move { target.put_all(kvs).await }
        },
    )
    .await?;
    Ok(Measurement::from_load(outcome, TXN_OPS))
}

/// One watcher on `prefix` while `concurrency` writers put distinct keys under it. Each value
/// carries its send time, worker and sequence number; the watcher timestamps each delivery.
/// Throughput is events delivered inside the measured window per second; latency is from just
/// before a write is sent to its delivery, for writes sent inside the window (the time from the
/// writer's acknowledgement is reported too).
pub async fn watch_delivery(
    backend: Backend,
    target: Target,
    prefix: String,
    params: RunParams,
) -> Result<Measurement> {
    ensure!(
        params.value_bytes >= WATCH_HEADER_BYTES,
        "values must be at least {WATCH_HEADER_BYTES} bytes for the watch scenario"
    );
    let after = target.current_revision().await?;
    let mut stream = target.watch(&prefix, after).await?;
    let clock = Clock::start(params.phases);

    // Tells the watcher how many events to expect, once the writers know.
    let (expect_tx, mut expect_rx) = tokio::sync::watch::channel(None::<u64>);
    let mut watcher = tokio::spawn(async move {
        let mut deliveries = Vec::new();
        let mut expected: Option<(u64, Instant)> = None;
        loop {
            if let Some((count, _)) = expected
                && deliveries.len() as u64 >= count
            {
                return Ok((deliveries, true));
            }
            let deadline = expected.map(|(_, deadline)| deadline);
            tokio::select! {
                batch = stream.next() => {
                    let delivered = clock.nanos(Instant::now());
                    let values = match batch {
                        Some(values) => values.context("receive watch events")?,
                        None => bail!("the watch ended while events were expected"),
                    };
                    for value in values {
                        deliveries.push(Delivery::decode(&value, delivered)?);
                    }
                }
                changed = expect_rx.changed(), if expected.is_none() => {
                    changed.context("the writers stopped without a count")?;
                    if let Some(count) = *expect_rx.borrow() {
                        expected = Some((count, Instant::now() + WATCH_DRAIN));
                    }
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    return Ok((deliveries, false));
                }
            }
        }
    });

    let acks: Arc<Vec<Mutex<Vec<u64>>>> = Arc::new(
        (0..params.concurrency)
            .map(|_| Mutex::new(Vec::new()))
            .collect(),
    );
    let writers = {
        let acks = Arc::clone(&acks);
        let value_bytes = params.value_bytes;
        load::closed_loop(params.concurrency, clock, move |worker, seq| {
            let (target, acks) = (target.clone(), Arc::clone(&acks));
            let key = format!("{prefix}{worker}/{seq}");
            async move {
                let sent = clock.nanos(Instant::now());
                let value = Delivery::encode(sent, worker, seq, value_bytes)?;
                target.put(key, value).await?;
                let acked = clock.nanos(Instant::now());
                let mut acks = acks[worker]
                    .lock()
                    .map_err(|_| anyhow!("a writer panicked holding the acknowledgements"))?;
                ensure!(acks.len() as u64 == seq, "acknowledgements out of order");
                acks.push(acked);
                Ok(())
            }
        })
        .await
    };
    let writers = match writers {
        Ok(outcome) => outcome,
        Err(error) => {
            watcher.abort();
            return Err(error);
        }
    };
    expect_tx
        .send(Some(writers.completed))
        .map_err(|_| anyhow!("the watcher stopped early"))?;
    let (deliveries, _complete) = (&mut watcher)
        .await
        .map_err(|error| anyhow!("the watcher panicked or was cancelled: {error}"))??;
    drop(expect_tx);

    let acks: Vec<Vec<u64>> = acks
        .iter()
        .map(|acks| acks.lock().map(|acks| acks.clone()))
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("a writer panicked holding the acknowledgements"))?;
    summarise_watch(backend, &clock, &writers, &deliveries, &acks)
}

/// One event as the watcher saw it.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    worker: usize,
    seq: u64,
    /// Nanoseconds since the run's origin, just before the write was sent.
    sent: u64,
    /// Nanoseconds since the run's origin when the watcher received it.
    delivered: u64,
}

impl Delivery {
    fn encode(sent: u64, worker: usize, seq: u64, value_bytes: usize) -> Result<Vec<u8>> {
        let mut value = value_of(value_bytes);
        value[..8].copy_from_slice(&sent.to_le_bytes());
        value[8..12].copy_from_slice(&u32::try_from(worker)?.to_le_bytes());
        value[12..20].copy_from_slice(&seq.to_le_bytes());
        Ok(value)
    }

    fn decode(value: &[u8], delivered: u64) -> Result<Self> {
        let field = |range: std::ops::Range<usize>| {
            value
                .get(range)
                .context("a watched value is shorter than the benchmark's header")
        };
        let sent = u64::from_le_bytes(field(0..8)?.try_into()?);
        let worker = u32::from_le_bytes(field(8..12)?.try_into()?);
        let seq = u64::from_le_bytes(field(12..20)?.try_into()?);
        Ok(Self {
            worker: usize::try_from(worker)?,
            seq,
            sent,
            delivered,
        })
    }
}

fn summarise_watch(
    backend: Backend,
    clock: &Clock,
    writers: &LoadOutcome,
    deliveries: &[Delivery],
    acks: &[Vec<u64>],
) -> Result<Measurement> {
    let mut from_send = load::latency_histogram()?;
    let mut from_ack = load::latency_histogram()?;
    let mut seen: Vec<Vec<bool>> = acks.iter().map(|acks| vec![false; acks.len()]).collect();
    let (mut in_window, mut before_ack, mut duplicates, mut unknown) = (0u64, 0u64, 0u64, 0u64);
    for delivery in deliveries {
        if clock.in_window(clock.instant(delivery.delivered)) {
            in_window += 1;
        }
        let Some(slot) = seen
            .get_mut(delivery.worker)
            .and_then(|seen| seen.get_mut(usize::try_from(delivery.seq).ok()?))
        else {
            // A write whose acknowledgement the writer never recorded: it failed or was cut
            // off; a failed write fails the run, so this does not happen.
            unknown += 1;
            continue;
        };
        if std::mem::replace(slot, true) {
            duplicates += 1;
            continue;
        }
        if !clock.in_window(clock.instant(delivery.sent)) {
            continue;
        }
        let delivered = clock.instant(delivery.delivered);
        load::record(&mut from_send, delivered - clock.instant(delivery.sent));
        let acked = acks[delivery.worker][usize::try_from(delivery.seq)?];
        if delivery.delivered < acked {
            before_ack += 1;
        }
        load::record(
            &mut from_ack,
            delivered.saturating_duration_since(clock.instant(acked)),
        );
    }
    ensure!(
        unknown == 0,
        "the watcher saw {unknown} events no writer acknowledged"
    );
    let delivered: u64 = seen.iter().flatten().map(|&seen| u64::from(seen)).sum();
    let lost = writers.completed.saturating_sub(delivered);
    if lost > 0 || duplicates > 0 {
        tracing::warn!(
            backend = backend.id(),
            lost,
            duplicates,
            "the watch lost or repeated events"
        );
    }
    Ok(Measurement {
        operations: in_window,
        window: writers.window,
        keys_per_op: 1,
        latency_us: from_send,
        watch: Some(WatchCounts {
            latency_from_ack_us: from_ack,
            delivered_before_ack: before_ack,
            written: writers.completed,
            delivered,
            lost,
            duplicates,
            writes_measured: writers.measured,
        }),
    })
}

/// A value of `bytes` bytes (printable, so that etcdctl shows it readably).
fn value_of(bytes: usize) -> Vec<u8> {
    (0..bytes).map(|index| b'a' + (index % 26) as u8).collect()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_values_round_trip() -> Result<()> {
        let value = Delivery::encode(123_456_789, 7, 42, 256)?;
        assert_eq!(value.len(), 256);
        let delivery = Delivery::decode(&value, 999)?;
        assert_eq!(
            (
                delivery.sent,
                delivery.worker,
                delivery.seq,
                delivery.delivered
            ),
            (123_456_789, 7, 42, 999)
        );
        assert!(Delivery::decode(&value[..10], 0).is_err());
        Ok(())
    }

    #[test]
    fn counts_lost_and_duplicate_events() -> Result<()> {
        let clock = Clock::start(Phases {
            warmup: Duration::ZERO,
            measure: Duration::from_secs(3600),
        });
        let writers = LoadOutcome {
            measured: 3,
            completed: 3,
            window: Duration::from_secs(1),
            latency_us: load::latency_histogram()?,
        };
        let at = |ms: u64| ms * 1_000_000;
        let acks = vec![vec![at(2), at(4)], vec![at(3)]];
        let delivery = |worker, seq, sent, delivered| Delivery {
            worker,
            seq,
            sent: at(sent),
            delivered: at(delivered),
        };
        let deliveries = [
            delivery(0, 0, 1, 5),
            delivery(0, 0, 1, 5),
            delivery(1, 0, 1, 2),
        ];
        let measured = summarise_watch(Backend::Etcd, &clock, &writers, &deliveries, &acks)?;
        let watch = measured.watch.as_ref().context("watch counts")?;
        assert_eq!((watch.delivered, watch.lost, watch.duplicates), (2, 1, 1));
        assert_eq!(watch.delivered_before_ack, 1);
        assert_eq!(measured.latency_us.len(), 2);
        assert_eq!(measured.latency_us.max() / 1000, 4, "{measured:?}");
        let mut twice = measured.clone();
        twice.merge(&measured)?;
        assert_eq!(twice.watch.as_ref().map(|watch| watch.lost), Some(2));
        assert_eq!(twice.window, Duration::from_secs(2));
        Ok(())
    }
}
