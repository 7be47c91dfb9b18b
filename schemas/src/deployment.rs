//! `Deployment`: a rollout plan, as Marathon's `/v2/deployments` shows it — the apps it
//! touches and ordered steps of concurrent actions — with its progress in `status`.
//!
//! Deployments are cluster-scoped: a Marathon group change can touch apps in several
//! namespaces (dependencies cross groups), and `/v2/deployments` lists all of them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::instance::ReadinessCheckResult;
use crate::meta::ObjectMeta;
use crate::resource::impl_resource;
use crate::time::Time;

/// A rollout plan and its progress (cluster-scoped).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Deployment")]
pub struct Deployment {
    /// `pacer.dev/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `Deployment`.
    #[serde(default)]
    pub kind: String,
    /// Name (Marathon's deployment id, a UUID).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The plan.
    #[serde(default)]
    pub spec: DeploymentSpec,
    /// Progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeploymentStatus>,
}

impl_resource!(Deployment {
    kind: "Deployment",
    plural: "deployments",
    singular: "deployment",
    short_names: ["deploy"],
    categories: ["all"],
    namespaced: false,
    scale: false,
    defaults: crate::defaults::apply_deployment_defaults,
    validate: crate::validation::validate_deployment,
    validate_update: crate::validation::validate_deployment_update,
    spec: DeploymentSpec,
    status: DeploymentStatus,
});

/// What a deployment step does to one App (Marathon's action names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DeploymentActionKind {
    /// Create a new App's instances.
    StartApplication,
    /// Remove an App and kill its instances.
    StopApplication,
    /// Change the number of instances, without restarting others.
    ScaleApplication,
    /// Replace instances with the new version, per the upgrade strategy.
    RestartApplication,
    /// Fetch artifacts the new version needs.
    ResolveArtifacts,
    /// Kill the instances of older versions.
    KillAllOldTasksOf,
}

/// A reference to an App.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct AppRef {
    /// Namespace of the App.
    pub namespace: String,
    /// Name of the App.
    pub name: String,
}

/// A rollout plan: the affected apps and ordered steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Apps the plan touches.
    #[serde(default)]
    pub affected_apps: Vec<AppRef>,
    /// Steps, run one after another; the actions of a step run concurrently.
    #[serde(default)]
    pub steps: Vec<DeploymentStep>,
    /// Name of the Deployment this one reverts (rollback), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverts: Option<String>,
    /// Whether the plan was forced over a conflicting deployment (`?force=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}

/// One step: actions that run concurrently.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStep {
    /// The actions.
    #[serde(default)]
    pub actions: Vec<DeploymentAction>,
}

/// One action on one App.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentAction {
    /// What to do.
    pub action: DeploymentActionKind,
    /// To which App.
    pub app: AppRef,
    /// App version the action moves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Target instance count (scale and restart actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<i32>,
    /// App version the App had before (what a rollback of this action returns to); absent
    /// for a start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    /// Revision of the App version the action moves to (its `AppVersion` is
    /// `<app>-<revision>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
}

/// Phase of a deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DeploymentPhase {
    /// Accepted, not started.
    #[default]
    Pending,
    /// Steps are running.
    Running,
    /// Every step finished.
    Succeeded,
    /// Gave up (progress deadline or canary failure).
    Failed,
    /// Cancelled (`DELETE /v2/deployments/<id>`) or superseded by a forced deployment.
    Cancelled,
}

/// Progress of a deployment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// Phase.
    #[serde(default)]
    pub phase: DeploymentPhase,
    /// 1-based index of the step in progress, as Marathon counts (0 before the first).
    #[serde(default)]
    pub current_step: i32,
    /// Number of steps.
    #[serde(default)]
    pub total_steps: i32,
    /// Actions of the current step with their readiness results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub current_actions: Vec<ActionStatus>,
    /// When the first step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it reached a final phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions: `Paused` (a canary waits for `pacer rollout promote`), `Progressing`
    /// (False with the reason once it failed) and `Reverted` (rolled back by `autoRevert`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Pacer: when the rollout last made progress (a new instance turned healthy capacity, an
    /// old one went, or a canary was promoted); `progressDeadlineSeconds` counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_progress_at: Option<Time>,
}

