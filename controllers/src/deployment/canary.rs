//! Canary deployments (Pacer, beyond Marathon): with `upgradeStrategy.canary: N` an upgrade
//! first brings up only `N` instances of the new version — the rest stays on the old one — and
//! then pauses until a user promotes it (`pacer rollout promote APP` sets
//! [`PROMOTED_ANNOTATION`](pacer_schemas::deployment::PROMOTED_ANNOTATION) on the Deployment);
//! after that the rest rolls under the normal upgrade strategy.
//!
//! Pure and level-triggered like [`rolling`](super::rolling): the canary step is the rolling
//! step with two caps — at most `N` live new instances, at least `n − N` old ones kept — so
//! every bound of the rolling step still holds (it only starts and kills less), and a new
//! leader continues the same canary from the instances as they are.

use pacer_schemas::AppSpec;
use pacer_schemas::deployment::DeploymentActionKind;

use super::rolling::{InstanceState, StepPlan, Strategy, plan_step};

/// The canary size that applies to a deployment of `kind` towards `target` instances of
/// `spec`: only an upgrade or restart (old instances to replace) that is not an automatic
/// rollback, not promoted yet, and only when `0 < N < target` (a canary of the whole App is
/// just the rollout).
pub fn canary_size(
    spec: &AppSpec,
    kind: DeploymentActionKind,
    target: usize,
    reverting: bool,
    promoted: bool,
) -> Option<usize> {
    if kind != DeploymentActionKind::RestartApplication || reverting || promoted {
        return None;
    }
    let size = spec
        .upgrade_strategy
        .as_ref()
        .and_then(|strategy| strategy.canary)
        .and_then(|canary| usize::try_from(canary).ok())?;
    (size > 0 && size < target).then_some(size)
}

/// The canary step and whether the canary is complete (paused, awaiting promotion).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryStep {
    /// What to do now; never `done` (the deployment waits for its promotion).
    pub plan: StepPlan,
    /// `N` new instances run as healthy capacity and only `n − N` old ones are left: the
    /// deployment waits for `pacer rollout promote`.
    pub paused: bool,
}

