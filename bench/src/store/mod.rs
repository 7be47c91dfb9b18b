//! `pacer-bench store`: the store backends against the bare `etcd-client`, in one run.
//!
//! For each scenario (single puts, 128-put transactions, watch delivery) the bare client runs
//! against etcd, `EtcdStore` against the same etcd, and `EmbeddedStore` in this process, all at
//! the same concurrency for the same time. The measured time is split into rounds; each round
//! runs every backend once, in turn, with the order rotating from round to round, so that bursts
//! of load on a shared machine, and etcd's growth during the scenario, fall on all backends
//! alike. Each scenario gets a fresh throwaway etcd (emptying etcd between runs instead, by
//! deleting and compacting, takes longer than the runs), and each embedded run a new database.
//! Figures are reported as ratios to the bare client's, and the targets are checked on
//! those ratios.
//!
//! With `--etcd-endpoint`, that etcd is used throughout instead: the benchmark writes keys under
//! `/bench/` and deletes them after each scenario (their history stays until etcd compacts).

mod report;
mod scenarios;
mod target;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use clap::ValueEnum;
use pacer_store::embedded::EmbeddedStore;
use pacer_store::etcd::{EtcdConfig, EtcdStore};
use serde::Serialize;

use self::report::{EtcdInfo, Figure, Parameters, Report, ScenarioResult};
use self::scenarios::{Measurement, RunParams};
use self::target::{Backend, BareFlavor, Target};
use crate::load::{LatencyMs, Phases};
use crate::machine::Machine;
use crate::results::{self, UtcTime};

/// Every key the benchmark writes is under this prefix.
const ROOT_PREFIX: &str = "/bench/";

/// Extra time a run may take beyond its warm-up and window before it counts as hung.
const RUN_GRACE: Duration = Duration::from_secs(90);

/// Options of `pacer-bench store`.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Measured seconds per backend and scenario, split evenly over the rounds.
    #[arg(long, default_value_t = 5.0)]
    duration_secs: f64,
    /// Rounds per scenario: each round runs every backend once, in turn, the order rotating,
    /// so that a burst of load on this (shared) machine falls on all backends alike.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Unmeasured warm-up seconds before each run (each backend in each round).
    #[arg(long, default_value_t = 0.5)]
    warmup_secs: f64,
    /// Concurrent tasks issuing operations, the same for every backend.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Bytes per value written.
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
    /// Directory for the JSON results (`store-<UTC time>.json` and `store-latest.json`).
    #[arg(long, default_value_os_t = crate::default_results_dir())]
    out: PathBuf,
    /// An etcd to use instead of starting a throwaway one (it must be throwaway too: the
    /// benchmark deletes keys under /bench/ and compacts its history).
    #[arg(long, value_name = "HOST:PORT")]
    etcd_endpoint: Option<String>,
    /// Scenarios to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = ScenarioKind::ALL)]
    scenarios: Vec<ScenarioKind>,
}

/// The store scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScenarioKind {
    /// Single unconditional puts of distinct keys.
    Put,
    /// Transactions of 128 unconditional puts of distinct keys.
    Txn,
    /// One prefix watcher while the writers put single keys under the prefix.
    Watch,
}

impl ScenarioKind {
    /// Every scenario, in the order they run.
    pub const ALL: [ScenarioKind; 3] = [ScenarioKind::Put, ScenarioKind::Txn, ScenarioKind::Watch];

    /// The backends this scenario runs, baseline first. Besides the baseline, the bare client
    /// also runs once as a diagnostic where etcd's cheapest request differs from what a `Store`
    /// may need: single puts sent as one-put transactions (what the etcd backend would send
    /// without its single-write fast path), and watches with `prev_kv` (which the etcd backend
    /// requests, since its events carry the previous value).
    pub fn backends(self) -> &'static [Backend] {
        match self {
            ScenarioKind::Put => &[
                Backend::EtcdClient,
                Backend::EtcdClientTxn,
                Backend::Etcd,
                Backend::Embedded,
            ],
            ScenarioKind::Txn => &[Backend::EtcdClient, Backend::Etcd, Backend::Embedded],
            ScenarioKind::Watch => &[
                Backend::EtcdClient,
                Backend::EtcdClientPrevKv,
                Backend::Etcd,
                Backend::Embedded,
            ],
        }
    }

    /// Name in the table.
    pub fn title(self) -> &'static str {
        match self {
            ScenarioKind::Put => "single put",
            ScenarioKind::Txn => "128-put txn",
            ScenarioKind::Watch => "watch delivery",
        }
    }

    /// Short name used in keys and file names.
    fn id(self) -> &'static str {
        match self {
            ScenarioKind::Put => "put",
            ScenarioKind::Txn => "txn",
            ScenarioKind::Watch => "watch",
        }
    }

    fn description(self) -> &'static str {
        match self {
            ScenarioKind::Put => "unconditional single puts of distinct keys",
            ScenarioKind::Txn => "transactions of 128 unconditional puts of distinct keys",
            ScenarioKind::Watch => {
                "one prefix watcher while the writers put distinct keys under the prefix"
            }
        }
    }

    fn unit(self) -> &'static str {
        match self {
            ScenarioKind::Put => "puts/s",
            ScenarioKind::Txn => "txns/s",
            ScenarioKind::Watch => "events/s",
        }
    }

    fn latency(self) -> &'static str {
        match self {
            ScenarioKind::Put => "per put, from the call to its acknowledgement",
            ScenarioKind::Txn => "per transaction, from the call to its acknowledgement",
            ScenarioKind::Watch => {
                "per event, from just before the write is sent to delivery at the watcher \
                 (from the write's acknowledgement: watch.latency_from_ack_ms)"
            }
        }
    }
}

