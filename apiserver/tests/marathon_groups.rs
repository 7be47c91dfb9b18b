//! Marathon's `/v2/groups` on the router (no socket, no controllers): Marathon's example group
//! tree is accepted unchanged and read back as a tree derived from the App ids; create,
//! update (apps created, replaced and removed; `scaleBy`; `dryRun`), delete and versions; a
//! group write is one store transaction (an invalid or locked app writes nothing); errors in
//! Marathon's shapes with the app's path inside the group.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use axum::body::Body;
use axum::http::{Method, header};
use common::marathon::{assert_contains, example, expect, send_json};
use common::{Harness, app_url};
use serde_json::{Value, json};

/// Keys of a group that marathon-python 0.13.0 accepts (`MarathonGroup.__init__`).
const CLIENT_GROUP_KEYS: &[&str] = &["apps", "dependencies", "groups", "id", "pods", "version"];

/// Every group of the tree carries only keys marathon-python knows.
#[track_caller]
fn assert_group_keys(group: &Value) {
    for key in group.as_object().unwrap().keys() {
        assert!(
            CLIENT_GROUP_KEYS.contains(&key.as_str()),
            "group key {key:?} would break marathon-python: {group:#}"
        );
    }
    for child in group["groups"].as_array().into_iter().flatten() {
        assert_group_keys(child);
    }
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn instances(h: &Harness, namespace: &str, name: &str) -> i64 {
    h.get(&app_url(namespace, name)).await.expect(200, None)["spec"]["instances"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn marathon_example_group_tree_is_accepted_unchanged() {
    let h = Harness::new();
    let tree = example("group.json");

    // The root always exists: POST of `/` is Marathon's 409.
    let body = expect(&send_json(&h, Method::POST, "/v2/groups", &tree).await, 409);
    assert_eq!(
        body["message"],
        "Group / is already created. Use PUT to change this group."
    );

    // dryRun: the plan, nothing written.
    let before = h.revision().await;
    let plan = expect(
        &send_json(&h, Method::PUT, "/v2/groups?dryRun=true", &tree).await,
        200,
    );
    assert_eq!(h.revision().await, before, "a dry run writes nothing");
    let mut planned: Vec<(String, String)> = plan["steps"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|action| {
            (
                action["action"].as_str().unwrap().to_owned(),
                action["app"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    planned.sort();
    assert_eq!(
        planned,
        [
            (
                "StartApplication".to_owned(),
                "/tools/datadog-agent".to_owned()
            ),
            (
                "StartApplication".to_owned(),
                "/tools/docker/registry".to_owned()
            ),
            (
                "StartApplication".to_owned(),
                "/tools/oauth-server".to_owned()
            ),
        ]
    );

    // The example, unchanged, through PUT of the root: one transaction for its three apps.
    let result = expect(&send_json(&h, Method::PUT, "/v2/groups", &tree).await, 200);
    assert!(result["deploymentId"].is_string() && result["version"].is_string());
    assert_eq!(h.revision().await, before + 1, "one transaction");

    // They are Apps, named by the one id mapping.
    h.get(&app_url("tools", "oauth-server"))
        .await
        .expect(200, None);
    let registry = h
        .get(&app_url("tools", "docker.registry"))
        .await
        .expect(200, None);
    assert_eq!(registry["spec"]["container"]["docker"]["image"], "registry");

    // Read back as a tree with the example's apps.
    let root = expect(&h.get("/v2/groups").await, 200);
    assert_group_keys(&root);
    assert_eq!(root["id"], "/");
    assert_eq!(root["apps"], json!([]));
    assert_eq!(ids(&root["groups"]), ["/tools"]);
    let tools = &root["groups"][0];
    assert_eq!(
        ids(&tools["apps"]),
        ["/tools/datadog-agent", "/tools/oauth-server"]
    );
    // `/tools/log` had no apps: groups are derived from app ids, so it is not kept.
    assert_eq!(ids(&tools["groups"]), ["/tools/docker"]);
    let example_tools = &tree["groups"][0];
    for example_app in example_tools["apps"].as_array().unwrap() {
        let id = example_app["id"].as_str().unwrap();
        let read = tools["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|app| app["id"] == id)
            .unwrap();
        let mut expected = example_app.clone();
        for key in ["version", "versionInfo", "ports", "executor", "uris"] {
            expected.as_object_mut().unwrap().remove(key);
        }
        assert_contains(&expected, read, id);
    }
    let registry = &tools["groups"][0]["apps"][0];
    assert_eq!(registry["id"], "/tools/docker/registry");
    assert_eq!(registry["instances"], 1);
    assert_eq!(registry["mem"], 4096.0);

    for path in ["/v2/groups/", "/v2/groups//"] {
        assert_eq!(expect(&h.get(path).await, 200)["id"], "/", "{path}");
    }
    // The same through GET /v2/groups/{id} (marathon-python sends `//tools`).
    for path in ["/v2/groups/tools", "/v2/groups//tools", "/v2/groups/tools/"] {
        let group = expect(&h.get(path).await, 200);
        assert_eq!(group["id"], "/tools", "{path}");
        assert_eq!(group["apps"].as_array().unwrap().len(), 2, "{path}");
    }

    // PUT of the same tree again changes nothing.
    let before = h.revision().await;
    expect(&send_json(&h, Method::PUT, "/v2/groups", &tree).await, 200);
    assert_eq!(
        h.revision().await,
        before,
        "an unchanged tree writes nothing"
    );

    // A group from the example, POSTed on its own to an empty server: 201 with a Location.
    let h = Harness::new();
    let reply = send_json(&h, Method::POST, "/v2/groups", &tree["groups"][0]).await;
    let body = expect(&reply, 201);
    assert!(body["deploymentId"].is_string(), "{body}");
    assert!(
        reply.headers[header::LOCATION]
            .to_str()
            .unwrap()
            .ends_with("/v2/groups/tools")
    );
    let body = expect(
        &send_json(&h, Method::POST, "/v2/groups", &tree["groups"][0]).await,
        409,
    );
    assert_eq!(
        body["message"],
        "Group /tools is already created. Use PUT to change this group."
    );
}

#[tokio::test]
async fn groups_create_update_scale_delete_and_versions() {
    let h = Harness::new();
    expect(
        &send_json(
            &h,
            Method::POST,
            "/v2/apps",
            &json!({"id": "/outside", "cmd": "sleep 1"}),
        )
        .await,
        201,
    );
    let group = json!({
        "id": "/prod/shop",
        "dependencies": ["/infra/dns"],
        "apps": [
            {"id": "web", "cmd": "sleep 100", "instances": 2, "dependencies": ["db"]},
            {"id": "/prod/shop/api", "cmd": "sleep 100"},
        ],
        "groups": [{"id": "db", "apps": [{"id": "pg", "cmd": "sleep 100"}]}],
    });
    let before = h.revision().await;
    expect(
        &send_json(&h, Method::POST, "/v2/groups", &group).await,
        201,
    );
    assert_eq!(h.revision().await, before + 1, "one transaction");

    // Apps of the group are Apps of namespace `prod`; group dependencies reached each app.
    let web = h.get(&app_url("prod", "shop.web")).await.expect(200, None);
    assert_eq!(web["spec"]["dependencies"], json!(["db", "/infra/dns"]));
    let pg = h
        .get(&app_url("prod", "shop.db.pg"))
        .await
        .expect(200, None);
    assert_eq!(pg["spec"]["dependencies"], json!(["/infra/dns"]));

    let shop = expect(&h.get("/v2/groups/prod/shop").await, 200);
    assert_group_keys(&shop);
    assert_eq!(ids(&shop["apps"]), ["/prod/shop/api", "/prod/shop/web"]);
    assert_eq!(ids(&shop["groups"]), ["/prod/shop/db"]);
    assert_eq!(shop["dependencies"], json!(["/infra/dns"]));
    assert_eq!(shop["pods"], json!([]));
    let web = &shop["apps"][1];
    for key in ["tasksRunning", "deployments", "version", "versionInfo"] {
        assert!(web.get(key).is_some(), "{key}: {web}");
    }
    let root = expect(&h.get("/v2/groups").await, 200);
    assert_eq!(ids(&root["apps"]), ["/outside"]);
    assert_eq!(ids(&root["groups"]), ["/prod"]);

    // embed: only what is asked for; `group.apps.tasks` embeds the apps' tasks.
    let embedded = expect(
        &h.get("/v2/groups/prod/shop?embed=group.apps&embed=group.apps.tasks")
            .await,
        200,
    );
    assert!(embedded.get("groups").is_none(), "{embedded}");
    assert_eq!(embedded["apps"][0]["tasks"], json!([]));
    let only_groups = expect(&h.get("/v2/groups/prod?embed=group.groups").await, 200);
    assert!(only_groups.get("apps").is_none());
    assert_eq!(ids(&only_groups["groups"]), ["/prod/shop"]);

    // PUT: `apps` replaces the group's apps (api goes, web is replaced as given), the absent
    // `groups` keeps db.
    let update = json!({"id": "/prod/shop", "apps": [{"id": "web", "cmd": "sleep 200"}]});
    let result = expect(
        &send_json(&h, Method::PUT, "/v2/groups/prod/shop", &update).await,
        200,
    );
    assert!(result["deploymentId"].is_string() && result["version"].is_string());
    h.get(&app_url("prod", "shop.api")).await.expect(404, None);
    let web = h.get(&app_url("prod", "shop.web")).await.expect(200, None);
    assert_eq!(web["spec"]["cmd"], "sleep 200");
    assert_eq!(
        web["spec"]["instances"], 1,
        "a group's app is replaced, not merged"
    );
    h.get(&app_url("prod", "shop.db.pg"))
        .await
        .expect(200, None);

    // scaleBy scales every app below the group, rounding up.
    expect(
        &send_json(
            &h,
            Method::PUT,
            "/v2/groups/prod/shop",
            &json!({"scaleBy": 2.5}),
        )
        .await,
        200,
    );
    assert_eq!(instances(&h, "prod", "shop.web").await, 3);
    assert_eq!(instances(&h, "prod", "shop.db.pg").await, 3);
    assert_eq!(instances(&h, "default", "outside").await, 1);

    // Versions: the versions of the group's apps, newest first.
    let versions = expect(&h.get("/v2/groups/prod/shop/versions").await, 200);
    let versions = versions.as_array().unwrap();
    assert!(!versions.is_empty());
    let current = expect(&h.get("/v2/groups/prod/shop").await, 200)["version"].clone();
    assert_eq!(versions[0], current);
    expect(
        &h.get(&format!(
            "/v2/groups/prod/shop/versions/{}",
            current.as_str().unwrap()
        ))
        .await,
        200,
    );

    // A rollback to a version no app of the group has (no deployment controller here writes
    // AppVersions) is a 404.
    let body = expect(
        &send_json(
            &h,
            Method::PUT,
            "/v2/groups/prod/shop",
            &json!({"version": "2000-01-01T00:00:00.000Z"}),
        )
        .await,
        404,
    );
    assert_eq!(
        body["message"],
        "Group '/prod/shop' does not exist in version 2000-01-01T00:00:00.000Z"
    );

    // DELETE removes everything below the group, nothing else.
    let result = expect(
        &h.call(Method::DELETE, "/v2/groups/prod/shop", None, Body::empty())
            .await,
        200,
    );
    assert!(result["deploymentId"].is_string() && result["version"].is_string());
    h.get(&app_url("prod", "shop.web")).await.expect(404, None);
    h.get(&app_url("prod", "shop.db.pg"))
        .await
        .expect(404, None);
    h.get(&app_url("default", "outside"))
        .await
        .expect(200, None);
    let body = expect(&h.get("/v2/groups/prod/shop").await, 404);
    assert_eq!(body["message"], "Group '/prod/shop' does not exist");
    expect(
        &h.call(Method::DELETE, "/v2/groups/prod", None, Body::empty())
            .await,
        404,
    );
}

#[tokio::test]
async fn group_errors_name_the_app_inside_the_group_and_write_nothing() {
    let h = Harness::new();
    let before = h.revision().await;
    let body = expect(
        &send_json(
            &h,
            Method::POST,
            "/v2/groups",
            &json!({"id": "/g", "apps": [{"id": "ok", "cmd": "sleep 1"},
                                          {"id": "bad", "cmd": "sleep 1", "cpus": -1}]}),
        )
        .await,
        422,
    );
    assert_eq!(body["message"], "Object is not valid");
    assert_eq!(body["details"][0]["path"], "/apps(1)/cpus", "{body}");
    let body = expect(
        &send_json(
            &h,
            Method::POST,
            "/v2/groups",
            &json!({"id": "/g", "groups": [{"id": "sub", "apps": [{"id": "x", "cmd": "a", "cmd2": 1}]}]}),
        )
        .await,
        422,
    );
    assert_eq!(
        body["details"][0]["path"], "/groups(0)/apps(0)/cmd2",
        "{body}"
    );
    let body = expect(
        &send_json(
            &h,
            Method::POST,
            "/v2/groups",
            &json!({"id": "/group", "apps": [{"id": "/app", "cmd": "sleep 1"}]}),
        )
        .await,
        422,
    );
    assert_eq!(body["details"][0]["path"], "/apps(0)/id");
    assert_eq!(
        body["details"][0]["errors"][0],
        "identifier /app is not child of /group. Hint: use relative paths."
    );
    // A dependency cycle among the apps of one request.
    let body = expect(
        &send_json(
            &h,
            Method::POST,
            "/v2/groups",
            &json!({"id": "/g", "apps": [{"id": "a", "cmd": "sleep 1", "dependencies": ["b"]},
                                          {"id": "b", "cmd": "sleep 1", "dependencies": ["/g/a"]}]}),
        )
        .await,
        422,
    );
    assert_eq!(
        body["details"][0]["path"], "/apps(0)/dependencies",
        "{body}"
    );
    assert!(
        body["details"][0]["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("dependency cycle: "),
        "{body}"
    );
    assert_eq!(
        h.revision().await,
        before,
        "a failed group write writes nothing"
    );
    h.get(&app_url("g", "ok")).await.expect(404, None);

    let reply = h
        .call(
            Method::POST,
            "/v2/groups",
            Some("application/json"),
            "{not json",
        )
        .await;
    assert_eq!(expect(&reply, 400)["message"], "Invalid JSON");
    let body = expect(&h.get("/v2/groups/nope").await, 404);
    assert_eq!(body["message"], "Group '/nope' does not exist");
    let body = expect(
        &send_json(&h, Method::PUT, "/v2/groups/nope", &json!({"scaleBy": 2})).await,
        404,
    );
    assert_eq!(body["message"], "Group '/nope' does not exist");
}

#[tokio::test]
async fn a_locked_app_refuses_its_group_write_until_forced() {
    let h = Harness::new();
    let group =
        json!({"id": "/g", "apps": [{"id": "a", "cmd": "sleep 1"}, {"id": "b", "cmd": "sleep 1"}]});
    expect(
        &send_json(&h, Method::POST, "/v2/groups", &group).await,
        201,
    );
    h.post(
        "/apis/pacer.dev/v1/deployments",
        &json!({"metadata": {"name": "d-1"},
                "spec": {"affectedApps": [{"namespace": "g", "name": "b"}],
                         "steps": [{"actions": [{"action": "StartApplication",
                                                 "app": {"namespace": "g", "name": "b"}}]}]}}),
    )
    .await
    .expect(201, None);
    h.merge_patch(
        &format!("{}/status", app_url("g", "b")),
        &json!({"status": {"deployments": ["d-1"]}}),
    )
    .await
    .expect(200, None);

    let before = h.revision().await;
    for (method, uri, body) in [
        (Method::PUT, "/v2/groups/g", json!({"scaleBy": 2})),
        (Method::DELETE, "/v2/groups/g", Value::Null),
    ] {
        let reply = if body.is_null() {
            h.call(method, uri, None, Body::empty()).await
        } else {
            send_json(&h, method, uri, &body).await
        };
        let body = expect(&reply, 409);
        assert_eq!(body["deployments"], json!([{"id": "d-1"}]), "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("App is locked by one or more deployments.")
        );
    }
    assert_eq!(
        h.revision().await,
        before,
        "nothing written, not even app a"
    );

    // marathon-python sends `force=True`.
    expect(
        &send_json(
            &h,
            Method::PUT,
            "/v2/groups/g?force=True",
            &json!({"scaleBy": 2}),
        )
        .await,
        200,
    );
    assert_eq!(instances(&h, "g", "a").await, 2);
    assert_eq!(instances(&h, "g", "b").await, 2);
}

#[tokio::test]
async fn a_group_larger_than_one_transaction_is_written_whole() {
    let h = Harness::new();
    let apps: Vec<Value> = (0..140)
        .map(|index| json!({"id": format!("app-{index}"), "cmd": "sleep 1"}))
        .collect();
    let before = h.revision().await;
    expect(
        &send_json(
            &h,
            Method::POST,
            "/v2/groups",
            &json!({"id": "/big", "apps": apps}),
        )
        .await,
        201,
    );
    assert_eq!(
        h.revision().await,
        before + 2,
        "128 apps in the first transaction, 12 in the second"
    );
    let group = expect(&h.get("/v2/groups/big").await, 200);
    assert_eq!(group["apps"].as_array().unwrap().len(), 140);
    expect(
        &h.call(Method::DELETE, "/v2/groups/big", None, Body::empty())
            .await,
        200,
    );
    expect(&h.get("/v2/groups/big").await, 404);
}
