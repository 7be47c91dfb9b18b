//! `pacer-bench offers`: offer-cycle throughput of the offer broker (issue 10) — offers made and
//! accepted per second, and instances launched per second — with competing frameworks on
//! 1,000 hollow nodes, beside in-server placement (the `placement` framework) of the same
//! number of instances onto the same nodes in the same run.
//!
//! The system under test is the real `pacer dev --no-agent` binary (release build), with the
//! hollow nodes of [`hollow_nodes`] (4 CPUs, 16 GiB each). Three frameworks (by default) are
//! small schedulers in this process, each talking HTTP like `client/examples/batch_runner.rs`:
//! it opens a watch on `Offer`s, registers a `Framework` with its own role, and answers every
//! offer made to it by writing the offer's `/status` at its `resourceVersion` (a merge patch):
//! `phase: Accepted` with up to `--launches-per-offer` of its jobs (each the placement suite's
//! unconstrained template: `sleep 3600`, 0.1 CPU, 32 MiB) that fit, or, with nothing left,
//! `phase: Declined` for Mesos' default 5 s. A framework whose jobs are all accepted suppresses
//! itself. The jobs are split evenly; together they are `--apps` × `--instances-per-app`
//! (10,000). The broker turns
//! each accept into the Instances, created bound to the offered node, in one transaction with
//! the offer's deletion, and offers the node again (minus them) on its next round.
//!
//! Measured from T0, the first Framework POST: when an Instances watch (opened before T0) sees
//! each Instance created (bound, by construction), to the last; the frameworks' own counts
//! (offers received, accepts and declines answered, the time from seeing an offer to the
//! answer's reply); and, scraped from the server's `/metrics` after the last Instance, the
//! broker's `pacer_offers_*_total` counters (once they count every accept the frameworks
//! made), its rounds
//! (`pacer_controller_reconcile_duration_seconds{controller="offer-broker"}`) and each role's
//! `pacer_offer_role_dominant_share`; the `pacer dev` process's CPU time over the span.
//!
//! The baseline is the placement suite's own run ([`placement::direct`]): a fresh
//! `pacer dev --no-agent` with the same hollow nodes, the Apps applied (with that suite's
//! constraint mix), Instances created by the deployment controller and bound by the placement
//! controller; its placements/s is the baseline. The placement controller is itself a
//! framework of the broker (it accepts offers on the store, in-process), so the ratio is what
//! external frameworks answering over HTTP get beside Pacer's own scheduler.
//!
//! Target (issue 10): instances launched through offers per second ≥ 0.7 × the placement
//! suite's placements per second. A missed target is reported, not an error.

mod report;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use self::report::{Direct, FrameworkFigures, OfferCycle, Parameters, Report};
use crate::api::dev;
use crate::hollow_nodes;
use crate::load::per_sec;
use crate::machine::Machine;
use crate::placement::{self, PlacementArgs, clock_ticks, proc_sample};
use crate::results::{self, UtcTime};

/// Namespace of the frameworks' Instances.
const NAMESPACE: &str = "default";

/// Timeout of every non-watch request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait for the broker's `/metrics` to count the last accepts.
const METRICS_SETTLE: Duration = Duration::from_secs(5);

/// CPUs of one job (the placement suite's unconstrained App).
const JOB_CPUS: f64 = 0.1;

/// MiB of one job.
const JOB_MEM: f64 = 32.0;

/// Options of `pacer-bench offers`.
#[derive(Debug, clap::Args)]
pub struct OffersArgs {
    /// The placement suite's options: nodes, racks, Apps × instances (the instances the
    /// frameworks launch in all), the timeout, the results directory.
    #[command(flatten)]
    placement: PlacementArgs,
    /// Competing frameworks, each with its own role.
    #[arg(long, default_value_t = 3)]
    frameworks: usize,
    /// Most jobs a framework launches with one offer.
    #[arg(long, default_value_t = 5)]
    launches_per_offer: usize,
    /// Answers (accepts, declines) each framework has in flight at once.
    #[arg(long, default_value_t = 16)]
    answer_concurrency: usize,
    /// Skip the in-server placement run (no ratio then).
    #[arg(long)]
    skip_direct: bool,
}

/// HTTP against `pacer dev`.
#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    base_url: String,
}

impl Http {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Result<(u16, Vec<u8>)> {
        let response = request
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .with_context(|| what.to_owned())?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("{what}: read the reply"))?;
        Ok((status, body.to_vec()))
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let (status, body) = self
            .send(self.client.get(self.url(path)), &format!("GET {path}"))
            .await?;
        ensure!(
            (200..300).contains(&status),
            "GET {path}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).with_context(|| format!("GET {path}: decode"))
    }

