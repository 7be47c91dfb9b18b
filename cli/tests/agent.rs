//! End to end: the node agent with real processes and real Docker containers. `pacer dev`
//! (its in-process agent), or `pacer dev --no-agent` with a separate `pacer agent` process, on
//! free loopback ports; Instances are created directly through the API (placement binds them)
//! and the tests check what really runs: output files, container env, ports and labels,
//! kills, adoption after the agent is SIGKILLed, orphans, and a fleet of hollow agents.
//!
//! Docker images cannot be pulled here: a tiny image (`FROM scratch` plus Debian's static
//! busybox) is built once per test run. Every container a test's agent starts carries the
//! test's unique node name as a label and is removed by that label when the test ends, even if
//! it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use support::{AgentProcess, INSTANCES, Server, eventually, eventually_within, process_alive};

/// The test image: `FROM scratch` with busybox and its applets.
const IMAGE: &str = "pacer-test/busybox:1";

/// Builds [`IMAGE`] once per test run.
fn test_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.is_file(),
            "/bin/busybox is missing: install busybox-static (hack/install-deps.sh)"
        );
        let context = tempfile::tempdir().unwrap();
        std::fs::copy(busybox, context.path().join("busybox")).unwrap();
        std::fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )
        .unwrap();
        let output = Command::new("docker")
            .args(["build", "-q", "-t", IMAGE])
            .arg(context.path())
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .expect("run docker build");
        assert!(
            output.status.success(),
            "docker build {IMAGE}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    });
    IMAGE
}

/// A node name no other test (or test run) uses.
fn unique_node(tag: &str) -> String {
    format!("agent-test-{}-{tag}", std::process::id())
}

/// Removes every container labelled with `node` when dropped.
struct Containers {
    node: String,
}

impl Containers {
    fn of(node: &str) -> Self {
        Self {
            node: node.to_owned(),
        }
    }

