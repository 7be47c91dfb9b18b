//! Launch backoff per App (Marathon's `RateLimiter`), as pure functions over the App's spec,
//! its recorded [`LaunchDelay`] (in `status.launchDelay`, so it survives a leader change) and
//! what its Instances show now.
//!
//! Rules:
//!
//! * **What counts as a failure**: an Instance of the App's current config version that ended
//!   on its own while its goal was still `Running` — phase `Failed` (non-zero exit, could not
//!   start, e.g. `ImageNotFound`) or `Finished` (exit 0: a long-running app must not end) — or
//!   one the health controller decommissioned (status reason [`HEALTH_KILL_REASON`]), counted
//!   as soon as that reason shows, because the agent's `Killed` report replaces the reason; such
//!   an instance is marked with [`FAILURE_RECORDED_ANNOTATION`] in the transaction that records
//!   it, so it counts once. `Killed` on request does not count (Marathon: `TASK_KILLED` does
//!   not). Failures of older config versions are recorded as the App's last failure but do not
//!   grow the delay.
//! * **The delay** after `n` consecutive failures is `backoffSeconds × backoffFactor^(n−1)`,
//!   capped at `maxLaunchDelaySeconds` — the first failure waits `backoffSeconds` (Marathon's
//!   `Delay` starts at `backoff` and multiplies by `factor` on each further failure). It runs
//!   from the moment the controller records the failure: no launch of the App (replacement or
//!   scale-up) before `until`.
//! * **Reset** (the delay is dropped, failures count from zero) when
//!   1. an instance launched after the last recorded failure has been running as healthy
//!      capacity (contract point 5) for [`viable_after`](BackoffInputs::viable_after) (60 s by
//!      default) — it is viable;
//!   2. `maxLaunchDelaySeconds` passed after `until` without a new failure (Marathon's
//!      clean-up of overdue delays; covers an App scaled to zero meanwhile);
//!   3. the App's config changes (a new config version: any change but a pure scale, and a
//!      restart) — done where the version is written;
//!   4. a user removes `status.launchDelay` (`DELETE /v2/queue/{appId}/delay`,
//!      `pacer queue reset APP`).
//!
//! [`decide`] also says when the decision next changes by itself (`wake_at`), so the controller
//! sleeps exactly until then instead of polling.

use pacer_schemas::app::{InstanceFailure, LaunchDelay};
use pacer_schemas::defaults::{BACKOFF_FACTOR, BACKOFF_SECONDS, MAX_LAUNCH_DELAY_SECONDS};
use pacer_schemas::instance::{InstanceGoal, InstancePhase};
use pacer_schemas::{AppSpec, Instance, Time};

/// The status reason of an instance killed for failing its health checks; such a kill counts
/// as a launch failure.
pub const HEALTH_KILL_REASON: &str = "HealthCheckFailed";

/// The annotation on a health-killed Instance whose failure is already recorded.
pub const FAILURE_RECORDED_ANNOTATION: &str = "pacer.dev/launch-failure-recorded";

/// An App's backoff settings, with Marathon's defaults for unset fields.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffPolicy {
    /// The first delay, in seconds.
    pub backoff_seconds: f64,
    /// The factor each further failure multiplies the delay by (at least 1).
    pub factor: f64,
    /// The longest delay, in seconds.
    pub max_seconds: f64,
}

impl BackoffPolicy {
    /// The policy of `spec`.
    pub fn of(spec: &AppSpec) -> Self {
        Self {
            backoff_seconds: f64::from(spec.backoff_seconds.unwrap_or(BACKOFF_SECONDS).max(0)),
            factor: spec.backoff_factor.unwrap_or(BACKOFF_FACTOR).max(1.0),
            max_seconds: f64::from(
                spec.max_launch_delay_seconds
                    .unwrap_or(MAX_LAUNCH_DELAY_SECONDS)
                    .max(0),
            ),
        }
    }

    /// The delay after `failures` consecutive failures: 0 for none, else
    /// `backoff × factor^(failures − 1)`, at most the cap.
    pub fn delay_seconds(&self, failures: i32) -> f64 {
        if failures <= 0 {
            return 0.0;
        }
        let grown = self.backoff_seconds * self.factor.powi(failures - 1);
        if grown.is_finite() {
            grown.min(self.max_seconds)
        } else {
            self.max_seconds
        }
    }
}

