//! Marathon's health and readiness check semantics as pure functions, so that every rule is
//! table-tested without a socket or a clock: how an HTTP status reads ([`http_outcome`]), how
//! one probe's outcome updates a check's result ([`apply`], Marathon's `Health.update` plus its
//! grace-period rule), when a result is alive, when the whole instance is healthy, when a new
//! result is worth a status write ([`worth_writing`]), and when a readiness answer means ready.
//!
//! The rules, as Marathon has them:
//! - HTTP(S): healthy on 200–399; a 1xx is *ignored* (no result at all) with `ignoreHttp1xx`,
//!   unhealthy otherwise; any other status, a connection error or a timeout is unhealthy.
//! - A failure while the instance has never passed and is still inside its
//!   `gracePeriodSeconds` (counted from `startedAt`) is ignored: it neither counts nor shows.
//! - A success sets `firstSuccess` (once) and `lastSuccess` and resets `consecutiveFailures`;
//!   a failure sets `lastFailure` and `lastFailureCause` and adds one to
//!   `consecutiveFailures`. A check is alive when its last success is newer than its last
//!   failure.

use pacer_schemas::Time;
use pacer_schemas::instance::{HealthCheckResult, ReadinessCheckResult};

/// What one probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed.
    Healthy,
    /// The check failed, and why (Marathon's `lastFailureCause`).
    Unhealthy(String),
    /// Neither (an ignored 1xx): the result stays as it was.
    Ignored,
}

/// How an HTTP health check reads a response status.
pub fn http_outcome(status: u16, ignore_http1xx: bool) -> Outcome {
    match status {
        200..=399 => Outcome::Healthy,
        100..=199 if ignore_http1xx => Outcome::Ignored,
        _ => Outcome::Unhealthy(format!("HTTP status {status}")),
    }
}

/// Whether an instance that started at `started_at` is still inside a grace period of
/// `grace_seconds` at `now` (an instance without a start time is: it has not started).
pub fn in_grace(started_at: Option<Time>, grace_seconds: i64, now: Time) -> bool {
    started_at.is_none_or(|started| {
        started.as_unix_seconds().saturating_add(grace_seconds) > now.as_unix_seconds()
    })
}

/// `result` after one probe's `outcome` at `now`.
pub fn apply(
    result: &HealthCheckResult,
    outcome: &Outcome,
    started_at: Option<Time>,
    grace_seconds: i64,
    now: Time,
) -> HealthCheckResult {
    let mut next = result.clone();
    match outcome {
        Outcome::Healthy => {
            next.first_success = next.first_success.or(Some(now));
            next.last_success = Some(now);
            next.consecutive_failures = 0;
        }
        Outcome::Unhealthy(cause) => {
            if result.first_success.is_none() && in_grace(started_at, grace_seconds, now) {
                return next;
            }
            next.last_failure = Some(now);
            next.last_failure_cause = Some(cause.clone());
            next.consecutive_failures = next.consecutive_failures.saturating_add(1);
        }
        Outcome::Ignored => return next,
    }
    next.alive = is_alive(&next);
    next
}

