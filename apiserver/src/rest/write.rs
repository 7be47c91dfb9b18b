//! Writes: POST (create), PUT (update) and PATCH (merge patch, JSON patch), on the object and on
//! its `/status` subresource, all through one read-modify-write loop ([`guaranteed_update`])
//! that is a compare-and-swap on the object's `mod_revision`.
//!
//! Rules (Kubernetes' custom-resource semantics):
//! - the server owns `uid`, `creationTimestamp`, `generation`, `resourceVersion` and the
//!   deletion fields; `name`, `namespace` and `uid` never change;
//! - `generation` is 1 on create and bumps only when `spec` changes (for Event, which has no
//!   spec, when anything outside `metadata` changes);
//! - with a `status` subresource, create drops `status`, main-resource writes keep the stored
//!   status, and `/status` writes change only `status`;
//! - PUT needs `metadata.resourceVersion` (422 without it, 409 when stale); PATCH without one
//!   retries internally when another writer wins;
//! - an update that changes nothing writes nothing (same `resourceVersion`);
//! - once an object has a `deletionTimestamp`, removing its last finalizer deletes it;
//! - `dryRun=All` runs every step but the store write;
//! - every write records field ownership in `metadata.managedFields` (see `managed`): an
//!   `Update` entry for the request's field manager, or — for server-side apply
//!   ([`server_side_apply`]) — an `Apply` entry, with conflicts on fields others own.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use pacer_schemas::field_error::{FieldError, FieldPath};
use pacer_schemas::meta::ManagedFieldsEntry;
use pacer_store::StoreError;
use serde_json::Value;

use crate::body::{self, PatchType};
use crate::error::ApiError;
use crate::kinds::KindDef;
use crate::managed;
use crate::object;
use crate::rest::{ResourceRequest, Subresource, delete, json_response};

/// How many times a write retries after losing a compare-and-swap race.
const MAX_ATTEMPTS: usize = 8;

/// How many names a `generateName` create tries before giving up.
const GENERATE_NAME_ATTEMPTS: usize = 5;

/// The result of a successful write.
#[derive(Debug)]
pub struct Written {
    /// The object as stored (or as it would be, under dry run), with its `resourceVersion`.
    pub object: Value,
    /// Warnings for the client.
    pub warnings: Vec<String>,
}

/// `POST …/{plural}`: creates an object (201).
pub async fn create(request: ResourceRequest, payload: Body) -> Result<Response, ApiError> {
    let format = body::body_format(&request.headers)?;
    let limit = request.state.config.max_body_bytes;
    let bytes = body::read(payload, limit).await?;
    let input = body::parse_object(&bytes, format)?;
    let created = create_value(&request, input, None).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &created.object,
        &created.warnings,
    ))
}

/// Creates `input` in the collection (or under the URL's name, for apply). Ownership: the
/// given `managed` entries (server-side apply), or an `Update` entry of the request's field
/// manager for every field set.
pub async fn create_value(
    request: &ResourceRequest,
    mut input: Value,
    managed: Option<Vec<ManagedFieldsEntry>>,
) -> Result<Written, ApiError> {
    let kind = request.target.kind;
    let validation = request.field_validation();
    let dry_run = request.params.dry_run;
    let namespace = request.target.namespace.clone();
    check_type_meta(kind, &input)?;
    let mut meta = object::meta(&input)?;
    meta.namespace = checked_namespace(kind, namespace.as_deref(), meta.namespace.as_deref())?;
    meta.uid = Some(uuid::Uuid::new_v4().to_string());
    meta.creation_timestamp = Some(object::now());
    meta.generation = Some(1);
    meta.resource_version = None;
    meta.deletion_timestamp = None;
    meta.deletion_grace_period_seconds = None;
    let generate = meta
        .name
        .as_deref()
        .is_none_or(str::is_empty)
        .then(|| meta.generate_name.clone())
        .flatten()
        .filter(|prefix| !prefix.is_empty());
    if kind.status_subresource
        && let Some(root) = input.as_object_mut()
    {
        root.remove("status");
    }
    let attempts = if generate.is_some() {
        GENERATE_NAME_ATTEMPTS
    } else {
        1
    };
    for attempt in 1..=attempts {
        if let Some(prefix) = &generate {
            meta.name = Some(generated_name(prefix));
        }
        let mut candidate = input.clone();
        object::set_meta(&mut candidate, &meta)?;
        // A creator owns the fields it sent, not the defaults the server filled in.
        let entries = match &managed {
            Some(entries) => entries.clone(),
            None => {
                managed::record_update(&[], None, &candidate, &request.manager(request.target.sub))
            }
        };
        let mut admitted = kind.admit(candidate, None, validation)?;
        crate::dependency_admission::check(request, kind, None, &admitted.object).await?;
        managed::set_entries(&mut admitted.object, &entries)
            .map_err(|error| ApiError::Internal(format!("encode managedFields: {error}")))?;
        let name = object::name(&admitted.object).to_owned();
        if dry_run {
            return Ok(Written {
                object: admitted.object,
                warnings: admitted.warnings,
            });
        }
        let key = kind.key(namespace.as_deref(), &name);
        let stored = object::to_store(&admitted.object)?;
        match request.state.store.create(&key, stored, None).await {
            Ok(revision) => {
                let mut created = admitted.object;
                object::set_resource_version(&mut created, revision);
                tracing::info!(revision, "created");
                return Ok(Written {
                    object: created,
                    warnings: admitted.warnings,
                });
            }
            Err(StoreError::AlreadyExists { .. }) if attempt < attempts => {}
            Err(error) => return Err(ApiError::from_store(error, kind, &name)),
        }
    }
    Err(ApiError::Internal(
        "generateName: no free name found".to_owned(),
    ))
}