/// Whether `instance` ended on its own as a launch failure (see the module docs); `None` when
/// it did not fail, else the failure record for the App's status.
pub fn launch_failure(instance: &Instance) -> Option<InstanceFailure> {
    let status = instance.status.as_ref()?;
    let recorded = instance
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|annotations| annotations.contains_key(FAILURE_RECORDED_ANNOTATION));
    let goal_running = instance
        .spec
        .goal
        .as_ref()
        .is_none_or(|goal| *goal == InstanceGoal::Running);
    // The health controller's reason, or — when a fast agent already overwrote it with its
    // own `Killed` — a decommissioned instance whose health results show the failure.
    let failed_check = (!goal_running)
        .then(|| failed_health_check(instance))
        .flatten();
    let health_kill =
        status.reason.as_deref() == Some(HEALTH_KILL_REASON) || failed_check.is_some();
    let ended = matches!(
        status.phase,
        InstancePhase::Failed | InstancePhase::Finished
    );
    if recorded || !(health_kill || (status.phase.is_terminal() && ended && goal_running)) {
        return None;
    }
    let phase = if health_kill {
        InstancePhase::Killed
    } else {
        status.phase
    };
    let message = match failed_check {
        Some(message) if status.reason.as_deref() != Some(HEALTH_KILL_REASON) => Some(message),
        _ => status.message.clone().or_else(|| {
            status
                .exit_code
                .map(|code| format!("exited with code {code}"))
        }),
    };
    Some(InstanceFailure {
        instance: Some(instance.metadata.name_str().to_owned()),
        node_name: instance.spec.node_name.clone(),
        host: status.host.clone(),
        phase: Some(format!("{phase:?}")),
        message,
        timestamp: status
            .finished_at
            .or(status.started_at)
            .or(instance.metadata.creation_timestamp),
        version: Some(instance.spec.app_version.clone()),
        reason: status.reason.clone(),
        exit_code: status.exit_code,
    })
}

/// The health check result of `instance` that failed `maxConsecutiveFailures` times in a row
/// (0 disables the kill), as a message; the same rule the health controller kills by.
fn failed_health_check(instance: &Instance) -> Option<String> {
    let status = instance.status.as_ref()?;
    let checks = instance.spec.template.as_ref()?.health_checks.as_ref()?;
    status.health.iter().find_map(|result| {
        let check = checks.get(usize::try_from(result.index).ok()?)?;
        let max = check.max_consecutive_failures.unwrap_or(3);
        (max > 0 && !result.alive && result.consecutive_failures >= max).then(|| {
            format!(
                "health check {} failed {} times in a row: {}",
                result.index,
                result.consecutive_failures,
                result
                    .last_failure_cause
                    .as_deref()
                    .unwrap_or("no cause given")
            )
        })
    })
}

/// A short reason for the queue view: `Failed: exit code 1` when it exited, else the agent's
/// reason (`Failed: ImageNotFound`).
pub fn failure_reason(failure: &InstanceFailure) -> String {
    let phase = failure.phase.as_deref().unwrap_or("Failed");
    match (failure.exit_code, &failure.reason) {
        (Some(code), _) => format!("{phase}: exit code {code}"),
        (None, Some(reason)) => format!("{phase}: {reason}"),
        (None, None) => phase.to_owned(),
    }
}

/// What [`decide`] looks at for one App.
#[derive(Clone, Debug)]
pub struct BackoffInputs<'a> {
    /// The App's settings.
    pub policy: BackoffPolicy,
    /// The delay recorded in the App's status.
    pub recorded: Option<&'a LaunchDelay>,
    /// Failures of the current config version recorded in this round, oldest first.
    pub new_failures: &'a [InstanceFailure],
    /// For each live current-version instance with goal Running that counts as healthy
    /// capacity: (created, started running).
    pub viable_candidates: &'a [(Option<Time>, Option<Time>)],
    /// How long a relaunched instance must run to reset the delay.
    pub viable_after: std::time::Duration,
    /// Now (sub-second precision).
    pub now: Time,
}

/// What to do about an App's launch delay now.
#[derive(Clone, Debug, PartialEq)]
pub struct BackoffDecision {
    /// The delay to record (`None`: no delay).
    pub delay: Option<LaunchDelay>,
    /// Whether the App may launch instances now.
    pub launch_allowed: bool,
    /// When this decision next changes without any other change: the delay's end, a
    /// candidate becoming viable, or the delay expiring.
    pub wake_at: Option<Time>,
}

fn plus_seconds(at: Time, seconds: f64) -> Time {
    let millis = (seconds * 1000.0).ceil();
    let millis = if millis.is_finite() {
        millis as i64
    } else {
        i64::MAX / 2
    };
    at.timestamp()
        .checked_add(jiff::SignedDuration::from_millis(millis))
        .map_or(at, Time::new)
}