/// Marathon's `Health.alive`: a success, newer than any failure.
pub fn is_alive(result: &HealthCheckResult) -> bool {
    match (result.last_success, result.last_failure) {
        (Some(success), Some(failure)) => success > failure,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// `status.healthy`: every check alive; `None` without checks.
pub fn all_alive(results: &[HealthCheckResult]) -> Option<bool> {
    if results.is_empty() {
        None
    } else {
        Some(results.iter().all(|result| result.alive))
    }
}

/// Whether `next` differs from what was last written (`written`) in anything but the time of
/// a repeated success: liveness, the failure count, the first success, the last failure or its
/// cause. Steady success therefore writes nothing, while every counted failure is written (the
/// health controller counts them).
pub fn worth_writing(written: &HealthCheckResult, next: &HealthCheckResult) -> bool {
    written.alive != next.alive
        || written.consecutive_failures != next.consecutive_failures
        || written.first_success != next.first_success
        || written.last_failure != next.last_failure
        || written.last_failure_cause != next.last_failure_cause
}

/// Whether a readiness answer with `status` is ready under `httpStatusCodesForReady`.
pub fn ready(status: u16, codes_for_ready: &[i32]) -> bool {
    codes_for_ready.contains(&i32::from(status))
}

/// Whether a readiness result changed enough to be written.
pub fn readiness_changed(written: &ReadinessCheckResult, next: &ReadinessCheckResult) -> bool {
    written != next
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;

    fn at(seconds: i64) -> Time {
        Time::from_unix_seconds(T0 + seconds).unwrap()
    }

    #[test]
    fn http_statuses() {
        // (status, ignoreHttp1xx, expected)
        let table = [
            (200, false, Outcome::Healthy),
            (204, false, Outcome::Healthy),
            (301, false, Outcome::Healthy),
            (399, false, Outcome::Healthy),
            (400, false, Outcome::Unhealthy("HTTP status 400".into())),
            (404, true, Outcome::Unhealthy("HTTP status 404".into())),
            (500, false, Outcome::Unhealthy("HTTP status 500".into())),
            (101, false, Outcome::Unhealthy("HTTP status 101".into())),
            (101, true, Outcome::Ignored),
            (199, true, Outcome::Ignored),
            (100, false, Outcome::Unhealthy("HTTP status 100".into())),
        ];
        for (status, ignore, expected) in table {
            assert_eq!(
                http_outcome(status, ignore),
                expected,
                "{status} ignore={ignore}"
            );
        }
    }

    /// One probe sequence: (seconds after start, outcome) → after each, (alive, failures,
    /// first success set, last failure cause).
    type Step = (i64, Outcome, (bool, i32, bool, Option<&'static str>));

    #[test]
    fn sequences_follow_marathon() {
        let fail = |cause: &str| Outcome::Unhealthy(cause.to_owned());
        // (name, grace seconds, steps)
        let table: Vec<(&str, i64, Vec<Step>)> = vec![
            (
                "failures inside the grace period before any success are ignored",
                60,
                vec![
                    (10, fail("refused"), (false, 0, false, None)),
                    (59, fail("refused"), (false, 0, false, None)),
                    (60, fail("refused"), (false, 1, false, Some("refused"))),
                    (70, fail("timed out"), (false, 2, false, Some("timed out"))),
                    (80, Outcome::Healthy, (true, 0, true, Some("timed out"))),
                ],
            ),
            (
                "after the first success the grace period no longer protects",
                300,
                vec![
                    (5, Outcome::Healthy, (true, 0, true, None)),
                    (
                        10,
                        fail("HTTP status 500"),
                        (false, 1, true, Some("HTTP status 500")),
                    ),
                    (
                        15,
                        fail("HTTP status 503"),
                        (false, 2, true, Some("HTTP status 503")),
                    ),
                    (
                        20,
                        fail("HTTP status 503"),
                        (false, 3, true, Some("HTTP status 503")),
                    ),
                    (
                        25,
                        Outcome::Healthy,
                        (true, 0, true, Some("HTTP status 503")),
                    ),
                ],
            ),
            (
                "an ignored 1xx changes nothing",
                0,
                vec![
                    (1, Outcome::Healthy, (true, 0, true, None)),
                    (2, Outcome::Ignored, (true, 0, true, None)),
                    (3, fail("x"), (false, 1, true, Some("x"))),
                    (4, Outcome::Ignored, (false, 1, true, Some("x"))),
                ],
            ),
            (
                "no grace period: the first failure counts",
                0,
                vec![(0, fail("refused"), (false, 1, false, Some("refused")))],
            ),
        ];
        for (name, grace, steps) in table {
            let mut result = HealthCheckResult::default();
            for (seconds, outcome, (alive, failures, first, cause)) in steps {
                result = apply(&result, &outcome, Some(at(0)), grace, at(seconds));
                assert_eq!(result.alive, alive, "{name} at {seconds}s: {result:?}");
                assert_eq!(
                    result.consecutive_failures, failures,
                    "{name} at {seconds}s"
                );
                assert_eq!(
                    result.first_success.is_some(),
                    first,
                    "{name} at {seconds}s"
                );
                assert_eq!(
                    result.last_failure_cause.as_deref(),
                    cause,
                    "{name} at {seconds}s"
                );
            }
        }
    }

    #[test]
    fn not_started_counts_as_inside_the_grace_period() {
        let result = apply(
            &HealthCheckResult::default(),
            &Outcome::Unhealthy("refused".into()),
            None,
            0,
            at(100),
        );
        assert_eq!(result, HealthCheckResult::default());
    }

    #[test]
    fn only_real_changes_are_written() {
        let first = apply(
            &HealthCheckResult::default(),
            &Outcome::Healthy,
            Some(at(0)),
            0,
            at(1),
        );
        assert!(worth_writing(&HealthCheckResult::default(), &first));
        let again = apply(&first, &Outcome::Healthy, Some(at(0)), 0, at(2));
        assert!(
            !worth_writing(&first, &again),
            "a repeated success is not written"
        );
        let failed = apply(
            &again,
            &Outcome::Unhealthy("x".into()),
            Some(at(0)),
            0,
            at(3),
        );
        assert!(worth_writing(&again, &failed));
        let failed_again = apply(
            &failed,
            &Outcome::Unhealthy("x".into()),
            Some(at(0)),
            0,
            at(4),
        );
        assert!(
            worth_writing(&failed, &failed_again),
            "every counted failure is written"
        );
    }

    #[test]
    fn healthy_needs_every_check_alive() {
        let alive = HealthCheckResult {
            alive: true,
            ..HealthCheckResult::default()
        };
        let dead = HealthCheckResult::default();
        assert_eq!(all_alive(&[]), None);
        assert_eq!(all_alive(std::slice::from_ref(&alive)), Some(true));
        assert_eq!(all_alive(&[alive, dead]), Some(false));
    }

    #[test]
    fn readiness_codes() {
        assert!(ready(200, &[200]));
        assert!(!ready(503, &[200]));
        assert!(ready(204, &[200, 204]));
    }
}
