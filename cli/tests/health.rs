//! End to end: health checks on `pacer dev` with its in-process agent (process runtime). Two
//! Apps serve HTTP on `$PORT0` with `python3 -m http.server` and have an HTTP health check:
//! `web` keeps serving and stays healthy; `flaky` stops serving after a few seconds, turns
//! unhealthy, and after `maxConsecutiveFailures` the health controller decommissions it (with
//! an `Unhealthy` Event naming the check and the cause), the agent kills its process, and the
//! deployment controller starts a replacement.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::{INSTANCES, Server, process_alive};

const EVENTS: &str = "/apis/pacer.dev/v1/namespaces/default/events";

fn instance(server: &Server, name: &str) -> Option<Value> {
    server.get_if_found(&format!("{INSTANCES}/{name}"))
}

/// An App serving HTTP on its one port with `cmd`, checked over HTTP every second (with a
/// generous timeout: a loaded machine must not fail a healthy server).
fn manifest(name: &str, cmd: &str) -> String {
    format!(
        "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  cmd: \"{cmd}\"\n  instances: 1\n  cpus: 0.1\n  mem: 64\n\
         \x20 portDefinitions: [{{port: 0, name: http}}]\n\
         \x20 healthChecks:\n  - protocol: HTTP\n    path: /\n    portIndex: 0\n\
         \x20   gracePeriodSeconds: 60\n    intervalSeconds: 1\n    timeoutSeconds: 5\n\
         \x20   delaySeconds: 0\n    maxConsecutiveFailures: 3\n"
    )
}

#[test]
fn unhealthy_instances_are_killed_and_replaced() {
    let server = Server::dev_with_agent();
    let serve = "exec python3 -m http.server $PORT0 --bind 127.0.0.1";
    let file = server.write("web.yaml", &manifest("web", serve));
    server.run(&["apply", "-f", &file]).success();
    // Serves for 8 seconds, then keeps running with its port closed.
    let closes = "timeout 8 python3 -m http.server $PORT0 --bind 127.0.0.1; exec sleep 600";
    let file = server.write("flaky.yaml", &manifest("flaky", closes));
    server.run(&["apply", "-f", &file]).success();

    // Both turn healthy: the agent probed them and reported it.
    for app in ["web", "flaky"] {
        server.eventually(&format!("{app} healthy"), || {
            let items = server.instances_of("default", app);
            let healthy = items.len() == 1
                && items[0]["status"]["healthy"] == true
                && items[0]["status"]["health"][0]["alive"] == true
                && items[0]["status"]["health"][0]["firstSuccess"].is_string();
            healthy.then_some(())
        });
    }
    let flaky = server.instances_of("default", "flaky").remove(0);
    let flaky_name = flaky["metadata"]["name"].as_str().unwrap().to_owned();
    let flaky_pid = flaky["status"]["runtimeId"].as_str().unwrap().to_owned();
    let web_name = server.instances_of("default", "web")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();

    // flaky's port closes: it turns unhealthy (the failures count, having passed before).
    server.eventually("flaky unhealthy", || {
        let object = instance(&server, &flaky_name)?;
        let status = &object["status"];
        let failing = status["healthy"] == false
            && status["health"][0]["consecutiveFailures"].as_i64() >= Some(1)
            && status["health"][0]["lastFailureCause"]
                .as_str()
                .is_some_and(|cause| !cause.is_empty());
        (failing || object["spec"]["goal"] == "Decommissioned").then_some(())
    });

    // After 3 failures in a row: an Unhealthy Event naming the check and the cause, the
    // process killed, and a new instance in its place.
    let event = server.eventually("the Unhealthy Event", || {
        let response = server.http("GET", &format!("{EVENTS}/{flaky_name}.unhealthy"), None);
        (response.code == 200).then(|| response.json())
    });
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "Unhealthy");
    assert_eq!(event["involvedObject"]["name"], flaky_name.as_str());
    let message = event["message"].as_str().unwrap();
    assert!(
        message.contains("healthChecks[0] (HTTP / on port index 0)")
            && message.contains("failed 3 time(s) in a row")
            && message.contains("127.0.0.1:"),
        "{message}"
    );
    server.eventually("the unhealthy process killed", || {
        (!process_alive(&flaky_pid)).then_some(())
    });
    server.eventually(
        "the old instance killed (or already removed)",
        || match instance(&server, &flaky_name) {
            None => Some(()),
            Some(object) => (object["spec"]["goal"] == "Decommissioned"
                && object["status"]["phase"] == "Killed")
                .then_some(()),
        },
    );
    server.eventually("a replacement running", || {
        server
            .instances_of("default", "flaky")
            .iter()
            .any(|object| {
                object["metadata"]["name"] != flaky_name.as_str()
                    && object["status"]["phase"] == "Running"
                    && object["spec"]["goal"] == "Running"
            })
            .then_some(())
    });

    // web was never touched.
    let web = instance(&server, &web_name).expect("web's instance is still there");
    assert_eq!(web["spec"]["goal"], "Running");
    assert_eq!(web["status"]["healthy"], true);
    let response = server.http("GET", &format!("{EVENTS}/{web_name}.unhealthy"), None);
    assert_eq!(response.code, 404);
    server.assert_no_unexpected_errors(&[]);
}
