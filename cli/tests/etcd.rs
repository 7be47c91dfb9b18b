//! End to end on etcd: the real `pacer server --store etcd://…` on a throwaway etcd
//! (`pacer-testkit`), driven by the real `pacer` CLI and raw HTTP, must behave as `pacer dev`
//! does on the embedded store. One scenario runs against both backends with the same
//! assertions; the etcd-only tests cover what only a remote store can do: go away and come
//! back while the server keeps running, and a clean SIGTERM afterwards. The servers run with
//! `--no-controllers`: the scenario checks exact watch and resourceVersion semantics of the
//! API, which the controllers' own writes (App status, finalizers) would interleave with.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pacer_testkit::EtcdServer;
use serde_json::Value;
use support::{HTTP_TIMEOUT, Server, Watch, WatchItem, repo_root};

const EXAMPLES: &str = "manifests/examples/";
const HELLO: &str = "manifests/examples/hello-process.yaml";
const APPS: &str = "/apis/pacer.dev/v1/apps";
const HELLO_PATH: &str = "/apis/pacer.dev/v1/namespaces/default/apps/hello";

/// How long a watch event may take to arrive after the write that caused it.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A fresh throwaway etcd; fails (never skips) when etcd is missing, as the store's
/// conformance suite does.
fn start_etcd() -> EtcdServer {
    EtcdServer::start().expect("start a throwaway etcd (is etcd installed? hack/install-deps.sh)")
}

/// `pacer server` on `etcd`.
fn start_server(etcd: &EtcdServer) -> Server {
    Server::start(&[
        "server",
        "--no-controllers",
        "--store",
        &format!("etcd://{}", etcd.endpoint()),
    ])
}

/// `pacer dev` on a fresh embedded store in a temporary directory (removed with `data`).
fn start_dev(data: &tempfile::TempDir) -> Server {
    let dir = data.path().to_str().unwrap();
    Server::start(&["dev", "--no-agent", "--no-controllers", "--data-dir", dir])
}

