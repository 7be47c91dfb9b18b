//! The resource API under `/apis/pacer.dev/v1/[namespaces/{ns}/]{plural}[/{name}[/{sub}]]`:
//! resolves the URL into a [`Target`] (kind, namespace, name, subresource) through the kinds
//! registry and dispatches on the HTTP method to the verb handlers. Unknown resources and wrong
//! scopes are 404, unsupported verbs 405, both as `Status` objects. A write carrying a
//! `Pacer-Fence` header runs on a fenced store (`crate::fence`).

pub mod delete;
pub mod read;
pub mod scale;
pub mod write;

use std::collections::HashMap;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::ApiError;
use crate::kinds::{self, KindDef};
use crate::managed::{self, Manager};
use crate::params::{FieldValidation, Params};
use crate::state::ApiState;

/// Which part of an object a request addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// The object itself.
    Main,
    /// `/status`: only the status is written.
    Status,
    /// `/scale`: the autoscaling/v1 `Scale` view.
    Scale,
}

/// What a resource URL addresses.
#[derive(Clone, Debug)]
pub struct Target {
    /// The kind.
    pub kind: &'static KindDef,
    /// The namespace from the URL (`None` for cluster-scoped kinds and cluster-wide lists).
    pub namespace: Option<String>,
    /// The object's name (`None` for collections).
    pub name: Option<String>,
    /// The subresource.
    pub sub: Subresource,
}

/// One parsed resource request, handed to the verb handlers (the body travels separately:
/// it is not `Sync`, and handlers hold `&ResourceRequest` across awaits).
#[derive(Debug)]
pub struct ResourceRequest {
    /// Shared server state.
    pub state: ApiState,
    /// What the URL addresses.
    pub target: Target,
    /// Parsed query parameters.
    pub params: Params,
    /// Request headers (content type).
    pub headers: HeaderMap,
    /// The field manager of non-apply writes (see [`Self::manager_name`]).
    pub manager_name: String,
}

impl ResourceRequest {
    /// The `fieldValidation` in force: the query's, or the server default.
    pub fn field_validation(&self) -> FieldValidation {
        self.params
            .field_validation
            .unwrap_or(self.state.config.default_field_validation)
    }

    /// The field manager of a non-apply write: `fieldManager`, else the user agent's first
    /// token (as Kubernetes defaults it).
    pub fn manager_name(&self) -> &str {
        self.manager_name.as_str()
    }

    /// The ownership record of a write through `sub` by [`Self::manager_name`], at now.
    pub fn manager(&self, sub: Subresource) -> Manager<'_> {
        Manager {
            name: self.manager_name(),
            subresource: match sub {
                Subresource::Main => None,
                Subresource::Status => Some("status"),
                Subresource::Scale => Some("scale"),
            },
            status_subresource: self.target.kind.status_subresource,
            api_version: pacer_schemas::API_VERSION,
            time: crate::object::now(),
        }
    }

    /// The object's name (only called for item URLs).
    pub fn name(&self) -> &str {
        self.target.name.as_deref().unwrap_or("")
    }

    /// The store key of the addressed object.
    pub fn key(&self) -> String {
        self.target
            .kind
            .key(self.target.namespace.as_deref(), self.name())
    }
}

