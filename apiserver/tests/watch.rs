//! Watch framing and semantics through the router: initial state, resume from a revision,
//! selectors, bookmarks, timeouts, compaction (ERROR 410), lag recovery and shutdown.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{Harness, app_url, apps, rv, summary};
use pacer_apiserver::ApiConfig;
use pacer_store::Store;
use serde_json::json;

fn event(kind: &str, name: &str, rv: &str) -> (String, String, String) {
    (kind.to_owned(), name.to_owned(), rv.to_owned())
}

#[tokio::test]
async fn initial_state_then_changes() {
    let h = Harness::new();
    let a = h.create_app("default", "a", json!({})).await;
    let b = h.create_app("default", "b", json!({})).await;
    h.create_app("other", "elsewhere", json!({})).await;
    let mut watch = h.watch(&format!("{}?watch=1", apps("default"))).await;
    assert_eq!(watch.next_event().await, event("ADDED", "a", &rv(&a)));
    assert_eq!(watch.next_event().await, event("ADDED", "b", &rv(&b)));

    let c = h.create_app("default", "c", json!({})).await;
    h.create_app("other", "ignored", json!({})).await;
    let a2 = h
        .merge_patch(&app_url("default", "a"), &json!({"spec": {"instances": 2}}))
        .await
        .expect(200, None);
    h.delete(&app_url("default", "b"), None)
        .await
        .expect(200, None);
    assert_eq!(watch.next_event().await, event("ADDED", "c", &rv(&c)));
    let frame = watch.next().await.unwrap();
    assert_eq!(summary(&frame), event("MODIFIED", "a", &rv(&a2)));
    assert_eq!(frame["object"]["spec"]["instances"], 2);
    assert_eq!(frame["object"]["kind"], "App");
    let (kind, name, deleted_rv) = watch.next_event().await;
    assert_eq!((kind.as_str(), name.as_str()), ("DELETED", "b"));
    assert!(deleted_rv.parse::<i64>().unwrap() > rv(&a2).parse::<i64>().unwrap());
    assert_eq!(deleted_rv.parse::<i64>().unwrap(), h.revision().await);
}

#[tokio::test]
async fn resume_from_a_resource_version() {
    let h = Harness::new();
    let a = h.create_app("default", "a", json!({})).await;
    let b = h.create_app("default", "b", json!({})).await;
    let c = h.create_app("default", "c", json!({})).await;
    // Cluster-wide watch from a's revision: b and c, no synthetic events.
    let mut watch = h
        .watch(&format!(
            "/apis/pacer.dev/v1/apps?watch=true&resourceVersion={}",
            rv(&a)
        ))
        .await;
    assert_eq!(watch.next_event().await, event("ADDED", "b", &rv(&b)));
    assert_eq!(watch.next_event().await, event("ADDED", "c", &rv(&c)));
    // A second watcher from the same revision is served from the shared feed's history.
    let mut second = h
        .watch(&format!(
            "{}?watch=true&resourceVersion={}",
            apps("default"),
            rv(&b)
        ))
        .await;
    assert_eq!(second.next_event().await, event("ADDED", "c", &rv(&c)));
    let d = h.create_app("default", "d", json!({})).await;
    assert_eq!(watch.next_event().await, event("ADDED", "d", &rv(&d)));
    assert_eq!(second.next_event().await, event("ADDED", "d", &rv(&d)));
    // The list revision is a valid starting point.
    let list = h.get(&apps("default")).await.expect(200, None);
    let mut third = h
        .watch(&format!(
            "{}?watch=true&resourceVersion={}",
            apps("default"),
            list["metadata"]["resourceVersion"].as_str().unwrap()
        ))
        .await;
    let e = h.create_app("default", "e", json!({})).await;
    assert_eq!(third.next_event().await, event("ADDED", "e", &rv(&e)));
}

#[tokio::test]
async fn selectors_apply_to_watches() {
    let h = Harness::new();
    h.create_app(
        "default",
        "web",
        json!({"metadata": {"labels": {"tier": "back"}}}),
    )
    .await;
    let start = h.revision().await;
    let mut watch = h
        .watch(&format!(
            "{}?watch=1&resourceVersion={start}&labelSelector=tier%3Dfront",
            apps("default")
        ))
        .await;
    let front = h
        .merge_patch(
            &app_url("default", "web"),
            &json!({"metadata": {"labels": {"tier": "front"}}}),
        )
        .await
        .expect(200, None);
    assert_eq!(watch.next_event().await, event("ADDED", "web", &rv(&front)));
    let still = h
        .merge_patch(
            &app_url("default", "web"),
            &json!({"spec": {"instances": 3}}),
        )
        .await
        .expect(200, None);
    assert_eq!(
        watch.next_event().await,
        event("MODIFIED", "web", &rv(&still))
    );
    let back = h
        .merge_patch(
            &app_url("default", "web"),
            &json!({"metadata": {"labels": {"tier": "back"}}}),
        )
        .await
        .expect(200, None);
    assert_eq!(
        watch.next_event().await,
        event("DELETED", "web", &rv(&back))
    );

    // kubectl get NAME -w: resourceVersion=0 and a field selector.
    h.create_app("default", "db", json!({})).await;
    let mut named = h
        .watch(&format!(
            "{}?watch=1&resourceVersion=0&fieldSelector=metadata.name%3Dweb",
            apps("default")
        ))
        .await;
    assert_eq!(named.next_event().await, event("ADDED", "web", &rv(&back)));
    h.merge_patch(
        &app_url("default", "db"),
        &json!({"spec": {"instances": 2}}),
    )
    .await
    .expect(200, None);
    let deleted = h
        .delete(&app_url("default", "web"), None)
        .await
        .expect(200, None);
    let (kind, name, _) = named.next_event().await;
    assert_eq!((kind.as_str(), name.as_str()), ("DELETED", "web"));
    assert_eq!(deleted["metadata"]["name"], "web");
}

