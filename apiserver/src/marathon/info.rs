//! `GET /v2/info`, `GET /v2/leader` and `GET /ping`.
//!
//! Leader: Marathon has one leader that every replica proxies to. Pacer's API servers are all
//! equal — each serves every request from the shared store, and only the controllers elect
//! leaders among themselves — so the server that answers is as good a "leader" as any: `leader`
//! is the `host:port` the client reached it at (its `Host` header), and `elected` is true.
//! Clients that compare `/v2/info`'s `leader` with the address they called see them agree.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

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
