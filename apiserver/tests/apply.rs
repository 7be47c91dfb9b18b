//! Server-side apply and `managedFields` through the router (no socket): upsert, re-apply
//! without a write, conflicts between field managers and `force`, removal of dropped fields,
//! `Update` entries for other writes, and the request errors.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, header};
use common::{Harness, Reply, app_url, rv};
use serde_json::{Value, json};

async fn apply(h: &Harness, name: &str, query: &str, body: &str) -> Reply {
    h.call(
        Method::PATCH,
        &format!("{}?{query}", app_url("default", name)),
        Some("application/apply-patch+yaml"),
        body.to_owned(),
    )
    .await
}

/// (manager, operation, fieldsV1) of every entry.
fn owners(object: &Value) -> Vec<(String, String, Value)> {
    object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|entry| {
            assert_eq!(entry["fieldsType"], "FieldsV1");
            assert_eq!(entry["apiVersion"], "pacer.dev/v1");
            assert!(entry["time"].as_str().unwrap().ends_with('Z'), "{entry}");
            (
                entry["manager"].as_str().unwrap().to_owned(),
                entry["operation"].as_str().unwrap().to_owned(),
                entry["fieldsV1"].clone(),
            )
        })
        .collect()
}

const WEB: &str = "apiVersion: pacer.dev/v1
kind: App
metadata:
  name: web
  labels: {team: shop}
spec:
  cmd: sleep 1000
  instances: 2
";

#[tokio::test]
async fn apply_upserts_and_tracks_owners() {
    let h = Harness::new();
    let created = apply(&h, "web", "fieldManager=alice", WEB)
        .await
        .expect(201, None);
    assert_eq!(created["spec"]["instances"], 2);
    assert_eq!(created["metadata"]["namespace"], "default");
    assert_eq!(
        owners(&created),
        vec![(
            "alice".into(),
            "Apply".into(),
            json!({"f:metadata": {"f:labels": {"f:team": {}}},
                   "f:spec": {"f:cmd": {}, "f:instances": {}}})
        )]
    );
    // Re-applying the same configuration (JSON this time) writes nothing.
    let json_body = json!({"apiVersion": "pacer.dev/v1", "kind": "App",
        "metadata": {"name": "web", "labels": {"team": "shop"}},
        "spec": {"cmd": "sleep 1000", "instances": 2}})
    .to_string();
    let again = apply(&h, "web", "fieldManager=alice", &json_body)
        .await
        .expect(200, None);
    assert_eq!(rv(&again), rv(&created));
    assert_eq!(
        again["metadata"]["managedFields"],
        created["metadata"]["managedFields"]
    );

    // Another manager changing an owned field conflicts, naming field and owner.
    let bob = "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {name: web}\nspec: {instances: 5}\n";
    let conflict = apply(&h, "web", "fieldManager=bob", bob)
        .await
        .expect(409, Some("Conflict"));
    assert_eq!(
        conflict["details"]["causes"],
        json!([{"reason": "FieldManagerConflict",
                "message": "conflict with \"alice\" using pacer.dev/v1",
                "field": ".spec.instances"}])
    );
    assert!(
        conflict["message"]
            .as_str()
            .unwrap()
            .starts_with("Apply failed with 1 conflict: conflict with \"alice\""),
        "{conflict}"
    );
    // Same value: shared ownership, no conflict, nothing to write.
    let shared =
        "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {name: web}\nspec: {instances: 2}\n";
    let same = apply(&h, "web", "fieldManager=bob", shared)
        .await
        .expect(200, None);
    assert_eq!(same["spec"]["instances"], 2);
    // force takes the field.
    let forced = apply(&h, "web", "fieldManager=bob&force=true", bob)
        .await
        .expect(200, None);
    assert_eq!(forced["spec"]["instances"], 5);
    assert_eq!(
        owners(&forced),
        vec![
            (
                "alice".into(),
                "Apply".into(),
                json!({"f:metadata": {"f:labels": {"f:team": {}}}, "f:spec": {"f:cmd": {}}})
            ),
            (
                "bob".into(),
                "Apply".into(),
                json!({"f:spec": {"f:instances": {}}})
            ),
        ]
    );
    // alice drops her label: nobody else owns it, so it goes.
    let alice =
        "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {name: web}\nspec: {cmd: sleep 1000}\n";
    let dropped = apply(&h, "web", "fieldManager=alice", alice)
        .await
        .expect(200, None);
    assert!(dropped["metadata"].get("labels").is_none(), "{dropped}");
    assert_eq!(dropped["spec"]["instances"], 5);
    // bob drops instances: it goes back to the default.
    let bob_empty = "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {name: web}\nspec: {}\n";
    let defaulted = apply(&h, "web", "fieldManager=bob", bob_empty)
        .await
        .expect(200, None);
    assert_eq!(defaulted["spec"]["instances"], 1);
    assert_eq!(owners(&defaulted).len(), 1);
}

