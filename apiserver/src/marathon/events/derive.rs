//! Marathon events from object changes, as pure functions over a cache of what was seen.
//!
//! [`Deriver`] keeps, per App, Instance, Deployment and health Event, just enough of the last
//! state seen to tell what a change did, and answers each change with Marathon's events (keys
//! as Marathon's `Events.scala` writes them, see `../shared/reference/marathon-api.md` §1.15):
//!
//! | change | events |
//! |---|---|
//! | an App's spec (generation) or restart annotation changed | `api_post_event {clientIp, uri, appDefinition}` |
//! | an App deleted | `app_terminated_event {appId}` |
//! | an Instance bound or changed phase | `status_update_event {slaveId, taskId, taskStatus, message, appId, host, ipAddresses, ports, version}`, `instance_changed_event {instanceId, condition, runSpecId, agentId, host, runSpecVersion}` |
//! | an Instance's `status.healthy` changed | `health_status_changed_event {appId, instanceId, version, alive}` |
//! | a health check's `consecutiveFailures` grew | `failed_health_check_event {appId, instanceId, healthCheck}` |
//! | an `Unhealthy` Event about an Instance (health controller's kill), new or repeated | `unhealthy_instance_kill_event {appId, taskId, instanceId, version, reason, host, slaveId}` |
//! | a Deployment appeared | `group_change_success {groupId, version}`, `deployment_info {plan, currentStep}` |
//! | its current step moved on | `deployment_step_success`, `deployment_info` of the next step |
//! | it succeeded | `deployment_step_success`, `deployment_success {id, plan}` |
//! | it failed or was cancelled (or deleted while running) | `deployment_step_failure`, `deployment_failed {id, plan, reason}` |
//!
//! Every event also has `eventType` and `timestamp` (Marathon's `…T…Z` with milliseconds).
//! Plans are `{id, version, steps, original, target}` with the groups holding the affected
//! apps before and after (what the Python client requires); the light form has no groups.
//! Only event types the Python Marathon client knows are produced.

use std::collections::HashMap;

use pacer_schemas::app_version::RESTARTED_AT_ANNOTATION;
use pacer_schemas::deployment::{DeploymentActionKind, DeploymentPhase};
use pacer_schemas::instance::InstancePhase;
use pacer_schemas::{App, Deployment, Event, Instance, MarathonId, Time};
use serde_json::{Map, Value, json};

use crate::marathon::app_json;
use crate::marathon::deployments::deployment_json;
use crate::marathon::tasks::{TaskCounts, marathon_time, task_id};

/// One derived event.
#[derive(Clone, Debug, PartialEq)]
pub struct Derived {
    /// Marathon's `eventType`.
    pub event_type: &'static str,
    /// The payload (with `eventType` and `timestamp`).
    pub payload: Value,
    /// The payload with a light plan (deployment events only).
    pub light: Option<Value>,
}

impl Derived {
    fn new(event_type: &'static str, mut payload: Map<String, Value>, now: Time) -> Self {
        payload.insert("eventType".to_owned(), json!(event_type));
        payload.insert("timestamp".to_owned(), json!(event_time(now)));
        Self {
            event_type,
            payload: Value::Object(payload),
            light: None,
        }
    }

    /// A deployment event: its payload with the full plan, and with the light one.
    fn with_plan(
        event_type: &'static str,
        mut payload: Map<String, Value>,
        plan: &Plans,
        now: Time,
    ) -> Self {
        let mut light = payload.clone();
        payload.insert("plan".to_owned(), plan.full.clone());
        light.insert("plan".to_owned(), plan.light.clone());
        let mut derived = Self::new(event_type, payload, now);
        light.insert("eventType".to_owned(), json!(event_type));
        light.insert("timestamp".to_owned(), json!(event_time(now)));
        derived.light = Some(Value::Object(light));
        derived
    }
}

/// A timestamp as events carry it.
pub fn event_time(now: Time) -> String {
    marathon_time(now)
}

/// `event_stream_attached`/`event_stream_detached {remoteAddress}`.
pub fn stream_event(event_type: &'static str, remote: Option<&str>, now: Time) -> Derived {
    let mut payload = Map::new();
    payload.insert("remoteAddress".to_owned(), json!(remote.unwrap_or("")));
    Derived::new(event_type, payload, now)
}

