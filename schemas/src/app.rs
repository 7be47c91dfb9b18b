//! `App`: a Marathon app definition as a `pacer.dev/v1` resource. The spec keeps Marathon's
//! field names (camelCase JSON) and meanings so that a Marathon definition, minus its `id`,
//! is a valid spec; every field is optional on the wire so that defaulting (see `defaults.rs`)
//! is explicit and visible. The status carries Marathon's task counts and the usual
//! Kubernetes `observedGeneration` and conditions.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::condition::Condition;
use crate::constraint::Constraint;
use crate::container::{Container, DockerNetwork};
use crate::env::EnvVarValue;
use crate::health::{AppCheck, HealthCheck, ReadinessCheck};
use crate::meta::ObjectMeta;
use crate::networking::{IpAddress, Network, NetworkMode, PortDefinition};
use crate::resource::impl_resource;
use crate::time::Time;
use crate::wire_enum::wire_enum;

/// A long-running application: how many instances of which command or image to keep running,
/// with what resources, ports, checks, constraints and rollout strategy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "App")]
pub struct App {
    /// `pacer.dev/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `App`.
    #[serde(default)]
    pub kind: String,
    /// Name, namespace, labels and server-maintained fields.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The desired state, in Marathon's app definition fields.
    #[serde(default)]
    pub spec: AppSpec,
    /// The observed state, written by controllers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AppStatus>,
}

impl_resource!(App {
    kind: "App",
    plural: "apps",
    singular: "app",
    short_names: ["ap"],
    categories: ["all"],
    namespaced: true,
    scale: true,
    defaults: crate::defaults::apply_defaults,
    validate: crate::validation::validate,
    validate_update: crate::validation::validate_app_update,
    spec: AppSpec,
    status: AppStatus,
});

impl App {
    /// An App with type metadata, a name, a namespace and a spec.
    pub fn new(namespace: &str, name: &str, spec: AppSpec) -> Self {
        Self {
            api_version: crate::API_VERSION.to_owned(),
            kind: "App".to_owned(),
            metadata: ObjectMeta::named(namespace, name),
            spec,
            status: None,
        }
    }
}

/// Desired state of an App, in Marathon's app definition fields (without `id`, which is
/// `metadata.namespace` and `metadata.name`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    /// Shell command, run with `/bin/sh -c`. Exactly one of `cmd` and `args`, unless a Docker
    /// image supplies the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// Command as an argument vector, run without a shell (appended to the image's entrypoint
    /// for Docker). Exclusive with `cmd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// OS user the command runs as on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Environment variables: a string, or `{"secret": "<name in secrets>"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, EnvVarValue>>,
    /// Number of instances to keep running (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<i32>,
    /// CPU shares per instance (default 1, at least 0.001).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::number::serialize_option"
    )]
    pub cpus: Option<f64>,
    /// Memory per instance in MiB (default 128).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::number::serialize_option"
    )]
    pub mem: Option<f64>,
    /// Scratch disk per instance in MiB (default 0).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::number::serialize_option"
    )]
    pub disk: Option<f64>,
    /// GPUs per instance (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<i32>,
    /// Custom executor (Marathon's; `//cmd` is the command executor). Kept for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    /// Placement constraints `[field, OPERATOR, value?]`: UNIQUE, CLUSTER, GROUP_BY, LIKE,
    /// UNLIKE, MAX_PER, IS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Vec<Constraint>>,
    /// Roles whose resources may be used, e.g. `["*"]` or `["slave_public"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_resource_roles: Option<Vec<String>>,
    /// Docker image, port mappings and volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// Marathon ids of apps or groups that must be running and healthy first (absolute, or
    /// relative to this App's group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<Vec<String>>,
    /// Files fetched into the sandbox before start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<Vec<Fetch>>,
    /// Deprecated list of URIs to fetch; use `fetch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uris: Option<Vec<String>>,
    /// Deprecated artifact-store URLs. Kept for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_urls: Option<Vec<String>>,
    /// Health checks; unhealthy instances are killed and replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checks: Option<Vec<HealthCheck>>,
    /// Readiness checks that gate deployments (at most one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_checks: Option<Vec<ReadinessCheck>>,
    /// An informational check, reported but never acted on (Marathon 1.6+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<AppCheck>,
    /// Marathon labels, free-form, also used by `/v2/apps?label=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// First launch delay after a failure, in seconds (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_seconds: Option<i32>,
    /// Factor the launch delay grows by with each consecutive failure (default 1.15, at
    /// least 1).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::number::serialize_option"
    )]
    pub backoff_factor: Option<f64>,
    /// Longest launch delay in seconds (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_launch_delay_seconds: Option<i32>,
    /// Ports under host networking; each instance gets one host port per entry. Defaults to
    /// one dynamic port named `default` when no ports are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_definitions: Option<Vec<PortDefinition>>,
    /// Deprecated list of service ports; use `portDefinitions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<i32>>,
    /// Use the declared ports as host ports instead of picking free ones (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_ports: Option<bool>,
    /// Networks to join (default `[{mode: host}]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<Network>>,
    /// Deprecated IP-per-task settings; use `networks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<IpAddress>,
    /// Relaunch behaviour of instances with local persistent volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency: Option<Residency>,
    /// Secrets the App may reference from `env` and volumes, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<BTreeMap<String, SecretSource>>,
    /// Seconds between SIGTERM and SIGKILL when an instance is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_kill_grace_period_seconds: Option<i32>,
    /// How a new version replaces the old (default 1.0/1.0: start all new, then stop all old).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_strategy: Option<UpgradeStrategy>,
    /// Which instances go first on scale-down: `YOUNGEST_FIRST` (default) or `OLDEST_FIRST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_selection: Option<KillSelection>,
    /// When instances on an unreachable node are replaced and expunged, or `"disabled"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_strategy: Option<UnreachableStrategy>,
    /// Allocate a TTY for the command (Marathon 1.6+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    /// Role whose resources the App's instances use (Marathon 1.9+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

