//! The instance census: cluster-wide instance gauges for `/metrics`, kept from one watch of
//! the Instances so a scrape costs nothing however many instances there are.
//!
//! [`run`] follows the process' shared Instance informer (see [`Informers`]: the controllers'
//! own cache, no watch of its own) and keeps, per instance, only a small [`Summary`] — phase, pending or
//! bound, health verdict and check results. Each change subtracts the instance's old summary
//! from the running totals and adds its new one (O(1) per event, a few dozen bytes per
//! instance at 10,000 instances); the totals are written into `pacer-metrics`' cluster gauges:
//! `pacer_instances{phase}`, `pacer_instances_pending`, `pacer_instance_health{status}`,
//! `pacer_health_checks{result}`. It also counts what the watch sees happen:
//! `pacer_placements_total` (an instance that was unbound is now bound) and
//! `pacer_health_check_failures_total` (a check's `consecutiveFailures` grew, which agents
//! write for every counted failure). A resync (the informer relisted, or the census fell
//! behind its notices) recounts the totals from the cache without counting anything.
//!
//! It reads only, so it runs without an election in every process that runs controllers
//! (`pacer dev`, `pacer server`); each replica reports the same cluster-wide values.

use std::collections::HashMap;

use pacer_metrics::ClusterMetrics;
use pacer_schemas::Instance;
use pacer_schemas::instance::InstancePhase;
use tokio_util::sync::CancellationToken;

use crate::informers::{Change, Informers};
use crate::placement::view::is_pending;
use crate::store_source::registry_key;

/// Every phase, with its label value (`status.phase` as written).
const PHASES: [(InstancePhase, &str); 10] = [
    (InstancePhase::Scheduled, "Scheduled"),
    (InstancePhase::Staging, "Staging"),
    (InstancePhase::Starting, "Starting"),
    (InstancePhase::Running, "Running"),
    (InstancePhase::Killing, "Killing"),
    (InstancePhase::Killed, "Killed"),
    (InstancePhase::Finished, "Finished"),
    (InstancePhase::Failed, "Failed"),
    (InstancePhase::Lost, "Lost"),
    (InstancePhase::Gone, "Gone"),
];

fn phase_index(phase: InstancePhase) -> usize {
    match phase {
        InstancePhase::Scheduled => 0,
        InstancePhase::Staging => 1,
        InstancePhase::Starting => 2,
        InstancePhase::Running => 3,
        InstancePhase::Killing => 4,
        InstancePhase::Killed => 5,
        InstancePhase::Finished => 6,
        InstancePhase::Failed => 7,
        InstancePhase::Lost => 8,
        InstancePhase::Gone => 9,
    }
}

/// What the census keeps of one instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    phase: usize,
    pending: bool,
    bound: bool,
    /// The health verdict of a non-terminal instance that has one.
    healthy: Option<bool>,
    /// `(index, alive, consecutiveFailures)` of each check of a non-terminal instance.
    checks: Vec<(i32, bool, i32)>,
}

