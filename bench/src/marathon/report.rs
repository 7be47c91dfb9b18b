//! The marathon benchmark's results: the JSON document and the table printed beside it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::api::dev::ServerInfo;
use crate::api::report::write_server_trouble;
use crate::load::LatencyMs;
use crate::machine::Machine;

/// The whole results file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `"marathon"`.
    pub benchmark: &'static str,
    /// Bumped when the shape of this document changes.
    pub schema_version: u32,
    /// When the run started (UTC, RFC 3339).
    pub started_at: String,
    /// When it ended.
    pub finished_at: String,
    /// The machine it ran on.
    pub machine: Machine,
    /// What the baseline is.
    pub baseline_description: &'static str,
    /// The options.
    pub parameters: Parameters,
    /// One entry per shape and N.
    pub scenarios: Vec<Scenario>,
    /// Failed deployments over every `/v2` run (failed POSTs, apps not deployed in time,
    /// Deployments that ended `Failed`).
    pub v2_failed_deployments: usize,
}

/// The options of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    /// The N of every scenario.
    pub sizes: Vec<usize>,
    /// The shapes run: `n_apps_x_1_instance`, `1_app_x_n_instances`.
    pub shapes: Vec<&'static str>,
    /// Hollow nodes in the `pacer agent hollow` process of each run.
    pub nodes: usize,
    /// Concurrent POSTs.
    pub concurrency: usize,
    /// How often progress is read while waiting, ms.
    pub poll_ms: u64,
    /// GETs of each read endpoint at the end of a run.
    pub reads: usize,
    /// Give up on a run's deployments after this many seconds.
    pub timeout_secs: u64,
}

/// One shape at one N: the `/v2` run beside the `/apis` baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// `n_apps_x_1_instance` or `1_app_x_n_instances`.
    pub shape: &'static str,
    /// N.
    pub n: usize,
    /// Through Marathon's `/v2/apps`: the figure.
    pub v2: Run,
    /// The same Apps through the kube-style `/apis/pacer.dev/v1` collection: the baseline.
    pub apis: Run,
    /// `/v2` ÷ `/apis` (and, for reads, `/v2/groups` ÷ the `/apis` list in the `/v2` run).
    pub ratios: Ratios,
}

/// Ratios of one scenario; above 1 means `/v2` is slower or costlier.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// Overall deployment time.
    pub deployment_secs: f64,
    /// Median per-app deployment time.
    pub per_app_deployment_p50: f64,
    /// 99th-percentile per-app deployment time.
    pub per_app_deployment_p99: f64,
    /// Median POST latency.
    pub post_p50: f64,
    /// `pacer dev` CPU seconds from the first POST to all deployed.
    pub control_plane_cpu_secs: f64,
    /// `pacer dev` peak RSS.
    pub control_plane_peak_rss: f64,
    /// `/v2/groups` p50 ÷ `/apis` App list p50, in the `/v2` run (same server, same Apps).
    pub groups_get_p50_vs_apis_list: f64,
    /// `/v2/groups` p99 ÷ `/apis` App list p99, in the `/v2` run.
    pub groups_get_p99_vs_apis_list: f64,
}

/// One run: a fresh `pacer dev` and hollow fleet, N instances created through one path.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// `v2` or `apis`.
    pub path: &'static str,
    /// Apps created.
    pub apps: usize,
    /// Instances of each.
    pub instances_per_app: usize,
    /// Seconds from the first POST sent to the last answered.
    pub posts_secs: f64,
    /// POST latency (a `/v2` POST waits for the deployment controller to name the deployment).
    pub post_latency_ms: Option<LatencyMs>,
    /// Seconds from the first POST to the last app deployed: the overall deployment time.
    pub deployment_secs: f64,
    /// Per app, from its POST sent to it deployed (its deployment gone from
    /// `/v2/deployments`, none in its `deployments`, `tasksRunning` = instances).
    pub per_app_deployment_ms: Option<LatencyMs>,
    /// Apps deployed before the timeout.
    pub apps_deployed: usize,
    /// Whether every app deployed.
    pub completed: bool,
    /// Running instances per second over the deployment.
    pub instances_per_sec: f64,
    /// POSTs that failed.
    pub failed_posts: usize,
    /// The first failure, if any.
    pub failed_post_example: Option<String>,
    /// Deployment objects that ended `Failed` (or `Cancelled`).
    pub failed_deployment_objects: usize,
    /// Failed deployments: failed POSTs + apps not deployed in time + failed Deployments.
    pub failed_deployments: usize,
    /// Progress reads (`GET /v2/apps` + `GET /v2/deployments`) while waiting.
    pub polls: usize,
    /// The `pacer dev` process over the deployment.
    pub control_plane: Usage,
    /// CPU seconds of the `pacer agent hollow` process over the deployment.
    pub hollow_agents_cpu_secs: f64,
    /// GET latencies with the N apps present, after the deployment: `GET /v2/groups`.
    pub groups_get_ms: LatencyMs,
    /// `GET /v2/apps`.
    pub v2_apps_get_ms: LatencyMs,
    /// `GET /apis/pacer.dev/v1/namespaces/default/apps` (the kube-style list of the same Apps).
    pub apis_apps_list_ms: LatencyMs,
    /// The server of this run (set once it has stopped).
    pub server: Option<ServerInfo>,
}

