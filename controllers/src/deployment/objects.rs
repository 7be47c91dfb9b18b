//! The objects the deployment controller writes, built as the API server would store them
//! (server fields filled: uid, creationTimestamp, generation), and the reading of Instances
//! into the rolling step's terms ([`instance_state`], [`counts_as_capacity`]).

use std::collections::BTreeMap;

use pacer_schemas::app::KillSelection;
use pacer_schemas::app_version::{
    APP_VERSION_LABEL, AppVersionSpec, REQUESTED_VERSION_ANNOTATION, parse_requested_version,
};
use pacer_schemas::deployment::{
    AppRef, DEPLOYMENT_FINALIZER, DeploymentAction, DeploymentActionKind, DeploymentPhase,
    DeploymentSpec, DeploymentStatus, DeploymentStep, labels as deployment_labels,
};
use pacer_schemas::instance::{InstanceGoal, InstancePhase, InstanceSpec};
use pacer_schemas::meta::OwnerReference;
use pacer_schemas::{App, AppSpec, AppVersion, Deployment, Instance, ObjectMeta, Resource, Time};

use super::rolling::{InstanceState, Strategy};

/// Now, to the second (as the API server stores timestamps).
pub fn now() -> Time {
    let now = jiff::Timestamp::now();
    Time::from_unix_seconds(now.as_second()).unwrap_or_else(|| Time::new(now))
}

/// A fresh Marathon version string, strictly after `after` (a previous version of the App).
fn next_version(after: Option<&str>) -> String {
    let mut at = jiff::Timestamp::now();
    if let Some(previous) = after.and_then(|text| text.parse::<jiff::Timestamp>().ok()) {
        let floor = previous
            .checked_add(jiff::SignedDuration::from_millis(1))
            .unwrap_or(previous);
        if at < floor {
            at = floor;
        }
    }
    AppVersion::version_string(at)
}

/// How far ahead of this clock a requested version may be.
const REQUESTED_AHEAD: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// The version the change that made `app`'s current generation gets: the one its
/// [`REQUESTED_VERSION_ANNOTATION`] asks for when that names this generation and the version
/// is later than `after` (the App's latest version), not before the App was created and not
/// more than a minute ahead; else [`next_version`].
pub fn version_for_change(app: &App, after: Option<&str>) -> String {
    let requested = app
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(REQUESTED_VERSION_ANNOTATION))
        .and_then(|value| parse_requested_version(value))
        .filter(|(generation, _)| Some(*generation) == app.metadata.generation)
        .and_then(|(_, version)| version.parse::<jiff::Timestamp>().ok());
    let after_time = after.and_then(|text| text.parse::<jiff::Timestamp>().ok());
    let created = app.metadata.creation_timestamp.map(|time| {
        time.timestamp()
            .checked_sub(jiff::SignedDuration::from_secs(1))
            .unwrap_or(time.timestamp())
    });
    let latest_allowed = jiff::Timestamp::now()
        .checked_add(REQUESTED_AHEAD)
        .unwrap_or(jiff::Timestamp::MAX);
    match requested {
        Some(at)
            if after_time
                .is_none_or(|previous| at.as_millisecond() > previous.as_millisecond())
                && created.is_none_or(|created| at >= created)
                && at <= latest_allowed =>
        {
            AppVersion::version_string(at)
        }
        _ => next_version(after),
    }
}

/// Metadata of a new object, filled as the API server fills it on create.
fn new_meta(namespace: Option<&str>, name: String, created: Time) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: namespace.map(str::to_owned),
        uid: Some(uuid::Uuid::new_v4().to_string()),
        generation: Some(1),
        creation_timestamp: Some(created),
        ..ObjectMeta::default()
    }
}

/// The owner reference from an App's dependents to it.
pub fn owned_by(app: &App) -> OwnerReference {
    OwnerReference {
        api_version: App::API_VERSION.to_owned(),
        kind: App::KIND.to_owned(),
        name: app.metadata.name_str().to_owned(),
        uid: app.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A reference to `app` for Deployments.
pub fn app_ref(app: &App) -> AppRef {
    AppRef {
        namespace: app.metadata.namespace_str().to_owned(),
        name: app.metadata.name_str().to_owned(),
    }
}

/// `spec` without `instances`: two specs with equal configs differ only in scale.
pub fn config_of(spec: &AppSpec) -> AppSpec {
    AppSpec {
        instances: None,
        ..spec.clone()
    }
}

/// A random lower-case suffix for instance names.
fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..6]
        .iter()
        .map(|byte| char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]))
        .collect()
}

