//! Marathon's task, deployment and leader endpoints on the router (no socket, no controllers):
//! killing tasks by app, host or id with and without `scale` (goal `Decommissioned`, the
//! App's `instances` lowered, the deployment lock), `GET /v2/tasks` with `status` filters and
//! as `text/plain`, `POST /v2/tasks/delete`, `embed=app.taskStats`, `DELETE
//! /v2/deployments/{id}` with and without `force`, and `DELETE /v2/leader` on real store
//! elections — with Marathon's error bodies (400, 404, 409).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, header};
use common::marathon::{CLIENT_TASK_KEYS, expect};
use common::{Harness, Reply, app_url};
use pacer_store::{Election, Store};
use serde_json::{Value, json};

#[track_caller]
fn assert_task_keys(task: &Value) {
    for key in task.as_object().unwrap().keys() {
        assert!(CLIENT_TASK_KEYS.contains(&key.as_str()), "task key {key}");
    }
}

async fn delete(h: &Harness, uri: &str) -> Reply {
    h.call(Method::DELETE, uri, None, Body::empty()).await
}

async fn create_v2_app(h: &Harness, app: Value) {
    let reply = h
        .call(
            Method::POST,
            "/v2/apps",
            Some("application/json"),
            app.to_string(),
        )
        .await;
    expect(&reply, 201);
}

/// An Instance of app `app` in `namespace`, as the controllers and the agent write it: bound
/// to `node` (unless `None`) with `phase`.
async fn instance(
    h: &Harness,
    namespace: &str,
    app: &str,
    name: &str,
    node: Option<&str>,
    phase: &str,
    host_ports: &[i32],
) {
    let mut spec = json!({"app": app, "appVersion": "2026-01-01T00:00:00.000Z", "goal": "Running"});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
        spec["hostPorts"] = json!(host_ports);
    }
    h.post(
        &format!("/apis/pacer.dev/v1/namespaces/{namespace}/instances"),
        &json!({"metadata": {"name": name, "labels": {"pacer.dev/app": app}}, "spec": spec}),
    )
    .await
    .expect(201, None);
    if phase != "Scheduled" {
        let mut status = json!({"phase": phase, "stagedAt": "2026-01-01T00:00:01Z"});
        if let Some(node) = node {
            status["host"] = json!(format!("{node}.example"));
        }
        if phase == "Running" {
            status["startedAt"] = json!("2026-01-01T00:00:02Z");
            status["healthy"] = json!(true);
        }
        h.merge_patch(
            &format!("/apis/pacer.dev/v1/namespaces/{namespace}/instances/{name}/status"),
            &json!({"status": status}),
        )
        .await
        .expect(200, None);
    }
}

async fn stored_instance(h: &Harness, namespace: &str, name: &str) -> Reply {
    h.get(&format!(
        "/apis/pacer.dev/v1/namespaces/{namespace}/instances/{name}"
    ))
    .await
}

async fn goal(h: &Harness, namespace: &str, name: &str) -> Value {
    stored_instance(h, namespace, name).await.expect(200, None)["spec"]["goal"].clone()
}

async fn v2_instances(h: &Harness, id: &str) -> Value {
    expect(&h.get(&format!("/v2/apps{id}")).await, 200)["app"]["instances"].clone()
}

/// A running Deployment `name` of App `default/web`, named in the App's status (what the
/// deployment controller writes), carrying the controller's finalizer.
async fn running_deployment(h: &Harness, name: &str) {
    h.post(
        "/apis/pacer.dev/v1/deployments",
        &json!({"metadata": {"name": name, "finalizers": ["pacer.dev/deployment-controller"]},
                "spec": {"affectedApps": [{"namespace": "default", "name": "web"}],
                         "steps": [{"actions": [{"action": "ScaleApplication",
                                                 "app": {"namespace": "default", "name": "web"}}]}]}}),
    )
    .await
    .expect(201, None);
    h.merge_patch(
        &format!("{}/status", app_url("default", "web")),
        &json!({"status": {"deployments": [name]}}),
    )
    .await
    .expect(200, None);
}

