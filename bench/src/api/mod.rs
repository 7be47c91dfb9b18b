//! `pacer-bench api`: the API server over HTTP against the raw store, in one run.
//!
//! The system under test is the real `pacer dev` binary (release build) in its own process on a
//! loopback port, with its embedded store in a temporary directory; requests go over HTTP/1.1
//! with `reqwest`, as kubectl's and kube-rs's would. The baseline is the same store,
//! `pacer_store::embedded::EmbeddedStore`, opened in this process and holding the same objects
//! under the same keys: what the API adds over it (HTTP, routing, JSON, resourceVersion
//! filling, watch fan-out) is the difference between the two figures.
//!
//! Scenarios (each target in each round, the order rotating from round to round, so that a
//! burst of load on this shared machine falls on both alike):
//!
//! - `get`: GET of one App at a fixed offered load (default 1,000/s), open loop, latency from
//!   each request's scheduled time (see `open_loop`), beside the store's `get` at the same rate.
//! - `watch`: 1,000 concurrent HTTP watchers on Apps while updates are written at a modest rate;
//!   latency from each write's send time to its receipt at every watcher, beside one raw store
//!   watcher fed the same way.
//! - `list`: 10,000 Apps created through the API; a full LIST with and without `limit=500`
//!   paging, beside the store's `list` of the same prefix, unpaged and paged.
//!
//! Targets (issue 4): GET p99 ≤ 10 ms at 1,000/s; watch delivery p99 ≤ 100 ms to every one of
//! 1,000 watchers. A missed target is reported, not an error.

pub mod dev;
mod get;
mod list;
mod open_loop;
pub mod report;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use clap::ValueEnum;
use pacer_store::embedded::EmbeddedStore;
use serde::Serialize;
use serde_json::{Value, json};

use self::report::{Parameters, Report};
use crate::load::Phases;
use crate::machine::Machine;
use crate::results::{self, UtcTime};

/// Timeout of every non-watch request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// File descriptors this process needs besides one per watcher (the server process, which
/// inherits the limit, needs about as many).
const SPARE_FDS: u64 = 256;

/// Options of `pacer-bench api`.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// The `pacer` binary to benchmark (default: `pacer` beside this executable, i.e. the
    /// release build `hack/bench.sh` makes).
    #[arg(long, env = "PACER_BIN")]
    pacer_bin: Option<PathBuf>,
    /// Scenarios to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = ApiScenario::ALL)]
    scenarios: Vec<ApiScenario>,
    /// Rounds of the get and watch scenarios: each runs the API and the store once, in turn,
    /// the order rotating.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Offered GET load, requests per second (open loop).
    #[arg(long, default_value_t = 1000.0)]
    get_rate: f64,
    /// Measured GET seconds per target, split evenly over the rounds.
    #[arg(long, default_value_t = 10.0)]
    get_secs: f64,
    /// Unmeasured seconds at the same rate before each GET run.
    #[arg(long, default_value_t = 1.0)]
    get_warmup_secs: f64,
    /// Apps created for the list scenario.
    #[arg(long, default_value_t = 10_000)]
    list_apps: usize,
    /// Concurrent POSTs while creating them.
    #[arg(long, default_value_t = 32)]
    create_concurrency: usize,
    /// Page size of the paged lists (`limit=`).
    #[arg(long, default_value_t = 500)]
    page_size: usize,
    /// Timed lists of each kind (API/store, paged/unpaged), in rotating order.
    #[arg(long, default_value_t = 5)]
    list_rounds: usize,
    /// Concurrent HTTP watchers.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Measured updates written per target (split evenly over the rounds).
    #[arg(long, default_value_t = 100)]
    watch_updates: usize,
    /// Updates per second while writing them.
    #[arg(long, default_value_t = 20.0)]
    watch_rate: f64,
    /// Directory for the JSON results (`api-<UTC time>.json` and `api-latest.json`).
    #[arg(long, default_value_os_t = crate::default_results_dir())]
    out: PathBuf,
}

/// The api scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiScenario {
    /// GET of one object at a fixed rate.
    Get,
    /// Many HTTP watchers, delivery latency.
    Watch,
    /// LIST of many objects, unpaged and paged. It runs last: the 10,000 Apps it creates keep
    /// `pacer dev`'s controllers busy for a while, which would load the other scenarios.
    List,
}

