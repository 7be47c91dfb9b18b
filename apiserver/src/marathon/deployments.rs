//! `GET /v2/deployments` from Deployment objects, `DELETE /v2/deployments/{id}`, and the
//! deployment id a `/v2` write answers with.
//!
//! Deleting a deployment is the Deployment object's DELETE through the shared path, which is
//! what the deployment controller's rollback hangs on: the Deployment carries the controller's
//! finalizer, so an ordinary DELETE only marks it, and the controller rolls its App back to the
//! version the deployment came from (or removes the App it was creating) — a change it turns
//! into a new Deployment, whose `{deploymentId, version}` is the answer (200), as in Marathon.
//! `?force=true` drops the finalizer first (`deployment_lock::before_delete`), so the
//! Deployment just goes, without a rollback: 202 and no body. A deployment that is not running
//! (unknown, or finished and only kept for `pacer rollout status`) is 404 in Marathon's words.
//!
//! The API server does not plan deployments: the deployment controller sees the App change
//! and writes the Deployment, the AppVersion and the App's `status.deployments` in one
//! transaction. So that a `/v2` write can answer Marathon's `{deploymentId, version}` with the
//! id that `/v2/deployments` will show (clients poll for it), the handler waits — while a
//! deployment controller holds its leader election — until the App's status names a new
//! Deployment, or until the controller has observed the change without starting one. With no
//! controller running, or after [`DEPLOYMENT_WAIT`], it answers a fresh id that no running
//! deployment has (so a client polling for it sees it finished).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use pacer_schemas::deployment::{AppRef, DeploymentAction};
use pacer_schemas::{App, Deployment, MarathonId};
use pacer_store::{EventKind, ListOptions};
use serde_json::{Value, json};

use super::error::{MarathonError, deployment_not_found};
use super::tasks::marathon_time;
use super::{FIELD_MANAGER, MarathonQuery, app_json};
use crate::error::ApiError;
use crate::params::Params;
use crate::rest::{ResourceRequest, Subresource, Target, delete as rest_delete};
use crate::state::ApiState;

/// Longest a write waits for the deployment controller to start the deployment.
pub const DEPLOYMENT_WAIT: Duration = Duration::from_secs(10);

/// Pause before reading and watching the App again after its watch failed.
const RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// Where the deployment controller's leader election lives (`pacer-controllers`'
/// `deployment::CONTROLLER_NAME` under `/elections/`; the API server does not depend on that
/// crate, they meet in the store).
const DEPLOYMENT_ELECTION: &str = "/elections/deployment/";

/// `GET /v2/deployments`: the running deployments, in Marathon's shape.
pub async fn list(State(state): State<ApiState>) -> Result<Response, MarathonError> {
    let kind = super::served_kind("Deployment")?;
    let mut options = ListOptions {
        limit: state.config.internal_page_size,
        ..ListOptions::default()
    };
    let mut out = Vec::new();
    loop {
        let page = state.store.list(&kind.prefix(None), &options).await?;
        for kv in &page.items {
            let Ok(deployment) = serde_json::from_slice::<Deployment>(&kv.value) else {
                tracing::warn!(key = %kv.key, "skipping a Deployment that does not decode");
                continue;
            };
            if deployment.phase().is_active() {
                out.push(deployment_json(&deployment));
            }
        }
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => break,
        }
    }
    Ok(super::json(axum::http::StatusCode::OK, &Value::Array(out)))
}

