//! The rolling step: a pure function from one App's desired state (instance count, current
//! config version, upgrade strategy, kill selection) and its Instances (version, phase, goal,
//! health, age) to what to do now — how many new instances to start, which to kill, which
//! finished objects to delete — and whether the App has converged.
//!
//! It is level-triggered: it looks only at the current state, so calling it again after any
//! subset of its actions took effect (or after a leader change) continues the same rollout.
//! The rules are Marathon's (`TaskReplaceActor`), restated over state instead of events:
//!
//! * `minHealthy = ⌈n · minimumHealthCapacity⌉` instances must stay *healthy capacity* (contract
//!   point 5: running, healthy when the template has health checks, ready when it has
//!   readiness checks) at all times: an old instance that is healthy capacity is killed only
//!   while the rest keeps at least `minHealthy`; one that is not may be killed at once.
//! * `maxCapacity = ⌊n · (1 + maximumOverCapacity)⌋` bounds the instances alive at once (old,
//!   new, and those being killed until they are gone); new instances start only into that
//!   room. When `maxCapacity ≤ minHealthy` while old instances remain (e.g. 1/0), the bound is
//!   `minHealthy + 1`, so one new instance starts before an old one is killed (Marathon does
//!   the same, else the rollout could not move).
//! * Live instances of the current version beyond `n` are killed (scale down), picked in
//!   [`kill_order`]: not-yet-running and unhealthy first, then per `killSelection`.
//! * Instances that ended (terminal phase) are deleted; ones that ended on their own are thus
//!   replaced by the count rule.
//!
//! Examples from Marathon's docs: `n = 10`, `mhc = 0.6`, `moc = 0` kills 4 old at once, starts
//! 4 new as the kills complete, and then one old per new one that turns healthy; `0/0` kills
//! every old instance before starting any new one; `1/0` starts one new before killing one
//! old.

use std::cmp::Ordering;

use pacer_schemas::Time;
use pacer_schemas::app::KillSelection;
use pacer_schemas::instance::InstancePhase;

/// Slack for float rounding (`10 × 0.6` is `6.000000000000001`).
const EPSILON: f64 = 1e-9;

/// How an App's instances are replaced and reduced.
#[derive(Clone, Debug, PartialEq)]
pub struct Strategy {
    /// Fraction of the target that must stay healthy (0..=1).
    pub minimum_health_capacity: f64,
    /// Fraction of the target that may run in addition (0..=1).
    pub maximum_over_capacity: f64,
    /// Which instances go first on scale down.
    pub kill_selection: KillSelection,
}

impl Default for Strategy {
    /// Marathon's defaults: 1.0 / 1.0, youngest first.
    fn default() -> Self {
        Self {
            minimum_health_capacity: 1.0,
            maximum_over_capacity: 1.0,
            kill_selection: KillSelection::YoungestFirst,
        }
    }
}

impl Strategy {
    /// `⌈n · minimumHealthCapacity⌉`, at most `n`.
    pub fn min_healthy(&self, target: usize) -> usize {
        let fraction = self.minimum_health_capacity.clamp(0.0, 1.0);
        let value = (target as f64 * fraction - EPSILON).ceil().max(0.0);
        (value as usize).min(target)
    }

    /// `⌊n · (1 + maximumOverCapacity)⌋`, at least `n`.
    pub fn max_capacity(&self, target: usize) -> usize {
        let fraction = self.maximum_over_capacity.clamp(0.0, 1.0);
        let value = (target as f64 * (1.0 + fraction) + EPSILON)
            .floor()
            .max(0.0);
        (value as usize).max(target)
    }
}

/// One Instance as the step sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceState {
    /// Its name (unique within the App).
    pub name: String,
    /// Whether it runs the App's current config version.
    pub current: bool,
    /// Its phase.
    pub phase: InstancePhase,
    /// Whether its goal is still `Running` (false: a kill was already asked for).
    pub goal_running: bool,
    /// Whether it counts as healthy capacity (contract point 5).
    pub healthy: bool,
    /// When it started running (or was created, before that): the age `killSelection` uses.
    pub since: Option<Time>,
}