    async fn text(&self, path: &str) -> Result<String> {
        let (status, body) = self
            .send(
                self.client
                    .get(self.url(path))
                    .header("Accept", "text/plain"),
                &format!("GET {path}"),
            )
            .await?;
        ensure!(status == 200, "GET {path}: {status}");
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// A watch of `path` from `revision`.
    async fn watch(&self, path: &str, revision: &str) -> Result<reqwest::Response> {
        let response = self
            .client
            .get(self.url(&format!(
                "{path}?watch=1&resourceVersion={revision}&timeoutSeconds=1800"
            )))
            .send()
            .await
            .with_context(|| format!("watch {path}"))?;
        ensure!(
            response.status().is_success(),
            "watch {path}: {}",
            response.status()
        );
        Ok(response)
    }

    /// The collection's current revision.
    async fn revision(&self, path: &str) -> Result<String> {
        let list = self.get(&format!("{path}?limit=1")).await?;
        Ok(list["metadata"]["resourceVersion"]
            .as_str()
            .with_context(|| format!("{path}: the list has no resourceVersion"))?
            .to_owned())
    }
}

/// Calls `frame` with each line of a watch stream until it returns false or the stream ends.
async fn each_frame(
    response: reqwest::Response,
    mut frame: impl FnMut(&[u8]) -> Result<bool>,
) -> Result<()> {
    let mut body = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        buffer.extend_from_slice(&chunk.context("read a watch")?);
        let mut consumed = 0;
        while let Some(end) = buffer[consumed..].iter().position(|&byte| byte == b'\n') {
            let line = &buffer[consumed..consumed + end];
            consumed += end + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if !frame(line)? {
                return Ok(());
            }
        }
        buffer.drain(..consumed);
    }
    bail!("the server ended a watch early")
}

/// A watch frame: only what the benchmark reads.
#[derive(Debug, Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: FrameObject,
}