/// `DELETE /v2/deployments/{id}`: rolls the deployment back (200 `{deploymentId, version}` of
/// the rollback), or with `force=true` stops it without one (202, no body).
pub async fn delete(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(&uri)?;
    let force = query.force()?;
    let kind = super::served_kind("Deployment")?;
    let not_found = || MarathonError::NotFound(deployment_not_found(&id));
    if id.is_empty() || id.contains('/') {
        return Err(not_found());
    }
    let kv = state
        .store
        .get(&kind.key(None, &id))
        .await?
        .ok_or_else(not_found)?;
    let deployment: Deployment = serde_json::from_slice(&kv.value)
        .map_err(|error| MarathonError::internal(format!("decode stored Deployment: {error}")))?;
    if !deployment.phase().is_active() {
        return Err(not_found());
    }
    // The App the rollback rewrites, and the deployments it had before (the new one is the
    // one it gets next).
    let app = match deployment.spec.affected_apps.first() {
        Some(app) => {
            let app_kind = super::served_kind("App")?;
            let key = app_kind.key(Some(&app.namespace), &app.name);
            let before = match state.store.get(&key).await? {
                Some(kv) => serde_json::from_slice::<App>(&kv.value)
                    .ok()
                    .and_then(|app| app.status)
                    .map(|status| status.deployments)
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            Some((key, before))
        }
        None => None,
    };
    let request = ResourceRequest {
        state: state.clone(),
        target: Target {
            kind,
            namespace: None,
            name: Some(id.clone()),
            sub: Subresource::Main,
        },
        params: Params {
            force,
            ..Params::default()
        },
        headers: HeaderMap::new(),
        manager_name: FIELD_MANAGER.to_owned(),
    };
    match rest_delete::delete(request, Body::empty()).await {
        Ok(_) => {}
        Err(ApiError::NotFound { .. }) => return Err(not_found()),
        Err(error) => return Err(MarathonError::from(error)),
    }
    if force {
        tracing::info!(deployment = %id, "deployment stopped through /v2 (no rollback)");
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    tracing::info!(deployment = %id, "deployment deleted through /v2: rolling back");
    let (deployment_id, version) = match app {
        Some((key, mut before)) => {
            if !before.contains(&id) {
                before.push(id.clone());
            }
            started_by_write(&state, &key, &before, None).await
        }
        None => (uuid::Uuid::new_v4().to_string(), app_json::now_version()),
    };
    Ok(super::json(
        StatusCode::OK,
        &app_json::deployment_result(&deployment_id, &version),
    ))
}

/// Marathon's JSON of one Deployment.
pub fn deployment_json(deployment: &Deployment) -> Value {
    let app_id = |app: &AppRef| {
        MarathonId::from_object(&app.namespace, &app.name)
            .map(|id| id.to_string())
            .unwrap_or_else(|_| format!("/{}/{}", app.namespace, app.name))
    };
    let action_json = |action: &DeploymentAction| json!({"action": format!("{:?}", action.action), "app": app_id(&action.app)});
    let version = deployment
        .spec
        .steps
        .iter()
        .flat_map(|step| &step.actions)
        .find_map(|action| action.version.clone())
        .or_else(|| deployment.metadata.creation_timestamp.map(marathon_time))
        .unwrap_or_default();
    let status = deployment.status.clone().unwrap_or_default();
    let current_actions: Vec<Value> = status
        .current_actions
        .iter()
        .map(|action| {
            let results: Vec<Value> = action
                .readiness_check_results
                .iter()
                .map(|result| {
                    json!({
                        "name": result.name,
                        "ready": result.ready,
                        "lastResponse": result.last_response,
                    })
                })
                .collect();
            json!({
                "action": format!("{:?}", action.action),
                "app": app_id(&action.app),
                "readinessCheckResults": results,
            })
        })
        .collect();
    let total_steps = if status.total_steps > 0 {
        status.total_steps
    } else {
        i32::try_from(deployment.spec.steps.len()).unwrap_or(i32::MAX)
    };
    json!({
        "id": deployment.metadata.name_str(),
        "version": version,
        "affectedApps": deployment.spec.affected_apps.iter().map(app_id).collect::<Vec<_>>(),
        "affectedPods": [],
        "steps": deployment
            .spec
            .steps
            .iter()
            .map(|step| json!({"actions": step.actions.iter().map(action_json).collect::<Vec<_>>()}))
            .collect::<Vec<_>>(),
        "currentActions": current_actions,
        "currentStep": status.current_step.max(1).min(total_steps.max(1)),
        "totalSteps": total_steps,
    })
}

/// The Deployment a write of the App at `key` started: its id and the App's new version.
/// `before`: the App's `status.deployments` before the write; `generation`: the App's new
/// `metadata.generation` when the write changed the spec (the controller's
/// `status.observedGeneration` reaching it without a new deployment ends the wait).
///
/// It reads the App once and then watches its key from that revision, so it answers as soon as
/// the controller's status write lands (no polling interval on top of the controller's round).
pub async fn started_by_write(
    state: &ApiState,
    key: &str,
    before: &[String],
    generation: Option<i64>,
) -> (String, String) {
    let fresh = || uuid::Uuid::new_v4().to_string();
    let mut last_version = None;
    if controller_running(state).await {
        let waited = tokio::time::timeout(
            DEPLOYMENT_WAIT,
            watch_for_deployment(state, key, before, generation, &mut last_version),
        )
        .await;
        match waited {
            Ok(Some(WriteOutcome::Deployment(id, version))) => return (id, version),
            Ok(Some(WriteOutcome::Observed(version))) => return (fresh(), version),
            Ok(None) | Err(_) => tracing::debug!(key, "no deployment seen for a /v2 write"),
        }
    }
    (fresh(), last_version.unwrap_or_else(app_json::now_version))
}

/// What the deployment controller made of a `/v2` write.
enum WriteOutcome {
    /// It started this Deployment; the App's version.
    Deployment(String, String),
    /// It observed the change without starting a Deployment; the App's version.
    Observed(String),
}

/// Reads the App at `key`, then follows its changes until its status answers the write (see
/// [`started_by_write`]); `None` when the App is gone. Every version seen is left in
/// `last_version`. A watch that fails or ends (etcd cancels watches on a leader change; an old
/// App's revision may be compacted) is started again from a fresh read, at most every
/// [`RETRY_INTERVAL`], until the caller's deadline.
async fn watch_for_deployment(
    state: &ApiState,
    key: &str,
    before: &[String],
    generation: Option<i64>,
    last_version: &mut Option<String>,
) -> Option<WriteOutcome> {
    loop {
        let kv = match state.store.get(key).await {
            Ok(Some(kv)) => kv,
            Ok(None) => return None,
            Err(error) => {
                tracing::debug!(%error, key, "reading the App while waiting for its deployment");
                tokio::time::sleep(RETRY_INTERVAL).await;
                continue;
            }
        };
        if let Some(outcome) = write_outcome(&kv.value, before, generation, last_version) {
            return Some(outcome);
        }
        let mut changes = match state.store.watch(key, kv.mod_revision).await {
            Ok(changes) => changes,
            Err(error) => {
                tracing::debug!(%error, key, "watching the App while waiting for its deployment");
                tokio::time::sleep(RETRY_INTERVAL).await;
                continue;
            }
        };
        while let Some(change) = changes.next().await {
            let change = match change {
                Ok(change) => change,
                Err(error) => {
                    tracing::debug!(%error, key, "the App's watch ended; reading it again");
                    break;
                }
            };
            // The watch is on a prefix: `key` also matches longer keys.
            if change.kv.key != key {
                continue;
            }
            if change.kind == EventKind::Delete {
                return None;
            }
            if let Some(outcome) = write_outcome(&change.kv.value, before, generation, last_version)
            {
                return Some(outcome);
            }
        }
        tokio::time::sleep(RETRY_INTERVAL).await;
    }
}

/// Whether the App stored as `value` answers the write: a Deployment not in `before`, or the
/// controller having observed `generation`.
fn write_outcome(
    value: &[u8],
    before: &[String],
    generation: Option<i64>,
    last_version: &mut Option<String>,
) -> Option<WriteOutcome> {
    let app = serde_json::from_slice::<App>(value).ok()?;
    let version = app_json::version(&app);
    let status = app.status.unwrap_or_default();
    if let Some(new) = status.deployments.iter().find(|id| !before.contains(id)) {
        return Some(WriteOutcome::Deployment(new.clone(), version));
    }
    if let Some(generation) = generation
        && status
            .observed_generation
            .is_some_and(|seen| seen >= generation)
    {
        return Some(WriteOutcome::Observed(version));
    }
    *last_version = Some(version);
    None
}

async fn controller_running(state: &ApiState) -> bool {
    let options = ListOptions {
        limit: 1,
        ..ListOptions::default()
    };
    match state.store.list(DEPLOYMENT_ELECTION, &options).await {
        Ok(page) => !page.items.is_empty(),
        Err(error) => {
            tracing::warn!(%error, "reading the deployment controller's election");
            false
        }
    }
}
