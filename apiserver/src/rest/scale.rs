//! The `/scale` subresource (autoscaling/v1 `Scale`) of Apps: GET reads `spec.instances` as
//! `spec.replicas` (with `status.replicas` and the instances' label selector as a string), PUT
//! and merge/JSON PATCH write `spec.replicas` back into the App's `spec.instances` through the
//! same compare-and-swap update as every other write (so the App's `resourceVersion` and
//! `generation` move, and watchers of Apps see a MODIFIED event).

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use pacer_schemas::field_error::{FieldError, FieldPath};
use pacer_schemas::{App, Scale};
use serde_json::Value;

use crate::body;
use crate::error::ApiError;
use crate::kinds::{KindDef, ScaleDef};
use crate::object;
use crate::rest::write::{apply_patch, guaranteed_update, reject_apply};
use crate::rest::{ResourceRequest, Subresource, json_response};

/// The scale subresource of Apps.
pub const APP_SCALE: ScaleDef = ScaleDef {
    to_scale: app_to_scale,
    set_replicas: app_set_replicas,
};

/// `GET …/{name}/scale`.
pub async fn get(request: ResourceRequest) -> Result<Response, ApiError> {
    let (kind, scale) = scale_of(&request)?;
    let kv = request
        .state
        .store
        .get(&request.key())
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind,
            name: request.name().to_owned(),
        })?;
    let object = object::from_store(&kv)?;
    Ok(json_response(
        StatusCode::OK,
        &(scale.to_scale)(&object)?,
        &[],
    ))
}

/// `PUT …/{name}/scale`: sets the replicas; `metadata.resourceVersion`, when given, is a
/// precondition.
pub async fn update(request: ResourceRequest, payload: Body) -> Result<Response, ApiError> {
    let (kind, scale) = scale_of(&request)?;
    let format = body::body_format(&request.headers)?;
    let limit = request.state.config.max_body_bytes;
    let input = body::parse_object(&body::read(payload, limit).await?, format)?;
    let wanted = decode_scale(&input)?;
    if let Some(name) = wanted.metadata.name.as_deref()
        && !name.is_empty()
        && name != request.name()
    {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            request.name()
        )));
    }
    let replicas = replicas(kind, request.name(), &wanted)?;
    let precondition = wanted
        .metadata
        .resource_version
        .clone()
        .filter(|version| !version.is_empty());
    let retry = precondition.is_none();
    let written = guaranteed_update(&request, Subresource::Scale, retry, |current| {
        let mut object = current.clone();
        if let Some(version) = &precondition {
            object["metadata"]["resourceVersion"] = Value::String(version.clone());
        }
        (scale.set_replicas)(&mut object, replicas)?;
        Ok(object)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &(scale.to_scale)(&written.object)?,
        &written.warnings,
    ))
}

/// `PATCH …/{name}/scale`: a merge or JSON patch of the `Scale` (what `kubectl scale` sends).
pub async fn patch(request: ResourceRequest, payload: Body) -> Result<Response, ApiError> {
    let (kind, scale) = scale_of(&request)?;
    let patch_type = body::patch_type(&request.headers)?;
    reject_apply(patch_type)?;
    let limit = request.state.config.max_body_bytes;
    let patch = body::parse(&body::read(payload, limit).await?, body::BodyFormat::Json)?;
    let name = request.name().to_owned();
    let written = guaranteed_update(&request, Subresource::Scale, true, |current| {
        let view = (scale.to_scale)(current)?;
        let patched = apply_patch(patch_type, &view, &patch)?;
        let wanted = decode_scale(&patched)?;
        let replicas = replicas(kind, &name, &wanted)?;
        let mut object = current.clone();
        if let Some(version) = wanted.metadata.resource_version.filter(|v| !v.is_empty()) {
            object["metadata"]["resourceVersion"] = Value::String(version);
        }
        (scale.set_replicas)(&mut object, replicas)?;
        Ok(object)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &(scale.to_scale)(&written.object)?,
        &written.warnings,
    ))
}

fn scale_of(request: &ResourceRequest) -> Result<(&'static KindDef, &'static ScaleDef), ApiError> {
    let kind = request.target.kind;
    let scale = kind.scale.as_ref().ok_or(ApiError::RouteNotFound)?;
    Ok((kind, scale))
}

fn decode_scale(value: &Value) -> Result<Scale, ApiError> {
    serde_json::from_value(value.clone())
        .map_err(|error| ApiError::BadRequest(format!("invalid Scale: {error}")))
}

fn replicas(kind: &'static KindDef, name: &str, scale: &Scale) -> Result<i32, ApiError> {
    let path = FieldPath::new("spec").child("replicas");
    match scale.spec.replicas {
        Some(replicas) if replicas >= 0 => Ok(replicas),
        Some(replicas) => Err(ApiError::Invalid {
            kind,
            name: name.to_owned(),
            errors: vec![FieldError::invalid(
                &path,
                replicas,
                "must be greater than or equal to 0",
            )],
        }),
        None => Err(ApiError::Invalid {
            kind,
            name: name.to_owned(),
            errors: vec![FieldError::required(&path, "")],
        }),
    }
}

fn app_to_scale(object: &Value) -> Result<Value, ApiError> {
    let app: App = serde_json::from_value(object.clone())
        .map_err(|error| ApiError::Internal(format!("decode stored App: {error}")))?;
    serde_json::to_value(Scale::from_app(&app))
        .map_err(|error| ApiError::Internal(format!("encode Scale: {error}")))
}

fn app_set_replicas(object: &mut Value, replicas: i32) -> Result<(), ApiError> {
    let root = object
        .as_object_mut()
        .ok_or_else(|| ApiError::Internal("stored App is not an object".to_owned()))?;
    let spec = root
        .entry("spec")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let spec = spec
        .as_object_mut()
        .ok_or_else(|| ApiError::Internal("stored App spec is not an object".to_owned()))?;
    spec.insert("instances".to_owned(), Value::from(replicas));
    Ok(())
}
