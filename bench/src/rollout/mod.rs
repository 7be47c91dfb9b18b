//! `pacer-bench rollout`: a rolling upgrade of 1,000 instances across 100 Apps (10 each) on
//! hollow agents, beside the initial rollout of the same Apps measured in the same run.
//!
//! The system under test is the real `pacer dev --no-agent` (release build; API server,
//! embedded store and every controller in one process) with a real `pacer agent hollow
//! --count N` process: hollow agents report their instances `Running` (healthy and ready) at
//! once, so a rollout is paced by the control plane alone — the deployment controller's
//! rounds, placement, and the agents' status writes through the API.
//!
//! 1. **Baseline — the initial rollout**: POST the 100 Apps (each `instances: 10`) and wait
//!    until every App has converged (its Deployment finished, 10 instances of its version
//!    running, none other); the time from the first POST to the last App converged.
//! 2. **The rolling upgrade**: merge-patch every App's `cmd` (a new config version: every
//!    instance is replaced under `upgradeStrategy`, by default 0.8 / 0.2, so each App rolls
//!    in several steps of at most 2 new instances) and wait the same way.
//!
//! Figures: seconds to complete each, instances replaced per second (the reconcile rate the
//! issue asks for: new instances of the new version running per second), Apps converged per
//! second and the quartiles of when each App converged, and the ratio upgrade ÷ initial
//! rollout (same Apps, same fleet, same process). Progress is read by polling the App list
//! (`status.deployments`, `observedGeneration`, and the counts the deployment controller
//! keeps) every `--poll-ms`. No target is set by the issue; the ratio is reported.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::dev;
use crate::api::report::write_server_trouble;
use crate::load::per_sec;
use crate::machine::Machine;
use crate::results::{self, UtcTime};

/// Namespace of the Apps.
const NAMESPACE: &str = "default";

/// Timeout of every request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `pacer-bench rollout`.
#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    /// The `pacer` binary to benchmark (default: `pacer` beside this executable).
    #[arg(long, env = "PACER_BIN")]
    pacer_bin: Option<PathBuf>,
    /// Hollow agents (nodes) in the `pacer agent hollow` process.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Apps.
    #[arg(long, default_value_t = 100)]
    apps: usize,
    /// Instances per App.
    #[arg(long, default_value_t = 10)]
    instances_per_app: usize,
    /// `upgradeStrategy.minimumHealthCapacity` of every App.
    #[arg(long, default_value_t = 0.8)]
    minimum_health_capacity: f64,
    /// `upgradeStrategy.maximumOverCapacity` of every App.
    #[arg(long, default_value_t = 0.2)]
    maximum_over_capacity: f64,
    /// Concurrent POSTs / PATCHes.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How often the App list is read while waiting, in milliseconds.
    #[arg(long, default_value_t = 100)]
    poll_ms: u64,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Directory for the JSON results (`rollout-<UTC time>.json`, `rollout-latest.json`).
    #[arg(long, default_value_os_t = crate::default_results_dir())]
    out: PathBuf,
}

/// One phase (initial rollout or upgrade) as measured.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// Instances the phase starts (every App's target).
    pub instances: usize,
    /// Seconds to send every POST / PATCH.
    pub requests_secs: f64,
    /// Seconds from the first request to the last App converged.
    pub complete_secs: f64,
    /// Whether every App converged before the timeout.
    pub completed: bool,
    /// Apps converged.
    pub apps_converged: usize,
    /// New instances running per second over the phase: the reconcile rate.
    pub instances_per_sec: f64,
    /// Apps converged per second.
    pub apps_per_sec: f64,
    /// When the 25th, 50th and 75th percentile App converged, seconds from the first request.
    pub app_converged_quartiles_secs: [f64; 3],
    /// The first App converged, seconds.
    pub first_app_converged_secs: Option<f64>,
    /// Reads of the App list while waiting.
    pub polls: usize,
}

