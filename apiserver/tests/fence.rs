//! Fenced writes (`Pacer-Fence: <namespace>/<lease>/<holder>`) through the router: every write
//! verb applies only while the named holder holds the Lease; a holder change starts a new term;
//! and a takeover that lands between the fence check and the write still makes the write fail
//! and write nothing (driven deterministically by arming the fence before the takeover).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use common::{Harness, Reply, app, app_url, apps};
use pacer_apiserver::fence::{self, FencedStore};
use pacer_apiserver::{ApiConfig, ApiState, router};
use pacer_schemas::LeaseFence;
use pacer_store::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

const MERGE: &str = "application/merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

fn leases() -> String {
    "/apis/pacer.dev/v1/namespaces/ops/leases".to_owned()
}

fn lease_url(name: &str) -> String {
    format!("{}/{name}", leases())
}

fn now_text() -> String {
    jiff::Timestamp::now().to_string()
}

/// A Lease held by `holder`, renewed now, for `seconds`.
async fn hold(h: &Harness, name: &str, holder: &str, seconds: i64) -> Value {
    let lease = json!({"metadata": {"name": name}, "spec": {
        "holderIdentity": holder, "leaseDurationSeconds": seconds,
        "acquireTime": now_text(), "renewTime": now_text()}});
    h.post(&leases(), &lease).await.expect(201, None)
}

/// Sends a request carrying `Pacer-Fence: <fence>`.
async fn fenced(
    h: &Harness,
    fence: &str,
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("Pacer-Fence", fence);
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
    h.send(builder.body(body).unwrap()).await
}

/// One write of each verb on App `web` in `default`, as (what, method, uri, content type,
/// body). `resource_version` is the App's current one (for PUT).
fn writes(
    resource_version: &str,
) -> Vec<(&'static str, Method, String, Option<&'static str>, Value)> {
    let mut replaced = app("default", "web");
    replaced["metadata"]["resourceVersion"] = json!(resource_version);
    replaced["spec"]["instances"] = json!(0);
    replaced["metadata"]["labels"] = json!({"put": "yes"});
    vec![
        (
            "POST",
            Method::POST,
            apps("default"),
            Some("application/json"),
            {
                let mut other = app("default", "other");
                other["spec"]["instances"] = json!(0);
                other
            },
        ),
        (
            "PUT",
            Method::PUT,
            app_url("default", "web"),
            Some("application/json"),
            replaced,
        ),
        (
            "PATCH",
            Method::PATCH,
            app_url("default", "web"),
            Some(MERGE),
            json!({"metadata": {"labels": {"patched": "yes"}}}),
        ),
        (
            "apply",
            Method::PATCH,
            format!("{}?fieldManager=fenced", app_url("default", "web")),
            Some(APPLY),
            json!({"apiVersion": "pacer.dev/v1", "kind": "App",
                   "metadata": {"name": "web", "labels": {"applied": "yes"}}}),
        ),
        (
            "status",
            Method::PATCH,
            format!("{}/status", app_url("default", "web")),
            Some(MERGE),
            json!({"status": {"running": 1}}),
        ),
        (
            "scale",
            Method::PATCH,
            format!("{}/scale", app_url("default", "web")),
            Some(MERGE),
            json!({"spec": {"replicas": 2}}),
        ),
        (
            "DELETE",
            Method::DELETE,
            app_url("default", "web"),
            Some("application/json"),
            json!({}),
        ),
    ]
}

