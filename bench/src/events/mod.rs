//! `pacer-bench events`: Server-Sent Events fan-out of Marathon's `/v2/events` during a
//! deployment, beside one subscriber in the same run.
//!
//! The system under test is the real `pacer dev --no-agent` with `pacer agent hollow --count N`.
//! In-bench subscribers hold plain HTTP streams on `/v2/events` (reqwest, `data:` lines parsed
//! by hand) while one App of `--instances` instances is deployed through `/v2/apps`:
//!
//! 1. **Baseline**: 1 subscriber during the deployment of an App of `--instances`.
//! 2. **Fan-out**: `--subscribers` (100) subscribers during the deployment of a second App of
//!    the same size, on the same server and fleet.
//!
//! Figures per phase: events received per subscriber (min/max), subscribers disconnected
//! before the end, and the event delay (receive time − the event's `timestamp`) p50/p99/max
//! over every event every subscriber received. Both clocks are this machine's; `timestamp` has
//! millisecond precision.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::dev;
use crate::machine::Machine;
use crate::results::{self, UtcTime};
use crate::rollout::start_hollow_agents;

/// Timeout of every plain request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `pacer-bench events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// The `pacer` binary to benchmark (default: `pacer` beside this executable).
    #[arg(long, env = "PACER_BIN")]
    pacer_bin: Option<PathBuf>,
    /// Hollow agents (nodes) in the `pacer agent hollow` process.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Instances of the deployed App (one per phase).
    #[arg(long, default_value_t = 1000)]
    instances: usize,
    /// SSE subscribers of the fan-out phase.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Give up on a deployment after this long.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Where the JSON results go.
    #[arg(long, default_value_os_t = crate::default_results_dir())]
    out: PathBuf,
}

/// One phase: some subscribers during one deployment.
#[derive(Debug, Serialize)]
pub struct Phase {
    /// Subscribers connected.
    pub subscribers: usize,
    /// Seconds from the POST until the App ran every instance with no deployment left.
    pub deployment_secs: f64,
    /// Events received by the subscriber that got the fewest.
    pub events_min_per_subscriber: usize,
    /// Events received by the subscriber that got the most.
    pub events_max_per_subscriber: usize,
    /// Events received by all subscribers together.
    pub events_total: usize,
    /// Subscribers whose stream ended or failed before the phase ended.
    pub disconnected: usize,
    /// Event delay, milliseconds: median.
    pub delay_p50_ms: f64,
    /// Event delay, milliseconds: 99th percentile.
    pub delay_p99_ms: f64,
    /// Event delay, milliseconds: the largest.
    pub delay_max_ms: f64,
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
    baseline: Phase,
    fan_out: Phase,
    /// Fan-out p99 delay ÷ baseline p99 delay.
    p99_delay_ratio: f64,
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Seen {
    delays_ms: Vec<f64>,
    disconnected: bool,
}

/// Delay of one `data:` line's event, in milliseconds, or `None` without a `timestamp`.
fn delay_ms(data: &str, received: jiff::Timestamp) -> Option<f64> {
    let event: Value = serde_json::from_str(data).ok()?;
    let sent: jiff::Timestamp = event["timestamp"].as_str()?.parse().ok()?;
    Some(received.duration_since(sent).as_secs_f64() * 1000.0)
}

/// Follows `/v2/events` until `stop`, recording each event's delay.
async fn subscribe(
    client: reqwest::Client,
    url: String,
    connected: tokio::sync::mpsc::Sender<()>,
    stop: CancellationToken,
) -> Seen {
    let mut seen = Seen::default();
    let response = match client
        .get(&url)
        .header("Accept", "text/event-stream")
        .send()
        .await
    {
        Ok(response) if response.status().is_success() => response,
        _ => {
            seen.disconnected = true;
            let _ = connected.send(()).await;
            return seen;
        }
    };
    let _ = connected.send(()).await;
    let mut body = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = tokio::select! {
            () = stop.cancelled() => return seen,
            chunk = body.next() => chunk,
        };
        let Some(Ok(chunk)) = chunk else {
            seen.disconnected = !stop.is_cancelled();
            return seen;
        };
        let received = jiff::Timestamp::now();
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(data) = line.trim_end().strip_prefix("data:")
                && let Some(delay) = delay_ms(data.trim_start(), received)
            {
                seen.delays_ms.push(delay);
            }
        }
    }
}

