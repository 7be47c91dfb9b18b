//! Defaulting: fills unset fields with Marathon's defaults, explicitly, so that a stored App
//! shows every value that governs it and Marathon clients see the values Marathon would show.
//! Each function is idempotent and never overwrites a value that is set.
//!
//! Where Marathon's documents disagree, the RAML types (`docs/docs/rest-api/public/api/v2/
//! types/*.raml`, which generated the 1.4+ API model) win over older prose:
//! `maxLaunchDelaySeconds` is 3600 (docs/backoff.md's prose says 300 s, an older value) and
//! health checks use 300/60/20/3 and delay 15 (older docs show 15/10 s intervals).
//! `unreachableStrategy` is Pacer's own choice, see [`UNREACHABLE_INACTIVE_AFTER_SECONDS`].

use crate::app::{
    App, AppSpec, KillSelection, Residency, TaskLostBehavior, UnreachableEnabled,
    UnreachableStrategy, UpgradeStrategy,
};
use crate::container::ContainerType;
use crate::deployment::Deployment;
use crate::event::Event;
use crate::health::{HealthCheck, HealthCheckProtocol, ReadinessCheck, ReadinessProtocol};
use crate::instance::{Instance, InstanceGoal};
use crate::networking::{Network, NetworkMode, PortDefinition, PortProtocol};
use crate::node::Node;
use crate::offer::Offer;

/// Default `instances`.
pub const INSTANCES: i32 = 1;
/// Default `cpus`.
pub const CPUS: f64 = 1.0;
/// Default `mem` (MiB).
pub const MEM: f64 = 128.0;
/// Default `disk` (MiB).
pub const DISK: f64 = 0.0;
/// Default `gpus`.
pub const GPUS: i32 = 0;
/// Default `backoffSeconds`.
pub const BACKOFF_SECONDS: i32 = 1;
/// Default `backoffFactor`.
pub const BACKOFF_FACTOR: f64 = 1.15;
/// Default `maxLaunchDelaySeconds`: 3600 s as in Marathon 1.x's `app.raml` (and its
/// `/v2/queue` example); the prose of the older `docs/backoff.md` says 5 minutes.
pub const MAX_LAUNCH_DELAY_SECONDS: i32 = 3600;
/// Default `upgradeStrategy.minimumHealthCapacity`.
pub const MINIMUM_HEALTH_CAPACITY: f64 = 1.0;
/// Default `upgradeStrategy.maximumOverCapacity`.
pub const MAXIMUM_OVER_CAPACITY: f64 = 1.0;
/// Default `upgradeStrategy.minimumHealthCapacity` of resident Apps (with local persistent
/// volumes), whose `maximumOverCapacity` defaults to 0.
pub const RESIDENT_MINIMUM_HEALTH_CAPACITY: f64 = 0.5;
/// Default `unreachableStrategy.inactiveAfterSeconds`: 0, as in Marathon's documented example
/// (`inactiveAfterSeconds: 0, expungeAfterSeconds: 0`). An instance is replaced as soon as its
/// node's lease expires, so node death → replacement Running is the agent lease (8 s) plus
/// placement and start, inside the ≤ 10 s target (a 15 s wait here made it 25 s). The guard
/// against a node that merely hiccups past its lease is the lease itself (renewed three times
/// per duration) and the expunge period below: the returning node's stale copies are killed.
/// Apps that prefer waiting over a brief double set a larger value.
pub const UNREACHABLE_INACTIVE_AFTER_SECONDS: i64 = 0;
/// Default `unreachableStrategy.expungeAfterSeconds`: 5 minutes, Pacer's choice (a node back
/// within that time has its replaced instances killed rather than forgotten); raised to
/// `inactiveAfterSeconds` when that is larger.
pub const UNREACHABLE_EXPUNGE_AFTER_SECONDS: i64 = 300;
/// Default health-check `gracePeriodSeconds` (RAML).
pub const HEALTH_GRACE_PERIOD_SECONDS: i32 = 300;
/// Default health-check `intervalSeconds` (RAML).
pub const HEALTH_INTERVAL_SECONDS: i32 = 60;
/// Default health-check `timeoutSeconds` (RAML).
pub const HEALTH_TIMEOUT_SECONDS: i32 = 20;
/// Default health-check `maxConsecutiveFailures` (RAML).
pub const HEALTH_MAX_CONSECUTIVE_FAILURES: i32 = 3;
/// Default health-check `delaySeconds` (RAML).
pub const HEALTH_DELAY_SECONDS: i32 = 15;
/// Default readiness-check `name`.
pub const READINESS_NAME: &str = "readinessCheck";
/// Default readiness-check `portName`.
pub const READINESS_PORT_NAME: &str = "http-api";
/// Default readiness-check `intervalSeconds`.
pub const READINESS_INTERVAL_SECONDS: i32 = 30;
/// Default readiness-check `timeoutSeconds`.
pub const READINESS_TIMEOUT_SECONDS: i32 = 10;
/// Default readiness-check `httpStatusCodesForReady`.
pub const READINESS_STATUS_CODES: [i32; 1] = [200];
/// Name of the port Marathon adds when an App under host networking declares none.
pub const DEFAULT_PORT_NAME: &str = "default";
/// Default `residency.relaunchEscalationTimeoutSeconds`.
pub const RELAUNCH_ESCALATION_TIMEOUT_SECONDS: i64 = 3600;

