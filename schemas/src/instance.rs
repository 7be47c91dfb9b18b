//! `Instance`: one running copy of an App (Marathon's task, Kubernetes' pod). The deployment
//! controller creates it with a copy of the App's spec at one version, the placement controller
//! binds it to a node and host ports, the node's agent runs it and reports its phase, health
//! and readiness, and the controllers kill it by changing its goal.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::app::AppSpec;
use crate::condition::Condition;
use crate::meta::ObjectMeta;
use crate::resource::impl_resource;
use crate::time::Time;
use crate::wire_enum::wire_enum;

/// One copy of an App, bound to a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Instance")]
pub struct Instance {
    /// `pacer.dev/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `Instance`.
    #[serde(default)]
    pub kind: String,
    /// Name (by convention `<app name>.<suffix>`), namespace (the App's), labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What to run and where.
    #[serde(default)]
    pub spec: InstanceSpec,
    /// What the agent observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<InstanceStatus>,
}

impl_resource!(Instance {
    kind: "Instance",
    plural: "instances",
    singular: "instance",
    short_names: ["inst"],
    categories: ["all"],
    namespaced: true,
    scale: false,
    defaults: crate::defaults::apply_instance_defaults,
    validate: crate::validation::validate_instance,
    validate_update: crate::validation::validate_instance_update,
    spec: InstanceSpec,
    status: InstanceStatus,
});

wire_enum! {
    /// What the controllers want to happen to an instance (Marathon's instance goal).
    pub enum InstanceGoal {
        /// Keep it running (default).
        Running = "Running",
        /// Stop it but keep its reservations (resident instances).
        Stopped = "Stopped",
        /// Kill it and forget it.
        Decommissioned = "Decommissioned",
    }
}

/// Lifecycle phase of an instance, as its agent (or, for `Lost`, the node controller) reports
/// it. Terminal phases are `Killed`, `Finished`, `Failed` and `Gone`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum InstancePhase {
    /// Created, waiting to be bound to a node.
    #[default]
    Scheduled,
    /// Bound; the agent is preparing it (fetching, pulling).
    Staging,
    /// Started; not yet reported running.
    Starting,
    /// Running.
    Running,
    /// A kill was sent; waiting for it to exit.
    Killing,
    /// Killed on request.
    Killed,
    /// Exited with code 0.
    Finished,
    /// Exited non-zero or could not start.
    Failed,
    /// Its node stopped answering; it may still be running there.
    Lost,
    /// Its node is gone for good; it is not running.
    Gone,
}

impl InstancePhase {
    /// Whether the instance has stopped for good.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Killed | Self::Finished | Self::Failed | Self::Gone
        )
    }

    /// Whether it counts as staged for Marathon (`tasksStaged`).
    pub fn is_staged(self) -> bool {
        matches!(self, Self::Staging | Self::Starting)
    }

    /// The Mesos task state Marathon's `/v2` API shows for this phase.
    pub fn marathon_task_state(self) -> &'static str {
        match self {
            Self::Scheduled | Self::Staging => "TASK_STAGING",
            Self::Starting => "TASK_STARTING",
            Self::Running => "TASK_RUNNING",
            Self::Killing => "TASK_KILLING",
            Self::Killed => "TASK_KILLED",
            Self::Finished => "TASK_FINISHED",
            Self::Failed => "TASK_FAILED",
            Self::Lost => "TASK_UNREACHABLE",
            Self::Gone => "TASK_GONE",
        }
    }
}

/// What to run and where.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSpec {
    /// Name of the App (same namespace) this instance belongs to.
    #[serde(default)]
    pub app: String,
    /// Version of the App spec this instance runs (Marathon-style timestamp).
    #[serde(default)]
    pub app_version: String,
    /// Copy of the App's spec at `appVersion`, so that the agent runs exactly that version
    /// while the App moves on during a rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<AppSpec>,
    /// Node the instance is bound to; empty until placed, then fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Host ports assigned at placement, one per App port, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ports: Option<Vec<i32>>,
    /// Role whose resources the instance uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `Running` (default), `Stopped` or `Decommissioned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<InstanceGoal>,
}

/// What the agent observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// Lifecycle phase.
    #[serde(default)]
    pub phase: InstancePhase,
    /// Host name or address of the node, for clients (Marathon's task `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Addresses of the instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    /// Runtime's id (container id or process id), so a restarted agent adopts the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    /// One result per App health check, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<HealthCheckResult>,
    /// Whether every health check passes; absent without health checks or before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// Readiness check results, while a deployment waits on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readiness: Vec<ReadinessCheckResult>,
    /// Times the agent restarted the process in place.
    #[serde(default)]
    pub restarts: i32,
    /// Exit code of the last run, once exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Machine-readable reason for the phase, e.g. `HealthCheckFailed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was bound to a node (Marathon's `stagedAt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_at: Option<Time>,
    /// When it was first reported running (`startedAt`; absent until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// When its node was last seen while it was `Lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_since: Option<Time>,
    /// Other conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Result of one health check (Marathon's `healthCheckResults[]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckResult {
    /// Index of the check in the App's `healthChecks`.
    #[serde(default)]
    pub index: i32,
    /// Whether the last check passed.
    #[serde(default)]
    pub alive: bool,
    /// Failures in a row.
    #[serde(default)]
    pub consecutive_failures: i32,
    /// First success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_success: Option<Time>,
    /// Last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<Time>,
    /// Last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Time>,
    /// Why the last failure failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_cause: Option<String>,
}

/// Result of a readiness check.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessCheckResult {
    /// Name of the readiness check.
    #[serde(default)]
    pub name: String,
    /// Whether the instance is ready.
    #[serde(default)]
    pub ready: bool,
    /// Last response, when `preserveLastResponse` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_response: Option<HttpResponseSummary>,
}

/// An HTTP response kept for display.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpResponseSummary {
    /// Status code.
    #[serde(default)]
    pub status: i32,
    /// `Content-Type` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Body (truncated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Labels the controllers put on Instances to select them by App.
pub mod labels {
    /// Label holding the App's name: `pacer.dev/app=<name>`.
    pub const APP: &str = "pacer.dev/app";
}

impl Instance {
    /// The App's label selector for its Instances (`/scale`'s `status.selector`).
    pub fn selector_for_app(app_name: &str) -> String {
        format!("{}={app_name}", labels::APP)
    }

    /// Labels an Instance of `app_name` carries.
    pub fn labels_for_app(app_name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(labels::APP.to_owned(), app_name.to_owned())])
    }

    /// The phase, `Scheduled` before any status is written.
    pub fn phase(&self) -> InstancePhase {
        self.status
            .as_ref()
            .map(|status| status.phase)
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn phases_map_onto_marathon_states() {
        for (phase, state, terminal) in [
            (InstancePhase::Scheduled, "TASK_STAGING", false),
            (InstancePhase::Running, "TASK_RUNNING", false),
            (InstancePhase::Killing, "TASK_KILLING", false),
            (InstancePhase::Finished, "TASK_FINISHED", true),
            (InstancePhase::Failed, "TASK_FAILED", true),
            (InstancePhase::Lost, "TASK_UNREACHABLE", false),
            (InstancePhase::Gone, "TASK_GONE", true),
        ] {
            assert_eq!(phase.marathon_task_state(), state);
            assert_eq!(phase.is_terminal(), terminal, "{phase:?}");
        }
        assert_eq!(Instance::default().phase(), InstancePhase::Scheduled);
        assert_eq!(Instance::selector_for_app("web"), "pacer.dev/app=web");
    }
}