#[tokio::test]
async fn bookmarks_and_initial_events_end() {
    let h = Harness::with_config(
        ApiConfig::default().with_bookmark_interval(Duration::from_millis(200)),
    );
    let a = h.create_app("default", "a", json!({})).await;
    let mut watch = h
        .watch(&format!(
            "{}?watch=1&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=0",
            apps("default")
        ))
        .await;
    assert_eq!(watch.next_event().await, event("ADDED", "a", &rv(&a)));
    let end = watch.next().await.unwrap();
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(end["object"]["kind"], "App");
    assert_eq!(end["object"]["apiVersion"], "pacer.dev/v1");
    let b = h.create_app("default", "b", json!({})).await;
    assert_eq!(watch.next_event().await, event("ADDED", "b", &rv(&b)));
    let bookmark = watch.next().await.unwrap();
    assert_eq!(bookmark["type"], "BOOKMARK");
    assert_eq!(bookmark["object"]["metadata"]["resourceVersion"], rv(&b));

    // Without allowWatchBookmarks, no bookmark comes.
    let mut quiet = h
        .watch(&format!(
            "{}?watch=1&resourceVersion={}",
            apps("default"),
            rv(&b)
        ))
        .await;
    assert!(quiet.next_within(Duration::from_millis(600)).await.is_err());
}

#[tokio::test]
async fn timeout_seconds_ends_the_stream_cleanly() {
    let h = Harness::new();
    let start = h.revision().await;
    let began = std::time::Instant::now();
    let mut watch = h
        .watch(&format!(
            "{}?watch=1&resourceVersion={start}&timeoutSeconds=1",
            apps("default")
        ))
        .await;
    assert_eq!(watch.next().await, None);
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn compacted_resource_version_is_an_error_event() {
    let h = Harness::new();
    let a = h.create_app("default", "a", json!({})).await;
    for instances in 2..5 {
        h.merge_patch(
            &app_url("default", "a"),
            &json!({"spec": {"instances": instances}}),
        )
        .await
        .expect(200, None);
    }
    let current = h.revision().await;
    h.store.compact(current).await.unwrap();
    let mut watch = h
        .watch(&format!(
            "{}?watch=1&resourceVersion={}",
            apps("default"),
            rv(&a)
        ))
        .await;
    let frame = watch.next().await.unwrap();
    assert_eq!(frame["type"], "ERROR");
    assert_eq!(frame["object"]["kind"], "Status");
    assert_eq!(frame["object"]["code"], 410);
    assert_eq!(frame["object"]["reason"], "Expired");
    assert_eq!(watch.next().await, None);
    // Lists past compaction still work, and a watch from the list revision does too.
    let list = h.get(&apps("default")).await.expect(200, None);
    let mut fresh = h
        .watch(&format!(
            "{}?watch=1&resourceVersion={}",
            apps("default"),
            list["metadata"]["resourceVersion"].as_str().unwrap()
        ))
        .await;
    let b = h.create_app("default", "b", json!({})).await;
    assert_eq!(fresh.next_event().await, event("ADDED", "b", &rv(&b)));
}

#[tokio::test]
async fn a_lagging_watcher_resumes_from_the_store_without_gaps() {
    let h = Harness::with_config(ApiConfig::default().with_watch_buffers(4, 2));
    let start = h.revision().await;
    let mut watch = h
        .watch(&format!(
            "{}?watch=1&resourceVersion={start}",
            apps("default")
        ))
        .await;
    // Another watcher starts the feed too and keeps up.
    let mut names = Vec::new();
    for index in 0..150 {
        let name = format!("app-{index:03}");
        h.create_app("default", &name, json!({})).await;
        names.push(name);
    }
    let mut seen = Vec::new();
    let mut last = start;
    while seen.len() < names.len() {
        let (kind, name, revision) = watch.next_event().await;
        assert_eq!(kind, "ADDED");
        let revision: i64 = revision.parse().unwrap();
        assert!(revision > last, "revisions in order");
        last = revision;
        seen.push(name);
    }
    assert_eq!(seen, names);
}

#[tokio::test]
async fn shutdown_ends_watches() {
    let h = Harness::new();
    let start = h.revision().await;
    let mut watch = h
        .watch(&format!(
            "{}?watch=1&resourceVersion={start}",
            apps("default")
        ))
        .await;
    h.state.shut_down();
    assert_eq!(watch.next().await, None);
}

#[tokio::test]
async fn bad_watch_parameters_are_400() {
    let h = Harness::new();
    for query in [
        "watch=yes",
        "watch=1&resourceVersion=x",
        "watch=1&timeoutSeconds=-1",
    ] {
        h.get(&format!("{}?{query}", apps("default")))
            .await
            .expect(400, Some("BadRequest"));
    }
}