/// The options of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    /// Hollow nodes.
    pub nodes: usize,
    /// Apps.
    pub apps: usize,
    /// Instances per App.
    pub instances_per_app: usize,
    /// `minimumHealthCapacity`.
    pub minimum_health_capacity: f64,
    /// `maximumOverCapacity`.
    pub maximum_over_capacity: f64,
    /// Concurrent requests.
    pub concurrency: usize,
    /// Polling period, ms.
    pub poll_ms: u64,
}

/// The whole results file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `"rollout"`.
    pub benchmark: &'static str,
    /// Bumped when the shape of this document changes.
    pub schema_version: u32,
    /// When the run started (UTC, RFC 3339).
    pub started_at: String,
    /// When it ended.
    pub finished_at: String,
    /// The machine it ran on.
    pub machine: Machine,
    /// The server under test.
    pub server: dev::ServerInfo,
    /// What the baseline is.
    pub baseline_description: &'static str,
    /// The options.
    pub parameters: Parameters,
    /// The baseline: the initial rollout of the same Apps.
    pub initial_rollout: Phase,
    /// The figure: the rolling upgrade of every instance.
    pub rolling_upgrade: Phase,
    /// Upgrade seconds ÷ initial-rollout seconds (a rolling upgrade starts and kills every
    /// instance in steps, so > 1 is expected).
    pub upgrade_to_initial_time_ratio: f64,
    /// Upgrade instances/s ÷ initial-rollout instances/s.
    pub upgrade_to_initial_rate_ratio: f64,
}

/// HTTP against `pacer dev`.
struct Http {
    client: reqwest::Client,
    base_url: String,
}