impl ApiScenario {
    /// Every scenario, in the order they run.
    pub const ALL: [ApiScenario; 3] = [ApiScenario::Get, ApiScenario::Watch, ApiScenario::List];
}

/// Which side of the comparison a figure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// `pacer dev` over HTTP.
    Api,
    /// The embedded store in this process: the baseline.
    Store,
}

impl Side {
    /// Both sides, the order rotated by `round`.
    fn rotated(round: usize) -> [Side; 2] {
        if round.is_multiple_of(2) {
            [Side::Api, Side::Store]
        } else {
            [Side::Store, Side::Api]
        }
    }
}

/// What every scenario shares.
pub struct Bench {
    /// HTTP client (connection pool shared by every request).
    pub client: reqwest::Client,
    /// `http://127.0.0.1:PORT` of `pacer dev`.
    pub base_url: String,
    /// The baseline store.
    pub store: Arc<EmbeddedStore>,
}

impl Bench {
    /// URL of the Apps collection in `namespace`.
    pub fn apps_url(&self, namespace: &str) -> String {
        format!(
            "{}/apis/pacer.dev/v1/namespaces/{namespace}/apps",
            self.base_url
        )
    }

    /// Creates an App through the API and returns the created object.
    pub async fn create_app(&self, namespace: &str, name: &str) -> Result<Value> {
        let response = self
            .client
            .post(self.apps_url(namespace))
            .json(&app_manifest(namespace, name))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("POST app {namespace}/{name}"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("read the reply to POST app {namespace}/{name}"))?;
        ensure!(
            status.is_success(),
            "POST app {namespace}/{name}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body)
            .with_context(|| format!("decode the reply to POST app {namespace}/{name}"))
    }
}

/// The manifest of a small App: a plain process with no instances, so that however many the
/// benchmark creates, `pacer dev`'s controllers and local agent launch nothing (an object
/// measured through the API is the same size either way).
pub fn app_manifest(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "pacer.dev/v1",
        "kind": "App",
        "metadata": {"name": name, "namespace": namespace, "labels": {"bench": "api"}},
        "spec": {"cmd": "sleep 3600", "instances": 0, "cpus": 0.1, "mem": 32}
    })
}

/// An object as the API stored it: what the API returned, without `metadata.resourceVersion`
/// (the API server never stores it; it fills it from the key's revision on the way out).
pub fn stored_form(mut object: Value) -> Result<Vec<u8>> {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    serde_json::to_vec(&object).context("encode an object")
}

/// The store key of an App, as the API server lays keys out.
pub fn app_key(namespace: &str, name: &str) -> String {
    format!("/registry/apps/{namespace}/{name}")
}

/// Runs the api benchmark, prints the table and writes the results.
pub async fn run(args: ApiArgs) -> Result<()> {
    let mut kinds = args.scenarios.clone();
    kinds.sort_unstable();
    kinds.dedup();
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let started = UtcTime::now();
    let machine = Machine::describe();
    let nofile = raise_nofile_limit(if kinds.contains(&ApiScenario::Watch) {
        args.watchers as u64 + SPARE_FDS
    } else {
        SPARE_FDS
    })?;
    install_crypto_provider();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .context("build the HTTP client")?;
    let binary = dev::locate_binary(args.pacer_bin.clone())?;
    eprintln!("starting {} dev", binary.display());
    let server = dev::DevServer::start(&binary, &client).await?;
    let baseline_dir = tempfile::tempdir().context("create a directory for the baseline store")?;
    let baseline_path = baseline_dir.path().join("baseline.redb");
    let store = Arc::new(EmbeddedStore::open(&baseline_path).with_context(|| {
        format!(
            "open the baseline embedded store at {}",
            baseline_path.display()
        )
    })?);
    let bench = Bench {
        client,
        base_url: server.base_url.clone(),
        store,
    };

    let outcome = run_scenarios(&bench, &args, &kinds).await;
    let server_info = server.stop().await?;
    let (get, list, watch) = outcome?;

    let targets = report::check_targets(get.as_ref(), watch.as_ref());
    let report = Report {
        benchmark: "api",
        schema_version: 1,
        started_at: started.rfc3339(),
        finished_at: UtcTime::now().rfc3339(),
        machine,
        server: server_info,
        baseline: "pacer_store::embedded::EmbeddedStore opened in the benchmark process, holding \
                   the same objects under the same keys",
        nofile_limit: nofile,
        parameters: Parameters {
            rounds: args.rounds,
            get_rate: args.get_rate,
            get_secs: args.get_secs,
            get_warmup_secs: args.get_warmup_secs,
            list_apps: args.list_apps,
            create_concurrency: args.create_concurrency,
            page_size: args.page_size,
            list_rounds: args.list_rounds,
            watchers: args.watchers,
            watch_updates: args.watch_updates,
            watch_rate: args.watch_rate,
        },
        all_targets_met: targets.iter().all(|target| target.met),
        get,
        list,
        watch,
        targets,
    };
    println!("\n{}", report::table(&report));
    let (stamped, latest) = results::write(&args.out, "api", started, &report)?;
    println!("results: {} (and {})", stamped.display(), latest.display());
    Ok(())
}