#[tokio::test]
async fn killing_tasks_decommissions_them_and_scale_lowers_the_app() {
    let h = Harness::new();
    create_v2_app(
        &h,
        json!({"id": "/prod/web", "cmd": "serve", "instances": 3}),
    )
    .await;
    instance(&h, "prod", "web", "web-a", Some("n1"), "Running", &[31000]).await;
    instance(&h, "prod", "web", "web-b", Some("n2"), "Running", &[31001]).await;
    instance(&h, "prod", "web", "web-c", None, "Scheduled", &[]).await;

    // One task, without scale: `{"task": …}`; the instance is decommissioned, the app keeps 3.
    let killed = expect(
        &delete(&h, "/v2/apps/prod/web/tasks/prod_web.web-a").await,
        200,
    );
    assert_eq!(killed["task"]["id"], "prod_web.web-a", "{killed}");
    assert_eq!(killed["task"]["appId"], "/prod/web");
    assert_task_keys(&killed["task"]);
    assert_eq!(goal(&h, "prod", "web-a").await, "Decommissioned");
    assert_eq!(goal(&h, "prod", "web-b").await, "Running");
    assert_eq!(v2_instances(&h, "/prod/web").await, 3);

    // Unknown task, unknown app: Marathon's 404 bodies.
    let missing = expect(
        &delete(&h, "/v2/apps/prod/web/tasks/prod_web.web-zzz").await,
        404,
    );
    assert_eq!(
        missing,
        json!({"message": "Task 'prod_web.web-zzz' does not exist"})
    );
    let missing = expect(&delete(&h, "/v2/apps/prod/nope/tasks").await, 404);
    assert_eq!(
        missing,
        json!({"message": "App '/prod/nope' does not exist"})
    );
    // scale and wipe together: 400, nothing killed.
    let both = expect(
        &delete(&h, "/v2/apps/prod/web/tasks?scale=true&wipe=true").await,
        400,
    );
    assert_eq!(
        both,
        json!({"message": "You cannot use scale and wipe at the same time."})
    );
    assert_eq!(goal(&h, "prod", "web-b").await, "Running");

    // The tasks on host n2, with scale (as marathon-python sends it): the app drops to 2.
    let scaled = expect(
        &delete(
            &h,
            "/v2/apps/prod/web/tasks?host=n2.example&scale=True&wipe=False",
        )
        .await,
        200,
    );
    assert_eq!(scaled.as_object().unwrap().len(), 2, "{scaled}");
    assert!(scaled["deploymentId"].is_string() && scaled["version"].is_string());
    assert_eq!(goal(&h, "prod", "web-b").await, "Decommissioned");
    assert_eq!(v2_instances(&h, "/prod/web").await, 2);
    // Killing an instance already being killed does not scale again.
    expect(
        &delete(&h, "/v2/apps/prod/web/tasks/prod_web.web-b?scale=true").await,
        200,
    );
    assert_eq!(v2_instances(&h, "/prod/web").await, 2);

    // Every task, with wipe: `{"tasks": […]}`; the unbound one is deleted outright (nothing
    // would ever report it ended).
    let wiped = expect(&delete(&h, "/v2/apps/prod/web/tasks?wipe=true").await, 200);
    let mut ids: Vec<&str> = wiped["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| task["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        vec!["prod_web.web-a", "prod_web.web-b", "prod_web.web-c"]
    );
    for task in wiped["tasks"].as_array().unwrap() {
        assert_task_keys(task);
    }
    stored_instance(&h, "prod", "web-c")
        .await
        .expect(404, Some("NotFound"));
    assert_eq!(v2_instances(&h, "/prod/web").await, 2);
}

