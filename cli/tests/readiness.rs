//! End to end: a rolling deploy gated by readiness checks, on `pacer dev` with its in-process
//! agent (process runtime). The App `gated` has one instance, `upgradeStrategy` 1/1 and an
//! HTTP readiness check on `/ready`; it serves HTTP with `python3 -m http.server`. Version 1
//! creates `ready` in its sandbox and serves it, so it turns ready and its rollout finishes.
//! Version 2 serves a directory of the test's scratch directory where `ready` does not exist
//! yet: its readiness probe gets 404, and while it does the v1 instance keeps running and the
//! Deployment stays `Running`. Once the test creates the file, v2 turns ready, the Deployment
//! succeeds, v1's process is killed and v2 is the App's only instance.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{INSTANCES, Server, process_alive};

const APP: &str = "/apis/pacer.dev/v1/namespaces/default/apps/gated";

/// How long the test watches v1 and the Deployment stay put while v2 is not ready.
const HOLD: Duration = Duration::from_secs(4);

/// The App `gated` serving HTTP with `cmd`, gated by a readiness check on `/ready` (every 2 s,
/// timeout 1 s — validation wants the timeout below the interval) that keeps the last response.
fn manifest(cmd: &str) -> String {
    format!(
        "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {{name: gated, namespace: default}}\n\
         spec:\n  cmd: \"{cmd}\"\n  instances: 1\n  cpus: 0.1\n  mem: 64\n\
         \x20 portDefinitions: [{{port: 0, name: http}}]\n\
         \x20 upgradeStrategy: {{minimumHealthCapacity: 1, maximumOverCapacity: 1}}\n\
         \x20 readinessChecks:\n  - name: ready\n    protocol: HTTP\n    path: /ready\n\
         \x20   portName: http\n    intervalSeconds: 2\n    timeoutSeconds: 1\n\
         \x20   httpStatusCodesForReady: [200]\n    preserveLastResponse: true\n"
    )
}

fn instance(server: &Server, name: &str) -> Option<Value> {
    server.get_if_found(&format!("{INSTANCES}/{name}"))
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap().to_owned()
}

fn deployment(server: &Server, name: &str) -> Value {
    server.get_json(&format!("/apis/pacer.dev/v1/deployments/{name}"))
}

#[test]
fn rolling_deploy_waits_for_readiness() {
    let server = Server::dev_with_agent();

    // v1: ready as soon as it serves.
    let serve = "exec python3 -m http.server $PORT0 --bind 127.0.0.1";
    let v1_cmd = format!("touch ready && {serve}");
    let file = server.write("gated.yaml", &manifest(&v1_cmd));
    server.run(&["apply", "-f", &file]).success();
    let v1 = server.eventually("v1 running and ready", || {
        let items = server.instances_of("default", "gated");
        let ready = items.len() == 1
            && items[0]["status"]["phase"] == "Running"
            && items[0]["status"]["readiness"][0]["ready"] == true
            && items[0]["status"]["readiness"][0]["name"] == "ready";
        ready.then(|| items[0].clone())
    });
    server.rolled_out("default", "gated");
    let v1_name = name_of(&v1);
    let v1_pid = v1["status"]["runtimeId"].as_str().unwrap().to_owned();
    assert!(process_alive(&v1_pid), "v1's process {v1_pid} is not alive");
    let v1_version = v1["spec"]["appVersion"].as_str().unwrap().to_owned();

    // v2: serves a directory without `ready` until the test creates it.
    let www = server.dir().join("v2-www");
    std::fs::create_dir(&www).unwrap();
    let v2_cmd = format!("{serve} --directory {}", www.display());
    let file = server.write("gated.yaml", &manifest(&v2_cmd));
    server.run(&["apply", "-f", &file]).success();

    // v2 starts next to v1 (over capacity) and its probe gets 404: not ready.
    let v2_name = server.eventually("v2 running, probed and not ready", || {
        let items = server.instances_of("default", "gated");
        items
            .iter()
            .find(|item| {
                item["metadata"]["name"] != v1_name.as_str()
                    && item["spec"]["appVersion"] != v1_version.as_str()
                    && item["status"]["phase"] == "Running"
                    && item["status"]["readiness"][0]["ready"] == false
                    && item["status"]["readiness"][0]["lastResponse"]["status"] == 404
            })
            .map(name_of)
    });
    let deployment_name = server.eventually("the update's deployment", || {
        let app = server.get_if_found(APP)?;
        app["status"]["deployments"][0].as_str().map(str::to_owned)
    });

    // While v2 is not ready, v1 keeps running and the deployment does not finish.
    let until = Instant::now() + HOLD;
    while Instant::now() < until {
        let old = instance(&server, &v1_name).expect("v1's instance is still there");
        assert_eq!(old["spec"]["goal"], "Running", "v1 was stopped: {old}");
        assert_eq!(old["status"]["phase"], "Running", "{old}");
        assert!(process_alive(&v1_pid), "v1's process {v1_pid} died");
        let new = instance(&server, &v2_name).expect("v2's instance is still there");
        assert_eq!(new["status"]["readiness"][0]["ready"], false, "{new}");
        let rollout = deployment(&server, &deployment_name);
        assert_eq!(rollout["status"]["phase"], "Running", "{rollout}");
        std::thread::sleep(Duration::from_millis(250));
    }

    // v2 turns ready: the deployment finishes, v1 goes, v2 is the only instance.
    std::fs::write(www.join("ready"), "ok\n").unwrap();
    server.eventually("v2 ready", || {
        let new = instance(&server, &v2_name)?;
        (new["status"]["readiness"][0]["ready"] == true
            && new["status"]["readiness"][0]["lastResponse"]["status"] == 200)
            .then_some(())
    });
    server.eventually("the deployment succeeded", || {
        (deployment(&server, &deployment_name)["status"]["phase"] == "Succeeded").then_some(())
    });
    server.eventually("v1's process killed", || {
        (!process_alive(&v1_pid)).then_some(())
    });
    server.eventually("v2 the only instance", || {
        let items = server.instances_of("default", "gated");
        (items.len() == 1
            && items[0]["metadata"]["name"] == v2_name.as_str()
            && items[0]["spec"]["goal"] == "Running"
            && items[0]["status"]["phase"] == "Running")
            .then_some(())
    });
    let app = server.get_json(APP);
    assert!(
        app["status"]["deployments"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{app}"
    );
    server.assert_no_unexpected_errors(&[]);
}