/// Runs the store benchmark, prints the table and writes the results.
pub async fn run(args: StoreArgs) -> Result<()> {
    let params = run_params(&args)?;
    let rounds = args.rounds;
    let mut kinds = args.scenarios.clone();
    kinds.sort_unstable();
    kinds.dedup();
    let started = UtcTime::now();
    let machine = Machine::describe();
    let embedded_dir = tempfile::tempdir().context("create a directory for the embedded store")?;

    let mut etcd_info = None;
    let mut scenarios = Vec::new();
    for kind in kinds {
        let etcd = Etcd::open(args.etcd_endpoint.as_deref()).await?;
        etcd_info.get_or_insert_with(|| etcd.info.clone());
        let backends = kind.backends();
        let mut merged: Vec<Option<Measurement>> = vec![None; backends.len()];
        let mut rounds_ops_per_sec = vec![Vec::new(); backends.len()];
        for round in 0..rounds {
            // Rotate the order, so that no backend always runs first, or on the emptiest etcd.
            for turn in 0..backends.len() {
                let index = (turn + round) % backends.len();
                let backend = backends[index];
                eprint!(
                    "{:<15} {:<21} round {}/{rounds} ",
                    kind.title(),
                    backend.label(),
                    round + 1
                );
                let embedded_path = embedded_dir.path().join(format!("{}.redb", kind.id()));
                let target = match backend {
                    Backend::EtcdClient => etcd.bare(BareFlavor::Plain),
                    Backend::EtcdClientTxn => etcd.bare(BareFlavor::PutAsTxn),
                    Backend::EtcdClientPrevKv => etcd.bare(BareFlavor::WatchPrevKv),
                    Backend::Etcd => etcd.backend.clone(),
                    Backend::Embedded => {
                        Target::Store(Arc::new(EmbeddedStore::open(&embedded_path).with_context(
                            || format!("open the embedded store at {}", embedded_path.display()),
                        )?))
                    }
                };
                // Keys are distinct across rounds too.
                let prefix = format!(
                    "{ROOT_PREFIX}{}/{}/r{}/",
                    kind.id(),
                    backend.id(),
                    round + 1
                );
                let measured = run_one(kind, backend, target, prefix, params).await?;
                let latency = LatencyMs::from_micros(&measured.latency_us);
                eprintln!(
                    "{:>8.0} {:<8}  p50 {:.2} ms  p99 {:.2} ms",
                    measured.ops_per_sec(),
                    kind.unit(),
                    latency.p50,
                    latency.p99
                );
                if backend == Backend::Embedded {
                    // The store is closed (its last handle dropped in `run_one`); its data goes.
                    remove_path(&embedded_path)?;
                }
                rounds_ops_per_sec[index].push(measured.ops_per_sec());
                match &mut merged[index] {
                    Some(total) => total.merge(&measured)?,
                    slot @ None => *slot = Some(measured),
                }
            }
        }
        etcd.close().await?;
        let mut figures = backends
            .iter()
            .zip(merged)
            .zip(rounds_ops_per_sec)
            .filter_map(|((&backend, measured), rounds)| {
                Some(Figure::new(backend, &measured?, rounds))
            })
            .collect::<Vec<_>>();
        report::add_ratios(&mut figures);
        scenarios.push(ScenarioResult {
            id: kind,
            description: kind.description(),
            unit: kind.unit(),
            latency: kind.latency(),
            figures,
        });
    }

    let targets = report::check_targets(&scenarios);
    let report = Report {
        benchmark: "store",
        schema_version: 1,
        started_at: started.rfc3339(),
        finished_at: UtcTime::now().rfc3339(),
        machine,
        etcd: etcd_info.context("no scenario ran")?,
        parameters: Parameters {
            concurrency: params.concurrency,
            warmup_secs: params.phases.warmup.as_secs_f64(),
            duration_secs: args.duration_secs,
            rounds,
            value_bytes: params.value_bytes,
            txn_ops: scenarios::TXN_OPS,
            embedded_data_dir: embedded_dir.path().display().to_string(),
        },
        all_targets_met: targets.iter().all(|target| target.met),
        scenarios,
        targets,
    };
    println!("\n{}", report::table(&report));
    let (stamped, latest) = results::write(&args.out, "store", started, &report)?;
    println!("results: {} (and {})", stamped.display(), latest.display());
    Ok(())
}

