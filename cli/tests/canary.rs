//! End to end: canary deployments, automatic revert and dependency-cycle admission on
//! `pacer dev --no-agent` with a fleet of hollow agents (`pacer agent hollow`), driven with the
//! `pacer` CLI and raw HTTP:
//!
//! * an update of an App with `upgradeStrategy.canary: 2` starts 2 new instances, keeps the
//!   other 2 old and pauses (the Deployment's `Paused` condition); `pacer rollout status`
//!   waits, `pacer rollout promote` lets the rest roll, and the status then succeeds;
//! * with `autoRevert: true`, a canary whose health fails (the test plays the prober: it
//!   writes failing health results to the instance's `/status`, as an agent would, and the
//!   health controller kills it) fails the Deployment, the App returns to its previous spec
//!   with an Event saying why, and `pacer rollout status` exits non-zero;
//! * an App whose `dependencies` would close a cycle with Apps already stored is refused with
//!   422 naming `spec.dependencies` and the cycle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{HollowFleet, Server};

const APPS: &str = "/apis/pacer.dev/v1/namespaces/default/apps";
const APP: &str = "/apis/pacer.dev/v1/namespaces/default/apps/web";

/// The App `web` with 4 instances running `cmd`, a canary of `canary` and `extra` strategy
/// fields; one COMMAND health check (hollow agents report it passing).
fn manifest(cmd: &str, canary: i32, extra: &str) -> String {
    format!(
        "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {{name: web, namespace: default}}\n\
         spec:\n  cmd: {cmd}\n  instances: 4\n  cpus: 0.1\n  mem: 16\n  portDefinitions: []\n\
         \x20 healthChecks:\n  - protocol: COMMAND\n    command: {{value: 'true'}}\n\
         \x20 upgradeStrategy: {{minimumHealthCapacity: 1, maximumOverCapacity: 0.25, \
         canary: {canary}{extra}}}\n"
    )
}

/// The running Deployment of web once its `Paused` condition is True.
fn paused_deployment(server: &Server) -> Value {
    server.eventually("web's canary paused", || {
        let app = server.get_if_found(APP)?;
        let name = app["status"]["deployments"][0].as_str()?.to_owned();
        let deployment = server.get_json(&format!("/apis/pacer.dev/v1/deployments/{name}"));
        let paused = deployment["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Paused" && c["status"] == "True");
        paused.then_some(deployment)
    })
}

/// (new, old) live instances of web, by its current config version.
fn new_and_old(server: &Server) -> (usize, usize) {
    let app = server.get_json(APP);
    let version = app["status"]["configVersion"].as_str().unwrap().to_owned();
    let live: Vec<Value> = server
        .instances_of("default", "web")
        .into_iter()
        .filter(|i| i["spec"]["goal"] == "Running")
        .collect();
    let new = live
        .iter()
        .filter(|i| i["spec"]["appVersion"] == version.as_str())
        .count();
    (new, live.len() - new)
}