/// Keeps the earlier of `slot` and `at`.
fn earliest(slot: &mut Option<Time>, at: Time) {
    *slot = Some(slot.map_or(at, |current| current.min(at)));
}

/// The launch-delay decision for one App (see the module docs for the rules).
pub fn decide(inputs: &BackoffInputs<'_>) -> BackoffDecision {
    let now = inputs.now;
    let mut delay = inputs.recorded.cloned();
    let mut wake_at: Option<Time> = None;
    if let Some(recorded) = &delay {
        let until = recorded.until.unwrap_or(now);
        let recorded_at = plus_seconds(until, -recorded.delay_seconds);
        // 1. A viable instance launched after the last failure resets it.
        let viable_after = inputs.viable_after.as_secs_f64();
        let mut viable = false;
        for (created, started) in inputs.viable_candidates {
            let launched_after = created
                .is_some_and(|created| created.as_unix_seconds() >= recorded_at.as_unix_seconds());
            let (true, Some(started)) = (launched_after, started) else {
                continue;
            };
            let viable_at = plus_seconds(*started, viable_after);
            if viable_at <= now {
                viable = true;
            } else {
                earliest(&mut wake_at, viable_at);
            }
        }
        // 2. Overdue by maxLaunchDelaySeconds without a new failure.
        let expires = plus_seconds(until, inputs.policy.max_seconds);
        if viable || expires <= now {
            delay = None;
            wake_at = None;
        } else {
            earliest(&mut wake_at, expires);
        }
    }
    if let Some(last) = inputs.new_failures.last() {
        let mut next = delay.unwrap_or_default();
        let added = i32::try_from(inputs.new_failures.len()).unwrap_or(i32::MAX);
        next.consecutive_failures = next.consecutive_failures.saturating_add(added);
        next.delay_seconds = inputs.policy.delay_seconds(next.consecutive_failures);
        let until = plus_seconds(now, next.delay_seconds);
        next.until = Some(until);
        next.since = Some(next.since.unwrap_or(now));
        next.reason = Some(failure_reason(last));
        // A fresh failure supersedes any viability or expiry wake-up.
        wake_at = None;
        earliest(&mut wake_at, plus_seconds(until, inputs.policy.max_seconds));
        delay = Some(next);
    }
    let until = delay.as_ref().and_then(|delay| delay.until);
    let launch_allowed = until.is_none_or(|until| until <= now);
    if let Some(until) = until
        && !launch_allowed
    {
        earliest(&mut wake_at, until);
    }
    BackoffDecision {
        delay,
        launch_allowed,
        wake_at,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use pacer_schemas::instance::InstanceStatus;

    use super::*;

    fn policy(backoff: f64, factor: f64, max: f64) -> BackoffPolicy {
        BackoffPolicy {
            backoff_seconds: backoff,
            factor,
            max_seconds: max,
        }
    }

    fn at(seconds: f64) -> Time {
        plus_seconds(Time::from_unix_seconds(1_700_000_000).unwrap(), seconds)
    }

    fn failure(name: &str) -> InstanceFailure {
        InstanceFailure {
            instance: Some(name.to_owned()),
            phase: Some("Failed".to_owned()),
            exit_code: Some(1),
            ..InstanceFailure::default()
        }
    }

    #[test]
    fn delays_grow_by_the_factor_up_to_the_cap() {
        // (backoff, factor, cap, failures, expected seconds)
        for (backoff, factor, cap, failures, expected) in [
            (1.0, 1.15, 3600.0, 0, 0.0),
            (1.0, 1.15, 3600.0, 1, 1.0),
            (1.0, 1.15, 3600.0, 2, 1.15),
            (1.0, 1.15, 3600.0, 3, 1.3225),
            (1.0, 1.15, 3600.0, 10, 3.517_876_291),
            (1.0, 1.15, 3600.0, 60, 3600.0), // 1.15^59 ≈ 3780 → capped
            (1.0, 1.15, 3600.0, i32::MAX, 3600.0),
            (1.0, 2.0, 8.0, 3, 4.0),
            (1.0, 2.0, 8.0, 4, 8.0),
            (1.0, 2.0, 8.0, 5, 8.0),
            (5.0, 1.0, 60.0, 20, 5.0),   // factor 1: constant
            (120.0, 2.0, 60.0, 1, 60.0), // the first delay is capped too
            (0.0, 2.0, 60.0, 7, 0.0),    // backoffSeconds 0: no delay
        ] {
            let got = policy(backoff, factor, cap).delay_seconds(failures);
            assert!(
                (got - expected).abs() < 1e-6,
                "{backoff}×{factor}^({failures}−1) cap {cap}: {got} ≠ {expected}"
            );
        }
        let spec = AppSpec::default();
        assert_eq!(BackoffPolicy::of(&spec), policy(1.0, 1.15, 3600.0));
    }

    #[test]
    fn failures_add_up_and_hold_launches_until_the_delay_ends() {
        let p = policy(1.0, 2.0, 8.0);
        let failures = [failure("a")];
        let first = decide(&BackoffInputs {
            policy: p,
            recorded: None,
            new_failures: &failures,
            viable_candidates: &[],
            viable_after: Duration::from_secs(60),
            now: at(0.0),
        });
        let delay = first.delay.clone().unwrap();
        assert_eq!((delay.consecutive_failures, delay.delay_seconds), (1, 1.0));
        assert_eq!(delay.until, Some(at(1.0)));
        assert_eq!(delay.since, Some(at(0.0)));
        assert_eq!(delay.reason.as_deref(), Some("Failed: exit code 1"));
        assert!(!first.launch_allowed);
        assert_eq!(first.wake_at, Some(at(1.0)), "wakes exactly at until");
        // Half-way: still held; at until: allowed, and it wakes next for the expiry.
        let mid = decide(&BackoffInputs {
            recorded: Some(&delay),
            new_failures: &[],
            now: at(0.5),
            ..first_inputs(p)
        });
        assert!(!mid.launch_allowed);
        assert_eq!(mid.delay.as_ref(), Some(&delay), "unchanged");
        let due = decide(&BackoffInputs {
            recorded: Some(&delay),
            new_failures: &[],
            now: at(1.0),
            ..first_inputs(p)
        });
        assert!(due.launch_allowed);
        assert_eq!(due.wake_at, Some(at(9.0)), "until + max");
        // Two more failures in one round: 3 failures → 4 s.
        let two = [failure("b"), failure("c")];
        let third = decide(&BackoffInputs {
            recorded: Some(&delay),
            new_failures: &two,
            now: at(2.0),
            ..first_inputs(p)
        });
        let delay = third.delay.unwrap();
        assert_eq!((delay.consecutive_failures, delay.delay_seconds), (3, 4.0));
        assert_eq!(delay.until, Some(at(6.0)));
        assert_eq!(delay.since, Some(at(0.0)), "the run started at the first");
    }

    fn first_inputs(p: BackoffPolicy) -> BackoffInputs<'static> {
        BackoffInputs {
            policy: p,
            recorded: None,
            new_failures: &[],
            viable_candidates: &[],
            viable_after: Duration::from_secs(60),
            now: at(0.0),
        }
    }

    /// Reset rules: (created, started, now) of one healthy candidate against a delay of 4 s
    /// recorded at t=10 (until 14) with max 8 → reset?, wake.
    #[test]
    fn a_viable_instance_or_an_overdue_delay_resets_it() {
        let p = policy(1.0, 2.0, 8.0);
        let recorded = LaunchDelay {
            consecutive_failures: 3,
            delay_seconds: 4.0,
            until: Some(at(14.0)),
            since: Some(at(0.0)),
            reason: Some("Failed: exit code 1".into()),
        };
        for (what, candidate, now, reset, wake) in [
            ("none, not overdue", None, 15.0, false, Some(22.0)),
            ("none, overdue by max", None, 22.0, true, None),
            (
                "launched after the failure, running 60 s",
                Some((14.0, 15.0)),
                75.0,
                true,
                None,
            ),
            (
                "launched after the failure, running 30 s",
                Some((14.0, 15.0)),
                20.0,
                false,
                Some(22.0),
            ),
            (
                "launched before the failure (an old survivor)",
                Some((2.0, 3.0)),
                20.0,
                false,
                Some(22.0),
            ),
        ] {
            let candidates: Vec<(Option<Time>, Option<Time>)> = candidate
                .map(|(created, started)| (Some(at(created)), Some(at(started))))
                .into_iter()
                .collect();
            let decision = decide(&BackoffInputs {
                policy: p,
                recorded: Some(&recorded),
                new_failures: &[],
                viable_candidates: &candidates,
                viable_after: Duration::from_secs(60),
                now: at(now),
            });
            assert_eq!(decision.delay.is_none(), reset, "{what}");
            assert_eq!(decision.wake_at, wake.map(at), "{what}");
            assert!(decision.launch_allowed, "{what}: past until");
        }
        // A candidate still short of viable, with the delay long: wakes when it turns viable.
        let long = LaunchDelay {
            delay_seconds: 600.0,
            until: Some(at(610.0)),
            ..recorded.clone()
        };
        let candidates = [(Some(at(10.0)), Some(at(11.0)))];
        let decision = decide(&BackoffInputs {
            policy: policy(1.0, 2.0, 3600.0),
            recorded: Some(&long),
            new_failures: &[],
            viable_candidates: &candidates,
            viable_after: Duration::from_secs(60),
            now: at(20.0),
        });
        assert_eq!(decision.wake_at, Some(at(71.0)));
        assert!(!decision.launch_allowed);
    }

    #[test]
    fn only_instances_that_ended_on_their_own_are_failures() {
        let mut instance = Instance::default();
        instance.metadata.name = Some("web-abc".into());
        instance.spec.app_version = "v1".into();
        for (phase, goal, reason, counts) in [
            (InstancePhase::Failed, InstanceGoal::Running, None, true),
            (InstancePhase::Finished, InstanceGoal::Running, None, true),
            (InstancePhase::Killed, InstanceGoal::Running, None, false),
            (InstancePhase::Running, InstanceGoal::Running, None, false),
            (
                InstancePhase::Failed,
                InstanceGoal::Decommissioned,
                None,
                false,
            ),
            (InstancePhase::Gone, InstanceGoal::Running, None, false),
            (
                InstancePhase::Killed,
                InstanceGoal::Decommissioned,
                Some(HEALTH_KILL_REASON),
                true,
            ),
            // Counted when the health controller's reason shows, before the agent kills it.
            (
                InstancePhase::Running,
                InstanceGoal::Decommissioned,
                Some(HEALTH_KILL_REASON),
                true,
            ),
        ] {
            instance.spec.goal = Some(goal.clone());
            instance.status = Some(InstanceStatus {
                phase,
                reason: reason.map(str::to_owned),
                exit_code: Some(3),
                ..InstanceStatus::default()
            });
            let failure = launch_failure(&instance);
            assert_eq!(failure.is_some(), counts, "{phase:?} {goal:?} {reason:?}");
            if let Some(failure) = failure {
                assert_eq!(failure.instance.as_deref(), Some("web-abc"));
                assert_eq!(failure.version.as_deref(), Some("v1"));
            }
        }
        // Once recorded, a health kill does not count again.
        instance.metadata.annotations =
            Some([(FAILURE_RECORDED_ANNOTATION.to_owned(), "true".to_owned())].into());
        assert_eq!(launch_failure(&instance), None);
    }

    /// A fast agent (hollow) may report `Killed` over the health controller's reason before
    /// the deployment controller looks: the failing results still show the health kill.
    #[test]
    fn a_health_kill_shows_in_the_results_when_the_reason_was_overwritten() {
        use pacer_schemas::AppSpec;
        use pacer_schemas::health::HealthCheck;
        use pacer_schemas::instance::HealthCheckResult;

        let mut instance = Instance::default();
        instance.metadata.name = Some("web-abc".into());
        instance.spec.goal = Some(InstanceGoal::Decommissioned);
        instance.spec.template = Some(AppSpec {
            health_checks: Some(vec![HealthCheck {
                max_consecutive_failures: Some(3),
                ..HealthCheck::default()
            }]),
            ..AppSpec::default()
        });
        let result = |failures: i32, alive: bool| HealthCheckResult {
            index: 0,
            alive,
            consecutive_failures: failures,
            last_failure_cause: Some("connection refused".into()),
            ..HealthCheckResult::default()
        };
        for (results, goal, counts) in [
            (vec![result(3, false)], InstanceGoal::Decommissioned, true),
            (vec![result(2, false)], InstanceGoal::Decommissioned, false),
            (vec![result(3, true)], InstanceGoal::Decommissioned, false),
            (vec![], InstanceGoal::Decommissioned, false),
            // Goal Running and killed: not a decommission at all.
            (vec![result(3, false)], InstanceGoal::Running, false),
        ] {
            instance.spec.goal = Some(goal.clone());
            instance.status = Some(InstanceStatus {
                phase: InstancePhase::Killed,
                reason: Some("Killed".into()),
                message: Some("killed on request".into()),
                health: results.clone(),
                ..InstanceStatus::default()
            });
            let failure = launch_failure(&instance);
            assert_eq!(failure.is_some(), counts, "{results:?} {goal:?}");
            if let Some(failure) = failure {
                assert_eq!(
                    failure.message.as_deref(),
                    Some("health check 0 failed 3 times in a row: connection refused")
                );
            }
        }
    }
}
