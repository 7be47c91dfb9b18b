//! The Instance `log` subresource through the router: its route beside the generic
//! subresources, and the errors answered before any agent is asked (unknown instance, bad
//! parameters, not bound, node without endpoint, agent unreachable). Streaming from a real
//! agent is covered end to end in `cli/tests/logs.rs`.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::Harness;
use serde_json::json;

const INSTANCES: &str = "/apis/pacer.dev/v1/namespaces/default/instances";

#[tokio::test]
async fn log_requests_fail_with_404_400_and_503_naming_the_cause() {
    let h = Harness::new();
    h.post(
        INSTANCES,
        &json!({
            "apiVersion": "pacer.dev/v1",
            "kind": "Instance",
            "metadata": {"name": "web.a", "labels": {"pacer.dev/app": "web"}},
            "spec": {"app": "web", "appVersion": "2024-05-01T10:00:00Z"},
        }),
    )
    .await
    .expect(201, None);
    // The generic subresources still route past the `log` route.
    h.get(&format!("{INSTANCES}/web.a/status"))
        .await
        .expect(200, None);
    h.get(&format!("{INSTANCES}/web.a/scale"))
        .await
        .expect(404, Some("NotFound"));

    let missing = h
        .get(&format!("{INSTANCES}/nope/log"))
        .await
        .expect(404, Some("NotFound"));
    assert!(
        missing["message"].as_str().unwrap().contains("nope"),
        "{missing}"
    );
    h.get(&format!("{INSTANCES}/web.a/log?tailLines=many"))
        .await
        .expect(400, Some("BadRequest"));

    let unbound = h
        .get(&format!("{INSTANCES}/web.a/log"))
        .await
        .expect(503, Some("ServiceUnavailable"));
    assert!(
        unbound["message"].as_str().unwrap().contains("not bound"),
        "{unbound}"
    );

    h.merge_patch(
        &format!("{INSTANCES}/web.a"),
        &json!({"spec": {"nodeName": "n1"}}),
    )
    .await
    .expect(200, None);
    let no_node = h
        .get(&format!("{INSTANCES}/web.a/log"))
        .await
        .expect(503, Some("ServiceUnavailable"));
    assert!(
        no_node["message"]
            .as_str()
            .unwrap()
            .contains("node n1 of instance default/web.a does not exist"),
        "{no_node}"
    );

    let nodes = "/apis/pacer.dev/v1/nodes";
    h.post(
        nodes,
        &json!({"apiVersion": "pacer.dev/v1", "kind": "Node", "metadata": {"name": "n1"}}),
    )
    .await
    .expect(201, None);
    let no_endpoint = h
        .get(&format!("{INSTANCES}/web.a/log"))
        .await
        .expect(503, Some("ServiceUnavailable"));
    assert!(
        no_endpoint["message"]
            .as_str()
            .unwrap()
            .contains("has no agent endpoint"),
        "{no_endpoint}"
    );

    // An agent address where nothing listens: unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    h.merge_patch(
        &format!("{nodes}/n1/status"),
        &json!({"status": {"agentAddress": address}}),
    )
    .await
    .expect(200, None);
    let unreachable = h
        .get(&format!("{INSTANCES}/web.a/log?follow=true"))
        .await
        .expect(503, Some("ServiceUnavailable"));
    let message = unreachable["message"].as_str().unwrap();
    assert!(
        message.contains("the agent of node n1") && message.contains("cannot be reached"),
        "{unreachable}"
    );
}