#[test]
fn a_canary_pauses_with_n_new_instances_until_promoted() {
    let server = Server::dev();
    let _fleet = HollowFleet::start(&server, 5);
    let file = server.write("web.yaml", &manifest("sleep 1000", 2, ""));
    server.run(&["apply", "-f", &file]).success();
    server.run(&["rollout", "status", "web"]).success();

    let file = server.write("web.yaml", &manifest("sleep 2000", 2, ""));
    server.run(&["apply", "-f", &file]).success();
    let deployment = paused_deployment(&server);
    let id = deployment["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!(new_and_old(&server), (2, 2));
    let waiting = server
        .run(&["rollout", "status", "web", "--timeout", "1s"])
        .failure();
    assert!(
        waiting
            .stdout
            .contains(&format!("Waiting for deployment {id}"))
            && waiting
                .stdout
                .contains("promotion of the canary (pacer rollout promote web)"),
        "{waiting:#?}"
    );
    // Still paused after that: nothing rolled on its own.
    assert_eq!(new_and_old(&server), (2, 2));

    let promoted = server.run(&["rollout", "promote", "web"]).success();
    assert_eq!(
        promoted.stdout,
        format!("deployment {id} of app.pacer.dev/web promoted\n")
    );
    let status = server.run(&["rollout", "status", "web"]).success();
    assert!(
        status.stdout.ends_with("(revision 2) succeeded\n"),
        "{}",
        status.stdout
    );
    server.eventually("every instance on the new version", || {
        (new_and_old(&server) == (4, 0)).then_some(())
    });
    let done = server.get_json(&format!("/apis/pacer.dev/v1/deployments/{id}"));
    let paused = done["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Paused")
        .unwrap()
        .clone();
    assert_eq!(paused["status"], "False");
    assert_eq!(paused["reason"], "Promoted");
    // Nothing left to promote.
    let nothing = server.run(&["rollout", "promote", "web"]).failure();
    assert!(
        nothing.stderr.contains("no running deployment"),
        "{nothing:#?}"
    );
    server.assert_no_unexpected_errors(&[]);
}

#[test]
fn auto_revert_rolls_a_failing_canary_back_and_rollout_status_fails() {
    let server = Server::dev();
    let _fleet = HollowFleet::start(&server, 5);
    let auto = ", autoRevert: true";
    let file = server.write("web.yaml", &manifest("sleep 1000", 1, auto));
    server.run(&["apply", "-f", &file]).success();
    server.run(&["rollout", "status", "web"]).success();
    let first = server.get_json(APP)["status"]["configVersion"].clone();

    let file = server.write("web.yaml", &manifest("sleep 2000", 1, auto));
    server.run(&["apply", "-f", &file]).success();
    let deployment = paused_deployment(&server);
    let id = deployment["metadata"]["name"].as_str().unwrap().to_owned();
    let version = server.get_json(APP)["status"]["configVersion"].clone();
    let canary = server
        .instances_of("default", "web")
        .into_iter()
        .find(|i| i["spec"]["appVersion"] == version)
        .unwrap();
    let name = canary["metadata"]["name"].as_str().unwrap().to_owned();

    // Play the prober: the canary's health check fails three times in a row.
    let path = format!("/apis/pacer.dev/v1/namespaces/default/instances/{name}/status");
    server.eventually("the failing health results written", || {
        let mut current = server.get_json(&path.replace("/status", ""));
        let now = jiff::Timestamp::now().to_string();
        let result = &mut current["status"]["health"][0];
        result["alive"] = false.into();
        result["consecutiveFailures"] = 3.into();
        result["lastFailure"] = now.into();
        result["lastFailureCause"] = "simulated failure".into();
        current["status"]["healthy"] = false.into();
        let written = server.http("PUT", &path, Some(&current));
        assert!(matches!(written.code, 200 | 409), "{}", written.body);
        (written.code == 200).then_some(())
    });

    let failed = server
        .run(&["rollout", "status", "web", "--timeout", "60s"])
        .failure();
    assert!(
        failed
            .stderr
            .contains(&format!("deployment {id} of app web"))
            && failed.stderr.contains("rolled back automatically"),
        "{failed:#?}"
    );
    let failed_deployment = server.get_json(&format!("/apis/pacer.dev/v1/deployments/{id}"));
    assert_eq!(failed_deployment["status"]["phase"], "Failed");
    let conditions = failed_deployment["status"]["conditions"]
        .as_array()
        .unwrap();
    assert!(
        conditions.iter().any(|c| c["type"] == "Progressing"
            && c["status"] == "False"
            && c["reason"] == "InstanceFailed"),
        "{conditions:#?}"
    );
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Reverted" && c["reason"] == "AutoReverted"),
        "{conditions:#?}"
    );
    // The App is back on its first config, every instance of it.
    server.eventually("web back on its first version", || {
        let app = server.get_json(APP);
        let back = app["spec"]["cmd"] == "sleep 1000"
            && app["status"]["configVersion"] == first
            && app["status"]["deployments"]
                .as_array()
                .is_none_or(|d| d.is_empty());
        (back && new_and_old(&server) == (4, 0)).then_some(())
    });
    let events = server.get_json("/apis/pacer.dev/v1/namespaces/default/events");
    let reverted = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == "DeploymentReverted")
        .expect("a DeploymentReverted Event");
    assert_eq!(reverted["involvedObject"]["name"], "web");
    assert!(
        reverted["message"]
            .as_str()
            .is_some_and(|m| m.contains(&name)),
        "{reverted:#}"
    );
    server.assert_no_unexpected_errors(&[]);
}

#[test]
fn a_dependency_cycle_across_stored_apps_is_refused_with_422() {
    let server = Server::dev();
    let app = |name: &str, dependencies: Value| {
        json!({
            "apiVersion": "pacer.dev/v1",
            "kind": "App",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"cmd": "sleep 1000", "instances": 0, "dependencies": dependencies},
        })
    };
    server.create(APPS, &app("a", json!(["/b"])));
    server.create(APPS, &app("b", json!(["/c"])));
    let refused = server.http("POST", APPS, Some(&app("c", json!(["/a"]))));
    assert_eq!(refused.code, 422, "{}", refused.body);
    let status = refused.json();
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "spec.dependencies");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("dependency cycle: /a → /b → /c → /a")),
        "{status:#}"
    );
    assert!(server.get_if_found(&format!("{APPS}/c")).is_none());
    // Without the cycle it is admitted; an update that closes one is refused the same way.
    server.create(APPS, &app("c", json!([])));
    let mut c = server.get_json(&format!("{APPS}/c"));
    c["spec"]["dependencies"] = json!(["/a"]);
    let refused = server.http("PUT", &format!("{APPS}/c"), Some(&c));
    assert_eq!(refused.code, 422, "{}", refused.body);
    // Through `pacer apply`: the second App of a pair that depend on each other.
    let manifest = |name: &str, dependency: &str| {
        format!(
            "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {{name: {name}, namespace: default}}\n\
             spec: {{cmd: sleep 1000, instances: 0, dependencies: ['{dependency}']}}\n"
        )
    };
    let file = server.write("x.yaml", &manifest("x", "/y"));
    server.run(&["apply", "-f", &file]).success();
    let file = server.write("y.yaml", &manifest("y", "/x"));
    let applied = server.run(&["apply", "-f", &file]).failure();
    assert!(
        applied.stderr.contains("spec.dependencies")
            && applied.stderr.contains("dependency cycle: /x → /y → /x"),
        "{applied:#?}"
    );
    server.assert_no_unexpected_errors(&[]);
}