impl InstanceState {
    fn alive(&self) -> bool {
        !self.phase.is_terminal()
    }
}

/// What to do now for one App.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepPlan {
    /// New instances of the current version to create.
    pub start: usize,
    /// Instances to kill (names), in kill order.
    pub kill: Vec<String>,
    /// Terminal instances to delete (names).
    pub delete: Vec<String>,
    /// Whether the App has converged: exactly `n` live instances, all of the current version,
    /// all healthy capacity, nothing else alive and nothing left to do.
    pub done: bool,
    /// Progress, for the Deployment's status.
    pub progress: Progress,
}

/// Counts after the step's decisions (kills already counted as old).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The target `n`.
    pub target: usize,
    /// Live current-version instances kept (including the ones this step starts).
    pub updated: usize,
    /// Of the kept current-version instances, how many are healthy capacity now.
    pub healthy: usize,
    /// Live instances of old versions or being killed.
    pub old: usize,
}

/// The order in which instances are killed: those that are not healthy capacity first (not
/// running yet, unreachable, failing checks — losing them costs no capacity), then by
/// `selection` on age (youngest first: most recently started first), then by name so the
/// choice is deterministic.
pub fn kill_order(a: &InstanceState, b: &InstanceState, selection: &KillSelection) -> Ordering {
    a.healthy
        .cmp(&b.healthy)
        .then_with(|| match selection {
            KillSelection::OldestFirst => compare_age(a.since, b.since),
            // YoungestFirst and any selection this version does not know.
            _ => compare_age(b.since, a.since),
        })
        .then_with(|| a.name.cmp(&b.name))
}

