//! `pacer-bench marathon`: Marathon's own scale scenarios through `/v2` on hollow agents — N
//! apps × 1 instance and 1 app × N instances for N = 50, 100, 200, 500 — with the figures
//! Marathon's performance suite recorded (per-app and overall deployment time, failed
//! deployments, `/v2/groups` latency, control-plane CPU and memory), each beside the same
//! instances created through the kube-style `/apis` path in the same run.
//!
//! Every run gets a fresh `pacer dev --no-agent` (release build; API server, embedded store and
//! controllers in one process) and a fresh `pacer agent hollow --count NODES` (hollow agents
//! report instances `Running` at once, so deployments are paced by the control plane alone):
//! nothing left over from an earlier run, and the process's peak RSS (`VmHWM`) is the run's.
//!
//! A run POSTs the apps (`--concurrency` at a time; the N-apps shape POSTs each app on its
//! own, as Marathon's suite did, not one `POST /v2/groups`) and meanwhile reads progress every
//! `--poll-ms` with `GET /v2/apps` and `GET /v2/deployments`. An app is deployed when no
//! deployment in `/v2/deployments` affects it, its `deployments` is empty and `tasksRunning`
//! equals its instances; its deployment time runs from its POST being sent to the first poll
//! that saw it deployed (a later poll that does not see it so resets it). The overall time runs
//! from the first POST to the last app deployed. Failed deployments: failed POSTs, apps not
//! deployed within `--timeout-secs`, and Deployment objects that ended `Failed`/`Cancelled`.
//! CPU (utime + stime) and RSS of `pacer dev` come from `/proc/<pid>/stat` and `status`, from
//! just before the first POST to all deployed. Then, with the N apps present, `--reads` rounds
//! of `GET /v2/groups`, `GET /v2/apps` and the `/apis` App list, one after another.
//!
//! The baseline run is the same, with the same apps POSTed as `pacer.dev/v1` Apps to
//! `/apis/pacer.dev/v1/namespaces/default/apps` and progress read the same way (the objects
//! are the same, so `/v2` shows them): only the write path differs. A `/v2` POST answers
//! Marathon's `deployments` and therefore waits for the deployment controller to start the
//! deployment; an `/apis` POST returns once stored. For reads, `/v2/groups` is set beside the
//! `/apis` list of the same Apps on the same server. A benchmark, not a test: no targets.

mod report;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures::StreamExt as _;
use serde_json::{Value, json};

use self::report::{Parameters, Ratios, Report, Run, Scenario, Usage, ratio};
use crate::api::dev;
use crate::load::{LatencyMs, latency_histogram, per_sec, record};
use crate::machine::Machine;
use crate::placement::{clock_ticks, proc_sample};
use crate::results::{self, UtcTime};

/// Namespace of the Apps (top-level Marathon ids live there).
const NAMESPACE: &str = "default";

/// Timeout of every request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The shapes of Marathon's scale suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// N apps of 1 instance each.
    Apps,
    /// 1 app of N instances.
    Instances,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Apps => "n_apps_x_1_instance",
            Shape::Instances => "1_app_x_n_instances",
        }
    }

    /// (apps, instances per app) for N.
    fn counts(self, n: usize) -> (usize, usize) {
        match self {
            Shape::Apps => (n, 1),
            Shape::Instances => (1, n),
        }
    }
}

/// Which door the apps go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WritePath {
    /// Marathon's `POST /v2/apps`.
    V2,
    /// `POST /apis/pacer.dev/v1/namespaces/default/apps`.
    Apis,
}

impl WritePath {
    fn name(self) -> &'static str {
        match self {
            WritePath::V2 => "v2",
            WritePath::Apis => "apis",
        }
    }
}

/// Options of `pacer-bench marathon`.
#[derive(Debug, clap::Args)]
pub struct MarathonArgs {
    /// The `pacer` binary to benchmark (default: `pacer` beside this executable).
    #[arg(long, env = "PACER_BIN")]
    pacer_bin: Option<PathBuf>,
    /// The N of each scenario, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200,500")]
    sizes: Vec<usize>,
    /// The shapes, comma-separated: `apps` (N apps × 1 instance), `instances` (1 app × N).
    #[arg(long, value_delimiter = ',', default_value = "apps,instances")]
    shapes: Vec<Shape>,
    /// Hollow agents (nodes) in each run's `pacer agent hollow` process.
    #[arg(long, default_value_t = 50)]
    nodes: usize,
    /// Concurrent POSTs.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How often progress is read while waiting, in milliseconds (the resolution of the
    /// deployment times).
    #[arg(long, default_value_t = 100)]
    poll_ms: u64,
    /// GETs of each read endpoint (`/v2/groups`, `/v2/apps`, the `/apis` list) per run.
    #[arg(long, default_value_t = 100)]
    reads: usize,
    /// Give up on a run's deployments after this many seconds.
    #[arg(long, default_value_t = 180)]
    timeout_secs: u64,
    /// Directory for the JSON results (`marathon-<UTC time>.json`, `marathon-latest.json`).
    #[arg(long, default_value_os_t = crate::default_results_dir())]
    out: PathBuf,
}

