//! The api benchmark's results: the JSON document, the targets and the table printed beside it.

use std::fmt::Write as _;

use serde::Serialize;

use super::Side;
use super::dev::ServerInfo;
use super::get::GetResult;
use super::list::ListResult;
use super::watch::WatchResult;
use crate::load::LatencyMs;
use crate::machine::Machine;

/// GET p99 target at the offered load, milliseconds (issue 4).
const GET_P99_TARGET_MS: f64 = 10.0;

/// Watch delivery p99 target, milliseconds (issue 4).
const WATCH_P99_TARGET_MS: f64 = 100.0;

/// The whole results file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `"api"`.
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
    pub server: ServerInfo,
    /// What the baseline is.
    pub baseline: &'static str,
    /// The soft limit on open files this run had (raised to the hard limit).
    pub nofile_limit: u64,
    /// The options.
    pub parameters: Parameters,
    /// GET at a fixed rate.
    pub get: Option<GetResult>,
    /// Full lists.
    pub list: Option<ListResult>,
    /// Watch delivery.
    pub watch: Option<WatchResult>,
    /// The targets and whether they were met.
    pub targets: Vec<TargetCheck>,
    /// Whether every target was met.
    pub all_targets_met: bool,
}

/// The options of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    /// Rounds of the get and watch scenarios.
    pub rounds: usize,
    /// Offered GET load, per second.
    pub get_rate: f64,
    /// Measured GET seconds per side.
    pub get_secs: f64,
    /// Warm-up before each GET run.
    pub get_warmup_secs: f64,
    /// Apps listed.
    pub list_apps: usize,
    /// Concurrent POSTs creating them.
    pub create_concurrency: usize,
    /// Page size of paged lists.
    pub page_size: usize,
    /// Timed lists of each kind.
    pub list_rounds: usize,
    /// HTTP watchers.
    pub watchers: usize,
    /// Measured updates per side.
    pub watch_updates: usize,
    /// Updates per second.
    pub watch_rate: f64,
}

/// One target and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    /// Stable name.
    pub id: &'static str,
    /// In words.
    pub description: String,
    /// The measured value.
    pub measured: f64,
    /// The limit.
    pub limit: f64,
    /// Whether it was met.
    pub met: bool,
}

/// The targets, checked against the scenarios that ran.
pub fn check_targets(get: Option<&GetResult>, watch: Option<&WatchResult>) -> Vec<TargetCheck> {
    let mut targets = Vec::new();
    if let Some(get) = get
        && let Some(api) = get.figures.iter().find(|figure| figure.side == Side::Api)
    {
        targets.push(TargetCheck {
            id: "get_p99",
            description: format!(
                "API GET p99 <= {GET_P99_TARGET_MS} ms at {} requests/s (ms)",
                get.offered_per_sec
            ),
            measured: api.latency_ms.p99,
            limit: GET_P99_TARGET_MS,
            met: api.latency_ms.p99 <= GET_P99_TARGET_MS,
        });
    }
    if let Some(watch) = watch
        && let Some(api) = watch.figures.iter().find(|figure| figure.side == Side::Api)
    {
        targets.push(TargetCheck {
            id: "watch_p99",
            description: format!(
                "watch delivery p99 <= {WATCH_P99_TARGET_MS} ms to every one of {} watchers (ms)",
                api.watchers
            ),
            measured: api.latency_ms.p99,
            limit: WATCH_P99_TARGET_MS,
            met: api.latency_ms.p99 <= WATCH_P99_TARGET_MS && api.lost == 0,
        });
        targets.push(TargetCheck {
            id: "watch_complete",
            description: "every watcher received every update exactly once (lost + duplicated)"
                .to_owned(),
            measured: (api.lost + api.duplicates) as f64,
            limit: 0.0,
            met: api.lost == 0 && api.duplicates == 0,
        });
    }
    targets
}

