//! CRUD, errors, subresources, dry run, finalizers and cascade, through the router.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use axum::http::Method;
use common::{Harness, app, app_url, apps, names, rv};
use pacer_apiserver::ApiConfig;
use serde_json::{Value, json};

#[tokio::test]
async fn create_get_list_update_delete() {
    let h = Harness::new();
    let created = h.create_app("default", "web", json!({})).await;
    let meta = &created["metadata"];
    assert_eq!(meta["generation"], 1);
    assert!(meta["uid"].as_str().unwrap().len() == 36);
    assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(created["spec"]["instances"], 1, "defaults applied");
    let got = h.get(&app_url("default", "web")).await.expect(200, None);
    assert_eq!(got, created);

    let list = h.get(&apps("default")).await.expect(200, None);
    assert_eq!(list["kind"], "AppList");
    assert_eq!(list["apiVersion"], "pacer.dev/v1");
    assert_eq!(names(&list), ["web"]);
    assert_eq!(list["items"][0]["kind"], "App");
    assert_eq!(list["metadata"]["resourceVersion"], rv(&created));

    let mut update = got.clone();
    update["spec"]["instances"] = json!(3);
    let updated = h
        .put(&app_url("default", "web"), &update)
        .await
        .expect(200, None);
    assert_eq!(updated["spec"]["instances"], 3);
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    assert_ne!(rv(&updated), rv(&created));

    let deleted = h
        .delete(&app_url("default", "web"), None)
        .await
        .expect(200, None);
    assert_eq!(deleted["metadata"]["name"], "web");
    h.get(&app_url("default", "web"))
        .await
        .expect(404, Some("NotFound"));
    h.delete(&app_url("default", "web"), None)
        .await
        .expect(404, Some("NotFound"));
}

#[tokio::test]
async fn conflicts_and_preconditions() {
    let h = Harness::new();
    let created = h.create_app("default", "web", json!({})).await;
    h.post(&apps("default"), &app("default", "web"))
        .await
        .expect(409, Some("AlreadyExists"));

    let mut first = created.clone();
    first["spec"]["instances"] = json!(2);
    h.put(&app_url("default", "web"), &first)
        .await
        .expect(200, None);
    // The same (now stale) resourceVersion again.
    let mut second = created.clone();
    second["spec"]["instances"] = json!(5);
    let status = h
        .put(&app_url("default", "web"), &second)
        .await
        .expect(409, Some("Conflict"));
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified")
    );

    // PUT without resourceVersion: 422 naming the field.
    let mut unversioned = created.clone();
    unversioned["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let status = h
        .put(&app_url("default", "web"), &unversioned)
        .await
        .expect(422, Some("Invalid"));
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "metadata.resourceVersion"
    );

    // PUT of a missing object.
    h.put(&app_url("default", "nope"), &created)
        .await
        .expect(400, Some("BadRequest"));
    let mut missing = app("default", "nope");
    missing["metadata"]["resourceVersion"] = json!("1");
    h.put(&app_url("default", "nope"), &missing)
        .await
        .expect(404, Some("NotFound"));

    // Delete preconditions.
    let current = h.get(&app_url("default", "web")).await.expect(200, None);
    h.delete(
        &app_url("default", "web"),
        Some(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": rv(&created)}})),
    )
    .await
    .expect(409, Some("Conflict"));
    h.delete(
        &app_url("default", "web"),
        Some(&json!({"preconditions": {"uid": "not-the-uid"}})),
    )
    .await
    .expect(409, Some("Conflict"));
    h.delete(
        &app_url("default", "web"),
        Some(&json!({"preconditions": {"resourceVersion": rv(&current), "uid": current["metadata"]["uid"]}})),
    )
    .await
    .expect(200, None);
}