/// `subscribe_event`/`unsubscribe_event {clientIp, callbackUrl}`.
pub fn subscription_event(
    event_type: &'static str,
    client_ip: Option<&str>,
    callback_url: &str,
    now: Time,
) -> Derived {
    let mut payload = Map::new();
    payload.insert("clientIp".to_owned(), json!(client_ip));
    payload.insert("callbackUrl".to_owned(), json!(callback_url));
    Derived::new(event_type, payload, now)
}

/// What is kept of an App.
#[derive(Clone, Debug)]
struct AppSeen {
    generation: i64,
    restarted_at: Option<String>,
    /// Its Marathon definition now, and before its last spec change.
    definition: Value,
    previous: Option<Value>,
}

/// What is kept of an Instance.
#[derive(Clone, Debug, Default, PartialEq)]
struct InstanceSeen {
    phase: Option<InstancePhase>,
    bound: bool,
    healthy: Option<bool>,
    failures: Vec<i32>,
    app_id: String,
    task_id: String,
    version: String,
    node: Option<String>,
    host: String,
}

/// What is kept of a Deployment.
#[derive(Clone, Debug)]
struct DeploymentSeen {
    phase: DeploymentPhase,
    current_step: i32,
    deployment: Deployment,
}

/// The cache that changes are derived against (see the module docs).
#[derive(Debug, Default)]
pub struct Deriver {
    apps: HashMap<String, AppSeen>,
    instances: HashMap<String, InstanceSeen>,
    deployments: HashMap<String, DeploymentSeen>,
    /// `count` of each `Unhealthy` Event about an Instance.
    kills: HashMap<String, i32>,
}

/// The resource of a registry key (`/registry/<plural>/…`).
fn resource_of(key: &str) -> Option<&str> {
    key.strip_prefix("/registry/")?.split('/').next()
}

/// The Marathon id of App `name` in `namespace` (a readable fallback when it has none).
fn marathon_app_id(namespace: &str, name: &str) -> String {
    MarathonId::from_object(namespace, name)
        .map(|id| id.to_string())
        .unwrap_or_else(|_| format!("/{namespace}/{name}"))
}

