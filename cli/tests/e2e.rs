//! End to end: the real `pacer dev` (embedded store, API server) on a free loopback port with a
//! throwaway data directory, driven by the real `pacer apply/get/diff/delete/describe/config`
//! binaries, checking their output and exit codes as a user sees them. Tests that change Apps
//! run a fleet of hollow agents, so each App's deployment finishes (a running one locks the
//! App) and a deleted App's finalizer can stop its instances.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{HollowFleet, Server, repo_root};

/// `pacer get <args> -o json`, which must succeed, as JSON.
fn get_json(dev: &Server, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&dev.run(&all).success().stdout).unwrap()
}

const HELLO: &str = "manifests/examples/hello-process.yaml";

#[test]
fn apply_get_diff_delete_round_trip() {
    let dev = Server::dev();
    let _fleet = HollowFleet::start(&dev, 1);

    let first = dev.run(&["apply", "-f", HELLO]).success();
    assert_eq!(first.stdout, "app.pacer.dev/hello created\n");
    dev.rolled_out("default", "hello");
    let created = get_json(&dev, &["app", "hello"]);
    assert_eq!(created["spec"]["instances"], 1);
    assert!(created["metadata"]["uid"].is_string());

    // Re-applying is a no-op, and diff agrees.
    let again = dev.run(&["apply", "-f", HELLO]).success();
    assert_eq!(again.stdout, "app.pacer.dev/hello unchanged\n");
    let same = dev.run(&["diff", "-f", HELLO]).success();
    assert_eq!(same.stdout, "");

    // A changed manifest: diff shows it and exits 1; a server dry run changes nothing.
    let text = std::fs::read_to_string(repo_root().join(HELLO)).unwrap();
    let changed = dev.write("hello.yaml", &text.replace("instances: 1", "instances: 3"));
    let diff = dev.run(&["diff", "-f", &changed]).failure();
    assert!(diff.stdout.contains("-  instances: 1\n"), "{}", diff.stdout);
    assert!(diff.stdout.contains("+  instances: 3\n"), "{}", diff.stdout);
    assert!(
        diff.stdout.contains("live/app.pacer.dev/default/hello"),
        "{}",
        diff.stdout
    );
    assert_eq!(diff.stderr, "");
    let dry = dev
        .run(&["apply", "-f", &changed, "--dry-run=server"])
        .success();
    assert_eq!(
        dry.stdout,
        "app.pacer.dev/hello configured (server dry run)\n"
    );
    assert_eq!(get_json(&dev, &["app", "hello"])["spec"]["instances"], 1);

    // Applying it keeps what the server owns.
    let configured = dev.run(&["apply", "-f", &changed]).success();
    assert_eq!(configured.stdout, "app.pacer.dev/hello configured\n");
    dev.rolled_out("default", "hello");
    let updated = get_json(&dev, &["app", "hello"]);
    assert_eq!(updated["spec"]["instances"], 3);
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        updated["metadata"]["creationTimestamp"],
        created["metadata"]["creationTimestamp"]
    );
    assert_ne!(
        updated["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    assert_eq!(
        dev.run(&["apply", "-f", &changed]).success().stdout,
        "app.pacer.dev/hello unchanged\n"
    );

    // Tables, names, YAML.
    let table = dev.run(&["get", "apps"]).success();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME "), "{}", table.stdout);
    assert!(
        lines[0].contains("INSTANCES") && lines[0].contains("AGE"),
        "{}",
        table.stdout
    );
    assert!(
        lines[1].starts_with("hello ") && lines[1].contains("/3"),
        "{}",
        table.stdout
    );
    assert_eq!(
        dev.run(&["get", "ap", "-o", "name"]).success().stdout,
        "app.pacer.dev/hello\n"
    );
    let yaml = dev
        .run(&["get", "apps.pacer.dev", "hello", "-o", "yaml"])
        .success();
    assert!(yaml.stdout.contains("name: hello\n"), "{}", yaml.stdout);
    let wide = dev.run(&["get", "apps", "-A", "-o", "wide"]).success();
    assert!(wide.stdout.starts_with("NAMESPACE "), "{}", wide.stdout);
    let selected = dev.run(&["get", "apps", "-l", "app=nothing"]).success();
    assert_eq!(selected.stdout, "");
    assert!(
        selected
            .stderr
            .contains("No resources found in default namespace.")
    );

    let described = dev.run(&["describe", "app", "hello"]).success();
    assert!(
        described.stdout.starts_with("Name:         hello\n"),
        "{}",
        described.stdout
    );
    assert!(described.stdout.contains("Spec:\n"), "{}", described.stdout);
    assert!(described.stdout.contains("Events:"), "{}", described.stdout);

    let deleted = dev.run(&["delete", "app", "hello"]).success();
    assert_eq!(deleted.stdout, "app.pacer.dev \"hello\" deleted\n");
    let missing = dev.run(&["get", "app", "hello"]).failure();
    assert_eq!(
        missing.stderr.trim_end(),
        "Error from server (NotFound): apps.pacer.dev \"hello\" not found"
    );
    dev.run(&["delete", "app", "hello", "--ignore-not-found"])
        .success();
    let again = dev.run(&["delete", "app", "hello"]).failure();
    assert!(again.stderr.contains("(NotFound)"), "{}", again.stderr);
}