/// Bad input: the right code and reason, and nothing stored.
#[tokio::test]
async fn bad_input_is_rejected_and_nothing_is_stored() {
    let h = Harness::with_config(ApiConfig::default().with_max_body_bytes(64 * 1024));
    let url = apps("default");
    let with = |extra: Value| {
        let mut object = app("default", "web");
        json_patch::merge(&mut object, &extra);
        object.to_string()
    };
    /// (what, content type, body, code, reason, a text the Status must mention)
    type Case<'a> = (&'a str, Option<&'a str>, String, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            Some("application/json"),
            "{\"metadata\": ".to_owned(),
            400,
            "BadRequest",
            "line 1",
        ),
        (
            "malformed YAML",
            Some("application/yaml"),
            "metadata: [\n name: web\n".to_owned(),
            400,
            "BadRequest",
            "line",
        ),
        (
            "not an object",
            Some("application/json"),
            "[1, 2]".to_owned(),
            400,
            "BadRequest",
            "must be an object",
        ),
        (
            "unknown field",
            Some("application/json"),
            with(json!({"spec": {"replicas": 3}})),
            400,
            "BadRequest",
            "spec.replicas",
        ),
        (
            "wrong type",
            Some("application/json"),
            with(json!({"spec": {"instances": "three"}})),
            400,
            "BadRequest",
            "spec.instances",
        ),
        (
            "wrong apiVersion",
            Some("application/json"),
            with(json!({"apiVersion": "apps/v1"})),
            400,
            "BadRequest",
            "apps/v1",
        ),
        (
            "wrong kind",
            Some("application/json"),
            with(json!({"kind": "Node"})),
            400,
            "BadRequest",
            "Node",
        ),
        (
            "invalid name",
            Some("application/json"),
            with(json!({"metadata": {"name": "Web_1"}})),
            422,
            "Invalid",
            "metadata.name",
        ),
        (
            "invalid spec",
            Some("application/json"),
            with(json!({"spec": {"cpus": -1, "instances": -2}})),
            422,
            "Invalid",
            "spec.cpus",
        ),
        (
            "namespace mismatch",
            Some("application/json"),
            with(json!({"metadata": {"namespace": "prod"}})),
            400,
            "BadRequest",
            "namespace",
        ),
        (
            "unsupported type",
            Some("text/plain"),
            with(json!({})),
            415,
            "UnsupportedMediaType",
            "text/plain",
        ),
        (
            "over-size body",
            Some("application/json"),
            with(json!({"metadata": {"annotations": {"big": "x".repeat(70 * 1024)}}})),
            413,
            "RequestEntityTooLarge",
            "too large",
        ),
    ];
    for (what, content_type, body, code, reason, mentions) in cases {
        let reply = h.call(Method::POST, &url, content_type, body).await;
        let status = reply.json();
        assert_eq!(reply.status.as_u16(), code, "{what}: {status:#}");
        assert_eq!(status["reason"], reason, "{what}: {status:#}");
        assert!(
            status.to_string().contains(mentions),
            "{what}: expected {mentions:?} in {status:#}"
        );
    }
    let invalid = h
        .call(
            Method::POST,
            &url,
            Some("application/json"),
            with(json!({"spec": {"cpus": -1, "instances": -2}})),
        )
        .await
        .json();
    let fields: Vec<&str> = invalid["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cause| cause["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"spec.cpus") && fields.contains(&"spec.instances"),
        "{fields:?}"
    );
    let list = h.get(&url).await.expect(200, None);
    assert_eq!(names(&list), Vec::<String>::new(), "nothing stored");
}

#[tokio::test]
async fn store_value_limit_is_413() {
    // Under the 3 MiB body limit but over the store's 1.5 MiB value limit.
    let h = Harness::new();
    let mut object = app("default", "big");
    object["metadata"]["annotations"] = json!({});
    for index in 0..8 {
        object["metadata"]["annotations"][format!("a{index}")] = json!("x".repeat(200 * 1024));
    }
    let reply = h.post(&apps("default"), &object).await;
    // Annotations over 256 KiB are invalid before the store sees them.
    reply.expect(422, Some("Invalid"));
    let mut object = app("default", "big");
    object["spec"]["env"] = json!({});
    for index in 0..8 {
        object["spec"]["env"][format!("V{index}")] = json!("x".repeat(200 * 1024));
    }
    h.post(&apps("default"), &object)
        .await
        .expect(413, Some("RequestEntityTooLarge"));
}