wire_enum! {
    /// Which instances are killed first when an App scales down.
    pub enum KillSelection {
        /// The most recently started instances first (Marathon's default).
        YoungestFirst = "YOUNGEST_FIRST",
        /// The longest-running instances first.
        OldestFirst = "OLDEST_FIRST",
    }
}

wire_enum! {
    /// What happens to a resident instance whose node is lost.
    pub enum TaskLostBehavior {
        /// Wait for the node to come back.
        WaitForever = "WAIT_FOREVER",
        /// Relaunch elsewhere after `relaunchEscalationTimeoutSeconds`.
        RelaunchAfterTimeout = "RELAUNCH_AFTER_TIMEOUT",
    }
}

/// How a deployment replaces old instances with new ones. Marathon's two fields, plus Pacer's
/// canary and progress-deadline extensions (absent means off, which is Marathon's behaviour).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStrategy {
    /// Fraction (0..=1) of `instances` that must stay healthy during an upgrade (default 1).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::number::serialize_option"
    )]
    pub minimum_health_capacity: Option<f64>,
    /// Fraction (0..=1) of `instances` that may run in addition during an upgrade (default 1).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::number::serialize_option"
    )]
    pub maximum_over_capacity: Option<f64>,
    /// Pacer: start this many new instances first and wait for them to be healthy and ready
    /// before rolling the rest. Absent or 0: no canary step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<i32>,
    /// Pacer: roll back automatically when the deployment fails (canary unhealthy or
    /// `progressDeadlineSeconds` exceeded). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_revert: Option<bool>,
    /// Pacer: seconds without progress after which the deployment is marked failed. Absent:
    /// wait forever, as Marathon does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i64>,
}

/// What to do with instances on a node that stopped answering.
#[derive(Clone, Debug, PartialEq)]
pub enum UnreachableStrategy {
    /// Never replace them (`"disabled"`).
    Disabled,
    /// Replace them after `inactiveAfterSeconds`, forget them after `expungeAfterSeconds`.
    Enabled(UnreachableEnabled),
}

/// Timeouts for instances on an unreachable node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnreachableEnabled {
    /// Seconds an instance may be unreachable before a replacement is launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive_after_seconds: Option<i64>,
    /// Seconds after which an unreachable instance is expunged (killed if it comes back);
    /// at least `inactiveAfterSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expunge_after_seconds: Option<i64>,
}

/// A file fetched into the instance's sandbox before start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Fetch {
    /// URI to fetch.
    pub uri: String,
    /// Mark the file executable (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<bool>,
    /// Extract archives (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<bool>,
    /// Cache the file on the node (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    /// File name in the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
    /// File name in the sandbox (the older spelling of `outputFile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_path: Option<String>,
}