#[tokio::test]
async fn kill_with_scale_is_locked_by_a_running_deployment_unless_forced() {
    let h = Harness::new();
    create_v2_app(&h, json!({"id": "/web", "cmd": "serve", "instances": 2})).await;
    instance(&h, "default", "web", "web-a", Some("n1"), "Running", &[]).await;
    instance(&h, "default", "web", "web-b", Some("n1"), "Running", &[]).await;
    running_deployment(&h, "d-1").await;

    let locked = expect(
        &delete(&h, "/v2/apps/web/tasks/web.web-a?scale=true").await,
        409,
    );
    assert_eq!(locked["deployments"], json!([{"id": "d-1"}]), "{locked}");
    assert_eq!(
        goal(&h, "default", "web-a").await,
        "Running",
        "nothing killed"
    );
    let locked = h
        .call(
            Method::POST,
            "/v2/tasks/delete?scale=true",
            Some("application/json"),
            json!({"ids": ["web.web-a"]}).to_string(),
        )
        .await;
    assert_eq!(expect(&locked, 409)["deployments"], json!([{"id": "d-1"}]));
    assert_eq!(
        goal(&h, "default", "web-a").await,
        "Running",
        "nothing killed"
    );

    // Without scale a kill is no change of the app: allowed.
    expect(&delete(&h, "/v2/apps/web/tasks/web.web-b").await, 200);
    assert_eq!(goal(&h, "default", "web-b").await, "Decommissioned");
    // Forced: killed and scaled.
    let forced = expect(
        &delete(&h, "/v2/apps/web/tasks/web.web-a?scale=true&force=true").await,
        200,
    );
    assert!(forced["deploymentId"].is_string(), "{forced}");
    assert_eq!(goal(&h, "default", "web-a").await, "Decommissioned");
    assert_eq!(v2_instances(&h, "/web").await, 1);
}

