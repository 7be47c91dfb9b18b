//! End to end, against the real `pacer dev` (API server, placement, deployment and node
//! lifecycle controllers):
//!
//! * `pacer node cordon|uncordon|drain` with hollow nodes from `pacer node register-hollow`.
//!   Hollow nodes have no agent, so where an agent would report that it killed an instance,
//!   the test writes that status itself through `/status`.
//! * node death with a real `pacer agent` process (process runtime): SIGKILL it, and its node
//!   turns unreachable, its instance `Lost` and then `Decommissioned` (per the short
//!   `unreachableStrategy` of its App) while a replacement is created; a restarted agent kills
//!   the stale copy that kept running meanwhile.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};
use support::{AgentProcess, INSTANCES, Server, process_alive};

fn node(server: &Server, name: &str) -> Value {
    server.get_json(&format!("/apis/pacer.dev/v1/nodes/{name}"))
}

fn on_node<'a>(items: &'a [Value], node: &str) -> Vec<&'a Value> {
    items
        .iter()
        .filter(|instance| instance["spec"]["nodeName"] == node)
        .collect()
}

fn is_terminal(instance: &Value) -> bool {
    matches!(
        instance["status"]["phase"].as_str(),
        Some("Killed" | "Finished" | "Failed" | "Gone")
    )
}

/// Plays the node's agent: reports `instance` killed through `/status` (read-modify-write,
/// again on a conflict with a controller's write).
fn report_killed(server: &Server, instance: &Value) {
    let name = instance["metadata"]["name"].as_str().unwrap();
    let path = format!("{INSTANCES}/{name}/status");
    server.eventually(&format!("{name} reported killed"), || {
        let mut killed = server.get_json(&format!("{INSTANCES}/{name}"));
        killed["status"]["phase"] = json!("Killed");
        let response = server.http("PUT", &path, Some(&killed));
        assert!(
            matches!(response.code, 200 | 409),
            "PUT {path}: {}",
            response.body
        );
        (response.code == 200).then_some(())
    });
}

