//! End to end: `pacer logs` against `pacer dev` (control plane) and a real `pacer agent`
//! process (process runtime). The instance's stdout and stderr files reach the CLI through the
//! API server's Instance `log` subresource, proxied from the agent's endpoint recorded in its
//! Node: whole logs, `--tail`, `-f`, an App's instances prefixed by name; and the errors — an
//! unknown name (404), an instance not bound to a node, and a dead agent (503, with the
//! reason).

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use support::{AgentProcess, INSTANCES, KillOnDrop, Server, process_alive};

/// Kills the process groups of the instances a SIGKILLed agent left running.
struct Leftovers(Vec<u32>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

fn running_instances(server: &Server, app: &str, count: usize) -> Vec<(String, u32)> {
    server.eventually(&format!("{count} running instances of {app}"), || {
        let running: Vec<(String, u32)> = server
            .instances_of("default", app)
            .iter()
            .filter(|i| i["status"]["phase"] == "Running")
            .filter_map(|i| {
                Some((
                    i["metadata"]["name"].as_str()?.to_owned(),
                    i["status"]["runtimeId"].as_str()?.parse().ok()?,
                ))
            })
            .collect();
        (running.len() == count).then_some(running)
    })
}

#[test]
fn logs_stream_from_the_agent_through_the_api_server() {
    let server = Server::dev();
    let data = server.dir().join("agent-data");
    let mut agent = AgentProcess::start(
        &[
            "--server",
            &server.url,
            "--name",
            "logs-agent",
            "--attribute",
            "pool=logs",
            "--runtime",
            "process",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        server.dir(),
        "agent.log",
    );
    let address = server.eventually("the agent's endpoint in its Node", || {
        let node = server.get_if_found("/apis/pacer.dev/v1/nodes/logs-agent")?;
        node["status"]["agentAddress"].as_str().map(str::to_owned)
    });
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    let manifest = server.write(
        "talker.yaml",
        r#"apiVersion: pacer.dev/v1
kind: App
metadata: {name: talker, namespace: default}
spec:
  cmd: 'echo hello; echo oops >&2; i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.2; done'
  cpus: 0.1
  mem: 16
  instances: 2
  constraints: [["pool", "LIKE", "logs"]]
"#,
    );
    server.run(&["apply", "-f", &manifest]).success();
    let running = running_instances(&server, "talker", 2);
    let _leftovers = Leftovers(running.iter().map(|(_, pid)| *pid).collect());
    let (first, _) = &running[0];
    server.eventually("some ticks", || {
        let logs = server.run(&["logs", first]).success();
        logs.stdout.contains("tick 2").then_some(())
    });

    // The whole output: stdout, then stderr.
    let logs = server.run(&["logs", first]).success();
    assert!(logs.stdout.starts_with("hello\ntick 0\n"), "{logs:#?}");
    assert!(logs.stdout.ends_with("oops\n"), "{logs:#?}");
    // The last line of each.
    let last = server.run(&["logs", first, "--tail", "1"]).success();
    let lines: Vec<&str> = last.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{last:#?}");
    assert!(lines[0].starts_with("tick "), "{last:#?}");
    assert_eq!(lines[1], "oops", "{last:#?}");

    // Following: lines written after the request arrive while it stays open.
    let mut follow = server.command(&["logs", "-f", first, "--tail", "0"]);
    let mut child = follow.stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut child = KillOnDrop(child);
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let followed: Vec<String> = (0..3)
        .map(|_| {
            lines_rx
                .recv_timeout(Duration::from_secs(20))
                .expect("a followed line")
        })
        .collect();
    assert!(
        followed.iter().all(|line| line.starts_with("tick ")),
        "{followed:?}"
    );
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "`pacer logs -f` still runs"
    );
    child.kill();

    // An App: every instance's lines, prefixed by its name.
    let app_logs = server.run(&["logs", "talker", "--tail", "3"]).success();
    for (name, _) in &running {
        assert!(
            app_logs.stdout.contains(&format!("[{name}] oops\n")),
            "{app_logs:#?}"
        );
    }

    // Unknown names.
    let unknown = server.run(&["logs", "nope"]).failure();
    assert!(
        unknown
            .stderr
            .contains("no instance or app named \"nope\" in namespace \"default\""),
        "{unknown:#?}"
    );
    let response = server.http("GET", &format!("{INSTANCES}/nope/log"), None);
    assert_eq!(response.code, 404, "{}", response.body);

    // An instance no node can take is not bound: 503 saying so.
    let manifest = server.write(
        "nowhere.yaml",
        r#"apiVersion: pacer.dev/v1
kind: App
metadata: {name: nowhere, namespace: default}
spec:
  cmd: sleep 100
  cpus: 0.1
  mem: 16
  constraints: [["pool", "LIKE", "absent"]]
"#,
    );
    server.run(&["apply", "-f", &manifest]).success();
    let pending = server.eventually("an instance of nowhere", || {
        let items = server.instances_of("default", "nowhere");
        items
            .first()
            .and_then(|i| i["metadata"]["name"].as_str().map(str::to_owned))
    });
    let unbound = server.run(&["logs", &pending]).failure();
    assert!(
        unbound
            .stderr
            .contains("Error from server (ServiceUnavailable)")
            && unbound.stderr.contains("is not bound to a node yet"),
        "{unbound:#?}"
    );

    // A dead agent: 503 naming the node and its address; its instances still run.
    agent.sigkill();
    let response = server.http("GET", &format!("{INSTANCES}/{first}/log"), None);
    assert_eq!(response.code, 503, "{}", response.body);
    let status: Value = response.json();
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("the agent of node logs-agent")
            && message.contains(&address)
            && message.contains("cannot be reached"),
        "{message}"
    );
    assert!(running.iter().all(|(_, pid)| process_alive(pid)));
    // The request tracing logs every 5xx answer, the expected 503s included.
    server.assert_no_unexpected_errors(&[
        "/log user=\"system:anonymous\"}: tower_http::trace::on_failure: response failed \
         classification=Status code: 503",
    ]);
}