impl Summary {
    /// The summary of `instance`.
    pub fn of(instance: &Instance) -> Self {
        let phase = instance.phase();
        let live = !phase.is_terminal();
        let status = instance.status.as_ref().filter(|_| live);
        Self {
            phase: phase_index(phase),
            pending: is_pending(instance),
            bound: instance.spec.node_name.is_some(),
            healthy: status.and_then(|status| status.healthy),
            checks: status
                .map(|status| {
                    status
                        .health
                        .iter()
                        .map(|check| (check.index, check.alive, check.consecutive_failures))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Health check failures counted between `self` and `next` of the same instance.
    fn new_failures(&self, next: &Self) -> u64 {
        next.checks
            .iter()
            .map(|(index, _, failures)| {
                let before = self
                    .checks
                    .iter()
                    .find(|(old, _, _)| old == index)
                    .map_or(0, |(_, _, failures)| *failures);
                u64::try_from(failures - before).unwrap_or(0)
            })
            .sum()
    }
}

/// The running totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    phases: [i64; PHASES.len()],
    pending: i64,
    healthy: i64,
    unhealthy: i64,
    passing: i64,
    failing: i64,
}

impl Totals {
    /// Adds (`sign` 1) or removes (`sign` -1) one instance.
    fn count(&mut self, summary: &Summary, sign: i64) {
        self.phases[summary.phase] += sign;
        self.pending += sign * i64::from(summary.pending);
        match summary.healthy {
            Some(true) => self.healthy += sign,
            Some(false) => self.unhealthy += sign,
            None => {}
        }
        for (_, alive, _) in &summary.checks {
            if *alive {
                self.passing += sign;
            } else {
                self.failing += sign;
            }
        }
    }

    fn publish(&self, metrics: &ClusterMetrics) {
        for ((_, label), count) in PHASES.iter().zip(self.phases) {
            metrics.instances(label).set(count);
        }
        metrics.pending.set(self.pending);
        metrics.health(true).set(self.healthy);
        metrics.health(false).set(self.unhealthy);
        metrics.checks(true).set(self.passing);
        metrics.checks(false).set(self.failing);
    }
}

/// The census' state: the summaries and the totals.
#[derive(Debug, Default)]
pub struct Census {
    summaries: HashMap<String, Summary>,
    totals: Totals,
}

/// What one change did beyond the totals.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Instances newly bound to a node.
    pub placements: u64,
    /// Health check failures counted.
    pub check_failures: u64,
}

impl Census {
    /// Replaces everything with `instances` (every Instance there is), counting nothing.
    pub fn replace<'a>(&mut self, instances: impl IntoIterator<Item = &'a Instance>) {
        self.summaries = instances
            .into_iter()
            .map(|instance| (key(instance), Summary::of(instance)))
            .collect();
        self.totals = Totals::default();
        for summary in self.summaries.values() {
            self.totals.count(summary, 1);
        }
    }

    /// Applies the new state of an instance; what it saw happen.
    pub fn applied(&mut self, instance: &Instance) -> Observed {
        let next = Summary::of(instance);
        let previous = self.summaries.insert(key(instance), next.clone());
        if let Some(previous) = &previous {
            self.totals.count(previous, -1);
        }
        self.totals.count(&next, 1);
        let before = previous.unwrap_or_default();
        Observed {
            placements: u64::from(!before.bound && next.bound),
            check_failures: before.new_failures(&next),
        }
    }

    /// Forgets a deleted instance.
    pub fn deleted(&mut self, instance: &Instance) {
        if let Some(previous) = self.summaries.remove(&key(instance)) {
            self.totals.count(&previous, -1);
        }
    }

    /// The running totals.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }
}

fn key(instance: &Instance) -> String {
    registry_key::<Instance>(
        instance.metadata.namespace.as_deref(),
        instance.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// Keeps the cluster gauges of the process-wide metrics from `informers`' Instances until
/// `shutdown` is cancelled.
pub async fn run(informers: Informers, shutdown: CancellationToken) {
    let metrics = pacer_metrics::global().cluster.clone();
    let informer = informers.informer::<Instance>();
    let mut changes = informer.subscribe();
    let mut census = Census::default();
    let mut published = Totals::default();
    published.publish(&metrics);
    tokio::select! {
        () = shutdown.cancelled() => return,
        ready = informer.wait_until_ready() => {
            if ready.is_err() {
                tracing::warn!("the instance census' informer stopped");
                return;
            }
        }
    }
    // Notices queued meanwhile repeat what the cache shows: applying them again is harmless.
    census.replace(informer.store().state().iter().map(AsRef::as_ref));
    loop {
        if census.totals != published {
            census.totals.publish(&metrics);
            published = census.totals.clone();
        }
        let change = tokio::select! {
            () = shutdown.cancelled() => return,
            change = changes.next() => change,
        };
        match change {
            None => {
                tracing::warn!("the instance census' informer stopped");
                return;
            }
            Some(Change::Applied(instance)) => {
                let observed = census.applied(&instance);
                metrics.placements.inc_by(observed.placements);
                metrics.check_failures.inc_by(observed.check_failures);
            }
            Some(Change::Deleted(instance)) => census.deleted(&instance),
            Some(Change::Resync) => {
                census.replace(informer.store().state().iter().map(AsRef::as_ref));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use pacer_schemas::instance::{HealthCheckResult, InstanceStatus};

    use super::*;

    fn instance(name: &str, node: Option<&str>, phase: InstancePhase) -> Instance {
        let mut instance = Instance::default();
        instance.metadata.namespace = Some("default".to_owned());
        instance.metadata.name = Some(name.to_owned());
        instance.spec.node_name = node.map(str::to_owned);
        instance.status = Some(InstanceStatus {
            phase,
            ..InstanceStatus::default()
        });
        instance
    }

    fn with_check(mut instance: Instance, alive: bool, failures: i32) -> Instance {
        let status = instance.status.get_or_insert_with(InstanceStatus::default);
        status.healthy = Some(alive);
        status.health = vec![HealthCheckResult {
            index: 0,
            alive,
            consecutive_failures: failures,
            ..HealthCheckResult::default()
        }];
        instance
    }

    #[test]
    fn totals_follow_every_change_and_count_what_happened() {
        let mut census = Census::default();
        census.replace([
            &instance("a", None, InstancePhase::Scheduled),
            &instance("b", Some("n1"), InstancePhase::Running),
        ]);
        assert_eq!(census.totals().phases[0], 1);
        assert_eq!(census.totals().phases[3], 1);
        assert_eq!(census.totals().pending, 1);

        // a is placed and starts: one placement, no longer pending.
        let observed = census.applied(&instance("a", Some("n2"), InstancePhase::Staging));
        assert_eq!(observed.placements, 1);
        assert_eq!(census.totals().pending, 0);
        assert_eq!(census.totals().phases[0], 0);
        assert_eq!(census.totals().phases[1], 1);
        // The same state again (a notice repeated after a resync) counts nothing.
        let observed = census.applied(&instance("a", Some("n2"), InstancePhase::Staging));
        assert_eq!(observed, Observed::default());
        assert_eq!(census.totals().phases[1], 1);

        // b's check fails twice, then passes.
        let b = || instance("b", Some("n1"), InstancePhase::Running);
        let observed = census.applied(&with_check(b(), false, 1));
        assert_eq!(observed.check_failures, 1);
        let observed = census.applied(&with_check(b(), false, 2));
        assert_eq!(
            observed,
            Observed {
                placements: 0,
                check_failures: 1
            }
        );
        assert_eq!((census.totals().unhealthy, census.totals().failing), (1, 1));
        let observed = census.applied(&with_check(b(), true, 0));
        assert_eq!(observed.check_failures, 0);
        assert_eq!((census.totals().healthy, census.totals().unhealthy), (1, 0));
        assert_eq!((census.totals().passing, census.totals().failing), (1, 0));

        // A terminal instance keeps its phase but no health.
        census.applied(&with_check(
            instance("b", Some("n1"), InstancePhase::Killed),
            true,
            0,
        ));
        assert_eq!((census.totals().healthy, census.totals().passing), (0, 0));
        assert_eq!(census.totals().phases[5], 1);

        census.deleted(&instance("b", Some("n1"), InstancePhase::Killed));
        census.deleted(&instance("a", Some("n2"), InstancePhase::Staging));
        assert_eq!(*census.totals(), Totals::default());

        // A resync replaces everything.
        census.replace([&instance("c", Some("n1"), InstancePhase::Running)]);
        assert_eq!(census.totals().phases[3], 1);
        assert_eq!(census.totals().phases.iter().sum::<i64>(), 1);
    }
}
