//! `pacer-bench agent`: what node agents cost and how fast the cluster heals, each figure
//! beside a baseline measured in the same run (issue 7).
//!
//! * `replacement` — node death → replacement Running, with default settings. The real
//!   `pacer dev --no-agent` (control plane) and two real `pacer agent` processes (process
//!   runtime, attribute `pool=bench`). Baseline: the first launch of a one-instance App on
//!   that cluster (POST → Running). Then the agent running it is SIGKILLed (T0) and the
//!   benchmark polls (every 50 ms) until another instance of the App is Running on the other
//!   agent: the figure, with the instants its Node turned NotReady, the instance `Lost`, the
//!   replacement created, bound and Running. Target: ≤ 10 s. With the defaults the floor is
//!   the node lease duration (8 s, `pacer_agent::node::LEASE_DURATION_SECONDS`) plus the App's
//!   `unreachableStrategy.inactiveAfterSeconds` (0 s), which the report states.
//! * `heartbeat` — the control plane's cost of 1,000 hollow agents heartbeating (lease renewals
//!   every 2.7 s): `pacer dev --no-agent` is measured idle for a window (baseline: CPU % of its
//!   process from `/proc/<pid>/stat`, store writes/s from the revision's growth), then
//!   `pacer agent hollow --count 1000` registers, and once every lease exists the same window
//!   is measured again — CPU % and writes/s beside the idle figures (and the fleet process's
//!   own CPU %, which is the agents' side).
//!
//! A missed target is reported, not an error.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::api::dev::{self, DevServer, ServerInfo};
use crate::machine::Machine;
use crate::placement::{clock_ticks, proc_sample};
use crate::results::{self, UtcTime};

/// Timeout of every request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the replacement scenario looks at the cluster.
const POLL: Duration = Duration::from_millis(50);

/// The target for node death → replacement Running.
const REPLACEMENT_TARGET_SECS: f64 = 10.0;

/// Which scenarios to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Node death → replacement Running.
    Replacement,
    /// Heartbeat cost of hollow agents.
    Heartbeat,
}

/// Options of `pacer-bench agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The `pacer` binary to benchmark (default: `pacer` beside this executable).
    #[arg(long, env = "PACER_BIN")]
    pacer_bin: Option<PathBuf>,
    /// Scenarios to run (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "replacement,heartbeat")]
    scenarios: Vec<Scenario>,
    /// Hollow agents of the heartbeat scenario.
    #[arg(long, default_value_t = 1000)]
    hollow_agents: usize,
    /// Length of each measured window of the heartbeat scenario, in seconds.
    #[arg(long, default_value_t = 30)]
    window_secs: u64,
    /// `unreachableStrategy.inactiveAfterSeconds` of the replacement scenario's App (default:
    /// none given, so the server's default applies — the "default settings").
    #[arg(long)]
    inactive_after_seconds: Option<i64>,
    /// Give up waiting for a replacement after this many seconds.
    #[arg(long, default_value_t = 120)]
    replacement_timeout_secs: u64,
    /// Directory for the JSON results (`agent-<UTC time>.json` and `agent-latest.json`).
    #[arg(long, default_value_os_t = crate::default_results_dir())]
    out: PathBuf,
}

/// The results file.
#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    schema_version: u32,
    started_at: String,
    finished_at: String,
    machine: Machine,
    replacement: Option<Replacement>,
    heartbeat: Option<Heartbeat>,
    all_targets_met: bool,
}

/// Node death → replacement Running.
#[derive(Debug, Serialize)]
struct Replacement {
    server: ServerInfo,
    settings: String,
    /// Baseline: POST of the App → its first instance Running on the same cluster.
    first_launch_secs: f64,
    /// From the SIGKILL of the agent (T0): its Node no longer `Ready=True`.
    node_not_ready_secs: Option<f64>,
    /// From T0: the instance `Lost`.
    instance_lost_secs: Option<f64>,
    /// From T0: a replacement Instance exists.
    replacement_created_secs: Option<f64>,
    /// From T0: the replacement bound to the other node.
    replacement_bound_secs: Option<f64>,
    /// From T0: the replacement Running (the figure).
    replacement_running_secs: Option<f64>,
    /// The figure over the baseline.
    ratio_to_first_launch: Option<f64>,
    target_secs: f64,
    target_met: bool,
    /// Why the figure is what it is.
    note: String,
}

