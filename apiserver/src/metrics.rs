//! `/metrics` and the middleware that feeds it.
//!
//! [`record`] wraps every request (outermost layer, so refusals by the body limit or the
//! authentication seam count too): it names the request's verb and resource the way
//! Kubernetes' `apiserver_request_total` does, and when the response head is ready records
//! `pacer_apiserver_requests_total` and `pacer_apiserver_request_duration_seconds` by verb,
//! resource and code. A successful `WATCH` (a kube watch, or Marathon's `/v2/events` stream)
//! counts in `pacer_apiserver_open_watches` until its response body is dropped, that is
//! until the stream ends or the client goes away.
//!
//! [`scrape`] serves the process-wide registry (`pacer_metrics::global`) — in the Prometheus
//! text format 0.0.4, or OpenMetrics when the `Accept` header asks for it. The one route serves
//! Marathon clients too (Marathon's `/metrics` lives at the same path): a request that accepts
//! `application/json` and no text format gets the same samples as Marathon's Dropwizard JSON
//! registry.
//!
//! Label values come from fixed sets (verbs, served kinds, known paths; anything else is
//! `other`), so no request can grow the registry.

use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use pacer_metrics::RequestLabels;

use crate::error::ApiError;
use crate::{kinds, openapi};

/// The resource label of anything not otherwise named.
const OTHER: &str = "other";

/// Paths outside the resource APIs that get their own resource label (the path itself).
const KNOWN_PATHS: &[&str] = &[
    "/metrics",
    "/healthz",
    "/readyz",
    "/livez",
    "/version",
    "/api",
    "/apis",
    "/apis/pacer.dev",
    "/apis/pacer.dev/v1",
    "/openapi/v2",
    "/openapi/v3",
    openapi::GROUP_PATH,
    "/ping",
];

/// Marathon's `/v2/<resource>` families.
const MARATHON_RESOURCES: &[&str] = &[
    "apps",
    "groups",
    "tasks",
    "deployments",
    "queue",
    "info",
    "leader",
    "events",
    "eventSubscriptions",
    "artifacts",
    "pods",
    "plugins",
];

/// Subresources named in the resource label (`apps/status`); others are `<plural>/other`.
const SUBRESOURCES: &[&str] = &["status", "scale", "log"];

/// Records every request (see the module docs).
pub async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let (verb, resource) = classify(request.method(), request.uri(), request.headers());
    let response = next.run(request).await;
    let status = response.status();
    let metrics = &pacer_metrics::global().api;
    metrics.observe_request(
        RequestLabels {
            verb,
            resource: resource.clone(),
            code: status.as_u16().to_string(),
        },
        started.elapsed(),
    );
    if verb != "WATCH" || !status.is_success() {
        return response;
    }
    let open = metrics.watch_opened(resource);
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            // The stream owns the guard: the watch counts as open until the body is dropped.
            let _open = &open;
            chunk
        }))
    })
}

/// `GET /metrics`.
pub async fn scrape(headers: HeaderMap) -> Response {
    let metrics = pacer_metrics::global();
    let accepts = |media: &str| {
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|accept| accept.contains(media))
    };
    let openmetrics = accepts("application/openmetrics-text");
    if !openmetrics && !accepts("text/plain") && accepts("application/json") {
        return match metrics.dropwizard_json() {
            Ok(json) => axum::Json(json).into_response(),
            Err(error) => ApiError::Internal(error.to_string()).into_response(),
        };
    }
    let (encoded, content_type) = if openmetrics {
        (
            metrics.encode_openmetrics(),
            pacer_metrics::OPENMETRICS_CONTENT_TYPE,
        )
    } else {
        (
            metrics.encode_prometheus(),
            pacer_metrics::PROMETHEUS_CONTENT_TYPE,
        )
    };
    match encoded {
        Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], text).into_response(),
        Err(error) => ApiError::Internal(error.to_string()).into_response(),
    }
}

/// The verb and resource labels of a request.
fn classify(method: &Method, uri: &Uri, headers: &HeaderMap) -> (&'static str, String) {
    let path = uri.path();
    let segments: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    match segments.as_slice() {
        ["apis", "pacer.dev", "v1", rest @ ..] if !rest.is_empty() => {
            let (plural, name, sub) = match rest {
                ["namespaces", _, plural, tail @ ..] => (*plural, tail.first(), tail.get(1)),
                [plural, tail @ ..] => (*plural, tail.first(), tail.get(1)),
                [] => return (http_verb(method), OTHER.to_owned()),
            };
            let Some(kind) = kinds::find(plural) else {
                return (resource_verb(method, uri, headers, false), OTHER.to_owned());
            };
            let resource = match sub {
                None => kind.plural.to_owned(),
                Some(sub) if SUBRESOURCES.contains(sub) => format!("{}/{sub}", kind.plural),
                Some(_) => format!("{}/{OTHER}", kind.plural),
            };
            (
                resource_verb(method, uri, headers, name.is_some()),
                resource,
            )
        }
        ["v2", family, ..] => {
            let resource = match MARATHON_RESOURCES.iter().find(|known| *known == family) {
                Some(known) => format!("v2/{known}"),
                None => format!("v2/{OTHER}"),
            };
            let verb = if *family == "events" && method == Method::GET {
                "WATCH"
            } else {
                http_verb(method)
            };
            (verb, resource)
        }
        ["ui", ..] => (http_verb(method), "/ui".to_owned()),
        _ => {
            let resource = KNOWN_PATHS
                .iter()
                .find(|known| **known == path.trim_end_matches('/'))
                .map_or_else(|| OTHER.to_owned(), |known| (*known).to_owned());
            (http_verb(method), resource)
        }
    }
}

