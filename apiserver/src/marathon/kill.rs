//! Killing tasks through `/v2` (`DELETE /v2/apps/{id}/tasks[/{taskId}]`, `POST /v2/tasks/delete`)
//! the way Pacer kills an instance everywhere else (`pacer node drain`, the health controller,
//! the deployment controller's scale-down): the Instance's `spec.goal` becomes
//! `Decommissioned`, its node's agent kills it, and the deployment controller deletes it once
//! it ended — and, as the App still wants as many instances as before, starts a replacement.
//! An Instance not yet bound to a node (phase `Scheduled`) has nothing to kill and no agent
//! that would ever report it ended, so it is deleted instead (the deployment controller's own
//! rule).
//!
//! With `scale=true` the App's `instances` also drops by the number of instances killed (those
//! already being killed do not count), which the deployment controller turns into a Scale
//! Deployment: the answer is its `{deploymentId, version}`. The instances are decommissioned
//! first and the App written right after, so that the controller (which gathers changes for
//! 50 ms before a round) sees the killed instances and the lower count together; should a round
//! fall between the two writes it starts replacements that the next round kills again (not
//! yet running, they go first), so the outcome is the same. Without `force`, a kill with
//! `scale` is refused (409, nothing killed) while a deployment runs for the App, as Marathon
//! does. `wipe=true` is accepted (Pacer keeps no reservations or volumes to wipe, so it is a
//! plain kill) and cannot be combined with `scale`.

use axum::body::Body;
use axum::http::HeaderMap;
use futures::future::join_all;
use pacer_schemas::instance::{InstanceGoal, InstancePhase};
use pacer_schemas::{Instance, MarathonId};
use serde_json::{Value, json};

use super::error::MarathonError;
use super::{FIELD_MANAGER, MarathonQuery, app_json, deployments};
use crate::object;
use crate::params::Params;
use crate::rest::{ResourceRequest, Subresource, Target, delete, write};
use crate::state::ApiState;

/// The kill options of a request: `scale`, `wipe`, `force`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KillOptions {
    /// Lower the App's `instances` by the number killed.
    pub scale: bool,
    /// Forget the instances' reservations (a plain kill in Pacer).
    pub wipe: bool,
    /// Override the deployment lock (with `scale`).
    pub force: bool,
}

impl KillOptions {
    /// Reads `scale`, `wipe` and `force`; 400 for `scale` with `wipe`, as Marathon answers.
    pub fn parse(query: &MarathonQuery) -> Result<Self, MarathonError> {
        let options = Self {
            scale: query.flag("scale", false)?,
            wipe: query.flag("wipe", false)?,
            force: query.force()?,
        };
        if options.scale && options.wipe {
            return Err(MarathonError::BadRequest(
                "You cannot use scale and wipe at the same time.".to_owned(),
            ));
        }
        Ok(options)
    }
}

/// What a kill answers: the killed tasks, or (with `scale`) the Scale deployment.
#[derive(Debug)]
pub enum Killed {
    /// Without `scale`: the task JSON of every instance asked to stop.
    Tasks(Vec<Value>),
    /// With `scale`: `{deploymentId, version}`.
    Deployment(Value),
}

/// Kills `instances` of the app `app_id` per `options`.
pub async fn kill(
    state: &ApiState,
    app_id: &MarathonId,
    instances: Vec<Instance>,
    options: KillOptions,
) -> Result<Killed, MarathonError> {
    if options.scale {
        let (deployment, version) =
            kill_and_scale(state, app_id, &instances, options.force).await?;
        return Ok(Killed::Deployment(app_json::deployment_result(
            &deployment,
            &version,
        )));
    }
    decommission_all(state, &instances).await?;
    tracing::info!(app = %app_id, count = instances.len(), wipe = options.wipe, "tasks killed through /v2");
    Ok(Killed::Tasks(
        instances
            .iter()
            .map(|instance| super::tasks::task_json(app_id, instance))
            .collect(),
    ))
}