/// Fills an App's unset spec fields with Marathon's defaults.
pub fn apply_defaults(app: &mut App) {
    default_app_spec(&mut app.spec);
}

/// Fills unset fields of an App spec (also used for an Instance's template).
pub fn default_app_spec(spec: &mut AppSpec) {
    spec.instances.get_or_insert(INSTANCES);
    spec.cpus.get_or_insert(CPUS);
    spec.mem.get_or_insert(MEM);
    spec.disk.get_or_insert(DISK);
    spec.gpus.get_or_insert(GPUS);
    spec.backoff_seconds.get_or_insert(BACKOFF_SECONDS);
    spec.backoff_factor.get_or_insert(BACKOFF_FACTOR);
    spec.max_launch_delay_seconds
        .get_or_insert(MAX_LAUNCH_DELAY_SECONDS);
    spec.require_ports.get_or_insert(false);
    spec.kill_selection
        .get_or_insert(KillSelection::YoungestFirst);
    let resident = spec.is_resident();
    default_upgrade_strategy(
        spec.upgrade_strategy
            .get_or_insert_with(UpgradeStrategy::default),
        resident,
    );
    default_unreachable_strategy(&mut spec.unreachable_strategy, resident);
    default_networks(spec);
    default_ports(spec);
    default_container(spec);
    default_health_checks(spec);
    for check in spec.readiness_checks.iter_mut().flatten() {
        default_readiness_check(check);
    }
    if let Some(check) = &mut spec.check {
        check
            .interval_seconds
            .get_or_insert(HEALTH_INTERVAL_SECONDS);
        check.timeout_seconds.get_or_insert(HEALTH_TIMEOUT_SECONDS);
        check.delay_seconds.get_or_insert(HEALTH_DELAY_SECONDS);
    }
    for fetch in spec.fetch.iter_mut().flatten() {
        fetch.executable.get_or_insert(false);
        fetch.extract.get_or_insert(true);
        fetch.cache.get_or_insert(false);
    }
    default_residency(spec);
}

/// Instances: goal `Running`, and the template defaulted like an App spec.
pub fn apply_instance_defaults(instance: &mut Instance) {
    instance.spec.goal.get_or_insert(InstanceGoal::Running);
    if let Some(template) = &mut instance.spec.template {
        default_app_spec(template);
    }
}

/// Nodes: schedulable, unreserved role.
pub fn apply_node_defaults(node: &mut Node) {
    node.spec.unschedulable.get_or_insert(false);
    node.spec.role.get_or_insert_with(|| "*".to_owned());
}

/// Deployments have no defaults.
pub fn apply_deployment_defaults(_: &mut Deployment) {}

/// Offers have no defaults.
pub fn apply_offer_defaults(_: &mut Offer) {}

/// Events: `Normal`, count 1.
pub fn apply_event_defaults(event: &mut Event) {
    event.type_.get_or_insert(crate::event::EventType::Normal);
    event.count.get_or_insert(1);
}

/// 1.0/1.0, or Marathon's 0.5/0 for resident Apps (which may not over-provision).
fn default_upgrade_strategy(strategy: &mut UpgradeStrategy, resident: bool) {
    let (minimum, maximum) = if resident {
        (RESIDENT_MINIMUM_HEALTH_CAPACITY, 0.0)
    } else {
        (MINIMUM_HEALTH_CAPACITY, MAXIMUM_OVER_CAPACITY)
    };
    strategy.minimum_health_capacity.get_or_insert(minimum);
    strategy.maximum_over_capacity.get_or_insert(maximum);
    strategy.auto_revert.get_or_insert(false);
}

/// Pacer's timeouts, or `disabled` for resident Apps (their volumes stay on the lost node), as
/// Marathon does.
fn default_unreachable_strategy(strategy: &mut Option<UnreachableStrategy>, resident: bool) {
    let strategy = strategy.get_or_insert_with(|| {
        if resident {
            UnreachableStrategy::Disabled
        } else {
            UnreachableStrategy::Enabled(UnreachableEnabled::default())
        }
    });
    if let UnreachableStrategy::Enabled(enabled) = strategy {
        let inactive = *enabled
            .inactive_after_seconds
            .get_or_insert(UNREACHABLE_INACTIVE_AFTER_SECONDS);
        enabled
            .expunge_after_seconds
            .get_or_insert(UNREACHABLE_EXPUNGE_AFTER_SECONDS.max(inactive));
    }
}

/// `networks` (absent or empty) defaults to `[{mode: host}]` unless the deprecated
/// `ipAddress` or `container.docker.network` choose the network; a network without a mode is
/// `container`.
fn default_networks(spec: &mut AppSpec) {
    let legacy_network = spec.ip_address.is_some()
        || spec
            .container
            .as_ref()
            .and_then(|container| container.docker.as_ref())
            .is_some_and(|docker| docker.network.is_some());
    match &mut spec.networks {
        Some(networks) if !networks.is_empty() => {
            for network in networks {
                network.mode.get_or_insert(NetworkMode::Container);
            }
        }
        _ if !legacy_network => {
            spec.networks = Some(vec![Network {
                mode: Some(NetworkMode::Host),
                ..Network::default()
            }]);
        }
        _ => {}
    }
}

