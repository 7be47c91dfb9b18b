//! Marathon tasks are Pacer Instances: the task JSON (`id`, `appId`, `host`, `ports`,
//! `servicePorts`, `slaveId`, `stagedAt`, `startedAt` — null until running, `version`, `state`,
//! `healthCheckResults`, `ipAddresses`), the task counts of an app (`tasksStaged`,
//! `tasksRunning`, `tasksHealthy`, `tasksUnhealthy`) and its `taskStats`, Marathon's
//! tab-separated text form (`Accept: text/plain`), `GET /v2/tasks` (with `status=`) and
//! `POST /v2/tasks/delete` (kills through `kill`).
//!
//! Task ids: `<app id without the leading '/', '/' → '_'>.<instance name>`, e.g.
//! `prod_shop_web.shop.web-x7k2p`. Marathon's own ids have that shape (`<app>.<uuid>`), and since
//! an app id's segments never contain a `.`, the first `.` separates the app from the instance.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use pacer_schemas::app_version::AppVersion;
use pacer_schemas::instance::{InstancePhase, labels};
use pacer_schemas::time::Time;
use pacer_schemas::{App, Instance, MarathonId};
use pacer_store::ListOptions;
use serde_json::{Value, json};

use super::MarathonQuery;
use super::error::MarathonError;
use super::kill::{self, KillOptions, Killed};
use crate::kinds;
use crate::state::ApiState;

/// Marathon's task counts of one app.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Placed, not yet running.
    pub staged: i32,
    /// Running.
    pub running: i32,
    /// Running with every health check passing.
    pub healthy: i32,
    /// Running with a failing health check.
    pub unhealthy: i32,
}

impl TaskCounts {
    /// Counts the live instances of one app.
    pub fn of<'a>(instances: impl IntoIterator<Item = &'a Instance>) -> Self {
        let mut counts = Self::default();
        for instance in instances {
            let phase = instance.phase();
            if phase.is_staged() {
                counts.staged += 1;
            }
            if phase == InstancePhase::Running {
                counts.running += 1;
                match instance.status.as_ref().and_then(|status| status.healthy) {
                    Some(true) => counts.healthy += 1,
                    Some(false) => counts.unhealthy += 1,
                    None => {}
                }
            }
        }
        counts
    }
}

/// The instances of every app, by `(namespace, app name)`; terminal instances are left out
/// (Marathon forgets finished tasks). `namespace`: one namespace, or all.
pub async fn instances_by_app(
    state: &ApiState,
    namespace: Option<&str>,
) -> Result<BTreeMap<(String, String), Vec<Instance>>, MarathonError> {
    let Some(kind) = kinds::find_kind("Instance") else {
        return Ok(BTreeMap::new());
    };
    let mut by_app: BTreeMap<(String, String), Vec<Instance>> = BTreeMap::new();
    let prefix = kind.prefix(namespace);
    let mut options = ListOptions {
        limit: state.config.internal_page_size,
        ..ListOptions::default()
    };
    loop {
        let page = state.store.list(&prefix, &options).await?;
        for kv in &page.items {
            let Ok(instance) = serde_json::from_slice::<Instance>(&kv.value) else {
                tracing::warn!(key = %kv.key, "skipping an Instance that does not decode");
                continue;
            };
            if instance.phase().is_terminal() {
                continue;
            }
            let app = instance
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(labels::APP))
                .cloned()
                .unwrap_or_else(|| instance.spec.app.clone());
            by_app
                .entry((instance.metadata.namespace_str().to_owned(), app))
                .or_default()
                .push(instance);
        }
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => break,
        }
    }
    Ok(by_app)
}

/// The Marathon task id of `instance` of app `app_id`.
pub fn task_id(app_id: &MarathonId, instance: &Instance) -> String {
    format!(
        "{}.{}",
        app_id.segments().join("_"),
        instance.metadata.name_str()
    )
}

/// A timestamp as Marathon writes it (UTC, milliseconds, `Z`), which marathon-python parses.
pub fn marathon_time(time: Time) -> String {
    AppVersion::version_string(time.timestamp())
}