/// CPU and memory of the `pacer dev` process.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    /// utime + stime from the first POST to all deployed, seconds.
    pub cpu_secs: f64,
    /// Over the same span, cores.
    pub cpu_cores: f64,
    /// `VmRSS` before the first POST.
    pub rss_before_bytes: u64,
    /// `VmRSS` when all deployed.
    pub rss_after_bytes: u64,
    /// `VmHWM` when all deployed (the process is fresh each run, so this is the run's peak).
    pub peak_rss_bytes: u64,
}

/// `a ÷ b`, NaN when `b` is not positive.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// The printed table: per scenario, each `/v2` figure beside its `/apis` baseline.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let p = &report.parameters;
    let _ = writeln!(
        out,
        "marathon: /v2 vs /apis on {} hollow nodes, {} concurrent POSTs, fresh pacer dev per run",
        p.nodes, p.concurrency
    );
    let _ = writeln!(
        out,
        "  {:<24} {:>5} {:>9} {:>9} {:>6} {:>10} {:>10} {:>9} {:>9} {:>6} {:>8} {:>8} {:>6}",
        "scenario",
        "N",
        "deploy s",
        "/apis s",
        "ratio",
        "app p50 s",
        "app p99 s",
        "cpu s",
        "/apis",
        "ratio",
        "peak MiB",
        "/apis",
        "fail"
    );
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let secs = |latency: &Option<LatencyMs>, pick: fn(&LatencyMs) -> f64| {
        latency.as_ref().map_or(f64::NAN, |l| pick(l) / 1000.0)
    };
    for s in &report.scenarios {
        let _ = writeln!(
            out,
            "  {:<24} {:>5} {:>9.2} {:>9.2} {:>5.2}x {:>10.2} {:>10.2} {:>9.2} {:>9.2} {:>5.2}x {:>8.1} {:>8.1} {:>6}",
            s.shape,
            s.n,
            s.v2.deployment_secs,
            s.apis.deployment_secs,
            s.ratios.deployment_secs,
            secs(&s.v2.per_app_deployment_ms, |l| l.p50),
            secs(&s.v2.per_app_deployment_ms, |l| l.p99),
            s.v2.control_plane.cpu_secs,
            s.apis.control_plane.cpu_secs,
            s.ratios.control_plane_cpu_secs,
            mib(s.v2.control_plane.peak_rss_bytes),
            mib(s.apis.control_plane.peak_rss_bytes),
            s.v2.failed_deployments,
        );
    }
    let _ = writeln!(
        out,
        "\n  reads with N apps present (ms, in the /v2 run; {} GETs each)",
        p.reads
    );
    let _ = writeln!(
        out,
        "  {:<24} {:>5} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>7} {:>7}",
        "scenario",
        "N",
        "groups p50",
        "groups p99",
        "v2/apps p50",
        "v2/apps p99",
        "/apis p50",
        "/apis p99",
        "p50 x",
        "p99 x"
    );
    for s in &report.scenarios {
        let v2 = &s.v2;
        let _ = writeln!(
            out,
            "  {:<24} {:>5} {:>11.2} {:>11.2} {:>11.2} {:>11.2} {:>11.2} {:>11.2} {:>6.2}x {:>6.2}x",
            s.shape,
            s.n,
            v2.groups_get_ms.p50,
            v2.groups_get_ms.p99,
            v2.v2_apps_get_ms.p50,
            v2.v2_apps_get_ms.p99,
            v2.apis_apps_list_ms.p50,
            v2.apis_apps_list_ms.p99,
            s.ratios.groups_get_p50_vs_apis_list,
            s.ratios.groups_get_p99_vs_apis_list,
        );
    }
    let _ = writeln!(
        out,
        "\n  POST latency p50/p99 ms, /v2 vs /apis (a /v2 POST waits for its deployment id)"
    );
    for s in &report.scenarios {
        let ms = |latency: &Option<LatencyMs>| {
            latency
                .as_ref()
                .map_or_else(|| "-".to_owned(), |l| format!("{:.1}/{:.1}", l.p50, l.p99))
        };
        let _ = writeln!(
            out,
            "  {:<24} {:>5} {:>16} {:>16}",
            s.shape,
            s.n,
            ms(&s.v2.post_latency_ms),
            ms(&s.apis.post_latency_ms)
        );
    }
    let _ = writeln!(
        out,
        "\n  failed deployments over every /v2 run: {}",
        report.v2_failed_deployments
    );
    for s in &report.scenarios {
        for run in [&s.v2, &s.apis] {
            if !run.completed || run.failed_deployments > 0 {
                let _ = writeln!(
                    out,
                    "  {} {} via {}: {}/{} apps deployed, {} failed POSTs ({:?}), {} failed \
                     Deployments",
                    s.shape,
                    s.n,
                    run.path,
                    run.apps_deployed,
                    run.apps,
                    run.failed_posts,
                    run.failed_post_example,
                    run.failed_deployment_objects
                );
            }
            if let Some(server) = &run.server {
                write_server_trouble(&mut out, server);
            }
        }
    }
    out
}
