//! End to end: placement in the real `pacer dev` (embedded store, API server, placement
//! controller under leader election) on a free loopback port, and the same in the real
//! `pacer server` on a throwaway etcd. Hollow nodes come from
//! `pacer node register-hollow` (agentless: bound instances stay `Staging`); the deployment
//! controller creates each App's Instances, and placement binds them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;

use pacer_testkit::EtcdServer;
use serde_json::{Value, json};
use support::{INSTANCES, Server};

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

    dev.server.create(
        "/apis/pacer.dev/v1/namespaces/default/apps",
        &json!({
            "apiVersion": "pacer.dev/v1", "kind": "App",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"instances": 3, "cmd": "sleep 1000", "cpus": 0.5, "mem": 256,
                     "constraints": [["hostname", "UNIQUE"]],
                     "portDefinitions": [{"port": 0, "name": "http"}]},
        }),
    );
    let bound: Vec<Value> = dev.server.eventually("three bound web instances", || {
        let instances = dev.server.instances_of("default", "web");
        (instances.len() == 3
            && instances
                .iter()
                .all(|instance| instance["spec"]["nodeName"].is_string()))
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

    dev.server.create(
        "/apis/pacer.dev/v1/namespaces/default/apps",
        &json!({
            "apiVersion": "pacer.dev/v1", "kind": "App",
            "metadata": {"name": "huge", "namespace": "default"},
            "spec": {"instances": 1, "cmd": "sleep 1000", "cpus": 0.5, "mem": 100000},
        }),
    );
    let huge = dev.server.eventually("the huge instance", || {
        let instances = dev.server.instances_of("default", "huge");
        instances.first()?["metadata"]["name"]
            .as_str()
            .map(str::to_owned)
    });
    let event_path =
        format!("/apis/pacer.dev/v1/namespaces/default/events/{huge}.failedscheduling");
    let condition = dev.server.eventually("the Scheduled=False condition", || {
        let instance = dev.server.get_json(&format!("{INSTANCES}/{huge}"));
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
    assert!(dev.server.get_json(&format!("{INSTANCES}/{huge}"))["spec"]["nodeName"].is_null());
    let event = dev.server.eventually("a FailedScheduling Event", || {
        let (code, event) = dev.http("GET", &event_path, None);
        (code == 200).then_some(event)
    });
    assert_eq!(event["reason"], "FailedScheduling");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["involvedObject"]["kind"], "Instance");
    assert_eq!(event["involvedObject"]["name"], huge);
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
    let event = dev.server.eventually("the Event bumped", || {
        let (_, event) = dev.http("GET", &event_path, None);
        (event["count"].as_i64() >= Some(2)).then_some(event)
    });
    assert_eq!(event["message"], "0/6 nodes available: 6 insufficient mem");
    let (_, events) = dev.http("GET", "/apis/pacer.dev/v1/namespaces/default/events", None);
    let scheduling = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["reason"] == "FailedScheduling")
        .count();
    assert_eq!(scheduling, 1, "deduplicated: {events}");
}
