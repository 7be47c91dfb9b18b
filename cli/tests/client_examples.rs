//! The `pacer-client` examples that users copy work against the real `pacer dev`:
//! `batch_runner` (an external scheduler on the offer broker) launches its jobs by accepting
//! offers, the local agent runs them to completion, and it unregisters its Framework;
//! `label_defaulter` (a controller under leader election) labels an App that has no `team`.
//!
//! The examples are built by `cargo test --workspace` (`make test`) beside the `pacer` binary,
//! in `target/<profile>/examples/`.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::json;
use support::{KillOnDrop, PACER, Server};

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

/// Starts example `name` against `server` with `env`, its stdout and stderr in
/// `<server dir>/<name>.stdout` and `.stderr`; killed on drop.
fn start_example(server: &Server, name: &str, env: &[(&str, &str)]) -> KillOnDrop {
    let output =
        |stream: &str| File::create(server.dir().join(format!("{name}.{stream}"))).unwrap();
    let child = Command::new(example(name))
        .env("PACER_SERVER", &server.url)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(output("stdout"))
        .stderr(output("stderr"))
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

/// What example `name` wrote to `stream` (`stdout` or `stderr`).
fn example_output(server: &Server, name: &str, stream: &str) -> String {
    std::fs::read_to_string(server.dir().join(format!("{name}.{stream}"))).unwrap_or_default()
}

#[test]
fn batch_runner_launches_its_jobs_through_offers_and_unregisters() {
    let server = Server::dev_with_agent();
    server.eventually("the local agent's node", || {
        (!server.list("/apis/pacer.dev/v1/nodes").is_empty()).then_some(())
    });
    let mut runner = start_example(
        &server,
        "batch_runner",
        &[
            ("JOBS", "3"),
            // Jobs that end at once: their run is over before the agent's watch has caught up.
            ("JOB_COMMAND", "true"),
            ("FRAMEWORK", "e2e-batch"),
        ],
    );
    let status = support::eventually(
        "batch_runner to finish",
        || {
            format!(
                "its stderr:\n{}\nserver log:\n{}",
                example_output(&server, "batch_runner", "stderr"),
                server.log()
            )
        },
        || runner.0.try_wait().unwrap(),
    );
    let stdout = example_output(&server, "batch_runner", "stdout");
    assert!(
        status.success(),
        "batch_runner failed ({status}); stdout:\n{stdout}\nstderr:\n{}",
        example_output(&server, "batch_runner", "stderr")
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
            "{job} (`true`) should have finished: {instance:#}"
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
    let mut controller = start_example(&server, "label_defaulter", &[]);
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
    controller.kill();
    assert_eq!(labelled["metadata"]["labels"]["team"], "unknown");
    server.assert_no_unexpected_errors(&[]);
}
