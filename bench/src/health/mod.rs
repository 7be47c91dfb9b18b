//! `pacer-bench health`: health checking of 10,000 instances at a 10 s interval on hollow
//! agents that really probe, beside the idle control plane measured in the same run.
//!
//! The system under test is the real `pacer dev --no-agent` with `pacer agent hollow --count N
//! --probe-target ADDR`: the fleet runs the agent's real prober (`agent/src/health/`) for every
//! hollow instance's HTTP health check, aimed at a tiny HTTP server in this process, which
//! counts the requests it receives — each one is one check.
//!
//! 1. **Baseline — the idle control plane**: the fleet registered, no Apps; a window of
//!    `--window-secs` of `pacer dev`'s CPU and store revisions.
//! 2. **Health checking**: `--apps` Apps of `--instances-per-app` instances, each with one HTTP
//!    health check every `--interval-secs`, all running and healthy; after a settling interval,
//!    the same window: checks/s received by the target (expected: instances ÷ interval),
//!    `pacer dev`'s CPU and store writes/s (status writes happen only when a result changes, so
//!    the control plane should stay near idle) and the fleet's CPU.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::api::dev;
use crate::machine::Machine;
use crate::placement::{clock_ticks, proc_sample};
use crate::results::{self, UtcTime};

/// Timeout of every request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `pacer-bench health`.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The `pacer` binary to benchmark (default: `pacer` beside this executable).
    #[arg(long, env = "PACER_BIN")]
    pacer_bin: Option<PathBuf>,
    /// Hollow agents (nodes).
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Apps.
    #[arg(long, default_value_t = 10)]
    apps: usize,
    /// Instances per App.
    #[arg(long, default_value_t = 1000)]
    instances_per_app: usize,
    /// `intervalSeconds` of every health check.
    #[arg(long, default_value_t = 10)]
    interval_secs: u64,
    /// Length of each measured window.
    #[arg(long, default_value_t = 30)]
    window_secs: u64,
    /// Give up on the deployment after this long.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Where the JSON results go.
    #[arg(long, default_value_os_t = crate::default_results_dir())]
    out: PathBuf,
}

/// One measured window.
#[derive(Debug, Serialize)]
pub struct Window {
    /// Its length.
    pub secs: f64,
    /// Requests the probe target received per second (= health checks per second).
    pub checks_per_sec: f64,
    /// CPU of `pacer dev` (one core = 100 %).
    pub control_plane_cpu_percent: f64,
    /// Store revisions per second (each write transaction bumps it once).
    pub store_writes_per_sec: f64,
    /// CPU of the hollow fleet's process.
    pub fleet_cpu_percent: f64,
    /// RSS of `pacer dev` at the end.
    pub control_plane_rss_bytes: u64,
    /// RSS of the fleet at the end.
    pub fleet_rss_bytes: u64,
}

/// The JSON results.
#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    schema_version: u32,
    started_at: String,
    finished_at: String,
    machine: Machine,
    server: dev::ServerInfo,
    baseline_description: &'static str,
    nodes: usize,
    instances: usize,
    interval_secs: u64,
    /// Seconds from the first POST to every instance running and healthy.
    deployment_secs: f64,
    /// `instances ÷ interval`.
    expected_checks_per_sec: f64,
    idle: Window,
    checking: Window,
    /// Checking CPU % − idle CPU % of the control plane.
    control_plane_cpu_percent_added: f64,
}

/// Counts HTTP requests and answers each `200 OK` (keep-alive); returns its address.
async fn start_probe_target(requests: Arc<AtomicU64>) -> Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind the probe target")?;
    let address = listener.local_addr().context("probe target address")?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let requests = Arc::clone(&requests);
            tokio::spawn(async move {
                let mut buffer = vec![0_u8; 8192];
                let mut pending: Vec<u8> = Vec::new();
                loop {
                    let Ok(read) = stream.read(&mut buffer).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buffer[..read]);
                    // Requests are GETs without bodies: each head ends with an empty line.
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        requests.fetch_add(1, Ordering::Relaxed);
                        if stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(address)
}

/// GET `path` as JSON.
async fn get(client: &reqwest::Client, base_url: &str, path: &str) -> Result<Value> {
    let response = client
        .get(format!("{base_url}{path}"))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("GET {path}"))?;
    ensure!(
        response.status().is_success(),
        "GET {path}: {}",
        response.status()
    );
    response
        .json()
        .await
        .with_context(|| format!("decode GET {path}"))
}