/// `PUT …/{name}` and `…/{name}/status`: replaces the object (or its status).
pub async fn update(request: ResourceRequest, payload: Body) -> Result<Response, ApiError> {
    let kind = request.target.kind;
    let format = body::body_format(&request.headers)?;
    let limit = request.state.config.max_body_bytes;
    let name = request.name().to_owned();
    let mut input = body::parse_object(&body::read(payload, limit).await?, format)?;
    check_type_meta(kind, &input)?;
    let mut meta = object::meta(&input)?;
    match meta.name.as_deref() {
        None | Some("") => meta.name = Some(name.clone()),
        Some(body_name) if body_name != name => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        Some(_) => {}
    }
    meta.namespace = checked_namespace(
        kind,
        request.target.namespace.as_deref(),
        meta.namespace.as_deref(),
    )?;
    if meta.resource_version.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::Invalid {
            kind,
            name,
            errors: vec![FieldError::invalid(
                &FieldPath::new("metadata").child("resourceVersion"),
                "",
                "must be specified for an update",
            )],
        });
    }
    object::set_meta(&mut input, &meta)?;
    let written =
        guaranteed_update(&request, request.target.sub, false, |_| Ok(input.clone())).await?;
    Ok(json_response(
        StatusCode::OK,
        &written.object,
        &written.warnings,
    ))
}

/// `PATCH …/{name}` and `…/{name}/status`: merge patch or JSON patch, retried on conflict.
pub async fn patch(request: ResourceRequest, payload: Body) -> Result<Response, ApiError> {
    let patch_type = body::patch_type(&request.headers)?;
    if patch_type == PatchType::Apply {
        return server_side_apply(request, payload).await;
    }
    let limit = request.state.config.max_body_bytes;
    let patch = body::parse(&body::read(payload, limit).await?, body::BodyFormat::Json)?;
    let written = guaranteed_update(&request, request.target.sub, true, |current| {
        apply_patch(patch_type, current, &patch)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &written.object,
        &written.warnings,
    ))
}

