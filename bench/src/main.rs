//! `pacer-bench`: Pacer's benchmarks, run by `make bench` (through `hack/bench.sh`).
//!
//! Machines are shared and noisy, so no figure is ever judged on its own: each is printed beside
//! a baseline measured in the same run (for the store, the bare `etcd-client` against the same
//! etcd at the same concurrency; for the API, the raw embedded store holding the same objects;
//! for placement, the raw embedded store's batched writes),
//! and the store's targets are ratios to that baseline (the API's are the absolute
//! latencies, shown beside the store's figure). A benchmark is not a test: a missed target is reported (in the table and in the JSON results) and the process
//! still exits 0; it exits non-zero only when the benchmark itself fails.

mod api;
mod load;
mod machine;
mod placement;
mod results;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

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
