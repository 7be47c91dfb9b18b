//! When a running deployment has failed, and what then (Pacer, beyond Marathon, whose
//! deployments wait forever): pure decisions over a Deployment's progress and the failures
//! of its new instances.
//!
//! * **Progress** is a new instance turning healthy capacity or an old one going
//!   ([`progressed`]); the Deployment's `status.lastProgressAt` records the last time (its
//!   start before any). A canary paused for promotion is not stalled: the deadline counts
//!   from its promotion.
//! * **Failure** ([`judge`]): no progress within `upgradeStrategy.progressDeadlineSeconds`
//!   (Kubernetes' `ProgressDeadlineExceeded`) or — with `autoRevert` only — an instance of
//!   the new version that failed (it crashed or finished by itself, or the health controller
//!   killed it for failing its health checks). Without `autoRevert` a failing instance is
//!   retried under launch backoff, as Marathon does, until the deadline (if any) runs out.
//! * **Verdict** ([`verdict`]): with `autoRevert` and a version to return to, the App is
//!   rolled back to the deployment's `fromVersion` (the rollback's own deployment never
//!   reverts again, so a broken old version cannot make it flip-flop); otherwise the
//!   deployment is only marked failed and the App left as it is.

use pacer_schemas::Time;
use pacer_schemas::deployment::{ActionStatus, conditions};

use super::rolling::Progress;

/// Why a deployment failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Machine-readable reason ([`conditions::PROGRESS_DEADLINE_EXCEEDED`],
    /// [`conditions::INSTANCE_FAILED`], or `DependencyCycle`).
    pub reason: &'static str,
    /// What happened, for people.
    pub message: String,
}

/// Reason of a deployment that can never finish because its App is on a dependency cycle.
pub const DEPENDENCY_CYCLE: &str = "DependencyCycle";

/// What a deployment's progress looks like in a round.
#[derive(Clone, Debug)]
pub struct ProgressInputs<'a> {
    /// `upgradeStrategy.progressDeadlineSeconds`.
    pub deadline_seconds: Option<i64>,
    /// `upgradeStrategy.autoRevert`.
    pub auto_revert: bool,
    /// When progress was last made (the deployment's start before any).
    pub last_progress_at: Option<Time>,
    /// Whether a canary waits for its promotion (no deadline while paused).
    pub paused: bool,
    /// Failures of new-version instances recorded in this round: (instance, what happened).
    pub new_failures: &'a [(String, String)],
    /// Now.
    pub now: Time,
}

/// Whether the step's counts moved forward since the last recorded ones: more new instances
/// healthy, or fewer old ones left. No earlier counts (the first round) is progress.
pub fn progressed(before: Option<&ActionStatus>, after: &Progress) -> bool {
    let Some(before) = before else {
        return true;
    };
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    before
        .healthy_instances
        .is_none_or(|healthy| count(after.healthy) > healthy)
        || before
            .old_instances
            .is_none_or(|old| count(after.old) < old)
}

/// The instant the deadline runs out, if one applies now.
pub fn deadline_at(inputs: &ProgressInputs<'_>) -> Option<Time> {
    if inputs.paused {
        return None;
    }
    let seconds = inputs.deadline_seconds.filter(|seconds| *seconds > 0)?;
    let since = inputs.last_progress_at?;
    Time::from_unix_seconds(since.as_unix_seconds().saturating_add(seconds))
}

/// Whether the deployment failed now, and why.
pub fn judge(inputs: &ProgressInputs<'_>) -> Option<Failure> {
    if inputs.auto_revert
        && let Some((instance, what)) = inputs.new_failures.first()
    {
        return Some(Failure {
            reason: conditions::INSTANCE_FAILED,
            message: format!("instance {instance} of the new version failed: {what}"),
        });
    }
    let at = deadline_at(inputs)?;
    (inputs.now >= at).then(|| Failure {
        reason: conditions::PROGRESS_DEADLINE_EXCEEDED,
        message: format!(
            "no progress within progressDeadlineSeconds ({}s)",
            inputs.deadline_seconds.unwrap_or_default()
        ),
    })
}

/// What to do with a failed deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Roll the App back to this version (the deployment's `fromVersion`).
    Revert {
        /// The Marathon version string to return to.
        to_version: String,
    },
    /// Mark the deployment failed and leave the App; `why_not_reverted` says why no rollback
    /// happened when `autoRevert` asked for one.
    Fail {
        /// Why `autoRevert` could not roll back (None: it was not asked for).
        why_not_reverted: Option<String>,
    },
}

