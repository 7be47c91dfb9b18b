//! `pacer-bench`: Pacer's benchmarks, run by `make bench` (through `hack/bench.sh`).
//!
//! Machines are shared and noisy, so no figure is ever judged on its own: each is printed beside
//! a baseline measured in the same run (for the store, the bare `etcd-client` against the same
//! etcd at the same concurrency; for the API, the raw embedded store holding the same objects;
//! for placement, the raw embedded store's batched writes),
//! and the store's targets are ratios to that baseline (the API's are the absolute
//! latencies, shown beside the store's figure). A benchmark is not a test: a missed target is reported (in the table and in the JSON results) and the process
//! still exits 0; it exits non-zero only when the benchmark itself fails.

mod agent;
mod api;
mod events;
mod health;
mod hollow_nodes;
mod load;
mod machine;
mod marathon;
mod offers;
mod placement;
mod results;
mod rollout;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// The allocator of the `pacer` binary, so that in-process baselines (the raw embedded store)
/// run on the same allocator as the control plane they are compared with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command line of `pacer-bench`.
#[derive(Debug, Parser)]
#[command(
    name = "pacer-bench",
    version,
    about = "Pacer's benchmarks (make bench)"
)]
struct Cli {
    /// Which benchmark suite to run.
    #[command(subcommand)]
    suite: Suite,
}

/// The benchmark suites.
#[derive(Debug, Subcommand)]
enum Suite {
    /// Store backends (etcd, embedded) against the bare etcd client: single puts, 128-operation
    /// transactions and watch delivery.
    Store(store::StoreArgs),
    /// The API server (the real `pacer dev` over HTTP) beside the raw embedded store: GET at a
    /// fixed rate, LIST of 10,000 Apps, 1,000 concurrent watchers.
    Api(api::ApiArgs),
    /// The placement controller in the real `pacer dev`: 10,000 Instances of 100 Apps with
    /// mixed constraints bound onto 1,000 hollow nodes, beside the raw embedded store's
    /// batched-write throughput.
    Placement(placement::PlacementArgs),
    /// Node agents: node death → replacement Running (two real `pacer agent` processes,
    /// beside the first launch), and the heartbeat cost of 1,000 hollow agents on the control
    /// plane (beside the idle control plane).
    Agent(agent::AgentArgs),
    /// A rolling upgrade of 1,000 instances across 100 Apps on hollow agents in the real
    /// `pacer dev`, beside the initial rollout of the same Apps.
    Rollout(rollout::RolloutArgs),
    /// Marathon's scale scenarios through `/v2` on hollow agents (N apps x 1 instance, 1 app x
    /// N instances), beside the same Apps created through `/apis`.
    Marathon(marathon::MarathonArgs),
    /// The offer broker's offer cycle: 3 frameworks (in-bench schedulers over HTTP) launch
    /// 10,000 instances through offers on 1,000 hollow nodes, beside direct placement of as many
    /// (the placement suite) in the same run.
    Offers(offers::OffersArgs),
    /// SSE fan-out: 100 subscribers on `/v2/events` during a 1,000-instance deployment on
    /// hollow agents (event delay p99, events per subscriber, disconnects), beside 1 subscriber.
    Events(events::EventsArgs),
    /// Health checking of 10,000 instances at a 10 s interval on hollow agents that really
    /// probe (`--probe-target`, an in-bench HTTP server counting checks): checks/s and
    /// control-plane CPU, beside the idle control plane.
    Health(health::HealthArgs),
}

/// Where results go unless `--out` says otherwise: `bench/results/` in the source tree.
fn default_results_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pacer-bench: could not start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.suite {
            Suite::Store(args) => store::run(args).await,
            Suite::Api(args) => api::run(args).await,
            Suite::Placement(args) => placement::run(args).await,
            Suite::Agent(args) => agent::run(args).await,
            Suite::Rollout(args) => rollout::run(args).await,
            Suite::Marathon(args) => marathon::run(args).await,
            Suite::Offers(args) => offers::run(args).await,
            Suite::Events(args) => events::run(args).await,
            Suite::Health(args) => health::run(args).await,
        }
    });
    // Do not wait for tasks a failed run left behind (a hung watcher, a stuck write).
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pacer-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