impl Deriver {
    /// The events of `object` having been written at `key`.
    pub fn put(&mut self, key: &str, object: &Value, now: Time) -> Vec<Derived> {
        let decoded = |what: &'static str| {
            move |error: serde_json::Error| {
                tracing::debug!(key, %error, "event bus: skipping a {what} that does not decode");
            }
        };
        match resource_of(key) {
            Some("apps") => serde_json::from_value::<App>(object.clone())
                .map_err(decoded("App"))
                .map(|app| self.app_put(key, &app, now))
                .unwrap_or_default(),
            Some("instances") => serde_json::from_value::<Instance>(object.clone())
                .map_err(decoded("Instance"))
                .map(|instance| self.instance_put(key, &instance, now))
                .unwrap_or_default(),
            Some("deployments") => serde_json::from_value::<Deployment>(object.clone())
                .map_err(decoded("Deployment"))
                .map(|deployment| self.deployment_put(key, deployment, now))
                .unwrap_or_default(),
            Some("events") => serde_json::from_value::<Event>(object.clone())
                .map_err(decoded("Event"))
                .map(|event| self.event_put(key, &event, now))
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The events of the object at `key` (last state `object`) having been deleted.
    pub fn delete(&mut self, key: &str, object: &Value, now: Time) -> Vec<Derived> {
        match resource_of(key) {
            Some("apps") => {
                self.apps.remove(key);
                let metadata = &object["metadata"];
                let app_id = marathon_app_id(
                    metadata["namespace"].as_str().unwrap_or("default"),
                    metadata["name"].as_str().unwrap_or_default(),
                );
                let mut payload = Map::new();
                payload.insert("appId".to_owned(), json!(app_id));
                vec![Derived::new("app_terminated_event", payload, now)]
            }
            Some("instances") => {
                self.instances.remove(key);
                Vec::new()
            }
            Some("deployments") => match self.deployments.remove(key) {
                Some(seen) if seen.phase.is_active() => {
                    let plans = self.plans(&seen.deployment);
                    let step = current_step_json(&seen.deployment, seen.current_step);
                    vec![
                        step_event("deployment_step_failure", step, &plans, now),
                        failed(&seen.deployment, "the deployment was deleted", &plans, now),
                    ]
                }
                _ => Vec::new(),
            },
            Some("events") => {
                self.kills.remove(key);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn app_put(&mut self, key: &str, app: &App, now: Time) -> Vec<Derived> {
        let generation = app.metadata.generation.unwrap_or(0);
        let restarted_at = app
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(RESTARTED_AT_ANNOTATION))
            .cloned();
        let Some(definition) = app_definition(app) else {
            return Vec::new();
        };
        let seen = self.apps.get(key);
        let changed = seen
            .is_none_or(|seen| seen.generation != generation || seen.restarted_at != restarted_at);
        let previous = match seen {
            Some(seen) if seen.generation != generation => Some(seen.definition.clone()),
            Some(seen) => seen.previous.clone(),
            None => None,
        };
        self.apps.insert(
            key.to_owned(),
            AppSeen {
                generation,
                restarted_at,
                definition: definition.clone(),
                previous,
            },
        );
        if !changed || app.metadata.deletion_timestamp.is_some() {
            return Vec::new();
        }
        let app_id = definition["id"].as_str().unwrap_or_default().to_owned();
        let mut payload = Map::new();
        payload.insert("clientIp".to_owned(), Value::Null);
        payload.insert("uri".to_owned(), json!(format!("/v2/apps{app_id}")));
        payload.insert("appDefinition".to_owned(), definition);
        vec![Derived::new("api_post_event", payload, now)]
    }

    fn instance_put(&mut self, key: &str, instance: &Instance, now: Time) -> Vec<Derived> {
        let namespace = instance.metadata.namespace_str();
        let app_id = MarathonId::from_object(namespace, &instance.spec.app).ok();
        let app_text = marathon_app_id(namespace, &instance.spec.app);
        let status = instance.status.clone().unwrap_or_default();
        let node = instance.spec.node_name.clone();
        let host = status
            .host
            .clone()
            .or_else(|| node.clone())
            .unwrap_or_default();
        let task = app_id.as_ref().map_or_else(
            || instance.metadata.name_str().to_owned(),
            |id| task_id(id, instance),
        );
        let now_seen = InstanceSeen {
            phase: instance.status.as_ref().map(|status| status.phase),
            bound: node.is_some(),
            healthy: status.healthy,
            failures: status
                .health
                .iter()
                .map(|result| result.consecutive_failures)
                .collect(),
            app_id: app_text.clone(),
            task_id: task.clone(),
            version: instance.spec.app_version.clone(),
            node: node.clone(),
            host: host.clone(),
        };
        let before = self
            .instances
            .insert(key.to_owned(), now_seen.clone())
            .unwrap_or_default();
        let mut events = Vec::new();
        let phase = instance.phase();
        let reportable = now_seen.bound && phase != InstancePhase::Scheduled;
        if reportable && (before.phase != now_seen.phase || !before.bound) {
            let addresses: Vec<Value> = status
                .ip_addresses
                .iter()
                .map(|address| {
                    let protocol = if address.contains(':') {
                        "IPv6"
                    } else {
                        "IPv4"
                    };
                    json!({"ipAddress": address, "protocol": protocol})
                })
                .collect();
            let mut payload = Map::new();
            payload.insert("slaveId".to_owned(), json!(node));
            payload.insert("taskId".to_owned(), json!(task));
            payload.insert("taskStatus".to_owned(), json!(phase.marathon_task_state()));
            payload.insert(
                "message".to_owned(),
                json!(status.message.clone().unwrap_or_default()),
            );
            payload.insert("appId".to_owned(), json!(app_text));
            payload.insert("host".to_owned(), json!(host));
            payload.insert("ipAddresses".to_owned(), Value::Array(addresses));
            payload.insert(
                "ports".to_owned(),
                json!(instance.spec.host_ports.clone().unwrap_or_default()),
            );
            payload.insert("version".to_owned(), json!(instance.spec.app_version));
            events.push(Derived::new("status_update_event", payload, now));
            let mut payload = Map::new();
            payload.insert("instanceId".to_owned(), json!(task));
            payload.insert("condition".to_owned(), json!(condition(phase)));
            payload.insert("runSpecId".to_owned(), json!(app_text));
            payload.insert("agentId".to_owned(), json!(node));
            payload.insert("host".to_owned(), json!(host));
            payload.insert(
                "runSpecVersion".to_owned(),
                json!(instance.spec.app_version),
            );
            events.push(Derived::new("instance_changed_event", payload, now));
        }
        let checks = instance
            .spec
            .template
            .as_ref()
            .and_then(|template| template.health_checks.clone())
            .unwrap_or_default();
        for (position, result) in status.health.iter().enumerate() {
            let index = usize::try_from(result.index).unwrap_or(usize::MAX);
            let was = before.failures.get(position).copied().unwrap_or(0);
            if result.consecutive_failures > was && result.consecutive_failures > 0 {
                let mut payload = Map::new();
                payload.insert("appId".to_owned(), json!(app_text));
                payload.insert("instanceId".to_owned(), json!(task));
                payload.insert(
                    "healthCheck".to_owned(),
                    checks
                        .get(index)
                        .and_then(|check| serde_json::to_value(check).ok())
                        .unwrap_or_else(|| json!({})),
                );
                events.push(Derived::new("failed_health_check_event", payload, now));
            }
        }
        if let Some(alive) = status.healthy
            && before.healthy != Some(alive)
        {
            let mut payload = Map::new();
            payload.insert("appId".to_owned(), json!(app_text));
            payload.insert("instanceId".to_owned(), json!(task));
            payload.insert("version".to_owned(), json!(instance.spec.app_version));
            payload.insert("alive".to_owned(), json!(alive));
            events.push(Derived::new("health_status_changed_event", payload, now));
        }
        events
    }

    fn event_put(&mut self, key: &str, event: &Event, now: Time) -> Vec<Derived> {
        let involved = &event.involved_object;
        if event.reason.as_deref() != Some("Unhealthy")
            || involved.kind.as_deref() != Some("Instance")
        {
            return Vec::new();
        }
        let count = event.count.unwrap_or(1);
        let before = self.kills.insert(key.to_owned(), count);
        if before.is_some_and(|before| before >= count) {
            return Vec::new();
        }
        let namespace = involved
            .namespace
            .as_deref()
            .unwrap_or(event.metadata.namespace_str());
        let name = involved.name.as_deref().unwrap_or_default();
        let instance_key = format!("/registry/instances/{namespace}/{name}");
        let seen = self
            .instances
            .get(&instance_key)
            .cloned()
            .unwrap_or_default();
        let mut payload = Map::new();
        payload.insert("appId".to_owned(), json!(seen.app_id));
        payload.insert("taskId".to_owned(), json!(seen.task_id));
        payload.insert("instanceId".to_owned(), json!(seen.task_id));
        payload.insert("version".to_owned(), json!(seen.version));
        payload.insert(
            "reason".to_owned(),
            json!(
                event
                    .message
                    .clone()
                    .unwrap_or_else(|| "HealthCheckFailed".to_owned())
            ),
        );
        payload.insert("host".to_owned(), json!(seen.host));
        payload.insert("slaveId".to_owned(), json!(seen.node));
        vec![Derived::new("unhealthy_instance_kill_event", payload, now)]
    }

    fn deployment_put(&mut self, key: &str, deployment: Deployment, now: Time) -> Vec<Derived> {
        let phase = deployment.phase();
        let step = deployment
            .status
            .as_ref()
            .map_or(0, |status| status.current_step)
            .max(1);
        let before = self.deployments.insert(
            key.to_owned(),
            DeploymentSeen {
                phase,
                current_step: step,
                deployment: deployment.clone(),
            },
        );
        let plans = self.plans(&deployment);
        let mut events = Vec::new();
        let (before_phase, before_step) = match &before {
            Some(seen) => (seen.phase, seen.current_step),
            None => {
                // A new plan: the group change it carries out was accepted.
                let mut payload = Map::new();
                payload.insert("groupId".to_owned(), json!(group_of(&deployment)));
                payload.insert("version".to_owned(), json!(plans.version));
                events.push(Derived::new("group_change_success", payload, now));
                events.push(step_event(
                    "deployment_info",
                    current_step_json(&deployment, step),
                    &plans,
                    now,
                ));
                (DeploymentPhase::Pending, step)
            }
        };
        if !before_phase.is_active() {
            return events;
        }
        if phase.is_active() && step > before_step {
            for done in before_step..step {
                events.push(step_event(
                    "deployment_step_success",
                    current_step_json(&deployment, done),
                    &plans,
                    now,
                ));
            }
            events.push(step_event(
                "deployment_info",
                current_step_json(&deployment, step),
                &plans,
                now,
            ));
        }
        match phase {
            DeploymentPhase::Succeeded => {
                let last = i32::try_from(deployment.spec.steps.len()).unwrap_or(i32::MAX);
                for done in before_step..=last.max(before_step) {
                    events.push(step_event(
                        "deployment_step_success",
                        current_step_json(&deployment, done),
                        &plans,
                        now,
                    ));
                }
                let mut payload = Map::new();
                payload.insert("id".to_owned(), json!(deployment.metadata.name_str()));
                events.push(Derived::with_plan(
                    "deployment_success",
                    payload,
                    &plans,
                    now,
                ));
            }
            DeploymentPhase::Failed | DeploymentPhase::Cancelled => {
                events.push(step_event(
                    "deployment_step_failure",
                    current_step_json(&deployment, step),
                    &plans,
                    now,
                ));
                let reason = deployment
                    .status
                    .as_ref()
                    .and_then(|status| status.message.clone())
                    .unwrap_or_else(|| format!("{phase:?}"));
                events.push(failed(&deployment, &reason, &plans, now));
            }
            DeploymentPhase::Pending | DeploymentPhase::Running => {}
        }
        events
    }

    /// The plan of `deployment`, full and light.
    fn plans(&self, deployment: &Deployment) -> Plans {
        let marathon = deployment_json(deployment);
        let version = marathon["version"].as_str().unwrap_or_default().to_owned();
        let mut light = Map::new();
        light.insert("id".to_owned(), marathon["id"].clone());
        light.insert("version".to_owned(), json!(version));
        light.insert("steps".to_owned(), marathon["steps"].clone());
        let mut original = Vec::new();
        let mut target = Vec::new();
        for app in &deployment.spec.affected_apps {
            let key = format!("/registry/apps/{}/{}", app.namespace, app.name);
            let actions: Vec<DeploymentActionKind> = deployment
                .spec
                .steps
                .iter()
                .flat_map(|step| &step.actions)
                .filter(|action| &action.app == app)
                .map(|action| action.action)
                .collect();
            let starts = actions.contains(&DeploymentActionKind::StartApplication);
            let stops = actions.contains(&DeploymentActionKind::StopApplication);
            if let Some(seen) = self.apps.get(&key) {
                if !starts {
                    original.push(
                        seen.previous
                            .clone()
                            .unwrap_or_else(|| seen.definition.clone()),
                    );
                }
                if !stops {
                    target.push(seen.definition.clone());
                }
            }
        }
        let group = |apps: Vec<Value>| json!({"id": "/", "apps": apps, "groups": [], "pods": [], "dependencies": [], "version": version});
        let mut full = light.clone();
        full.insert("original".to_owned(), group(original));
        full.insert("target".to_owned(), group(target));
        Plans {
            full: Value::Object(full),
            light: Value::Object(light),
            version,
        }
    }
}

/// A deployment's plan in both formats.
struct Plans {
    full: Value,
    light: Value,
    version: String,
}

/// `{plan, currentStep}` events.
fn step_event(event_type: &'static str, step: Value, plans: &Plans, now: Time) -> Derived {
    let mut payload = Map::new();
    payload.insert("currentStep".to_owned(), step);
    Derived::with_plan(event_type, payload, plans, now)
}

fn failed(deployment: &Deployment, reason: &str, plans: &Plans, now: Time) -> Derived {
    let mut payload = Map::new();
    payload.insert("id".to_owned(), json!(deployment.metadata.name_str()));
    payload.insert("reason".to_owned(), json!(reason));
    Derived::with_plan("deployment_failed", payload, plans, now)
}

/// Step `number` (1-based) of `deployment` as `{actions: [{action, app}]}`.
fn current_step_json(deployment: &Deployment, number: i32) -> Value {
    let index = usize::try_from(number.max(1) - 1).unwrap_or(0);
    let actions: Vec<Value> = deployment
        .spec
        .steps
        .get(index)
        .map(|step| {
            step.actions
                .iter()
                .map(|action| {
                    json!({
                        "action": format!("{:?}", action.action),
                        "app": marathon_app_id(&action.app.namespace, &action.app.name),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"actions": actions})
}

/// The group a deployment changes: the parent of its first app (`/` for top-level apps).
fn group_of(deployment: &Deployment) -> String {
    deployment
        .spec
        .affected_apps
        .first()
        .and_then(|app| MarathonId::from_object(&app.namespace, &app.name).ok())
        .and_then(|id| id.parent())
        .map_or_else(|| "/".to_owned(), |parent| parent.to_string())
}

/// Marathon's instance condition for a phase.
fn condition(phase: InstancePhase) -> &'static str {
    match phase {
        InstancePhase::Scheduled => "Provisioned",
        InstancePhase::Staging => "Staging",
        InstancePhase::Starting => "Starting",
        InstancePhase::Running => "Running",
        InstancePhase::Killing => "Killing",
        InstancePhase::Killed => "Killed",
        InstancePhase::Finished => "Finished",
        InstancePhase::Failed => "Failed",
        InstancePhase::Lost => "Unreachable",
        InstancePhase::Gone => "Gone",
    }
}

/// An App's Marathon definition (without the task counts of `/v2/apps`).
fn app_definition(app: &App) -> Option<Value> {
    let mut definition = app_json::to_marathon(app, TaskCounts::default()).ok()?;
    if let Some(object) = definition.as_object_mut() {
        for key in [
            "tasksStaged",
            "tasksRunning",
            "tasksHealthy",
            "tasksUnhealthy",
            "deployments",
        ] {
            object.remove(key);
        }
    }
    Some(definition)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn now() -> Time {
        Time::from_unix_seconds(1_700_000_000).unwrap()
    }

    fn types(events: &[Derived]) -> Vec<&'static str> {
        events.iter().map(|event| event.event_type).collect()
    }

    fn app(generation: i64) -> Value {
        json!({
            "apiVersion": "pacer.dev/v1", "kind": "App",
            "metadata": {"name": "web", "namespace": "prod", "generation": generation},
            "spec": {"cmd": "sleep 100", "instances": 1,
                     "healthChecks": [{"protocol": "HTTP", "path": "/health"}]}
        })
    }

    fn instance(phase: Option<&str>, node: Option<&str>, health: Value) -> Value {
        let mut object = json!({
            "apiVersion": "pacer.dev/v1", "kind": "Instance",
            "metadata": {"name": "web.abc", "namespace": "prod"},
            "spec": {"app": "web", "appVersion": "2024-01-01T00:00:00.000Z",
                     "template": {"cmd": "sleep 100",
                                  "healthChecks": [{"protocol": "HTTP", "path": "/health"}]}}
        });
        if let Some(node) = node {
            object["spec"]["nodeName"] = json!(node);
            object["spec"]["hostPorts"] = json!([31000]);
        }
        if let Some(phase) = phase {
            object["status"] = json!({"phase": phase, "host": "10.0.0.1"});
            if !health.is_null() {
                object["status"]["health"] = health["results"].clone();
                object["status"]["healthy"] = health["healthy"].clone();
            }
        }
        object
    }

    fn deployment(phase: &str, step: i32) -> Value {
        json!({
            "apiVersion": "pacer.dev/v1", "kind": "Deployment",
            "metadata": {"name": "d-1"},
            "spec": {
                "affectedApps": [{"namespace": "prod", "name": "web"}],
                "steps": [{"actions": [{"action": "StartApplication",
                                        "app": {"namespace": "prod", "name": "web"},
                                        "version": "2024-01-01T00:00:00.000Z"}]}]
            },
            "status": {"phase": phase, "currentStep": step, "totalSteps": 1}
        })
    }

    const APP: &str = "/registry/apps/prod/web";
    const INSTANCE: &str = "/registry/instances/prod/web.abc";
    const DEPLOYMENT: &str = "/registry/deployments/d-1";

    #[test]
    fn app_writes_become_api_post_events_and_deletes_app_terminated() {
        let mut deriver = Deriver::default();
        let events = deriver.put(APP, &app(1), now());
        assert_eq!(types(&events), ["api_post_event"]);
        let payload = &events[0].payload;
        assert_eq!(payload["uri"], "/v2/apps/prod/web");
        assert_eq!(payload["appDefinition"]["id"], "/prod/web");
        assert_eq!(payload["eventType"], "api_post_event");
        assert_eq!(payload["timestamp"], "2023-11-14T22:13:20.000Z");
        let keys: Vec<&String> = payload.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["appDefinition", "clientIp", "eventType", "timestamp", "uri"]
        );
        // A status-only write (same generation) is no API post.
        assert!(deriver.put(APP, &app(1), now()).is_empty());
        assert_eq!(types(&deriver.put(APP, &app(2), now())), ["api_post_event"]);
        let events = deriver.delete(APP, &app(2), now());
        assert_eq!(types(&events), ["app_terminated_event"]);
        assert_eq!(events[0].payload["appId"], "/prod/web");
    }

    #[test]
    fn instance_phases_become_status_updates_once() {
        let mut deriver = Deriver::default();
        // Unbound: nothing to report yet.
        assert!(
            deriver
                .put(INSTANCE, &instance(None, None, Value::Null), now())
                .is_empty()
        );
        let events = deriver.put(
            INSTANCE,
            &instance(Some("Staging"), Some("n1"), Value::Null),
            now(),
        );
        assert_eq!(
            types(&events),
            ["status_update_event", "instance_changed_event"]
        );
        let status = &events[0].payload;
        assert_eq!(status["taskStatus"], "TASK_STAGING");
        assert_eq!(status["taskId"], "prod_web.web.abc");
        assert_eq!(status["appId"], "/prod/web");
        assert_eq!(status["slaveId"], "n1");
        assert_eq!(status["host"], "10.0.0.1");
        assert_eq!(status["ports"], json!([31000]));
        let mut keys: Vec<&String> = status.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "appId",
                "eventType",
                "host",
                "ipAddresses",
                "message",
                "ports",
                "slaveId",
                "taskId",
                "taskStatus",
                "timestamp",
                "version"
            ]
        );
        assert_eq!(events[1].payload["condition"], "Staging");
        assert_eq!(events[1].payload["agentId"], "n1");
        // The same phase again: nothing.
        assert!(
            deriver
                .put(
                    INSTANCE,
                    &instance(Some("Staging"), Some("n1"), Value::Null),
                    now()
                )
                .is_empty()
        );
        let running = deriver.put(
            INSTANCE,
            &instance(Some("Running"), Some("n1"), Value::Null),
            now(),
        );
        assert_eq!(running[0].payload["taskStatus"], "TASK_RUNNING");
        let killed = deriver.put(
            INSTANCE,
            &instance(Some("Killed"), Some("n1"), Value::Null),
            now(),
        );
        assert_eq!(killed[0].payload["taskStatus"], "TASK_KILLED");
        let failed = deriver.put(
            INSTANCE,
            &instance(Some("Failed"), Some("n1"), Value::Null),
            now(),
        );
        assert_eq!(failed[0].payload["taskStatus"], "TASK_FAILED");
        assert!(deriver.delete(INSTANCE, &Value::Null, now()).is_empty());
    }

    #[test]
    fn health_results_become_health_events_and_unhealthy_events_kills() {
        let mut deriver = Deriver::default();
        let health = |alive: bool, failures: i32| json!({"healthy": alive, "results": [{"index": 0, "alive": alive, "consecutiveFailures": failures}]});
        let events = deriver.put(
            INSTANCE,
            &instance(Some("Running"), Some("n1"), health(true, 0)),
            now(),
        );
        assert_eq!(
            types(&events),
            [
                "status_update_event",
                "instance_changed_event",
                "health_status_changed_event"
            ]
        );
        assert_eq!(events[2].payload["alive"], true);
        let events = deriver.put(
            INSTANCE,
            &instance(Some("Running"), Some("n1"), health(false, 1)),
            now(),
        );
        assert_eq!(
            types(&events),
            ["failed_health_check_event", "health_status_changed_event"]
        );
        assert_eq!(events[0].payload["healthCheck"]["path"], "/health");
        assert_eq!(events[0].payload["instanceId"], "prod_web.web.abc");
        assert_eq!(events[1].payload["alive"], false);
        let events = deriver.put(
            INSTANCE,
            &instance(Some("Running"), Some("n1"), health(false, 2)),
            now(),
        );
        assert_eq!(types(&events), ["failed_health_check_event"]);
        let unhealthy = json!({
            "apiVersion": "pacer.dev/v1", "kind": "Event",
            "metadata": {"name": "web.abc.unhealthy", "namespace": "prod"},
            "involvedObject": {"kind": "Instance", "namespace": "prod", "name": "web.abc"},
            "reason": "Unhealthy", "message": "health check 0 failed 3 times", "count": 1
        });
        let key = "/registry/events/prod/web.abc.unhealthy";
        let events = deriver.put(key, &unhealthy, now());
        assert_eq!(types(&events), ["unhealthy_instance_kill_event"]);
        let kill = &events[0].payload;
        assert_eq!(kill["taskId"], "prod_web.web.abc");
        assert_eq!(kill["slaveId"], "n1");
        assert_eq!(kill["reason"], "health check 0 failed 3 times");
        // The same record again: no second kill; a repeat (count + 1) is one.
        assert!(deriver.put(key, &unhealthy, now()).is_empty());
        let mut repeated = unhealthy.clone();
        repeated["count"] = json!(2);
        assert_eq!(
            types(&deriver.put(key, &repeated, now())),
            ["unhealthy_instance_kill_event"]
        );
        // Other Events are not Marathon events.
        let mut other = unhealthy;
        other["reason"] = json!("FailedScheduling");
        assert!(
            deriver
                .put("/registry/events/prod/x", &other, now())
                .is_empty()
        );
    }

    #[test]
    fn deployments_become_info_step_and_outcome_events() {
        let mut deriver = Deriver::default();
        deriver.put(APP, &app(1), now());
        let events = deriver.put(DEPLOYMENT, &deployment("Running", 1), now());
        assert_eq!(types(&events), ["group_change_success", "deployment_info"]);
        assert_eq!(events[0].payload["groupId"], "/prod");
        let info = &events[1];
        assert_eq!(
            info.payload["currentStep"]["actions"][0]["action"],
            "StartApplication"
        );
        assert_eq!(
            info.payload["currentStep"]["actions"][0]["app"],
            "/prod/web"
        );
        let plan = &info.payload["plan"];
        assert_eq!(plan["id"], "d-1");
        assert_eq!(plan["original"]["apps"], json!([]));
        assert_eq!(plan["target"]["apps"][0]["id"], "/prod/web");
        let light = &info.light.as_ref().unwrap()["plan"];
        assert!(light.get("original").is_none() && light.get("target").is_none());
        assert_eq!(light["steps"], plan["steps"]);
        assert!(
            deriver
                .put(DEPLOYMENT, &deployment("Running", 1), now())
                .is_empty()
        );
        let events = deriver.put(DEPLOYMENT, &deployment("Succeeded", 1), now());
        assert_eq!(
            types(&events),
            ["deployment_step_success", "deployment_success"]
        );
        assert_eq!(events[1].payload["id"], "d-1");
        assert!(
            deriver
                .put(DEPLOYMENT, &deployment("Succeeded", 1), now())
                .is_empty()
        );
        assert!(deriver.delete(DEPLOYMENT, &Value::Null, now()).is_empty());
        // A failure, and a running deployment deleted.
        deriver.put(DEPLOYMENT, &deployment("Running", 1), now());
        let events = deriver.put(DEPLOYMENT, &deployment("Failed", 1), now());
        assert_eq!(
            types(&events),
            ["deployment_step_failure", "deployment_failed"]
        );
        assert_eq!(events[1].payload["reason"], "Failed");
        deriver.delete(DEPLOYMENT, &Value::Null, now());
        deriver.put(DEPLOYMENT, &deployment("Running", 1), now());
        let events = deriver.delete(DEPLOYMENT, &Value::Null, now());
        assert_eq!(
            types(&events),
            ["deployment_step_failure", "deployment_failed"]
        );
    }
}