/// Under host networking an App without `portDefinitions` (or deprecated `ports`) gets one
/// dynamic port named `default`, as Marathon 1.5+ does; each port definition defaults to
/// port 0 and `tcp`.
fn default_ports(spec: &mut AppSpec) {
    if spec.uses_host_networking() && spec.port_definitions.is_none() && spec.ports.is_none() {
        spec.port_definitions = Some(vec![PortDefinition {
            name: Some(DEFAULT_PORT_NAME.to_owned()),
            ..PortDefinition::default()
        }]);
    }
    for definition in spec.port_definitions.iter_mut().flatten() {
        definition.port.get_or_insert(0);
        definition.protocol.get_or_insert(PortProtocol::Tcp);
    }
}

/// Container type `DOCKER`; Docker's switches false; port mappings `tcp`, container port 0,
/// and host port 0 under bridge networking (Marathon's backwards-compatible default).
fn default_container(spec: &mut AppSpec) {
    let bridged = spec
        .networks
        .iter()
        .flatten()
        .any(|network| network.mode == Some(NetworkMode::ContainerBridge))
        || spec
            .container
            .as_ref()
            .and_then(|container| container.docker.as_ref())
            .and_then(|docker| docker.network.as_ref())
            == Some(&crate::container::DockerNetwork::Bridge);
    let Some(container) = &mut spec.container else {
        return;
    };
    container.type_.get_or_insert(ContainerType::Docker);
    if let Some(docker) = &mut container.docker {
        docker.privileged.get_or_insert(false);
        docker.force_pull_image.get_or_insert(false);
    }
    let docker_mappings = container
        .docker
        .as_mut()
        .and_then(|docker| docker.port_mappings.as_mut());
    for mapping in container
        .port_mappings
        .iter_mut()
        .flatten()
        .chain(docker_mappings.into_iter().flatten())
    {
        mapping.container_port.get_or_insert(0);
        mapping.protocol.get_or_insert(PortProtocol::Tcp);
        if bridged {
            mapping.host_port.get_or_insert(0);
        }
    }
}

fn default_health_checks(spec: &mut AppSpec) {
    let has_ports = !spec.port_names().is_empty();
    for check in spec.health_checks.iter_mut().flatten() {
        default_health_check(check, has_ports);
    }
}

/// RAML defaults; `portIndex` 0 only for checks that probe a port, have neither `port` nor
/// `portIndex`, and belong to an App that has a port (as Marathon's `AppNormalization` does).
fn default_health_check(check: &mut HealthCheck, has_ports: bool) {
    let protocol = check
        .protocol
        .get_or_insert(HealthCheckProtocol::Http)
        .clone();
    if protocol.is_http() {
        check.path.get_or_insert_with(|| "/".to_owned());
        check.ignore_http1xx.get_or_insert(false);
    }
    if protocol != HealthCheckProtocol::Command
        && check.port.is_none()
        && check.port_index.is_none()
        && has_ports
    {
        check.port_index = Some(0);
    }
    check
        .grace_period_seconds
        .get_or_insert(HEALTH_GRACE_PERIOD_SECONDS);
    check
        .interval_seconds
        .get_or_insert(HEALTH_INTERVAL_SECONDS);
    check.timeout_seconds.get_or_insert(HEALTH_TIMEOUT_SECONDS);
    check
        .max_consecutive_failures
        .get_or_insert(HEALTH_MAX_CONSECUTIVE_FAILURES);
    check.delay_seconds.get_or_insert(HEALTH_DELAY_SECONDS);
}

fn default_readiness_check(check: &mut ReadinessCheck) {
    check.name.get_or_insert_with(|| READINESS_NAME.to_owned());
    check.protocol.get_or_insert(ReadinessProtocol::Http);
    check.path.get_or_insert_with(|| "/".to_owned());
    check
        .port_name
        .get_or_insert_with(|| READINESS_PORT_NAME.to_owned());
    check
        .interval_seconds
        .get_or_insert(READINESS_INTERVAL_SECONDS);
    check
        .timeout_seconds
        .get_or_insert(READINESS_TIMEOUT_SECONDS);
    check
        .http_status_codes_for_ready
        .get_or_insert_with(|| READINESS_STATUS_CODES.to_vec());
    check.preserve_last_response.get_or_insert(false);
}

/// Apps with local persistent volumes get a residency, as Marathon does.
fn default_residency(spec: &mut AppSpec) {
    if !spec.is_resident() && spec.residency.is_none() {
        return;
    }
    let residency = spec.residency.get_or_insert_with(Residency::default);
    residency
        .relaunch_escalation_timeout_seconds
        .get_or_insert(RELAUNCH_ESCALATION_TIMEOUT_SECONDS);
    residency
        .task_lost_behavior
        .get_or_insert(TaskLostBehavior::WaitForever);
}