/// HTTP against one `pacer dev`.
struct Http {
    client: reqwest::Client,
    base_url: String,
}

impl Http {
    fn apis_apps(&self) -> String {
        format!(
            "{}/apis/pacer.dev/v1/namespaces/{NAMESPACE}/apps",
            self.base_url
        )
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends `request`; the reply's JSON on success.
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

    /// A GET whose body is read in full and dropped; its latency.
    async fn timed_get(&self, url: &str) -> Result<Duration> {
        let began = Instant::now();
        let response = self
            .client
            .get(url)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.bytes().await.context("read a GET reply")?;
        let took = began.elapsed();
        ensure!(status.is_success(), "GET {url}: {status}");
        ensure!(!body.is_empty(), "GET {url}: empty reply");
        Ok(took)
    }
}

/// The name of app `index` (the Marathon id is `/<name>`).
fn app_name(index: usize) -> String {
    format!("mscale-{index:03}")
}

/// The app's index from its name or Marathon id.
fn app_index(id: &str) -> Option<usize> {
    id.trim_start_matches('/')
        .strip_prefix("mscale-")?
        .parse()
        .ok()
}

/// The request creating app `index` through `path`.
fn create_request(
    http: &Http,
    path: WritePath,
    index: usize,
    instances: usize,
) -> reqwest::RequestBuilder {
    let name = app_name(index);
    match path {
        WritePath::V2 => http.client.post(http.url("/v2/apps")).json(&json!({
            "id": format!("/{name}"),
            "cmd": "sleep 3600",
            "instances": instances,
            "cpus": 0.01,
            "mem": 8,
        })),
        WritePath::Apis => http.client.post(http.apis_apps()).json(&json!({
            "apiVersion": "pacer.dev/v1",
            "kind": "App",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"cmd": "sleep 3600", "instances": instances, "cpus": 0.01, "mem": 8},
        })),
    }
}

/// One app's POST as it went.
#[derive(Debug, Clone, Default)]
enum Post {
    /// Not sent yet.
    #[default]
    Pending,
    /// Sent at this instant, no answer yet.
    Sent(Instant),
    /// Answered with success.
    Answered { sent: Instant, latency: Duration },
    /// Failed.
    Failed(String),
}

impl Post {
    fn sent(&self) -> Option<Instant> {
        match self {
            Post::Sent(sent) | Post::Answered { sent, .. } => Some(*sent),
            Post::Pending | Post::Failed(_) => None,
        }
    }
}

/// Locks the POST table (a poisoned lock only means a POST task panicked; its data is fine).
fn lock(posts: &Mutex<Vec<Post>>) -> std::sync::MutexGuard<'_, Vec<Post>> {
    posts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The indexes of the apps deployed according to one read of `/v2/apps` and `/v2/deployments`.
fn deployed_now(apps: &Value, deployments: &Value, instances: usize) -> Vec<usize> {
    let busy: HashSet<&str> = deployments
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|deployment| deployment["affectedApps"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    apps["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|app| {
            let id = app["id"].as_str().unwrap_or_default();
            !busy.contains(id)
                && app["deployments"]
                    .as_array()
                    .is_some_and(|deployments| deployments.is_empty())
                && app["tasksRunning"].as_u64() == Some(instances as u64)
        })
        .filter_map(|app| app_index(app["id"].as_str()?))
        .collect()
}

