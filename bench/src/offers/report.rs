//! The offers benchmark's results: the JSON document, the target and the table printed
//! beside it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::api::dev::ServerInfo;
use crate::api::report::{TargetCheck, write_server_trouble, write_targets};
use crate::machine::Machine;
use crate::placement::{Placement, ProcessUsage};

/// Instances launched through offers per second as a fraction of in-server placements per
/// second (issue 10).
const RATIO_TARGET: f64 = 0.7;

/// The whole results file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `"offers"`.
    pub benchmark: &'static str,
    /// Bumped when the shape of this document changes.
    pub schema_version: u32,
    /// When the run started (UTC, RFC 3339).
    pub started_at: String,
    /// When it ended.
    pub finished_at: String,
    /// The machine it ran on.
    pub machine: Machine,
    /// The server of the offer cycle.
    pub server: ServerInfo,
    /// The options.
    pub parameters: Parameters,
    /// Launching through the offer broker.
    pub offer_cycle: OfferCycle,
    /// Direct placement of as many instances on as many nodes (absent with `--skip-direct`).
    pub direct: Option<Direct>,
    /// `offer_cycle.instances_per_sec` ÷ `direct.placement.placements_per_sec`.
    pub launches_vs_direct_placements: Option<f64>,
    /// The targets and whether they were met.
    pub targets: Vec<TargetCheck>,
    /// Whether every target was met.
    pub all_targets_met: bool,
}

/// The options of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    /// Hollow nodes.
    pub nodes: usize,
    /// Racks they are spread over.
    pub racks: usize,
    /// Instances launched in all (split evenly over the frameworks).
    pub instances: usize,
    /// Competing frameworks, one role each.
    pub frameworks: usize,
    /// Most jobs launched with one offer.
    pub launches_per_offer: usize,
    /// Answers in flight per framework.
    pub answer_concurrency: usize,
    /// CPUs per job.
    pub job_cpus: f64,
    /// MiB per job.
    pub job_mem: f64,
    /// Longest wait for all launched.
    pub timeout_secs: u64,
}

/// The offer cycle; times are seconds from T0 (the first Framework POST).
#[derive(Debug, Clone, Serialize)]
pub struct OfferCycle {
    /// Hollow nodes registered.
    pub nodes: usize,
    /// Seconds their registration took.
    pub nodes_registration_secs: f64,
    /// Instances expected.
    pub instances: usize,
    /// Instances the watch saw created.
    pub launched: usize,
    /// Whether all were, before the timeout.
    pub all_launched: bool,
    /// Of them, created without a node (none expected: accepts create them bound).
    pub launched_unbound: usize,
    /// Nodes holding at least one.
    pub nodes_used: usize,
    /// Most on one node.
    pub max_instances_on_a_node: usize,
    /// When the first Instance was seen.
    pub first_launched_secs: Option<f64>,
    /// When a quarter, half and three quarters were.
    pub launched_quartiles_secs: [f64; 3],
    /// From T0 to the last Instance (to the timeout if not all came): the figure's span.
    pub register_to_all_launched_secs: f64,
    /// Instances over that span: the figure compared with in-server placements/s.
    pub instances_per_sec: f64,
    /// `pacer_offers_made_total` after the last Instance.
    pub offers_made: f64,
    /// `pacer_offers_accepted_total`.
    pub offers_accepted: f64,
    /// `pacer_offers_declined_total`.
    pub offers_declined: f64,
    /// `pacer_offers_expired_total`.
    pub offers_expired: f64,
    /// `pacer_offers_rescinded_total`.
    pub offers_rescinded: f64,
    /// Offers made over the span.
    pub offers_made_per_sec: f64,
    /// Offers accepted over the span.
    pub offers_accepted_per_sec: f64,
    /// Instances per accepted offer.
    pub instances_per_accept: f64,
    /// The broker's rounds (`pacer_controller_reconcile_duration_seconds_count`), since start.
    pub broker_rounds: f64,
    /// Their summed duration (plan + write), seconds.
    pub broker_round_secs: f64,
    /// That over the span: how much of it the broker spent in rounds (the rest is waiting:
    /// debounce, its caches catching up with its writes, the frameworks' answers).
    pub broker_round_share_of_span: f64,
    /// Each framework's view.
    pub frameworks: Vec<FrameworkFigures>,
    /// `pacer dev`'s utime + stime over the span.
    pub server_cpu_secs: f64,
    /// That over the span: cores busy on average.
    pub server_cpu_cores: f64,
    /// `pacer dev`'s peak RSS (`VmHWM`) at the end.
    pub server_peak_rss_bytes: u64,
    /// CPU seconds of the benchmark process (the frameworks, the watches) over the span.
    pub bench_client_cpu_secs: f64,
}