    fn ids(&self) -> Vec<String> {
        let output = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=pacer.dev/node={}", self.node))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let ids = self.ids();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

/// Kills (SIGKILL, whole process group) every process whose pid file is under `sandboxes`
/// when dropped: a failing test leaves nothing running.
struct Processes {
    sandboxes: PathBuf,
}

impl Drop for Processes {
    fn drop(&mut self) {
        let Ok(namespaces) = std::fs::read_dir(&self.sandboxes) else {
            return;
        };
        for pid_file in namespaces
            .flatten()
            .filter_map(|namespace| std::fs::read_dir(namespace.path()).ok())
            .flat_map(|instances| instances.flatten())
            .map(|instance| instance.path().join("pacer.pid"))
        {
            let Ok(text) = std::fs::read_to_string(&pid_file) else {
                continue;
            };
            let Ok(record) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if let Some(pid) = record["pid"].as_i64() {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// `docker inspect` of one container, `None` if it does not exist.
fn inspect(id: &str) -> Option<Value> {
    let output = Command::new("docker")
        .args(["inspect", id])
        .output()
        .unwrap();
    if !output.status.success() {
        return None;
    }
    let list: Value = serde_json::from_slice(&output.stdout).unwrap();
    Some(list[0].clone())
}

/// An Instance of app `app` named `name` running `template`.
fn instance(name: &str, app: &str, template: Value) -> Value {
    json!({
        "apiVersion": "pacer.dev/v1",
        "kind": "Instance",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"app": app, "appVersion": "2026-01-01T00:00:00Z", "template": template},
    })
}

fn create(server: &Server, object: &Value) {
    server.create(INSTANCES, object);
}

fn get(server: &Server, name: &str) -> Value {
    server.get_json(&format!("{INSTANCES}/{name}"))
}

fn phase(instance: &Value) -> &str {
    instance["status"]["phase"].as_str().unwrap_or("")
}

/// Waits until instance `name` reaches `wanted` and returns it.
fn wait_phase(server: &Server, name: &str, wanted: &str, log: impl Fn() -> String) -> Value {
    eventually(
        &format!("instance {name} to be {wanted}"),
        || format!("instance: {:#}\nlog:\n{}", get(server, name), log()),
        || {
            let object = get(server, name);
            (phase(&object) == wanted).then_some(object)
        },
    )
}

/// Sets `spec.goal` with a read-modify-write (`PUT` with the read `resourceVersion`).
fn set_goal(server: &Server, name: &str, goal: &str) {
    eventually(
        &format!("the goal of {name} to be set"),
        || server.log(),
        || {
            let mut object = get(server, name);
            object["spec"]["goal"] = json!(goal);
            let response = server.http("PUT", &format!("{INSTANCES}/{name}"), Some(&object));
            match response.code {
                200 => Some(()),
                409 => None,
                code => panic!("set the goal of {name}: {code}: {}", response.body),
            }
        },
    );
}

fn delete(server: &Server, name: &str) {
    let response = server.http("DELETE", &format!("{INSTANCES}/{name}"), None);
    assert_eq!(response.code, 200, "delete {name}: {}", response.body);
}

/// `pacer dev` with its own data directory and agent node name; `--no-agent` when `agent` is
/// false.
struct Dev {
    server: Server,
    _processes: Processes,
    data: tempfile::TempDir,
}

impl Dev {
    fn start(node: &str, agent: bool) -> Self {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().to_str().unwrap().to_owned();
        let mut args = vec!["dev", "--data-dir", &dir, "--node-name", node];
        if !agent {
            args.push("--no-agent");
        }
        let server = Server::start(&args);
        Self {
            server,
            _processes: Processes {
                sandboxes: data.path().join("agent/sandboxes"),
            },
            data,
        }
    }

    fn sandbox(&self, name: &str) -> PathBuf {
        self.data.path().join("agent/sandboxes/default").join(name)
    }
}

#[test]
fn process_instances_run_finish_fail_and_are_killed() {
    let node = unique_node("process");
    let dev = Dev::start(&node, true);
    let server = &dev.server;
    let log = || server.log();
    create(
        server,
        &instance(
            "echo-1",
            "echo",
            json!({"cmd": "echo started $PORT0 $GREETING in $PWD; exec sleep 600",
                   "env": {"GREETING": "hi"}, "cpus": 0.1, "mem": 32}),
        ),
    );
    let running = wait_phase(server, "echo-1", "Running", log);
    let port = running["spec"]["hostPorts"][0].as_i64().unwrap();
    let pid = running["status"]["runtimeId"].as_str().unwrap().to_owned();
    assert!(process_alive(&pid), "pid {pid} should run");
    assert!(running["status"]["startedAt"].is_string(), "{running:#}");
    let sandbox = dev.sandbox("echo-1");
    let expected = format!("started {port} hi in {}", sandbox.display());
    eventually(
        "the instance's output in its sandbox",
        || std::fs::read_to_string(sandbox.join("stdout")).unwrap_or_default(),
        || {
            std::fs::read_to_string(sandbox.join("stdout"))
                .ok()
                .filter(|out| out.contains(&expected))
        },
    );

    // Ended by themselves: code 0 → Finished, anything else → Failed, with the code.
    for (name, cmd, wanted, code) in [
        ("done-1", "echo done", "Finished", 0),
        ("fails-1", "echo oops >&2; exit 3", "Failed", 3),
    ] {
        create(
            server,
            &instance(name, name, json!({"cmd": cmd, "cpus": 0.1, "mem": 32})),
        );
        let ended = wait_phase(server, name, wanted, log);
        assert_eq!(ended["status"]["exitCode"], code, "{ended:#}");
        assert_eq!(ended["status"]["reason"], "Exited", "{ended:#}");
    }
    assert!(
        std::fs::read_to_string(dev.sandbox("fails-1").join("stderr"))
            .unwrap()
            .contains("oops")
    );

    // Decommissioned → Killing → Killed, and the process is gone.
    set_goal(server, "echo-1", "Decommissioned");
    let killed = wait_phase(server, "echo-1", "Killed", log);
    assert!(killed["status"]["finishedAt"].is_string(), "{killed:#}");
    assert!(!process_alive(&pid), "pid {pid} still runs after Killed");
    assert!(
        !sandbox.join("pacer.pid").exists(),
        "the pid file outlives the kill"
    );
    server.assert_no_unexpected_errors(&[]);

    // `pacer dev` is the whole setup: its processes end with it, even on SIGKILL.
    create(
        server,
        &instance(
            "tied-1",
            "tied",
            json!({"cmd": "exec sleep 600", "cpus": 0.1, "mem": 32}),
        ),
    );
    let tied = wait_phase(server, "tied-1", "Running", log);
    let tied_pid = tied["status"]["runtimeId"].as_str().unwrap().to_owned();
    assert!(process_alive(&tied_pid));
    let killed = Command::new("kill")
        .args(["-KILL", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    eventually(
        "the dev's process instance to end with it",
        String::new,
        || (!process_alive(&tied_pid)).then_some(()),
    );
}

#[test]
fn docker_instances_get_env_ports_labels_and_fail_on_missing_images() {
    let image = test_image();
    let node = unique_node("docker");
    let _containers = Containers::of(&node);
    let dev = Dev::start("unused", false);
    let server = &dev.server;
    // Its own agent with a host port range of one port that was free a moment ago, so that
    // nothing else on the machine (other tests' instances) holds the port it publishes.
    let port = support::free_port();
    let agent_data = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(
        &[
            "--server",
            &server.url,
            "--name",
            &node,
            "--data-dir",
            agent_data.path().to_str().unwrap(),
            "--runtime",
            "docker",
            "--resources",
            &format!("ports={port}-{port}"),
        ],
        server.dir(),
        "agent-1.log",
    );
    let log = || format!("agent:\n{}\nserver:\n{}", agent.log(), server.log());
    create(
        server,
        &instance(
            "web-1",
            "web",
            json!({
                "cmd": "echo says-$GREETING && echo complains >&2 && mkdir -p /www && echo hello-$GREETING-$PORT0 > /www/index.html && exec httpd -f -p 8080 -h /www",
                "env": {"GREETING": "docker"},
                "cpus": 0.2,
                "mem": 64,
                "networks": [{"mode": "container/bridge"}],
                "container": {
                    "type": "DOCKER",
                    "docker": {"image": image},
                    "portMappings": [{"containerPort": 8080, "hostPort": 0}],
                },
            }),
        ),
    );
    let running = wait_phase(server, "web-1", "Running", log);
    let host_port = running["spec"]["hostPorts"][0].as_i64().unwrap();
    assert_eq!(host_port, i64::from(port));
    let id = running["status"]["runtimeId"].as_str().unwrap().to_owned();
    let container = inspect(&id).expect("the container exists");
    let labels = &container["Config"]["Labels"];
    assert_eq!(labels["pacer.dev/managed-by"], "pacer", "{labels:#}");
    assert_eq!(labels["pacer.dev/instance"], "web-1", "{labels:#}");
    assert_eq!(labels["pacer.dev/namespace"], "default", "{labels:#}");
    assert_eq!(labels["pacer.dev/app"], "web", "{labels:#}");
    assert_eq!(labels["pacer.dev/node"], node.as_str(), "{labels:#}");
    let env: Vec<&str> = container["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_str().unwrap())
        .collect();
    for wanted in [
        "GREETING=docker".to_owned(),
        format!("PORT0={host_port}"),
        format!("PORT_8080={host_port}"),
        "MARATHON_APP_ID=/web".to_owned(),
    ] {
        assert!(env.contains(&wanted.as_str()), "{wanted} not in {env:?}");
    }
    let bindings = &container["HostConfig"]["PortBindings"]["8080/tcp"];
    assert_eq!(
        bindings[0]["HostPort"],
        host_port.to_string(),
        "{bindings:#}"
    );
    assert_eq!(container["HostConfig"]["NanoCpus"], 200_000_000);
    assert_eq!(container["HostConfig"]["Memory"], 64 * 1024 * 1024);
    let body = eventually("the container to answer HTTP on its host port", log, || {
        let address = format!("127.0.0.1:{host_port}");
        std::net::TcpStream::connect(&address).ok()?;
        let response = support::http(&address, "GET", "/", None);
        (response.code == 200).then_some(response.body)
    });
    assert_eq!(body.trim(), format!("hello-docker-{host_port}"));
    // `pacer logs` reads the container's output through the API server and the agent.
    let logs = server.run(&["logs", "web-1"]).success();
    assert!(
        logs.stdout.contains("says-docker\n") && logs.stdout.contains("complains\n"),
        "{logs:#?}"
    );
    let last = server.run(&["logs", "web-1", "--tail", "1"]).success();
    assert_eq!(last.stdout.lines().count(), 1, "{last:#?}");

    // A missing image fails the instance at once, saying why.
    create(
        server,
        &instance(
            "missing-1",
            "missing",
            json!({"cpus": 0.1, "mem": 32, "portDefinitions": [],
                   "container": {"type": "DOCKER", "docker": {"image": "pacer-test/absent:404"}}}),
        ),
    );
    let failed = wait_phase(server, "missing-1", "Failed", log);
    assert_eq!(failed["status"]["reason"], "ImageNotFound", "{failed:#}");
    let message = failed["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("pacer-test/absent:404") && message.contains("does not pull"),
        "{message}"
    );

    // Decommissioned → Killed, and the container is gone.
    set_goal(server, "web-1", "Decommissioned");
    wait_phase(server, "web-1", "Killed", log);
    eventually("the container to be removed", log, || {
        inspect(&id).is_none().then_some(())
    });
    agent.assert_no_errors();
    server.assert_no_unexpected_errors(&[]);
}

#[test]
fn a_restarted_agent_adopts_what_runs_and_stops_what_was_deleted() {
    let image = test_image();
    let node = unique_node("adopt");
    let containers = Containers::of(&node);
    let dev = Dev::start("unused", false);
    let server = &dev.server;
    let agent_data = tempfile::tempdir().unwrap();
    let _processes = Processes {
        sandboxes: agent_data.path().join("sandboxes"),
    };
    let data = agent_data.path().to_str().unwrap().to_owned();
    let args = [
        "--server",
        &server.url,
        "--name",
        &node,
        "--data-dir",
        &data,
        "--attribute",
        "rack=r1",
    ];
    let mut agent = AgentProcess::start(&args, server.dir(), "agent-1.log");
    let log = || {
        format!(
            "agent:\n{}\nserver:\n{}",
            agent_log(server.dir()),
            server.log()
        )
    };
    create(
        server,
        &instance(
            "box-1",
            "box",
            json!({"cmd": "exec sleep 600", "cpus": 0.1, "mem": 32,
                   "container": {"type": "DOCKER", "docker": {"image": image}}}),
        ),
    );
    for name in ["proc-1", "proc-2"] {
        create(
            server,
            &instance(
                name,
                "proc",
                json!({"cmd": "exec sleep 600", "cpus": 0.1, "mem": 32}),
            ),
        );
    }
    let mut ids = Vec::new();
    for name in ["box-1", "proc-1", "proc-2"] {
        let running = wait_phase(server, name, "Running", log);
        ids.push(running["status"]["runtimeId"].as_str().unwrap().to_owned());
    }
    let node_object = server
        .http("GET", &format!("/apis/pacer.dev/v1/nodes/{node}"), None)
        .json();
    assert_eq!(
        node_object["spec"]["attributes"]["rack"], "r1",
        "{node_object:#}"
    );
    assert_eq!(
        node_object["status"]["conditions"][0]["type"], "Ready",
        "{node_object:#}"
    );
    let container_started = inspect(&ids[0]).unwrap()["State"]["StartedAt"].clone();

    agent.sigkill();
    // While the agent is down: its instances keep running, and one is deleted.
    assert!(inspect(&ids[0]).unwrap()["State"]["Running"] == true);
    assert!(process_alive(&ids[1]) && process_alive(&ids[2]));
    delete(server, "proc-2");

    let agent = AgentProcess::start(&args, server.dir(), "agent-2.log");
    eventually("the deleted instance's process to be stopped", log, || {
        (!process_alive(&ids[2])).then_some(())
    });
    // The others were adopted: same container (not restarted), same pid, still Running.
    for (name, id) in [("box-1", &ids[0]), ("proc-1", &ids[1])] {
        let object = get(server, name);
        assert_eq!(phase(&object), "Running", "{object:#}");
        assert_eq!(object["status"]["runtimeId"], id.as_str(), "{object:#}");
    }
    let container = inspect(&ids[0]).unwrap();
    assert_eq!(container["State"]["Running"], true);
    assert_eq!(container["State"]["StartedAt"], container_started);
    assert_eq!(container["RestartCount"], 0);
    assert!(process_alive(&ids[1]));
    assert!(
        agent
            .log()
            .contains("found an instance run by an earlier agent")
    );

    // The adopted ones can still be killed.
    for name in ["box-1", "proc-1"] {
        set_goal(server, name, "Decommissioned");
    }
    for name in ["box-1", "proc-1"] {
        wait_phase(server, name, "Killed", log);
    }
    assert!(!process_alive(&ids[1]));
    eventually("no container left", log, || {
        containers.ids().is_empty().then_some(())
    });
    agent.assert_no_errors();
    server.assert_no_unexpected_errors(&[]);
}

fn agent_log(dir: &Path) -> String {
    ["agent-1.log", "agent-2.log", "hollow.log"]
        .iter()
        .filter_map(|name| std::fs::read_to_string(dir.join(name)).ok())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[test]
fn a_fleet_of_hollow_agents_runs_a_thousand_instances() {
    const NODES: usize = 200;
    const INSTANCES_COUNT: usize = 1000;
    let dev = Dev::start("unused", false);
    let server = &dev.server;
    let prefix = format!("{}-hollow-", unique_node("fleet"));
    let fleet = AgentProcess::start(
        &[
            "hollow",
            "--server",
            &server.url,
            "--count",
            &NODES.to_string(),
            "--name-prefix",
            &prefix,
        ],
        server.dir(),
        "hollow.log",
    );
    let log = || format!("fleet:\n{}\nserver:\n{}", fleet.log(), server.log());
    eventually(&format!("{NODES} ready hollow nodes"), log, || {
        let nodes = server.http("GET", "/apis/pacer.dev/v1/nodes", None).json();
        let ready = nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|node| node["status"]["conditions"][0]["status"] == "True")
            .count();
        (ready == NODES).then_some(())
    });
    for index in 0..INSTANCES_COUNT {
        create(
            server,
            &instance(
                &format!("hollow-app-{index}"),
                "hollow-app",
                json!({"cmd": "sleep 600", "cpus": 0.01, "mem": 1, "portDefinitions": []}),
            ),
        );
    }
    eventually_within(
        Duration::from_secs(120),
        &format!("{INSTANCES_COUNT} Running instances"),
        log,
        || {
            let list = server.http("GET", INSTANCES, None).json();
            let items = list["items"].as_array().unwrap();
            let running = items.iter().filter(|item| phase(item) == "Running").count();
            if running != INSTANCES_COUNT {
                return None;
            }
            let nodes: std::collections::HashSet<&str> = items
                .iter()
                .map(|item| item["spec"]["nodeName"].as_str().unwrap())
                .collect();
            assert!(nodes.iter().all(|node| node.starts_with(&prefix)));
            assert!(nodes.len() > NODES / 2, "spread over {} nodes", nodes.len());
            Some(())
        },
    );
    // Hollow instances run nothing: their log is one synthetic line, from the fleet's endpoint.
    let logs = server.run(&["logs", "hollow-app-7"]).success();
    assert!(
        logs.stdout
            .starts_with("hollow instance default/hollow-app-7 (hollow-")
            && logs.stdout.ends_with("there is no output\n"),
        "{logs:#?}"
    );
    fleet.assert_no_errors();
    server.assert_no_unexpected_errors(&[]);
}