/// Waits until `nodes` Nodes are registered.
async fn wait_nodes(http: &Http, nodes: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = http
            .send(
                http.client.get(http.url("/apis/pacer.dev/v1/nodes")),
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

/// Runs one scenario through one path on a fresh server and fleet.
async fn run_once(
    client: &reqwest::Client,
    binary: &Path,
    args: &MarathonArgs,
    shape: Shape,
    n: usize,
    path: WritePath,
) -> Result<Run> {
    let server = dev::DevServer::start_with_args(binary, client, &["--no-agent"]).await?;
    let http = Http {
        client: client.clone(),
        base_url: server.base_url.clone(),
    };
    let scratch = tempfile::tempdir().context("create a directory for the agents' log")?;
    let outcome = async {
        let mut agents = crate::rollout::start_hollow_agents(
            binary,
            &http.base_url,
            args.nodes,
            &scratch.path().join("hollow.log"),
        )?;
        wait_nodes(&http, args.nodes).await?;
        let measured = deploy(&http, &server, &agents, args, shape, n, path).await;
        let _ = agents.start_kill();
        let _ = agents.wait().await;
        measured
    }
    .await;
    let server_info = server.stop().await?;
    let mut run = outcome?;
    run.server = Some(server_info);
    Ok(run)
}

/// POSTs the apps, waits until deployed, samples the processes, times the reads.
async fn deploy(
    http: &Http,
    server: &dev::DevServer,
    agents: &tokio::process::Child,
    args: &MarathonArgs,
    shape: Shape,
    n: usize,
    path: WritePath,
) -> Result<Run> {
    let (apps, instances) = shape.counts(n);
    let pid = server
        .pid()
        .context("pacer dev has no process id")?
        .to_string();
    let agents_pid = agents
        .id()
        .context("pacer agent hollow has no process id")?
        .to_string();
    let ticks = clock_ticks();
    eprint!(
        "{} N={n} via /{}: ",
        shape.name(),
        if path == WritePath::V2 { "v2" } else { "apis" }
    );

    let posts = Arc::new(Mutex::new(vec![Post::Pending; apps]));
    let before = proc_sample(&pid, ticks)?;
    let agents_before = proc_sample(&agents_pid, ticks)?;
    let t0 = Instant::now();
    let posting = {
        let posts = Arc::clone(&posts);
        async move {
            futures::stream::iter(0..apps)
                .for_each_concurrent(args.concurrency.max(1), |index| {
                    let posts = Arc::clone(&posts);
                    async move {
                        let sent = Instant::now();
                        lock(&posts)[index] = Post::Sent(sent);
                        let outcome = http
                            .send(create_request(http, path, index, instances), "POST an app")
                            .await;
                        lock(&posts)[index] = match outcome {
                            Ok(_) => Post::Answered {
                                sent,
                                latency: sent.elapsed(),
                            },
                            Err(error) => Post::Failed(format!("{error:#}")),
                        };
                    }
                })
                .await;
            t0.elapsed()
        }
    };
    let deadline = t0 + Duration::from_secs(args.timeout_secs);
    let waiting = async {
        let mut deployed_at: Vec<Option<Instant>> = vec![None; apps];
        let mut polls = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
            let (list, deployments) = tokio::try_join!(
                http.send(http.client.get(http.url("/v2/apps")), "GET /v2/apps"),
                http.send(
                    http.client.get(http.url("/v2/deployments")),
                    "GET /v2/deployments"
                ),
            )?;
            polls += 1;
            let now = Instant::now();
            let deployed: HashSet<usize> = deployed_now(&list, &deployments, instances)
                .into_iter()
                .collect();
            let posts = lock(&posts).clone();
            for (index, slot) in deployed_at.iter_mut().enumerate() {
                if deployed.contains(&index) && posts[index].sent().is_some() {
                    slot.get_or_insert(now);
                } else {
                    // Not yet (or no longer): only a stable deployment counts.
                    *slot = None;
                }
            }
            let settled = deployed_at
                .iter()
                .zip(&posts)
                .all(|(at, post)| at.is_some() || matches!(post, Post::Failed(_)));
            if settled || now >= deadline {
                return Ok::<_, anyhow::Error>((deployed_at, polls));
            }
        }
    };
    let (posts_elapsed, waited) = tokio::join!(posting, waiting);
    let (deployed_at, polls) = waited?;
    let after = proc_sample(&pid, ticks)?;
    let agents_after = proc_sample(&agents_pid, ticks)?;
    let posts = lock(&posts).clone();

    let mut post_latency = latency_histogram()?;
    let mut per_app = latency_histogram()?;
    let mut failed_posts = 0;
    let mut failed_post_example = None;
    let mut last_deployed = None;
    for (post, at) in posts.iter().zip(&deployed_at) {
        match post {
            Post::Answered { sent, latency } => {
                record(&mut post_latency, *latency);
                if let Some(at) = at {
                    record(&mut per_app, at.saturating_duration_since(*sent));
                    last_deployed = last_deployed.max(Some(*at));
                }
            }
            Post::Failed(error) => {
                failed_posts += 1;
                failed_post_example.get_or_insert_with(|| error.clone());
            }
            Post::Pending | Post::Sent(_) => {}
        }
    }
    let apps_deployed = deployed_at.iter().flatten().count();
    let completed = apps_deployed == apps;
    let span = if completed {
        last_deployed.map_or(Duration::ZERO, |at| at.duration_since(t0))
    } else {
        deadline.saturating_duration_since(t0)
    };
    let failed_deployment_objects = failed_deployments(http).await?;
    eprint!(
        "posted in {:.2}s, {apps_deployed}/{apps} deployed in {:.2}s; reads ",
        posts_elapsed.as_secs_f64(),
        span.as_secs_f64()
    );
    let (groups, v2_apps, apis_list) = reads(http, args.reads).await?;
    eprintln!("done");
    let cpu = after.cpu_secs - before.cpu_secs;
    let summary = |histogram: &hdrhistogram::Histogram<u64>| {
        (!histogram.is_empty()).then(|| LatencyMs::from_micros(histogram))
    };
    Ok(Run {
        path: path.name(),
        apps,
        instances_per_app: instances,
        posts_secs: posts_elapsed.as_secs_f64(),
        post_latency_ms: summary(&post_latency),
        deployment_secs: span.as_secs_f64(),
        per_app_deployment_ms: summary(&per_app),
        apps_deployed,
        completed,
        instances_per_sec: per_sec((apps_deployed * instances) as u64, span),
        failed_posts,
        failed_post_example,
        failed_deployment_objects,
        failed_deployments: failed_posts
            + (apps - apps_deployed).saturating_sub(failed_posts)
            + failed_deployment_objects,
        polls,
        control_plane: Usage {
            cpu_secs: cpu,
            cpu_cores: ratio(cpu, span.as_secs_f64()),
            rss_before_bytes: before.rss_bytes,
            rss_after_bytes: after.rss_bytes,
            peak_rss_bytes: after.hwm_bytes,
        },
        hollow_agents_cpu_secs: agents_after.cpu_secs - agents_before.cpu_secs,
        groups_get_ms: groups,
        v2_apps_get_ms: v2_apps,
        apis_apps_list_ms: apis_list,
        server: None,
    })
}

/// Deployment objects that ended `Failed` or `Cancelled`.
async fn failed_deployments(http: &Http) -> Result<usize> {
    let list = http
        .send(
            http.client.get(http.url("/apis/pacer.dev/v1/deployments")),
            "list the Deployments",
        )
        .await?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|deployment| {
            matches!(
                deployment["status"]["phase"].as_str(),
                Some("Failed" | "Cancelled")
            )
        })
        .count())
}