/// Relaunch behaviour of instances with local persistent volumes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Residency {
    /// Seconds to wait for a lost resident instance's node before relaunching elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relaunch_escalation_timeout_seconds: Option<i64>,
    /// `WAIT_FOREVER` or `RELAUNCH_AFTER_TIMEOUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_lost_behavior: Option<TaskLostBehavior>,
}

/// Where a secret's value comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretSource {
    /// Path of the secret in the secret store.
    pub source: String,
}

/// Observed state of an App.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Version (Marathon-style timestamp) of the spec the instances converge to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// Revision of the current version: 1 for the first, one more per change (the
    /// `AppVersion` named `<app>-<revision>` holds its snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Version of the last change that was not only a scale (Marathon's
    /// `lastConfigChangeAt`); instances of the current config carry it as `spec.appVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<String>,
    /// Instances of the current config version (Kubernetes' `updatedReplicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<i32>,
    /// When the App was last scaled and last changed otherwise (Marathon's `versionInfo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<VersionInfo>,
    /// Instances that exist, in any phase (`/scale`'s `status.replicas`).
    #[serde(default)]
    pub instances: i32,
    /// Instances placed but not yet running (Marathon's `tasksStaged`).
    #[serde(default)]
    pub staged: i32,
    /// Running instances (`tasksRunning`).
    #[serde(default)]
    pub running: i32,
    /// Running instances whose health checks all pass (`tasksHealthy`).
    #[serde(default)]
    pub healthy: i32,
    /// Running instances with a failing health check (`tasksUnhealthy`).
    #[serde(default)]
    pub unhealthy: i32,
    /// Names of the Deployments in progress for this App (Marathon's `deployments`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<String>,
    /// The most recent instance failure (Marathon's `lastTaskFailure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<InstanceFailure>,
    /// The current launch backoff, while one is in force (Marathon's `/v2/queue` delay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_delay: Option<LaunchDelay>,
    /// `Available`, `Progressing` and other conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// When an App last changed (Marathon's `versionInfo`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// Last change of `instances` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scaling_at: Option<Time>,
    /// Last change of anything else in the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_config_change_at: Option<Time>,
}

/// The most recent failure of one of an App's instances.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceFailure {
    /// Name of the failed Instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Node it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Host it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Final phase, e.g. `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// What happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Time>,
    /// App version the instance ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Machine-readable reason the agent gave, e.g. `ImageNotFound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Exit code, when the instance exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// A launch backoff in force after consecutive failures (Marathon's `RateLimiter` delay),
/// written by the deployment controller. Clearing it (a `/status` write that removes
/// `launchDelay`, as `DELETE /v2/queue/{appId}/delay` and `pacer queue reset` do) resets the
/// backoff: the controller launches at once and counts failures from zero.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaunchDelay {
    /// Consecutive failures so far.
    #[serde(default)]
    pub consecutive_failures: i32,
    /// Current delay in seconds.
    #[serde(default, serialize_with = "crate::number::serialize")]
    pub delay_seconds: f64,
    /// No launch before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Time>,
    /// When the first failure of this run of failures was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// Why launches wait, e.g. `Failed: exit code 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One App's entry in the launch queue (Marathon's `/v2/queue` item): what waits to launch,
/// why, and until when. [`launch_queue_entry`] derives it from the App's status and its
/// Instances, so the API server and the CLI show the same thing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LaunchQueueEntry {
    /// Instances not launched yet: created but not started (pending placement or start), plus
    /// those the launch delay holds back (target minus live instances).
    pub waiting: usize,
    /// Seconds until the launch delay ends (0 when none is in force).
    pub delay_left_seconds: f64,
    /// Whether the delay has passed (or there is none) and launches are due (Marathon's
    /// `overdue`).
    pub overdue: bool,
    /// The delay's end, while one is recorded.
    pub until: Option<Time>,
    /// Why launches wait: the backoff's reason, else the placement condition's message of a
    /// pending instance, else `Pending`.
    pub reason: String,
    /// Since when the App waits: the start of its failures, else its oldest pending instance.
    pub since: Option<Time>,
}

