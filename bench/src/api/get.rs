//! The get scenario: GET of one App at a fixed offered load, open loop, beside the store's
//! `get` of the same key at the same rate.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use pacer_store::{Store as _, Txn};
use serde::Serialize;

use super::open_loop::{self, OpenLoopOutcome};
use super::{Bench, Side};
use crate::load::{self, LatencyMs, Phases};

/// Namespace and name of the App every GET reads.
const NAMESPACE: &str = "bench-get";
const NAME: &str = "target";

/// Timeout of one GET (a slower one fails the run).
const GET_TIMEOUT: Duration = Duration::from_secs(10);

/// The get scenario's results.
#[derive(Debug, Clone, Serialize)]
pub struct GetResult {
    /// What is measured.
    pub description: &'static str,
    /// Offered load, requests per second.
    pub offered_per_sec: f64,
    /// API first, then the baseline.
    pub figures: Vec<GetFigure>,
}

/// One side's figure.
#[derive(Debug, Clone, Serialize)]
pub struct GetFigure {
    /// API or store.
    pub side: Side,
    /// Its name in the table.
    pub label: &'static str,
    /// Requests completed per second over the measured windows (all scheduled requests
    /// complete, so this is the offered load unless requests failed).
    pub achieved_per_sec: f64,
    /// Measured requests.
    pub requests: u64,
    /// Measured seconds, over all rounds.
    pub window_secs: f64,
    /// From each request's scheduled time to its completion (the headline figure).
    pub latency_ms: LatencyMs,
    /// From each request's actual dispatch to its completion.
    pub service_ms: LatencyMs,
    /// Requests dispatched more than 1 ms late (the generator or the machine fell behind).
    pub late_dispatches: u64,
    /// Most requests in flight at once.
    pub max_in_flight: u64,
    /// p99 of each round, ms.
    pub rounds_p99_ms: Vec<f64>,
}

impl GetFigure {
    fn new(side: Side, outcome: &OpenLoopOutcome, rounds_p99_ms: Vec<f64>) -> Self {
        Self {
            side,
            label: match side {
                Side::Api => "API: GET over HTTP",
                Side::Store => "store: get (raw)",
            },
            achieved_per_sec: load::per_sec(outcome.measured, outcome.window),
            requests: outcome.measured,
            window_secs: outcome.window.as_secs_f64(),
            latency_ms: LatencyMs::from_micros(&outcome.latency_us),
            service_ms: LatencyMs::from_micros(&outcome.service_us),
            late_dispatches: outcome.late_dispatches,
            max_in_flight: outcome.max_in_flight,
            rounds_p99_ms,
        }
    }
}

/// Runs the scenario: `rounds` rounds, each running the API and the store once for `phases`.
pub async fn run(bench: &Bench, rate: f64, phases: Phases, rounds: usize) -> Result<GetResult> {
    let created = bench.create_app(NAMESPACE, NAME).await?;
    let key = super::app_key(NAMESPACE, NAME);
    let outcome = bench
        .store
        .txn(Txn::new().put(key.clone(), super::stored_form(created)?))
        .await
        .context("write the object into the baseline store")?;
    ensure!(outcome.committed(), "an unconditional put failed");

    let url = Arc::new(format!("{}/{NAME}", bench.apps_url(NAMESPACE)));
    let key = Arc::new(key);
    let mut merged: [Option<OpenLoopOutcome>; 2] = [None, None];
    let mut rounds_p99: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for side in Side::rotated(round) {
            eprint!(
                "{:<15} {:<22} round {}/{rounds} ",
                format!("GET @{rate}/s"),
                format!("{side:?}"),
                round + 1
            );
            let outcome = match side {
                Side::Api => {
                    let (client, url) = (bench.client.clone(), Arc::clone(&url));
                    open_loop::run(rate, phases, move |_| {
                        let (client, url) = (client.clone(), Arc::clone(&url));
                        async move { get_over_http(&client, &url).await }
                    })
                    .await
                }
                Side::Store => {
                    let (store, key) = (Arc::clone(&bench.store), Arc::clone(&key));
                    open_loop::run(rate, phases, move |_| {
                        let (store, key) = (Arc::clone(&store), Arc::clone(&key));
                        async move {
                            store
                                .get(&key)
                                .await?
                                .context("the object is missing from the store")?;
                            Ok(())
                        }
                    })
                    .await
                }
            }
            .with_context(|| format!("{side:?} round {}", round + 1))?;
            let latency = LatencyMs::from_micros(&outcome.latency_us);
            eprintln!(
                "p50 {:.3} ms  p99 {:.3} ms  max {:.1} ms",
                latency.p50, latency.p99, latency.max
            );
            let index = side as usize;
            rounds_p99[index].push(latency.p99);
            match &mut merged[index] {
                Some(total) => total.merge(&outcome)?,
                slot @ None => *slot = Some(outcome),
            }
        }
    }
    let figures = [Side::Api, Side::Store]
        .into_iter()
        .filter_map(|side| {
            let index = side as usize;
            let outcome = merged[index].as_ref()?;
            Some(GetFigure::new(
                side,
                outcome,
                std::mem::take(&mut rounds_p99[index]),
            ))
        })
        .collect();
    Ok(GetResult {
        description: "GET of one App at a fixed offered load, open loop (requests scheduled at \
                      fixed intervals), latency from each request's scheduled time to its last \
                      byte; the store's get of the same key at the same rate beside it",
        offered_per_sec: rate,
        figures,
    })
}

async fn get_over_http(client: &reqwest::Client, url: &str) -> Result<()> {
    let response = client.get(url).timeout(GET_TIMEOUT).send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    ensure!(
        status.is_success() && !body.is_empty(),
        "GET {url}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}