/// One framework's figures.
#[derive(Debug, Clone, Serialize)]
pub struct FrameworkFigures {
    /// Its name (and role).
    pub name: String,
    /// Jobs it had to launch.
    pub jobs: usize,
    /// Its Instances the watch saw (by the `pacer.dev/framework` label).
    pub instances_seen: usize,
    /// Open offers it saw.
    pub offers_seen: usize,
    /// Accepts the server took.
    pub accepts: usize,
    /// Declines the server took.
    pub declines: usize,
    /// Answers refused with 409/404 (the offer changed meanwhile).
    pub stale_answers: usize,
    /// When it saw its first offer.
    pub first_offer_secs: Option<f64>,
    /// From seeing an offer to its answer's reply: p50, p99, max (s).
    pub answer_secs_p50_p99_max: [f64; 3],
    /// Its role's `pacer_offer_role_dominant_share` at the end.
    pub dominant_share_at_end: Option<f64>,
}

/// Direct placement, from the placement suite.
#[derive(Debug, Clone, Serialize)]
pub struct Direct {
    /// The placement suite's figures.
    pub placement: Placement,
    /// Its `pacer dev`.
    pub control_plane: ProcessUsage,
    /// Apps whose bindings break their constraint (0 expected).
    pub constraint_violations: usize,
    /// Its server.
    pub server: ServerInfo,
}

/// The target.
pub fn check_targets(cycle: &OfferCycle, ratio: Option<f64>) -> Vec<TargetCheck> {
    let measured = ratio.unwrap_or(f64::NAN);
    vec![TargetCheck {
        id: "offer_launch_ratio",
        description: format!(
            "instances launched through offers/s >= {RATIO_TARGET} x in-server placements/s (ratio)"
        ),
        measured,
        limit: RATIO_TARGET,
        met: cycle.all_launched && measured >= RATIO_TARGET,
    }]
}