type Outcomes = (
    Option<get::GetResult>,
    Option<list::ListResult>,
    Option<watch::WatchResult>,
);

async fn run_scenarios(bench: &Bench, args: &ApiArgs, kinds: &[ApiScenario]) -> Result<Outcomes> {
    let (mut get, mut list, mut watch) = (None, None, None);
    for kind in kinds {
        match kind {
            ApiScenario::Get => {
                let seconds = |value: f64, flag: &str| {
                    Duration::try_from_secs_f64(value)
                        .with_context(|| format!("invalid {flag} {value}"))
                };
                let measure = seconds(args.get_secs, "--get-secs")?;
                ensure!(!measure.is_zero(), "--get-secs must be positive");
                let phases = Phases {
                    warmup: seconds(args.get_warmup_secs, "--get-warmup-secs")?,
                    measure: measure.div_f64(args.rounds as f64),
                };
                get = Some(
                    get::run(bench, args.get_rate, phases, args.rounds)
                        .await
                        .context("get scenario")?,
                );
            }
            ApiScenario::List => {
                ensure!(args.list_apps >= 1, "--list-apps must be at least 1");
                ensure!(args.page_size >= 1, "--page-size must be at least 1");
                ensure!(args.list_rounds >= 1, "--list-rounds must be at least 1");
                list = Some(
                    list::run(
                        bench,
                        list::ListParams {
                            apps: args.list_apps,
                            create_concurrency: args.create_concurrency.max(1),
                            page_size: args.page_size,
                            rounds: args.list_rounds,
                        },
                    )
                    .await
                    .context("list scenario")?,
                );
            }
            ApiScenario::Watch => {
                ensure!(args.watchers >= 1, "--watchers must be at least 1");
                ensure!(
                    args.watch_rate.is_finite() && args.watch_rate > 0.0,
                    "--watch-rate must be positive"
                );
                ensure!(
                    args.watch_updates >= args.rounds,
                    "--watch-updates must be at least --rounds"
                );
                watch = Some(
                    watch::run(
                        bench,
                        watch::WatchParams {
                            watchers: args.watchers,
                            updates: args.watch_updates,
                            rate: args.watch_rate,
                            rounds: args.rounds,
                        },
                    )
                    .await
                    .context("watch scenario")?,
                );
            }
        }
    }
    Ok((get, list, watch))
}

/// Raises the soft limit on open files to the hard limit and checks that `needed` fit (every
/// HTTP watcher holds a socket here and one in the server, which inherits the limit).
pub(crate) fn raise_nofile_limit(needed: u64) -> Result<u64> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .context("raise the soft limit on open files (RLIMIT_NOFILE)")?;
    if limit < needed {
        bail!(
            "the limit on open files is {limit}, but this run needs about {needed}: raise the \
             hard limit (e.g. `ulimit -Hn {needed}` as root, or in limits.conf) or run fewer \
             --watchers"
        );
    }
    Ok(limit)
}

/// reqwest is built without a bundled crypto provider (no aws-lc, so no cmake); install ring as
/// pacer-client does. Plain-HTTP requests need none, but building a client may check for it.
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
