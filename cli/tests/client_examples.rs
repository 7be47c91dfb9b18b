//! The `pacer-client` examples that users copy work against the real `pacer dev`:
//! `batch_runner` (an external scheduler on the offer broker) launches its jobs by accepting
//! offers, the local agent runs them to completion, and it unregisters its Framework;
//! `label_defaulter` (a controller under leader election) labels an App that has no `team`.
//!
//! The examples are built by `cargo test --workspace` (`make test`) beside the `pacer` binary,
//! in `target/<profile>/examples/`.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{PACER, Server};

/// The built example `name`, next to the `pacer` binary.
fn example(name: &str) -> PathBuf {
    let path = std::path::Path::new(PACER)
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build -p pacer-client --examples` (or the whole \
         `cargo test --workspace`)",
        path.display()
    );
    path
}

#[test]
fn batch_runner_launches_its_jobs_through_offers_and_unregisters() {
    let server = Server::dev_with_agent();
    server.eventually("the local agent's node", || {
        (!server.list("/apis/pacer.dev/v1/nodes").is_empty()).then_some(())
    });
    let mut child = Command::new(example("batch_runner"))
        .env("PACER_SERVER", &server.url)
        .env("JOBS", "3")
        .env("JOB_COMMAND", "sleep 1")
        .env("FRAMEWORK", "e2e-batch")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "batch_runner did not finish in 90 s; its stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "batch_runner failed ({}); stdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    // It printed `job<TAB>node` for each of its 3 jobs, each of which ran to its end there.
    let jobs: Vec<(&str, &str)> = stdout
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    assert_eq!(jobs.len(), 3, "stdout:\n{stdout}");
    for (job, node) in jobs {
        let instance = server.get_json(&format!(
            "/apis/pacer.dev/v1/namespaces/default/instances/{job}"
        ));
        assert_eq!(instance["spec"]["nodeName"], node, "{instance:#}");
        assert_eq!(
            instance["status"]["phase"], "Finished",
            "{job} (`sleep 1`) should have finished: {instance:#}"
        );
    }
    // The Framework is gone.
    let response = server.http("GET", "/apis/pacer.dev/v1/frameworks/e2e-batch", None);
    assert_eq!(response.code, 404, "{}", response.body);
    server.assert_no_unexpected_errors(&[]);
}

#[test]
fn label_defaulter_labels_an_app_without_a_team() {
    let server = Server::dev();
    let mut controller = Command::new(example("label_defaulter"))
        .env("PACER_SERVER", &server.url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    server.create(
        "/apis/pacer.dev/v1/namespaces/default/apps",
        &json!({"apiVersion": "pacer.dev/v1", "kind": "App",
                "metadata": {"name": "unlabelled"},
                "spec": {"instances": 0, "cmd": "sleep 3600", "cpus": 0.1, "mem": 32}}),
    );
    let labelled = server.eventually("the App labelled team: unknown", || {
        let app = server.get_json("/apis/pacer.dev/v1/namespaces/default/apps/unlabelled");
        (app["metadata"]["labels"]["team"] == "unknown").then_some(app)
    });
    controller.kill().unwrap();
    controller.wait().unwrap();
    assert_eq!(labelled["metadata"]["labels"]["team"], "unknown");
    server.assert_no_unexpected_errors(&[]);
}