/// An action of the current step and how far it got.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionStatus {
    /// What is being done.
    pub action: DeploymentActionKind,
    /// To which App.
    pub app: AppRef,
    /// Readiness results of the new instances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readiness_check_results: Vec<ReadinessCheckResult>,
    /// Instances the action converges to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_instances: Option<i32>,
    /// Live instances of the new version (not being killed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_instances: Option<i32>,
    /// Of those, how many count as healthy capacity (running, healthy and ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_instances: Option<i32>,
    /// Live instances of older versions, or being killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_instances: Option<i32>,
    /// What the action waits for, if it cannot progress (e.g. a dependency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

/// The finalizer the deployment controller puts on Deployments: deleting a running Deployment
/// then rolls its App back first (Marathon's `DELETE /v2/deployments/{id}`); a forced delete
/// (`?force=true`) drops it, so the Deployment goes at once without a rollback.
pub const DEPLOYMENT_FINALIZER: &str = "pacer.dev/deployment-controller";

/// Pacer: the annotation that promotes a paused canary (`pacer rollout promote APP` sets it on
/// the Deployment, value the time of the promotion). The deployment controller reads it; once
/// present, the rest of the instances roll under the normal upgrade strategy.
pub const PROMOTED_ANNOTATION: &str = "pacer.dev/promoted";

/// Pacer: the annotation the deployment controller sets on an App it rolled back by
/// `autoRevert`, naming the failed Deployment; the Deployment of the rollback then names it in
/// `spec.reverts` (and neither pauses for a canary nor reverts again).
pub const AUTO_REVERT_OF_ANNOTATION: &str = "pacer.dev/auto-revert-of";

/// Condition types and reasons of a Deployment's `status.conditions`.
pub mod conditions {
    /// `True` while a canary waits for promotion (reason [`AWAITING_PROMOTION`]); `False` with
    /// [`PROMOTED`] after it.
    pub const PAUSED: &str = "Paused";
    /// `False` once the deployment failed, with the reason why.
    pub const PROGRESSING: &str = "Progressing";
    /// `True` when `autoRevert` rolled the App back after this deployment failed.
    pub const REVERTED: &str = "Reverted";
    /// The canary instances are up; waiting for `pacer rollout promote`.
    pub const AWAITING_PROMOTION: &str = "AwaitingPromotion";
    /// The canary was promoted.
    pub const PROMOTED: &str = "Promoted";
    /// No progress within `progressDeadlineSeconds` (Kubernetes' reason).
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    /// An instance of the new version failed (crashed, or was killed for failing health).
    pub const INSTANCE_FAILED: &str = "InstanceFailed";
    /// Rolled back automatically (`upgradeStrategy.autoRevert`).
    pub const AUTO_REVERTED: &str = "AutoReverted";
}

/// Labels the deployment controller puts on Deployments.
pub mod labels {
    /// Namespace of the App a Deployment touches (`pacer.dev/app-namespace=<namespace>`).
    pub const APP_NAMESPACE: &str = "pacer.dev/app-namespace";
    /// Name of the App a Deployment touches (`pacer.dev/app=<name>`, as on Instances).
    pub const APP: &str = crate::instance::labels::APP;
}

impl DeploymentPhase {
    /// Whether the deployment still runs (and so locks its apps).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

impl Deployment {
    /// The phase, `Pending` before any status is written.
    pub fn phase(&self) -> DeploymentPhase {
        self.status
            .as_ref()
            .map(|status| status.phase)
            .unwrap_or_default()
    }

    /// Whether the deployment touches App `namespace`/`name`.
    pub fn touches(&self, namespace: &str, name: &str) -> bool {
        self.spec
            .affected_apps
            .iter()
            .any(|app| app.namespace == namespace && app.name == name)
    }
}