#[test]
fn multi_document_apply_directory_and_prune() {
    let dev = Server::dev();
    // db asks for a node of its own (UNIQUE hostname) beside the others.
    let _fleet = HollowFleet::start(&dev, 3);
    let shop = dev
        .run(&["apply", "-f", "manifests/examples/shop.yaml"])
        .success();
    assert_eq!(
        shop.stdout,
        "app.pacer.dev/db created\napp.pacer.dev/api created\napp.pacer.dev/web created\n"
    );
    let names = dev
        .run(&["get", "apps", "-n", "shop", "-o", "name"])
        .success();
    assert_eq!(names.stdout.lines().count(), 3, "{}", names.stdout);
    // A running deployment locks its App, even against a delete.
    for app in ["db", "api", "web"] {
        dev.rolled_out("shop", app);
    }

    // Only db and api remain in the manifests: web is pruned, nothing else is touched.
    let text = std::fs::read_to_string(repo_root().join("manifests/examples/shop.yaml")).unwrap();
    let cut = text.rfind("---").unwrap();
    let two = dev.write("shop-two.yaml", &text[..cut]);
    let pruned = dev
        .run(&[
            "apply",
            "-f",
            &two,
            "--prune",
            "-l",
            "app.kubernetes.io/part-of=shop",
        ])
        .success();
    assert_eq!(
        pruned.stdout,
        "app.pacer.dev/db unchanged\napp.pacer.dev/api unchanged\napp.pacer.dev/web pruned\n"
    );
    // web goes once its finalizer has stopped its instances.
    dev.eventually("web to go", || {
        let names = dev
            .run(&["get", "apps", "-n", "shop", "-o", "name"])
            .success();
        (names.stdout.lines().count() == 2).then_some(())
    });

    // A directory: its files in name order.
    let all = dev.run(&["apply", "-f", "manifests/examples/"]).success();
    assert_eq!(
        all.stdout,
        "app.pacer.dev/hello created\napp.pacer.dev/db unchanged\napp.pacer.dev/api unchanged\napp.pacer.dev/web created\napp.pacer.dev/web created\n"
    );
    let everywhere = get_json(&dev, &["apps", "-A"]);
    assert_eq!(everywhere["items"].as_array().unwrap().len(), 5);

    // Standard input, JSON.
    let json = r#"{"apiVersion":"pacer.dev/v1","kind":"App","metadata":{"name":"piped"},"spec":{"cmd":"sleep 100"}}"#;
    let piped = dev.run_with_stdin(&["apply", "-f", "-"], json);
    assert_eq!(piped.code, Some(0), "{piped:#?}");
    assert_eq!(piped.stdout, "app.pacer.dev/piped created\n");

    dev.rolled_out("shop", "web");
    let by_file = dev
        .run(&["delete", "-f", "manifests/examples/shop.yaml"])
        .success();
    assert_eq!(
        by_file.stdout,
        "app.pacer.dev \"db\" deleted\napp.pacer.dev \"api\" deleted\napp.pacer.dev \"web\" deleted\n"
    );
}