/// Handles every resource URL: resolves it, then dispatches on the method.
pub async fn handle(
    State(state): State<ApiState>,
    Path(path): Path<HashMap<String, String>>,
    request: Request,
) -> Response {
    match dispatch(state, path, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn dispatch(
    state: ApiState,
    path: HashMap<String, String>,
    request: Request,
) -> Result<Response, ApiError> {
    let target = resolve(&path)?;
    let span = tracing::Span::current();
    span.record("kind", target.kind.kind);
    if let Some(namespace) = &target.namespace {
        span.record("namespace", namespace.as_str());
    }
    if let Some(name) = &target.name {
        span.record("name", name.as_str());
    }
    let (parts, body) = request.into_parts();
    let params = Params::parse(&parts.uri)?;
    let method = parts.method;
    let manager_name = params.field_manager.clone().unwrap_or_else(|| {
        managed::manager_from_user_agent(
            parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|agent| agent.to_str().ok()),
        )
    });
    // A write with a `Pacer-Fence` header writes through a store that fences every
    // transaction (see `crate::fence`).
    let mut state = state;
    let fenced = match crate::fence::from_headers(&parts.headers)? {
        Some(fence) if method != Method::GET => {
            let fenced = crate::fence::arm(&state.store, fence).await?;
            state.store = std::sync::Arc::new(fenced.clone());
            Some(fenced)
        }
        _ => None,
    };
    let request = ResourceRequest {
        state,
        target,
        params,
        headers: parts.headers,
        manager_name,
    };
    let answer = serve_verb(request, method, body).await;
    match fenced {
        Some(fenced) if answer.is_err() && fenced.lost() => Err(fenced.lost_error()),
        _ => answer,
    }
}

async fn serve_verb(
    request: ResourceRequest,
    method: Method,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let target = &request.target;
    let cluster_wide_namespaced = target.kind.namespaced && target.namespace.is_none();
    match (target.name.is_some(), target.sub, method) {
        (false, _, Method::GET) if request.params.watch => crate::watch::handle(request).await,
        (false, _, Method::GET) => read::list(request).await,
        (false, _, Method::POST) if !cluster_wide_namespaced => write::create(request, body).await,
        (false, _, Method::DELETE) if !cluster_wide_namespaced => {
            delete::delete_collection(request, body).await
        }
        (true, Subresource::Main | Subresource::Status, Method::GET) => read::get(request).await,
        (true, Subresource::Main | Subresource::Status, Method::PUT) => {
            write::update(request, body).await
        }
        (true, Subresource::Main | Subresource::Status, Method::PATCH) => {
            write::patch(request, body).await
        }
        (true, Subresource::Main, Method::DELETE) => delete::delete(request, body).await,
        (true, Subresource::Scale, Method::GET) => scale::get(request).await,
        (true, Subresource::Scale, Method::PUT) => scale::update(request, body).await,
        (true, Subresource::Scale, Method::PATCH) => scale::patch(request, body).await,
        (_, _, method) => Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

fn resolve(path: &HashMap<String, String>) -> Result<Target, ApiError> {
    let plural = path.get("plural").map(String::as_str).unwrap_or("");
    let kind = kinds::find(plural).ok_or(ApiError::RouteNotFound)?;
    let namespace = path.get("namespace").cloned();
    let name = path.get("name").cloned();
    if namespace.is_some() && !kind.namespaced {
        return Err(ApiError::RouteNotFound);
    }
    if name.is_some() && kind.namespaced && namespace.is_none() {
        return Err(ApiError::RouteNotFound);
    }
    for segment in namespace.iter().chain(name.iter()) {
        check_segment(segment)?;
    }
    let sub = match path.get("sub").map(String::as_str) {
        None => Subresource::Main,
        Some("status") if kind.status_subresource => Subresource::Status,
        Some("scale") if kind.scale.is_some() => Subresource::Scale,
        Some(_) => return Err(ApiError::RouteNotFound),
    };
    Ok(Target {
        kind,
        namespace,
        name,
        sub,
    })
}

/// A name or namespace from the URL must be usable as one segment of a store key.
fn check_segment(segment: &str) -> Result<(), ApiError> {
    if segment.is_empty()
        || segment == "."
        || segment == ".."
        || segment.contains('/')
        || segment.contains('%')
        || segment.chars().any(char::is_control)
    {
        return Err(ApiError::BadRequest(format!(
            "invalid name or namespace in the URL: {segment:?}"
        )));
    }
    Ok(())
}

/// A JSON response with `Warning` headers (RFC 7234 `299 - "text"`, as Kubernetes sends them).
pub fn json_response(code: StatusCode, value: &Value, warnings: &[String]) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = (code, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for warning in warnings {
        let text = format!("299 - \"{}\"", warning.replace('"', "'"));
        if let Ok(value) = HeaderValue::from_str(&text) {
            headers.append(header::WARNING, value);
        }
    }
    response
}