/// One measured window of a process.
#[derive(Debug, Serialize)]
struct Window {
    secs: f64,
    /// CPU of the `pacer dev` process (one core = 100 %).
    control_plane_cpu_percent: f64,
    /// Store revisions per second (each write transaction bumps it once).
    store_writes_per_sec: f64,
    /// CPU of the hollow fleet's process, when one ran.
    fleet_cpu_percent: Option<f64>,
    /// RSS of the `pacer dev` process at the end.
    control_plane_rss_bytes: u64,
}

/// Heartbeat cost of hollow agents.
#[derive(Debug, Serialize)]
struct Heartbeat {
    server: ServerInfo,
    hollow_agents: usize,
    /// Seconds from starting the fleet to every lease existing.
    registration_secs: f64,
    /// Baseline: the idle control plane.
    idle: Window,
    /// With the fleet heartbeating.
    with_agents: Window,
    /// Renewals per second the agents should make (`count / 3.33 s`).
    expected_renewals_per_sec: f64,
    /// `with_agents` CPU % minus idle CPU %, per 1,000 agents.
    cpu_percent_per_1000_agents: f64,
}

/// HTTP to the server.
struct Http {
    client: reqwest::Client,
    base_url: String,
}

impl Http {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base_url))
            .timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let bytes = response.bytes().await.context("read a reply")?;
        ensure!(
            status.is_success(),
            "{method} {path}: {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        serde_json::from_slice(&bytes).with_context(|| format!("decode the reply of {path}"))
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// The store's current revision (a list's `resourceVersion`).
    async fn revision(&self) -> Result<u64> {
        let list = self
            .get("/apis/pacer.dev/v1/namespaces/pacer-node-lease/leases?limit=1")
            .await?;
        list["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|version| version.parse().ok())
            .context("a list without resourceVersion")
    }
}

/// A `pacer agent …` child process, killed on drop.
struct AgentChild {
    child: Child,
}

impl AgentChild {
    fn start(binary: &Path, args: &[&str], server: &str, log: &Path) -> Result<Self> {
        let file =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new(binary)
            .arg("agent")
            .args(args)
            .args(["--server", server])
            .env("PACER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {} agent", binary.display()))?;
        Ok(Self { child })
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Runs the chosen scenarios and writes the results.
pub async fn run(args: AgentArgs) -> Result<()> {
    let started = UtcTime::now();
    let machine = Machine::describe();
    crate::api::install_crypto_provider();
    crate::api::raise_nofile_limit(4096)?;
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .context("build the HTTP client")?;
    let binary = dev::locate_binary(args.pacer_bin.clone())?;
    let scratch = tempfile::tempdir().context("create a scratch directory")?;
    let replacement = if args.scenarios.contains(&Scenario::Replacement) {
        Some(replacement(&client, &binary, scratch.path(), &args).await?)
    } else {
        None
    };
    let heartbeat = if args.scenarios.contains(&Scenario::Heartbeat) {
        Some(heartbeat(&client, &binary, scratch.path(), &args).await?)
    } else {
        None
    };
    let report = Report {
        benchmark: "agent",
        schema_version: 1,
        started_at: started.rfc3339(),
        finished_at: UtcTime::now().rfc3339(),
        machine,
        all_targets_met: replacement.as_ref().is_none_or(|r| r.target_met),
        replacement,
        heartbeat,
    };
    println!("\n{}", table(&report));
    let (stamped, latest) = results::write(&args.out, "agent", started, &report)?;
    println!("results: {} (and {})", stamped.display(), latest.display());
    Ok(())
}

fn ready_status(node: &Value) -> String {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|condition| condition["type"] == "Ready")
        .and_then(|condition| condition["status"].as_str())
        .unwrap_or("")
        .to_owned()
}

async fn replacement(
    client: &reqwest::Client,
    binary: &Path,
    scratch: &Path,
    args: &AgentArgs,
) -> Result<Replacement> {
    eprintln!(
        "replacement: starting {} dev and two agents",
        binary.display()
    );
    let server = DevServer::start_with_args(binary, client, &["--no-agent"]).await?;
    let http = Http {
        client: client.clone(),
        base_url: server.base_url.clone(),
    };
    let outcome = measure_replacement(&http, binary, scratch, args).await;
    let info = server.stop().await?;
    let mut replacement = outcome?;
    replacement.server = info;
    Ok(replacement)
}

async fn measure_replacement(
    http: &Http,
    binary: &Path,
    scratch: &Path,
    args: &AgentArgs,
) -> Result<Replacement> {
    let names = ["bench-agent-1", "bench-agent-2"];
    let mut agents = Vec::new();
    for name in names {
        let data = scratch.join(name);
        let data = data
            .to_str()
            .context("a non-UTF-8 scratch path")?
            .to_owned();
        agents.push(AgentChild::start(
            binary,
            &[
                "--name",
                name,
                "--attribute",
                "pool=bench",
                "--runtime",
                "process",
                "--data-dir",
                &data,
            ],
            &http.base_url,
            &scratch.join(format!("{name}.log")),
        )?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in names {
        loop {
            let node = http.get(&format!("/apis/pacer.dev/v1/nodes/{name}")).await;
            if node.is_ok_and(|node| ready_status(&node) == "True") {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "agent {name} did not become ready"
            );
            tokio::time::sleep(POLL).await;
        }
    }
    let app_path = "/apis/pacer.dev/v1/namespaces/default/apps/bench-replace";
    let instances_path = "/apis/pacer.dev/v1/namespaces/default/instances?labelSelector=pacer.dev%2Fapp%3Dbench-replace";
    let mut app = json!({
        "apiVersion": "pacer.dev/v1",
        "kind": "App",
        "metadata": {"name": "bench-replace", "namespace": "default"},
        "spec": {"cmd": "sleep 3600", "cpus": 0.1, "mem": 16, "instances": 1,
                 "constraints": [["pool", "LIKE", "bench"]]},
    });
    if let Some(inactive) = args.inactive_after_seconds {
        app["spec"]["unreachableStrategy"] =
            json!({"inactiveAfterSeconds": inactive, "expungeAfterSeconds": inactive.max(300)});
    }
    // Baseline: the first launch.
    let posted = Instant::now();
    http.send(
        reqwest::Method::POST,
        "/apis/pacer.dev/v1/namespaces/default/apps",
        Some(&app),
    )
    .await?;
    let first = loop {
        let items = http.get(instances_path).await?["items"].clone();
        if let Some(running) = items
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["status"]["phase"] == "Running")
        {
            break running.clone();
        }
        ensure!(
            posted.elapsed() < Duration::from_secs(60),
            "the first instance did not run within 60 s"
        );
        tokio::time::sleep(POLL).await;
    };
    let first_launch_secs = posted.elapsed().as_secs_f64();
    let first_name = first["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let node = first["spec"]["nodeName"].as_str().unwrap_or("").to_owned();
    let stale_pid = first["status"]["runtimeId"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let victim = names
        .iter()
        .position(|name| *name == node)
        .context("the instance runs on neither agent")?;
    eprintln!(
        "replacement: first launch in {first_launch_secs:.2}s on {node}; SIGKILL of its agent"
    );

    // Node death.
    let mut dead = agents.remove(victim);
    dead.child.start_kill().context("kill the agent")?;
    let t0 = Instant::now();
    let _ = dead.child.wait().await;
    let mut times = [None::<f64>; 5];
    let timeout = Duration::from_secs(args.replacement_timeout_secs);
    while times[4].is_none() && t0.elapsed() < timeout {
        let now = t0.elapsed().as_secs_f64();
        let node_object = http
            .get(&format!("/apis/pacer.dev/v1/nodes/{node}"))
            .await?;
        if times[0].is_none() && ready_status(&node_object) != "True" {
            times[0] = Some(now);
        }
        let items = http.get(instances_path).await?["items"].clone();
        for instance in items.as_array().into_iter().flatten() {
            let is_first = instance["metadata"]["name"] == first_name.as_str();
            if is_first && times[1].is_none() && instance["status"]["phase"] == "Lost" {
                times[1] = Some(now);
            }
            if is_first {
                continue;
            }
            times[2].get_or_insert(now);
            if instance["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
            {
                times[3].get_or_insert(now);
            }
            if instance["status"]["phase"] == "Running" {
                times[4].get_or_insert(now);
            }
        }
        tokio::time::sleep(POLL).await;
    }
    let running = times[4];
    eprintln!(
        "replacement: running after {}",
        running.map_or_else(|| "- (timed out)".to_owned(), |secs| format!("{secs:.2}s"))
    );

    // Clean up: the surviving agent stops its copy; the stale one is killed by hand.
    let _ = http.send(reqwest::Method::DELETE, app_path, None).await;
    let cleanup = Instant::now();
    while cleanup.elapsed() < Duration::from_secs(30) {
        let left = http.get(instances_path).await?["items"]
            .as_array()
            .map_or(0, Vec::len);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !stale_pid.is_empty() {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{stale_pid}")])
            .status()
            .await;
    }
    for agent in &mut agents {
        if let Some(pid) = agent.pid() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), agent.child.wait()).await;
    }
    Ok(Replacement {
        server: placeholder_server(),
        settings: match args.inactive_after_seconds {
            None => "defaults: node lease 8 s (renewed every 2.7 s), unreachableStrategy \
                     inactiveAfterSeconds 0, expungeAfterSeconds 300"
                .to_owned(),
            Some(inactive) => format!(
                "node lease 8 s (renewed every 2.7 s), unreachableStrategy \
                 inactiveAfterSeconds {inactive} (not the default)"
            ),
        },
        first_launch_secs,
        node_not_ready_secs: times[0],
        instance_lost_secs: times[1],
        replacement_created_secs: times[2],
        replacement_bound_secs: times[3],
        replacement_running_secs: running,
        ratio_to_first_launch: running.map(|secs| secs / first_launch_secs),
        target_secs: REPLACEMENT_TARGET_SECS,
        target_met: running.is_some_and(|secs| secs <= REPLACEMENT_TARGET_SECS),
        note: "the floor with the defaults is the lease duration (up to 8 s after the last \
               renewal) plus inactiveAfterSeconds (0 s) before the deployment controller \
               replaces a Lost instance"
            .to_owned(),
    })
}

/// Filled in once the server has stopped.
fn placeholder_server() -> ServerInfo {
    ServerInfo {
        mode: "",
        binary: String::new(),
        base_url: String::new(),
        data_dir: String::new(),
        log_warnings: 0,
        log_excerpt: Vec::new(),
        clean_exit: false,
    }
}

async fn heartbeat(
    client: &reqwest::Client,
    binary: &Path,
    scratch: &Path,
    args: &AgentArgs,
) -> Result<Heartbeat> {
    eprintln!("heartbeat: starting {} dev", binary.display());
    let server = DevServer::start_with_args(binary, client, &["--no-agent"]).await?;
    let http = Http {
        client: client.clone(),
        base_url: server.base_url.clone(),
    };
    let pid = server.pid().context("pacer dev has no pid")?.to_string();
    let outcome = measure_heartbeat(&http, &pid, binary, scratch, args).await;
    let info = server.stop().await?;
    let mut heartbeat = outcome?;
    heartbeat.server = info;
    Ok(heartbeat)
}

async fn window(http: &Http, pid: &str, fleet: Option<&str>, secs: u64) -> Result<Window> {
    let ticks = clock_ticks();
    let before = proc_sample(pid, ticks)?;
    let fleet_before = fleet.map(|pid| proc_sample(pid, ticks)).transpose()?;
    let revision_before = http.revision().await?;
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let after = proc_sample(pid, ticks)?;
    let fleet_after = fleet.map(|pid| proc_sample(pid, ticks)).transpose()?;
    let revision_after = http.revision().await?;
    let elapsed = began.elapsed().as_secs_f64();
    Ok(Window {
        secs: elapsed,
        control_plane_cpu_percent: (after.cpu_secs - before.cpu_secs) / elapsed * 100.0,
        store_writes_per_sec: revision_after.saturating_sub(revision_before) as f64 / elapsed,
        fleet_cpu_percent: fleet_before
            .zip(fleet_after)
            .map(|(before, after)| (after.cpu_secs - before.cpu_secs) / elapsed * 100.0),
        control_plane_rss_bytes: after.rss_bytes,
    })
}

async fn measure_heartbeat(
    http: &Http,
    pid: &str,
    binary: &Path,
    scratch: &Path,
    args: &AgentArgs,
) -> Result<Heartbeat> {
    // Let the controllers settle (elections, first rounds) before the idle window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    eprintln!("heartbeat: idle window of {}s", args.window_secs);
    let idle = window(http, pid, None, args.window_secs).await?;
    let count = args.hollow_agents.to_string();
    eprintln!("heartbeat: starting {count} hollow agents");
    let fleet = AgentChild::start(
        binary,
        &["hollow", "--count", &count, "--name-prefix", "hb-"],
        &http.base_url,
        &scratch.join("hollow.log"),
    )?;
    let fleet_pid = fleet.pid().context("the fleet has no pid")?.to_string();
    let began = Instant::now();
    loop {
        let leases = http
            .get("/apis/pacer.dev/v1/namespaces/pacer-node-lease/leases")
            .await?;
        let held = leases["items"].as_array().map_or(0, Vec::len);
        if held >= args.hollow_agents {
            break;
        }
        if began.elapsed() > Duration::from_secs(180) {
            bail!("only {held} of {count} leases after 180 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let registration_secs = began.elapsed().as_secs_f64();
    eprintln!(
        "heartbeat: {count} leases in {registration_secs:.1}s; settling 5s, then a window of {}s",
        args.window_secs
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let with_agents = window(http, pid, Some(&fleet_pid), args.window_secs).await?;
    drop(fleet);
    let per_1000 = (with_agents.control_plane_cpu_percent - idle.control_plane_cpu_percent)
        * 1000.0
        / args.hollow_agents.max(1) as f64;
    Ok(Heartbeat {
        server: placeholder_server(),
        hollow_agents: args.hollow_agents,
        registration_secs,
        idle,
        with_agents,
        expected_renewals_per_sec: args.hollow_agents as f64 * 3.0 / 8.0,
        cpu_percent_per_1000_agents: per_1000,
    })
}

fn table(report: &Report) -> String {
    let mut out = String::new();
    let secs = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} s"));
    if let Some(r) = &report.replacement {
        out.push_str(&format!(
            "node death → replacement Running ({})\n",
            r.settings
        ));
        out.push_str(&format!(
            "  baseline: first launch (POST → Running)   {:.2} s\n",
            r.first_launch_secs
        ));
        out.push_str(&format!(
            "  node NotReady                             {}\n",
            secs(r.node_not_ready_secs)
        ));
        out.push_str(&format!(
            "  instance Lost                             {}\n",
            secs(r.instance_lost_secs)
        ));
        out.push_str(&format!(
            "  replacement created                       {}\n",
            secs(r.replacement_created_secs)
        ));
        out.push_str(&format!(
            "  replacement bound                         {}\n",
            secs(r.replacement_bound_secs)
        ));
        out.push_str(&format!(
            "  replacement Running                       {}  ({} × first launch; target ≤ {} s: {})\n",
            secs(r.replacement_running_secs),
            r.ratio_to_first_launch
                .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.1}")),
            r.target_secs,
            if r.target_met { "met" } else { "MISSED" }
        ));
        out.push_str(&format!("  note: {}\n", r.note));
    }
    if let Some(h) = &report.heartbeat {
        out.push_str(&format!(
            "heartbeat cost of {} hollow agents (registered in {:.1} s)\n",
            h.hollow_agents, h.registration_secs
        ));
        out.push_str(&format!(
            "  control plane CPU    {:7.1} %   (idle baseline {:5.1} %; +{:.1} % per 1,000 agents)\n",
            h.with_agents.control_plane_cpu_percent,
            h.idle.control_plane_cpu_percent,
            h.cpu_percent_per_1000_agents
        ));
        out.push_str(&format!(
            "  store writes/s       {:7.1}     (idle baseline {:5.1}; expected renewals {:.0}/s)\n",
            h.with_agents.store_writes_per_sec,
            h.idle.store_writes_per_sec,
            h.expected_renewals_per_sec
        ));
        out.push_str(&format!(
            "  fleet process CPU    {:7.1} %\n",
            h.with_agents.fleet_cpu_percent.unwrap_or(f64::NAN)
        ));
    }
    out
}
