//! The agent's decisions, as pure functions: given what the control plane wants for one
//! instance (its Instance object, or none when it was deleted) and what this node runs for it,
//! the one next [`Step`] — and the `/status` merge patches that report each phase. The agent
//! loop (`agent.rs`) calls [`decide`] whenever either side changes and on every resync, so
//! the node converges whatever events it missed (level-triggered).

use pacer_schemas::Instance;
use pacer_schemas::instance::{InstanceGoal, InstancePhase};
use pacer_schemas::time::Time;
use serde_json::{Value, json};

use crate::runtime::Exit;

/// What this node has for one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// The runtime it runs on.
    pub runtime: &'static str,
    /// Container id or pid.
    pub runtime_id: String,
    /// `None` while it runs; how it ended otherwise.
    pub exit: Option<Exit>,
}

/// The next thing to do for one instance.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Nothing: both sides agree.
    Nothing,
    /// Start it.
    Start,
    /// Write this status patch (the runtime side needs nothing).
    Report(Value),
    /// Stop the run; `report` whether to write `Killing` and `Killed` (not for orphans).
    Kill {
        /// Whether the Instance still exists and gets `Killing`/`Killed`.
        report: bool,
    },
    /// The run ended: write this status patch (if any), then release what it holds.
    Release(Option<Value>),
}

/// Decides the next step for one instance. `desired` is its Instance (`None`: deleted),
/// `local` what runs here, `now` the time written into timestamps.
pub fn decide(desired: Option<&Instance>, local: Option<&Local>, now: Time) -> Step {
    let Some(instance) = desired else {
        return match local {
            None => Step::Nothing,
            Some(Local { exit: None, .. }) => Step::Kill { report: false },
            Some(Local { exit: Some(_), .. }) => Step::Release(None),
        };
    };
    let phase = instance.phase();
    let wants_running = matches!(instance.spec.goal, None | Some(InstanceGoal::Running));
    let status = instance.status.as_ref();
    if !wants_running {
        return match local {
            None if phase.is_terminal() => Step::Nothing,
            None => Step::Report(killed(None, now)),
            Some(Local { exit: None, .. }) => Step::Kill { report: true },
            Some(Local { exit: Some(_), .. }) if phase.is_terminal() => Step::Release(None),
            Some(Local {
                exit: Some(exit), ..
            }) => Step::Release(Some(killed(exit.code, now))),
        };
    }
    match local {
        None => match phase {
            InstancePhase::Scheduled | InstancePhase::Staging => Step::Start,
            InstancePhase::Killing => Step::Report(killed(None, now)),
            InstancePhase::Starting | InstancePhase::Running | InstancePhase::Lost => {
                Step::Report(failed(
                    None,
                    "NotRunning",
                    "the agent does not run it any more (it ended while the agent was down, \
                     or the agent's data was lost)",
                    now,
                ))
            }
            InstancePhase::Killed
            | InstancePhase::Finished
            | InstancePhase::Failed
            | InstancePhase::Gone => Step::Nothing,
        },
        // Reported ended (by us or a controller) yet still running: the control plane has
        // given up on it, so it must not keep running.
        Some(Local { exit: None, .. }) if phase.is_terminal() => Step::Kill { report: false },
        Some(Local {
            exit: None,
            runtime_id,
            ..
        }) => {
            let reported_id = status.and_then(|status| status.runtime_id.as_deref());
            if phase == InstancePhase::Running && reported_id == Some(runtime_id.as_str()) {
                Step::Nothing
            } else {
                Step::Report(running(runtime_id, status.and_then(|s| s.started_at), now))
            }
        }
        Some(Local { exit: Some(_), .. }) if phase.is_terminal() => Step::Release(None),
        Some(Local {
            exit: Some(exit), ..
        }) => Step::Release(Some(ended(exit, now))),
    }
}

/// `Staging`: the agent took the instance on.
pub fn staging(host: &str, now: Time) -> Value {
    json!({"status": {"phase": "Staging", "host": host, "stagedAt": now}})
}

/// `Starting`: the runtime created it.
pub fn starting(runtime_id: &str) -> Value {
    json!({"status": {"phase": "Starting", "runtimeId": runtime_id}})
}

/// `Running`, with the run's id and when it started (kept if already set).
pub fn running(runtime_id: &str, started_at: Option<Time>, now: Time) -> Value {
    json!({"status": {
        "phase": "Running",
        "runtimeId": runtime_id,
        "startedAt": started_at.unwrap_or(now),
        "reason": null,
        "message": null,
    }})
}

/// `Killing`: a kill was sent.
pub fn killing() -> Value {
    json!({"status": {"phase": "Killing"}})
}

/// `Killed`, with the exit code when known.
pub fn killed(exit_code: Option<i32>, now: Time) -> Value {
    json!({"status": {
        "phase": "Killed",
        "exitCode": exit_code,
        "reason": "Killed",
        "message": "killed on request",
        "finishedAt": now,
    }})
}

/// `Failed` with a reason.
pub fn failed(exit_code: Option<i32>, reason: &str, message: &str, now: Time) -> Value {
    json!({"status": {
        "phase": "Failed",
        "exitCode": exit_code,
        "reason": reason,
        "message": message,
        "finishedAt": now,
    }})
}

