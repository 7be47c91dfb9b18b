//! A closed-loop load generator: N tasks each run one operation after another for a warm-up and
//! then a measured window; completions inside the window give the throughput, their durations
//! the latency histogram.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency the histograms hold, in microseconds (longer ones are clamped to it).
const MAX_LATENCY_US: u64 = 600 * 1_000_000;

/// How long a run lasts: a discarded warm-up, then the measured window.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// Discarded: connections warm up, caches fill, the first allocations happen.
    pub warmup: Duration,
    /// Measured.
    pub measure: Duration,
}

/// The clock of one run: where the warm-up ends and the measured window, given as offsets from
/// `origin` so that timestamps can travel inside values (the watch scenario does that).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Time zero of the run.
    pub origin: Instant,
    /// Start of the measured window.
    pub measure_from: Instant,
    /// End of the measured window; no operation starts at or after it.
    pub until: Instant,
}

impl Clock {
    /// A clock whose warm-up starts now.
    pub fn start(phases: Phases) -> Self {
        let origin = Instant::now();
        let measure_from = origin + phases.warmup;
        Self {
            origin,
            measure_from,
            until: measure_from + phases.measure,
        }
    }

    /// Nanoseconds since `origin` (saturating; a run never lasts 584 years).
    pub fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `nanos` after `origin`.
    pub fn instant(&self, nanos: u64) -> Instant {
        self.origin + Duration::from_nanos(nanos)
    }

    /// Whether `at` falls in the measured window.
    pub fn in_window(&self, at: Instant) -> bool {
        at >= self.measure_from && at < self.until
    }

    /// Length of the measured window.
    pub fn window(&self) -> Duration {
        self.until.saturating_duration_since(self.measure_from)
    }
}

/// What a closed-loop run measured.
#[derive(Debug)]
pub struct LoadOutcome {
    /// Operations that completed inside the measured window.
    pub measured: u64,
    /// Operations that completed at all (warm-up, window, and those in flight at its end).
    pub completed: u64,
    /// Length of the measured window.
    pub window: Duration,
    /// Latencies of the measured operations, in microseconds.
    pub latency_us: Histogram<u64>,
}

/// Latency percentiles in milliseconds, as the results report them.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Number of samples.
    pub samples: u64,
}

impl LatencyMs {
    /// Summarises a histogram of microseconds.
    pub fn from_micros(histogram: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
            samples: histogram.len(),
        }
    }
}

/// An empty histogram for latencies in microseconds (1 µs to 10 min, 3 significant digits).
pub fn latency_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("create a latency histogram")
}

/// Records `latency` in `histogram` in microseconds (at least 1, clamped to the histogram's
/// range).
pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.clamp(1, MAX_LATENCY_US));
}

/// `count` events over `window`, per second.
pub fn per_sec(count: u64, window: Duration) -> f64 {
    let seconds = window.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Runs `op(worker, seq)` in a loop on `concurrency` tasks until `clock.until`; `seq` counts
/// each worker's operations from 0, so `(worker, seq)` is unique within the run. Any failed
/// operation fails the run. Operations that complete inside the measured window are counted and
/// their latencies recorded, wherever they started: that keeps the throughput unbiased whatever
/// the operations' length.
pub async fn closed_loop<F, Fut>(concurrency: usize, clock: Clock, op: F) -> Result<LoadOutcome>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let op = Arc::clone(&op);
        let mut histogram = latency_histogram()?;
        workers.spawn(async move {
            let (mut measured, mut seq) = (0u64, 0u64);
            loop {
                let began = Instant::now();
                if began >= clock.until {
                    break;
                }
                op(worker, seq)
                    .await
                    .with_context(|| format!("operation {seq} of worker {worker}"))?;
                seq += 1;
                let done = Instant::now();
                if clock.in_window(done) {
                    record(&mut histogram, done - began);
                    measured += 1;
                }
                // An operation that completes without waiting (an in-process store may) must
                // not starve the other workers on this runtime thread.
                tokio::task::yield_now().await;
            }
            anyhow::Ok((measured, seq, histogram))
        });
    }
    let mut outcome = LoadOutcome {
        measured: 0,
        completed: 0,
        window: clock.window(),
        latency_us: latency_histogram()?,
    };
    while let Some(joined) = workers.join_next().await {
        let (measured, completed, histogram) = joined
            .map_err(|error| anyhow!("a load worker panicked or was cancelled: {error}"))??;
        outcome.measured += measured;
        outcome.completed += completed;
        outcome
            .latency_us
            .add(&histogram)
            .context("merge latency histograms")?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_only_the_window() -> Result<()> {
        let phases = Phases {
            warmup: Duration::from_millis(50),
            measure: Duration::from_millis(200),
        };
        let outcome = closed_loop(4, Clock::start(phases), |_, _| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(())
        })
        .await?;
        // 4 workers × at least 10 ms per op: at most 84 in the window (fewer on a busy machine).
        assert!((10..=84).contains(&outcome.measured), "{outcome:?}");
        assert!(outcome.completed > outcome.measured, "{outcome:?}");
        assert_eq!(outcome.latency_us.len(), outcome.measured);
        let latency = LatencyMs::from_micros(&outcome.latency_us);
        assert!(latency.p50 >= 10.0, "{latency:?}");
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_operation_fails_the_run() -> Result<()> {
        let phases = Phases {
            warmup: Duration::ZERO,
            measure: Duration::from_millis(100),
        };
        let outcome = closed_loop(2, Clock::start(phases), |worker, seq| async move {
            if worker == 1 && seq == 3 {
                anyhow::bail!("boom");
            }
            Ok(())
        })
        .await;
        let error = outcome.err().context("the run should fail")?;
        assert!(format!("{error:#}").contains("boom"), "{error:#}");
        Ok(())
    }
}
