//! End to end: deployments on `pacer dev --no-agent` with a fleet of hollow agents
//! (`pacer agent hollow`), driven with the `pacer` CLI: an App's creation rolls out its
//! instances, an update rolls them over to a new version, a running deployment locks the App
//! (409 naming it) until a forced change supersedes it, `pacer rollout
//! status|restart|history|undo` work, and deleting the App stops its instances before it goes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::{HollowFleet, INSTANCES, Server};

const APP: &str = "/apis/pacer.dev/v1/namespaces/default/apps/web";

fn app(server: &Server) -> Option<Value> {
    server.get_if_found(APP)
}

/// Waits until web runs `n` instances of its current config, all Running, and no deployment
/// of it runs; returns the instances' names.
fn converged(server: &Server, n: usize) -> Vec<String> {
    server.eventually(&format!("web converged on {n} instances"), || {
        let app = app(server)?;
        let status = &app["status"];
        if status["observedGeneration"] != app["metadata"]["generation"]
            || status["deployments"]
                .as_array()
                .is_some_and(|d| !d.is_empty())
        {
            return None;
        }
        let version = status["configVersion"].as_str()?;
        let items = server.list(INSTANCES);
        let ready = items.len() == n
            && items
                .iter()
                .all(|i| i["spec"]["appVersion"] == version && i["status"]["phase"] == "Running");
        ready.then(|| {
            items
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
                .collect()
        })
    })
}

/// The App with `cmd` and `extra` spec lines; its strategy starts one new instance before it
/// kills an old one (⌊3 × 1.34⌋ = 4 alive at most, all 3 kept healthy).
fn manifest(cmd: &str, extra: &str) -> String {
    format!(
        "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {{name: web, namespace: default}}\n\
         spec:\n  cmd: {cmd}\n  instances: 3\n  cpus: 0.1\n  mem: 16\n  portDefinitions: []\n\
         \x20 upgradeStrategy: {{minimumHealthCapacity: 1, maximumOverCapacity: 0.34}}\n{extra}"
    )
}

#[test]
fn rollouts_locks_restart_undo_and_stop_on_hollow_nodes() {
    let server = Server::dev();
    let _fleet = HollowFleet::start(&server, 5);

    // Create: three instances roll out.
    let file = server.write("web.yaml", &manifest("sleep 1000", ""));
    server.run(&["apply", "-f", &file]).success();
    let status = server.run(&["rollout", "status", "web"]).success();
    assert!(
        status.stdout.ends_with("(revision 1) succeeded\n"),
        "{}",
        status.stdout
    );
    let first = converged(&server, 3);

    // Update: every instance is replaced by one of the new version.
    let file = server.write("web.yaml", &manifest("sleep 2000", ""));
    server.run(&["apply", "-f", &file]).success();
    let second = converged(&server, 3);
    assert!(second.iter().all(|name| !first.contains(name)));

    // A deployment that cannot finish (no node matches) locks the App.
    let stuck = "  constraints: [[\"hostname\", \"LIKE\", \"nowhere\"]]\n";
    let file = server.write("web.yaml", &manifest("sleep 3000", stuck));
    server.run(&["apply", "-f", &file]).success();
    let deployment = server.eventually("a running deployment", || {
        let app = app(&server)?;
        app["status"]["deployments"][0].as_str().map(str::to_owned)
    });
    let file = server.write("web.yaml", &manifest("sleep 4000", ""));
    let waiting = server
        .run(&["rollout", "status", "web", "--timeout", "1s"])
        .failure();
    assert!(
        waiting
            .stdout
            .contains(&format!("Waiting for deployment {deployment}")),
        "{waiting:#?}"
    );
    let refused = server.run(&["apply", "-f", &file]).failure();
    assert!(
        refused.stderr.contains("locked by one or more deployments")
            && refused.stderr.contains(&deployment),
        "{refused:#?}"
    );
    // A forced change supersedes it (retried while the controller's status writes race it).
    server.eventually("the forced update", || {
        let mut current = app(&server).unwrap();
        current["spec"]["cmd"] = "sleep 4000".into();
        current["spec"]
            .as_object_mut()
            .unwrap()
            .remove("constraints");
        let forced = server.http("PUT", &format!("{APP}?force=true"), Some(&current));
        assert!(matches!(forced.code, 200 | 409), "{}", forced.body);
        (forced.code == 200).then_some(())
    });
    converged(&server, 3);
    let old = server.http(
        "GET",
        &format!("/apis/pacer.dev/v1/deployments/{deployment}"),
        None,
    );
    assert_eq!(old.json()["status"]["phase"], "Cancelled");

    // Restart replaces every instance without a spec change.
    let before = converged(&server, 3);
    let run = server.run(&["rollout", "restart", "web"]).success();
    assert_eq!(run.stdout, "app.pacer.dev/web restarted\n");
    server.eventually("the restart's new version", || {
        (app(&server)?["status"]["revision"] == 5).then_some(())
    });
    let after = converged(&server, 3);
    assert!(after.iter().all(|name| !before.contains(name)));

    // History lists every version; undo to revision 1 restores its spec.
    let history = server.run(&["rollout", "history", "web"]).success();
    let lines: Vec<&str> = history.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", history.stdout);
    assert!(lines[0].starts_with("REVISION"));
    assert!(lines[5].contains("Restarted") && lines[5].ends_with('*'));
    let run = server
        .run(&["rollout", "undo", "web", "--to-version", "1"])
        .success();
    assert!(
        run.stdout
            .starts_with("app.pacer.dev/web rolled back to revision 1")
    );
    converged(&server, 3);
    assert_eq!(app(&server).unwrap()["spec"]["cmd"], "sleep 1000");

    // Delete: the instances stop, then the App and its versions go.
    server.run(&["delete", "app", "web"]).success();
    server.eventually("web and its instances gone", || {
        (app(&server).is_none() && server.list(INSTANCES).is_empty()).then_some(())
    });
    let versions = server.http(
        "GET",
        "/apis/pacer.dev/v1/namespaces/default/appversions",
        None,
    );
    assert_eq!(versions.json()["items"], Value::Array(Vec::new()));
    server.assert_no_unexpected_errors(&[]);
}