#[test]
fn cordon_keeps_placement_away_and_drain_hands_the_instances_to_their_owner() {
    let server = Server::dev();
    let registered = server
        .run(&["node", "register-hollow", "--count", "2"])
        .success();
    assert!(
        registered.stdout.contains("node/hollow-2 registered"),
        "{registered:#?}"
    );
    // Hollow nodes have no agent: they are marked so, and the node lifecycle controller leaves
    // them alone.
    assert_eq!(
        node(&server, "hollow-1")["metadata"]["annotations"]["pacer.dev/agentless"],
        "true"
    );

    // Cordon: idempotent, and placement avoids the node.
    // (args, expected stdout, hollow-1's spec.unschedulable afterwards)
    let table = [
        (
            ["node", "cordon", "hollow-1"],
            "node/hollow-1 cordoned\n",
            true,
        ),
        (
            ["node", "cordon", "hollow-1"],
            "node/hollow-1 already cordoned\n",
            true,
        ),
    ];
    for (args, stdout, unschedulable) in table {
        let run = server.run(&args).success();
        assert_eq!(run.stdout, stdout, "{run:#?}");
        assert_eq!(
            node(&server, "hollow-1")["spec"]["unschedulable"],
            unschedulable
        );
    }
    let manifest = server.write(
        "web.yaml",
        r#"apiVersion: pacer.dev/v1
kind: App
metadata: {name: web, namespace: default}
spec:
  cmd: sleep 1000
  cpus: 0.1
  mem: 16
  instances: 3
  constraints: [["hostname", "LIKE", "hollow-.*"]]
"#,
    );
    server.run(&["apply", "-f", &manifest]).success();
    let first: BTreeSet<String> = server.eventually("3 instances bound", || {
        let items = server.list(INSTANCES);
        let bound: Vec<&Value> = items
            .iter()
            .filter(|i| i["spec"]["nodeName"].is_string())
            .collect();
        (bound.len() == 3).then(|| {
            for instance in &bound {
                assert_eq!(
                    instance["spec"]["nodeName"], "hollow-2",
                    "placed on the cordoned node: {instance}"
                );
            }
            bound
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
                .collect()
        })
    });
    let run = server.run(&["node", "uncordon", "hollow-1"]).success();
    assert_eq!(run.stdout, "node/hollow-1 uncordoned\n");
    assert_eq!(node(&server, "hollow-1")["spec"]["unschedulable"], false);

    // Drain hollow-2 and wait: every instance there is decommissioned; the owner replaces it
    // on hollow-1; once "the agent" reports them killed, drain finishes.
    let drain = server
        .command(&["node", "drain", "hollow-2", "--timeout", "60s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let decommissioned = server.eventually("the instances on hollow-2 decommissioned", || {
        let items = server.list(INSTANCES);
        let there: Vec<Value> = on_node(&items, "hollow-2").into_iter().cloned().collect();
        there
            .iter()
            .all(|i| i["spec"]["goal"] == "Decommissioned")
            .then_some(there)
    });
    assert_eq!(decommissioned.len(), 3);
    assert_eq!(node(&server, "hollow-2")["spec"]["unschedulable"], true);
    server.eventually("3 replacements on hollow-1", || {
        let items = server.list(INSTANCES);
        let replacements = on_node(&items, "hollow-1")
            .into_iter()
            .filter(|i| i["spec"]["goal"] == "Running")
            .count();
        (replacements == 3).then_some(())
    });
    for instance in &decommissioned {
        report_killed(&server, instance);
    }
    let output = drain.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "drain failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("node/hollow-2 cordoned\n"), "{stdout}");
    for name in &first {
        assert!(
            stdout.contains(&format!("instance/default/{name} decommissioned\n")),
            "{stdout}"
        );
    }
    assert!(stdout.ends_with("node/hollow-2 drained\n"), "{stdout}");

    // Draining a node whose instances never stop times out, naming them; `--wait=false`
    // returns at once.
    let run = server
        .run(&["node", "drain", "hollow-1", "--timeout", "2s"])
        .failure();
    assert!(
        run.stderr
            .contains("node hollow-1: timed out after 2s waiting for 3 instance(s)"),
        "{run:#?}"
    );
    let run = server
        .run(&["node", "drain", "hollow-1", "--wait=false"])
        .success();
    assert_eq!(run.stdout, "node/hollow-1 already cordoned\n");
    let items = server.list(INSTANCES);
    let there = on_node(&items, "hollow-1");
    assert_eq!(there.len(), 3, "{items:#?}");
    assert!(
        there
            .iter()
            .all(|i| i["spec"]["goal"] == "Decommissioned" && !is_terminal(i)),
        "{there:#?}"
    );

    // Bad input names what is wrong.
    let run = server.run(&["node", "cordon", "nope"]).failure();
    assert!(run.stderr.contains("\"nope\" not found"), "{run:#?}");
    let run = server.run(&["node", "drain", "hollow-1", "--timeout", "soon"]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.contains("invalid duration \"soon\""), "{run:#?}");
    server.assert_no_unexpected_errors(&[]);
}