/// A new Instance of `app` at `config_version` (contract point 1): `<app>-<suffix>`, the App's
/// spec as template, goal Running, unbound, owned by the App, labelled with the App and version.
pub fn new_instance(app: &App, config_version: &str, created: Time) -> Instance {
    let name = app.metadata.name_str();
    let mut labels = Instance::labels_for_app(name);
    labels.insert(
        APP_VERSION_LABEL.to_owned(),
        AppVersion::version_label(config_version),
    );
    let mut metadata = new_meta(
        Some(app.metadata.namespace_str()),
        format!("{name}-{}", suffix()),
        created,
    );
    metadata.labels = Some(labels);
    metadata.owner_references = Some(vec![owned_by(app)]);
    let mut instance = Instance {
        metadata,
        spec: InstanceSpec {
            app: name.to_owned(),
            app_version: config_version.to_owned(),
            template: Some(app.spec.clone()),
            goal: Some(InstanceGoal::Running),
            ..InstanceSpec::default()
        },
        ..Instance::default()
    };
    instance.set_type_meta();
    instance
}

/// The AppVersion object for `spec`.
pub fn new_app_version(app: &App, spec: AppVersionSpec, created: Time) -> AppVersion {
    let mut metadata = new_meta(
        Some(app.metadata.namespace_str()),
        AppVersion::name_for(app.metadata.name_str(), spec.revision),
        created,
    );
    metadata.labels = Some(AppVersion::labels_for_app(app.metadata.name_str()));
    metadata.owner_references = Some(vec![owned_by(app)]);
    let mut version = AppVersion {
        metadata,
        spec,
        ..AppVersion::default()
    };
    version.set_type_meta();
    version
}

/// A new one-step Deployment of `action` on `app`, already running.
pub fn new_deployment(
    app: &App,
    action: DeploymentAction,
    force: bool,
    created: Time,
) -> Deployment {
    let mut metadata = new_meta(None, uuid::Uuid::new_v4().to_string(), created);
    metadata.finalizers = Some(vec![DEPLOYMENT_FINALIZER.to_owned()]);
    metadata.labels = Some(BTreeMap::from([
        (
            deployment_labels::APP_NAMESPACE.to_owned(),
            app.metadata.namespace_str().to_owned(),
        ),
        (
            deployment_labels::APP.to_owned(),
            app.metadata.name_str().to_owned(),
        ),
    ]));
    let mut deployment = Deployment {
        metadata,
        spec: DeploymentSpec {
            affected_apps: vec![app_ref(app)],
            steps: vec![DeploymentStep {
                actions: vec![action],
            }],
            reverts: None,
            force: force.then_some(true),
        },
        status: Some(DeploymentStatus {
            phase: DeploymentPhase::Running,
            current_step: 1,
            total_steps: 1,
            started_at: Some(created),
            ..DeploymentStatus::default()
        }),
        ..Deployment::default()
    };
    deployment.set_type_meta();
    deployment
}

/// The action of a Deployment's only step.
pub fn action_of(deployment: &Deployment) -> Option<&DeploymentAction> {
    deployment.spec.steps.first()?.actions.first()
}

/// Whether the action stops its App (the App is being deleted).
pub fn is_stop(deployment: &Deployment) -> bool {
    action_of(deployment)
        .is_some_and(|action| action.action == DeploymentActionKind::StopApplication)
}

/// Contract point 5: running, and healthy when the template has health checks, and ready
/// when it has readiness checks.
pub fn counts_as_capacity(instance: &Instance) -> bool {
    let Some(status) = instance.status.as_ref() else {
        return false;
    };
    if status.phase != InstancePhase::Running {
        return false;
    }
    let template = instance.spec.template.as_ref();
    let has_health = template
        .and_then(|spec| spec.health_checks.as_ref())
        .is_some_and(|checks| !checks.is_empty());
    let has_readiness = template
        .and_then(|spec| spec.readiness_checks.as_ref())
        .is_some_and(|checks| !checks.is_empty());
    (!has_health || status.healthy == Some(true))
        && (!has_readiness
            || (!status.readiness.is_empty() && status.readiness.iter().all(|r| r.ready)))
}

/// An Instance in the rolling step's terms, against the App's current `config_version`.
pub fn instance_state(instance: &Instance, config_version: &str) -> InstanceState {
    let status = instance.status.as_ref();
    InstanceState {
        name: instance.metadata.name_str().to_owned(),
        current: instance.spec.app_version == config_version,
        phase: instance.phase(),
        goal_running: instance
            .spec
            .goal
            .as_ref()
            .is_none_or(|goal| *goal == InstanceGoal::Running),
        healthy: counts_as_capacity(instance),
        since: status
            .and_then(|status| status.started_at)
            .or(instance.metadata.creation_timestamp),
    }
}

