//! DELETE of one object and of a collection (`deletecollection`), with `DeleteOptions`
//! (preconditions on `uid`/`resourceVersion`, `propagationPolicy`, `dryRun`), finalizers, and
//! the cascade to owned objects.
//!
//! Finalizers: deleting an object whose `metadata.finalizers` is non-empty only sets
//! `deletionTimestamp` (a MODIFIED event); the object goes once an update empties the list
//! (see `write::guaranteed_update`).
//!
//! Cascade: deleting an App deletes, in the same request and after the App itself, every
//! Instance and AppVersion in its namespace whose `ownerReferences` name the App's uid (each by
//! the same rules, so an Instance with finalizers is only marked). `propagationPolicy=Orphan` skips it. A
//! failure to delete a dependent is logged and does not fail the request: a garbage collector
//! (a later issue) must sweep dependents whose owner uid no longer exists.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use pacer_store::{ListOptions, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body;
use crate::error::ApiError;
use crate::kinds::{self, KindDef};
use crate::object;
use crate::rest::{ResourceRequest, json_response};
use crate::selector::Selectors;
use crate::state::ApiState;

/// Owner kind → plural of the kinds it owns (cascade on delete).
const OWNED: &[(&str, &str)] = &[("App", "instances"), ("App", "appversions")];

/// How many times a delete retries after losing a compare-and-swap race.
pub(crate) const MAX_ATTEMPTS: usize = 8;

/// The body of a DELETE (Kubernetes' `DeleteOptions`); unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteOptions {
    /// Conditions the object must meet to be deleted.
    #[serde(default)]
    pub preconditions: Option<Preconditions>,
    /// `Orphan`, `Background` or `Foreground` (the last two both cascade here).
    #[serde(default)]
    pub propagation_policy: Option<String>,
    /// `["All"]` for a dry run.
    #[serde(default)]
    pub dry_run: Option<Vec<String>>,
    /// Deprecated form of `propagationPolicy=Orphan`.
    #[serde(default)]
    pub orphan_dependents: Option<bool>,
}

/// Preconditions of a delete.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preconditions {
    /// The object's uid must be this.
    #[serde(default)]
    pub uid: Option<String>,
    /// The object's resourceVersion must be this.
    #[serde(default)]
    pub resource_version: Option<String>,
}

/// What deleting one object did.
#[derive(Debug)]
struct Deleted {
    /// The object: its last state, or with `deletionTimestamp` set when finalizers remain.
    object: Value,
    /// Whether it is gone from the store (false: marked for deletion, or dry run).
    gone: bool,
}

/// `DELETE …/{name}`: deletes the object (200 with its last state).
pub async fn delete(request: ResourceRequest, payload: Body) -> Result<Response, ApiError> {
    let options = read_options(&request, payload).await?;
    crate::deployment_lock::before_delete(&request).await?;
    let dry_run =
        request.params.dry_run || options.dry_run.iter().flatten().any(|mode| mode == "All");
    let orphan = orphans(&request, &options);
    let kind = request.target.kind;
    let namespace = request.target.namespace.as_deref();
    let deleted = delete_object(
        &request.state,
        kind,
        namespace,
        request.name(),
        options.preconditions.as_ref(),
        dry_run,
    )
    .await?;
    if deleted.gone && !orphan {
        cascade_from(
            &request.state,
            kind,
            namespace,
            object::uid(&deleted.object),
        )
        .await;
    }
    Ok(json_response(StatusCode::OK, &deleted.object, &[]))
}

/// `DELETE …/{plural}`: deletes every object of the collection that matches the selectors;
/// answers the list of deleted (or marked) objects.
pub async fn delete_collection(
    request: ResourceRequest,
    payload: Body,
) -> Result<Response, ApiError> {
    let options = read_options(&request, payload).await?;
    let dry_run =
        request.params.dry_run || options.dry_run.iter().flatten().any(|mode| mode == "All");
    let orphan = orphans(&request, &options);
    let kind = request.target.kind;
    let namespace = request.target.namespace.as_deref();
    let selectors = Selectors {
        labels: request.params.label_selector.clone(),
        fields: request.params.field_selector.clone(),
    };
    let (matching, revision) = list_all(&request.state, kind, namespace, |item| {
        selectors.matches(item)
    })
    .await?;
    let mut items = Vec::with_capacity(matching.len());
    for item in matching {
        let name = object::name(&item).to_owned();
        let item_namespace = item
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match delete_object(
            &request.state,
            kind,
            item_namespace.as_deref(),
            &name,
            None,
            dry_run,
        )
        .await
        {
            Ok(deleted) => {
                if deleted.gone && !orphan {
                    cascade_from(
                        &request.state,
                        kind,
                        item_namespace.as_deref(),
                        object::uid(&deleted.object),
                    )
                    .await;
                }
                items.push(deleted.object);
            }
            Err(ApiError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    let list = json!({
        "apiVersion": pacer_schemas::API_VERSION,
        "kind": kind.list_kind,
        "metadata": {"resourceVersion": revision.to_string()},
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &list, &[]))
}

/// Deletes what the object addressed by `request` owns (after a finalized delete).
pub async fn cascade(request: &ResourceRequest, owner_uid: &str) {
    cascade_from(
        &request.state,
        request.target.kind,
        request.target.namespace.as_deref(),
        owner_uid,
    )
    .await;
}

async fn cascade_from(state: &ApiState, owner: &KindDef, namespace: Option<&str>, owner_uid: &str) {
    if owner_uid.is_empty() {
        return;
    }
    for (_, plural) in OWNED.iter().filter(|(kind, _)| *kind == owner.kind) {
        let Some(dependent) = kinds::find(plural) else {
            continue;
        };
        let owned = |item: &Value| {
            item.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|owners| {
                    owners.iter().any(|reference| {
                        reference.get("uid").and_then(Value::as_str) == Some(owner_uid)
                    })
                })
        };
        let (dependents, _) = match list_all(state, dependent, namespace, owned).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, dependent = dependent.plural, "cascade: listing dependents failed");
                continue;
            }
        };
        for item in dependents {
            let name = object::name(&item);
            match delete_object(state, dependent, namespace, name, None, false).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => {
                    tracing::debug!(dependent = dependent.kind, name, "cascade: deleted");
                }
                Err(error) => {
                    tracing::warn!(%error, dependent = dependent.kind, name, "cascade: delete failed");
                }
            }
        }
    }
}