/// `PATCH` with `application/apply-patch+yaml`: server-side apply (upsert). Needs
/// `fieldManager`; `force=true` takes the conflicting fields from their owners. 201 when it
/// created the object, 200 otherwise; 409 `Conflict` with one `FieldManagerConflict` cause per
/// field another manager owns. See `managed` for the merge and ownership rules.
pub async fn server_side_apply(
    request: ResourceRequest,
    payload: Body,
) -> Result<Response, ApiError> {
    let kind = request.target.kind;
    let sub = request.target.sub;
    let Some(manager_name) = request.params.field_manager.clone() else {
        return Err(ApiError::BadRequest(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is \
             required for apply patch"
                .to_owned(),
        ));
    };
    let limit = request.state.config.max_body_bytes;
    let mut applied =
        body::parse_object(&body::read(payload, limit).await?, body::BodyFormat::Yaml)?;
    check_type_meta(kind, &applied)?;
    for field in ["apiVersion", "kind"] {
        if applied
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::BadRequest(format!(
                "{field} must be set in an applied configuration"
            )));
        }
    }
    let name = request.name().to_owned();
    match applied.pointer("/metadata/name").and_then(Value::as_str) {
        Some(body_name) if !body_name.is_empty() && body_name != name => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    if let Some(metadata) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
        metadata.insert("name".to_owned(), Value::String(name.clone()));
    } else if let Some(root) = applied.as_object_mut() {
        root.insert("metadata".to_owned(), serde_json::json!({ "name": name }));
    }
    let mut manager = request.manager(sub);
    manager.name = &manager_name;
    let force = request.params.force;
    let conflict = |conflicts| ApiError::ApplyConflict {
        kind,
        name: name.clone(),
        conflicts,
    };
    tracing::debug!(manager = %manager_name, force, "server-side apply");
    for attempt in 1..=MAX_ATTEMPTS {
        let exists = request.state.store.get(&request.key()).await?.is_some();
        if !exists {
            if sub != Subresource::Main {
                return Err(ApiError::NotFound { kind, name });
            }
            let (merged, entries) =
                managed::apply(None, &[], &applied, &manager, force).map_err(conflict)?;
            match create_value(&request, merged, Some(entries)).await {
                Err(ApiError::AlreadyExists { .. }) if attempt < MAX_ATTEMPTS => continue,
                Err(error) => return Err(error),
                Ok(created) => {
                    return Ok(json_response(
                        StatusCode::CREATED,
                        &created.object,
                        &created.warnings,
                    ));
                }
            }
        }
        let outcome = guaranteed_update_as(&request, sub, true, Operation::Apply, |current| {
            let entries = managed::entries_of(current);
            let (mut merged, entries) =
                managed::apply(Some(current), &entries, &applied, &manager, force)
                    .map_err(conflict)?;
            managed::set_entries(&mut merged, &entries)
                .map_err(|error| ApiError::Internal(format!("encode managedFields: {error}")))?;
            Ok(merged)
        })
        .await;
        match outcome {
            Err(ApiError::NotFound { .. }) if attempt < MAX_ATTEMPTS => {}
            Err(error) => return Err(error),
            Ok(written) => {
                return Ok(json_response(
                    StatusCode::OK,
                    &written.object,
                    &written.warnings,
                ));
            }
        }
    }
    Err(ApiError::stale(kind, &name))
}

/// Rejects server-side apply where it has no meaning (the `/scale` subresource): 415, which
/// kubectl reports as "server-side apply not available".
pub fn reject_apply(patch_type: PatchType) -> Result<(), ApiError> {
    if patch_type == PatchType::Apply {
        return Err(ApiError::UnsupportedMediaType {
            message: "server-side apply (application/apply-patch+yaml) is not supported on \
                      this subresource; apply the object itself"
                .to_owned(),
        });
    }
    Ok(())
}

/// How a write is recorded in `metadata.managedFields`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Any write but apply: the server records an `Update` entry for the field manager.
    Update,
    /// Server-side apply: the desired object already carries its managed fields.
    Apply,
}

/// Applies a merge patch or a JSON patch to a copy of `current`.
pub fn apply_patch(
    patch_type: PatchType,
    current: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    let mut document = current.clone();
    match patch_type {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "a merge patch must be a JSON object".to_owned(),
                ));
            }
            json_patch::merge(&mut document, patch);
        }
        PatchType::Json => {
            let operations: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|error| ApiError::BadRequest(format!("invalid JSON patch: {error}")))?;
            json_patch::patch(&mut document, &operations).map_err(|error| {
                ApiError::BadRequest(format!("the JSON patch could not be applied: {error}"))
            })?;
        }
        PatchType::Apply => reject_apply(patch_type)?,
    }
    Ok(document)
}

/// Read-modify-write of the addressed object: reads it, asks `desired_from` for the new state,
/// applies the server's rules for `sub`, admits (decode, default, validate) and writes it as a
/// compare-and-swap on the revision read. A `metadata.resourceVersion` in the desired state is
/// a precondition (409 when stale). With `retry`, losing the race re-reads and tries again.
pub async fn guaranteed_update<F>(
    request: &ResourceRequest,
    sub: Subresource,
    retry: bool,
    desired_from: F,
) -> Result<Written, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    guaranteed_update_as(request, sub, retry, Operation::Update, desired_from).await
}