/// Whether the Marathon App is fully deployed with `instances` running.
async fn deployed(client: &reqwest::Client, base_url: &str, id: &str, instances: usize) -> bool {
    let Ok(response) = client
        .get(format!("{base_url}/v2/apps/{id}"))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
    else {
        return false;
    };
    let Ok(app) = response.json::<Value>().await else {
        return false;
    };
    app["app"]["tasksRunning"].as_u64() == Some(instances as u64)
        && app["app"]["deployments"]
            .as_array()
            .is_some_and(Vec::is_empty)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// Runs one phase: `subscribers` streams during the deployment of App `id`.
async fn phase(
    client: &reqwest::Client,
    base_url: &str,
    args: &EventsArgs,
    subscribers: usize,
    id: &str,
) -> Result<Phase> {
    let stop = CancellationToken::new();
    let (connected_tx, mut connected) = tokio::sync::mpsc::channel(subscribers.max(1));
    let mut streams = JoinSet::new();
    for _ in 0..subscribers {
        streams.spawn(subscribe(
            client.clone(),
            format!("{base_url}/v2/events"),
            connected_tx.clone(),
            stop.clone(),
        ));
    }
    for _ in 0..subscribers {
        connected.recv().await.context("a subscriber went away")?;
    }
    eprint!("{subscribers} subscriber(s) connected; deploying {id} ");
    let t0 = Instant::now();
    let response = client
        .post(format!("{base_url}/v2/apps"))
        .timeout(REQUEST_TIMEOUT)
        .json(&json!({
            "id": id, "cmd": "sleep 3600", "instances": args.instances,
            "cpus": 0.01, "mem": 8,
        }))
        .send()
        .await
        .context("POST /v2/apps")?;
    ensure!(
        response.status().is_success(),
        "POST /v2/apps: {}",
        response.status()
    );
    let deadline = t0 + Duration::from_secs(args.timeout_secs);
    loop {
        if deployed(client, base_url, id, args.instances).await {
            break;
        }
        if Instant::now() >= deadline {
            stop.cancel();
            bail!("{id} not deployed within {}s", args.timeout_secs);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deployment = t0.elapsed();
    // Let the last events arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let mut seen = Vec::new();
    while let Some(result) = streams.join_next().await {
        seen.push(result.context("a subscriber panicked")?);
    }
    eprintln!("in {:.2}s", deployment.as_secs_f64());
    let counts: Vec<usize> = seen.iter().map(|seen| seen.delays_ms.len()).collect();
    let mut delays: Vec<f64> = seen
        .iter()
        .flat_map(|seen| seen.delays_ms.iter().copied())
        .collect();
    delays.sort_by(f64::total_cmp);
    Ok(Phase {
        subscribers,
        deployment_secs: deployment.as_secs_f64(),
        events_min_per_subscriber: counts.iter().copied().min().unwrap_or(0),
        events_max_per_subscriber: counts.iter().copied().max().unwrap_or(0),
        events_total: delays.len(),
        disconnected: seen.iter().filter(|seen| seen.disconnected).count(),
        delay_p50_ms: quantile(&delays, 0.5),
        delay_p99_ms: quantile(&delays, 0.99),
        delay_max_ms: delays.last().copied().unwrap_or(f64::NAN),
    })
}

/// Waits until `nodes` Nodes are registered.
async fn wait_nodes(client: &reqwest::Client, base_url: &str, nodes: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list: Value = client
            .get(format!("{base_url}/apis/pacer.dev/v1/nodes"))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .context("list the Nodes")?
            .json()
            .await
            .context("decode the Nodes")?;
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

/// Runs the events benchmark, prints the table and writes the results.
pub async fn run(args: EventsArgs) -> Result<()> {
    ensure!(args.nodes >= 1, "--nodes must be at least 1");
    ensure!(args.subscribers >= 1, "--subscribers must be at least 1");
    let started = UtcTime::now();
    let machine = Machine::describe();
    let (client, binary, server) =
        dev::start_control_plane(args.pacer_bin.clone(), args.subscribers as u64).await?;
    let base_url = server.base_url.clone();
    let scratch = tempfile::tempdir().context("create a directory for the agents' log")?;
    let outcome = async {
        let mut agents = start_hollow_agents(
            &binary,
            &base_url,
            args.nodes,
            &scratch.path().join("hollow.log"),
        )?;
        eprintln!("waiting for {} hollow nodes", args.nodes);
        wait_nodes(&client, &base_url, args.nodes).await?;
        let baseline = phase(&client, &base_url, &args, 1, "/bench/sse-baseline").await?;
        let fan_out = phase(
            &client,
            &base_url,
            &args,
            args.subscribers,
            "/bench/sse-fan-out",
        )
        .await?;
        let _ = agents.start_kill();
        let _ = agents.wait().await;
        Ok::<_, anyhow::Error>((baseline, fan_out))
    }
    .await;
    let server_info = server.stop().await?;
    let (baseline, fan_out) = outcome?;
    let report = Report {
        benchmark: "events",
        schema_version: 1,
        started_at: started.rfc3339(),
        finished_at: UtcTime::now().rfc3339(),
        machine,
        server: server_info,
        baseline_description: "1 subscriber on /v2/events during the deployment of an App of \
                               as many instances, on the same pacer dev and hollow fleet, \
                               just before the fan-out",
        nodes: args.nodes,
        instances: args.instances,
        p99_delay_ratio: fan_out.delay_p99_ms / baseline.delay_p99_ms,
        baseline,
        fan_out,
    };
    println!("\n{}", table(&report));
    let (stamped, latest) = results::write(&args.out, "events", started, &report)?;
    println!("results: {} (and {})", stamped.display(), latest.display());
    Ok(())
}

/// The printed table: the fan-out beside the baseline.
fn table(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "events: SSE /v2/events during a {}-instance deployment on {} hollow nodes\n\
         {:<34} {:>14} {:>14}\n",
        report.instances, report.nodes, "", "baseline", "fan-out"
    );
    let (a, b) = (&report.baseline, &report.fan_out);
    let rows: [(&str, String, String); 8] = [
        (
            "subscribers",
            a.subscribers.to_string(),
            b.subscribers.to_string(),
        ),
        (
            "deployment s",
            format!("{:.2}", a.deployment_secs),
            format!("{:.2}", b.deployment_secs),
        ),
        (
            "events/subscriber min",
            a.events_min_per_subscriber.to_string(),
            b.events_min_per_subscriber.to_string(),
        ),
        (
            "events/subscriber max",
            a.events_max_per_subscriber.to_string(),
            b.events_max_per_subscriber.to_string(),
        ),
        (
            "disconnected",
            a.disconnected.to_string(),
            b.disconnected.to_string(),
        ),
        (
            "delay p50 ms",
            format!("{:.1}", a.delay_p50_ms),
            format!("{:.1}", b.delay_p50_ms),
        ),
        (
            "delay p99 ms",
            format!("{:.1}", a.delay_p99_ms),
            format!("{:.1}", b.delay_p99_ms),
        ),
        (
            "delay max ms",
            format!("{:.1}", a.delay_max_ms),
            format!("{:.1}", b.delay_max_ms),
        ),
    ];
    for (name, baseline, fan_out) in rows {
        let _ = writeln!(out, "{name:<34} {baseline:>14} {fan_out:>14}");
    }
    let _ = writeln!(
        out,
        "p99 delay fan-out ÷ baseline: {:.2}",
        report.p99_delay_ratio
    );
    out
}
