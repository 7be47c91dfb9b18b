//! The store benchmark's results: the JSON document and the table printed beside it.

use std::fmt::Write as _;

use serde::Serialize;

use super::ScenarioKind;
use super::scenarios::Measurement;
use super::target::Backend;
use crate::load::{self, LatencyMs};
use crate::machine::Machine;

/// The whole results file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `"store"`.
    pub benchmark: &'static str,
    /// Bumped when the shape of this document changes.
    pub schema_version: u32,
    /// When the run started (UTC, RFC 3339).
    pub started_at: String,
    /// When it ended.
    pub finished_at: String,
    /// The machine it ran on.
    pub machine: Machine,
    /// The etcd it ran against.
    pub etcd: EtcdInfo,
    /// What every run shared.
    pub parameters: Parameters,
    /// One entry per scenario, each with one figure per backend, baseline first.
    pub scenarios: Vec<ScenarioResult>,
    /// The targets, as ratios to the baseline measured in this run.
    pub targets: Vec<TargetCheck>,
    /// Whether every target was met.
    pub all_targets_met: bool,
}

/// The etcd both the baseline and the etcd backend used.
#[derive(Debug, Clone, Serialize)]
pub struct EtcdInfo {
    /// Server version, as etcd reports it.
    pub version: String,
    /// `HOST:PORT`.
    pub endpoint: String,
    /// Whether the benchmark started a throwaway etcd for each scenario (the endpoint is the
    /// first one's), or was given one.
    pub started_by_benchmark: bool,
}

/// What every run shared.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    /// Concurrent tasks per run.
    pub concurrency: usize,
    /// Warm-up before each run (each backend in each round), not measured.
    pub warmup_secs: f64,
    /// Measured seconds per backend per scenario, split evenly over the rounds.
    pub duration_secs: f64,
    /// Rounds per scenario: each runs every backend once, in turn (the order rotating from
    /// round to round), so that the machine's noise falls on all of them alike.
    pub rounds: usize,
    /// Bytes per value.
    pub value_bytes: usize,
    /// Puts per transaction in the transaction scenario.
    pub txn_ops: usize,
    /// Where the embedded backend's database lived (a temporary directory).
    pub embedded_data_dir: String,
}

/// One scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Which scenario.
    pub id: ScenarioKind,
    /// What it does.
    pub description: &'static str,
    /// Unit of `ops_per_sec`.
    pub unit: &'static str,
    /// What the latency measures.
    pub latency: &'static str,
    /// One figure per backend, baseline first.
    pub figures: Vec<Figure>,
}

impl ScenarioResult {
    /// The figure of `backend`, if it ran.
    pub fn figure(&self, backend: Backend) -> Option<&Figure> {
        self.figures.iter().find(|figure| figure.backend == backend)
    }
}

/// One backend's result in one scenario, over all rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Which system.
    pub backend: Backend,
    /// Its name in the table.
    pub label: &'static str,
    /// Operations per second: puts, transactions or delivered events.
    pub ops_per_sec: f64,
    /// Keys written (for watch: delivered) per second.
    pub keys_per_sec: f64,
    /// Operations counted (those completed inside the measured windows).
    pub operations: u64,
    /// Measured seconds, over all rounds.
    pub window_secs: f64,
    /// Latency of the counted operations (see the scenario's `latency`).
    pub latency_ms: LatencyMs,
    /// Operations per second in each round.
    pub rounds_ops_per_sec: Vec<f64>,
    /// This figure relative to the baseline's (the bare etcd-client's) in the same run.
    pub vs_baseline: Option<Ratios>,
    /// Watch details (the watch scenario only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchDetail>,
}

/// A figure divided by the baseline's: above 1 means more throughput, or longer latency.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// Throughput ratio over all rounds.
    pub ops_per_sec: f64,
    /// Throughput ratio in each round (each round runs every backend once, in turn): their
    /// spread shows how noisy the machine was.
    pub rounds_ops_per_sec: Vec<f64>,
    /// Median latency ratio.
    pub p50: f64,
    /// 99th-percentile latency ratio.
    pub p99: f64,
}