/// The Marathon task JSON of `instance`, which belongs to app `app_id`.
pub fn task_json(app_id: &MarathonId, instance: &Instance) -> Value {
    let status = instance.status.clone().unwrap_or_default();
    let node = instance.spec.node_name.clone();
    let host = status.host.clone().or_else(|| node.clone());
    let service_ports: Vec<i32> = instance
        .spec
        .template
        .iter()
        .flat_map(|template| template.port_definitions.iter().flatten())
        .filter_map(|definition| definition.port)
        // 0 asks for a service port; Pacer assigns none, so there is none to show.
        .filter(|port| *port != 0)
        .collect();
    let health: Vec<Value> = status
        .health
        .iter()
        .map(|result| {
            json!({
                "alive": result.alive,
                "consecutiveFailures": result.consecutive_failures,
                "firstSuccess": result.first_success.map(marathon_time),
                "lastFailure": result.last_failure.map(marathon_time),
                "lastSuccess": result.last_success.map(marathon_time),
                "lastFailureCause": result.last_failure_cause,
                "instanceId": instance.metadata.name_str(),
            })
        })
        .collect();
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
    json!({
        "id": task_id(app_id, instance),
        "appId": app_id.to_string(),
        "host": host.unwrap_or_default(),
        "slaveId": node,
        "ports": instance.spec.host_ports.clone().unwrap_or_default(),
        "servicePorts": service_ports,
        "ipAddresses": addresses,
        "stagedAt": status.staged_at.map(marathon_time),
        "startedAt": status.started_at.map(marathon_time),
        "version": instance.spec.app_version,
        "state": instance.phase().marathon_task_state(),
        "healthCheckResults": health,
    })
}

/// `GET /v2/tasks`: every live task, `{"tasks": […]}`, or with `Accept: text/plain` Marathon's
/// text form of every app. `status=running|staging|…` (also `status[]=`, repeatable) keeps the
/// tasks in those states (`TASK_<STATUS>`).
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(&uri)?;
    let statuses: Vec<String> = query
        .all("status")
        .chain(query.all("status[]"))
        .filter(|status| !status.is_empty())
        .map(|status| {
            let upper = status.to_ascii_uppercase();
            if upper.starts_with("TASK_") {
                upper
            } else {
                format!("TASK_{upper}")
            }
        })
        .collect();
    let wanted = |instance: &Instance| {
        statuses.is_empty()
            || statuses
                .iter()
                .any(|status| status == instance.phase().marathon_task_state())
    };
    let mut by_app = instances_by_app(&state, None).await?;
    for instances in by_app.values_mut() {
        instances.retain(|instance| wanted(instance));
    }
    if wants_text(&headers) {
        let apps = super::apps::list_apps(&state).await?;
        let mut rows = Vec::with_capacity(apps.len());
        for app in &apps {
            let id = super::app_json::app_id(app)?;
            let instances = by_app
                .remove(&(
                    app.metadata.namespace_str().to_owned(),
                    app.metadata.name_str().to_owned(),
                ))
                .unwrap_or_default();
            rows.push((id, app, instances));
        }
        let rows: Vec<(&MarathonId, Option<&App>, &[Instance])> = rows
            .iter()
            .map(|(id, app, instances)| (id, Some(*app), instances.as_slice()))
            .collect();
        return Ok(text_response(&endpoints_text(&rows)));
    }
    let mut tasks = Vec::new();
    for ((namespace, app), instances) in &by_app {
        let Ok(id) = MarathonId::from_object(namespace, app) else {
            tracing::warn!(
                namespace,
                app,
                "skipping instances of an app with no Marathon id"
            );
            continue;
        };
        tasks.extend(instances.iter().map(|instance| task_json(&id, instance)));
    }
    Ok(super::json(StatusCode::OK, &json!({"tasks": tasks})))
}

/// `POST /v2/tasks/delete?scale=&wipe=&force=` with `{"ids": […]}`: kills the named tasks of
/// any apps; ids of tasks that are not (or no longer) there are skipped, an id that is not a
/// task id at all is 400. Answers `{"tasks": […]}`, or with `scale=true` the deployment of
/// the first app scaled (`{deploymentId, version}`).
pub async fn delete_many(
    State(state): State<ApiState>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(&uri)?;
    let options = KillOptions::parse(&query)?;
    let ids = task_ids_of(&body)?;
    let mut chosen: BTreeMap<(String, String), (MarathonId, Vec<Instance>)> = BTreeMap::new();
    for ((namespace, app), instances) in instances_by_app(&state, None).await? {
        let Ok(id) = MarathonId::from_object(&namespace, &app) else {
            continue;
        };
        let named: Vec<Instance> = instances
            .into_iter()
            .filter(|instance| ids.contains(&task_id(&id, instance)))
            .collect();
        if !named.is_empty() {
            chosen.insert((namespace, app), (id, named));
        }
    }
    if options.scale && !options.force {
        // Refuse before killing anything when any of the apps is locked.
        for (id, _) in chosen.values() {
            kill::ensure_unlocked(&state, id, false).await?;
        }
    }
    let mut tasks = Vec::new();
    let mut first_deployment = None;
    for (id, instances) in chosen.into_values() {
        match kill::kill(&state, &id, instances, options).await? {
            Killed::Tasks(killed) => tasks.extend(killed),
            Killed::Deployment(result) => {
                first_deployment.get_or_insert(result);
            }
        }
    }
    let body = if options.scale {
        first_deployment.unwrap_or_else(|| {
            super::app_json::deployment_result(
                &uuid::Uuid::new_v4().to_string(),
                &super::app_json::now_version(),
            )
        })
    } else {
        json!({"tasks": tasks})
    };
    Ok(super::json(StatusCode::OK, &body))
}