/// The store's current revision.
async fn revision(client: &reqwest::Client, base_url: &str) -> Result<u64> {
    let list = get(client, base_url, "/apis/pacer.dev/v1/nodes?limit=1").await?;
    list["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .context("the Node list has no resourceVersion")
}

/// Measures one window.
async fn window(
    client: &reqwest::Client,
    base_url: &str,
    pids: (&str, &str),
    requests: &AtomicU64,
    secs: u64,
) -> Result<Window> {
    let (server, fleet) = pids;
    let ticks = clock_ticks();
    let server_before = proc_sample(server, ticks)?;
    let fleet_before = proc_sample(fleet, ticks)?;
    let revision_before = revision(client, base_url).await?;
    let requests_before = requests.load(Ordering::Relaxed);
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let requests_after = requests.load(Ordering::Relaxed);
    let server_after = proc_sample(server, ticks)?;
    let fleet_after = proc_sample(fleet, ticks)?;
    let revision_after = revision(client, base_url).await?;
    let elapsed = began.elapsed().as_secs_f64();
    Ok(Window {
        secs: elapsed,
        checks_per_sec: requests_after.saturating_sub(requests_before) as f64 / elapsed,
        control_plane_cpu_percent: (server_after.cpu_secs - server_before.cpu_secs) / elapsed
            * 100.0,
        store_writes_per_sec: revision_after.saturating_sub(revision_before) as f64 / elapsed,
        fleet_cpu_percent: (fleet_after.cpu_secs - fleet_before.cpu_secs) / elapsed * 100.0,
        control_plane_rss_bytes: server_after.rss_bytes,
        fleet_rss_bytes: fleet_after.rss_bytes,
    })
}

/// Starts `pacer agent hollow --count N --probe-target ADDR`.
fn start_fleet(
    binary: &Path,
    base_url: &str,
    nodes: usize,
    target: std::net::SocketAddr,
    log: &Path,
) -> Result<tokio::process::Child> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    tokio::process::Command::new(binary)
        .args(["agent", "hollow", "--server", base_url, "--count"])
        .arg(nodes.to_string())
        .args(["--name-prefix", "bench-probe-", "--probe-target"])
        .arg(target.to_string())
        .env("PACER_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .context("start pacer agent hollow --probe-target")
}

/// Running and healthy instances over every bench App.
async fn running_healthy(client: &reqwest::Client, base_url: &str) -> Result<(u64, u64)> {
    let apps = get(client, base_url, "/v2/apps").await?;
    Ok(apps["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|app| {
            app["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("/bench-health/"))
        })
        .fold((0, 0), |(running, healthy), app| {
            (
                running + app["tasksRunning"].as_u64().unwrap_or(0),
                healthy + app["tasksHealthy"].as_u64().unwrap_or(0),
            )
        }))
}

/// Runs the health benchmark, prints the table and writes the results.
pub async fn run(args: HealthArgs) -> Result<()> {
    ensure!(args.nodes >= 1, "--nodes must be at least 1");
    ensure!(args.apps >= 1, "--apps must be at least 1");
    ensure!(
        args.interval_secs >= 1,
        "--interval-secs must be at least 1"
    );
    let started = UtcTime::now();
    let machine = Machine::describe();
    let (client, binary, server) = dev::start_control_plane(args.pacer_bin.clone(), 0).await?;
    let requests = Arc::new(AtomicU64::new(0));
    let target = start_probe_target(Arc::clone(&requests)).await?;
    let base_url = server.base_url.clone();
    let server_pid = server.pid().context("pacer dev has no pid")?.to_string();
    let scratch = tempfile::tempdir().context("create a directory for the fleet's log")?;
    let instances = args.apps * args.instances_per_app;
    let outcome = async {
        let mut fleet = start_fleet(
            &binary,
            &base_url,
            args.nodes,
            target,
            &scratch.path().join("hollow.log"),
        )?;
        let fleet_pid = fleet.id().context("the fleet has no pid")?.to_string();
        let began = Instant::now();
        loop {
            let nodes = get(&client, &base_url, "/apis/pacer.dev/v1/nodes").await?;
            if nodes["items"].as_array().map_or(0, Vec::len) >= args.nodes {
                break;
            }
            if began.elapsed() > Duration::from_secs(60) {
                bail!(
                    "the {} hollow nodes did not register within 60s",
                    args.nodes
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Let the controllers settle (elections, first rounds) before the idle window.
        tokio::time::sleep(Duration::from_secs(5)).await;
        eprintln!("idle window of {}s", args.window_secs);
        let pids = (server_pid.as_str(), fleet_pid.as_str());
        let idle = window(&client, &base_url, pids, &requests, args.window_secs).await?;
        eprint!(
            "deploying {} x {} instances ",
            args.apps, args.instances_per_app
        );
        let t0 = Instant::now();
        for index in 0..args.apps {
            let response = client
                .post(format!("{base_url}/v2/apps"))
                .timeout(REQUEST_TIMEOUT)
                .json(&json!({
                    "id": format!("/bench-health/app-{index:03}"),
                    "cmd": "sleep 3600",
                    "instances": args.instances_per_app,
                    "cpus": 0.01,
                    "mem": 8,
                    "portDefinitions": [{"port": 0}],
                    "healthChecks": [{
                        "protocol": "HTTP", "path": "/health", "portIndex": 0,
                        "intervalSeconds": args.interval_secs, "timeoutSeconds": 5,
                        "gracePeriodSeconds": 300, "maxConsecutiveFailures": 3,
                    }],
                }))
                .send()
                .await
                .context("POST /v2/apps")?;
            ensure!(
                response.status().is_success(),
                "POST /v2/apps: {}",
                response.status()
            );
        }
        loop {
            let (running, healthy) = running_healthy(&client, &base_url).await?;
            if running >= instances as u64 && healthy >= instances as u64 {
                break;
            }
            if t0.elapsed() > Duration::from_secs(args.timeout_secs) {
                bail!(
                    "{running} running, {healthy} healthy of {instances} after {}s",
                    args.timeout_secs
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let deployment_secs = t0.elapsed().as_secs_f64();
        eprintln!("in {deployment_secs:.1}s; settling one interval");
        // Every instance's probe loop has started and spread out over the interval.
        tokio::time::sleep(Duration::from_secs(args.interval_secs + 2)).await;
        eprintln!("checking window of {}s", args.window_secs);
        let checking = window(&client, &base_url, pids, &requests, args.window_secs).await?;
        let _ = fleet.start_kill();
        let _ = fleet.wait().await;
        Ok::<_, anyhow::Error>((deployment_secs, idle, checking))
    }
    .await;
    let server_info = server.stop().await?;
    let (deployment_secs, idle, checking) = outcome?;
    let report = Report {
        benchmark: "health",
        schema_version: 1,
        started_at: started.rfc3339(),
        finished_at: UtcTime::now().rfc3339(),
        machine,
        server: server_info,
        baseline_description: "the idle control plane: the same pacer dev and probing hollow \
                               fleet, registered, before any App",
        nodes: args.nodes,
        instances,
        interval_secs: args.interval_secs,
        deployment_secs,
        expected_checks_per_sec: instances as f64 / args.interval_secs as f64,
        control_plane_cpu_percent_added: checking.control_plane_cpu_percent
            - idle.control_plane_cpu_percent,
        idle,
        checking,
    };
    println!("\n{}", table(&report));
    let (stamped, latest) = results::write(&args.out, "health", started, &report)?;
    println!("results: {} (and {})", stamped.display(), latest.display());
    Ok(())
}

/// The printed table: checking beside the idle control plane.
fn table(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "health: {} instances, HTTP check every {}s, {} hollow nodes really probing \
         (deployed and healthy in {:.1}s)\n{:<30} {:>12} {:>12}\n",
        report.instances,
        report.interval_secs,
        report.nodes,
        report.deployment_secs,
        "",
        "idle",
        "checking"
    );
    let (a, b) = (&report.idle, &report.checking);
    let mib = |bytes: u64| bytes as f64 / 1_048_576.0;
    let rows = [
        ("checks/s", a.checks_per_sec, b.checks_per_sec),
        (
            "control plane CPU %",
            a.control_plane_cpu_percent,
            b.control_plane_cpu_percent,
        ),
        (
            "store writes/s",
            a.store_writes_per_sec,
            b.store_writes_per_sec,
        ),
        ("fleet CPU %", a.fleet_cpu_percent, b.fleet_cpu_percent),
        (
            "control plane RSS MiB",
            mib(a.control_plane_rss_bytes),
            mib(b.control_plane_rss_bytes),
        ),
        (
            "fleet RSS MiB",
            mib(a.fleet_rss_bytes),
            mib(b.fleet_rss_bytes),
        ),
    ];
    for (name, idle, checking) in rows {
        let _ = writeln!(out, "{name:<30} {idle:>12.1} {checking:>12.1}");
    }
    let _ = writeln!(
        out,
        "expected checks/s (instances ÷ interval): {:.1}",
        report.expected_checks_per_sec
    );
    out
}