#[derive(Debug, Default, Deserialize)]
struct FrameObject {
    #[serde(default)]
    metadata: FrameMeta,
    #[serde(default)]
    spec: FrameSpec,
    #[serde(default)]
    status: Option<FrameStatus>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FrameMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    resource_version: String,
    #[serde(default)]
    labels: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FrameSpec {
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    framework: Option<String>,
    #[serde(default)]
    resources: FrameResources,
}

#[derive(Debug, Default, Deserialize)]
struct FrameResources {
    #[serde(default)]
    cpus: f64,
    #[serde(default)]
    mem: f64,
}

#[derive(Debug, Default, Deserialize)]
struct FrameStatus {
    #[serde(default)]
    phase: Option<String>,
}

/// One in-bench framework: its jobs and what it saw.
struct Framework {
    name: String,
    /// Job indices not launched yet.
    pending: Mutex<Vec<usize>>,
    /// Jobs it owns.
    jobs: usize,
    /// Jobs in accepts the server took (200).
    accepted_jobs: AtomicUsize,
    offers_seen: AtomicUsize,
    accepts: AtomicUsize,
    declines: AtomicUsize,
    /// Answers refused (409/404: the offer changed or went meanwhile).
    stale: AtomicUsize,
    suppressed: AtomicBool,
    /// Seconds from seeing an offer to its answer's reply.
    answer_secs: Mutex<Vec<f64>>,
    /// Seconds from T0 to the first offer seen.
    first_offer_secs: Mutex<Option<f64>>,
}

impl Framework {
    fn new(index: usize, jobs: std::ops::Range<usize>) -> Self {
        Self {
            name: format!("bench-fw-{index}"),
            jobs: jobs.len(),
            pending: Mutex::new(jobs.rev().collect()),
            accepted_jobs: AtomicUsize::new(0),
            offers_seen: AtomicUsize::new(0),
            accepts: AtomicUsize::new(0),
            declines: AtomicUsize::new(0),
            stale: AtomicUsize::new(0),
            suppressed: AtomicBool::new(false),
            answer_secs: Mutex::new(Vec::new()),
            first_offer_secs: Mutex::new(None),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes up to `most` jobs that fit in `cpus` and `mem`.
    fn take(&self, most: usize, cpus: f64, mem: f64) -> Vec<usize> {
        let fit = ((cpus + 1e-9) / JOB_CPUS)
            .floor()
            .min(((mem + 1e-9) / JOB_MEM).floor())
            .max(0.0) as usize;
        let mut pending = self.pending();
        let count = most.min(fit).min(pending.len());
        let at = pending.len() - count;
        pending.split_off(at)
    }

    /// Answers one offer: accepts it with jobs, or declines it.
    async fn answer(
        &self,
        http: &Http,
        offer: FrameObject,
        seen: Instant,
        most: usize,
    ) -> Result<()> {
        let jobs = self.take(most, offer.spec.resources.cpus, offer.spec.resources.mem);
        let status = if jobs.is_empty() {
            json!({"phase": "Declined", "answeredBy": self.name, "refuseSeconds": 5})
        } else {
            let launch: Vec<Value> = jobs
                .iter()
                .map(|job| {
                    json!({
                        "namespace": NAMESPACE,
                        "name": format!("{}-{job:05}", self.name),
                        "app": self.name,
                        "template": {"cmd": "sleep 3600", "cpus": JOB_CPUS, "mem": JOB_MEM,
                                     "portDefinitions": []},
                    })
                })
                .collect();
            json!({"phase": "Accepted", "answeredBy": self.name, "launch": launch})
        };
        let path = format!("/apis/pacer.dev/v1/offers/{}/status", offer.metadata.name);
        let patch = json!({
            "metadata": {"resourceVersion": offer.metadata.resource_version},
            "status": status,
        });
        let (code, body) = http
            .send(
                http.client
                    .patch(http.url(&path))
                    .header("Content-Type", "application/merge-patch+json")
                    .body(patch.to_string()),
                &format!("PATCH {path}"),
            )
            .await?;
        self.answer_secs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(seen.elapsed().as_secs_f64());
        match code {
            200..=299 if jobs.is_empty() => {
                self.declines.fetch_add(1, Ordering::Relaxed);
            }
            200..=299 => {
                self.accepts.fetch_add(1, Ordering::Relaxed);
                let launched =
                    self.accepted_jobs.fetch_add(jobs.len(), Ordering::Relaxed) + jobs.len();
                if launched >= self.jobs && !self.suppressed.swap(true, Ordering::Relaxed) {
                    // Nothing left to launch: stop receiving offers (Mesos' SUPPRESS).
                    let path = format!("/apis/pacer.dev/v1/frameworks/{}", self.name);
                    let (code, body) = http
                        .send(
                            http.client
                                .patch(http.url(&path))
                                .header("Content-Type", "application/merge-patch+json")
                                .body(json!({"spec": {"suppressed": true}}).to_string()),
                            &format!("PATCH {path}"),
                        )
                        .await?;
                    ensure!(
                        (200..300).contains(&code),
                        "suppress {}: {code}: {}",
                        self.name,
                        String::from_utf8_lossy(&body)
                    );
                }
            }
            404 | 409 => {
                self.stale.fetch_add(1, Ordering::Relaxed);
                self.pending().extend(jobs);
            }
            _ => bail!(
                "answer offer {}: {code}: {}",
                offer.metadata.name,
                String::from_utf8_lossy(&body)
            ),
        }
        Ok(())
    }

    /// Watches offers from `revision` and answers each open one made to this framework, up to
    /// `concurrency` at once; runs until aborted.
    async fn run(
        self: Arc<Self>,
        http: Http,
        response: reqwest::Response,
        t0: Instant,
        most: usize,
        concurrency: usize,
    ) -> Result<()> {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let failure: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
        each_frame(response, |line| {
            if let Some(error) = failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
            {
                return Err(error);
            }
            let frame: Frame = serde_json::from_slice(line).context("decode an Offer frame")?;
            if frame.kind == "ERROR" {
                bail!(
                    "the Offers watch failed: {}",
                    frame.object.message.unwrap_or_default()
                );
            }
            let object = frame.object;
            let open = object
                .status
                .as_ref()
                .is_none_or(|status| status.phase.as_deref().is_none_or(|p| p == "Offered"));
            if frame.kind != "ADDED"
                || !open
                || object.spec.framework.as_deref() != Some(self.name.as_str())
            {
                return Ok(true);
            }
            let seen = Instant::now();
            if self.offers_seen.fetch_add(1, Ordering::Relaxed) == 0 {
                *self
                    .first_offer_secs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(seen.duration_since(t0).as_secs_f64());
            }
            let framework = Arc::clone(&self);
            let http = http.clone();
            let permits = Arc::clone(&permits);
            let failure = Arc::clone(&failure);
            tokio::spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                if let Err(error) = framework.answer(&http, object, seen, most).await {
                    *failure
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
                }
            });
            Ok(true)
        })
        .await
    }
}

/// What the Instances watch saw: when each was first seen (created, bound), from T0.
#[derive(Debug, Default)]
struct Launched {
    at: Vec<Duration>,
    unbound: usize,
    per_framework: HashMap<String, usize>,
    nodes: HashMap<String, usize>,
}

/// Reads the Instances watch until `expected` were created.
async fn follow(
    response: reqwest::Response,
    expected: usize,
    t0: Instant,
    launched: Arc<Mutex<Launched>>,
) -> Result<Instant> {
    let mut done = None;
    let mut seen = std::collections::HashSet::new();
    each_frame(response, |line| {
        let frame: Frame = serde_json::from_slice(line).context("decode an Instance frame")?;
        match frame.kind.as_str() {
            "ADDED" => {}
            "ERROR" => bail!(
                "the Instances watch failed: {}",
                frame.object.message.unwrap_or_default()
            ),
            _ => return Ok(true),
        }
        let object = frame.object;
        if !seen.insert(object.metadata.name) {
            return Ok(true);
        }
        let now = Instant::now();
        let mut launched = launched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        launched.at.push(now.duration_since(t0));
        match object.spec.node_name {
            Some(node) => *launched.nodes.entry(node).or_default() += 1,
            None => launched.unbound += 1,
        }
        if let Some(framework) = object.metadata.labels.get("pacer.dev/framework") {
            *launched.per_framework.entry(framework.clone()).or_default() += 1;
        }
        if launched.at.len() >= expected {
            done = Some(now);
            return Ok(false);
        }
        Ok(true)
    })
    .await?;
    done.context("the Instances watch ended early")
}

/// The value of the sample written exactly as `series` in a Prometheus text scrape.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
}