/// A `pacer agent` process (process runtime) named `agent-1` in pool `e2e`, its data in
/// `dir/agent-1`, logging to `dir/<log>`.
fn start_agent(server: &Server, dir: &Path, log: &str) -> AgentProcess {
    let data = dir.join("agent-1");
    AgentProcess::start(
        &[
            "--server",
            &server.url,
            "--name",
            "agent-1",
            "--attribute",
            "pool=e2e",
            "--runtime",
            "process",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        dir,
        log,
    )
}

fn ready_of(node: &Value) -> (String, String) {
    let ready = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|condition| condition["type"] == "Ready")
        .cloned()
        .unwrap_or(Value::Null);
    (
        ready["status"].as_str().unwrap_or_default().to_owned(),
        ready["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

fn instance_named(server: &Server, name: &str) -> Option<Value> {
    server.get_if_found(&format!("{INSTANCES}/{name}"))
}

#[test]
fn a_dead_agents_instance_is_lost_then_replaced_and_a_restarted_agent_kills_the_stale_copy() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let server = Server::start(&["dev", "--no-agent", "--data-dir", data.to_str().unwrap()]);
    let mut agent = start_agent(&server, scratch.path(), "agent-1.log");
    server.eventually("agent-1 ready", || {
        let response = server.http("GET", "/apis/pacer.dev/v1/nodes/agent-1", None);
        (response.code == 200 && ready_of(&response.json()).0 == "True").then_some(())
    });
    let manifest = server.write(
        "sleeper.yaml",
        r#"apiVersion: pacer.dev/v1
kind: App
metadata: {name: sleeper, namespace: default}
spec:
  cmd: sleep 1000
  cpus: 0.1
  mem: 16
  instances: 1
  constraints: [["pool", "LIKE", "e2e"]]
  unreachableStrategy: {inactiveAfterSeconds: 1, expungeAfterSeconds: 600}
"#,
    );
    server.run(&["apply", "-f", &manifest]).success();
    let (stale, pid) = server.eventually("the instance running on agent-1", || {
        let items = server.list(INSTANCES);
        let running = items
            .iter()
            .find(|i| i["status"]["phase"] == "Running" && i["spec"]["nodeName"] == "agent-1")?;
        let pid: u32 = running["status"]["runtimeId"].as_str()?.parse().ok()?;
        Some((running["metadata"]["name"].as_str()?.to_owned(), pid))
    });
    assert!(process_alive(pid), "the instance's process {pid} runs");

    // The agent dies: no more lease renewals. Its instance keeps running on the machine.
    agent.sigkill();
    server.eventually("agent-1 unreachable", || {
        (ready_of(&node(&server, "agent-1"))
            == ("Unknown".to_owned(), "NodeLeaseExpired".to_owned()))
            .then_some(())
    });
    let event = server.http(
        "GET",
        "/apis/pacer.dev/v1/namespaces/default/events/agent-1.nodenotready",
        None,
    );
    assert_eq!(event.code, 200, "a NodeNotReady Event: {}", event.body);
    assert_eq!(event.json()["involvedObject"]["name"], "agent-1");
    // Lost at once; after inactiveAfterSeconds (1 s) decommissioned, so that the deployment
    // controller starts a replacement (it stays pending: the only node is unreachable).
    let lost = server.eventually("the instance Lost and decommissioned", || {
        let instance = instance_named(&server, &stale)?;
        (instance["status"]["phase"] == "Lost" && instance["spec"]["goal"] == "Decommissioned")
            .then_some(instance)
    });
    assert!(lost["status"]["unreachableSince"].is_string(), "{lost}");
    assert_eq!(lost["status"]["reason"], "UnreachableInactive", "{lost}");
    server.eventually("a replacement", || {
        server
            .list(INSTANCES)
            .iter()
            .any(|i| i["metadata"]["name"] != stale.as_str() && i["spec"]["goal"] == "Running")
            .then_some(())
    });
    assert!(
        process_alive(pid),
        "the stale copy still runs while its node is unreachable"
    );

    // The agent comes back: the node is ready again, the stale copy is killed, and the
    // replacement runs there.
    let _agent = start_agent(&server, scratch.path(), "agent-1-restarted.log");
    server.eventually("the stale copy killed", || {
        (!process_alive(pid)).then_some(())
    });
    server.eventually("agent-1 ready again", || {
        (ready_of(&node(&server, "agent-1")).0 == "True").then_some(())
    });
    server.eventually("the stale instance terminal or deleted", || {
        instance_named(&server, &stale)
            .is_none_or(|instance| is_terminal(&instance))
            .then_some(())
    });
    let replacement_pid = server.eventually("the replacement running on agent-1", || {
        let items = server.list(INSTANCES);
        let running = items.iter().find(|i| {
            i["metadata"]["name"] != stale.as_str()
                && i["status"]["phase"] == "Running"
                && i["spec"]["nodeName"] == "agent-1"
        })?;
        running["status"]["runtimeId"].as_str()?.parse::<u32>().ok()
    });

    // Clean up through the API: deleting the App stops its instance.
    server.run(&["delete", "app", "sleeper"]).success();
    server.eventually("the replacement stopped", || {
        (!process_alive(replacement_pid)).then_some(())
    });
    server.assert_no_unexpected_errors(&[]);
}

/// A `pacer agent` process (process runtime) named `name` in pool `pair`, its data in
/// `dir/<name>`, logging to `dir/<name>.log`.
fn start_pool_agent(server: &Server, dir: &Path, name: &str) -> AgentProcess {
    let data = dir.join(name);
    AgentProcess::start(
        &[
            "--server",
            &server.url,
            "--name",
            name,
            "--attribute",
            "pool=pair",
            "--runtime",
            "process",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        dir,
        &format!("{name}.log"),
    )
}

/// Kills the process group of a stale copy left running by a SIGKILLed agent.
struct KillGroupOnDrop(u32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .status();
    }
}

#[test]
fn an_agent_stopped_for_good_has_its_instance_replaced_on_another_agent() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let server = Server::start(&["dev", "--no-agent", "--data-dir", data.to_str().unwrap()]);
    let mut agents = [
        start_pool_agent(&server, scratch.path(), "pair-1"),
        start_pool_agent(&server, scratch.path(), "pair-2"),
    ];
    for name in ["pair-1", "pair-2"] {
        server.eventually(&format!("{name} ready"), || {
            let response = server.http("GET", &format!("/apis/pacer.dev/v1/nodes/{name}"), None);
            (response.code == 200 && ready_of(&response.json()).0 == "True").then_some(())
        });
    }
    let manifest = server.write(
        "mover.yaml",
        r#"apiVersion: pacer.dev/v1
kind: App
metadata: {name: mover, namespace: default}
spec:
  cmd: sleep 1000
  cpus: 0.1
  mem: 16
  instances: 1
  constraints: [["pool", "LIKE", "pair"]]
  unreachableStrategy: {inactiveAfterSeconds: 1, expungeAfterSeconds: 600}
"#,
    );
    server.run(&["apply", "-f", &manifest]).success();
    let (first, first_node, pid) = server.eventually("the instance running on one agent", || {
        let items = server.instances_of("default", "mover");
        let running = items.iter().find(|i| i["status"]["phase"] == "Running")?;
        Some((
            running["metadata"]["name"].as_str()?.to_owned(),
            running["spec"]["nodeName"].as_str()?.to_owned(),
            running["status"]["runtimeId"]
                .as_str()?
                .parse::<u32>()
                .ok()?,
        ))
    });
    let _stale = KillGroupOnDrop(pid);
    let (victim, survivor) = if first_node == "pair-1" {
        (0, "pair-2")
    } else {
        (1, "pair-1")
    };

    // The agent is stopped for good (never restarted).
    agents[victim].sigkill();
    let replacement_pid = server.eventually("a replacement running on the other agent", || {
        let items = server.instances_of("default", "mover");
        let replacement = items.iter().find(|i| {
            i["metadata"]["name"] != first.as_str()
                && i["status"]["phase"] == "Running"
                && i["spec"]["nodeName"] == survivor
        })?;
        replacement["status"]["runtimeId"]
            .as_str()?
            .parse::<u32>()
            .ok()
    });
    assert!(
        process_alive(replacement_pid),
        "the replacement's process runs"
    );
    assert_ne!(replacement_pid, pid);
    let stale = instance_named(&server, &first).unwrap();
    assert_eq!(stale["status"]["phase"], "Lost", "{stale:#}");
    assert_eq!(stale["spec"]["goal"], "Decommissioned", "{stale:#}");
    assert_eq!(
        ready_of(&node(&server, &first_node)),
        ("Unknown".to_owned(), "NodeLeaseExpired".to_owned())
    );

    // Clean up through the API: the surviving agent stops the replacement. (The App itself
    // stays until its Lost instance is expunged: its node never comes back.)
    server
        .run(&["delete", "app", "mover", "--wait=false"])
        .success();
    server.eventually("the replacement stopped", || {
        (!process_alive(replacement_pid)).then_some(())
    });
    agents[1 - victim].assert_no_errors();
    server.assert_no_unexpected_errors(&[]);
}
