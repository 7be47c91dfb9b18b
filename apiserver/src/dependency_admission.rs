//! Admission of App dependencies: a write of an App whose `spec.dependencies` would close a
//! dependency cycle among the Apps stored (in any namespace — dependencies cross groups) is
//! refused with 422 on `spec.dependencies`, naming the cycle; such a cycle would stall every
//! deployment that orders by dependencies. The cycle search is
//! `pacer_schemas::dependency::cycle_through` (pure); this module reads the stored Apps.
//!
//! A cycle can only pass through the written App by one of its own dependencies, so a write
//! whose dependencies are empty or unchanged is admitted without reading anything. Two racing
//! writes that close a cycle together can still both pass; the deployment controller then
//! fails their Deployments (it checks cycles too).

use pacer_schemas::App;
use pacer_schemas::dependency::{cycle_text, cycle_through};
use pacer_schemas::field_error::{FieldError, FieldPath};
use serde_json::Value;

use crate::error::ApiError;
use crate::kinds::KindDef;
use crate::rest::{ResourceRequest, Subresource, delete};

/// Refuses (422) the App `new` (about to be stored; `current` is the stored one on update)
/// when its dependencies close a cycle with the stored Apps.
pub async fn check(
    request: &ResourceRequest,
    kind: &'static KindDef,
    current: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    if kind.kind != "App" || request.target.sub == Subresource::Status {
        return Ok(());
    }
    let dependencies = |object: &Value| {
        object
            .pointer("/spec/dependencies")
            .filter(|value| value.as_array().is_some_and(|list| !list.is_empty()))
            .cloned()
    };
    let Some(wanted) = dependencies(new) else {
        return Ok(());
    };
    if current.is_some_and(|current| dependencies(current).as_ref() == Some(&wanted)) {
        return Ok(());
    }
    let app: App = serde_json::from_value(new.clone())
        .map_err(|error| ApiError::Internal(format!("decode admitted App: {error}")))?;
    let namespace = app.metadata.namespace_str().to_owned();
    let name = app.metadata.name_str().to_owned();
    let (stored, _) = delete::list_all(&request.state, kind, None, |_| true).await?;
    let mut apps: Vec<App> = stored
        .into_iter()
        .filter_map(|value| serde_json::from_value::<App>(value).ok())
        .filter(|other| {
            other.metadata.namespace_str() != namespace || other.metadata.name_str() != name
        })
        .collect();
    apps.push(app);
    let Some(cycle) = cycle_through(&apps, &namespace, &name) else {
        return Ok(());
    };
    let text = cycle_text(&cycle);
    tracing::info!(app = %name, namespace = %namespace, cycle = %text, "refused: dependency cycle");
    Err(ApiError::Invalid {
        kind,
        name,
        errors: vec![FieldError::invalid(
            &FieldPath::new("spec").child("dependencies"),
            wanted,
            format!("dependency cycle: {text}"),
        )],
    })
}