/// The task ids of a `{"ids": […]}` body; 400 for another shape or an id without the
/// `<app>.<instance>` form.
fn task_ids_of(body: &[u8]) -> Result<Vec<String>, MarathonError> {
    let invalid = |error: String| MarathonError::InvalidJson {
        path: "/ids".to_owned(),
        error,
    };
    let value: Value =
        serde_json::from_slice(body).map_err(|error| MarathonError::InvalidJson {
            path: "/".to_owned(),
            error: error.to_string(),
        })?;
    let ids = value
        .get("ids")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("error.path.missing: expected an array of task ids".to_owned()))?;
    ids.iter()
        .map(|id| {
            let id = id
                .as_str()
                .ok_or_else(|| invalid("error.expected.jsstring".to_owned()))?;
            match id.split_once('.') {
                Some((app, instance)) if !app.is_empty() && !instance.is_empty() => {
                    Ok(id.to_owned())
                }
                _ => Err(MarathonError::BadRequest(format!("Invalid task id '{id}'"))),
            }
        })
        .collect()
}

/// Whether `instance` runs on `host` (its reported host or its node; `*` is every host).
pub fn on_host(instance: &Instance, host: &str) -> bool {
    host == "*"
        || instance
            .status
            .as_ref()
            .and_then(|status| status.host.as_deref())
            == Some(host)
        || instance.spec.node_name.as_deref() == Some(host)
}

/// Whether the client asked for Marathon's text form: `Accept` names `text/plain` before (or
/// without) `application/json`.
pub fn wants_text(headers: &HeaderMap) -> bool {
    let Some(accept) = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
    else {
        return false;
    };
    for media in accept.split(',') {
        let media = media.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("text/plain") {
            return true;
        }
        if media.eq_ignore_ascii_case("application/json") {
            return false;
        }
    }
    false
}