#[tokio::test]
async fn field_validation_modes() {
    let h = Harness::new();
    let mut object = app("default", "web");
    object["spec"]["bogus"] = json!(1);
    object["metadata"]["flavour"] = json!("x");
    let status = h
        .post(
            &format!("{}?fieldValidation=Strict", apps("default")),
            &object,
        )
        .await
        .expect(400, Some("BadRequest"));
    let causes: Vec<&str> = status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cause| cause["field"].as_str().unwrap())
        .collect();
    assert_eq!(causes, ["metadata.flavour", "spec.bogus"]);
    let reply = h
        .post(
            &format!("{}?fieldValidation=Warn", apps("default")),
            &object,
        )
        .await;
    let created = reply.expect(201, None);
    assert!(created["spec"].get("bogus").is_none());
    assert_eq!(
        reply.warnings(),
        [
            "299 - \"unknown field 'metadata.flavour'\"",
            "299 - \"unknown field 'spec.bogus'\""
        ]
    );
    object["metadata"]["name"] = json!("web2");
    let reply = h
        .post(
            &format!("{}?fieldValidation=Ignore", apps("default")),
            &object,
        )
        .await;
    reply.expect(201, None);
    assert!(reply.warnings().is_empty());
}

#[tokio::test]
async fn yaml_bodies_and_generate_name() {
    let h = Harness::new();
    let yaml = "apiVersion: pacer.dev/v1\nkind: App\nmetadata:\n  generateName: web-\nspec:\n  cmd: sleep 10\n  instances: 2\n";
    let created = h
        .call(Method::POST, &apps("prod"), Some("application/yaml"), yaml)
        .await
        .expect(201, None);
    let name = created["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    assert_eq!(created["metadata"]["namespace"], "prod");
    assert_eq!(created["spec"]["instances"], 2);
}

#[tokio::test]
async fn dry_run_persists_nothing() {
    let h = Harness::new();
    let before = h.revision().await;
    let reply = h
        .post(
            &format!("{}?dryRun=All", apps("default")),
            &app("default", "web"),
        )
        .await;
    let would_be = reply.expect(201, None);
    assert_eq!(would_be["spec"]["instances"], 1);
    h.get(&app_url("default", "web"))
        .await
        .expect(404, Some("NotFound"));
    // Invalid objects fail dry run too.
    let mut invalid = app("default", "web");
    invalid["spec"]["cpus"] = json!(-1);
    h.post(&format!("{}?dryRun=All", apps("default")), &invalid)
        .await
        .expect(422, Some("Invalid"));
    assert_eq!(h.revision().await, before);

    let created = h.create_app("default", "web", json!({})).await;
    let revision = h.revision().await;
    let patched = h
        .merge_patch(
            &format!("{}?dryRun=All", app_url("default", "web")),
            &json!({"spec": {"instances": 4}}),
        )
        .await
        .expect(200, None);
    assert_eq!(patched["spec"]["instances"], 4);
    assert_eq!(patched["metadata"]["generation"], 2);
    let mut update = created.clone();
    update["spec"]["instances"] = json!(7);
    h.put(
        &format!("{}?dryRun=All", app_url("default", "web")),
        &update,
    )
    .await
    .expect(200, None);
    h.delete(&format!("{}?dryRun=All", app_url("default", "web")), None)
        .await
        .expect(200, None);
    h.delete(
        &app_url("default", "web"),
        Some(&json!({"dryRun": ["All"]})),
    )
    .await
    .expect(200, None);
    let got = h.get(&app_url("default", "web")).await.expect(200, None);
    assert_eq!(got, created);
    assert_eq!(h.revision().await, revision);
}

#[tokio::test]
async fn patches_and_no_op_updates() {
    let h = Harness::new();
    let created = h
        .create_app(
            "default",
            "web",
            json!({"metadata": {"labels": {"tier": "front"}}}),
        )
        .await;
    let patched = h
        .merge_patch(
            &app_url("default", "web"),
            &json!({"metadata": {"labels": {"tier": null, "team": "a"}}, "spec": {"instances": 2}}),
        )
        .await
        .expect(200, None);
    assert_eq!(patched["metadata"]["labels"], json!({"team": "a"}));
    assert_eq!(patched["metadata"]["generation"], 2);
    // A label-only change does not bump the generation.
    let relabelled = h
        .merge_patch(
            &app_url("default", "web"),
            &json!({"metadata": {"labels": {"team": "b"}}}),
        )
        .await
        .expect(200, None);
    assert_eq!(relabelled["metadata"]["generation"], 2);
    // A patch that changes nothing writes nothing.
    let same = h
        .merge_patch(
            &app_url("default", "web"),
            &json!({"spec": {"instances": 2}}),
        )
        .await
        .expect(200, None);
    assert_eq!(rv(&same), rv(&relabelled));
    let json_patched = h
        .call(
            Method::PATCH,
            &app_url("default", "web"),
            Some("application/json-patch+json"),
            json!([{"op": "replace", "path": "/spec/instances", "value": 5}]).to_string(),
        )
        .await
        .expect(200, None);
    assert_eq!(json_patched["spec"]["instances"], 5);
    // A stale resourceVersion in a patch is a precondition.
    h.merge_patch(
        &app_url("default", "web"),
        &json!({"metadata": {"resourceVersion": rv(&created)}, "spec": {"instances": 1}}),
    )
    .await
    .expect(409, Some("Conflict"));
    // Immutable fields.
    h.merge_patch(
        &app_url("default", "web"),
        &json!({"metadata": {"uid": "other"}}),
    )
    .await
    .expect(422, Some("Invalid"));
    h.merge_patch(
        &app_url("default", "web"),
        &json!({"metadata": {"name": "other"}}),
    )
    .await
    .expect(400, Some("BadRequest"));
    for (content_type, code, reason) in [
        (
            "application/strategic-merge-patch+json",
            415,
            "UnsupportedMediaType",
        ),
        ("application/apply-patch+yaml", 400, "BadRequest"),
        ("application/json", 415, "UnsupportedMediaType"),
    ] {
        h.call(
            Method::PATCH,
            &app_url("default", "web"),
            Some(content_type),
            "{}",
        )
        .await
        .expect(code, Some(reason));
    }
    h.merge_patch(&app_url("default", "missing"), &json!({}))
        .await
        .expect(404, Some("NotFound"));
}

#[tokio::test]
async fn status_subresource_and_generation_rules() {
    let h = Harness::new();
    let mut object = app("default", "web");
    object["status"] = json!({"instances": 9});
    let created = h.post(&apps("default"), &object).await.expect(201, None);
    assert!(created.get("status").is_none(), "create drops status");

    let status_url = format!("{}/status", app_url("default", "web"));
    let with_status = h
        .merge_patch(
            &status_url,
            &json!({"status": {"instances": 2}, "spec": {"instances": 7}}),
        )
        .await
        .expect(200, None);
    assert_eq!(with_status["status"]["instances"], 2);
    assert_eq!(
        with_status["spec"]["instances"], 1,
        "status writes ignore spec"
    );
    assert_eq!(
        with_status["metadata"]["generation"], 1,
        "status writes keep generation"
    );

    // Main-resource writes keep the stored status.
    let mut update = with_status.clone();
    update["status"] = json!({"instances": 100});
    update["spec"]["instances"] = json!(3);
    let updated = h
        .put(&app_url("default", "web"), &update)
        .await
        .expect(200, None);
    assert_eq!(updated["status"]["instances"], 2);
    assert_eq!(updated["metadata"]["generation"], 2);

    // PUT /status with a stale resourceVersion.
    let mut stale = with_status.clone();
    stale["status"]["instances"] = json!(5);
    h.put(&status_url, &stale)
        .await
        .expect(409, Some("Conflict"));
    let mut fresh = updated.clone();
    fresh["status"]["instances"] = json!(5);
    let put = h.put(&status_url, &fresh).await.expect(200, None);
    assert_eq!(put["status"]["instances"], 5);
    assert_eq!(h.get(&status_url).await.expect(200, None), put);
    // Events have no status subresource.
    h.get("/apis/pacer.dev/v1/namespaces/default/events/x/status")
        .await
        .expect(404, Some("NotFound"));
}

#[tokio::test]
async fn scale_subresource() {
    let h = Harness::new();
    h.create_app("default", "web", json!({"spec": {"instances": 2}}))
        .await;
    let scale_url = format!("{}/scale", app_url("default", "web"));
    let scale = h.get(&scale_url).await.expect(200, None);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "pacer.dev/app=web");

    let scaled = h
        .merge_patch(&scale_url, &json!({"spec": {"replicas": 5}}))
        .await
        .expect(200, None);
    assert_eq!(scaled["spec"]["replicas"], 5);
    let app_now = h.get(&app_url("default", "web")).await.expect(200, None);
    assert_eq!(app_now["spec"]["instances"], 5);
    assert_eq!(app_now["metadata"]["generation"], 2);
    assert_eq!(rv(&scaled), rv(&app_now));

    let mut put = scaled.clone();
    put["spec"]["replicas"] = json!(1);
    let replaced = h.put(&scale_url, &put).await.expect(200, None);
    assert_eq!(replaced["spec"]["replicas"], 1);
    // Stale resourceVersion on PUT /scale.
    h.put(&scale_url, &put).await.expect(409, Some("Conflict"));
    h.merge_patch(&scale_url, &json!({"spec": {"replicas": -1}}))
        .await
        .expect(422, Some("Invalid"));
    h.get("/apis/pacer.dev/v1/namespaces/default/instances/x/scale")
        .await
        .expect(404, Some("NotFound"));
}