fn resource_version(object: &Value) -> u64 {
    let text = object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no metadata.resourceVersion in {object:#}"));
    text.parse()
        .unwrap_or_else(|_| panic!("resourceVersion {text:?} is not a number in {object:#}"))
}

/// `namespace/name` of an object.
fn key(object: &Value) -> String {
    format!(
        "{}/{}",
        object["metadata"]["namespace"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

#[track_caller]
fn expect_event(watch: &Watch, kind: &str, context: &str) -> Value {
    match watch.next_change(EVENT_TIMEOUT) {
        Some(WatchItem::Event(event)) => {
            assert_eq!(event["type"], kind, "{context}: {event:#}");
            event["object"].clone()
        }
        other => {
            panic!("{context}: expected a {kind} event within {EVENT_TIMEOUT:?}, got {other:?}")
        }
    }
}

/// The scenario both backends must pass identically: apply (created, then unchanged), get
/// with resourceVersions, a watch from the list's resourceVersion that sees MODIFIED and
/// DELETED, and a 409 for a PUT with a stale resourceVersion. Returns the open watch.
fn api_scenario(server: &Server) -> Watch {
    // Apply the examples: every object created, in file order.
    let created = server.run(&["apply", "-f", EXAMPLES]).success();
    assert_eq!(
        created.stdout,
        "app.pacer.dev/hello created\napp.pacer.dev/db created\napp.pacer.dev/api created\n\
         app.pacer.dev/web created\napp.pacer.dev/web created\n"
    );
    assert_eq!(created.stderr, "");

    // Again: nothing changes.
    let again = server.run(&["apply", "-f", EXAMPLES]).success();
    assert_eq!(
        again.stdout,
        "app.pacer.dev/hello unchanged\napp.pacer.dev/db unchanged\napp.pacer.dev/api unchanged\n\
         app.pacer.dev/web unchanged\napp.pacer.dev/web unchanged\n"
    );

    // `pacer get -A -o json`: all five, each with a numeric resourceVersion and a uid.
    let listed = server
        .run(&["get", "apps", "-A", "-o", "json"])
        .success()
        .json();
    let items = listed["items"].as_array().expect("a List with items");
    let keys: BTreeSet<String> = items.iter().map(key).collect();
    let expected: BTreeSet<String> = [
        "default/hello",
        "default/web",
        "shop/db",
        "shop/api",
        "shop/web",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(keys, expected, "{listed:#}");
    for item in items {
        assert!(resource_version(item) > 0, "{item:#}");
        assert!(item["metadata"]["uid"].is_string(), "{item:#}");
        assert_eq!(item["metadata"]["generation"], 1, "{item:#}");
    }
    let hello_before = items
        .iter()
        .find(|item| key(item) == "default/hello")
        .unwrap()
        .clone();

    // The same list over raw HTTP: same versions, and a list resourceVersion at least as new.
    let list = server.http("GET", APPS, None);
    assert_eq!(list.code, 200, "{list:#?}");
    let list = list.json();
    assert_eq!(list["kind"], "AppList", "{list:#}");
    let list_rv = resource_version(&list);
    for item in list["items"].as_array().unwrap() {
        let from_cli = items.iter().find(|cli| key(cli) == key(item)).unwrap();
        assert_eq!(
            resource_version(item),
            resource_version(from_cli),
            "{}",
            key(item)
        );
        assert!(resource_version(item) <= list_rv, "{}", key(item));
    }

    // Watch every namespace from the list's resourceVersion: nothing happened since.
    let watch = Watch::start(
        &server.address,
        &format!("{APPS}?watch=1&resourceVersion={list_rv}"),
    );
    assert_eq!(watch.code, 200, "watch answered:\n{}", watch.head);
    if let Some(item) = watch.next_change(Duration::from_millis(500)) {
        panic!("a watch from the list's resourceVersion {list_rv} replayed {item:?}");
    }

    // A changed manifest: `pacer apply` configures it, the watch sees MODIFIED.
    let text = std::fs::read_to_string(repo_root().join(HELLO)).unwrap();
    assert!(text.contains("instances: 1\n"));
    let changed = server.write(
        "hello.yaml",
        &text.replace("instances: 1\n", "instances: 3\n"),
    );
    let configured = server.run(&["apply", "-f", &changed]).success();
    assert_eq!(configured.stdout, "app.pacer.dev/hello configured\n");
    let modified = expect_event(&watch, "MODIFIED", "after apply of a changed manifest");
    assert_eq!(key(&modified), "default/hello", "{modified:#}");
    assert_eq!(modified["spec"]["instances"], 3, "{modified:#}");
    assert_eq!(modified["metadata"]["generation"], 2, "{modified:#}");
    assert_eq!(modified["metadata"]["uid"], hello_before["metadata"]["uid"]);
    let modified_rv = resource_version(&modified);
    assert!(modified_rv > list_rv, "{modified_rv} > {list_rv}");

    // A PUT carrying the old resourceVersion: 409 Conflict as a Status, nothing written.
    let stale = server.http("PUT", HELLO_PATH, Some(&hello_before));
    assert_eq!(stale.code, 409, "{stale:#?}");
    let status = stale.json();
    assert_eq!(status["kind"], "Status", "{status:#}");
    assert_eq!(status["status"], "Failure", "{status:#}");
    assert_eq!(status["reason"], "Conflict", "{status:#}");
    assert_eq!(status["code"], 409, "{status:#}");
    assert_eq!(status["details"]["name"], "hello", "{status:#}");
    let current = server.http("GET", HELLO_PATH, None);
    assert_eq!(current.code, 200, "{current:#?}");
    let current = current.json();
    assert_eq!(resource_version(&current), modified_rv, "{current:#}");
    assert_eq!(current["spec"]["instances"], 3, "{current:#}");

    // `pacer delete`: the watch sees DELETED, and the object is gone.
    let deleted = server.run(&["delete", "app", "hello"]).success();
    assert_eq!(deleted.stdout, "app.pacer.dev \"hello\" deleted\n");
    let gone = expect_event(&watch, "DELETED", "after pacer delete");
    assert_eq!(key(&gone), "default/hello", "{gone:#}");
    assert!(resource_version(&gone) > modified_rv, "{gone:#}");
    if let Some(item) = watch.next_change(Duration::from_millis(500)) {
        panic!("the watch delivered more than MODIFIED and DELETED: {item:?}");
    }
    let missing = server.run(&["get", "app", "hello"]).failure();
    assert_eq!(
        missing.stderr.trim_end(),
        "Error from server (NotFound): apps.pacer.dev \"hello\" not found"
    );
    watch
}

#[test]
fn api_scenario_on_etcd_then_sigterm() {
    let etcd = start_etcd();
    let mut server = start_server(&etcd);
    let watch = api_scenario(&server);

    // SIGTERM with a watch still open: the watch ends and the server exits 0.
    let status = server.terminate();
    assert!(
        status.success(),
        "pacer server exited with {status}; log:\n{}",
        server.log()
    );
    match watch.next(Duration::from_secs(5)) {
        Some(WatchItem::End | WatchItem::Broken(_)) => {}
        other => panic!("the open watch did not end on shutdown: {other:?}"),
    }
    server.assert_no_unexpected_errors(&[]);
}

/// The control: the very same scenario on `pacer dev`'s embedded store.
#[test]
fn api_scenario_on_the_embedded_store() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start_dev(&data);
    let _watch = api_scenario(&server);
    let status = server.terminate();
    assert!(
        status.success(),
        "pacer dev exited with {status}; log:\n{}",
        server.log()
    );
    server.assert_no_unexpected_errors(&[]);
}

/// Asserts that `response` is the quick 503 (or 504) `Status` of an unavailable store.
#[track_caller]
fn assert_store_unavailable(response: &support::HttpResponse) {
    assert!(
        matches!(response.code, 503 | 504),
        "expected 503/504 while etcd is down: {response:#?}"
    );
    let status = response.json();
    assert_eq!(status["kind"], "Status", "{response:#?}");
    assert_eq!(status["status"], "Failure", "{response:#?}");
    assert_eq!(status["code"], response.code, "{response:#?}");
    assert!(
        matches!(
            status["reason"].as_str(),
            Some("ServiceUnavailable" | "Timeout")
        ),
        "{response:#?}"
    );
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("storage") && message.contains("unavailable"),
        "the message should name the store as unavailable: {response:#?}"
    );
}

#[test]
fn etcd_outage_answers_503_and_recovers_after_restart() {
    let mut etcd = start_etcd();
    let mut server = start_server(&etcd);
    server.run(&["apply", "-f", HELLO]).success();
    let list = server.http("GET", APPS, None);
    assert_eq!(list.code, 200, "{list:#?}");
    let list_rv = resource_version(&list.json());

    let open_watch = Watch::start(
        &server.address,
        &format!("{APPS}?watch=1&resourceVersion={list_rv}"),
    );
    assert_eq!(open_watch.code, 200, "{}", open_watch.head);
    let killed = Instant::now();
    etcd.kill();

    // A watch open when etcd died gets an ERROR event holding the 503 Status, or ends, so
    // its client re-watches; it does not hang silently.
    match open_watch.next_change(EVENT_TIMEOUT) {
        Some(WatchItem::Event(event)) => {
            assert_eq!(event["type"], "ERROR", "{event:#}");
            assert_eq!(event["object"]["kind"], "Status", "{event:#}");
            assert_eq!(event["object"]["code"], 503, "{event:#}");
            assert_eq!(event["object"]["reason"], "ServiceUnavailable", "{event:#}");
            // As in Kubernetes, the stream ends after an ERROR event.
            match open_watch.next(Duration::from_secs(5)) {
                Some(WatchItem::End | WatchItem::Broken(_)) => {}
                other => panic!("the watch went on after its ERROR event: {other:?}"),
            }
        }
        Some(WatchItem::End | WatchItem::Broken(_)) => {}
        None => panic!("an open watch heard nothing within {EVENT_TIMEOUT:?} of etcd dying"),
    }
    assert!(killed.elapsed() < EVENT_TIMEOUT);

    // Readiness reports the outage, so load balancers stop sending requests; liveness does not
    // (the process is fine, restarting it would not help).
    let readyz = server.http("GET", "/readyz", None);
    assert_eq!(readyz.code, 503, "{readyz:#?}");
    let livez = server.http("GET", "/livez", None);
    assert_eq!(livez.code, 200, "{livez:#?}");

    // Reads, lists, writes and watches answer with a Status, in well under HTTP_TIMEOUT.
    let get = server.http("GET", HELLO_PATH, None);
    assert_store_unavailable(&get);
    let list = server.http("GET", APPS, None);
    assert_store_unavailable(&list);
    let object = serde_json::json!({
        "apiVersion": "pacer.dev/v1",
        "kind": "App",
        "metadata": {"name": "during-outage"},
        "spec": {"cmd": "sleep 100"},
    });
    let create = server.http(
        "POST",
        "/apis/pacer.dev/v1/namespaces/default/apps",
        Some(&object),
    );
    assert_store_unavailable(&create);
    // A new watch: from a resourceVersion the store must serve, and from "now".
    for path in [
        format!("{APPS}?watch=1&resourceVersion={list_rv}"),
        format!("{APPS}?watch=1"),
    ] {
        let watch = Watch::start(&server.address, &path);
        if watch.code == 200 {
            match watch.next_change(EVENT_TIMEOUT) {
                Some(WatchItem::Event(event)) if event["type"] == "ERROR" => {
                    assert_eq!(event["object"]["code"], 503, "GET {path}: {event:#}");
                }
                other => panic!("GET {path} while etcd is down: 200, then {other:?}"),
            }
        } else {
            assert!(
                matches!(watch.code, 503 | 504),
                "GET {path} while etcd is down:\n{}",
                watch.head
            );
        }
    }
    for response in [&get, &list, &create] {
        assert!(
            response.took < HTTP_TIMEOUT / 2,
            "{} took {:?}",
            response.request,
            response.took
        );
    }
    // The CLI reports it and fails.
    let cli = server.run(&["get", "app", "hello"]);
    assert_eq!(cli.code, Some(1), "{cli:#?}");
    assert!(cli.stderr.contains("unavailable"), "{cli:#?}");
    assert!(
        server.exited().is_none(),
        "pacer server died:\n{}",
        server.log()
    );

    // etcd comes back on the same data: requests succeed again, with what was stored.
    etcd.restart().expect("etcd restarts on its data");
    let back = server.eventually("GET hello to succeed after etcd restarted", || {
        let response = server.http("GET", HELLO_PATH, None);
        (response.code == 200).then_some(response)
    });
    assert!(resource_version(&back.json()) <= list_rv);
    let readyz = server.http("GET", "/readyz", None);
    assert_eq!(readyz.code, 200, "{readyz:#?}");
    let create = server.http(
        "POST",
        "/apis/pacer.dev/v1/namespaces/default/apps",
        Some(&object),
    );
    assert_eq!(create.code, 201, "{create:#?}");
    let watch = Watch::start(
        &server.address,
        &format!("{APPS}?watch=1&resourceVersion={list_rv}"),
    );
    assert_eq!(watch.code, 200, "{}", watch.head);
    let added = expect_event(&watch, "ADDED", "a watch after etcd came back");
    assert_eq!(key(&added), "default/during-outage", "{added:#}");
    server.run(&["get", "app", "during-outage"]).success();

    let status = server.terminate();
    assert!(
        status.success(),
        "pacer server exited with {status}; log:\n{}",
        server.log()
    );
    // tower-http's trace layer logs every 5xx answer at ERROR (beside the server's own WARN
    // "store unavailable"): expected here, and only for 503s.
    server.assert_no_unexpected_errors(&[
        "tower_http::trace::on_failure: response failed classification=Status code: 503",
    ]);
}