/// Older first; an unknown age counts as youngest.
fn compare_age(a: Option<Time>, b: Option<Time>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// The step for an App that wants `target` instances of its current version under
/// `strategy`, given its `instances`.
pub fn plan_step(target: usize, strategy: &Strategy, instances: &[InstanceState]) -> StepPlan {
    let delete: Vec<String> = instances
        .iter()
        .filter(|instance| !instance.alive())
        .map(|instance| instance.name.clone())
        .collect();
    let alive: Vec<&InstanceState> = instances.iter().filter(|i| i.alive()).collect();
    let being_killed = alive.iter().filter(|i| !i.goal_running).count();
    let mut new: Vec<&InstanceState> = alive
        .iter()
        .copied()
        .filter(|i| i.goal_running && i.current)
        .collect();
    let mut old: Vec<&InstanceState> = alive
        .iter()
        .copied()
        .filter(|i| i.goal_running && !i.current)
        .collect();
    let selection = &strategy.kill_selection;
    let mut kill: Vec<String> = Vec::new();

    // Scale down: current-version instances beyond the target.
    if new.len() > target {
        new.sort_by(|a, b| kill_order(a, b, selection));
        let extra = new.len() - target;
        kill.extend(new.drain(..extra).map(|i| i.name.clone()));
    }

    // Replace old instances while keeping `min_healthy` healthy capacity.
    let min_healthy = strategy.min_healthy(target);
    let mut healthy = new.iter().chain(old.iter()).filter(|i| i.healthy).count();
    old.sort_by(|a, b| kill_order(a, b, selection));
    for instance in &old {
        if !instance.healthy {
            kill.push(instance.name.clone());
        } else if healthy > min_healthy {
            healthy -= 1;
            kill.push(instance.name.clone());
        } else {
            break;
        }
    }

    // Start new instances into the room left under the capacity bound. Everything alive
    // (including what is being killed) occupies room until it is gone.
    let mut max_capacity = strategy.max_capacity(target);
    if old.len() + being_killed > 0 && max_capacity <= min_healthy {
        max_capacity = min_healthy + 1;
    }
    // An unreachable instance given up on (Lost, goal no longer Running: the node lifecycle
    // controller decommissioned it after `inactiveAfterSeconds`) is replaced at once, as
    // Marathon does; it no longer takes room.
    let occupying = alive
        .iter()
        .filter(|i| i.phase != InstancePhase::Lost || i.goal_running)
        .count();
    let wanted = target.saturating_sub(new.len());
    let room = max_capacity.saturating_sub(occupying);
    let start = wanted.min(room);

    let new_healthy = new.iter().filter(|i| i.healthy).count();
    let old_alive = alive.len() - new.len();
    let done = start == 0
        && kill.is_empty()
        && old_alive == 0
        && new.len() == target
        && new_healthy == target;
    StepPlan {
        start,
        kill,
        delete,
        done,
        progress: Progress {
            target,
            updated: new.len() + start,
            healthy: new_healthy,
            old: old_alive,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An instance: `v` current or old, phase, goal running, healthy, started at second `age`.
    fn inst(
        name: &str,
        current: bool,
        phase: InstancePhase,
        healthy: bool,
        age: i64,
    ) -> InstanceState {
        InstanceState {
            name: name.to_owned(),
            current,
            phase,
            goal_running: true,
            healthy,
            since: Time::from_unix_seconds(1_700_000_000 + age),
        }
    }

    fn running(name: &str, current: bool, age: i64) -> InstanceState {
        inst(name, current, InstancePhase::Running, true, age)
    }

    fn strategy(mhc: f64, moc: f64) -> Strategy {
        Strategy {
            minimum_health_capacity: mhc,
            maximum_over_capacity: moc,
            kill_selection: KillSelection::YoungestFirst,
        }
    }

    fn old_fleet(n: usize) -> Vec<InstanceState> {
        (0..n)
            .map(|i| running(&format!("old{i}"), false, i as i64))
            .collect()
    }

    #[test]
    fn capacity_bounds_round_like_marathon() {
        for (n, mhc, moc, min, max) in [
            (10, 0.6, 0.0, 6, 10),
            (20, 0.8, 0.0, 16, 20),
            (3, 1.0, 0.0, 3, 3),
            (3, 0.5, 0.5, 2, 4),
            (3, 0.0, 1.0, 0, 6),
            (0, 1.0, 1.0, 0, 0),
            (7, 0.33, 0.2, 3, 8),
        ] {
            let s = strategy(mhc, moc);
            assert_eq!(s.min_healthy(n), min, "min n={n} mhc={mhc}");
            assert_eq!(s.max_capacity(n), max, "max n={n} moc={moc}");
        }
    }

    /// First step of an upgrade of `n` healthy old instances, for Marathon's documented and
    /// edge cases: (n, mhc, moc, expected starts, expected kills).
    #[test]
    fn first_step_of_an_upgrade() {
        for (n, mhc, moc, start, kills) in [
            // Marathon docs: db 10 instances, mhc 0.6 → scale old db to 6.
            (10, 0.6, 0.0, 0, 4),
            // app 20 instances, mhc 0.8 → scale old app to 16.
            (20, 0.8, 0.0, 0, 4),
            // 1/0: start one new before killing one old.
            (3, 1.0, 0.0, 1, 0),
            // 0/0: stop all, start nothing until they are gone.
            (3, 0.0, 0.0, 0, 3),
            // 1/1 (default): start the whole new set side by side.
            (3, 1.0, 1.0, 3, 0),
            // 0.5/0.5: kill 1 (keep 2), room 4-3 = 1.
            (3, 0.5, 0.5, 1, 1),
            // 0/1: kill everything and start everything at once.
            (4, 0.0, 1.0, 4, 4),
        ] {
            let plan = plan_step(n, &strategy(mhc, moc), &old_fleet(n));
            assert_eq!(plan.start, start, "start n={n} {mhc}/{moc}");
            assert_eq!(plan.kill.len(), kills, "kills n={n} {mhc}/{moc}");
            assert!(!plan.done);
        }
    }

    #[test]
    fn old_instances_go_youngest_first_and_unhealthy_before_healthy() {
        let mut fleet = old_fleet(4);
        fleet[0].healthy = false; // the oldest, but failing its checks
        let plan = plan_step(4, &strategy(0.5, 0.0), &fleet);
        // Kill the unhealthy one for free, then the youngest healthy ones down to 2 healthy.
        assert_eq!(plan.kill, vec!["old0", "old3"]);
        let mut oldest = strategy(0.5, 0.0);
        oldest.kill_selection = KillSelection::OldestFirst;
        let plan = plan_step(4, &oldest, &old_fleet(4));
        assert_eq!(plan.kill, vec!["old0", "old1"]);
    }

    #[test]
    fn scale_down_honours_kill_selection_and_prefers_instances_not_running() {
        let mut fleet: Vec<InstanceState> = (0..5)
            .map(|i| running(&format!("i{i}"), true, i as i64))
            .collect();
        let plan = plan_step(3, &Strategy::default(), &fleet);
        assert_eq!(plan.kill, vec!["i4", "i3"], "youngest first");
        let oldest = Strategy {
            kill_selection: KillSelection::OldestFirst,
            ..Strategy::default()
        };
        assert_eq!(plan_step(3, &oldest, &fleet).kill, vec!["i0", "i1"]);
        fleet[1] = inst("i1", true, InstancePhase::Staging, false, 1);
        assert_eq!(plan_step(4, &oldest, &fleet).kill, vec!["i1"]);
        assert_eq!(plan_step(3, &Strategy::default(), &fleet).start, 0);
    }

    #[test]
    fn creates_scales_up_and_converges() {
        let plan = plan_step(3, &Strategy::default(), &[]);
        assert_eq!((plan.start, plan.kill.len(), plan.done), (3, 0, false));
        let fleet: Vec<InstanceState> =
            (0..3).map(|i| running(&format!("i{i}"), true, i)).collect();
        let plan = plan_step(3, &Strategy::default(), &fleet);
        assert!(plan.done, "{plan:?}");
        assert_eq!(plan_step(5, &strategy(1.0, 0.0), &fleet).start, 2);
        // Zero instances wanted and none there: done at once.
        assert!(plan_step(0, &Strategy::default(), &[]).done);
        // Not done while a current instance is not healthy yet.
        let mut starting = fleet.clone();
        starting[2] = inst("i2", true, InstancePhase::Starting, false, 2);
        let plan = plan_step(3, &Strategy::default(), &starting);
        assert!(!plan.done && plan.start == 0 && plan.kill.is_empty());
    }

    #[test]
    fn finished_instances_are_deleted_and_replaced() {
        let mut fleet: Vec<InstanceState> =
            (0..3).map(|i| running(&format!("i{i}"), true, i)).collect();
        fleet[1].phase = InstancePhase::Failed;
        fleet[1].healthy = false;
        let mut killed = running("k", true, 9);
        killed.goal_running = false;
        killed.phase = InstancePhase::Killed;
        fleet.push(killed);
        let plan = plan_step(3, &strategy(1.0, 0.0), &fleet);
        assert_eq!(plan.delete, vec!["i1", "k"]);
        assert_eq!(plan.start, 1);
    }

    #[test]
    fn unreachable_instances_given_up_on_are_replaced_at_once() {
        let mut fleet: Vec<InstanceState> =
            (0..3).map(|i| running(&format!("i{i}"), true, i)).collect();
        fleet[0].phase = InstancePhase::Lost;
        fleet[0].healthy = false;
        // Still Running as goal: it may come back; it occupies its room (0 over capacity).
        assert_eq!(plan_step(3, &strategy(1.0, 0.0), &fleet).start, 0);
        fleet[0].goal_running = false;
        let plan = plan_step(3, &strategy(1.0, 0.0), &fleet);
        assert_eq!(plan.start, 1);
        assert!(!plan.done, "not done until it is gone");
    }

    #[test]
    fn all_unhealthy_old_instances_are_replaced_without_waiting() {
        let fleet: Vec<InstanceState> = (0..3)
            .map(|i| inst(&format!("o{i}"), false, InstancePhase::Running, false, i))
            .collect();
        let plan = plan_step(3, &strategy(1.0, 0.0), &fleet);
        assert_eq!(plan.kill.len(), 3, "no capacity to lose");
        // They are still alive until the agent reports them killed: room for one (1/0 bump).
        assert_eq!(plan.start, 1);
    }

    #[test]
    fn new_instances_that_never_turn_healthy_stall_the_upgrade_above_minimum() {
        let mut fleet = old_fleet(2);
        fleet.push(inst("n0", true, InstancePhase::Running, false, 10));
        let plan = plan_step(2, &strategy(1.0, 0.0), &fleet);
        assert!(plan.kill.is_empty() && plan.start == 0 && !plan.done);
    }

    #[test]
    fn scaling_during_an_upgrade_uses_the_new_target() {
        // Mid-upgrade 1/0 with 3 old and 1 healthy new; the user scales to 2.
        let mut fleet = old_fleet(3);
        fleet.push(running("n0", true, 10));
        let plan = plan_step(2, &strategy(1.0, 0.0), &fleet);
        // min healthy 2 of 4 healthy: two old go; no start (alive 4 > capacity).
        assert_eq!(plan.kill.len(), 2);
        assert_eq!(plan.start, 0);
        // Scaled up to 5 instead: one old may go? min 5 > healthy 4: none; room 6-4 = 2.
        let plan = plan_step(5, &strategy(1.0, 0.0), &fleet);
        assert!(plan.kill.is_empty());
        assert_eq!(plan.start, 2);
    }

    /// Simulates whole rollouts for every strategy combination: each round applies the plan,
    /// the "agent" makes started instances healthy and killed ones vanish one round later.
    /// At every observed state, healthy capacity never drops below `minHealthy` (unless it
    /// started below) and live instances never exceed the capacity bound.
    #[test]
    fn simulated_rollouts_respect_the_bounds_for_every_strategy() {
        let fractions = [0.0, 0.25, 0.5, 0.6, 0.8, 1.0];
        for n in [0usize, 1, 2, 3, 5, 10] {
            for mhc in fractions {
                for moc in fractions {
                    simulate(n, &strategy(mhc, moc));
                }
            }
        }
    }

    fn simulate(n: usize, strategy: &Strategy) {
        let mut fleet = old_fleet(n);
        let min = strategy.min_healthy(n);
        let mut bound = strategy.max_capacity(n);
        if bound <= min && n > 0 {
            bound = min + 1;
        }
        let mut next = 0;
        for round in 0..200 {
            let plan = plan_step(n, strategy, &fleet);
            if plan.done {
                assert!(fleet.iter().all(|i| i.current && i.healthy));
                assert_eq!(fleet.len(), n);
                return;
            }
            // Agent: killed instances are gone, terminal ones deleted.
            fleet.retain(|i| i.goal_running && !plan.delete.contains(&i.name));
            for instance in &mut fleet {
                if plan.kill.contains(&instance.name) {
                    instance.goal_running = false;
                    instance.healthy = false;
                } else if instance.current {
                    instance.healthy = true;
                    instance.phase = InstancePhase::Running;
                }
            }
            for _ in 0..plan.start {
                fleet.push(inst(
                    &format!("new{next}"),
                    true,
                    InstancePhase::Staging,
                    false,
                    100 + next,
                ));
                next += 1;
            }
            let healthy = fleet.iter().filter(|i| i.goal_running && i.healthy).count();
            assert!(
                healthy >= min,
                "n={n} {strategy:?} round {round}: {healthy} healthy < {min}"
            );
            assert!(
                fleet.len() <= bound,
                "n={n} {strategy:?} round {round}: {} alive > {bound}",
                fleet.len()
            );
        }
        panic!("n={n} {strategy:?}: no convergence in 200 rounds");
    }
}
