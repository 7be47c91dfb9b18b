//! The wake/resync/deadline/debounce loop every round-based controller runs, and the error
//! that stops one.
//!
//! A round-based controller (placement, node lifecycle, health) caches what it reads and
//! decides over its whole cache in *rounds*. [`Rounds`] says when the next one starts: after a
//! wake-up — a [`Rounds::wake`] (a relevant watched change, or a round that asks to be
//! retried), the periodic resync instant, or the deadline the last round named, awaited on the
//! injected [`Clock`] — and then a debounce sleep that gathers the changes arriving meanwhile.
//! The first round is due at once. Shutdown ends either wait.
//!
//! [`ControllerError`] holds the ways such a controller stops; each controller names it as its
//! own error type (`PlacementError`, `NodeLifecycleError`, `HealthError`). [`commit`] runs one
//! of its transactions, fenced under a leadership, and tells a refused fence
//! ([`ControllerError::LostLeadership`]) from a lost compare.
//!
//! Inside a controller's [`scope`](crate::controller_metrics::scope) (every elected term),
//! `Rounds` records the controller's metrics: each round's duration (from the wait that
//! started it to the next wait) and its queue depth — the wake-ups that arrived since the last
//! round started, i.e. the watched changes waiting for the next one.

pub mod clock;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pacer_metrics::ControllerSeries;
use pacer_schemas::{Resource, Time};
use pacer_store::key::MAX_TXN_OPS;
use pacer_store::{Leadership, Store, StoreError, Txn, TxnOutcome};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use clock::{Clock, ManualClock, SystemClock};

use crate::store_source::encode_stored;

/// When a round-based controller runs its next round (see the module docs).
#[derive(Debug)]
pub struct Rounds {
    wake: Arc<Notify>,
    debounce: Duration,
    resync: Duration,
    clock: Arc<dyn Clock>,
    next_resync: Instant,
    deadline: Option<Time>,
    metrics: Option<RoundMetrics>,
}

/// A controller's series, and when its current round started.
#[derive(Debug)]
struct RoundMetrics {
    series: ControllerSeries,
    started: Mutex<Option<std::time::Instant>>,
}

/// Wakes a [`Rounds`] loop ([`Waker::notify_one`]); each wake-up counts in the controller's
/// queue depth until the next round starts. Derefs to the [`Notify`] it wraps.
#[derive(Clone, Debug)]
pub struct Waker {
    notify: Arc<Notify>,
    queue_depth: Option<pacer_metrics::Gauge>,
}

impl Waker {
    /// Makes the next round due (after the debounce).
    pub fn notify_one(&self) {
        if let Some(queue_depth) = &self.queue_depth {
            queue_depth.inc();
        }
        self.notify.notify_one();
    }
}

impl std::ops::Deref for Waker {
    type Target = Notify;

    fn deref(&self) -> &Notify {
        &self.notify
    }
}

impl Rounds {
    /// Rounds at most every `debounce` after a wake-up, and at least every `resync`; deadlines
    /// are awaited on the [`SystemClock`] unless [`Rounds::with_clock`] says otherwise.
    pub fn new(debounce: Duration, resync: Duration) -> Self {
        Self {
            wake: Arc::new(Notify::new()),
            debounce,
            resync,
            clock: Arc::new(SystemClock),
            next_resync: Instant::now(),
            deadline: None,
            metrics: crate::controller_metrics::current().map(|name| RoundMetrics {
                series: crate::controller_metrics::series(&name),
                started: Mutex::new(None),
            }),
        }
    }

    /// Awaits deadlines on `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// A handle that wakes the loop ([`Notify::notify_one`]), for the task that drives the
    /// caches; a wake-up while a round runs is kept for the next wait.
    pub fn waker(&self) -> Waker {
        Waker {
            notify: Arc::clone(&self.wake),
            queue_depth: self
                .metrics
                .as_ref()
                .map(|metrics| metrics.series.queue_depth.clone()),
        }
    }

    /// Makes the next round due (after the debounce).
    pub fn wake(&self) {
        self.waker().notify_one();
    }

    /// Waits until the next round is due: `true` to run it, `false` once `shutdown` is
    /// cancelled.
    pub async fn next(&self, shutdown: &CancellationToken) -> bool {
        self.round_ended();
        let due = self.wait(shutdown).await;
        if due && let Some(metrics) = &self.metrics {
            metrics.series.queue_depth.set(0);
            *metrics
                .started
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(std::time::Instant::now());
        }
        due
    }

    /// Records the duration of the round that just ended, if one ran.
    fn round_ended(&self) {
        if let Some(metrics) = &self.metrics {
            let started = metrics
                .started
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(started) = started {
                metrics
                    .series
                    .reconcile
                    .observe(started.elapsed().as_secs_f64());
            }
        }
    }

    async fn wait(&self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = self.wake.notified() => {}
            () = tokio::time::sleep_until(self.next_resync) => {}
            () = async {
                match self.deadline {
                    Some(deadline) => self.clock.sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(self.debounce) => true,
        }
    }

    /// Records that a round ended: the next resync is due `resync` from now, and the next
    /// deadline is `deadline` (none: only wake-ups and resyncs).
    pub fn finished(&mut self, deadline: Option<Time>) {
        self.deadline = deadline;
        self.next_resync = Instant::now() + self.resync;
    }
}

/// Why a round-based controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A store call failed (other than a lost compare, which is retried).
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// An object could not be encoded for the store.
    #[error("encode {key}: {source}")]
    Encode {
        /// The key being written.
        key: String,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A fenced write was refused: this replica no longer leads.
    #[error("leadership lost: a fenced write was refused")]
    LostLeadership,
    /// A cache's watcher ended before the cache was ready.
    #[error("the {0} cache closed before it was ready")]
    CacheClosed(&'static str),
}

/// `object` as stored at `key` ([`encode_stored`]), naming the key if it cannot be encoded.
pub fn encode_at<K: Resource>(key: &str, object: &K) -> Result<Vec<u8>, ControllerError> {
    encode_stored(object).map_err(|source| ControllerError::Encode {
        key: key.to_owned(),
        source,
    })
}

/// Most compares per transaction: `batch_size` within 1–128, one fewer under a leadership
/// (its fencing compare counts against etcd's 128).
pub fn batch_limit(batch_size: usize, fenced: bool) -> usize {
    let limit = batch_size.clamp(1, MAX_TXN_OPS);
    if fenced {
        limit.min(MAX_TXN_OPS - 1)
    } else {
        limit
    }
}

/// Runs `txn` on `store`, with the leader's fencing compare under `leadership`. A failed
/// compare of the transaction's own is the outcome (the caller retries without it); a refused
/// fence is [`ControllerError::LostLeadership`].
pub async fn commit(
    store: &dyn Store,
    leadership: Option<&Leadership>,
    txn: Txn,
) -> Result<TxnOutcome, ControllerError> {
    let compares = txn.compares.len();
    let outcome = match leadership {
        Some(leadership) => leadership.fenced_txn(txn).await?,
        None => store.txn(txn).await?,
    };
    if let (Some(leadership), TxnOutcome::CompareFailed { observed, .. }) = (leadership, &outcome) {
        // The fencing compare is the last one.
        let fence_held = observed
            .last()
            .is_some_and(|state| leadership.token().compare().holds(state));
        if observed.len() > compares && !fence_held {
            return Err(ControllerError::LostLeadership);
        }
    }
    Ok(outcome)
}

/// Aborts the task that drives a controller's caches when the controller stops (or its future
/// is dropped).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