/// The launch-queue entry of `app` at `now`, given its `instances`; `None` when nothing
/// waits to launch and no delay is in force (a recorded delay whose `until` passed is not
/// shown: nothing waits for it any more).
pub fn launch_queue_entry(
    app: &App,
    instances: &[&crate::instance::Instance],
    now: Time,
) -> Option<LaunchQueueEntry> {
    use crate::instance::{InstanceGoal, InstancePhase};
    let goal_running = |instance: &crate::instance::Instance| {
        instance
            .spec
            .goal
            .as_ref()
            .is_none_or(|goal| *goal == InstanceGoal::Running)
    };
    let pending: Vec<&crate::instance::Instance> = instances
        .iter()
        .copied()
        .filter(|instance| goal_running(instance) && instance.phase() == InstancePhase::Scheduled)
        .collect();
    let live = instances
        .iter()
        .filter(|instance| goal_running(instance) && !instance.phase().is_terminal())
        .count();
    let target = usize::try_from(app.spec.instances.unwrap_or(1)).unwrap_or(0);
    let delay = app
        .status
        .as_ref()
        .and_then(|status| status.launch_delay.as_ref());
    let left = delay
        .and_then(|delay| delay.until)
        .map(|until| {
            let span = until.timestamp().duration_since(now.timestamp());
            span.as_secs_f64().max(0.0)
        })
        .unwrap_or(0.0);
    let held = if left > 0.0 {
        target.saturating_sub(live)
    } else {
        0
    };
    let waiting = pending.len() + held;
    if waiting == 0 && left <= 0.0 {
        return None;
    }
    let placement = pending.iter().find_map(|instance| {
        instance
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|condition| condition.type_ == "Scheduled" && !condition.is_true())
            .and_then(|condition| condition.message.clone().or(condition.reason.clone()))
    });
    let reason = match (delay, placement) {
        (Some(delay), _) if left > 0.0 => {
            delay.reason.clone().unwrap_or_else(|| "Backoff".to_owned())
        }
        (_, Some(placement)) => placement,
        _ => "Pending".to_owned(),
    };
    let oldest_pending = pending
        .iter()
        .filter_map(|instance| instance.metadata.creation_timestamp)
        .min();
    let since = match delay.and_then(|delay| delay.since) {
        Some(since) => Some(oldest_pending.map_or(since, |pending| pending.min(since))),
        None => oldest_pending,
    };
    Some(LaunchQueueEntry {
        waiting,
        delay_left_seconds: left,
        overdue: left <= 0.0,
        until: delay.and_then(|delay| delay.until),
        reason,
        since,
    })
}

impl AppSpec {
    /// Whether instances use host networking (ports from `portDefinitions`) rather than a
    /// container network (ports from `container.portMappings`). Absent `networks` means host,
    /// unless the deprecated `container.docker.network` says `BRIDGE` or `USER`.
    pub fn uses_host_networking(&self) -> bool {
        match self.networks.as_deref() {
            Some(networks) if !networks.is_empty() => networks
                .iter()
                .any(|network| network.mode == Some(NetworkMode::Host)),
            _ => !matches!(
                self.docker_network(),
                Some(DockerNetwork::Bridge | DockerNetwork::User)
            ),
        }
    }

    /// The names of the ports each instance gets, in order: `portDefinitions` (or the
    /// deprecated `ports`, or the one default port that defaulting adds) under host
    /// networking, else the container's port mappings. Health checks' `portIndex` indexes
    /// this list.
    pub fn port_names(&self) -> Vec<Option<&str>> {
        if self.uses_host_networking() {
            match (&self.port_definitions, &self.ports) {
                (Some(definitions), _) => definitions
                    .iter()
                    .map(|definition| definition.name.as_deref())
                    .collect(),
                (None, Some(ports)) => ports.iter().map(|_| None).collect(),
                (None, None) => vec![Some(crate::defaults::DEFAULT_PORT_NAME)],
            }
        } else {
            self.port_mappings()
                .unwrap_or_default()
                .iter()
                .map(|mapping| mapping.name.as_deref())
                .collect()
        }
    }

    /// The container's port mappings, from `container.portMappings` or the deprecated
    /// `container.docker.portMappings`.
    pub fn port_mappings(&self) -> Option<&[crate::container::PortMapping]> {
        let container = self.container.as_ref()?;
        container.port_mappings.as_deref().or_else(|| {
            container
                .docker
                .as_ref()
                .and_then(|docker| docker.port_mappings.as_deref())
        })
    }

