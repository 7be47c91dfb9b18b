//! The one translation between Marathon's app JSON and App objects.
//!
//! Inbound: a Marathon app definition minus its `id` is an App spec (the schema keeps
//! Marathon's field names), so translation is: resolve the `id` to namespace and name through
//! `pacer_schemas::marathon_id` (the only place that mapping lives), drop the read-only keys
//! Marathon echoes back (`version`, `tasks`, counts, …) and `null`s (Marathon treats them as
//! absent), and wrap the rest as `spec`. Defaults and validation are the schemas' own, applied
//! by the shared write path — there is no second validator here.
//!
//! Outbound: the stored spec (defaults filled) plus `id`, `version`, `versionInfo`, the task
//! counts, `deployments`, and the empty collections Marathon always shows. Pacer-only settings
//! that still have their default are left out: marathon-python builds objects from every key
//! and fails on one it does not know.

use pacer_schemas::app_version::AppVersion;
use pacer_schemas::{App, MarathonId};
use serde_json::{Map, Value, json};

use super::error::MarathonError;
use super::tasks::{TaskCounts, marathon_time};

/// Keys of Marathon's app JSON that only the server writes; ignored on input.
const READ_ONLY: &[&str] = &[
    "version",
    "versionInfo",
    "deployments",
    "tasks",
    "tasksStaged",
    "tasksRunning",
    "tasksHealthy",
    "tasksUnhealthy",
    "lastTaskFailure",
    "taskStats",
    "readinessCheckResults",
];

/// Makes the empty value of a field.
type EmptyValue = fn() -> Value;

/// Collections Marathon always shows, and their empty values.
const ALWAYS_SHOWN: &[(&str, EmptyValue)] = &[
    ("constraints", || json!([])),
    ("dependencies", || json!([])),
    ("env", || json!({})),
    ("labels", || json!({})),
    ("healthChecks", || json!([])),
    ("readinessChecks", || json!([])),
    ("fetch", || json!([])),
    ("secrets", || json!({})),
    ("executor", || json!("")),
];

/// An app definition from a request: its id and its spec fields.
#[derive(Clone, Debug)]
pub struct AppDefinition {
    /// The absolute id.
    pub id: MarathonId,
    /// The spec fields as given (read-only keys and nulls removed).
    pub fields: Map<String, Value>,
}

/// Parses one Marathon app definition. `path_id` (from the URL) wins over the body's `id`;
/// without either the definition is invalid.
pub fn parse_definition(
    body: Value,
    path_id: Option<&MarathonId>,
) -> Result<AppDefinition, MarathonError> {
    let Value::Object(mut fields) = body else {
        return Err(MarathonError::InvalidJson {
            path: "/".to_owned(),
            error: "error.expected.jsobject".to_owned(),
        });
    };
    let body_id = fields.remove("id");
    let id = match (path_id, body_id) {
        (Some(id), _) => id.clone(),
        (None, Some(Value::String(text))) => parse_app_id(&text)?,
        (None, Some(Value::Null) | None) => {
            return Err(MarathonError::invalid("/id", "error.path.missing"));
        }
        (None, Some(_)) => {
            return Err(MarathonError::InvalidJson {
                path: "/id".to_owned(),
                error: "error.expected.jsstring".to_owned(),
            });
        }
    };
    fields.retain(|key, value| !value.is_null() && !READ_ONLY.contains(&key.as_str()));
    Ok(AppDefinition { id, fields })
}

/// Parses an app id (absolute or relative to the root) and checks it names an object.
pub fn parse_app_id(text: &str) -> Result<MarathonId, MarathonError> {
    let id = MarathonId::parse(text)
        .map_err(|error| MarathonError::invalid("/id", error.to_string()))?;
    id.to_object()
        .map_err(|error| MarathonError::invalid("/id", error.to_string()))?;
    Ok(id)
}

/// The App object (as JSON, for the shared write path) for a definition.
pub fn to_object(definition: &AppDefinition) -> Result<Value, MarathonError> {
    let object = definition
        .id
        .to_object()
        .map_err(|error| MarathonError::invalid("/id", error.to_string()))?;
    Ok(json!({
        "apiVersion": pacer_schemas::API_VERSION,
        "kind": "App",
        "metadata": {"name": object.name, "namespace": object.namespace},
        "spec": Value::Object(definition.fields.clone()),
    }))
}

/// The stored App's spec with `fields` laid over it, top-level key by key (Marathon's
/// `partialUpdate=true`), or `fields` alone (`partialUpdate=false`).
pub fn updated_object(current: &Value, fields: &Map<String, Value>, partial: bool) -> Value {
    let mut new = current.clone();
    let mut spec = if partial {
        current
            .get("spec")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    } else {
        Map::new()
    };
    for (key, value) in fields {
        spec.insert(key.clone(), value.clone());
    }
    if let Some(root) = new.as_object_mut() {
        root.insert("spec".to_owned(), Value::Object(spec));
    }
    new
}

/// The Marathon id of a stored App.
pub fn app_id(app: &App) -> Result<MarathonId, MarathonError> {
    MarathonId::from_object(app.metadata.namespace_str(), app.metadata.name_str())
        .map_err(|error| MarathonError::internal(format!("App has no Marathon id: {error}")))
}

/// The App's Marathon `version`: the version the deployment controller recorded, or (before it
/// did) the creation time.
pub fn version(app: &App) -> String {
    app.status
        .as_ref()
        .and_then(|status| status.current_version.clone())
        .or_else(|| app.metadata.creation_timestamp.map(marathon_time))
        .unwrap_or_default()
}

