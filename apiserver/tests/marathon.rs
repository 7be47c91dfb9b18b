//! Marathon's `/v2` API on the router (no socket, no controllers): Marathon's own example
//! definitions are accepted unchanged and read back equivalent, bulk and partial updates,
//! errors in Marathon's shapes (400, 404, 409 exists, 409 locked, 422 with JSON paths), tasks
//! from Instances, filters and embeds, restart, delete, versions, deployments, info, leader and
//! ping — and that `/v2` and `/apis` show the same objects.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, header};
use common::marathon::{CLIENT_TASK_KEYS, assert_contains, example, expect, send_json};
use common::{Harness, app_url};
use serde_json::{Value, json};

/// Keys of an app that marathon-python 0.13.0 accepts (`MarathonApp.__init__`).
const CLIENT_APP_KEYS: &[&str] = &[
    "acceptedResourceRoles",
    "args",
    "backoffFactor",
    "backoffSeconds",
    "cmd",
    "constraints",
    "container",
    "cpus",
    "dependencies",
    "deployments",
    "disk",
    "env",
    "executor",
    "healthChecks",
    "id",
    "role",
    "instances",
    "killSelection",
    "labels",
    "lastTaskFailure",
    "maxLaunchDelaySeconds",
    "mem",
    "ports",
    "requirePorts",
    "storeUrls",
    "taskRateLimit",
    "tasks",
    "tasksRunning",
    "tasksStaged",
    "tasksHealthy",
    "taskKillGracePeriodSeconds",
    "tasksUnhealthy",
    "upgradeStrategy",
    "unreachableStrategy",
    "uris",
    "user",
    "version",
    "versionInfo",
    "ipAddress",
    "fetch",
    "taskStats",
    "readinessChecks",
    "readinessCheckResults",
    "secrets",
    "portDefinitions",
    "residency",
    "gpus",
    "networks",
];

#[track_caller]
fn assert_client_keys(app: &Value, extra: &[&str]) {
    for key in app.as_object().unwrap().keys() {
        assert!(
            CLIENT_APP_KEYS.contains(&key.as_str()) || extra.contains(&key.as_str()),
            "key {key:?} would break marathon-python: {app:#}"
        );
    }
    let strategy = app["upgradeStrategy"].as_object().unwrap();
    for key in strategy.keys() {
        assert!(
            ["minimumHealthCapacity", "maximumOverCapacity"].contains(&key.as_str()),
            "upgradeStrategy.{key}"
        );
    }
}

