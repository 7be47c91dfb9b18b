//! The agent's own HTTP endpoint, as the kubelet's: the API server proxies the `log`
//! subresource of an Instance to `GET /logs/{namespace}/{name}?follow=…&tailLines=…` on the
//! agent of the Instance's node, whose `host:port` the agent records in its Node's
//! `status.agentAddress`. The answer is the instance's output as `text/plain`, streamed:
//! Docker's logs API for containers, the sandbox's `stdout` and `stderr` files for processes,
//! one synthetic line for hollow instances. 404 when no runtime of this node has output of
//! that instance.
//!
//! By default it listens on an ephemeral port of the local address that routes to the API
//! server (loopback for a local server), so the server can reach it and nothing else is
//! exposed; `pacer agent --listen` chooses another address. It has no authentication of its
//! own yet (neither has the API server).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::launch::InstanceKey;
use crate::runtime::{LogOptions, NO_LOGS, Runtime};

/// The path prefix of instance logs on the agent.
pub const LOGS_PATH: &str = "/logs";

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Binding the listener.
    #[error("listen on {address} for the agent endpoint: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// The query of a log request (Kubernetes' names).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    #[serde(default)]
    follow: Option<bool>,
    #[serde(default)]
    tail_lines: Option<u64>,
}

/// A bound endpoint: what to record in the Node, and the task serving it.
#[derive(Debug)]
pub struct Endpoint {
    /// `host:port` the API server reaches it on.
    pub advertised: SocketAddr,
}

/// The local IP address that routes to `server_host` (no packet is sent: a UDP socket is
/// only connected); loopback when that cannot be told.
pub fn local_address_towards(server_host: &str, server_port: u16) -> IpAddr {
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let Ok(socket) = std::net::UdpSocket::bind("0.0.0.0:0") else {
        return loopback;
    };
    match socket
        .connect((server_host, server_port))
        .and_then(|()| socket.local_addr())
    {
        Ok(address) if !address.ip().is_unspecified() => address.ip(),
        _ => loopback,
    }
}

/// The runtimes a log request is tried on, in order (a real node's docker and process
/// runtimes, or every hollow node's runtime of a fleet).
pub type LogRuntimes = Arc<Vec<Arc<dyn Runtime>>>;

/// The local IP address that routes to `client`'s API server.
pub fn address_towards_server(client: &pacer_client::Client) -> IpAddr {
    let server = client.base_url();
    // An IPv6 host comes bracketed (`[::1]`).
    let host = server
        .host_str()
        .unwrap_or("127.0.0.1")
        .trim_start_matches('[')
        .trim_end_matches(']');
    local_address_towards(host, server.port_or_known_default().unwrap_or(80))
}

/// Binds `listen` and serves the endpoint for `runtimes` until `shutdown`. A listen address
/// with an unspecified IP is advertised with `advertise_ip`.
pub async fn start(
    listen: SocketAddr,
    advertise_ip: IpAddr,
    runtimes: LogRuntimes,
    shutdown: CancellationToken,
) -> Result<Endpoint, EndpointError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| EndpointError::Bind {
            address: listen,
            source,
        })?;
    let mut advertised = listener
        .local_addr()
        .map_err(|source| EndpointError::Bind {
            address: listen,
            source,
        })?;
    if advertised.ip().is_unspecified() {
        advertised.set_ip(advertise_ip);
    }
    tracing::info!(address = %advertised, "agent endpoint (instance logs) listening");
    let app = router(runtimes);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "the agent endpoint stopped");
        }
    });
    Ok(Endpoint { advertised })
}

/// The endpoint's routes.
pub fn router(runtimes: LogRuntimes) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(&format!("{LOGS_PATH}/{{namespace}}/{{name}}"), get(logs))
        .with_state(runtimes)
}

async fn logs(
    State(runtimes): State<LogRuntimes>,
    Path((namespace, name)): Path<(String, String)>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return text(
            StatusCode::BAD_REQUEST,
            "follow must be true or false and tailLines a number ≥ 0".to_owned(),
        );
    };
    let key = InstanceKey::new(namespace, name);
    let options = LogOptions {
        follow: query.follow.unwrap_or(false),
        tail_lines: query.tail_lines,
    };
    for runtime in runtimes.iter() {
        match runtime.logs(&key, options).await {
            Ok(stream) => {
                tracing::debug!(instance = %key, runtime = runtime.name(), follow = options.follow, "serving logs");
                let mut response = Body::from_stream(stream).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                return response;
            }
            Err(error) if error.reason == NO_LOGS => {}
            Err(error) => {
                tracing::warn!(instance = %key, runtime = runtime.name(), %error, "cannot read the instance's logs");
                return text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string());
            }
        }
    }
    text(
        StatusCode::NOT_FOUND,
        format!("no output of instance {key} on this node"),
    )
}

fn text(code: StatusCode, message: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use tower::ServiceExt;

    use super::*;
    use crate::launch::{Command, DEFAULT_KILL_GRACE, Launch};
    use crate::runtime::hollow::HollowRuntime;

    async fn get(router: Router, uri: &str) -> (StatusCode, String) {
        let request = axum::http::Request::get(uri).body(Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        let code = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (code, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn serves_the_output_of_instances_it_runs_and_404_otherwise() {
        let hollow = Arc::new(HollowRuntime::new());
        let runtimes: LogRuntimes = Arc::new(vec![
            Arc::new(HollowRuntime::new()) as Arc<dyn Runtime>,
            hollow.clone() as Arc<dyn Runtime>,
        ]);
        let (exits, _exited) = tokio::sync::mpsc::unbounded_channel();
        let launch = Launch {
            key: InstanceKey::new("default", "web-1"),
            app: "web".into(),
            command: Command::Shell("true".into()),
            image: None,
            host_network: true,
            env: std::collections::BTreeMap::new(),
            ports: Vec::new(),
            cpus: 0.1,
            mem: 32.0,
            kill_grace: DEFAULT_KILL_GRACE,
            labels: std::collections::BTreeMap::new(),
        };
        crate::runtime::Runtime::start(hollow.as_ref(), &launch, &exits)
            .await
            .unwrap();
        let (code, body) = get(router(runtimes.clone()), "/logs/default/web-1?follow=true").await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert!(body.contains("hollow instance default/web-1"), "{body}");
        let (code, body) = get(router(runtimes.clone()), "/logs/default/web-2").await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
        assert!(body.contains("default/web-2"), "{body}");
        let (code, _) = get(router(runtimes), "/logs/default/web-1?tailLines=-1").await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn the_address_towards_a_loopback_server_is_loopback() {
        assert!(local_address_towards("127.0.0.1", 8080).is_loopback());
    }
}