#[tokio::test]
async fn label_and_field_selectors_and_pagination() {
    let h = Harness::new();
    for (namespace, name, tier) in [
        ("a", "one", "front"),
        ("a", "two", "back"),
        ("a", "three", "front"),
        ("b", "four", "front"),
        ("b", "five", ""),
    ] {
        let labels = if tier.is_empty() {
            json!({})
        } else {
            json!({"tier": tier})
        };
        h.create_app(namespace, name, json!({"metadata": {"labels": labels}}))
            .await;
    }
    let h = &h;
    let list = |query: &str| {
        let url = format!("/apis/pacer.dev/v1/apps?{query}");
        async move { names(&h.get(&url).await.expect(200, None)) }
    };
    assert_eq!(list("").await, ["one", "three", "two", "five", "four"]);
    assert_eq!(
        list("labelSelector=tier%3Dfront").await,
        ["one", "three", "four"]
    );
    assert_eq!(list("labelSelector=tier!%3Dfront").await, ["two", "five"]);
    assert_eq!(
        list("labelSelector=tier+in+(back,front),tier!%3Dfront").await,
        ["two"]
    );
    assert_eq!(list("labelSelector=!tier").await, ["five"]);
    assert_eq!(
        list("labelSelector=tier").await,
        ["one", "three", "two", "four"]
    );
    assert_eq!(list("fieldSelector=metadata.name%3Dtwo").await, ["two"]);
    assert_eq!(
        list("fieldSelector=metadata.namespace%3Db").await,
        ["five", "four"]
    );
    h.get("/apis/pacer.dev/v1/apps?labelSelector=tier+in+front")
        .await
        .expect(400, Some("BadRequest"));
    h.get("/apis/pacer.dev/v1/apps?fieldSelector=spec.cmd%3Dx")
        .await
        .expect(400, Some("BadRequest"));

    // Pages of two at one revision; a write between pages does not show up.
    let first = h
        .get("/apis/pacer.dev/v1/apps?limit=2")
        .await
        .expect(200, None);
    assert_eq!(names(&first), ["one", "three"]);
    let token = first["metadata"]["continue"].as_str().unwrap().to_owned();
    h.create_app("a", "zzz", json!({})).await;
    let second = h
        .get(&format!("/apis/pacer.dev/v1/apps?limit=2&continue={token}"))
        .await
        .expect(200, None);
    assert_eq!(names(&second), ["two", "five"]);
    assert_eq!(
        second["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
    let token = second["metadata"]["continue"].as_str().unwrap().to_owned();
    let third = h
        .get(&format!("/apis/pacer.dev/v1/apps?limit=2&continue={token}"))
        .await
        .expect(200, None);
    assert_eq!(names(&third), ["four"]);
    assert!(third["metadata"].get("continue").is_none());
    // Selectors filter after paging: a page may be short.
    let filtered = h
        .get("/apis/pacer.dev/v1/apps?limit=2&labelSelector=tier%3Dback")
        .await
        .expect(200, None);
    assert_eq!(names(&filtered), Vec::<String>::new());
    assert!(filtered["metadata"]["continue"].is_string());
    h.get("/apis/pacer.dev/v1/apps?continue=garbage")
        .await
        .expect(400, Some("BadRequest"));
    // Namespaced list.
    assert_eq!(
        names(&h.get(&apps("b")).await.expect(200, None)),
        ["five", "four"]
    );
}

#[tokio::test]
async fn finalizers_delay_deletion() {
    let h = Harness::new();
    h.create_app(
        "default",
        "web",
        json!({"metadata": {"finalizers": ["pacer.dev/cleanup"]}}),
    )
    .await;
    let marked = h
        .delete(&app_url("default", "web"), None)
        .await
        .expect(200, None);
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    let still = h.get(&app_url("default", "web")).await.expect(200, None);
    assert_eq!(
        still["metadata"]["deletionTimestamp"],
        marked["metadata"]["deletionTimestamp"]
    );
    // Deleting again changes nothing.
    let again = h
        .delete(&app_url("default", "web"), None)
        .await
        .expect(200, None);
    assert_eq!(rv(&again), rv(&still));
    // No new finalizers while deleting.
    h.merge_patch(
        &app_url("default", "web"),
        &json!({"metadata": {"finalizers": ["pacer.dev/cleanup", "other.dev/x"]}}),
    )
    .await
    .expect(422, Some("Invalid"));
    // Removing the last finalizer deletes the object.
    h.merge_patch(
        &app_url("default", "web"),
        &json!({"metadata": {"finalizers": null}}),
    )
    .await
    .expect(200, None);
    h.get(&app_url("default", "web"))
        .await
        .expect(404, Some("NotFound"));
}

fn instance(name: &str, owner: Option<&Value>) -> Value {
    let mut instance = json!({
        "apiVersion": "pacer.dev/v1",
        "kind": "Instance",
        "metadata": {"name": name, "labels": {"pacer.dev/app": "web"}},
        "spec": {"app": "web", "appVersion": "2024-05-01T10:00:00Z"},
    });
    if let Some(owner) = owner {
        instance["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "pacer.dev/v1", "kind": "App",
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"], "controller": true,
        }]);
    }
    instance
}

