//! End to end: placement in the real `pacer dev` (embedded store, API server, placement
//! controller under leader election) on a free loopback port, and the same in the real
//! `pacer server` on a throwaway etcd. Hollow nodes come from
//! `pacer node register-hollow`; Instances are created through the HTTP API (as the deployment
//! controller of a later issue will), owned by their App.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use pacer_testkit::EtcdServer;
use serde_json::{Value, json};
use support::Server;

/// A running `pacer dev`, or `pacer server` on a throwaway etcd, killed on drop.
struct Dev {
    server: Server,
    /// Dropped (killed) after the server, which is declared first.
    _etcd: Option<EtcdServer>,
}

impl Dev {
    fn start() -> Self {
        Self {
            server: Server::dev(),
            _etcd: None,
        }
    }

    fn start_server() -> Self {
        let etcd = EtcdServer::start()
            .expect("start a throwaway etcd (is etcd installed? hack/install-deps.sh)");
        let store = format!("etcd://{}", etcd.endpoint());
        Self {
            server: Server::start(&["server", "--store", &store]),
            _etcd: Some(etcd),
        }
    }

    /// A raw HTTP request: status code and JSON body (`null` if the body is not JSON).
    fn http(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let response = self.server.http(method, path, body);
        (
            response.code,
            serde_json::from_str(&response.body).unwrap_or(Value::Null),
        )
    }

    fn pacer(&self, args: &[&str]) -> String {
        self.server.run(args).success().stdout
    }

    fn create(&self, path: &str, object: &Value) -> Value {
        let (code, body) = self.http("POST", path, Some(object));
        assert_eq!(code, 201, "POST {path}: {body}");
        body
    }

    fn instance(&self, name: &str) -> Value {
        let (code, body) = self.http(
            "GET",
            &format!("/apis/pacer.dev/v1/namespaces/default/instances/{name}"),
            None,
        );
        assert_eq!(code, 200, "{body}");
        body
    }

    fn eventually<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn instance_of(app: &Value, name: &str) -> Value {
    json!({
        "apiVersion": "pacer.dev/v1",
        "kind": "Instance",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"pacer.dev/app": app["metadata"]["name"]},
            "ownerReferences": [{
                "apiVersion": "pacer.dev/v1",
                "kind": "App",
                "name": app["metadata"]["name"],
                "uid": app["metadata"]["uid"],
                "controller": true,
            }],
        },
        "spec": {
            "app": app["metadata"]["name"],
            "appVersion": "2024-05-01T10:00:00Z",
            "template": app["spec"],
        },
    })
}

#[test]
fn dev_binds_unique_instances_and_reports_an_unschedulable_one() {
    scenario(&Dev::start());
}

#[test]
fn server_on_etcd_binds_unique_instances_and_reports_an_unschedulable_one() {
    scenario(&Dev::start_server());
}

