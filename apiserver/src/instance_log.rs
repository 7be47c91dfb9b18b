//! The `log` subresource of Instances, as Kubernetes' `pods/log`:
//! `GET /apis/pacer.dev/v1/namespaces/{namespace}/instances/{name}/log?follow=true&tailLines=N`
//! answers the instance's output as `text/plain`, streamed from the agent of the node it is
//! bound to. The API server reads the Instance (`spec.nodeName`) and its Node
//! (`status.agentAddress`) from the store and proxies the agent's
//! `GET /logs/{namespace}/{name}` (see `pacer_agent::log_endpoint`); the body is passed on as
//! it arrives, so `follow=true` streams until the instance ends or the client goes away.
//!
//! Failures are `Status` objects: 404 for an Instance that does not exist (or whose agent has
//! no output of it), 400 for bad parameters, 503 with the reason in words when the instance is
//! not bound yet, its node has no agent endpoint, or the agent cannot be reached.

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use pacer_schemas::status::StatusReason;
use pacer_schemas::{Instance, Node, Status};

use crate::error::{ApiError, status_response};
use crate::kinds;
use crate::state::ApiState;

/// How long connecting to an agent may take before it counts as unreachable.
pub const AGENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The query parameters the subresource understands (others are ignored, as `container`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogParams {
    /// `follow=true`: keep streaming.
    pub follow: bool,
    /// `tailLines=N`.
    pub tail_lines: Option<u64>,
}

impl LogParams {
    /// Parses `follow` and `tailLines` from a raw query string.
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut params = Self::default();
        for pair in query
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
        {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "follow" => {
                    params.follow = match value {
                        "" | "true" | "1" => true,
                        "false" | "0" => false,
                        other => {
                            return Err(ApiError::BadRequest(format!(
                                "follow: expected true or false, got {other:?}"
                            )));
                        }
                    }
                }
                "tailLines" => {
                    params.tail_lines = Some(value.parse().map_err(|_| {
                        ApiError::BadRequest(format!(
                            "tailLines: expected a number of lines ≥ 0, got {value:?}"
                        ))
                    })?);
                }
                _ => {}
            }
        }
        Ok(params)
    }

    /// The query of the agent's request.
    fn agent_query(self) -> String {
        let mut query = format!("follow={}", self.follow);
        if let Some(lines) = self.tail_lines {
            query.push_str(&format!("&tailLines={lines}"));
        }
        query
    }
}

/// `GET …/namespaces/{namespace}/instances/{name}/log`.
pub async fn handle(
    State(state): State<ApiState>,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    match proxy(&state, &namespace, &name, query.as_deref()).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// 503 with `message`.
fn unavailable(message: String) -> Response {
    tracing::debug!(%message, "instance log unavailable");
    status_response(&Status::failure(
        503,
        StatusReason::ServiceUnavailable,
        message,
    ))
}

async fn proxy(
    state: &ApiState,
    namespace: &str,
    name: &str,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let params = LogParams::parse(query)?;
    let instances = kinds::find("instances").ok_or(ApiError::RouteNotFound)?;
    let nodes = kinds::find("nodes").ok_or(ApiError::RouteNotFound)?;
    let kv = state
        .store
        .get(&instances.key(Some(namespace), name))
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind: instances,
            name: name.to_owned(),
        })?;
    let instance: Instance = serde_json::from_slice(&kv.value)
        .map_err(|error| ApiError::Internal(format!("stored instance {name}: {error}")))?;
    let Some(node_name) = instance.spec.node_name.filter(|node| !node.is_empty()) else {
        return Ok(unavailable(format!(
            "instance {namespace}/{name} is not bound to a node yet: it has no logs"
        )));
    };
    let Some(node_kv) = state.store.get(&nodes.key(None, &node_name)).await? else {
        return Ok(unavailable(format!(
            "node {node_name} of instance {namespace}/{name} does not exist"
        )));
    };
    let node: Node = serde_json::from_slice(&node_kv.value)
        .map_err(|error| ApiError::Internal(format!("stored node {node_name}: {error}")))?;
    let Some(address) = node
        .status
        .and_then(|status| status.agent_address)
        .filter(|address| !address.is_empty())
    else {
        return Ok(unavailable(format!(
            "node {node_name} has no agent endpoint (its agent serves no logs): no logs of \
             instance {namespace}/{name}"
        )));
    };
    let url = format!(
        "http://{address}/logs/{namespace}/{name}?{}",
        params.agent_query()
    );
    let client = match agent_client() {
        Ok(client) => client,
        Err(error) => return Err(ApiError::Internal(format!("HTTP client: {error}"))),
    };
    let answer = match client.get(&url).send().await {
        Ok(answer) => answer,
        Err(error) => {
            return Ok(unavailable(format!(
                "the agent of node {node_name} at {address} cannot be reached: {}",
                error.without_url()
            )));
        }
    };
    let code = answer.status();
    if !code.is_success() {
        let text = answer.text().await.unwrap_or_default();
        let text = text.trim();
        return Ok(if code == reqwest::StatusCode::NOT_FOUND {
            status_response(&Status::failure(
                404,
                StatusReason::NotFound,
                format!(
                    "the agent of node {node_name} has no output of instance {namespace}/{name}: {text}"
                ),
            ))
        } else if code == reqwest::StatusCode::BAD_REQUEST {
            status_response(&Status::bad_request(text.to_owned()))
        } else {
            unavailable(format!(
                "the agent of node {node_name} at {address} answered {code}: {text}"
            ))
        });
    }
    tracing::debug!(instance = %format!("{namespace}/{name}"), node = %node_name, follow = params.follow, "proxying instance logs");
    // A followed log ends when the server shuts down, as watches do, so that it does not hold
    // the graceful shutdown open.
    let body = answer
        .bytes_stream()
        .take_until(state.shutdown.clone().cancelled_owned());
    let mut response = Body::from_stream(body).into_response();
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

/// The one HTTP client for agents (plain HTTP, no proxy, connection pooling).
fn agent_client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            if rustls::crypto::CryptoProvider::get_default().is_none() {
                // Losing a race to another installer is fine: a provider is installed.
                let _ = rustls::crypto::ring::default_provider().install_default();
            }
            reqwest::Client::builder()
                .connect_timeout(AGENT_CONNECT_TIMEOUT)
                .no_proxy()
                .build()
                .map_err(|error| error.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_as_kubernetes_spells_them() {
        assert_eq!(LogParams::parse(None).unwrap(), LogParams::default());
        let params = LogParams::parse(Some("follow=true&tailLines=5&container=x")).unwrap();
        assert_eq!(
            params,
            LogParams {
                follow: true,
                tail_lines: Some(5)
            }
        );
        assert_eq!(params.agent_query(), "follow=true&tailLines=5");
        assert!(LogParams::parse(Some("tailLines=-1")).is_err());
        assert!(LogParams::parse(Some("follow=maybe")).is_err());
    }
}