#[tokio::test]
async fn deleting_an_app_deletes_its_instances() {
    let h = Harness::new();
    let web = h.create_app("default", "web", json!({})).await;
    let instances = "/apis/pacer.dev/v1/namespaces/default/instances";
    for name in ["web.a", "web.b"] {
        h.post(instances, &instance(name, Some(&web)))
            .await
            .expect(201, None);
    }
    h.post(instances, &instance("stray", None))
        .await
        .expect(201, None);
    let mut held = instance("web.held", Some(&web));
    held["metadata"]["finalizers"] = json!(["pacer.dev/agent"]);
    h.post(instances, &held).await.expect(201, None);

    h.delete(&app_url("default", "web"), None)
        .await
        .expect(200, None);
    let left = h.get(instances).await.expect(200, None);
    assert_eq!(names(&left), ["stray", "web.held"]);
    assert!(left["items"][1]["metadata"]["deletionTimestamp"].is_string());

    // Orphan keeps dependents.
    let db = h.create_app("default", "db", json!({})).await;
    h.post(instances, &instance("db.a", Some(&db)))
        .await
        .expect(201, None);
    h.delete(
        &app_url("default", "db"),
        Some(&json!({"propagationPolicy": "Orphan"})),
    )
    .await
    .expect(200, None);
    assert!(names(&h.get(instances).await.expect(200, None)).contains(&"db.a".to_owned()));
}