/// Runs the offers benchmark, prints the table and writes the results.
pub async fn run(args: OffersArgs) -> Result<()> {
    ensure!(args.frameworks >= 1, "--frameworks must be at least 1");
    ensure!(
        args.launches_per_offer >= 1,
        "--launches-per-offer must be at least 1"
    );
    let total = args.placement.instances();
    ensure!(total >= args.frameworks, "fewer instances than frameworks");
    let started = UtcTime::now();
    let machine = Machine::describe();
    crate::api::raise_nofile_limit(256 + (args.frameworks * args.answer_concurrency) as u64)?;
    crate::api::install_crypto_provider();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .context("build the HTTP client")?;
    let binary = dev::locate_binary(args.placement.pacer_bin())?;

    let direct = if args.skip_direct {
        None
    } else {
        eprintln!(
            "in-server placement (the placement suite's run), on {}",
            binary.display()
        );
        let (placement, control_plane, constraints, server) =
            placement::direct(&binary, &client, &args.placement).await?;
        eprintln!(
            "in-server placement: {} of {} bound in {:.2}s ({:.0}/s)",
            placement.bound,
            placement.instances,
            placement.apply_to_all_bound_secs,
            placement.placements_per_sec
        );
        Some(Direct {
            placement,
            control_plane,
            constraint_violations: constraints.violations,
            server,
        })
    };

    eprintln!("offers: starting {} dev --no-agent", binary.display());
    let server = dev::DevServer::start_with_args(&binary, &client, &["--no-agent"]).await?;
    let http = Http {
        client,
        base_url: server.base_url.clone(),
    };
    let outcome = offer_cycle(&http, &server, &binary, &args).await;
    let server_info = server.stop().await?;
    let cycle = outcome?;

    let ratio = direct.as_ref().and_then(|direct| {
        (direct.placement.placements_per_sec > 0.0)
            .then(|| cycle.instances_per_sec / direct.placement.placements_per_sec)
    });
    let targets = report::check_targets(&cycle, ratio);
    let report = Report {
        benchmark: "offers",
        schema_version: 1,
        started_at: started.rfc3339(),
        finished_at: UtcTime::now().rfc3339(),
        machine,
        server: server_info,
        parameters: Parameters {
            nodes: args.placement.nodes(),
            racks: args.placement.racks(),
            instances: total,
            frameworks: args.frameworks,
            launches_per_offer: args.launches_per_offer,
            answer_concurrency: args.answer_concurrency,
            job_cpus: JOB_CPUS,
            job_mem: JOB_MEM,
            timeout_secs: args.placement.bind_timeout().as_secs(),
        },
        all_targets_met: targets.iter().all(|target| target.met),
        offer_cycle: cycle,
        direct,
        launches_vs_direct_placements: ratio,
        targets,
    };
    println!("\n{}", report::table(&report));
    let (stamped, latest) = results::write(args.placement.out(), "offers", started, &report)?;
    println!("results: {} (and {})", stamped.display(), latest.display());
    Ok(())
}