/// The report as a table for people.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let c = &report.offer_cycle;
    let p = &report.parameters;
    // Writing to a String cannot fail: the results of `writeln!` are ignored below.
    let _ = writeln!(
        out,
        "offers benchmark: {} frameworks (one role each) launch {} instances ({} per offer at \
         most) through the offer broker of `pacer dev --no-agent` ({}) on {} hollow nodes, \
         beside in-server placement of as many; {} CPUs, load {}",
        p.frameworks,
        p.instances,
        p.launches_per_offer,
        report.server.binary,
        p.nodes,
        report.machine.nproc,
        report
            .machine
            .load_average
            .map_or_else(|| "?".to_owned(), |load| format!("{:.1}", load[0])),
    );
    let _ = writeln!(
        out,
        "\n{:<40} {:>10} {:>12} {:>12}",
        "", "seconds", "per second", "vs in-server"
    );
    let direct_rate = report
        .direct
        .as_ref()
        .map(|direct| direct.placement.placements_per_sec);
    let ratio = |rate: f64| {
        direct_rate
            .filter(|direct| *direct > 0.0)
            .map_or_else(|| "-".to_owned(), |direct| format!("{:.3}x", rate / direct))
    };
    let _ = writeln!(
        out,
        "{:<40} {:>10.3} {:>12.0} {:>12}",
        "offers: register -> all launched",
        c.register_to_all_launched_secs,
        c.instances_per_sec,
        ratio(c.instances_per_sec)
    );
    let _ = writeln!(
        out,
        "{:<40} {:>10} {:>12.0} {:>12}",
        format!("  offers made ({:.0})", c.offers_made),
        "",
        c.offers_made_per_sec,
        ""
    );
    let _ = writeln!(
        out,
        "{:<40} {:>10} {:>12.0} {:>12}",
        format!(
            "  offers accepted ({:.0}, {:.1} inst. each)",
            c.offers_accepted, c.instances_per_accept
        ),
        "",
        c.offers_accepted_per_sec,
        ""
    );
    if let Some(direct) = &report.direct {
        let d = &direct.placement;
        let _ = writeln!(
            out,
            "{:<40} {:>10.3} {:>12.0} {:>12}",
            "in-server: apply -> all bound",
            d.apply_to_all_bound_secs,
            d.placements_per_sec,
            "1.000x"
        );
    }
    let _ = writeln!(
        out,
        "\nlaunched {} of {}{} ({} unbound) on {} nodes, at most {} on one; timeline (s): first \
         {}, 25% {:.2}, 50% {:.2}, 75% {:.2}, all {:.2}",
        c.launched,
        c.instances,
        if c.all_launched { "" } else { " (TIMED OUT)" },
        c.launched_unbound,
        c.nodes_used,
        c.max_instances_on_a_node,
        c.first_launched_secs
            .map_or_else(|| "-".to_owned(), |first| format!("{first:.2}")),
        c.launched_quartiles_secs[0],
        c.launched_quartiles_secs[1],
        c.launched_quartiles_secs[2],
        c.register_to_all_launched_secs
    );
    let _ = writeln!(
        out,
        "offers: {:.0} made, {:.0} accepted, {:.0} declined, {:.0} expired, {:.0} rescinded",
        c.offers_made, c.offers_accepted, c.offers_declined, c.offers_expired, c.offers_rescinded
    );
    let _ = writeln!(
        out,
        "where the time goes: {:.0} broker rounds took {:.2}s in all ({:.0}% of the span; the \
         rest the broker waits: debounce, its caches catching up with its writes, the \
         frameworks' answers); pacer dev used {:.2} CPU-s ({:.2} cores), peak RSS {:.0} MiB; the \
         benchmark's frameworks used {:.2} CPU-s",
        c.broker_rounds,
        c.broker_round_secs,
        c.broker_round_share_of_span * 100.0,
        c.server_cpu_secs,
        c.server_cpu_cores,
        c.server_peak_rss_bytes as f64 / (1024.0 * 1024.0),
        c.bench_client_cpu_secs
    );
    for f in &c.frameworks {
        let _ = writeln!(
            out,
            "  {}: {} jobs, {} instances seen; {} offers seen, {} accepted, {} declined, {} \
             stale; first offer at {}s; answer p50 {:.3}s p99 {:.3}s max {:.3}s; dominant share \
             at the end {}",
            f.name,
            f.jobs,
            f.instances_seen,
            f.offers_seen,
            f.accepts,
            f.declines,
            f.stale_answers,
            f.first_offer_secs
                .map_or_else(|| "-".to_owned(), |first| format!("{first:.2}")),
            f.answer_secs_p50_p99_max[0],
            f.answer_secs_p50_p99_max[1],
            f.answer_secs_p50_p99_max[2],
            f.dominant_share_at_end
                .map_or_else(|| "-".to_owned(), |share| format!("{share:.4}"))
        );
    }
    if let Some(direct) = &report.direct {
        let d = &direct.placement;
        let _ = writeln!(
            out,
            "in-server placement (placement suite, {} apps with its constraint mix): {} of {} \
             bound{}; {} constraint violations; pacer dev used {:.2} CPU-s ({:.2} cores)",
            d.apps,
            d.bound,
            d.instances,
            if d.all_bound { "" } else { " (TIMED OUT)" },
            direct.constraint_violations,
            direct.control_plane.cpu_secs,
            direct.control_plane.cpu_cores
        );
        write_server_trouble(&mut out, &direct.server);
    }
    write_targets(&mut out, &report.targets);
    write_server_trouble(&mut out, &report.server);
    out
}
