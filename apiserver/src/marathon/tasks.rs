//! Marathon tasks are Pacer Instances: the task JSON (`id`, `appId`, `host`, `ports`,
//! `servicePorts`, `slaveId`, `stagedAt`, `startedAt` — null until running, `version`, `state`,
//! `healthCheckResults`, `ipAddresses`), the task counts of an app (`tasksStaged`,
//! `tasksRunning`, `tasksHealthy`, `tasksUnhealthy`), and `GET /v2/apps/{id}/tasks`.
//!
//! Task ids: `<app id without the leading '/', '/' → '_'>.<instance name>`, e.g.
//! `prod_shop_web.shop.web-x7k2p`. Marathon's own ids have that shape (`<app>.<uuid>`), and since
//! an app id's segments never contain a `.`, the first `.` separates the app from the instance.

use std::collections::BTreeMap;

use pacer_schemas::app_version::AppVersion;
use pacer_schemas::instance::{InstancePhase, labels};
use pacer_schemas::time::Time;
use pacer_schemas::{Instance, MarathonId};
use pacer_store::ListOptions;
use serde_json::{Value, json};

use super::error::MarathonError;
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