/// Five hollow nodes; three `hostname:UNIQUE` instances land on three nodes; one too large
/// for any node stays pending with its reason in a condition and a deduplicated Event.
fn scenario(dev: &Dev) {
    let registered = dev.pacer(&[
        "node",
        "register-hollow",
        "--count",
        "5",
        "--cpus",
        "4",
        "--mem",
        "4096",
        "--racks",
        "5",
    ]);
    assert_eq!(registered.lines().count(), 5, "{registered}");
    let (_, nodes) = dev.http("GET", "/apis/pacer.dev/v1/nodes", None);
    let nodes = nodes["items"].as_array().unwrap();
    assert_eq!(nodes.len(), 5);
    for node in nodes {
        assert_eq!(node["status"]["allocatable"]["mem"], 4096.0, "{node}");
        assert_eq!(node["status"]["conditions"][0]["type"], "Ready");
        assert!(node["spec"]["attributes"]["rack"].is_string());
    }

    let web = dev.create(
        "/apis/pacer.dev/v1/namespaces/default/apps",
        &json!({
            "apiVersion": "pacer.dev/v1", "kind": "App",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"instances": 3, "cmd": "sleep 1000", "cpus": 0.5, "mem": 256,
                     "constraints": [["hostname", "UNIQUE"]],
                     "portDefinitions": [{"port": 0, "name": "http"}]},
        }),
    );
    for index in 1..=3 {
        dev.create(
            "/apis/pacer.dev/v1/namespaces/default/instances",
            &instance_of(&web, &format!("web.{index}")),
        );
    }
    let bound: Vec<Value> = dev.eventually("three bound web instances", || {
        let instances: Vec<Value> = (1..=3)
            .map(|index| dev.instance(&format!("web.{index}")))
            .collect();
        instances
            .iter()
            .all(|instance| instance["spec"]["nodeName"].is_string())
            .then_some(instances)
    });
    let nodes: HashSet<&str> = bound
        .iter()
        .map(|instance| instance["spec"]["nodeName"].as_str().unwrap())
        .collect();
    assert_eq!(nodes.len(), 3, "UNIQUE hostname: {bound:#?}");
    for instance in &bound {
        assert!(
            instance["spec"]["nodeName"]
                .as_str()
                .unwrap()
                .starts_with("hollow-")
        );
        assert_eq!(instance["spec"]["hostPorts"].as_array().unwrap().len(), 1);
        assert_eq!(instance["metadata"]["generation"], 2, "{instance}");
        assert_eq!(instance["status"]["phase"], "Staging", "{instance}");
        assert_eq!(instance["status"]["conditions"][0]["type"], "Scheduled");
        assert_eq!(instance["status"]["conditions"][0]["status"], "True");
    }

    let huge = dev.create(
        "/apis/pacer.dev/v1/namespaces/default/apps",
        &json!({
            "apiVersion": "pacer.dev/v1", "kind": "App",
            "metadata": {"name": "huge", "namespace": "default"},
            "spec": {"instances": 1, "cmd": "sleep 1000", "cpus": 0.5, "mem": 100000},
        }),
    );
    dev.create(
        "/apis/pacer.dev/v1/namespaces/default/instances",
        &instance_of(&huge, "huge.1"),
    );
    let condition = dev.eventually("the Scheduled=False condition", || {
        let instance = dev.instance("huge.1");
        let condition = instance["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|condition| condition["type"] == "Scheduled")?
            .clone();
        Some(condition)
    });
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "Unschedulable");
    assert_eq!(
        condition["message"], "0/5 nodes available: 5 insufficient mem",
        "{condition}"
    );
    assert!(dev.instance("huge.1")["spec"]["nodeName"].is_null());
    let event = dev.eventually("a FailedScheduling Event", || {
        let (code, event) = dev.http(
            "GET",
            "/apis/pacer.dev/v1/namespaces/default/events/huge.1.failedscheduling",
            None,
        );
        (code == 200).then_some(event)
    });
    assert_eq!(event["reason"], "FailedScheduling");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["involvedObject"]["kind"], "Instance");
    assert_eq!(event["involvedObject"]["name"], "huge.1");
    assert_eq!(event["message"], "0/5 nodes available: 5 insufficient mem");
    assert!(event["count"].as_i64().unwrap() >= 1);

    // A sixth node changes the reason: the condition and the same Event follow it.
    dev.pacer(&[
        "node",
        "register-hollow",
        "--count",
        "1",
        "--name-prefix",
        "extra-",
        "--mem",
        "4096",
    ]);
    let event = dev.eventually("the Event bumped", || {
        let (_, event) = dev.http(
            "GET",
            "/apis/pacer.dev/v1/namespaces/default/events/huge.1.failedscheduling",
            None,
        );
        (event["count"].as_i64() >= Some(2)).then_some(event)
    });
    assert_eq!(event["message"], "0/6 nodes available: 6 insufficient mem");
    let (_, events) = dev.http("GET", "/apis/pacer.dev/v1/namespaces/default/events", None);
    assert_eq!(
        events["items"].as_array().unwrap().len(),
        1,
        "deduplicated: {events}"
    );
}
