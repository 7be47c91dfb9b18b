//! The deployment lock (Marathon's "App is locked by one or more deployments"): while a
//! Deployment runs for an App, a change of that App's spec, a restart request (the
//! `pacer.dev/restartedAt` annotation) or its deletion is refused with 409 Conflict naming the
//! running Deployments — unless the request says `?force=true`, in which case it goes through
//! and the deployment controller cancels the running Deployments in favour of the new one
//! (it starts from the state the instances are in).
//!
//! The server never depends on the controllers: it reads the lock from the store. The App's
//! `status.deployments` (written by the deployment controller in the same transaction as each
//! Deployment) names the candidates; each is read back and counts only while its phase is
//! `Pending` or `Running` and it still names the App. Status writes (`/status`), changes of
//! metadata only (labels, finalizers) and dry runs (`kubectl diff`, `--dry-run=server`: they
//! start no deployment) are never blocked.
//!
//! Deleting a Deployment is the other half: an ordinary DELETE leaves it to the deployment
//! controller's finalizer (which rolls the App back first); `?force=true` drops that finalizer
//! so the Deployment goes at once, without a rollback.

use pacer_schemas::app_version::RESTARTED_AT_ANNOTATION;
use pacer_schemas::deployment::DEPLOYMENT_FINALIZER;
use pacer_schemas::{App, Deployment};
use pacer_store::StoreError;
use serde_json::Value;

use crate::error::ApiError;
use crate::kinds::{self, KindDef};
use crate::object;
use crate::rest::delete::MAX_ATTEMPTS;
use crate::rest::{ResourceRequest, Subresource};

/// Refuses (409) a write of an App that changes what a running Deployment rolls out, unless
/// `force`. `current` is the stored App, `new` the App about to be stored.
pub async fn check_update(
    request: &ResourceRequest,
    current: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    let kind = request.target.kind;
    if kind.kind != "App"
        || request.target.sub == Subresource::Status
        || request.params.force
        || request.params.dry_run
    {
        return Ok(());
    }
    let restarted = |object: &Value| {
        object
            .pointer("/metadata/annotations")
            .and_then(|annotations| annotations.get(RESTARTED_AT_ANNOTATION))
            .cloned()
    };
    let deleting = |object: &Value| object.pointer("/metadata/deletionTimestamp").is_some();
    let changes_rollout = current.get("spec") != new.get("spec")
        || restarted(current) != restarted(new)
        || (deleting(new) && !deleting(current));
    if !changes_rollout {
        return Ok(());
    }
    refuse_if_locked(request, kind, current).await
}

/// Before a DELETE: refuses (409) the deletion of an App that a running Deployment touches,
/// unless `force` (an App already being deleted is not refused again: its stop is what runs).
/// A forced DELETE of a Deployment first drops the deployment controller's finalizer, so the
/// Deployment goes at once without the rollback an ordinary DELETE asks for (Marathon's
/// `DELETE /v2/deployments/{id}?force=true`).
pub async fn before_delete(request: &ResourceRequest) -> Result<(), ApiError> {
    let kind = request.target.kind;
    if kind.kind == "Deployment" && request.params.force && !request.params.dry_run {
        return drop_finalizer(request).await;
    }
    if kind.kind != "App" || request.params.force || request.params.dry_run {
        return Ok(());
    }
    let Some(kv) = request.state.store.get(&request.key()).await? else {
        return Ok(());
    };
    let current = object::from_store(&kv)?;
    if current.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(());
    }
    refuse_if_locked(request, kind, &current).await
}

async fn drop_finalizer(request: &ResourceRequest) -> Result<(), ApiError> {
    let store = &request.state.store;
    let key = request.key();
    // The controller writes the Deployment's progress concurrently: a lost compare-and-swap
    // is retried from a fresh read, as the delete that follows does.
    for attempt in 1..=MAX_ATTEMPTS {
        let Some(kv) = store.get(&key).await? else {
            return Ok(());
        };
        let mut current = object::from_store(&kv)?;
        let mut meta = object::meta(&current)?;
        let Some(finalizers) = meta.finalizers.as_mut() else {
            return Ok(());
        };
        let before = finalizers.len();
        finalizers.retain(|finalizer| finalizer != DEPLOYMENT_FINALIZER);
        if finalizers.len() == before {
            return Ok(());
        }
        object::set_meta(&mut current, &meta)?;
        match store
            .update(&key, object::to_store(&current)?, kv.mod_revision, kv.lease)
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(deployment = %request.name(), attempt, "dropping the finalizer lost a race; retrying");
            }
            Err(error) => {
                return Err(ApiError::from_store(
                    error,
                    request.target.kind,
                    request.name(),
                ));
            }
        }
    }
    Ok(())
}

async fn refuse_if_locked(
    request: &ResourceRequest,
    kind: &'static KindDef,
    current: &Value,
) -> Result<(), ApiError> {
    let running = running_deployments(request, current).await?;
    if running.is_empty() {
        return Ok(());
    }
    let name = object::name(current).to_owned();
    tracing::info!(app = %name, deployments = ?running, "change refused: app locked by deployments");
    Err(ApiError::Conflict {
        kind,
        name,
        detail: format!(
            "App is locked by one or more deployments: {}. Wait for them to finish, or retry \
             with ?force=true to cancel them",
            running.join(", ")
        ),
    })
}

/// The names of the running Deployments that touch the App `current`.
pub async fn running_deployments(
    request: &ResourceRequest,
    current: &Value,
) -> Result<Vec<String>, ApiError> {
    let app: App = serde_json::from_value(current.clone())
        .map_err(|error| ApiError::Internal(format!("decode stored App: {error}")))?;
    let namespace = app.metadata.namespace_str().to_owned();
    let name = app.metadata.name_str().to_owned();
    let Some(deployments) = kinds::find_kind("Deployment") else {
        return Ok(Vec::new());
    };
    let mut running = Vec::new();
    for candidate in app.status.iter().flat_map(|status| &status.deployments) {
        let Some(kv) = request
            .state
            .store
            .get(&deployments.key(None, candidate))
            .await?
        else {
            continue;
        };
        let Ok(deployment) = serde_json::from_slice::<Deployment>(&kv.value) else {
            continue;
        };
        if deployment.phase().is_active() && deployment.touches(&namespace, &name) {
            running.push(candidate.clone());
        }
    }
    Ok(running)
}