/// Registers the nodes, opens the watches, registers the frameworks (T0) and lets them answer
/// offers until every job's Instance exists.
async fn offer_cycle(
    http: &Http,
    server: &dev::DevServer,
    binary: &std::path::Path,
    args: &OffersArgs,
) -> Result<OfferCycle> {
    let pid = server
        .pid()
        .context("pacer dev has no process id")?
        .to_string();
    let ticks = clock_ticks();
    let nodes = args.placement.nodes();
    eprint!("registering {nodes} hollow nodes ");
    let nodes_secs = hollow_nodes::register(binary, &http.base_url, nodes, args.placement.racks())
        .await?
        .as_secs_f64();
    eprintln!("in {nodes_secs:.1}s");

    let total = args.placement.instances();
    let frameworks: Vec<Arc<Framework>> = (0..args.frameworks)
        .map(|index| {
            let from = total * index / args.frameworks;
            let to = total * (index + 1) / args.frameworks;
            Arc::new(Framework::new(index, from..to))
        })
        .collect();
    let instances_path = format!("/apis/pacer.dev/v1/namespaces/{NAMESPACE}/instances");
    let offers_path = "/apis/pacer.dev/v1/offers";
    let instance_watch = http
        .watch(&instances_path, &http.revision(&instances_path).await?)
        .await?;
    let offers_revision = http.revision(offers_path).await?;
    let mut offer_watches = Vec::new();
    for _ in &frameworks {
        offer_watches.push(http.watch(offers_path, &offers_revision).await?);
    }

    let before = proc_sample(&pid, ticks)?;
    let me_before = proc_sample("self", ticks)?;
    let t0 = Instant::now();
    let launched = Arc::new(Mutex::new(Launched::default()));
    let mut watcher = tokio::spawn(follow(instance_watch, total, t0, Arc::clone(&launched)));
    let mut answering = Vec::new();
    for (framework, watch) in frameworks.iter().zip(offer_watches) {
        answering.push(tokio::spawn(Arc::clone(framework).run(
            http.clone(),
            watch,
            t0,
            args.launches_per_offer,
            args.answer_concurrency,
        )));
    }
    eprint!("registering {} frameworks ", frameworks.len());
    for framework in &frameworks {
        let body = json!({
            "apiVersion": "pacer.dev/v1", "kind": "Framework",
            "metadata": {"name": framework.name},
            "spec": {"role": framework.name, "offerTimeoutSeconds": 30},
        });
        let (code, reply) = http
            .send(
                http.client
                    .post(http.url("/apis/pacer.dev/v1/frameworks"))
                    .json(&body),
                "POST a Framework",
            )
            .await?;
        ensure!(
            code == 201,
            "POST Framework {}: {code}: {}",
            framework.name,
            String::from_utf8_lossy(&reply)
        );
    }
    eprint!(
        "in {:.3}s; waiting for {total} instances ",
        t0.elapsed().as_secs_f64()
    );
    let deadline = t0 + args.placement.bind_timeout();
    let mut failed = None;
    let all_launched = loop {
        // A framework that fails ends the run; otherwise wait for the last Instance.
        if let Some(index) = answering
            .iter()
            .position(tokio::task::JoinHandle::is_finished)
        {
            let outcome = answering.swap_remove(index).await;
            failed = Some(match outcome {
                Ok(Ok(())) => anyhow::anyhow!("a framework's offer watch ended"),
                Ok(Err(error)) => error,
                Err(error) => anyhow::Error::from(error),
            });
            break None;
        }
        match tokio::time::timeout(Duration::from_millis(100), &mut watcher).await {
            Ok(joined) => break Some(joined.context("the Instances watch task failed")??),
            Err(_) if Instant::now() >= deadline => break None,
            Err(_) => {}
        }
    };
    watcher.abort();
    for task in &answering {
        task.abort();
    }
    let after = proc_sample(&pid, ticks)?;
    let me_after = proc_sample("self", ticks)?;
    if let Some(error) = failed {
        return Err(error.context("a framework failed"));
    }
    let end = all_launched.unwrap_or(deadline);
    let span = end.duration_since(t0);
    // The broker's own counts, after the last Instance: the broker records a round once its
    // writes are done, which the watch may show first, so wait (briefly) until it has counted
    // every accept the frameworks made.
    let accepts: usize = frameworks
        .iter()
        .map(|framework| framework.accepts.load(Ordering::Relaxed))
        .sum();
    let settle = Instant::now() + METRICS_SETTLE;
    let text = loop {
        let text = http.text("/metrics").await?;
        let counted = metric(&text, "pacer_offers_accepted_total").unwrap_or(0.0);
        if counted >= accepts as f64 || Instant::now() >= settle {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let launched = launched
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match all_launched {
        Some(_) => eprintln!("- all launched at {:.2}s", span.as_secs_f64()),
        None => eprintln!(
            "- timed out after {:.0}s with {} of {total} launched",
            span.as_secs_f64(),
            launched.at.len()
        ),
    }
    let counter = |name: &str| metric(&text, name).unwrap_or(f64::NAN);
    let broker = r#"{controller="offer-broker"}"#;
    let rounds = counter(&format!(
        "pacer_controller_reconcile_duration_seconds_count{broker}"
    ));
    let round_secs = counter(&format!(
        "pacer_controller_reconcile_duration_seconds_sum{broker}"
    ));
    let offers_made = counter("pacer_offers_made_total");
    let offers_accepted = counter("pacer_offers_accepted_total");
    let mut at = launched.at.clone();
    at.sort_unstable();
    let figures: Vec<FrameworkFigures> = frameworks
        .iter()
        .map(|framework| {
            let mut answers = framework
                .answer_secs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            answers.sort_by(f64::total_cmp);
            FrameworkFigures {
                name: framework.name.clone(),
                jobs: framework.jobs,
                instances_seen: launched
                    .per_framework
                    .get(&framework.name)
                    .copied()
                    .unwrap_or(0),
                offers_seen: framework.offers_seen.load(Ordering::Relaxed),
                accepts: framework.accepts.load(Ordering::Relaxed),
                declines: framework.declines.load(Ordering::Relaxed),
                stale_answers: framework.stale.load(Ordering::Relaxed),
                first_offer_secs: *framework
                    .first_offer_secs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                answer_secs_p50_p99_max: [0.5, 0.99, 1.0]
                    .map(|quantile| quantile_of(&answers, quantile).unwrap_or(f64::NAN)),
                dominant_share_at_end: metric(
                    &text,
                    &format!(
                        "pacer_offer_role_dominant_share{{role=\"{}\"}}",
                        framework.name
                    ),
                ),
            }
        })
        .collect();
    let seconds: Vec<f64> = at.iter().map(Duration::as_secs_f64).collect();
    let cpu = after.cpu_secs - before.cpu_secs;
    Ok(OfferCycle {
        nodes,
        nodes_registration_secs: nodes_secs,
        instances: total,
        launched: at.len(),
        all_launched: all_launched.is_some(),
        launched_unbound: launched.unbound,
        nodes_used: launched.nodes.len(),
        max_instances_on_a_node: launched.nodes.values().max().copied().unwrap_or(0),
        first_launched_secs: seconds.first().copied(),
        launched_quartiles_secs: [0.25, 0.5, 0.75]
            .map(|quantile| quantile_of(&seconds, quantile).unwrap_or(f64::NAN)),
        register_to_all_launched_secs: span.as_secs_f64(),
        instances_per_sec: per_sec(at.len() as u64, span),
        offers_made,
        offers_accepted,
        offers_declined: counter("pacer_offers_declined_total"),
        offers_expired: counter("pacer_offers_expired_total"),
        offers_rescinded: counter("pacer_offers_rescinded_total"),
        offers_made_per_sec: offers_made / span.as_secs_f64(),
        offers_accepted_per_sec: offers_accepted / span.as_secs_f64(),
        instances_per_accept: at.len() as f64 / offers_accepted,
        broker_rounds: rounds,
        broker_round_secs: round_secs,
        broker_round_share_of_span: round_secs / span.as_secs_f64(),
        frameworks: figures,
        server_cpu_secs: cpu,
        server_cpu_cores: cpu / span.as_secs_f64(),
        server_peak_rss_bytes: after.hwm_bytes,
        bench_client_cpu_secs: me_after.cpu_secs - me_before.cpu_secs,
    })
}

/// The `quantile` of sorted values.
fn quantile_of(sorted: &[f64], quantile: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 * quantile).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[index])
}
