//! End to end: the real `pacer dev` binary on a free port, driven by the real kubectl (1.32,
//! preinstalled at /usr/bin/kubectl) with a temporary kubeconfig and default flags (so
//! kubectl's server-side field validation and its OpenAPI v3 checks are exercised). Skips, and
//! says so, when kubectl is not installed. A fleet of hollow agents lets each App's deployment
//! finish, since a running deployment locks its App against changes (Marathon semantics).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::kubectl::{Kubectl, WEB_APPLIED_YAML, WEB_MANIFEST};
use support::{HollowFleet, KillOnDrop, Server, assert_contains_all};

const KUBECTL: &str = "/usr/bin/kubectl";

/// `pacer dev` with the API server's debug log, two hollow agents, and kubectl aimed at it.
fn start() -> (Server, HollowFleet, Kubectl) {
    let server = Server::dev_with_log("info,pacer_apiserver=debug");
    let fleet = HollowFleet::start(&server, 2);
    let kubectl = Kubectl::new(KUBECTL, "kubectl", server.dir(), &server);
    (server, fleet, kubectl)
}

/// Sends SIGTERM, asserts a clean exit, and then that the server logged no `ERROR` before
/// it was stopped.
fn stop(mut server: Server) {
    let log = server.log();
    let status = server.terminate();
    assert!(
        status.success(),
        "pacer dev exited with {status}; log:\n{}",
        server.log()
    );
    assert!(!log.contains("ERROR"), "errors in the server log:\n{log}");
}