/// `rounds` × (`GET /v2/groups`, `GET /v2/apps`, the `/apis` App list), one at a time.
async fn reads(http: &Http, rounds: usize) -> Result<(LatencyMs, LatencyMs, LatencyMs)> {
    let urls = [
        http.url("/v2/groups"),
        http.url("/v2/apps"),
        http.apis_apps(),
    ];
    let mut histograms = [
        latency_histogram()?,
        latency_histogram()?,
        latency_histogram()?,
    ];
    // One warm-up round, not recorded.
    for url in &urls {
        http.timed_get(url).await?;
    }
    for _ in 0..rounds {
        for (url, histogram) in urls.iter().zip(histograms.iter_mut()) {
            record(histogram, http.timed_get(url).await?);
        }
    }
    let [groups, apps, list] = histograms.map(|histogram| LatencyMs::from_micros(&histogram));
    Ok((groups, apps, list))
}

/// Runs the marathon benchmark, prints the table and writes the results.
pub async fn run(args: MarathonArgs) -> Result<()> {
    ensure!(!args.sizes.is_empty(), "--sizes needs at least one N");
    ensure!(
        args.sizes.iter().all(|n| (1..=999).contains(n)),
        "every N must be in 1..=999"
    );
    ensure!(!args.shapes.is_empty(), "--shapes needs at least one shape");
    ensure!(args.nodes >= 1, "--nodes must be at least 1");
    ensure!(args.reads >= 1, "--reads must be at least 1");
    let started = UtcTime::now();
    let machine = Machine::describe();
    crate::api::raise_nofile_limit(args.concurrency as u64 + 256)?;
    crate::api::install_crypto_provider();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .context("build the HTTP client")?;
    let binary = dev::locate_binary(args.pacer_bin.clone())?;
    let mut scenarios = Vec::new();
    for &shape in &args.shapes {
        for &n in &args.sizes {
            // Baseline first, then the figure, each on a fresh server and fleet.
            let apis = run_once(&client, &binary, &args, shape, n, WritePath::Apis).await?;
            let v2 = run_once(&client, &binary, &args, shape, n, WritePath::V2).await?;
            let p = |run: &Run, pick: fn(&LatencyMs) -> f64| {
                run.per_app_deployment_ms.as_ref().map_or(f64::NAN, pick)
            };
            let post = |run: &Run| run.post_latency_ms.as_ref().map_or(f64::NAN, |l| l.p50);
            let ratios = Ratios {
                deployment_secs: ratio(v2.deployment_secs, apis.deployment_secs),
                per_app_deployment_p50: ratio(p(&v2, |l| l.p50), p(&apis, |l| l.p50)),
                per_app_deployment_p99: ratio(p(&v2, |l| l.p99), p(&apis, |l| l.p99)),
                post_p50: ratio(post(&v2), post(&apis)),
                control_plane_cpu_secs: ratio(
                    v2.control_plane.cpu_secs,
                    apis.control_plane.cpu_secs,
                ),
                control_plane_peak_rss: ratio(
                    v2.control_plane.peak_rss_bytes as f64,
                    apis.control_plane.peak_rss_bytes as f64,
                ),
                groups_get_p50_vs_apis_list: ratio(v2.groups_get_ms.p50, v2.apis_apps_list_ms.p50),
                groups_get_p99_vs_apis_list: ratio(v2.groups_get_ms.p99, v2.apis_apps_list_ms.p99),
            };
            scenarios.push(Scenario {
                shape: shape.name(),
                n,
                v2,
                apis,
                ratios,
            });
        }
    }
    let report = Report {
        benchmark: "marathon",
        schema_version: 1,
        started_at: started.rfc3339(),
        finished_at: UtcTime::now().rfc3339(),
        machine,
        baseline_description: "each scenario's `apis` run: the same apps (same cmd, instances, \
                               cpus, mem) POSTed as pacer.dev/v1 Apps to \
                               /apis/pacer.dev/v1/namespaces/default/apps with the same \
                               concurrency, on its own fresh pacer dev --no-agent and hollow \
                               fleet, with progress read the same way (GET /v2/apps + GET \
                               /v2/deployments): only the write path differs, and a /v2 POST \
                               also waits for the deployment controller to name its deployment \
                               (the CPU of each run includes its progress reads, so a run that \
                               lasts longer also reads more). \
                               Read latencies: GET /v2/groups beside the /apis list of the \
                               same Apps on the same server (groups_get_*_vs_apis_list)",
        parameters: Parameters {
            sizes: args.sizes.clone(),
            shapes: args.shapes.iter().map(|shape| shape.name()).collect(),
            nodes: args.nodes,
            concurrency: args.concurrency,
            poll_ms: args.poll_ms,
            reads: args.reads,
            timeout_secs: args.timeout_secs,
        },
        v2_failed_deployments: scenarios.iter().map(|s| s.v2.failed_deployments).sum(),
        scenarios,
    };
    println!("\n{}", report::table(&report));
    let (stamped, latest) = results::write(&args.out, "marathon", started, &report)?;
    println!("results: {} (and {})", stamped.display(), latest.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployed_needs_no_deployment_and_every_task_running() {
        let apps = json!({"apps": [
            {"id": "/mscale-000", "deployments": [], "tasksRunning": 1},
            {"id": "/mscale-001", "deployments": [{"id": "d1"}], "tasksRunning": 1},
            {"id": "/mscale-002", "deployments": [], "tasksRunning": 0},
            {"id": "/mscale-003", "deployments": [], "tasksRunning": 1},
            {"id": "/other", "deployments": [], "tasksRunning": 1},
        ]});
        let deployments = json!([{"id": "d2", "affectedApps": ["/mscale-003"]}]);
        assert_eq!(deployed_now(&apps, &deployments, 1), vec![0]);
    }

    #[test]
    fn app_names_round_trip() {
        assert_eq!(app_index(&format!("/{}", app_name(7))), Some(7));
        assert_eq!(app_index("mscale-499"), Some(499));
        assert_eq!(app_index("/web"), None);
    }
}