/// [`guaranteed_update`], recording ownership as `operation`.
pub async fn guaranteed_update_as<F>(
    request: &ResourceRequest,
    sub: Subresource,
    retry: bool,
    operation: Operation,
    mut desired_from: F,
) -> Result<Written, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let kind = request.target.kind;
    let name = request.name();
    let key = request.key();
    let store = &request.state.store;
    let validation = request.field_validation();
    for attempt in 1..=MAX_ATTEMPTS {
        let kv = store.get(&key).await?.ok_or_else(|| ApiError::NotFound {
            kind,
            name: name.to_owned(),
        })?;
        let current = object::from_store(&kv)?;
        let desired = desired_from(&current)?;
        if let Some(version) = object::resource_version(&desired)
            && version != kv.mod_revision.to_string()
        {
            return Err(ApiError::stale(kind, name));
        }
        let prepared = prepare_update(request, sub, &current, desired)?;
        let admitted = kind.admit(prepared, Some(&current), validation)?;
        let mut new = admitted.object;
        crate::deployment_lock::check_update(request, &current, &new).await?;
        crate::dependency_admission::check(request, kind, Some(&current), &new).await?;
        bump_generation(kind, &current, &mut new)?;
        let entries = match operation {
            Operation::Apply => managed::entries_of(&new),
            Operation::Update => managed::record_update(
                &managed::entries_of(&current),
                Some(&current),
                &new,
                &request.manager(sub),
            ),
        };
        managed::set_entries(&mut new, &entries)
            .map_err(|error| ApiError::Internal(format!("encode managedFields: {error}")))?;
        let outcome = if finalized(&new)? {
            if request.params.dry_run {
                object::set_resource_version(&mut new, kv.mod_revision);
                return Ok(Written {
                    object: new,
                    warnings: admitted.warnings,
                });
            }
            store.delete(&key, kv.mod_revision).await.map(|revision| {
                tracing::info!(revision, "finalizers done: deleted");
                (revision, true)
            })
        } else if object::same_ignoring_version(&new, &current) {
            return Ok(Written {
                object: current,
                warnings: admitted.warnings,
            });
        } else if request.params.dry_run {
            object::set_resource_version(&mut new, kv.mod_revision);
            return Ok(Written {
                object: new,
                warnings: admitted.warnings,
            });
        } else {
            let stored = object::to_store(&new)?;
            // A Lease whose holder changes starts a new fencing term in the same transaction.
            crate::fence::update(store.as_ref(), kind, &key, &current, &new, stored, &kv)
                .await
                .map(|revision| (revision, false))
        };
        match outcome {
            Ok((revision, deleted)) => {
                object::set_resource_version(&mut new, revision);
                if deleted {
                    delete::cascade(request, object::uid(&new)).await;
                }
                return Ok(Written {
                    object: new,
                    warnings: admitted.warnings,
                });
            }
            Err(StoreError::Conflict { .. }) if retry && attempt < MAX_ATTEMPTS => {
                tracing::debug!(attempt, "lost a write race; retrying");
            }
            Err(error) => return Err(ApiError::from_store(error, kind, name)),
        }
    }
    Err(ApiError::stale(kind, name))
}

/// Builds the object to admit from the stored one and the desired one, by the subresource's
/// rules: the server's fields come from the stored object, the status from the stored object
/// (main resource) or everything but the status does (`/status`).
fn prepare_update(
    request: &ResourceRequest,
    sub: Subresource,
    current: &Value,
    desired: Value,
) -> Result<Value, ApiError> {
    let kind = request.target.kind;
    if sub == Subresource::Status {
        let mut new = current.clone();
        if let Some(root) = new.as_object_mut() {
            match desired.get("status") {
                Some(status) if !status.is_null() => {
                    root.insert("status".to_owned(), status.clone());
                }
                _ => {
                    root.remove("status");
                }
            }
        }
        return Ok(new);
    }
    let mut new = desired;
    let old_meta = object::meta(current)?;
    let mut meta = object::meta(&new)?;
    let name = request.name();
    if meta.name.as_deref().unwrap_or(name) != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta.name_str()
        )));
    }
    meta.name = old_meta.name.clone();
    meta.namespace = checked_namespace(
        kind,
        request.target.namespace.as_deref(),
        meta.namespace.as_deref(),
    )?;
    match meta.uid.as_deref() {
        None | Some("") => meta.uid = old_meta.uid.clone(),
        Some(uid) if Some(uid) != old_meta.uid.as_deref() => {
            return Err(ApiError::Invalid {
                kind,
                name: name.to_owned(),
                errors: vec![FieldError::invalid(
                    &FieldPath::new("metadata").child("uid"),
                    uid,
                    "field is immutable",
                )],
            });
        }
        Some(_) => {}
    }
    if old_meta.deletion_timestamp.is_some() {
        let old_finalizers = old_meta.finalizers.clone().unwrap_or_default();
        if let Some(added) = meta
            .finalizers
            .iter()
            .flatten()
            .find(|finalizer| !old_finalizers.contains(finalizer))
        {
            return Err(ApiError::Invalid {
                kind,
                name: name.to_owned(),
                errors: vec![FieldError::forbidden(
                    &FieldPath::new("metadata").child("finalizers"),
                    format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers [\"{added}\"]"
                    ),
                )],
            });
        }
    }
    meta.creation_timestamp = old_meta.creation_timestamp;
    meta.deletion_timestamp = old_meta.deletion_timestamp;
    meta.deletion_grace_period_seconds = old_meta.deletion_grace_period_seconds;
    meta.generation = old_meta.generation;
    meta.resource_version = None;
    object::set_meta(&mut new, &meta)?;
    if kind.status_subresource
        && let Some(root) = new.as_object_mut()
    {
        match current.get("status") {
            Some(status) => {
                root.insert("status".to_owned(), status.clone());
            }
            None => {
                root.remove("status");
            }
        }
    }
    Ok(new)
}