/// The App's upgrade strategy and kill selection, with Marathon's defaults for unset fields.
pub fn strategy_of(spec: &AppSpec) -> Strategy {
    let upgrade = spec.upgrade_strategy.clone().unwrap_or_default();
    Strategy {
        minimum_health_capacity: upgrade.minimum_health_capacity.unwrap_or(1.0),
        maximum_over_capacity: upgrade.maximum_over_capacity.unwrap_or(1.0),
        kill_selection: spec
            .kill_selection
            .clone()
            .unwrap_or(KillSelection::YoungestFirst),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use pacer_schemas::health::HealthCheck;
    use pacer_schemas::instance::{InstanceStatus, ReadinessCheckResult};

    use pacer_schemas::app_version::requested_version_value;

    use super::*;

    #[test]
    fn versions_increase_even_within_a_millisecond() {
        let first = next_version(None);
        let second = next_version(Some(&first));
        assert!(second > first, "{first} < {second}");
        let future = "2999-01-01T00:00:00.000Z";
        assert_eq!(next_version(Some(future)), "2999-01-01T00:00:00.001Z");
    }

    /// An App at `generation`, created at `created`, asking for `requested`.
    fn asking(generation: i64, created: &str, requested: Option<&str>) -> App {
        let mut app = App::new("default", "web", AppSpec::default());
        app.metadata.generation = Some(generation);
        app.metadata.creation_timestamp = Some(created.parse().unwrap());
        if let Some(value) = requested {
            app.metadata.annotations = Some(
                [(REQUESTED_VERSION_ANNOTATION.to_owned(), value.to_owned())]
                    .into_iter()
                    .collect(),
            );
        }
        app
    }

    #[test]
    fn a_requested_version_is_taken_only_for_its_generation_and_when_later() {
        let created = "2026-01-01T00:00:00Z";
        let first = "2026-01-01T00:00:00.100Z";
        let app = asking(1, created, Some(&requested_version_value(1, first)));
        assert_eq!(version_for_change(&app, None), first);
        let later = "2026-01-01T00:00:00.101Z";
        let app = asking(2, created, Some(&requested_version_value(2, later)));
        assert_eq!(version_for_change(&app, Some(first)), later);
        // Ignored, for a fresh version: not later than the latest, for another generation
        // (left from an earlier change), before the App was created (copied with a
        // manifest), far ahead, not a version, or absent.
        let ahead = AppVersion::version_string(
            jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(3600))
                .unwrap(),
        );
        for (generation, requested, after) in [
            (2, Some(requested_version_value(2, first)), Some(first)),
            (3, Some(requested_version_value(2, later)), Some(first)),
            (
                1,
                Some(requested_version_value(1, "2025-06-01T00:00:00.000Z")),
                None,
            ),
            (1, Some(requested_version_value(1, &ahead)), None),
            (1, Some(requested_version_value(1, "soon")), None),
            (1, Some(later.to_owned()), None),
            (1, None, None),
        ] {
            let app = asking(generation, created, requested.as_deref());
            let version = version_for_change(&app, after);
            assert!(
                version.as_str() > later && version < ahead,
                "{requested:?} at generation {generation} gave {version}"
            );
        }
    }

    #[test]
    fn capacity_needs_running_healthy_and_ready_when_checked() {
        let app = App::new("default", "web", AppSpec::default());
        let mut instance = new_instance(&app, "2024-01-01T00:00:00.000Z", now());
        assert!(!counts_as_capacity(&instance));
        instance.status = Some(InstanceStatus {
            phase: InstancePhase::Running,
            ..InstanceStatus::default()
        });
        assert!(counts_as_capacity(&instance));
        let template = instance.spec.template.as_mut().unwrap();
        template.health_checks = Some(vec![HealthCheck::default()]);
        assert!(!counts_as_capacity(&instance), "health unknown");
        instance.status.as_mut().unwrap().healthy = Some(true);
        assert!(counts_as_capacity(&instance));
        let template = instance.spec.template.as_mut().unwrap();
        template.readiness_checks = Some(vec![Default::default()]);
        assert!(!counts_as_capacity(&instance), "no readiness result yet");
        instance.status.as_mut().unwrap().readiness = vec![ReadinessCheckResult {
            name: "r".into(),
            ready: true,
            last_response: None,
        }];
        assert!(counts_as_capacity(&instance));
        assert_eq!(
            instance.metadata.labels.as_ref().unwrap()[APP_VERSION_LABEL],
            "20240101T000000.000Z"
        );
        let state = instance_state(&instance, "2024-01-01T00:00:00.000Z");
        assert!(state.current && state.goal_running && state.healthy);
    }
}
