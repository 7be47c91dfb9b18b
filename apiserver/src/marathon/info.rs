//! `GET /v2/info`, `GET`/`DELETE /v2/leader` and `GET /ping`.
//!
//! Leader: Marathon has one leader that every replica proxies to. Pacer's API servers are all
//! equal — each serves every request from the shared store, and only the controllers elect
//! leaders among themselves — so the server that answers is as good a "leader" as any: `leader`
//! is the `host:port` the client reached it at (its `Host` header), and `elected` is true.
//! Clients that compare `/v2/info`'s `leader` with the address they called see them agree.
//!
//! Abdication (`DELETE /v2/leader`) is about what Marathon's leader does — scheduling and
//! deploying — which in Pacer is the controllers: every controller's election
//! (`/elections/<controller>/`, see `pacer-controllers`' `leader`) loses its current leader,
//! whose store lease is revoked. The leader's key vanishes with it, so the next candidate (on
//! another `pacer server`, or the same one once it notices and campaigns again, within about a
//! second or two) leads; the deposed leader's fenced writes fail at once. The answer is
//! Marathon's `{"message": "Leadership abdicated"}`, or 404 `{"message": "There is no
//! leader"}` when no controller leads anywhere.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use pacer_store::{KeyValue, ListOptions, StoreError};
use serde_json::json;

use super::error::MarathonError;
use crate::state::ApiState;

/// Where the controllers' elections live (one prefix per controller below it; the API server
/// does not depend on `pacer-controllers`, they meet in the store).
pub const ELECTIONS_PREFIX: &str = "/elections/";

/// The Marathon API level Pacer speaks (what feature-detecting clients read from `version`).
pub const MARATHON_VERSION: &str = "1.5.0";

/// `GET /ping`: `pong`.
pub async fn ping() -> Response {
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        "pong",
    )
        .into_response()
}

/// `GET /v2/leader`: `{"leader": "host:port"}` — this server.
pub async fn leader(headers: HeaderMap) -> Response {
    super::json(StatusCode::OK, &json!({"leader": leader_address(&headers)}))
}

/// `DELETE /v2/leader`: every controller's leader gives up its lease; see the module docs.
pub async fn abdicate(State(state): State<ApiState>) -> Result<Response, MarathonError> {
    let leaders = election_leaders(&state).await?;
    if leaders.is_empty() {
        return Err(MarathonError::NotFound("There is no leader".to_owned()));
    }
    for (election, leader) in &leaders {
        let Some(lease) = leader.lease else {
            tracing::warn!(election, key = %leader.key, "leader key without a lease; left alone");
            continue;
        };
        match state.store.lease_revoke(lease).await {
            // Gone already: that leader ended meanwhile.
            Ok(()) | Err(StoreError::LeaseNotFound(_)) => {
                tracing::info!(election, %lease, holder = %String::from_utf8_lossy(&leader.value), "leadership abdicated");
            }
            Err(error) => return Err(MarathonError::from(error)),
        }
    }
    Ok(super::json(
        StatusCode::OK,
        &json!({"message": "Leadership abdicated"}),
    ))
}

/// The current leader of every election under [`ELECTIONS_PREFIX`] (its key with the lowest
/// create revision), by election name.
async fn election_leaders(state: &ApiState) -> Result<BTreeMap<String, KeyValue>, MarathonError> {
    let mut options = ListOptions {
        limit: state.config.internal_page_size,
        ..ListOptions::default()
    };
    let mut leaders: BTreeMap<String, KeyValue> = BTreeMap::new();
    loop {
        let page = state.store.list(ELECTIONS_PREFIX, &options).await?;
        for kv in page.items {
            let Some((election, _)) = kv
                .key
                .strip_prefix(ELECTIONS_PREFIX)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            let election = election.to_owned();
            match leaders.get(&election) {
                Some(known) if known.create_revision <= kv.create_revision => {}
                _ => {
                    leaders.insert(election, kv);
                }
            }
        }
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => break,
        }
    }
    Ok(leaders)
}

/// `GET /v2/info`.
pub async fn info(headers: HeaderMap) -> Response {
    let leader = leader_address(&headers);
    let (hostname, port) = match leader.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse::<u16>().unwrap_or(80)),
        None => (leader.clone(), 80),
    };
    super::json(
        StatusCode::OK,
        &json!({
            "name": "pacer",
            "version": MARATHON_VERSION,
            "buildref": env!("CARGO_PKG_VERSION"),
            "elected": true,
            "leader": leader,
            "frameworkId": "pacer",
            "marathon_config": {
                "checkpoint": true,
                "executor": "//cmd",
                "failover_timeout": 604800,
                "features": [],
                "framework_name": "pacer",
                "ha": true,
                "hostname": hostname,
                "leader_proxy_connection_timeout_ms": 5000,
                "leader_proxy_read_timeout_ms": 10000,
                "local_port_max": 20000,
                "local_port_min": 10000,
                "master": "",
                "mesos_role": "*",
                "mesos_user": "",
                "webui_url": format!("http://{leader}/ui"),
                "reconciliation_initial_delay": 15000,
                "reconciliation_interval": 600000,
                "task_launch_timeout": 300000,
                "task_reservation_timeout": 20000,
            },
            "zookeeper_config": {},
            "http_config": {"http_port": port, "https_port": 0},
            "event_subscriber": null,
        }),
    )
}

fn leader_address(headers: &HeaderMap) -> String {
    super::request_host(headers).unwrap_or_else(|| "localhost:8080".to_owned())
}