/// Kubernetes' verb for a request on a resource URL (`named`: it names one object).
fn resource_verb(method: &Method, uri: &Uri, headers: &HeaderMap, named: bool) -> &'static str {
    match *method {
        Method::GET | Method::HEAD => {
            if watch_requested(uri) {
                "WATCH"
            } else if named {
                "GET"
            } else {
                "LIST"
            }
        }
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => {
            let apply = headers
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.starts_with("application/apply-patch"));
            if apply { "APPLY" } else { "PATCH" }
        }
        Method::DELETE => {
            if named {
                "DELETE"
            } else {
                "DELETECOLLECTION"
            }
        }
        _ => http_verb(method),
    }
}

/// `?watch=true` (or `1`).
fn watch_requested(uri: &Uri) -> bool {
    uri.query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| matches!(pair.split_once('='), Some(("watch", "true" | "1" | "True"))))
    })
}

/// The method as a label value, from a fixed set.
fn http_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn labels(method: Method, uri: &str) -> (&'static str, String) {
        classify(&method, &uri.parse().unwrap(), &HeaderMap::new())
    }

    #[test]
    fn requests_are_named_as_kubernetes_does() {
        let ns = "/apis/pacer.dev/v1/namespaces/default";
        let cases = [
            (Method::GET, format!("{ns}/apps"), "LIST", "apps"),
            (
                Method::GET,
                "/apis/pacer.dev/v1/apps".to_owned(),
                "LIST",
                "apps",
            ),
            (
                Method::GET,
                format!("{ns}/apps?watch=true&resourceVersion=5"),
                "WATCH",
                "apps",
            ),
            (Method::GET, format!("{ns}/apps/web"), "GET", "apps"),
            (
                Method::PUT,
                format!("{ns}/apps/web/status"),
                "PUT",
                "apps/status",
            ),
            (
                Method::GET,
                format!("{ns}/apps/web/scale"),
                "GET",
                "apps/scale",
            ),
            (
                Method::GET,
                format!("{ns}/apps/web/bogus"),
                "GET",
                "apps/other",
            ),
            (Method::POST, format!("{ns}/instances"), "POST", "instances"),
            (Method::DELETE, format!("{ns}/apps/web"), "DELETE", "apps"),
            (
                Method::DELETE,
                format!("{ns}/apps"),
                "DELETECOLLECTION",
                "apps",
            ),
            (
                Method::GET,
                "/apis/pacer.dev/v1/nodes/n1".to_owned(),
                "GET",
                "nodes",
            ),
            (Method::GET, format!("{ns}/widgets"), "LIST", "other"),
            (
                Method::GET,
                "/v2/apps/prod/web".to_owned(),
                "GET",
                "v2/apps",
            ),
            (Method::POST, "/v2/apps".to_owned(), "POST", "v2/apps"),
            (
                Method::GET,
                "/v2/events?event_type=x".to_owned(),
                "WATCH",
                "v2/events",
            ),
            (Method::GET, "/v2/nonsense/x".to_owned(), "GET", "v2/other"),
            (Method::GET, "/metrics".to_owned(), "GET", "/metrics"),
            (Method::GET, "/readyz".to_owned(), "GET", "/readyz"),
            (
                Method::GET,
                "/apis/pacer.dev/v1".to_owned(),
                "GET",
                "/apis/pacer.dev/v1",
            ),
            (Method::GET, "/some/random/path".to_owned(), "GET", "other"),
            (
                Method::from_bytes(b"BREW").unwrap(),
                "/metrics".to_owned(),
                "OTHER",
                "/metrics",
            ),
        ];
        for (method, uri, verb, resource) in cases {
            assert_eq!(
                labels(method.clone(), &uri),
                (verb, resource.to_owned()),
                "{method} {uri}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/apply-patch+yaml"),
        );
        let uri: Uri = format!("{ns}/apps/web").parse().unwrap();
        assert_eq!(classify(&Method::PATCH, &uri, &headers).0, "APPLY");
        assert_eq!(classify(&Method::PATCH, &uri, &HeaderMap::new()).0, "PATCH");
    }
}
