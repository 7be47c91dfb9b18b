//! Discovery, as kubectl and kube-rs read it (legacy, unaggregated format; always
//! `Content-Type: application/json` whatever the `Accept` header asks, which makes clients use
//! the legacy path): `/version`, `/api`, `/apis`, `/apis/pacer.dev`,
//! `/apis/pacer.dev/v1` (resources with verbs, short names, categories and the `status`, `scale`
//! and `instances/log` subresources), and the `/healthz`, `/readyz`, `/livez` probes.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pacer_schemas::{API_VERSION, GROUP, Instance, Resource, VERSION};
use serde_json::{Value, json};

use crate::kinds::{KINDS, KindDef};
use crate::rest::json_response;
use crate::state::ApiState;

/// Every verb a served kind supports.
const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `GET /version`: all nine `version.Info` fields (kube-rs requires every one).
pub async fn version() -> Response {
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    let major = parts.next().unwrap_or("0");
    let minor = parts.next().unwrap_or("0");
    json_response(
        StatusCode::OK,
        &json!({
            "major": major,
            "minor": minor,
            "gitVersion": format!("v{version}"),
            "gitCommit": "unknown",
            "gitTreeState": "clean",
            "buildDate": "1970-01-01T00:00:00Z",
            "goVersion": "n/a (pacer is written in Rust)",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        }),
        &[],
    )
}

/// `GET /api`: the legacy core group has no version here (Pacer serves no core kinds; listing
/// `v1` with an empty resource list makes kubectl report "received empty response for: v1").
pub async fn api() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIVersions", "versions": [], "serverAddressByClientCIDRs": []}),
        &[],
    )
}

/// `GET /apis`: the one group, `pacer.dev`.
pub async fn apis() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group()]}),
        &[],
    )
}

/// `GET /apis/pacer.dev`: the group and its versions.
pub async fn api_group() -> Response {
    let mut group = group();
    group["kind"] = json!("APIGroup");
    group["apiVersion"] = json!("v1");
    json_response(StatusCode::OK, &group, &[])
}

/// `GET /apis/pacer.dev/v1`: every resource with its verbs and subresources.
pub async fn resources() -> Response {
    json_response(StatusCode::OK, &resource_list(), &[])
}

/// The `APIResourceList` of `pacer.dev/v1`.
pub fn resource_list() -> Value {
    let resources: Vec<Value> = KINDS.iter().flat_map(resource_entries).collect();
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": resources,
    })
}

/// `GET /healthz`, `/livez`: `ok` as soon as the server serves.
pub async fn ok() -> Response {
    plain(StatusCode::OK, "ok")
}

/// `GET /readyz`: `ok` while the store answers (within two seconds), else 503 naming the
/// failure — as Kubernetes' readiness includes its etcd check, so load balancers stop sending
/// requests that could only fail.
pub async fn ready(State(state): State<ApiState>) -> Response {
    let probe = tokio::time::timeout(Duration::from_secs(2), state.store.current_revision());
    match probe.await {
        Ok(Ok(_)) => plain(StatusCode::OK, "ok"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: the store is unavailable");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable: readyz check failed",
            )
        }
        Err(_) => {
            tracing::warn!("readiness: the store did not answer within 2 s");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "store did not answer: readyz check failed",
            )
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = (status, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn group() -> Value {
    let version = json!({"groupVersion": API_VERSION, "version": VERSION});
    json!({"name": GROUP, "versions": [version.clone()], "preferredVersion": version})
}

fn resource_entries(kind: &KindDef) -> Vec<Value> {
    let mut entries = vec![json!({
        "name": kind.plural,
        "singularName": kind.singular,
        "namespaced": kind.namespaced,
        "kind": kind.kind,
        "verbs": VERBS,
        "shortNames": kind.short_names,
        "categories": kind.categories,
    })];
    if kind.status_subresource {
        entries.push(json!({
            "name": format!("{}/status", kind.plural),
            "singularName": "",
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": ["get", "patch", "update"],
        }));
    }
    if kind.kind == Instance::KIND {
        // Served by `instance_log` (as Kubernetes lists `pods/log`).
        entries.push(json!({
            "name": format!("{}/log", kind.plural),
            "singularName": "",
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": ["get"],
        }));
    }
    if kind.scale.is_some() {
        entries.push(json!({
            "name": format!("{}/scale", kind.plural),
            "singularName": "",
            "namespaced": kind.namespaced,
            "group": "autoscaling",
            "version": "v1",
            "kind": "Scale",
            "verbs": ["get", "patch", "update"],
        }));
    }
    entries
}