impl Http {
    fn apps(&self) -> String {
        format!(
            "{}/apis/pacer.dev/v1/namespaces/{NAMESPACE}/apps",
            self.base_url
        )
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Value> {
        let response = request
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .with_context(|| what.to_owned())?;
        let status = response.status();
        let body = response.bytes().await.context("read a reply")?;
        ensure!(
            status.is_success(),
            "{what}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).with_context(|| format!("decode the reply to {what}"))
    }
}

/// Whether an App from the list has converged on `target` instances of its current version.
fn converged(app: &Value, target: usize) -> bool {
    let status = &app["status"];
    let target = target as u64;
    status["observedGeneration"] == app["metadata"]["generation"]
        && status["deployments"]
            .as_array()
            .is_none_or(|deployments| deployments.is_empty())
        && status["instances"].as_u64() == Some(target)
        && status["updated"].as_u64() == Some(target)
        && status["running"].as_u64() == Some(target)
}

/// Sends one request per App (`request(index)`), then polls until every App converged.
async fn phase<F>(http: &Http, args: &RolloutArgs, what: &str, request: F) -> Result<Phase>
where
    F: Fn(usize) -> reqwest::RequestBuilder,
{
    let t0 = Instant::now();
    eprint!("{what}: {} requests ", args.apps);
    futures::stream::iter(0..args.apps)
        .map(|index| http.send(request(index), what))
        .buffer_unordered(args.concurrency.max(1))
        .try_collect::<Vec<Value>>()
        .await?;
    let requests = t0.elapsed();
    eprint!("in {:.2}s; waiting ", requests.as_secs_f64());
    let deadline = t0 + Duration::from_secs(args.timeout_secs);
    let mut converged_at: Vec<Option<Duration>> = vec![None; args.apps];
    let mut polls = 0;
    let index_of = |name: &str| {
        name.strip_prefix("roll-")
            .and_then(|number| number.parse::<usize>().ok())
    };
    while converged_at.iter().any(Option::is_none) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
        let list = http
            .send(http.client.get(http.apps()), "list the Apps")
            .await?;
        polls += 1;
        let at = t0.elapsed();
        for app in list["items"].as_array().into_iter().flatten() {
            let Some(index) = app["metadata"]["name"].as_str().and_then(index_of) else {
                continue;
            };
            if let Some(slot) = converged_at.get_mut(index) {
                if converged(app, args.instances_per_app) {
                    slot.get_or_insert(at);
                } else {
                    // Not yet (or no longer): only a stable convergence counts.
                    *slot = None;
                }
            }
        }
    }
    let mut done: Vec<Duration> = converged_at.iter().flatten().copied().collect();
    done.sort_unstable();
    let completed = done.len() == args.apps;
    let complete = if completed {
        done.last().copied().unwrap_or_default()
    } else {
        t0.elapsed()
    };
    eprintln!(
        "- {} of {} apps converged in {:.2}s",
        done.len(),
        args.apps,
        complete.as_secs_f64()
    );
    let quantile = |q: f64| {
        if done.is_empty() {
            return f64::NAN;
        }
        let index = ((done.len() as f64 * q).ceil() as usize).clamp(1, done.len()) - 1;
        done[index].as_secs_f64()
    };
    let instances = args.apps * args.instances_per_app;
    let converged_instances = done.len() * args.instances_per_app;
    Ok(Phase {
        instances,
        requests_secs: requests.as_secs_f64(),
        complete_secs: complete.as_secs_f64(),
        completed,
        apps_converged: done.len(),
        instances_per_sec: per_sec(converged_instances as u64, complete),
        apps_per_sec: per_sec(done.len() as u64, complete),
        app_converged_quartiles_secs: [quantile(0.25), quantile(0.5), quantile(0.75)],
        first_app_converged_secs: done.first().map(Duration::as_secs_f64),
        polls,
    })
}

/// Starts `pacer agent hollow --count N` against the server.
pub(crate) fn start_hollow_agents(
    binary: &std::path::Path,
    base_url: &str,
    nodes: usize,
    log: &std::path::Path,
) -> Result<tokio::process::Child> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    tokio::process::Command::new(binary)
        .args(["agent", "hollow", "--server", base_url, "--count"])
        .arg(nodes.to_string())
        .args(["--name-prefix", "bench-hollow-"])
        .env("PACER_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .context("start pacer agent hollow")
}

/// Waits until `nodes` Nodes are registered.
async fn wait_nodes(http: &Http, nodes: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = http
            .send(
                http.client
                    .get(format!("{}/apis/pacer.dev/v1/nodes", http.base_url)),
                "list the Nodes",
            )
            .await?;
        let count = list["items"].as_array().map_or(0, Vec::len);
        if count >= nodes {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("only {count} of {nodes} hollow nodes registered within 60s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The App `index` running `cmd`.
fn app(index: usize, cmd: &str, args: &RolloutArgs) -> Value {
    json!({
        "apiVersion": "pacer.dev/v1",
        "kind": "App",
        "metadata": {"name": format!("roll-{index:03}"), "namespace": NAMESPACE,
                     "labels": {"bench": "rollout"}},
        "spec": {
            "cmd": cmd,
            "instances": args.instances_per_app,
            "cpus": 0.01,
            "mem": 8,
            "upgradeStrategy": {
                "minimumHealthCapacity": args.minimum_health_capacity,
                "maximumOverCapacity": args.maximum_over_capacity,
            },
        },
    })
}

/// Runs the rollout benchmark, prints the table and writes the results.
pub async fn run(args: RolloutArgs) -> Result<()> {
    ensure!(
        args.apps >= 1 && args.apps <= 1000,
        "--apps must be in 1..=1000"
    );
    ensure!(
        args.instances_per_app >= 1,
        "--instances-per-app must be at least 1"
    );
    ensure!(args.nodes >= 1, "--nodes must be at least 1");
    let started = UtcTime::now();
    let machine = Machine::describe();
    let (client, binary, server) =
        dev::start_control_plane(args.pacer_bin.clone(), args.concurrency as u64).await?;
    let http = Http {
        client,
        base_url: server.base_url.clone(),
    };
    let scratch = tempfile::tempdir().context("create a directory for the agents' log")?;
    let outcome = async {
        let mut agents = start_hollow_agents(
            &binary,
            &http.base_url,
            args.nodes,
            &scratch.path().join("hollow.log"),
        )?;
        eprintln!("waiting for {} hollow nodes", args.nodes);
        wait_nodes(&http, args.nodes).await?;
        let initial = phase(&http, &args, "initial rollout", |index| {
            http.client
                .post(http.apps())
                .json(&app(index, "sleep 3600", &args))
        })
        .await?;
        let upgrade = phase(&http, &args, "rolling upgrade", |index| {
            http.client
                .patch(format!("{}/roll-{index:03}", http.apps()))
                .header("Content-Type", "application/merge-patch+json")
                .json(&json!({"spec": {"cmd": "sleep 7200"}}))
        })
        .await?;
        let _ = agents.start_kill();
        let _ = agents.wait().await;
        Ok::<_, anyhow::Error>((initial, upgrade))
    }
    .await;
    let server_info = server.stop().await?;
    let (initial, upgrade) = outcome?;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let report = Report {
        benchmark: "rollout",
        schema_version: 1,
        started_at: started.rfc3339(),
        finished_at: UtcTime::now().rfc3339(),
        machine,
        server: server_info,
        baseline_description: "the initial rollout (StartApplication) of the same Apps on the \
                               same hollow fleet and pacer dev process, measured just before \
                               the upgrade",
        parameters: Parameters {
            nodes: args.nodes,
            apps: args.apps,
            instances_per_app: args.instances_per_app,
            minimum_health_capacity: args.minimum_health_capacity,
            maximum_over_capacity: args.maximum_over_capacity,
            concurrency: args.concurrency,
            poll_ms: args.poll_ms,
        },
        upgrade_to_initial_time_ratio: ratio(upgrade.complete_secs, initial.complete_secs),
        upgrade_to_initial_rate_ratio: ratio(upgrade.instances_per_sec, initial.instances_per_sec),
        initial_rollout: initial,
        rolling_upgrade: upgrade,
    };
    println!("\n{}", table(&report));
    let (stamped, latest) = results::write(&args.out, "rollout", started, &report)?;
    println!("results: {} (and {})", stamped.display(), latest.display());
    Ok(())
}

/// The printed table: each figure of the upgrade beside the initial rollout.
fn table(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let p = &report.parameters;
    let _ = writeln!(
        out,
        "rollout: {} apps x {} instances on {} hollow nodes, upgradeStrategy {}/{}",
        p.apps, p.instances_per_app, p.nodes, p.minimum_health_capacity, p.maximum_over_capacity
    );
    let _ = writeln!(
        out,
        "  {:<34} {:>16} {:>16} {:>8}",
        "", "rolling upgrade", "initial rollout", "ratio"
    );
    let (u, i) = (&report.rolling_upgrade, &report.initial_rollout);
    let row = |out: &mut String, name: &str, upgrade: f64, initial: f64| {
        let ratio = if initial > 0.0 {
            upgrade / initial
        } else {
            f64::NAN
        };
        let _ = writeln!(
            out,
            "  {name:<34} {upgrade:>16.2} {initial:>16.2} {ratio:>7.2}x"
        );
    };
    row(
        &mut out,
        "seconds to complete",
        u.complete_secs,
        i.complete_secs,
    );
    row(
        &mut out,
        "instances/s (reconcile rate)",
        u.instances_per_sec,
        i.instances_per_sec,
    );
    row(&mut out, "apps converged/s", u.apps_per_sec, i.apps_per_sec);
    row(
        &mut out,
        "median app converged at (s)",
        u.app_converged_quartiles_secs[1],
        i.app_converged_quartiles_secs[1],
    );
    row(
        &mut out,
        "requests sent in (s)",
        u.requests_secs,
        i.requests_secs,
    );
    let _ = writeln!(
        out,
        "  apps converged: upgrade {}/{}, initial {}/{}",
        u.apps_converged, p.apps, i.apps_converged, p.apps
    );
    write_server_trouble(&mut out, &report.server);
    out
}
