//! The health controller's one decision, as a pure function of an Instance and *now*: whether
//! a health check has failed often enough, outside its grace period, for the instance to be
//! killed — and if not yet, the instant at which the answer could change without any new
//! result (a grace period ending).
//!
//! The rule (Marathon's `maxConsecutiveFailures`): an instance that should run (goal
//! `Running`), is not terminal, and has a check `i` in its template with
//! `maxConsecutiveFailures > 0` (0 disables killing) whose reported result has
//! `consecutiveFailures >= maxConsecutiveFailures` is killed — unless the check has never
//! passed and the instance is still inside that check's `gracePeriodSeconds` from `startedAt`.
//! The agent already does not count failures inside the grace period; the controller checks
//! again so that a result it reads can never kill early.

use pacer_schemas::health::HealthCheckProtocol;
use pacer_schemas::instance::InstanceGoal;
use pacer_schemas::{Instance, Time, defaults};

/// `status.reason` of an instance killed for failing its health checks.
pub const HEALTH_CHECK_FAILED: &str = "HealthCheckFailed";
/// The Event reason.
pub const UNHEALTHY: &str = "Unhealthy";

/// What to do about one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing, now or later without a new result.
    Keep,
    /// Nothing yet; look again at this instant (a grace period ends).
    Until(Time),
    /// Kill it: this check failed too often.
    Kill {
        /// Index of the check in the template's `healthChecks`.
        index: i32,
        /// What the check is, for people (`HTTP /health on port index 0`).
        check: String,
        /// Failures in a row.
        failures: i32,
        /// The last failure's cause.
        cause: String,
    },
}

/// Decides about `instance` at `now`.
pub fn verdict(instance: &Instance, now: Time) -> Verdict {
    let Some(status) = instance.status.as_ref() else {
        return Verdict::Keep;
    };
    let wants_running = matches!(instance.spec.goal, None | Some(InstanceGoal::Running));
    if !wants_running || status.phase.is_terminal() {
        return Verdict::Keep;
    }
    let checks = instance
        .spec
        .template
        .as_ref()
        .and_then(|template| template.health_checks.as_deref())
        .unwrap_or_default();
    let mut until: Option<Time> = None;
    for (index, check) in checks.iter().enumerate() {
        let index = i32::try_from(index).unwrap_or(i32::MAX);
        let max = check
            .max_consecutive_failures
            .unwrap_or(defaults::HEALTH_MAX_CONSECUTIVE_FAILURES);
        if max <= 0 {
            continue;
        }
        let Some(result) = status.health.iter().find(|result| result.index == index) else {
            continue;
        };
        if result.consecutive_failures < max {
            continue;
        }
        let grace = i64::from(
            check
                .grace_period_seconds
                .unwrap_or(defaults::HEALTH_GRACE_PERIOD_SECONDS),
        );
        let grace_ends = status.started_at.and_then(|started| {
            Time::from_unix_seconds(started.as_unix_seconds().saturating_add(grace))
        });
        let protected = result.first_success.is_none() && grace_ends.is_none_or(|ends| ends > now);
        if protected {
            if let Some(ends) = grace_ends {
                until = Some(until.map_or(ends, |until| until.min(ends)));
            }
            continue;
        }
        let protocol = check.protocol.clone().unwrap_or(HealthCheckProtocol::Http);
        let target = match (&check.command, check.port, check.port_index) {
            (Some(command), _, _) => format!(" `{}`", command.value),
            (None, Some(port), _) => format!(" on port {port}"),
            (None, None, Some(port_index)) => format!(" on port index {port_index}"),
            (None, None, None) => String::new(),
        };
        let path = if protocol.is_http() {
            format!(" {}", check.path.as_deref().unwrap_or("/"))
        } else {
            String::new()
        };
        return Verdict::Kill {
            index,
            check: format!(
                "healthChecks[{index}] ({}{path}{target})",
                protocol.as_str()
            ),
            failures: result.consecutive_failures,
            cause: result
                .last_failure_cause
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
        };
    }
    until.map_or(Verdict::Keep, Verdict::Until)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use pacer_schemas::health::HealthCheck;
    use pacer_schemas::instance::{HealthCheckResult, InstancePhase, InstanceSpec, InstanceStatus};
    use pacer_schemas::{AppSpec, ObjectMeta};

    use super::*;

    const T0: i64 = 1_800_000_000;

    fn at(seconds: i64) -> Time {
        Time::from_unix_seconds(T0 + seconds).unwrap()
    }

    fn instance(
        max: i32,
        grace: i32,
        failures: i32,
        succeeded: bool,
        goal: InstanceGoal,
        phase: InstancePhase,
    ) -> Instance {
        Instance {
            metadata: ObjectMeta::named("default", "web-1"),
            spec: InstanceSpec {
                goal: Some(goal),
                template: Some(AppSpec {
                    health_checks: Some(vec![HealthCheck {
                        path: Some("/health".into()),
                        port_index: Some(0),
                        max_consecutive_failures: Some(max),
                        grace_period_seconds: Some(grace),
                        ..HealthCheck::default()
                    }]),
                    ..AppSpec::default()
                }),
                ..InstanceSpec::default()
            },
            status: Some(InstanceStatus {
                phase,
                started_at: Some(at(0)),
                health: vec![HealthCheckResult {
                    index: 0,
                    consecutive_failures: failures,
                    first_success: succeeded.then(|| at(1)),
                    last_failure_cause: Some("HTTP status 503".into()),
                    ..HealthCheckResult::default()
                }],
                ..InstanceStatus::default()
            }),
            ..Instance::default()
        }
    }

    #[test]
    fn kills_after_max_failures_outside_the_grace_period() {
        use InstanceGoal::{Decommissioned, Running};
        use InstancePhase::{Failed, Running as Up};
        // (max, grace, failures, ever succeeded, goal, phase, now, expected: kill / until / keep)
        let table = [
            (3, 60, 3, true, Running, Up, 10, "kill"),
            (3, 60, 4, false, Running, Up, 100, "kill"),
            (3, 60, 2, true, Running, Up, 100, "keep"),
            (3, 60, 3, false, Running, Up, 10, "until"),
            (0, 0, 50, true, Running, Up, 100, "keep"),
            (3, 60, 3, true, Decommissioned, Up, 100, "keep"),
            (3, 60, 3, true, Running, Failed, 100, "keep"),
            (1, 0, 1, false, Running, Up, 0, "kill"),
        ];
        for (max, grace, failures, succeeded, goal, phase, now, expected) in table {
            let instance = instance(max, grace, failures, succeeded, goal.clone(), phase);
            let verdict = verdict(&instance, at(now));
            let kind = match &verdict {
                Verdict::Kill { .. } => "kill",
                Verdict::Until(until) => {
                    assert_eq!(*until, at(i64::from(grace)));
                    "until"
                }
                Verdict::Keep => "keep",
            };
            assert_eq!(
                kind, expected,
                "max {max} grace {grace} failures {failures} succeeded {succeeded} {goal:?} \
                 {phase:?} at {now}: {verdict:?}"
            );
        }
    }

    #[test]
    fn a_kill_names_the_check_and_the_cause() {
        let instance = instance(3, 0, 3, true, InstanceGoal::Running, InstancePhase::Running);
        assert_eq!(
            verdict(&instance, at(5)),
            Verdict::Kill {
                index: 0,
                check: "healthChecks[0] (HTTP /health on port index 0)".into(),
                failures: 3,
                cause: "HTTP status 503".into(),
            }
        );
    }
}