#[tokio::test]
async fn v2_tasks_lists_filters_by_status_and_speaks_text() {
    let h = Harness::new();
    create_v2_app(
        &h,
        json!({"id": "/prod/web", "cmd": "serve", "instances": 2,
               "portDefinitions": [{"port": 10001, "protocol": "tcp"}]}),
    )
    .await;
    create_v2_app(
        &h,
        json!({"id": "/db", "cmd": "database", "portDefinitions": []}),
    )
    .await;
    instance(&h, "prod", "web", "web-a", Some("n1"), "Running", &[31000]).await;
    instance(&h, "prod", "web", "web-b", Some("n2"), "Staging", &[31005]).await;
    instance(&h, "default", "db", "db-a", Some("n2"), "Running", &[]).await;

    let ids = |body: &Value| {
        let mut ids: Vec<String> = body["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|task| task["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort_unstable();
        ids
    };
    let all = expect(&h.get("/v2/tasks").await, 200);
    assert_eq!(
        ids(&all),
        vec!["db.db-a", "prod_web.web-a", "prod_web.web-b"]
    );
    for task in all["tasks"].as_array().unwrap() {
        assert_task_keys(task);
    }
    for (query, expected) in [
        ("?status=running", vec!["db.db-a", "prod_web.web-a"]),
        ("?status=staging", vec!["prod_web.web-b"]),
        (
            "?status[]=staging&status[]=running",
            vec!["db.db-a", "prod_web.web-a", "prod_web.web-b"],
        ),
        ("?status=killed", vec![]),
    ] {
        let listed = expect(&h.get(&format!("/v2/tasks{query}")).await, 200);
        assert_eq!(ids(&listed), expected, "{query}");
    }

    // Marathon's text form: per service port, the running tasks' host:port; an app without
    // ports gets one line of hosts.
    let text = |uri: &str| {
        Request::builder()
            .uri(uri)
            .header(header::ACCEPT, "text/plain")
            .body(Body::empty())
            .unwrap()
    };
    let reply = h.send(text("/v2/tasks")).await;
    assert_eq!(reply.status.as_u16(), 200);
    assert!(
        reply
            .headers
            .get(header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let body = String::from_utf8(reply.body.to_vec()).unwrap();
    let mut lines: Vec<&str> = body.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        vec![
            "db\t \tn2.example \t",
            "prod_web\t10001\tn1.example:31000\t"
        ],
        "{body:?}"
    );
    let reply = h.send(text("/v2/apps/prod/web/tasks")).await;
    assert_eq!(
        String::from_utf8(reply.body.to_vec()).unwrap(),
        "prod_web\t10001\tn1.example:31000\t\n"
    );

    // taskStats: the running task's counts and life time.
    let app = expect(&h.get("/v2/apps/prod/web?embed=app.taskStats").await, 200)["app"].clone();
    let total = &app["taskStats"]["totalSummary"]["stats"];
    assert_eq!(
        total["counts"],
        json!({"staged": 1, "running": 1, "healthy": 1, "unhealthy": 0}),
        "{app:#}"
    );
    assert!(total["lifeTime"]["averageSeconds"].as_f64().unwrap() > 0.0);
    assert!(total["lifeTime"]["medianSeconds"].as_f64().unwrap() > 0.0);
    let plain = expect(&h.get("/v2/apps/prod/web").await, 200)["app"].clone();
    assert!(plain.get("taskStats").is_none());
}

#[tokio::test]
async fn post_tasks_delete_kills_named_tasks_of_several_apps() {
    let h = Harness::new();
    create_v2_app(
        &h,
        json!({"id": "/prod/web", "cmd": "serve", "instances": 2}),
    )
    .await;
    create_v2_app(&h, json!({"id": "/db", "cmd": "database", "instances": 2})).await;
    instance(&h, "prod", "web", "web-a", Some("n1"), "Running", &[]).await;
    instance(&h, "prod", "web", "web-b", Some("n1"), "Running", &[]).await;
    instance(&h, "default", "db", "db-a", Some("n2"), "Running", &[]).await;
    instance(&h, "default", "db", "db-b", Some("n2"), "Running", &[]).await;

    let post = |uri: &'static str, body: Value| {
        let h = &h;
        async move {
            h.call(
                Method::POST,
                uri,
                Some("application/json"),
                body.to_string(),
            )
            .await
        }
    };
    let invalid = expect(
        &post("/v2/tasks/delete", json!({"ids": ["not_known"]})).await,
        400,
    );
    assert_eq!(invalid, json!({"message": "Invalid task id 'not_known'"}));
    expect(&post("/v2/tasks/delete", json!({"id": []})).await, 400);

    // Unknown (well-formed) ids are skipped.
    let killed = expect(
        &post(
            "/v2/tasks/delete?scale=False",
            json!({"ids": ["prod_web.web-a", "db.db-a", "db.db-gone"]}),
        )
        .await,
        200,
    );
    let mut ids: Vec<&str> = killed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| task["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec!["db.db-a", "prod_web.web-a"]);
    assert_eq!(goal(&h, "prod", "web-a").await, "Decommissioned");
    assert_eq!(goal(&h, "default", "db-a").await, "Decommissioned");
    assert_eq!(v2_instances(&h, "/prod/web").await, 2);

    let scaled = expect(
        &post(
            "/v2/tasks/delete?scale=true",
            json!({"ids": ["prod_web.web-b", "db.db-b"]}),
        )
        .await,
        200,
    );
    assert!(scaled["deploymentId"].is_string() && scaled["version"].is_string());
    assert_eq!(goal(&h, "prod", "web-b").await, "Decommissioned");
    assert_eq!(goal(&h, "default", "db-b").await, "Decommissioned");
    assert_eq!(v2_instances(&h, "/prod/web").await, 1);
    assert_eq!(v2_instances(&h, "/db").await, 1);
}

#[tokio::test]
async fn deleting_a_deployment_asks_for_a_rollback_and_force_just_stops_it() {
    let h = Harness::new();
    create_v2_app(&h, json!({"id": "/web", "cmd": "serve"})).await;
    running_deployment(&h, "d-1").await;
    let deployment_url = |name: &str| format!("/apis/pacer.dev/v1/deployments/{name}");

    let missing = expect(&delete(&h, "/v2/deployments/nope").await, 404);
    assert_eq!(
        missing,
        json!({"message": "DeploymentPlan nope does not exist"})
    );

    // Without force: the deployment controller's finalizer holds the Deployment for the
    // rollback (no controller runs here, so it stays marked).
    let rolled = expect(&delete(&h, "/v2/deployments/d-1").await, 200);
    assert_eq!(rolled.as_object().unwrap().len(), 2, "{rolled}");
    assert!(rolled["deploymentId"].is_string() && rolled["version"].is_string());
    let marked = h.get(&deployment_url("d-1")).await.expect(200, None);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked:#}"
    );

    // With force (marathon-python's `force=True`): gone at once, 202 without a body.
    let reply = delete(&h, "/v2/deployments/d-1?force=True").await;
    assert_eq!(reply.status.as_u16(), 202);
    assert!(reply.body.is_empty(), "{:?}", reply.body);
    h.get(&deployment_url("d-1"))
        .await
        .expect(404, Some("NotFound"));

    // A finished deployment (kept only for `pacer rollout status`) is not Marathon's.
    h.post(
        "/apis/pacer.dev/v1/deployments",
        &json!({"metadata": {"name": "d-2"},
                "spec": {"affectedApps": [{"namespace": "default", "name": "web"}], "steps": []}}),
    )
    .await
    .expect(201, None);
    h.merge_patch(
        &format!("{}/status", deployment_url("d-2")),
        &json!({"status": {"phase": "Succeeded"}}),
    )
    .await
    .expect(200, None);
    expect(&delete(&h, "/v2/deployments/d-2").await, 404);
    h.get(&deployment_url("d-2")).await.expect(200, None);
}

#[tokio::test]
async fn abdicating_ends_the_lease_of_every_controllers_leader() {
    let h = Harness::new();
    let nobody = expect(&delete(&h, "/v2/leader").await, 404);
    assert_eq!(nobody, json!({"message": "There is no leader"}));

    let store: Arc<dyn Store> = h.store.clone();
    let campaign = |election: &'static str| {
        let store = Arc::clone(&store);
        async move {
            let lease = store.lease_grant(30).await.unwrap();
            let election = Election::new(Arc::clone(&store), election).unwrap();
            (lease, election)
        }
    };
    // Two elections; `deployment` has a second candidate waiting.
    let (lease_a, deployment) = campaign("/elections/deployment/").await;
    let first = deployment
        .campaign(lease_a, b"replica-a".to_vec())
        .await
        .unwrap();
    let (lease_b, _) = campaign("/elections/deployment/").await;
    let waiting = {
        let deployment = deployment.clone();
        tokio::spawn(async move { deployment.campaign(lease_b, b"replica-b".to_vec()).await })
    };
    let (lease_c, placement) = campaign("/elections/placement/").await;
    let placement_leader = placement
        .campaign(lease_c, b"replica-a".to_vec())
        .await
        .unwrap();
    // Let the waiting candidate register its key.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let answer = expect(&delete(&h, "/v2/leader").await, 200);
    assert_eq!(answer, json!({"message": "Leadership abdicated"}));
    // The leaders' leases are gone (their fenced writes fail), the waiting candidate leads.
    assert!(!first.is_leader().await.unwrap());
    assert!(!placement_leader.is_leader().await.unwrap());
    assert!(store.lease_keep_alive(lease_a).await.is_err());
    assert!(store.lease_keep_alive(lease_c).await.is_err());
    let second = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(second.is_leader().await.unwrap());
    assert_eq!(
        deployment.leader().await.unwrap().unwrap().value,
        b"replica-b".to_vec()
    );
    assert!(placement.leader().await.unwrap().is_none());
    // `GET /v2/leader` still answers (every API server serves).
    assert!(expect(&h.get("/v2/leader").await, 200)["leader"].is_string());
}