/// What the watch scenario saw besides throughput and send-to-delivery latency.
#[derive(Debug, Clone, Serialize)]
pub struct WatchDetail {
    /// Latency from the writer receiving its acknowledgement to delivery at the watcher
    /// (clamped at 0.001 ms: a watcher may see an event before its writer sees the reply).
    pub latency_from_ack_ms: LatencyMs,
    /// Events the watcher saw before their writer saw the acknowledgement.
    pub delivered_before_ack: u64,
    /// Writes acknowledged (warm-ups included).
    pub written: u64,
    /// Distinct events delivered.
    pub delivered: u64,
    /// Acknowledged writes never delivered (within the drain time): should be 0.
    pub lost: u64,
    /// Events delivered more than once: should be 0.
    pub duplicates: u64,
    /// Writes acknowledged per second in the measured windows: delivery cannot beat it.
    pub writes_per_sec: f64,
}

impl Figure {
    /// The figure of `backend` from its merged measurement and each round's throughput.
    pub fn new(backend: Backend, measured: &Measurement, rounds_ops_per_sec: Vec<f64>) -> Self {
        let ops_per_sec = measured.ops_per_sec();
        Self {
            backend,
            label: backend.label(),
            ops_per_sec,
            keys_per_sec: ops_per_sec * measured.keys_per_op as f64,
            operations: measured.operations,
            window_secs: measured.window.as_secs_f64(),
            latency_ms: LatencyMs::from_micros(&measured.latency_us),
            rounds_ops_per_sec,
            vs_baseline: None,
            watch: measured.watch.as_ref().map(|watch| WatchDetail {
                latency_from_ack_ms: LatencyMs::from_micros(&watch.latency_from_ack_us),
                delivered_before_ack: watch.delivered_before_ack,
                written: watch.written,
                delivered: watch.delivered,
                lost: watch.lost,
                duplicates: watch.duplicates,
                writes_per_sec: load::per_sec(watch.writes_measured, measured.window),
            }),
        }
    }
}

/// Fills each figure's ratios to the baseline (the bare etcd-client's figure).
pub fn add_ratios(figures: &mut [Figure]) {
    let Some(baseline) = figures
        .iter()
        .find(|figure| figure.backend == Backend::EtcdClient)
        .cloned()
    else {
        return;
    };
    let ratio = |value: f64, base: f64| if base > 0.0 { value / base } else { f64::NAN };
    for figure in figures {
        figure.vs_baseline = Some(Ratios {
            ops_per_sec: ratio(figure.ops_per_sec, baseline.ops_per_sec),
            rounds_ops_per_sec: figure
                .rounds_ops_per_sec
                .iter()
                .zip(&baseline.rounds_ops_per_sec)
                .map(|(&value, &base)| ratio(value, base))
                .collect(),
            p50: ratio(figure.latency_ms.p50, baseline.latency_ms.p50),
            p99: ratio(figure.latency_ms.p99, baseline.latency_ms.p99),
        });
    }
}

/// One target and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    /// Stable name.
    pub id: &'static str,
    /// In words.
    pub description: &'static str,
    /// The scenario it is about.
    pub scenario: ScenarioKind,
    /// The backend it is about.
    pub backend: Backend,
    /// Required throughput relative to the bare etcd-client in the same run.
    pub min_ratio: f64,
    /// Measured throughput relative to the bare etcd-client in the same run.
    pub ratio: f64,
    /// `ratio >= min_ratio`.
    pub met: bool,
}

/// The targets from the issue, checked against `scenarios` (those whose scenario ran).
pub fn check_targets(scenarios: &[ScenarioResult]) -> Vec<TargetCheck> {
    const TARGETS: [(&str, &str, ScenarioKind, Backend, f64); 3] = [
        (
            "etcd_backend_puts",
            "etcd backend single puts >= 0.8x the bare etcd-client",
            ScenarioKind::Put,
            Backend::Etcd,
            0.8,
        ),
        (
            "etcd_backend_txns",
            "etcd backend 128-op transactions >= 0.8x the bare etcd-client",
            ScenarioKind::Txn,
            Backend::Etcd,
            0.8,
        ),
        (
            "embedded_txns",
            "embedded backend 128-op transactions >= 1.0x etcd (bare etcd-client)",
            ScenarioKind::Txn,
            Backend::Embedded,
            1.0,
        ),
    ];
    TARGETS
        .iter()
        .filter_map(|&(id, description, kind, backend, min_ratio)| {
            let scenario = scenarios.iter().find(|scenario| scenario.id == kind)?;
            let ratio = scenario.figure(backend)?.vs_baseline.as_ref()?.ops_per_sec;
            Some(TargetCheck {
                id,
                description,
                scenario: kind,
                backend,
                min_ratio,
                ratio,
                met: ratio >= min_ratio,
            })
        })
        .collect()
}