/// The Marathon app JSON of a stored App, with its task counts.
pub fn to_marathon(app: &App, counts: TaskCounts) -> Result<Value, MarathonError> {
    let id = app_id(app)?;
    let mut spec = match serde_json::to_value(&app.spec) {
        Ok(Value::Object(spec)) => spec,
        Ok(_) | Err(_) => Map::new(),
    };
    strip_pacer_defaults(&mut spec);
    for (key, empty) in ALWAYS_SHOWN {
        spec.entry(*key).or_insert_with(empty);
    }
    let version = version(app);
    let status = app.status.clone().unwrap_or_default();
    let info = status.version_info.clone().unwrap_or_default();
    // Marathon: `lastScalingAt` is the version of the last change of any kind (the current
    // version), `lastConfigChangeAt` the version of the last change that was not a scale
    // (what the instances of the current config record as their version).
    let scaled = status.current_version.clone().unwrap_or_else(|| {
        info.last_scaling_at
            .map(marathon_time)
            .unwrap_or_else(|| version.clone())
    });
    let changed = status.config_version.clone().unwrap_or_else(|| {
        info.last_config_change_at
            .map(marathon_time)
            .unwrap_or_else(|| version.clone())
    });
    let deployments: Vec<Value> = app
        .status
        .iter()
        .flat_map(|status| &status.deployments)
        .map(|id| json!({"id": id}))
        .collect();
    let mut out = Map::new();
    out.insert("id".to_owned(), json!(id.to_string()));
    out.extend(spec);
    out.insert("version".to_owned(), json!(version));
    out.insert(
        "versionInfo".to_owned(),
        json!({"lastScalingAt": scaled, "lastConfigChangeAt": changed}),
    );
    out.insert("tasksStaged".to_owned(), json!(counts.staged));
    out.insert("tasksRunning".to_owned(), json!(counts.running));
    out.insert("tasksHealthy".to_owned(), json!(counts.healthy));
    out.insert("tasksUnhealthy".to_owned(), json!(counts.unhealthy));
    out.insert("deployments".to_owned(), Value::Array(deployments));
    Ok(Value::Object(out))
}

/// The app's `lastTaskFailure`, when it has one.
pub fn last_task_failure(app: &App, id: &MarathonId) -> Option<Value> {
    let failure = app.status.as_ref()?.last_failure.as_ref()?;
    let task_id = failure
        .instance
        .as_ref()
        .map(|instance| format!("{}.{instance}", id.segments().join("_")));
    let state = match failure.phase.as_deref() {
        Some("Finished") => "TASK_FINISHED",
        Some("Killed") => "TASK_KILLED",
        Some("Lost") => "TASK_UNREACHABLE",
        Some("Gone") => "TASK_GONE",
        _ => "TASK_FAILED",
    };
    Some(json!({
        "appId": id.to_string(),
        "host": failure.host.clone().unwrap_or_default(),
        "message": failure.message.clone().unwrap_or_default(),
        "state": state,
        "taskId": task_id,
        "timestamp": failure.timestamp.map(marathon_time),
        // The version the failed instance ran (its config version), else the App's.
        "version": failure.version.clone().unwrap_or_else(|| version(app)),
        "slaveId": failure.node_name,
    }))
}

/// The DeploymentResult body.
pub fn deployment_result(deployment_id: &str, version: &str) -> Value {
    json!({"deploymentId": deployment_id, "version": version})
}

/// A new Marathon version string for now.
pub fn now_version() -> String {
    AppVersion::version_string(jiff::Timestamp::now())
}

/// Drops Pacer's extensions of Marathon's fields while they hold their defaults.
fn strip_pacer_defaults(spec: &mut Map<String, Value>) {
    if let Some(strategy) = spec
        .get_mut("upgradeStrategy")
        .and_then(Value::as_object_mut)
        && strategy.get("autoRevert") == Some(&Value::Bool(false))
    {
        strategy.remove("autoRevert");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn definitions_lose_read_only_keys_and_nulls() {
        let definition = parse_definition(
            json!({"id": "/prod/shop/web", "cmd": "x", "args": null, "version": "v",
                   "tasks": [], "instances": 2}),
            None,
        )
        .unwrap();
        assert_eq!(definition.id.to_string(), "/prod/shop/web");
        assert_eq!(
            Value::Object(definition.fields.clone()),
            json!({"cmd": "x", "instances": 2})
        );
        let object = to_object(&definition).unwrap();
        assert_eq!(
            object["metadata"],
            json!({"name": "shop.web", "namespace": "prod"})
        );
    }

    #[test]
    fn bad_ids_are_422_on_the_id() {
        for body in [
            json!({"cmd": "x"}),
            json!({"id": "/Web"}),
            json!({"id": "/default/web"}),
        ] {
            let error = parse_definition(body.clone(), None).unwrap_err();
            assert_eq!(error.code().as_u16(), 422, "{body}");
            assert_eq!(error.body()["details"][0]["path"], "/id", "{body}");
        }
        let error = parse_definition(json!({"id": 3}), None).unwrap_err();
        assert_eq!(error.code().as_u16(), 400);
        assert_eq!(
            parse_definition(json!([]), None)
                .unwrap_err()
                .code()
                .as_u16(),
            400
        );
    }

    #[test]
    fn partial_updates_replace_top_level_fields() {
        let current = json!({"metadata": {"name": "web"},
                             "spec": {"cmd": "a", "instances": 1, "env": {"A": "1"}}});
        let fields: Map<String, Value> =
            serde_json::from_value(json!({"instances": 3, "env": {"B": "2"}})).unwrap();
        assert_eq!(
            updated_object(&current, &fields, true)["spec"],
            json!({"cmd": "a", "instances": 3, "env": {"B": "2"}})
        );
        assert_eq!(
            updated_object(&current, &fields, false)["spec"],
            json!({"instances": 3, "env": {"B": "2"}})
        );
    }
}