/// Kills `instances` and lowers the App's `instances` by the number of them not already being
/// killed; answers the Scale deployment the controller starts.
async fn kill_and_scale(
    state: &ApiState,
    app_id: &MarathonId,
    instances: &[Instance],
    force: bool,
) -> Result<(String, String), MarathonError> {
    let request = super::app_request(state, app_id, force)?;
    let key = request.key();
    let current = ensure_unlocked(state, app_id, force).await?;
    let killing = instances
        .iter()
        .filter(|instance| !being_killed(instance))
        .count();
    decommission_all(state, instances).await?;
    let before = super::apps::deployments_of(&current);
    if killing == 0 {
        let app = super::apps::decode_app(&current)?;
        return Ok((uuid::Uuid::new_v4().to_string(), app_json::version(&app)));
    }
    let decrement = i64::try_from(killing).unwrap_or(i64::MAX);
    let written = write::guaranteed_update(&request, Subresource::Main, true, |stored| {
        let mut new = stored.clone();
        let instances = stored
            .pointer("/spec/instances")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert(
                "instances".to_owned(),
                json!(instances.saturating_sub(decrement).max(0)),
            );
        }
        Ok(new)
    })
    .await;
    let written = match written {
        Ok(written) => written,
        Err(error) => return Err(super::apps::translate(&request, app_id, error).await),
    };
    tracing::info!(app = %app_id, killed = killing, "tasks killed and app scaled down through /v2");
    let generation = object::meta(&written.object)
        .map_err(MarathonError::from)?
        .generation;
    Ok(deployments::started_by_write(state, &key, &before, generation).await)
}

/// The stored App `app_id` (404 when absent), refusing (409 naming the deployments) while a
/// deployment runs for it, unless `force`.
pub async fn ensure_unlocked(
    state: &ApiState,
    app_id: &MarathonId,
    force: bool,
) -> Result<Value, MarathonError> {
    let request = super::app_request(state, app_id, force)?;
    let current =
        state.store.get(&request.key()).await?.ok_or_else(|| {
            MarathonError::NotFound(super::error::app_not_found(&app_id.to_string()))
        })?;
    let current = object::from_store(&current).map_err(MarathonError::from)?;
    if !force {
        let running = crate::deployment_lock::running_deployments(&request, &current)
            .await
            .map_err(MarathonError::from)?;
        if !running.is_empty() {
            return Err(MarathonError::Locked {
                deployments: running,
            });
        }
    }
    Ok(current)
}

/// Whether a kill was already asked for (Marathon's `isKilling`): goal no longer `Running`.
fn being_killed(instance: &Instance) -> bool {
    matches!(
        instance.spec.goal,
        Some(InstanceGoal::Decommissioned | InstanceGoal::Stopped)
    )
}

/// Decommissions every instance (concurrently: one write each).
async fn decommission_all(state: &ApiState, instances: &[Instance]) -> Result<(), MarathonError> {
    let results = join_all(
        instances
            .iter()
            .filter(|instance| !being_killed(instance))
            .map(|instance| decommission(state, instance)),
    )
    .await;
    results.into_iter().collect()
}

/// Sets `spec.goal: Decommissioned` on `instance` through the shared write path; an instance
/// that is still unbound afterwards is deleted. One that is gone meanwhile needs nothing.
async fn decommission(state: &ApiState, instance: &Instance) -> Result<(), MarathonError> {
    let request = instance_request(state, instance)?;
    let written = write::guaranteed_update(&request, Subresource::Main, true, |stored| {
        let mut new = stored.clone();
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("goal".to_owned(), json!("Decommissioned"));
        }
        Ok(new)
    })
    .await;
    let written = match written {
        Ok(written) => written,
        Err(crate::error::ApiError::NotFound { .. }) => return Ok(()),
        Err(error) => return Err(MarathonError::from(error)),
    };
    let stored: Instance = serde_json::from_value(written.object)
        .map_err(|error| MarathonError::internal(format!("decode stored Instance: {error}")))?;
    tracing::debug!(instance = %request.key(), "decommissioned through /v2");
    if stored.spec.node_name.is_none() && stored.phase() == InstancePhase::Scheduled {
        // Placement binds only goal-Running instances: this one stays unbound, so delete it.
        match delete::delete(request, Body::empty()).await {
            Ok(_) | Err(crate::error::ApiError::NotFound { .. }) => {}
            Err(error) => return Err(MarathonError::from(error)),
        }
    }
    Ok(())
}

/// A request of the shared write path for `instance`.
fn instance_request(
    state: &ApiState,
    instance: &Instance,
) -> Result<ResourceRequest, MarathonError> {
    let kind = super::served_kind("Instance")?;
    Ok(ResourceRequest {
        state: state.clone(),
        target: Target {
            kind,
            namespace: Some(instance.metadata.namespace_str().to_owned()),
            name: Some(instance.metadata.name_str().to_owned()),
            sub: Subresource::Main,
        },
        params: Params::default(),
        headers: HeaderMap::new(),
        manager_name: FIELD_MANAGER.to_owned(),
    })
}