#[test]
fn bad_input_is_reported_and_nothing_is_written() {
    let dev = Server::dev();
    let bad_yaml = dev.write(
        "bad.yaml",
        "apiVersion: pacer.dev/v1\nkind: App\nmetadata:\n  name: web\n   labels: x\n",
    );
    let run = dev.run(&["apply", "-f", &bad_yaml]).failure();
    assert!(
        run.stderr.contains("bad.yaml:5:10: invalid YAML"),
        "{}",
        run.stderr
    );

    let wrong_kind = dev.write(
        "kinds.yaml",
        "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {name: ok}\nspec: {cmd: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
    );
    let run = dev.run(&["apply", "-f", &wrong_kind]).failure();
    assert!(
        run.stderr
            .contains("kinds.yaml:6: document 2: unknown kind \"Pod\""),
        "{}",
        run.stderr
    );
    // Nothing of the file was applied.
    assert_eq!(dev.run(&["get", "app", "ok"]).failure().code, Some(1));

    let invalid = dev.write(
        "invalid.yaml",
        "apiVersion: pacer.dev/v1\nkind: App\nmetadata: {name: broken}\nspec: {cmd: x, cpus: -1}\n",
    );
    let run = dev.run(&["apply", "-f", &invalid]).failure();
    assert!(
        run.stderr.starts_with("Error from server (Invalid): "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("spec.cpus"), "{}", run.stderr);
    assert!(
        run.stderr.contains("app.pacer.dev/broken"),
        "{}",
        run.stderr
    );

    let unknown = dev.run(&["get", "pods"]).failure();
    assert!(
        unknown
            .stderr
            .contains("doesn't have a resource type \"pods\""),
        "{}",
        unknown.stderr
    );
    let selector = dev.run(&["get", "apps", "-l", "a in (b"]).failure();
    assert!(
        selector.stderr.contains("invalid label selector"),
        "{}",
        selector.stderr
    );
}

#[test]
fn config_contexts_choose_server_and_namespace() {
    let dev = Server::dev();
    dev.run(&["apply", "-f", "manifests/examples/shop.yaml"])
        .success();
    let set = dev
        .run(&[
            "config",
            "set-context",
            "local",
            "--server",
            &dev.url,
            "--namespace",
            "shop",
        ])
        .success();
    assert_eq!(set.stdout, "Context \"local\" created.\n");
    dev.run(&["config", "use-context", "local"]).success();
    assert_eq!(
        dev.run(&["config", "current-context"]).success().stdout,
        "local\n"
    );

    // No --server and no PACER_SERVER: the context's server and namespace.
    let output = dev
        .command(&["get", "apps", "-o", "name"])
        .env_remove("PACER_SERVER")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 3);
    // The flag beats the context.
    let output = dev
        .command(&["get", "apps", "-n", "default", "-o", "name"])
        .env_remove("PACER_SERVER")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    let view = dev.run(&["config", "view"]).success();
    assert!(
        view.stdout.contains("currentContext: local"),
        "{}",
        view.stdout
    );
}

#[test]
fn get_watch_prints_a_row_per_change() {
    let dev = Server::dev();
    let mut watcher = dev
        .command(&["get", "apps", "-w"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    // Give the watch a moment to start, then change things.
    std::thread::sleep(Duration::from_millis(500));
    dev.run(&["apply", "-f", HELLO]).success();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = received.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
            if seen.iter().any(|line| line.starts_with("hello ")) {
                break;
            }
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(
        seen.iter().any(|line| line.starts_with("NAME ")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|line| line.starts_with("hello ")),
        "{seen:?}"
    );
}