/// A `text/plain` response.
pub fn text_response(text: &str) -> Response {
    let mut response = (StatusCode::OK, text.to_owned()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Marathon's text form of apps and their running tasks (what haproxy-marathon-bridge reads):
/// per service port of an app, `<app id, '/' → '_'>\t<service port>\t<host>:<host port>\t…`;
/// an app without ports gets one line `<app>\t \t<host> \t…`.
pub fn endpoints_text(apps: &[(&MarathonId, Option<&App>, &[Instance])]) -> String {
    let mut text = String::new();
    for (id, app, instances) in apps {
        let clean = id.segments().join("_");
        let running: Vec<&Instance> = instances
            .iter()
            .filter(|instance| instance.phase() == InstancePhase::Running)
            .collect();
        let host = |instance: &Instance| {
            instance
                .status
                .as_ref()
                .and_then(|status| status.host.clone())
                .or_else(|| instance.spec.node_name.clone())
                .unwrap_or_default()
        };
        let ports: Vec<i32> = app
            .iter()
            .flat_map(|app| app.spec.port_definitions.iter().flatten())
            .map(|definition| definition.port.unwrap_or(0))
            .collect();
        if ports.is_empty() {
            let _ = write!(text, "{clean}\t \t");
            for instance in &running {
                let _ = write!(text, "{} \t", host(instance));
            }
            text.push('\n');
            continue;
        }
        for (index, port) in ports.iter().enumerate() {
            let _ = write!(text, "{clean}\t{port}\t");
            for instance in &running {
                let host_port = instance
                    .spec
                    .host_ports
                    .as_ref()
                    .and_then(|ports| ports.get(index))
                    .copied()
                    .unwrap_or(0);
                let _ = write!(text, "{}:{host_port}\t", host(instance));
            }
            text.push('\n');
        }
    }
    text
}

/// Marathon's `taskStats` of an app: counts and life times of its tasks overall
/// (`totalSummary`), of those running its current config (`withLatestConfig`) or an older one
/// (`withOutdatedConfig`), and of those started since the last scale
/// (`startedAfterLastScaling`). A group without tasks is left out, as Marathon does.
pub fn task_stats(app: &App, instances: &[Instance], now: Time) -> Value {
    let status = app.status.clone().unwrap_or_default();
    let config = status.config_version.clone();
    let last_scaling = status
        .version_info
        .as_ref()
        .and_then(|info| info.last_scaling_at);
    let latest = |instance: &&Instance| {
        config
            .as_deref()
            .is_none_or(|config| instance.spec.app_version == config)
    };
    let started_after_scaling = |instance: &&Instance| {
        let since = instance
            .status
            .as_ref()
            .and_then(|status| status.staged_at)
            .or(instance.metadata.creation_timestamp);
        match (since, last_scaling) {
            (Some(since), Some(scaled)) => since >= scaled,
            (_, None) => true,
            (None, Some(_)) => false,
        }
    };
    let groups: [(&str, Vec<&Instance>); 4] = [
        (
            "startedAfterLastScaling",
            instances.iter().filter(started_after_scaling).collect(),
        ),
        (
            "withLatestConfig",
            instances.iter().filter(latest).collect(),
        ),
        (
            "withOutdatedConfig",
            instances.iter().filter(|i| !latest(i)).collect(),
        ),
        ("totalSummary", instances.iter().collect()),
    ];
    let mut stats = serde_json::Map::new();
    for (name, members) in groups {
        if members.is_empty() {
            continue;
        }
        let counts = TaskCounts::of(members.iter().copied());
        let mut entry = json!({
            "counts": {
                "staged": counts.staged,
                "running": counts.running,
                "healthy": counts.healthy,
                "unhealthy": counts.unhealthy,
            }
        });
        if let Some(life_time) = life_time(&members, now) {
            entry["lifeTime"] = life_time;
        }
        stats.insert(name.to_owned(), json!({"stats": entry}));
    }
    Value::Object(stats)
}

/// Average and median seconds since the running tasks started; `None` without one.
fn life_time(instances: &[&Instance], now: Time) -> Option<Value> {
    let mut ages: Vec<f64> = instances
        .iter()
        .filter(|instance| instance.phase() == InstancePhase::Running)
        .filter_map(|instance| {
            instance
                .status
                .as_ref()
                .and_then(|status| status.started_at)
        })
        .map(|started| (now.as_unix_seconds() - started.as_unix_seconds()).max(0) as f64)
        .collect();
    if ages.is_empty() {
        return None;
    }
    ages.sort_by(f64::total_cmp);
    let average = ages.iter().sum::<f64>() / ages.len() as f64;
    let middle = ages.len() / 2;
    let median = if ages.len().is_multiple_of(2) {
        (ages[middle - 1] + ages[middle]) / 2.0
    } else {
        ages[middle]
    };
    Some(json!({"averageSeconds": average, "medianSeconds": median}))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn text_is_wanted_only_when_preferred() {
        for (accept, expect) in [
            (None, false),
            (Some("text/plain"), true),
            (Some("text/plain; charset=utf-8"), true),
            (Some("application/json"), false),
            (Some("application/json, text/plain"), false),
            (Some("text/plain, application/json"), true),
            (Some("*/*"), false),
        ] {
            let mut headers = HeaderMap::new();
            if let Some(accept) = accept {
                headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
            }
            assert_eq!(wants_text(&headers), expect, "{accept:?}");
        }
    }

    #[test]
    fn task_ids_must_name_an_app_and_an_instance() {
        assert_eq!(
            task_ids_of(br#"{"ids": ["web.web-abc12", "prod_db.db-x"]}"#).unwrap(),
            vec!["web.web-abc12", "prod_db.db-x"]
        );
        for body in [
            &br#"{"ids": ["not_known"]}"#[..],
            br#"{"ids": [".x"]}"#,
            br#"{"ids": "web.x"}"#,
            br#"{}"#,
            b"nope",
        ] {
            let error = task_ids_of(body).unwrap_err();
            assert_eq!(error.code(), StatusCode::BAD_REQUEST, "{error}");
        }
    }
}