/// The etcd of one scenario, with the bare client and the etcd backend connected to it.
struct Etcd {
    /// The throwaway etcd, when the benchmark started it; killed when dropped.
    server: Option<pacer_testkit::EtcdServer>,
    client: Arc<etcd_client::Client>,
    backend: Target,
    info: EtcdInfo,
}

impl Etcd {
    /// Starts a throwaway etcd, or uses the one at `endpoint`, and connects to it.
    async fn open(endpoint: Option<&str>) -> Result<Self> {
        let server = match endpoint {
            Some(_) => None,
            None => Some(
                tokio::task::spawn_blocking(pacer_testkit::EtcdServer::start)
                    .await
                    .context("start a throwaway etcd")?
                    .context("start a throwaway etcd")?,
            ),
        };
        let endpoint = match (endpoint, &server) {
            (Some(endpoint), _) => endpoint.to_owned(),
            (None, Some(server)) => server.endpoint(),
            (None, None) => bail!("no etcd endpoint and no etcd started"),
        };
        let client = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .with_context(|| format!("connect to etcd at {endpoint}"))?;
        let version = client
            .maintenance_client()
            .status()
            .await
            .with_context(|| format!("ask etcd at {endpoint} for its status"))?
            .version()
            .to_owned();
        let store = EtcdStore::connect(EtcdConfig::new(vec![endpoint.clone()]))
            .await
            .with_context(|| format!("connect the etcd backend to {endpoint}"))?;
        Ok(Self {
            info: EtcdInfo {
                version,
                endpoint,
                started_by_benchmark: server.is_some(),
            },
            server,
            client: Arc::new(client),
            backend: Target::Store(Arc::new(store)),
        })
    }

    /// The bare client, making its requests as `flavor` says.
    fn bare(&self, flavor: BareFlavor) -> Target {
        Target::Bare {
            client: Arc::clone(&self.client),
            flavor,
        }
    }

    /// Kills the throwaway etcd; on an etcd the benchmark was given, deletes its keys.
    async fn close(self) -> Result<()> {
        if self.server.is_none() {
            self.bare(BareFlavor::Plain)
                .delete_prefix(ROOT_PREFIX)
                .await
                .context("delete the benchmark's keys from etcd")?;
        }
        Ok(())
    }
}

fn run_params(args: &StoreArgs) -> Result<RunParams> {
    ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    ensure!(
        args.value_bytes >= scenarios::MIN_VALUE_BYTES,
        "--value-bytes must be at least {}",
        scenarios::MIN_VALUE_BYTES
    );
    let seconds = |value: f64, flag: &str| {
        Duration::try_from_secs_f64(value).with_context(|| format!("invalid {flag} {value}"))
    };
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let measure = seconds(args.duration_secs, "--duration-secs")?;
    ensure!(!measure.is_zero(), "--duration-secs must be positive");
    let phases = Phases {
        warmup: seconds(args.warmup_secs, "--warmup-secs")?,
        measure: measure.div_f64(args.rounds as f64),
    };
    Ok(RunParams {
        concurrency: args.concurrency,
        phases,
        value_bytes: args.value_bytes,
    })
}

/// One scenario against one target, bounded in time so that a hung backend fails the run.
async fn run_one(
    kind: ScenarioKind,
    backend: Backend,
    target: Target,
    prefix: String,
    params: RunParams,
) -> Result<Measurement> {
    let run = async {
        match kind {
            ScenarioKind::Put => scenarios::puts(target, prefix, params).await,
            ScenarioKind::Txn => scenarios::txns(target, prefix, params).await,
            ScenarioKind::Watch => scenarios::watch_delivery(backend, target, prefix, params).await,
        }
    };
    let limit = params.phases.warmup + params.phases.measure + RUN_GRACE;
    tokio::time::timeout(limit, run)
        .await
        .with_context(|| {
            format!(
                "{} on the {} did not finish within {limit:?}",
                kind.title(),
                backend.label()
            )
        })?
        .with_context(|| format!("{} on the {}", kind.title(), backend.label()))
}

/// Removes a file or directory, if it exists.
fn remove_path(path: &Path) -> Result<()> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("remove {}", path.display()))
        }
        _ => Ok(()),
    }
}