#[tokio::test]
async fn marathon_example_apps_post_and_read_back_equivalent() {
    let h = Harness::new();
    // Marathon's full example sets both `cmd` and `args` and references a secret it does not
    // declare: the schemas' validation refuses both, in Marathon's 422 shape.
    let refused = expect(
        &send_json(&h, Method::POST, "/v2/apps", &example("app.json")).await,
        422,
    );
    let paths: Vec<&str> = refused["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|detail| detail["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/args", "/env/PASSWORD/secret"], "{refused:#}");
    // Without those two mistakes, every other field of it round-trips.
    let mut full = example("app.json");
    full.as_object_mut().unwrap().remove("args");
    full["env"]["PASSWORD"] = json!({"secret": "secret1"});
    let examples = [
        ("app.json (cmd only, declared secret)", full),
        ("app-simple.json", example("app-simple.json")),
        (
            "app-check-http-example.json",
            example("app-check-http-example.json"),
        ),
    ];
    for (name, definition) in examples {
        let id = format!(
            "/{}",
            definition["id"].as_str().unwrap().trim_start_matches('/')
        );
        let reply = send_json(&h, Method::POST, "/v2/apps", &definition).await;
        let created = expect(&reply, 201);
        assert_eq!(
            reply
                .headers
                .get(header::LOCATION)
                .unwrap()
                .to_str()
                .unwrap(),
            format!("/v2/apps{id}"),
            "{name}"
        );
        assert_eq!(created["id"], id.as_str(), "{name}");
        assert!(
            created["version"].as_str().unwrap().ends_with('Z'),
            "{name}"
        );
        assert_eq!(created["deployments"], json!([]), "{name}");
        assert_eq!(created["tasks"], json!([]), "{name}");
        assert_eq!(created["tasksRunning"], 0, "{name}");

        let got = expect(&h.get(&format!("/v2/apps{id}")).await, 200)["app"].clone();
        let mut expected = definition.clone();
        expected.as_object_mut().unwrap().remove("id");
        assert_contains(&expected, &got, name);
        // Marathon's defaults are filled in.
        for key in [
            "backoffSeconds",
            "maxLaunchDelaySeconds",
            "upgradeStrategy",
            "versionInfo",
        ] {
            assert!(got.get(key).is_some(), "{name}: {key} missing");
        }
        let own_keys: Vec<&str> = definition
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_client_keys(&got, &own_keys);

        // ... and the same object is an App under /apis.
        let object = pacer_schemas::MarathonId::parse(&id)
            .unwrap()
            .to_object()
            .unwrap();
        let app = h
            .get(&app_url(&object.namespace, &object.name))
            .await
            .expect(200, None);
        assert_eq!(
            app["spec"]["cmd"],
            definition.get("cmd").cloned().unwrap_or(Value::Null)
        );
    }
    let listed = expect(&h.get("/v2/apps").await, 200);
    let ids: Vec<&str> = listed["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|app| app["id"].as_str().unwrap())
        .collect();
    for id in ["/foo", "/simple", "/http-index-test"] {
        assert!(ids.contains(&id), "{ids:?}");
    }
}

#[tokio::test]
async fn bulk_put_and_patch_and_partial_updates() {
    let h = Harness::new();
    let created = expect(
        &send_json(&h, Method::PUT, "/v2/apps", &example("apps_create.json")).await,
        200,
    );
    assert!(created["deploymentId"].is_string() && created["version"].is_string());
    let sleep60 = expect(&h.get("/v2/apps/test/sleep60").await, 200)["app"].clone();
    assert_eq!(sleep60["instances"], 2);
    assert_eq!(
        sleep60["dependencies"],
        json!(["/test/sleep120", "/other/namespace/or/app"])
    );
    // The nested id is namespace `test`, name `sleep60`.
    h.get(&app_url("test", "sleep60")).await.expect(200, None);

    expect(
        &send_json(&h, Method::PATCH, "/v2/apps", &example("apps_patch.json")).await,
        200,
    );
    let sleep60 = expect(&h.get("/v2/apps/test/sleep60").await, 200)["app"].clone();
    assert_eq!(sleep60["cpus"], 0.3);
    assert_eq!(
        sleep60["cmd"], "sleep 60",
        "PATCH keeps what it does not name"
    );

    // A bulk update with one invalid app writes none of them.
    let bulk =
        json!([{"id": "/test/sleep60", "instances": 7}, {"id": "/test/sleep120", "cpus": 0}]);
    let refused = expect(&send_json(&h, Method::PUT, "/v2/apps", &bulk).await, 422);
    assert_eq!(refused["details"][0]["path"], "/cpus", "{refused:#}");
    assert_eq!(
        expect(&h.get("/v2/apps/test/sleep60").await, 200)["app"]["instances"],
        2
    );

    // PUT /v2/apps/{id}: partial by default (what marathon-python's scale_app relies on).
    expect(
        &send_json(
            &h,
            Method::PUT,
            "/v2/apps/test/sleep120?force=True",
            &json!({"instances": 5}),
        )
        .await,
        200,
    );
    let sleep120 = expect(&h.get("/v2/apps/test/sleep120").await, 200)["app"].clone();
    assert_eq!(
        (sleep120["instances"].clone(), sleep120["cmd"].clone()),
        (json!(5), json!("sleep 120"))
    );
    // partialUpdate=false replaces the definition (defaults come back).
    expect(
        &send_json(
            &h,
            Method::PUT,
            "/v2/apps/test/sleep120?partialUpdate=false",
            &json!({"cmd": "sleep 5"}),
        )
        .await,
        200,
    );
    let sleep120 = expect(&h.get("/v2/apps/test/sleep120").await, 200)["app"].clone();
    assert_eq!(
        (sleep120["instances"].clone(), sleep120["cpus"].clone()),
        (json!(1), json!(1))
    );

    // PUT of an absent id creates it: 201 with a DeploymentResult and a Location.
    let reply = send_json(
        &h,
        Method::PUT,
        "/v2/apps/prod/shop/web",
        &json!({"cmd": "sleep 1"}),
    )
    .await;
    let result = expect(&reply, 201);
    assert!(result["deploymentId"].is_string());
    assert_eq!(
        reply.headers.get(header::LOCATION).unwrap(),
        "/v2/apps/prod/shop/web"
    );
    h.get(&app_url("prod", "shop.web")).await.expect(200, None);

    // PATCH of one app (Marathon's app_patch.json example).
    send_json(
        &h,
        Method::POST,
        "/v2/apps",
        &json!({"id": "/foo", "cmd": "sleep 1"}),
    )
    .await;
    expect(
        &send_json(
            &h,
            Method::PATCH,
            "/v2/apps/foo",
            &example("app_patch.json"),
        )
        .await,
        200,
    );
    assert_eq!(
        expect(&h.get("/v2/apps/foo").await, 200)["app"]["instances"],
        2
    );
    let missing = expect(
        &send_json(&h, Method::PATCH, "/v2/apps/nope", &json!({"instances": 1})).await,
        404,
    );
    assert_eq!(missing["message"], "App '/nope' does not exist");
}

#[tokio::test]
async fn errors_come_in_marathon_shapes() {
    let h = Harness::new();
    // (body, status, path of the first detail)
    let cases = [
        (
            json!({"id": "/a", "cmd": "x", "cpus": 0}),
            422,
            Some("/cpus"),
        ),
        (
            json!({"id": "/a", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": 2}}),
            422,
            Some("/upgradeStrategy/minimumHealthCapacity"),
        ),
        (
            json!({"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "HTTP", "portIndex": 5}]}),
            422,
            Some("/healthChecks(0)/portIndex"),
        ),
        (
            json!({"id": "/a", "cmd": "x", "container": {"type": "DOCKER", "docker": {"network": "HOST"}}}),
            422,
            Some("/container/docker/image"),
        ),
        (json!({"id": "/Bad_Id", "cmd": "x"}), 422, Some("/id")),
        (json!({"cmd": "x"}), 422, Some("/id")),
        (
            json!({"id": "/a", "cmd": "x", "bogus": 1}),
            422,
            Some("/bogus"),
        ),
        (
            json!({"id": "/a", "cmd": "x", "instances": "two"}),
            400,
            Some("/instances"),
        ),
    ];
    for (body, code, path) in cases {
        let error = expect(&send_json(&h, Method::POST, "/v2/apps", &body).await, code);
        assert!(error["message"].is_string(), "{body}: {error}");
        if let Some(path) = path {
            assert_eq!(error["details"][0]["path"], path, "{body}: {error:#}");
            assert!(!error["details"][0]["errors"].as_array().unwrap().is_empty());
        }
        assert_eq!(
            expect(&h.get("/v2/apps/a").await, 404)["message"],
            "App '/a' does not exist"
        );
    }
    let malformed = h
        .call(
            Method::POST,
            "/v2/apps",
            Some("application/json"),
            "{not json",
        )
        .await;
    assert_eq!(expect(&malformed, 400)["message"], "Invalid JSON");

    send_json(
        &h,
        Method::POST,
        "/v2/apps",
        &json!({"id": "/a", "cmd": "x"}),
    )
    .await;
    let exists = expect(
        &send_json(
            &h,
            Method::POST,
            "/v2/apps",
            &json!({"id": "/a", "cmd": "x"}),
        )
        .await,
        409,
    );
    assert_eq!(exists["message"], "An app with id [/a] already exists.");
    for (uri, id) in [
        ("/v2/apps/nope", "/nope"),
        ("/v2/apps/nope/tasks", "/nope"),
        ("/v2/apps/nope/versions", "/nope"),
        ("/v2/apps/group/nope", "/group/nope"),
    ] {
        let message = format!("App '{id}' does not exist");
        assert_eq!(expect(&h.get(uri).await, 404)["message"], message, "{uri}");
    }
    let delete = h
        .call(Method::DELETE, "/v2/apps/nope", None, Body::empty())
        .await;
    assert_eq!(
        expect(&delete, 404)["message"],
        "App '/nope' does not exist"
    );
}

#[tokio::test]
async fn a_locked_app_is_409_with_its_deployments_until_forced() {
    let h = Harness::new();
    send_json(
        &h,
        Method::POST,
        "/v2/apps",
        &json!({"id": "/web", "cmd": "sleep 1"}),
    )
    .await;
    h.post(
        "/apis/pacer.dev/v1/deployments",
        &json!({"metadata": {"name": "d-1"},
                "spec": {"affectedApps": [{"namespace": "default", "name": "web"}],
                         "steps": [{"actions": [{"action": "StartApplication",
                                                 "app": {"namespace": "default", "name": "web"}}]}]}}),
    )
    .await
    .expect(201, None);
    h.merge_patch(
        &format!("{}/status", app_url("default", "web")),
        &json!({"status": {"deployments": ["d-1"]}}),
    )
    .await
    .expect(200, None);

    let app = expect(&h.get("/v2/apps/web").await, 200)["app"].clone();
    assert_eq!(app["deployments"], json!([{"id": "d-1"}]));
    let deployments = expect(&h.get("/v2/deployments").await, 200);
    assert_eq!(deployments[0]["id"], "d-1");
    assert_eq!(deployments[0]["affectedApps"], json!(["/web"]));
    assert_eq!(
        deployments[0]["steps"],
        json!([{"actions": [{"action": "StartApplication", "app": "/web"}]}])
    );
    for key in [
        "version",
        "currentActions",
        "currentStep",
        "totalSteps",
        "affectedPods",
    ] {
        assert!(deployments[0].get(key).is_some(), "{key}");
    }

    let refused = [
        send_json(&h, Method::PUT, "/v2/apps/web", &json!({"instances": 3})).await,
        send_json(&h, Method::PATCH, "/v2/apps/web", &json!({"instances": 3})).await,
        h.call(Method::POST, "/v2/apps/web/restart", None, Body::empty())
            .await,
        h.call(Method::DELETE, "/v2/apps/web", None, Body::empty())
            .await,
    ];
    for reply in refused {
        let body = expect(&reply, 409);
        assert_eq!(body["deployments"], json!([{"id": "d-1"}]), "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("App is locked by one or more deployments.")
        );
    }
    // A bulk update touching the locked app writes nothing.
    send_json(
        &h,
        Method::POST,
        "/v2/apps",
        &json!({"id": "/other", "cmd": "sleep 1"}),
    )
    .await;
    let bulk = json!([{"id": "/other", "instances": 4}, {"id": "/web", "instances": 4}]);
    let body = expect(&send_json(&h, Method::PUT, "/v2/apps", &bulk).await, 409);
    assert_eq!(body["deployments"], json!([{"id": "d-1"}]));
    assert_eq!(
        expect(&h.get("/v2/apps/other").await, 200)["app"]["instances"],
        1
    );
    // marathon-python sends `force=True`.
    expect(
        &send_json(
            &h,
            Method::PUT,
            "/v2/apps/web?force=True",
            &json!({"instances": 3}),
        )
        .await,
        200,
    );
    assert_eq!(
        expect(&h.get("/v2/apps/web").await, 200)["app"]["instances"],
        3
    );
}

#[tokio::test]
async fn tasks_counts_filters_and_embeds_come_from_instances() {
    let h = Harness::new();
    send_json(
        &h,
        Method::POST,
        "/v2/apps",
        &json!({"id": "/prod/web", "cmd": "serve", "labels": {"tier": "front"}}),
    )
    .await;
    send_json(
        &h,
        Method::POST,
        "/v2/apps",
        &json!({"id": "/prod/db", "cmd": "database", "labels": {"tier": "back"}}),
    )
    .await;
    // An Instance of /prod/web, running on n1, as the controllers and the agent write it.
    h.post(
        "/apis/pacer.dev/v1/namespaces/prod/instances",
        &json!({"metadata": {"name": "web-abc12", "labels": {"pacer.dev/app": "web"}},
                "spec": {"app": "web", "appVersion": "2026-01-01T00:00:00.000Z", "nodeName": "n1",
                         "hostPorts": [31000]}}),
    )
    .await
    .expect(201, None);
    h.merge_patch(
        "/apis/pacer.dev/v1/namespaces/prod/instances/web-abc12/status",
        &json!({"status": {"phase": "Running", "host": "n1.example", "healthy": true,
                           "stagedAt": "2026-01-01T00:00:01Z",
                           "startedAt": "2026-01-01T00:00:02.123456789Z"}}),
    )
    .await
    .expect(200, None);

    let tasks = expect(&h.get("/v2/apps/prod/web/tasks").await, 200)["tasks"].clone();
    assert_eq!(tasks.as_array().unwrap().len(), 1);
    let task = &tasks[0];
    assert_eq!(task["id"], "prod_web.web-abc12");
    assert_eq!(task["appId"], "/prod/web");
    assert_eq!(task["host"], "n1.example");
    assert_eq!(task["slaveId"], "n1");
    assert_eq!(task["ports"], json!([31000]));
    assert_eq!(task["state"], "TASK_RUNNING");
    assert_eq!(task["version"], "2026-01-01T00:00:00.000Z");
    // Timestamps as marathon-python parses them: milliseconds and `Z`.
    assert_eq!(task["startedAt"], "2026-01-01T00:00:02.123Z");
    assert_eq!(task["stagedAt"], "2026-01-01T00:00:01.000Z");
    for key in task.as_object().unwrap().keys() {
        assert!(CLIENT_TASK_KEYS.contains(&key.as_str()), "task key {key}");
    }

    let web = expect(
        &h.get("/v2/apps/prod/web?embed=app.tasks&embed=app.lastTaskFailure")
            .await,
        200,
    )["app"]
        .clone();
    assert_eq!(
        (web["tasksRunning"].clone(), web["tasksHealthy"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(web["tasks"][0]["id"], "prod_web.web-abc12");
    // One app always carries its tasks (Marathon's `show` adds them for compatibility); a
    // list carries them only when asked.
    let plain = expect(&h.get("/v2/apps/prod/web").await, 200)["app"].clone();
    assert_eq!(plain["tasks"][0]["id"], "prod_web.web-abc12", "{plain:#}");
    let listed = expect(&h.get("/v2/apps").await, 200)["apps"][0].clone();
    assert!(listed.get("tasks").is_none(), "{listed:#}");

    // (query, ids listed)
    for (query, expect_ids) in [
        ("", vec!["/prod/db", "/prod/web"]),
        ("?cmd=serv", vec!["/prod/web"]),
        ("?id=/prod/d", vec!["/prod/db"]),
        ("?label=tier==back", vec!["/prod/db"]),
        ("?label=tier", vec!["/prod/db", "/prod/web"]),
        ("?label=tier!=back", vec!["/prod/web"]),
        (
            "?label=tier%20in%20(front)&embed=apps.tasks&embed=apps.counts",
            vec!["/prod/web"],
        ),
    ] {
        let listed = expect(&h.get(&format!("/v2/apps{query}")).await, 200);
        let mut ids: Vec<&str> = listed["apps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|app| app["id"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, expect_ids, "{query}");
        if query.contains("embed=apps.tasks") {
            assert_eq!(listed["apps"][0]["tasks"][0]["appId"], "/prod/web");
        }
    }
}

#[tokio::test]
async fn apps_written_through_apis_show_in_v2_and_restart_delete_versions_work() {
    let h = Harness::new();
    h.create_app(
        "prod",
        "shop.web",
        json!({"spec": {"instances": 2, "labels": {"a": "b"}}}),
    )
    .await;
    let app = expect(&h.get("/v2/apps/prod/shop/web").await, 200)["app"].clone();
    assert_eq!(app["id"], "/prod/shop/web");
    assert_eq!(app["instances"], 2);
    assert_eq!(app["labels"], json!({"a": "b"}));

    let versions = expect(&h.get("/v2/apps/prod/shop/web/versions").await, 200)["versions"].clone();
    let version = versions[0].as_str().unwrap().to_owned();
    assert_eq!(version, app["version"].as_str().unwrap());
    let at = expect(
        &h.get(&format!("/v2/apps/prod/shop/web/versions/{version}"))
            .await,
        200,
    );
    assert_eq!(
        (at["id"].clone(), at["instances"].clone()),
        (json!("/prod/shop/web"), json!(2))
    );
    expect(
        &h.get("/v2/apps/prod/shop/web/versions/2000-01-01T00:00:00.000Z")
            .await,
        404,
    );

    let restarted = expect(
        &h.call(
            Method::POST,
            "/v2/apps/prod/shop/web/restart",
            None,
            Body::empty(),
        )
        .await,
        200,
    );
    assert!(restarted["deploymentId"].is_string() && restarted["version"].is_string());
    let object = h.get(&app_url("prod", "shop.web")).await.expect(200, None);
    assert!(object["metadata"]["annotations"]["pacer.dev/restartedAt"].is_string());

    let deleted = expect(
        &h.call(
            Method::DELETE,
            "/v2/apps/prod/shop/web",
            None,
            Body::empty(),
        )
        .await,
        200,
    );
    assert_eq!(deleted.as_object().unwrap().len(), 2);
    assert!(deleted["deploymentId"].is_string() && deleted["version"].is_string());
    h.get(&app_url("prod", "shop.web")).await.expect(404, None);
}

#[tokio::test]
async fn info_leader_and_ping() {
    let h = Harness::new();
    let request = |uri: &str| {
        Request::builder()
            .uri(uri)
            .header(header::HOST, "pacer.example:8080")
            .body(Body::empty())
            .unwrap()
    };
    let info = expect(&h.send(request("/v2/info")).await, 200);
    assert_eq!(info["leader"], "pacer.example:8080");
    assert_eq!(info["elected"], true);
    for key in ["marathon_config", "zookeeper_config", "http_config"] {
        assert!(
            info[key].is_object(),
            "{key} must be an object for marathon-python"
        );
    }
    assert_eq!(info["http_config"]["http_port"], 8080);
    let leader = expect(&h.send(request("/v2/leader")).await, 200);
    assert_eq!(leader, json!({"leader": "pacer.example:8080"}));
    let pong = h.send(request("/ping")).await;
    assert_eq!(
        (pong.status.as_u16(), pong.body.as_ref()),
        (200, b"pong".as_ref())
    );
    assert_eq!(expect(&h.get("/v2/deployments").await, 200), json!([]));
}