/// `Finished` (code 0) or `Failed` (anything else) for a run that ended by itself.
pub fn ended(exit: &Exit, now: Time) -> Value {
    if exit.is_success() {
        json!({"status": {
            "phase": "Finished",
            "exitCode": 0,
            "reason": "Exited",
            "message": exit.message,
            "finishedAt": now,
        }})
    } else {
        failed(exit.code, "Exited", &exit.message, now)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use pacer_schemas::ObjectMeta;
    use pacer_schemas::instance::{InstanceSpec, InstanceStatus};

    use super::*;

    fn now() -> Time {
        Time::from_unix_seconds(1_700_000_000).unwrap()
    }

    fn instance(
        goal: InstanceGoal,
        phase: Option<InstancePhase>,
        runtime_id: Option<&str>,
    ) -> Instance {
        Instance {
            metadata: ObjectMeta::named("default", "web-1"),
            spec: InstanceSpec {
                goal: Some(goal),
                node_name: Some("node-1".into()),
                ..InstanceSpec::default()
            },
            status: phase.map(|phase| InstanceStatus {
                phase,
                runtime_id: runtime_id.map(str::to_owned),
                ..InstanceStatus::default()
            }),
            ..Instance::default()
        }
    }

    fn local(exit: Option<i32>) -> Local {
        Local {
            runtime: "process",
            runtime_id: "42".into(),
            exit: exit.map(|code| Exit {
                code: Some(code),
                message: format!("exited with code {code}"),
            }),
        }
    }

    fn phase_of(step: &Step) -> Option<String> {
        let (Step::Report(patch) | Step::Release(Some(patch))) = step else {
            return None;
        };
        patch["status"]["phase"].as_str().map(str::to_owned)
    }

    /// (desired goal and phase, reported runtime id, local exit, expected step, phase written)
    type Case = (
        Option<(InstanceGoal, Option<InstancePhase>)>,
        Option<&'static str>,
        Option<Option<i32>>,
        &'static str,
        Option<&'static str>,
    );

    #[test]
    fn decisions() {
        use InstanceGoal::{Decommissioned, Running, Stopped};
        use InstancePhase as P;
        // (desired goal and phase, reported runtime id, local exit, expected step, phase written)
        let table: Vec<Case> = vec![
            (None, None, None, "nothing", None),
            (None, None, Some(None), "kill-orphan", None),
            (None, None, Some(Some(0)), "release", None),
            (Some((Running, None)), None, None, "start", None),
            (Some((Running, Some(P::Staging))), None, None, "start", None),
            (
                Some((Running, Some(P::Running))),
                Some("42"),
                None,
                "report",
                Some("Failed"),
            ),
            (
                Some((Running, Some(P::Failed))),
                None,
                None,
                "nothing",
                None,
            ),
            (
                Some((Running, Some(P::Starting))),
                Some("42"),
                Some(None),
                "report",
                Some("Running"),
            ),
            (
                Some((Running, Some(P::Running))),
                Some("41"),
                Some(None),
                "report",
                Some("Running"),
            ),
            (
                Some((Running, Some(P::Running))),
                Some("42"),
                Some(None),
                "nothing",
                None,
            ),
            (
                Some((Running, Some(P::Lost))),
                Some("42"),
                Some(None),
                "report",
                Some("Running"),
            ),
            (
                Some((Running, Some(P::Failed))),
                Some("42"),
                Some(None),
                "kill-orphan",
                None,
            ),
            (
                Some((Running, Some(P::Running))),
                Some("42"),
                Some(Some(0)),
                "release",
                Some("Finished"),
            ),
            (
                Some((Running, Some(P::Running))),
                Some("42"),
                Some(Some(3)),
                "release",
                Some("Failed"),
            ),
            (
                Some((Running, Some(P::Failed))),
                Some("42"),
                Some(Some(3)),
                "release",
                None,
            ),
            (
                Some((Decommissioned, Some(P::Running))),
                Some("42"),
                Some(None),
                "kill",
                None,
            ),
            (
                Some((Stopped, Some(P::Running))),
                Some("42"),
                Some(None),
                "kill",
                None,
            ),
            (
                Some((Decommissioned, Some(P::Killing))),
                None,
                None,
                "report",
                Some("Killed"),
            ),
            (
                Some((Decommissioned, None)),
                None,
                None,
                "report",
                Some("Killed"),
            ),
            (
                Some((Decommissioned, Some(P::Killed))),
                None,
                None,
                "nothing",
                None,
            ),
            (
                Some((Decommissioned, Some(P::Killing))),
                Some("42"),
                Some(Some(143)),
                "release",
                Some("Killed"),
            ),
        ];
        for (desired, reported, local_exit, expected, phase) in table {
            let instance = desired
                .clone()
                .map(|(goal, phase)| instance(goal, phase, reported));
            let local = local_exit.map(local);
            let step = decide(instance.as_ref(), local.as_ref(), now());
            let kind = match &step {
                Step::Nothing => "nothing",
                Step::Start => "start",
                Step::Report(_) => "report",
                Step::Kill { report: true } => "kill",
                Step::Kill { report: false } => "kill-orphan",
                Step::Release(_) => "release",
            };
            let case = format!("{desired:?} reported {reported:?} local {local_exit:?}");
            assert_eq!(kind, expected, "{case}: {step:?}");
            assert_eq!(phase_of(&step).as_deref(), phase, "{case}: {step:?}");
        }
    }

    #[test]
    fn patches_carry_reasons_and_codes() {
        let exit = Exit {
            code: Some(3),
            message: "exited with code 3".into(),
        };
        let patch = ended(&exit, now());
        assert_eq!(patch["status"]["phase"], "Failed");
        assert_eq!(patch["status"]["exitCode"], 3);
        assert_eq!(patch["status"]["reason"], "Exited");
        let patch = running("abc", None, now());
        assert_eq!(patch["status"]["startedAt"], "2023-11-14T22:13:20Z");
        assert_eq!(patch["status"]["reason"], Value::Null);
    }
}