/// The rolling step of `target` instances under `strategy`, capped to a canary of `canary`
/// new instances.
pub fn canary_step(
    target: usize,
    canary: usize,
    strategy: &Strategy,
    instances: &[InstanceState],
) -> CanaryStep {
    let mut plan = plan_step(target, strategy, instances);
    let live = |instance: &&InstanceState| !instance.phase.is_terminal() && instance.goal_running;
    let new_live = instances.iter().filter(live).filter(|i| i.current).count();
    let old_live = instances.iter().filter(live).filter(|i| !i.current).count();
    let keep_old = target.saturating_sub(canary);

    plan.start = plan.start.min(canary.saturating_sub(new_live));
    let mut old_kills_allowed = old_live.saturating_sub(keep_old);
    plan.kill.retain(|name| {
        let old = instances
            .iter()
            .any(|instance| instance.name == *name && !instance.current);
        if !old {
            return true;
        }
        if old_kills_allowed > 0 {
            old_kills_allowed -= 1;
            true
        } else {
            false
        }
    });
    let new_healthy = instances
        .iter()
        .filter(live)
        .filter(|i| i.current && i.healthy)
        .count();
    let being_killed = instances
        .iter()
        .filter(|i| !i.phase.is_terminal() && !i.goal_running)
        .count();
    let paused = plan.start == 0
        && plan.kill.is_empty()
        && new_live == canary
        && new_healthy == canary
        && old_live <= keep_old
        && being_killed == 0;
    plan.done = false;
    plan.progress.updated = (new_live + plan.start).min(target);
    CanaryStep { plan, paused }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use pacer_schemas::Time;
    use pacer_schemas::app::{KillSelection, UpgradeStrategy};
    use pacer_schemas::instance::InstancePhase;

    use super::*;

    fn strategy(mhc: f64, moc: f64) -> Strategy {
        Strategy {
            minimum_health_capacity: mhc,
            maximum_over_capacity: moc,
            kill_selection: KillSelection::YoungestFirst,
        }
    }

    fn running(name: &str, current: bool, age: i64) -> InstanceState {
        InstanceState {
            name: name.to_owned(),
            current,
            phase: InstancePhase::Running,
            goal_running: true,
            healthy: true,
            since: Time::from_unix_seconds(1_700_000_000 + age),
        }
    }

    fn spec(canary: Option<i32>) -> AppSpec {
        AppSpec {
            upgrade_strategy: Some(UpgradeStrategy {
                canary,
                ..UpgradeStrategy::default()
            }),
            ..AppSpec::default()
        }
    }

    #[test]
    fn a_canary_applies_to_upgrades_smaller_than_the_app_until_promoted() {
        use DeploymentActionKind::*;
        let two = spec(Some(2));
        assert_eq!(
            canary_size(&two, RestartApplication, 5, false, false),
            Some(2)
        );
        for (spec, kind, target, reverting, promoted) in [
            (&two, StartApplication, 5, false, false),
            (&two, ScaleApplication, 5, false, false),
            (&two, RestartApplication, 5, true, false),
            (&two, RestartApplication, 5, false, true),
            (&two, RestartApplication, 2, false, false),
            (&spec(Some(0)), RestartApplication, 5, false, false),
            (&spec(None), RestartApplication, 5, false, false),
        ] {
            assert_eq!(
                canary_size(spec, kind, target, reverting, promoted),
                None,
                "{kind:?} target {target} reverting {reverting} promoted {promoted}"
            );
        }
    }

    /// Drives a canary of `canary` out of `n` to its pause for every strategy, as the rolling
    /// simulation does: started instances turn healthy and killed ones vanish a round later.
    /// It must pause with exactly `canary` new and `n − canary` old instances, never going
    /// below the minimum healthy capacity or above the capacity bound on the way.
    #[test]
    fn every_strategy_pauses_with_exactly_the_canary_running() {
        let fractions = [0.0, 0.25, 0.5, 1.0];
        for (n, canary) in [(2usize, 1usize), (5, 1), (5, 2), (10, 3)] {
            for mhc in fractions {
                for moc in fractions {
                    let strategy = strategy(mhc, moc);
                    let mut fleet: Vec<InstanceState> = (0..n)
                        .map(|i| running(&format!("old{i}"), false, i as i64))
                        .collect();
                    let min = strategy.min_healthy(n);
                    let mut bound = strategy.max_capacity(n);
                    if bound <= min {
                        bound = min + 1;
                    }
                    let mut next = 0;
                    let mut paused = false;
                    for _round in 0..100 {
                        let step = canary_step(n, canary, &strategy, &fleet);
                        assert!(!step.plan.done);
                        if step.paused {
                            paused = true;
                            break;
                        }
                        fleet.retain(|i| i.goal_running);
                        for instance in &mut fleet {
                            if step.plan.kill.contains(&instance.name) {
                                instance.goal_running = false;
                                instance.healthy = false;
                            } else {
                                instance.healthy = true;
                            }
                        }
                        for _ in 0..step.plan.start {
                            let mut new = running(&format!("new{next}"), true, 100 + next);
                            new.healthy = false;
                            new.phase = InstancePhase::Staging;
                            fleet.push(new);
                            next += 1;
                        }
                        let healthy = fleet.iter().filter(|i| i.goal_running && i.healthy).count();
                        assert!(healthy >= min, "n={n} c={canary} {strategy:?}");
                        assert!(fleet.len() <= bound, "n={n} c={canary} {strategy:?}");
                    }
                    assert!(paused, "n={n} c={canary} {strategy:?} never paused");
                    let new = fleet.iter().filter(|i| i.current).count();
                    let old = fleet.iter().filter(|i| !i.current).count();
                    assert_eq!((new, old), (canary, n - canary), "{strategy:?}");
                    // Paused means paused: the same state plans nothing more.
                    let again = canary_step(n, canary, &strategy, &fleet);
                    assert!(again.paused && again.plan.start == 0 && again.plan.kill.is_empty());
                    // Promoted: the ordinary rolling step takes over and moves on.
                    let rolling = plan_step(n, &strategy, &fleet);
                    assert!(
                        rolling.start > 0 || !rolling.kill.is_empty(),
                        "{strategy:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_unhealthy_canary_does_not_pause() {
        let mut fleet: Vec<InstanceState> = (0..3)
            .map(|i| running(&format!("old{i}"), false, i))
            .collect();
        let mut canary = running("new0", true, 10);
        canary.healthy = false;
        fleet.push(canary);
        let step = canary_step(3, 1, &strategy(1.0, 0.0), &fleet);
        assert!(!step.paused);
        assert_eq!(step.plan.start, 0, "the canary is already there");
        assert!(
            step.plan.kill.is_empty(),
            "no old instance goes for an unhealthy canary"
        );
    }
}