/// The verdict for a failed deployment of an App with `auto_revert`, moving from
/// `from_version` (None for a creation) whose snapshot exists when `from_known`; `reverting`
/// when the deployment is itself an automatic rollback.
pub fn verdict(
    failure: &Failure,
    auto_revert: bool,
    from_version: Option<&str>,
    from_known: bool,
    reverting: bool,
) -> Verdict {
    if !auto_revert || failure.reason == DEPENDENCY_CYCLE {
        return Verdict::Fail {
            why_not_reverted: None,
        };
    }
    let why_not = if reverting {
        "it is itself an automatic rollback"
    } else {
        match from_version {
            None => "there is no previous version",
            Some(_) if !from_known => "the previous version is no longer in the history",
            Some(version) => {
                return Verdict::Revert {
                    to_version: version.to_owned(),
                };
            }
        }
    };
    Verdict::Fail {
        why_not_reverted: Some(why_not.to_owned()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use pacer_schemas::deployment::{AppRef, DeploymentActionKind};

    use super::*;

    fn at(seconds: i64) -> Time {
        Time::from_unix_seconds(1_700_000_000 + seconds).unwrap()
    }

    fn inputs<'a>(failures: &'a [(String, String)]) -> ProgressInputs<'a> {
        ProgressInputs {
            deadline_seconds: Some(60),
            auto_revert: false,
            last_progress_at: Some(at(0)),
            paused: false,
            new_failures: failures,
            now: at(30),
        }
    }

    #[test]
    fn progress_is_more_healthy_new_or_fewer_old() {
        let before = ActionStatus {
            action: DeploymentActionKind::RestartApplication,
            app: AppRef::default(),
            readiness_check_results: Vec::new(),
            target_instances: Some(3),
            updated_instances: Some(1),
            healthy_instances: Some(1),
            old_instances: Some(2),
            waiting_for: None,
        };
        let progress = |updated, healthy, old| Progress {
            target: 3,
            updated,
            healthy,
            old,
        };
        assert!(progressed(None, &progress(0, 0, 3)));
        assert!(!progressed(Some(&before), &progress(1, 1, 2)));
        assert!(
            !progressed(Some(&before), &progress(2, 1, 2)),
            "a start is not progress"
        );
        assert!(!progressed(Some(&before), &progress(1, 0, 2)), "nor a loss");
        assert!(progressed(Some(&before), &progress(2, 2, 2)));
        assert!(progressed(Some(&before), &progress(1, 1, 1)));
    }

    /// (deadline, autoRevert, paused, failures, now, expected failure reason).
    type Case<'a> = (
        Option<i64>,
        bool,
        bool,
        &'a [(String, String)],
        i64,
        Option<&'static str>,
    );

    /// (deadline, autoRevert, paused, failures, now) → failure reason.
    #[test]
    fn failure_decisions() {
        let failed = [("web-x".to_owned(), "exited with code 1".to_owned())];
        let cases: [Case<'_>; 9] = [
            (Some(60), false, false, &[], 30, None),
            (
                Some(60),
                false,
                false,
                &[],
                60,
                Some(conditions::PROGRESS_DEADLINE_EXCEEDED),
            ),
            (
                Some(60),
                true,
                false,
                &[],
                61,
                Some(conditions::PROGRESS_DEADLINE_EXCEEDED),
            ),
            // Paused for promotion: never past the deadline.
            (Some(60), false, true, &[], 600, None),
            // No deadline: wait forever, as Marathon does.
            (None, false, false, &[], 100_000, None),
            // An instance failure fails the deployment only with autoRevert.
            (Some(60), false, false, &failed, 30, None),
            (None, false, false, &failed, 30, None),
            (
                None,
                true,
                false,
                &failed,
                30,
                Some(conditions::INSTANCE_FAILED),
            ),
            (
                Some(60),
                true,
                true,
                &failed,
                30,
                Some(conditions::INSTANCE_FAILED),
            ),
        ];
        for (deadline, auto_revert, paused, failures, now, expected) in cases {
            let inputs = ProgressInputs {
                deadline_seconds: deadline,
                auto_revert,
                paused,
                now: at(now),
                ..inputs(failures)
            };
            assert_eq!(
                judge(&inputs).map(|failure| failure.reason),
                expected,
                "deadline {deadline:?} autoRevert {auto_revert} paused {paused} now {now}"
            );
        }
        let inputs = inputs(&[]);
        assert_eq!(deadline_at(&inputs), Some(at(60)));
        let failure = judge(&ProgressInputs {
            now: at(75),
            ..inputs
        })
        .unwrap();
        assert_eq!(
            failure.message,
            "no progress within progressDeadlineSeconds (60s)"
        );
    }

    #[test]
    fn verdicts() {
        let deadline = Failure {
            reason: conditions::PROGRESS_DEADLINE_EXCEEDED,
            message: String::new(),
        };
        let cycle = Failure {
            reason: DEPENDENCY_CYCLE,
            message: String::new(),
        };
        let version = "2026-01-01T00:00:00.000Z";
        let v1 = Some(version);
        assert_eq!(
            verdict(&deadline, true, v1, true, false),
            Verdict::Revert {
                to_version: version.to_owned()
            }
        );
        assert_eq!(
            verdict(&deadline, false, v1, true, false),
            Verdict::Fail {
                why_not_reverted: None
            }
        );
        assert_eq!(
            verdict(&cycle, true, v1, true, false),
            Verdict::Fail {
                why_not_reverted: None
            }
        );
        for (from, known, reverting) in [(None, false, false), (v1, false, false), (v1, true, true)]
        {
            assert!(matches!(
                verdict(&deadline, true, from, known, reverting),
                Verdict::Fail {
                    why_not_reverted: Some(_)
                }
            ));
        }
    }
}