    /// Whether the App has local persistent volumes, which pin its instances to their nodes.
    pub fn is_resident(&self) -> bool {
        self.container
            .iter()
            .flat_map(|container| container.volumes.iter().flatten())
            .any(|volume| volume.persistent.is_some())
    }

    /// The Docker image, if any.
    pub fn image(&self) -> Option<&str> {
        self.container.as_ref()?.docker.as_ref()?.image.as_deref()
    }

    fn docker_network(&self) -> Option<&DockerNetwork> {
        self.container.as_ref()?.docker.as_ref()?.network.as_ref()
    }
}

impl Serialize for UnreachableStrategy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Disabled => serializer.serialize_str("disabled"),
            Self::Enabled(enabled) => enabled.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for UnreachableStrategy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UnreachableVisitor)
    }
}

struct UnreachableVisitor;

impl<'de> Visitor<'de> for UnreachableVisitor {
    type Value = UnreachableStrategy;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(
            "\"disabled\" or an object {\"inactiveAfterSeconds\", \"expungeAfterSeconds\"}",
        )
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        if value == "disabled" {
            Ok(UnreachableStrategy::Disabled)
        } else {
            Err(de::Error::invalid_value(de::Unexpected::Str(value), &self))
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        UnreachableEnabled::deserialize(de::value::MapAccessDeserializer::new(map))
            .map(UnreachableStrategy::Enabled)
    }
}

impl JsonSchema for UnreachableStrategy {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("UnreachableStrategy")
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The string \"disabled\", or timeouts for replacing and expunging \
                instances on an unreachable node.",
            "anyOf": [
                { "type": "string", "enum": ["disabled"] },
                generator.subschema_for::<UnreachableEnabled>(),
            ],
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::condition::{Condition, ConditionStatus};
    use crate::instance::{Instance, InstanceGoal, InstancePhase, InstanceStatus};

    fn at(seconds: i64) -> Time {
        Time::from_unix_seconds(1_700_000_000 + seconds).unwrap()
    }

    fn instance(phase: InstancePhase, created: i64) -> Instance {
        let mut instance = Instance::default();
        instance.metadata.creation_timestamp = Some(at(created));
        instance.spec.goal = Some(InstanceGoal::Running);
        instance.status = Some(InstanceStatus {
            phase,
            ..InstanceStatus::default()
        });
        instance
    }

    #[test]
    fn the_queue_entry_shows_delays_and_pending_instances() {
        let mut app = App::new("default", "web", AppSpec::default());
        app.spec.instances = Some(2);
        // Nothing waits: no entry.
        let running = instance(InstancePhase::Running, 0);
        assert_eq!(
            launch_queue_entry(&app, &[&running, &running], at(10)),
            None
        );
        // A delay in force holds the missing instance.
        app.status = Some(AppStatus {
            launch_delay: Some(LaunchDelay {
                consecutive_failures: 2,
                delay_seconds: 1.15,
                until: Some(at(12)),
                since: Some(at(5)),
                reason: Some("Failed: exit code 1".into()),
            }),
            ..AppStatus::default()
        });
        let entry = launch_queue_entry(&app, &[&running], at(10)).unwrap();
        assert_eq!(entry.waiting, 1);
        assert!((entry.delay_left_seconds - 2.0).abs() < 1e-9);
        assert!(!entry.overdue);
        assert_eq!(entry.reason, "Failed: exit code 1");
        assert_eq!(entry.since, Some(at(5)));
        // Past the delay, with nothing pending: not in the queue.
        assert_eq!(launch_queue_entry(&app, &[&running], at(13)), None);
        // A pending instance that cannot be placed: the placement message is the reason.
        app.status = None;
        let mut pending = instance(InstancePhase::Scheduled, 3);
        let mut condition = Condition::new("Scheduled", ConditionStatus::False);
        condition.message = Some("0/1 nodes fit: insufficient cpus".into());
        pending.status.as_mut().unwrap().conditions = vec![condition];
        let entry = launch_queue_entry(&app, &[&running, &pending], at(10)).unwrap();
        assert_eq!(entry.waiting, 1);
        assert_eq!(entry.reason, "0/1 nodes fit: insufficient cpus");
        assert_eq!(entry.since, Some(at(3)));
        assert!(entry.overdue);
    }
}