/// Deletes one object by the finalizer and precondition rules.
async fn delete_object(
    state: &ApiState,
    kind: &'static KindDef,
    namespace: Option<&str>,
    name: &str,
    preconditions: Option<&Preconditions>,
    dry_run: bool,
) -> Result<Deleted, ApiError> {
    let key = kind.key(namespace, name);
    let store = &state.store;
    for attempt in 1..=MAX_ATTEMPTS {
        let kv = store.get(&key).await?.ok_or_else(|| ApiError::NotFound {
            kind,
            name: name.to_owned(),
        })?;
        let current = object::from_store(&kv)?;
        let mut meta = object::meta(&current)?;
        check_preconditions(kind, name, preconditions, &meta, kv.mod_revision)?;
        let has_finalizers = meta
            .finalizers
            .as_ref()
            .is_some_and(|list| !list.is_empty());
        let outcome = if has_finalizers {
            if meta.deletion_timestamp.is_some() {
                return Ok(Deleted {
                    object: current,
                    gone: false,
                });
            }
            meta.deletion_timestamp = Some(object::now());
            meta.deletion_grace_period_seconds = Some(0);
            meta.generation = Some(meta.generation.unwrap_or(0) + 1);
            let mut marked = current.clone();
            object::set_meta(&mut marked, &meta)?;
            if dry_run {
                return Ok(Deleted {
                    object: marked,
                    gone: false,
                });
            }
            let stored = object::to_store(&marked)?;
            store
                .update(&key, stored, kv.mod_revision, kv.lease)
                .await
                .map(|revision| {
                    object::set_resource_version(&mut marked, revision);
                    tracing::info!(revision, "marked for deletion (finalizers pending)");
                    Deleted {
                        object: marked,
                        gone: false,
                    }
                })
        } else if dry_run {
            return Ok(Deleted {
                object: current,
                gone: false,
            });
        } else {
            store.delete(&key, kv.mod_revision).await.map(|revision| {
                tracing::info!(revision, "deleted");
                Deleted {
                    object: current,
                    gone: true,
                }
            })
        };
        match outcome {
            Ok(deleted) => return Ok(deleted),
            Err(StoreError::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(attempt, "lost a delete race; retrying");
            }
            Err(error) => return Err(ApiError::from_store(error, kind, name)),
        }
    }
    Err(ApiError::stale(kind, name))
}

fn check_preconditions(
    kind: &'static KindDef,
    name: &str,
    preconditions: Option<&Preconditions>,
    meta: &pacer_schemas::ObjectMeta,
    revision: pacer_store::Revision,
) -> Result<(), ApiError> {
    let Some(preconditions) = preconditions else {
        return Ok(());
    };
    if let Some(uid) = preconditions.uid.as_deref().filter(|uid| !uid.is_empty())
        && Some(uid) != meta.uid.as_deref()
    {
        return Err(ApiError::Conflict {
            kind,
            name: name.to_owned(),
            detail: format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta.uid.as_deref().unwrap_or("")
            ),
        });
    }
    if let Some(version) = preconditions
        .resource_version
        .as_deref()
        .filter(|version| !version.is_empty())
        && version != revision.to_string()
    {
        return Err(ApiError::Conflict {
            kind,
            name: name.to_owned(),
            detail: format!(
                "Precondition failed: ResourceVersion in precondition: {version}, ResourceVersion in meta: {revision}"
            ),
        });
    }
    Ok(())
}

/// Every object of a collection (all pages, at one revision) that passes `keep`.
pub(crate) async fn list_all(
    state: &ApiState,
    kind: &KindDef,
    namespace: Option<&str>,
    keep: impl Fn(&Value) -> bool,
) -> Result<(Vec<Value>, pacer_store::Revision), ApiError> {
    let prefix = kind.prefix(namespace);
    let mut options = ListOptions {
        limit: state.config.internal_page_size,
        ..ListOptions::default()
    };
    let mut kept = Vec::new();
    loop {
        let page = state.store.list(&prefix, &options).await?;
        for kv in &page.items {
            let item = object::from_store(kv)?;
            if keep(&item) {
                kept.push(item);
            }
        }
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => return Ok((kept, page.revision)),
        }
    }
}

async fn read_options(request: &ResourceRequest, payload: Body) -> Result<DeleteOptions, ApiError> {
    let limit = request.state.config.max_body_bytes;
    let bytes = body::read(payload, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DeleteOptions::default());
    }
    let format = body::body_format(&request.headers)?;
    let value = body::parse_object(&bytes, format)?;
    serde_json::from_value(value)
        .map_err(|error| ApiError::BadRequest(format!("invalid DeleteOptions: {error}")))
}

fn orphans(request: &ResourceRequest, options: &DeleteOptions) -> bool {
    let policy = options
        .propagation_policy
        .as_deref()
        .or(request.params.propagation_policy.as_deref());
    policy == Some("Orphan") || options.orphan_dependents == Some(true)
}