/// The report as a table for people.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let p = &report.parameters;
    // Writing to a String cannot fail: the results of `writeln!` are ignored below.
    let _ = writeln!(
        out,
        "store benchmark: {} tasks, {}s measured per backend and scenario in {} round(s), \
         {}s warm-up per run, {}-byte values; etcd {}; {} CPUs, load {}",
        p.concurrency,
        p.duration_secs,
        p.rounds,
        p.warmup_secs,
        p.value_bytes,
        report.etcd.version,
        report.machine.nproc,
        report
            .machine
            .load_average
            .map_or_else(|| "?".to_owned(), |load| format!("{:.1}", load[0])),
    );
    let _ = writeln!(
        out,
        "x bare: throughput / the bare etcd-client's in this run (higher is better; per-round \
         range in brackets); p99 x: p99 latency / the bare client's (lower is better)\n"
    );
    let _ = writeln!(
        out,
        "{:<15} {:<21} {:>15} {:>9} {:>18} {:>8} {:>8} {:>8} {:>6}",
        "scenario", "backend", "ops/s", "keys/s", "x bare", "p50 ms", "p99 ms", "max ms", "p99 x"
    );
    for scenario in &report.scenarios {
        for (index, figure) in scenario.figures.iter().enumerate() {
            let name = if index == 0 { scenario.id.title() } else { "" };
            let ratios = figure.vs_baseline.as_ref();
            let _ = writeln!(
                out,
                "{:<15} {:<21} {:>15} {:>9.0} {:>18} {:>8.3} {:>8.3} {:>8.1} {:>6}",
                name,
                figure.label,
                format!("{:.0} {}", figure.ops_per_sec, scenario.unit),
                figure.keys_per_sec,
                ratios.map_or_else(|| "-".to_owned(), throughput_ratio),
                figure.latency_ms.p50,
                figure.latency_ms.p99,
                figure.latency_ms.max,
                ratios.map_or_else(|| "-".to_owned(), |r| format!("{:.2}", r.p99)),
            );
            if let Some(watch) = &figure.watch {
                let _ = writeln!(
                    out,
                    "{:<15} {:<21} from the ack: p50 {:.3} ms, p99 {:.3} ms ({:.0}% seen before \
                     it); {:.0} writes/s; {} written, {} lost, {} duplicated",
                    "",
                    "",
                    watch.latency_from_ack_ms.p50,
                    watch.latency_from_ack_ms.p99,
                    percent(
                        watch.delivered_before_ack,
                        watch.latency_from_ack_ms.samples
                    ),
                    watch.writes_per_sec,
                    watch.written,
                    watch.lost,
                    watch.duplicates
                );
            }
        }
    }
    if !report.targets.is_empty() {
        let _ = writeln!(
            out,
            "\ntargets (throughput relative to the bare etcd-client in this run):"
        );
        for target in &report.targets {
            let _ = writeln!(
                out,
                "  {:<70} {:>5.2}x  {}",
                target.description,
                target.ratio,
                if target.met { "met" } else { "MISSED" }
            );
        }
    }
    out
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// `0.93 (0.88-0.97)`: the overall ratio and, with several rounds, their range.
fn throughput_ratio(ratios: &Ratios) -> String {
    let rounds = &ratios.rounds_ops_per_sec;
    let low = rounds.iter().copied().fold(f64::INFINITY, f64::min);
    let high = rounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if rounds.len() > 1 {
        format!("{:.2} ({low:.2}-{high:.2})", ratios.ops_per_sec)
    } else {
        format!("{:.2}", ratios.ops_per_sec)
    }
}