/// The report as a table for people.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail: the results of `writeln!` are ignored below.
    let _ = writeln!(
        out,
        "api benchmark: `pacer dev` ({}) over HTTP/1.1 on loopback, beside the embedded store in \
         this process holding the same objects; {} CPUs, load {}",
        report.server.binary,
        report.machine.nproc,
        report
            .machine
            .load_average
            .map_or_else(|| "?".to_owned(), |load| format!("{:.1}", load[0])),
    );
    let _ = writeln!(
        out,
        "\n{:<18} {:<29} {:>31} {:>8} {:>8} {:>8} {:>8}",
        "scenario", "side", "throughput", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    let row = |out: &mut String, scenario: &str, label: &str, what: String, ms: &LatencyMs| {
        let _ = writeln!(
            out,
            "{scenario:<18} {label:<29} {what:>31} {:>8.3} {:>8.3} {:>8.3} {:>8.1}",
            ms.p50, ms.p90, ms.p99, ms.max
        );
    };
    if let Some(get) = &report.get {
        for (index, figure) in get.figures.iter().enumerate() {
            let scenario = if index == 0 {
                format!("GET @{}/s", get.offered_per_sec)
            } else {
                String::new()
            };
            row(
                &mut out,
                &scenario,
                figure.label,
                format!(
                    "{:.0} req/s ({} reqs)",
                    figure.achieved_per_sec, figure.requests
                ),
                &figure.latency_ms,
            );
            let _ = writeln!(
                out,
                "{:<18} {:<29} service time (from dispatch) p50 {:.3} ms, p99 {:.3} ms; {} \
                 dispatched >1 ms late; at most {} in flight",
                "",
                "",
                figure.service_ms.p50,
                figure.service_ms.p99,
                figure.late_dispatches,
                figure.max_in_flight
            );
        }
    }
    if let Some(list) = &report.list {
        for (index, figure) in list.figures.iter().enumerate() {
            let scenario = if index == 0 {
                format!("LIST {} apps", list.objects)
            } else {
                String::new()
            };
            row(
                &mut out,
                &scenario,
                figure.label,
                format!(
                    "{:.0} obj/s, {} page{}, {:.1} MB",
                    figure.objects_per_sec,
                    figure.pages,
                    if figure.pages == 1 { "" } else { "s" },
                    figure.bytes as f64 / 1e6
                ),
                &figure.latency_ms,
            );
        }
        let _ = writeln!(
            out,
            "{:<18} {:<29} ms per full list ({} lists of each kind); objects {} bytes each as \
             stored; created with {} concurrent POSTs at {:.0}/s (POST p50 {:.2} ms, p99 {:.2} ms)",
            "",
            "",
            list.figures
                .first()
                .map_or(0, |figure| figure.latency_ms.samples),
            list.object_bytes,
            list.create.concurrency,
            list.create.per_sec,
            list.create.latency_ms.p50,
            list.create.latency_ms.p99
        );
    }
    if let Some(watch) = &report.watch {
        for (index, figure) in watch.figures.iter().enumerate() {
            let scenario = if index == 0 {
                format!("WATCH {} updates", figure.updates)
            } else {
                String::new()
            };
            row(
                &mut out,
                &scenario,
                &format!("{} ({})", figure.label, figure.watchers),
                format!("{} of {} delivered", figure.delivered, figure.expected),
                &figure.latency_ms,
            );
            let _ = writeln!(
                out,
                "{:<18} {:<29} from the ack: p50 {:.3} ms, p99 {:.3} ms; write p99 {:.2} ms; {} \
                 lost, {} duplicated; per-round p99 {:?} ms",
                "",
                "",
                figure.from_ack_ms.p50,
                figure.from_ack_ms.p99,
                figure.write_ms.p99,
                figure.lost,
                figure.duplicates,
                figure
                    .rounds_p99_ms
                    .iter()
                    .map(|p99| (p99 * 10.0).round() / 10.0)
                    .collect::<Vec<_>>()
            );
        }
        let _ = writeln!(
            out,
            "{:<18} {:<29} at {}/s; watchers connected and live in {:.1}s",
            "", "", watch.rate, watch.setup_secs
        );
    }
    if !report.targets.is_empty() {
        write_targets(&mut out, &report.targets);
    }
    write_server_trouble(&mut out, &report.server);
    out
}

/// The `targets:` section every suite's summary ends with: each target, its figure, met or not.
pub fn write_targets(out: &mut String, targets: &[TargetCheck]) {
    let _ = writeln!(out, "\ntargets:");
    for target in targets {
        let _ = writeln!(
            out,
            "  {:<78} {:>8.3}  {}",
            target.description,
            target.measured,
            if target.met { "met" } else { "MISSED" }
        );
    }
}

/// A line about the server under test when it logged warnings or did not exit cleanly.
pub fn write_server_trouble(out: &mut String, server: &ServerInfo) {
    if server.log_warnings > 0 || !server.clean_exit {
        let _ = writeln!(
            out,
            "\nserver: {} warning/error lines in its log{}; first: {:?}",
            server.log_warnings,
            if server.clean_exit {
                ""
            } else {
                ", and it did not exit cleanly on SIGTERM"
            },
            server.log_excerpt
        );
    }
}
