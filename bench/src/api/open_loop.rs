//! An open-loop load generator: requests are scheduled at fixed intervals whatever the system
//! under test does, and each one's latency is measured from its *scheduled* time, so a stall
//! shows up in every request it delays (no coordinated omission). A dedicated OS thread keeps
//! the schedule with `std::thread::sleep` (tokio's timer has millisecond granularity, as coarse
//! as the interval itself at 1,000/s) and hands each request to the tokio runtime.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use hdrhistogram::Histogram;

use crate::load::{self, Clock, Phases};

/// How long requests still in flight at the end of the schedule may take to finish.
const DRAIN: Duration = Duration::from_secs(30);

/// A request dispatched this much after its scheduled time counts as late (the generator, or
/// the machine, could not keep the schedule).
const LATE: Duration = Duration::from_millis(1);

/// What an open-loop run measured.
#[derive(Debug, Clone)]
pub struct OpenLoopOutcome {
    /// Requests scheduled inside the measured window (all of them completed).
    pub measured: u64,
    /// Length of the measured window.
    pub window: Duration,
    /// Latency from each measured request's scheduled time to its completion, in µs.
    pub latency_us: Histogram<u64>,
    /// Latency from each measured request's actual dispatch to its completion, in µs: the
    /// service time alone, without the generator's lateness.
    pub service_us: Histogram<u64>,
    /// Measured requests dispatched more than 1 ms after their scheduled time.
    pub late_dispatches: u64,
    /// Most requests in flight at once (open loop: this grows when the server slows down).
    pub max_in_flight: u64,
}

impl OpenLoopOutcome {
    /// Adds another round's outcome.
    pub fn merge(&mut self, other: &OpenLoopOutcome) -> Result<()> {
        self.measured += other.measured;
        self.window += other.window;
        self.latency_us
            .add(&other.latency_us)
            .context("merge latency histograms")?;
        self.service_us
            .add(&other.service_us)
            .context("merge latency histograms")?;
        self.late_dispatches += other.late_dispatches;
        self.max_in_flight = self.max_in_flight.max(other.max_in_flight);
        Ok(())
    }
}

/// One completed request.
struct Completion {
    scheduled: Instant,
    dispatched: Instant,
    done: Instant,
    result: Result<()>,
}

/// Runs `op(i)` at `rate` per second for the warm-up and then the measured window, each
/// request on its own task, however many are in flight. Any failed request fails the run.
pub async fn run<F, Fut>(rate: f64, phases: Phases, op: F) -> Result<OpenLoopOutcome>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    ensure!(
        rate.is_finite() && rate > 0.0,
        "the rate must be positive, not {rate}"
    );
    let clock = Clock::start(phases);
    let span = clock.until.saturating_duration_since(clock.origin);
    let total = (span.as_secs_f64() * rate).floor() as u64;
    let runtime = tokio::runtime::Handle::current();
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Completion>();
    let op = Arc::new(op);
    let in_flight = Arc::new(AtomicU64::new(0));
    let max_in_flight = Arc::new(AtomicU64::new(0));
    let dispatcher = {
        let (in_flight, max_in_flight) = (Arc::clone(&in_flight), Arc::clone(&max_in_flight));
        std::thread::Builder::new()
            .name("open-loop".to_owned())
            .spawn(move || {
                for index in 0..total {
                    let scheduled = clock.origin + Duration::from_secs_f64(index as f64 / rate);
                    let now = Instant::now();
                    if scheduled > now {
                        std::thread::sleep(scheduled - now);
                    }
                    let dispatched = Instant::now();
                    let now_in_flight = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
                    max_in_flight.fetch_max(now_in_flight, Ordering::Relaxed);
                    let (op, sender, in_flight) =
                        (Arc::clone(&op), sender.clone(), Arc::clone(&in_flight));
                    runtime.spawn(async move {
                        let result = op(index).await;
                        let done = Instant::now();
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                        // The receiver only goes away when the run failed already.
                        let _ = sender.send(Completion {
                            scheduled,
                            dispatched,
                            done,
                            result,
                        });
                    });
                }
            })
            .context("start the open-loop dispatcher thread")?
    };

    let mut outcome = OpenLoopOutcome {
        measured: 0,
        window: clock.window(),
        latency_us: load::latency_histogram()?,
        service_us: load::latency_histogram()?,
        late_dispatches: 0,
        max_in_flight: 0,
    };
    let (mut completed, mut failures, mut first_failure) = (0u64, 0u64, None);
    let deadline = clock.until + DRAIN;
    while completed < total {
        let completion = match tokio::time::timeout_at(deadline.into(), receiver.recv()).await {
            Ok(Some(completion)) => completion,
            Ok(None) => bail!("the open-loop dispatcher stopped early"),
            Err(_) => bail!(
                "{} of {total} requests still in flight {DRAIN:?} after the schedule ended",
                total - completed
            ),
        };
        completed += 1;
        if let Err(error) = completion.result {
            failures += 1;
            first_failure.get_or_insert(error);
            continue;
        }
        if !clock.in_window(completion.scheduled) {
            continue;
        }
        outcome.measured += 1;
        load::record(
            &mut outcome.latency_us,
            completion.done - completion.scheduled,
        );
        load::record(
            &mut outcome.service_us,
            completion.done - completion.dispatched,
        );
        if completion.dispatched - completion.scheduled > LATE {
            outcome.late_dispatches += 1;
        }
    }
    dispatcher
        .join()
        .map_err(|_| anyhow!("the open-loop dispatcher thread panicked"))?;
    if let Some(error) = first_failure {
        return Err(error.context(format!("{failures} of {total} requests failed; the first")));
    }
    outcome.max_in_flight = max_in_flight.load(Ordering::Relaxed);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn measures_from_the_schedule() -> Result<()> {
        let phases = Phases {
            warmup: Duration::from_millis(100),
            measure: Duration::from_millis(400),
        };
        // Every request takes 20 ms: latency is at least that, and 200/s × 20 ms puts about
        // 4 in flight at once (open loop: nobody waits for the previous request).
        let outcome = run(200.0, phases, |_| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        })
        .await?;
        assert!((70..=80).contains(&outcome.measured), "{outcome:?}");
        let latency = load::LatencyMs::from_micros(&outcome.latency_us);
        assert!(latency.p50 >= 20.0, "{latency:?}");
        assert!(outcome.max_in_flight >= 3, "{outcome:?}");
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_request_fails_the_run() -> Result<()> {
        let phases = Phases {
            warmup: Duration::ZERO,
            measure: Duration::from_millis(50),
        };
        let outcome = run(1000.0, phases, |index| async move {
            ensure!(index != 7, "boom");
            Ok(())
        })
        .await;
        let error = outcome.err().context("the run should fail")?;
        assert!(format!("{error:#}").contains("boom"), "{error:#}");
        Ok(())
    }
}
