//! The HTTP server: [`router`] assembles every route and the cross-cutting layers (a tracing
//! span per request, the request body limit, the authentication seam); [`serve`] runs it on a
//! listener with graceful shutdown.

use std::future::Future;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use tower::ServiceBuilder;
use tower_http::limit::{RequestBodyLimitLayer, ResponseBody};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::error::ApiError;
use crate::state::ApiState;
use crate::{auth, body, discovery, openapi, rest};

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Accepting or serving connections failed.
    #[error("serve HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// Every route of the API server, with its layers.
pub fn router(state: ApiState) -> Router {
    let limit = state.config.max_body_bytes;
    let resources = "/apis/pacer.dev/v1";
    // Encode the OpenAPI documents now rather than on kubectl's first request.
    openapi::build();
    Router::new()
        .route("/version", get(discovery::version))
        .route("/api", get(discovery::api))
        .route("/apis", get(discovery::apis))
        .route("/apis/pacer.dev", get(discovery::api_group))
        .route(resources, get(discovery::resources))
        .route("/healthz", get(discovery::ok))
        .route("/readyz", get(discovery::ready))
        .route("/livez", get(discovery::ok))
        .route("/metrics", get(crate::metrics::scrape))
        .route("/openapi/v2", get(openapi::v2))
        .route("/openapi/v3", get(openapi::v3_index))
        .route(openapi::GROUP_PATH, get(openapi::v3_group))
        .route(
            &format!("{resources}/namespaces/{{namespace}}/instances/{{name}}/log"),
            get(crate::instance_log::handle),
        )
        .route(&format!("{resources}/{{plural}}"), any(rest::handle))
        .route(
            &format!("{resources}/{{plural}}/{{name}}"),
            any(rest::handle),
        )
        .route(
            &format!("{resources}/{{plural}}/{{name}}/{{sub}}"),
            any(rest::handle),
        )
        .route(
            &format!("{resources}/namespaces/{{namespace}}/{{plural}}"),
            any(rest::handle),
        )
        .route(
            &format!("{resources}/namespaces/{{namespace}}/{{plural}}/{{name}}"),
            any(rest::handle),
        )
        .route(
            &format!("{resources}/namespaces/{{namespace}}/{{plural}}/{{name}}/{{sub}}"),
            any(rest::handle),
        )
        .merge(crate::marathon::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(crate::metrics::record))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        // A 5xx answer is logged at WARN here: the ones that are the server's
                        // fault were already logged at ERROR where they happened, and the
                        // others (503 while the store or an agent is unreachable) are expected.
                        .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
                )
                .layer(axum::middleware::from_fn(auth::authenticate))
                .map_response(move |response: axum::http::Response<ResponseBody<Body>>| {
                    status_for_body_limit(response.map(Body::new), limit)
                })
                .layer(RequestBodyLimitLayer::new(limit)),
        )
}

/// Serves `router(state)` on `listener` until `shutdown` completes; then open watches end, new
/// connections are refused and in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "API server listening");
    }
    let app = router(state.clone());
    let watches = state.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("API server shutting down");
            watches.shut_down();
        })
        .await?;
    state.shut_down();
    Ok(())
}

fn request_span(request: &Request) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        kind = tracing::field::Empty,
        namespace = tracing::field::Empty,
        name = tracing::field::Empty,
        user = tracing::field::Empty,
    )
}

async fn not_found() -> Response {
    ApiError::RouteNotFound.into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed(
        "the server does not allow this method on the requested resource".to_owned(),
    )
    .into_response()
}

/// `RequestBodyLimitLayer` answers an over-size `Content-Length` with a plain-text 413; clients
/// expect a `Status`.
fn status_for_body_limit(response: Response, limit: usize) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        body::too_large(limit).into_response()
    } else {
        response
    }
}
