//! The deployment lock: while a Deployment runs for an App, changes of its spec, restart
//! requests, scaling and deletion are refused with 409 naming the Deployment, unless
//! `?force=true`; status writes and metadata-only changes always go through.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use axum::http::Method;
use common::{Harness, app_url};
use serde_json::json;

const DEPLOYMENTS: &str = "/apis/pacer.dev/v1/deployments";

async fn running_deployment(h: &Harness, name: &str) {
    h.post(
        DEPLOYMENTS,
        &json!({
            "apiVersion": "pacer.dev/v1", "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "affectedApps": [{"namespace": "default", "name": "web"}],
                "steps": [{"actions": [{"action": "StartApplication",
                                        "app": {"namespace": "default", "name": "web"}}]}],
            },
        }),
    )
    .await
    .expect(201, None);
    // The App's status names it, as the deployment controller writes it.
    h.merge_patch(
        &format!("{}/status", app_url("default", "web")),
        &json!({"status": {"deployments": [name]}}),
    )
    .await
    .expect(200, None);
}

#[tokio::test]
async fn a_running_deployment_locks_its_app_until_forced_or_finished() {
    let h = Harness::new();
    h.create_app("default", "web", json!({"spec": {"instances": 2}}))
        .await;
    running_deployment(&h, "d-1").await;
    let url = app_url("default", "web");

    let refused = h
        .merge_patch(&url, &json!({"spec": {"instances": 3}}))
        .await
        .expect(409, Some("Conflict"));
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("locked by one or more deployments: d-1"),
        "{message}"
    );
    assert!(message.contains("force=true"), "{message}");
    // Scaling through /scale and asking for a restart are changes too.
    h.call(
        Method::PATCH,
        &format!("{url}/scale"),
        Some("application/merge-patch+json"),
        json!({"spec": {"replicas": 5}}).to_string(),
    )
    .await
    .expect(409, Some("Conflict"));
    h.merge_patch(
        &url,
        &json!({"metadata": {"annotations": {"pacer.dev/restartedAt": "2024-01-01T00:00:00Z"}}}),
    )
    .await
    .expect(409, Some("Conflict"));
    h.delete(&url, None).await.expect(409, Some("Conflict"));
    // Dry runs (what `kubectl diff` sends), metadata-only changes and status writes are not
    // blocked.
    h.merge_patch(
        &format!("{url}?dryRun=All"),
        &json!({"spec": {"instances": 3}}),
    )
    .await
    .expect(200, None);
    h.merge_patch(&url, &json!({"metadata": {"labels": {"team": "a"}}}))
        .await
        .expect(200, None);
    h.merge_patch(&format!("{url}/status"), &json!({"status": {"running": 2}}))
        .await
        .expect(200, None);
    // Nothing changed by the refused requests.
    let current = h.get(&url).await.expect(200, None);
    assert_eq!(current["spec"]["instances"], 2);

    // force=true goes through (the controller then supersedes the running deployment).
    let forced = h
        .merge_patch(
            &format!("{url}?force=true"),
            &json!({"spec": {"instances": 4}}),
        )
        .await
        .expect(200, None);
    assert_eq!(forced["spec"]["instances"], 4);

    // Once the deployment finished, changes go through without force.
    h.merge_patch(
        &format!("{DEPLOYMENTS}/d-1/status"),
        &json!({"status": {"phase": "Succeeded"}}),
    )
    .await
    .expect(200, None);
    h.merge_patch(&url, &json!({"spec": {"instances": 1}}))
        .await
        .expect(200, None);
    h.delete(&url, None).await.expect(200, None);
}

#[tokio::test]
async fn a_deployment_of_another_app_does_not_lock() {
    let h = Harness::new();
    h.create_app("default", "web", json!({})).await;
    h.create_app("default", "api", json!({})).await;
    running_deployment(&h, "d-web").await;
    // `api` names a deployment that touches `web` only: not a lock on `api`.
    h.merge_patch(
        &format!("{}/status", app_url("default", "api")),
        &json!({"status": {"deployments": ["d-web", "gone"]}}),
    )
    .await
    .expect(200, None);
    h.merge_patch(
        &app_url("default", "api"),
        &json!({"spec": {"instances": 2}}),
    )
    .await
    .expect(200, None);
}

#[tokio::test]
async fn a_forced_delete_of_a_deployment_skips_the_controllers_rollback() {
    let h = Harness::new();
    for name in ["d-plain", "d-forced"] {
        h.post(
            DEPLOYMENTS,
            &json!({
                "apiVersion": "pacer.dev/v1", "kind": "Deployment",
                "metadata": {"name": name, "finalizers": ["pacer.dev/deployment-controller"]},
                "spec": {
                    "affectedApps": [{"namespace": "default", "name": "web"}],
                    "steps": [{"actions": [{"action": "ScaleApplication",
                                            "app": {"namespace": "default", "name": "web"}}]}],
                },
            }),
        )
        .await
        .expect(201, None);
    }
    // An ordinary delete leaves the rollback to the controller: the object is only marked.
    h.delete(&format!("{DEPLOYMENTS}/d-plain"), None)
        .await
        .expect(200, None);
    let marked = h
        .get(&format!("{DEPLOYMENTS}/d-plain"))
        .await
        .expect(200, None);
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    // A forced one goes at once.
    h.delete(&format!("{DEPLOYMENTS}/d-forced?force=true"), None)
        .await
        .expect(200, None);
    h.get(&format!("{DEPLOYMENTS}/d-forced"))
        .await
        .expect(404, Some("NotFound"));
}