#[tokio::test]
async fn other_writes_record_update_entries() {
    let h = Harness::new();
    apply(&h, "web", "fieldManager=alice", WEB)
        .await
        .expect(201, None);
    // A merge patch with the user agent's manager takes instances (no conflict for updates).
    let request = Request::builder()
        .method(Method::PATCH)
        .uri(app_url("default", "web"))
        .header(header::CONTENT_TYPE, "application/merge-patch+json")
        .header(
            header::USER_AGENT,
            "kubectl/v1.32.0 (linux/amd64) kubernetes/x",
        )
        .body(Body::from(json!({"spec": {"instances": 3}}).to_string()))
        .unwrap();
    let patched = h.send(request).await.expect(200, None);
    assert_eq!(
        owners(&patched),
        vec![
            (
                "alice".into(),
                "Apply".into(),
                json!({"f:metadata": {"f:labels": {"f:team": {}}}, "f:spec": {"f:cmd": {}}})
            ),
            (
                "kubectl".into(),
                "Update".into(),
                json!({"f:spec": {"f:instances": {}}})
            ),
        ]
    );
    // Now alice changing instances conflicts with kubectl.
    let conflict = apply(&h, "web", "fieldManager=alice", &WEB.replace("2", "4"))
        .await
        .expect(409, Some("Conflict"));
    assert_eq!(
        conflict["details"]["causes"][0]["message"],
        "conflict with \"kubectl\" using pacer.dev/v1"
    );
    // A POST records the creator's fields as an Update.
    let created = h
        .call(
            Method::POST,
            "/apis/pacer.dev/v1/namespaces/default/apps?fieldManager=creator",
            Some("application/json"),
            common::app("default", "db").to_string(),
        )
        .await
        .expect(201, None);
    assert_eq!(
        owners(&created),
        vec![(
            "creator".into(),
            "Update".into(),
            json!({"f:spec": {"f:cmd": {}}})
        )]
    );
}

#[tokio::test]
async fn apply_request_errors_and_dry_run() {
    let h = Harness::new();
    apply(&h, "web", "", WEB)
        .await
        .expect(400, Some("BadRequest"));
    apply(&h, "web", "fieldManager=a", "spec: {cmd: x}\n")
        .await
        .expect(400, Some("BadRequest"));
    apply(&h, "other", "fieldManager=a", WEB)
        .await
        .expect(400, Some("BadRequest"));
    apply(
        &h,
        "web",
        "fieldManager=a",
        "apiVersion: pacer.dev/v1\nkind: App\nspec: {cpus: -1}\n",
    )
    .await
    .expect(422, Some("Invalid"));
    let dry = apply(&h, "web", "fieldManager=a&dryRun=All", WEB)
        .await
        .expect(201, None);
    assert_eq!(dry["spec"]["instances"], 2);
    h.get(&app_url("default", "web"))
        .await
        .expect(404, Some("NotFound"));
    // A stale resourceVersion in the applied configuration is a precondition.
    let created = apply(&h, "web", "fieldManager=a", WEB)
        .await
        .expect(201, None);
    let stale = "apiVersion: pacer.dev/v1\nkind: App\n\
                 metadata: {name: web, resourceVersion: \"12345\"}\nspec: {instances: 3}\n";
    apply(&h, "web", "fieldManager=a", stale)
        .await
        .expect(409, Some("Conflict"));
    assert_eq!(
        h.get(&app_url("default", "web")).await.expect(200, None)["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
}