#[tokio::test]
async fn delete_collection_by_selector() {
    let h = Harness::new();
    for (name, tier) in [("one", "front"), ("two", "back"), ("three", "front")] {
        h.create_app(
            "default",
            name,
            json!({"metadata": {"labels": {"tier": tier}}}),
        )
        .await;
    }
    let deleted = h
        .delete(
            &format!("{}?labelSelector=tier%3Dfront", apps("default")),
            None,
        )
        .await
        .expect(200, None);
    assert_eq!(names(&deleted), ["one", "three"]);
    assert_eq!(
        names(&h.get(&apps("default")).await.expect(200, None)),
        ["two"]
    );
}

#[tokio::test]
async fn cluster_scoped_kinds_and_routing_errors() {
    let h = Harness::new();
    let node = json!({"apiVersion": "pacer.dev/v1", "kind": "Node", "metadata": {"name": "n1"}});
    let created = h
        .post("/apis/pacer.dev/v1/nodes", &node)
        .await
        .expect(201, None);
    assert!(created["metadata"].get("namespace").is_none());
    h.get("/apis/pacer.dev/v1/nodes/n1").await.expect(200, None);
    assert_eq!(
        names(&h.get("/apis/pacer.dev/v1/nodes").await.expect(200, None)),
        ["n1"]
    );
    for url in [
        "/apis/pacer.dev/v1/namespaces/default/nodes",
        "/apis/pacer.dev/v1/pods",
        "/apis/pacer.dev/v1/apps/web",
        "/apis/pacer.dev/v1/namespaces/default/apps/web/logs",
        "/apis/other.dev/v1/apps",
        "/nope",
    ] {
        h.get(url).await.expect(404, Some("NotFound"));
    }
    h.post("/apis/pacer.dev/v1/apps", &app("default", "web"))
        .await
        .expect(405, Some("MethodNotAllowed"));
    h.call(
        Method::POST,
        &app_url("default", "web"),
        Some("application/json"),
        "{}",
    )
    .await
    .expect(405, Some("MethodNotAllowed"));
    h.call(Method::DELETE, "/version", None, "")
        .await
        .expect(405, Some("MethodNotAllowed"));
    h.get("/apis/pacer.dev/v1/namespaces/default/apps/..%2Fx")
        .await
        .expect(400, Some("BadRequest"));
}

#[tokio::test]
async fn declared_over_size_body_is_a_413_status() {
    let h = Harness::new();
    let body = "x".repeat(4 * 1024 * 1024);
    let request = axum::http::Request::post(apps("default"))
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(axum::body::Body::from(body))
        .unwrap();
    h.send(request)
        .await
        .expect(413, Some("RequestEntityTooLarge"));
}