/// Bumps `metadata.generation` when the desired state changed.
fn bump_generation(kind: &KindDef, current: &Value, new: &mut Value) -> Result<(), ApiError> {
    let desired_state = |object: &Value| -> Value {
        if kind.status_subresource {
            object.get("spec").cloned().unwrap_or(Value::Null)
        } else {
            let mut copy = object.clone();
            if let Some(root) = copy.as_object_mut() {
                root.remove("metadata");
            }
            copy
        }
    };
    if desired_state(current) != desired_state(new) {
        let mut meta = object::meta(new)?;
        meta.generation = Some(meta.generation.unwrap_or(0) + 1);
        object::set_meta(new, &meta)?;
    }
    Ok(())
}

/// Whether the object is being deleted and has no finalizer left (so it must go now).
fn finalized(object: &Value) -> Result<bool, ApiError> {
    let meta = object::meta(object)?;
    Ok(meta.deletion_timestamp.is_some() && meta.finalizers.as_ref().is_none_or(Vec::is_empty))
}

/// `apiVersion` and `kind` may be omitted (the server fills them) but must not name another
/// type.
pub fn check_type_meta(kind: &KindDef, object: &Value) -> Result<(), ApiError> {
    if let Some(api_version) = object.get("apiVersion").and_then(Value::as_str)
        && !api_version.is_empty()
        && api_version != pacer_schemas::API_VERSION
    {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            pacer_schemas::API_VERSION
        )));
    }
    if let Some(found) = object.get("kind").and_then(Value::as_str)
        && !found.is_empty()
        && found != kind.kind
    {
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({found}) does not match the expected kind ({})",
            kind.kind
        )));
    }
    Ok(())
}

/// The namespace to store: the URL's; a different one in the body is a 400. Cluster-scoped
/// kinds have none.
fn checked_namespace(
    kind: &KindDef,
    url: Option<&str>,
    body: Option<&str>,
) -> Result<Option<String>, ApiError> {
    if !kind.namespaced {
        return Ok(None);
    }
    match (url, body) {
        (Some(url), Some(body)) if !body.is_empty() && body != url => {
            Err(ApiError::BadRequest(format!(
                "the namespace of the provided object ({body}) does not match the namespace sent on the request ({url})"
            )))
        }
        (url, _) => Ok(url.map(str::to_owned)),
    }
}

/// `prefix` plus five random characters, as Kubernetes' `generateName` does.
fn generated_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..5]
        .iter()
        .map(|byte| char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]))
        .collect();
    format!("{prefix}{suffix}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn patches() {
        let current =
            json!({"spec": {"instances": 1, "cmd": "x"}, "metadata": {"labels": {"a": "1"}}});
        let merged = apply_patch(
            PatchType::Merge,
            &current,
            &json!({"spec": {"instances": 3}, "metadata": {"labels": {"a": null}}}),
        )
        .unwrap();
        assert_eq!(
            merged,
            json!({"spec": {"instances": 3, "cmd": "x"}, "metadata": {"labels": {}}})
        );
        let patched = apply_patch(
            PatchType::Json,
            &current,
            &json!([{"op": "replace", "path": "/spec/instances", "value": 2}]),
        )
        .unwrap();
        assert_eq!(patched["spec"]["instances"], 2);
        assert!(
            apply_patch(
                PatchType::Json,
                &current,
                &json!([{"op": "remove", "path": "/nope"}])
            )
            .is_err()
        );
        assert!(apply_patch(PatchType::Merge, &current, &json!([1])).is_err());
    }

    #[test]
    fn generated_names_keep_the_prefix() {
        let name = generated_name("web-");
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    }
}