async fn web_version(h: &Harness) -> String {
    let web = h.get(&app_url("default", "web")).await.expect(200, None);
    web["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn every_write_verb_honours_the_fence() {
    let h = Harness::new();
    hold(&h, "ctl", "a", 60).await;
    h.create_app("default", "web", json!({"spec": {"instances": 0}}))
        .await;

    // The wrong holder: every verb is refused with 409 naming the fence, nothing written.
    let before = h.revision().await;
    for (what, method, uri, content_type, body) in writes(&web_version(&h).await) {
        let reply = fenced(&h, "ops/ctl/b", method, &uri, content_type, Some(&body)).await;
        let status = reply.expect(409, Some("Conflict"));
        let message = status["message"].as_str().unwrap();
        assert!(
            message.contains("fence ops/ctl/b") && message.contains("held by \"a\""),
            "{what}: {message}"
        );
        assert_eq!(status["details"]["kind"], "leases", "{what}");
        assert_eq!(status["details"]["name"], "ctl", "{what}");
    }
    // Collection deletes are refused too.
    let reply = fenced(
        &h,
        "ops/ctl/b",
        Method::DELETE,
        &apps("default"),
        None,
        None,
    )
    .await;
    reply.expect(409, Some("Conflict"));
    assert_eq!(
        h.revision().await,
        before,
        "a refused write wrote something"
    );

    // The holder: every verb goes through.
    for (what, method, uri, content_type, body) in writes(&web_version(&h).await) {
        let reply = fenced(&h, "ops/ctl/a", method, &uri, content_type, Some(&body)).await;
        assert!(
            reply.status.is_success(),
            "{what}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    h.get(&app_url("default", "web")).await.expect(404, None);
    h.get(&app_url("default", "other")).await.expect(200, None);
    // Reads ignore the header.
    fenced(
        &h,
        "ops/ctl/nobody",
        Method::GET,
        &apps("default"),
        None,
        None,
    )
    .await
    .expect(200, None);
}

#[tokio::test]
async fn holder_changes_start_new_terms_and_renewals_do_not() {
    let h = Harness::new();
    let lease = hold(&h, "ctl", "a", 60).await;
    let term_key = fence::term_key("ops", "ctl");
    assert!(h.store.get(&term_key).await.unwrap().is_none());
    let create = |name: &str| {
        let mut object = app("default", name);
        object["spec"]["instances"] = json!(0);
        object
    };

    // A renewal by the same holder keeps the term: a's fence still holds.
    let mut renewed = lease.clone();
    renewed["spec"]["renewTime"] = json!(now_text());
    let renewed = h.put(&lease_url("ctl"), &renewed).await.expect(200, None);
    assert!(h.store.get(&term_key).await.unwrap().is_none());
    fenced(
        &h,
        "ops/ctl/a",
        Method::POST,
        &apps("default"),
        Some("application/json"),
        Some(&create("one")),
    )
    .await
    .expect(201, None);

    // A takeover starts a new term: a is refused, b is admitted.
    let mut taken = renewed.clone();
    taken["spec"]["holderIdentity"] = json!("b");
    taken["spec"]["leaseTransitions"] = json!(1);
    h.put(&lease_url("ctl"), &taken).await.expect(200, None);
    let term = h.store.get(&term_key).await.unwrap().unwrap();
    let recorded: Value = serde_json::from_slice(&term.value).unwrap();
    assert_eq!(recorded["holderIdentity"], "b");
    fenced(
        &h,
        "ops/ctl/a",
        Method::POST,
        &apps("default"),
        Some("application/json"),
        Some(&create("two")),
    )
    .await
    .expect(409, Some("Conflict"));
    fenced(
        &h,
        "ops/ctl/b",
        Method::POST,
        &apps("default"),
        Some("application/json"),
        Some(&create("two")),
    )
    .await
    .expect(201, None);
}

#[tokio::test]
async fn fences_on_missing_or_expired_leases_and_malformed_headers_are_refused() {
    let h = Harness::new();
    let old = "2020-01-01T00:00:00Z";
    let expired = json!({"metadata": {"name": "old"}, "spec": {
        "holderIdentity": "a", "leaseDurationSeconds": 10, "acquireTime": old, "renewTime": old}});
    h.post(&leases(), &expired).await.expect(201, None);
    let body = json!({"metadata": {"name": "x"}, "spec": {"cmd": "sleep 1", "instances": 0}});
    // (fence, code, reason, words the message must contain)
    let table = [
        (
            "ops/old/a",
            409,
            "Conflict",
            "has ended (expired at 2020-01-01T00:00:10Z)",
        ),
        ("ops/missing/a", 409, "Conflict", "the lease does not exist"),
        ("ops/old", 400, "BadRequest", "invalid Pacer-Fence header"),
        ("Ops/old/a", 400, "BadRequest", "invalid Pacer-Fence header"),
    ];
    for (fence, code, reason, words) in table {
        let reply = fenced(
            &h,
            fence,
            Method::POST,
            &apps("default"),
            Some("application/json"),
            Some(&body),
        )
        .await;
        let status = reply.expect(code, Some(reason));
        let message = status["message"].as_str().unwrap();
        assert!(message.contains(words), "{fence}: {message}");
    }
    h.get(&app_url("default", "x")).await.expect(404, None);
}

/// The router over a store whose every transaction carries `fenced`'s compares: the state a
/// fenced request is in after its check passed.
async fn send_on(fenced: &FencedStore, request: Request<Body>) -> (u16, Value) {
    let state = ApiState::new(
        Arc::new(fenced.clone()) as Arc<dyn Store>,
        ApiConfig::default(),
    );
    let response = router(state).oneshot(request).await.unwrap();
    let code = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (code, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn a_takeover_between_check_and_write_makes_the_write_fail() {
    let h = Harness::new();
    let lease = hold(&h, "ctl", "a", 60).await;
    h.create_app("default", "web", json!({"spec": {"instances": 0}}))
        .await;
    let store: Arc<dyn Store> = h.store.clone();

    // a's check passes (a holds the lease) ...
    let armed = fence::arm(&store, LeaseFence::parse("ops/ctl/a").unwrap())
        .await
        .unwrap();
    // ... b takes over before a's write commits ...
    let mut taken = lease.clone();
    taken["spec"]["holderIdentity"] = json!("b");
    h.put(&lease_url("ctl"), &taken).await.expect(200, None);
    let before = h.revision().await;
    // ... so every write a makes fails and writes nothing.
    for (what, method, uri, content_type, body) in writes(&web_version(&h).await) {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(content_type) = content_type {
            builder = builder.header("content-type", content_type);
        }
        let (code, status) =
            send_on(&armed, builder.body(Body::from(body.to_string())).unwrap()).await;
        assert_eq!(code, 409, "{what}: {status}");
        assert_eq!(status["reason"], "Conflict", "{what}: {status}");
        assert!(armed.lost(), "{what}: the fence compare did not fail");
    }
    assert_eq!(
        h.revision().await,
        before,
        "a deposed holder's write went through"
    );
    let lost = armed.lost_error().to_status();
    assert_eq!(lost.http_code(), 409);
    assert!(
        lost.message
            .as_deref()
            .unwrap_or("")
            .contains("fence ops/ctl/a"),
        "{lost:?}"
    );

    // A lease deleted and re-created with the same holder is a new term as well.
    let armed = fence::arm(&store, LeaseFence::parse("ops/ctl/b").unwrap())
        .await
        .unwrap();
    h.delete(&lease_url("ctl"), None).await.expect(200, None);
    hold(&h, "ctl", "b", 60).await;
    let request = Request::builder()
        .method(Method::POST)
        .uri(apps("default"))
        .header("content-type", "application/json")
        .body(Body::from(app("default", "late").to_string()))
        .unwrap();
    let (code, _) = send_on(&armed, request).await;
    assert_eq!(code, 409);
    h.get(&app_url("default", "late")).await.expect(404, None);
}

#[tokio::test]
async fn lease_validation_names_the_field() {
    let h = Harness::new();
    // (spec, offending field)
    let table = [
        (
            json!({"leaseDurationSeconds": -1}),
            "spec.leaseDurationSeconds",
        ),
        (
            json!({"leaseDurationSeconds": 0}),
            "spec.leaseDurationSeconds",
        ),
        (json!({"leaseTransitions": -1}), "spec.leaseTransitions"),
    ];
    for (spec, field) in table {
        let lease = json!({"metadata": {"name": "bad"}, "spec": spec});
        let status = h.post(&leases(), &lease).await.expect(422, Some("Invalid"));
        assert_eq!(status["details"]["causes"][0]["field"], field, "{status}");
    }
    let created = hold(&h, "good", "a", 10).await;
    assert_eq!(created["spec"]["leaseTransitions"], 0, "defaulted");
}