#[test]
fn kubectl_drives_pacer_dev() {
    if !Path::new(KUBECTL).exists() {
        eprintln!("SKIPPED kubectl_drives_pacer_dev: {KUBECTL} is not installed");
        return;
    }
    let (server, _fleet, kubectl) = start();
    let dir = server.dir();
    let manifest = dir.join("web.yaml");
    std::fs::write(&manifest, WEB_MANIFEST).unwrap();
    let manifest = manifest.to_str().unwrap();

    // Create, read, list.
    assert_eq!(
        kubectl.ok(&["apply", "-f", manifest]).trim(),
        "app.pacer.dev/web created"
    );
    server.rolled_out("default", "web");
    let listed = kubectl.ok(&["get", "apps"]);
    assert!(
        listed.starts_with("NAME") && listed.contains("\nweb "),
        "{listed}"
    );
    // The server's Table: per-kind columns, Age formatted server-side.
    let header: Vec<&str> = listed.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "INSTANCES", "HEALTHY", "AGE"], "{listed}");
    let web_row: Vec<&str> = listed.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(web_row[..3], ["web", "2/2", "-"], "{listed}");
    let wide = kubectl.ok(&["get", "apps", "-A", "--show-labels"]);
    assert!(
        wide.starts_with("NAMESPACE") && wide.contains("tier=front"),
        "{wide}"
    );
    assert!(kubectl.ok(&["get", "ap", "-A"]).contains("default"));
    let yaml = kubectl.ok(&["get", "app", "web", "-o", "yaml"]);
    assert_contains_all(&yaml, WEB_APPLIED_YAML);
    assert_contains_all(&yaml, &["killSelection: YOUNGEST_FIRST"]);

    // Re-apply: unchanged, then a change through merge patch.
    assert_eq!(
        kubectl.ok(&["apply", "-f", manifest]).trim(),
        "app.pacer.dev/web unchanged"
    );
    std::fs::write(
        manifest,
        WEB_MANIFEST.replace("instances: 2", "instances: 3"),
    )
    .unwrap();
    assert_eq!(
        kubectl.ok(&["apply", "-f", manifest]).trim(),
        "app.pacer.dev/web configured"
    );
    server.rolled_out("default", "web");
    let instances = kubectl.ok(&[
        "get",
        "app",
        "web",
        "-o",
        "jsonpath={.spec.instances} {.metadata.generation}",
    ]);
    assert_eq!(instances, "3 2");

    // Server-side validation with default flags: the unknown field is named.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        WEB_MANIFEST
            .replace("name: web", "name: bad")
            .replace("instances: 2", "replicas: 2"),
    )
    .unwrap();
    let error = kubectl.fails(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(error.contains("unknown field \"spec.replicas\""), "{error}");

    // Scale subresource, explain from OpenAPI v3, server-side dry run through diff.
    assert_eq!(
        kubectl.ok(&["scale", "app", "web", "--replicas=5"]).trim(),
        "app.pacer.dev/web scaled"
    );
    server.rolled_out("default", "web");
    let explain = kubectl.ok(&["explain", "app.spec.instances"]);
    assert!(explain.contains("Number of instances"), "{explain}");
    let diff = kubectl.run(&["diff", "-f", manifest]);
    assert_eq!(diff.status.code(), Some(1), "{diff:?}");
    assert!(String::from_utf8_lossy(&diff.stdout).contains("+  instances: 3"));
    assert!(
        kubectl
            .ok(&["get", "app", "web", "-o", "yaml"])
            .contains("instances: 5"),
        "diff is a dry run"
    );

    // A watch sees the scale and the delete.
    let mut watch = KillOnDrop(
        kubectl
            .command(&["get", "apps", "-w", "--output-watch-events"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kubectl get -w"),
    );
    let stdout = watch.0.stdout.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || {
        seen.recv_timeout(Duration::from_secs(10))
            .expect("a watch line")
    };
    assert!(next_line().starts_with("EVENT"));
    assert!(next_line().starts_with("ADDED"));
    kubectl.ok(&["scale", "app", "web", "--replicas=4"]);
    // The scale, then the controller's status writes as the rollout goes on.
    let modified = next_line();
    assert!(
        modified.starts_with("MODIFIED") && modified.contains("/4 "),
        "{modified}"
    );
    server.rolled_out("default", "web");

    // Delete, then it is gone.
    assert_eq!(
        kubectl.ok(&["delete", "-f", manifest]).trim(),
        "app.pacer.dev \"web\" deleted"
    );
    let gone = kubectl.fails(&["get", "app", "web"]);
    assert!(gone.contains("(NotFound)"), "{gone}");
    assert!(kubectl.ok(&["get", "apps"]).is_empty());
    let deleted = std::iter::repeat_with(next_line)
        .find(|line| !line.starts_with("MODIFIED"))
        .unwrap();
    assert!(deleted.starts_with("DELETED"), "{deleted}");
    drop(watch);

    stop(server);
}

#[test]
fn kubectl_server_side_apply() {
    if !Path::new(KUBECTL).exists() {
        eprintln!("SKIPPED kubectl_server_side_apply: {KUBECTL} is not installed");
        return;
    }
    let (server, _fleet, kubectl) = start();
    let dir = server.dir();
    let manifest = dir.join("web.yaml");
    std::fs::write(&manifest, WEB_MANIFEST).unwrap();
    let manifest = manifest.to_str().unwrap();
    let version = || {
        kubectl.ok(&[
            "get",
            "app",
            "web",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };

    // Upsert, then an unchanged re-apply writes nothing.
    assert_eq!(
        kubectl
            .ok(&["apply", "--server-side", "-f", manifest])
            .trim(),
        "app.pacer.dev/web serverside-applied"
    );
    // Once the rollout is done nothing else writes the App.
    server.rolled_out("default", "web");
    let first = version();
    kubectl.ok(&["apply", "--server-side", "-f", manifest]);
    assert_eq!(version(), first, "an unchanged apply must not write");
    let yaml = kubectl.ok(&["get", "app", "web", "-o", "yaml", "--show-managed-fields"]);
    assert_contains_all(
        &yaml,
        &[
            "manager: kubectl",
            "operation: Apply",
            "fieldsType: FieldsV1",
            "f:instances: {}",
            "f:tier: {}",
        ],
    );

    // Another manager changing an owned field conflicts; kubectl explains how to force.
    let other = dir.join("other.yaml");
    std::fs::write(
        &other,
        "apiVersion: pacer.dev/v1\nkind: App\nmetadata:\n  name: web\nspec:\n  instances: 4\n",
    )
    .unwrap();
    let other = other.to_str().unwrap();
    let error = kubectl.fails(&["apply", "--server-side", "--field-manager=ops", "-f", other]);
    assert!(
        error.contains("Apply failed with 1 conflict: conflict with \"kubectl\"")
            && error.contains(".spec.instances")
            && error.contains("--force-conflicts"),
        "{error}"
    );
    assert_eq!(version(), first, "a conflict writes nothing");

    // --force-conflicts takes the field; then kubectl's own apply conflicts with ops.
    kubectl.ok(&[
        "apply",
        "--server-side",
        "--field-manager=ops",
        "--force-conflicts",
        "-f",
        other,
    ]);
    assert_eq!(
        kubectl.ok(&["get", "app", "web", "-o", "jsonpath={.spec.instances}"]),
        "4"
    );
    server.rolled_out("default", "web");
    let error = kubectl.fails(&["apply", "--server-side", "-f", manifest]);
    assert!(error.contains("conflict with \"ops\""), "{error}");

    // Dropping a field from kubectl's configuration removes it (nobody else owns the label).
    std::fs::write(
        manifest,
        WEB_MANIFEST
            .replace("  labels:\n    tier: front\n", "")
            .replace("instances: 2", "instances: 4"),
    )
    .unwrap();
    kubectl.ok(&["apply", "--server-side", "-f", manifest]);
    server.rolled_out("default", "web");
    assert_eq!(
        kubectl.ok(&["get", "app", "web", "-o", "jsonpath={.metadata.labels}"]),
        ""
    );
    // A server-side dry run through diff leaves the object alone.
    std::fs::write(
        manifest,
        WEB_MANIFEST.replace("instances: 2", "instances: 4"),
    )
    .unwrap();
    let diff = kubectl.run(&["diff", "--server-side", "-f", manifest]);
    assert_eq!(diff.status.code(), Some(1), "{diff:?}");
    assert!(String::from_utf8_lossy(&diff.stdout).contains("+    tier: front"));

    stop(server);
}
