//! End to end: the control plane goes away and comes back under a running `pacer agent`
//! (process runtime). `pacer dev --no-agent` is SIGKILLed while the agent runs an instance;
//! the instance's process keeps running, the agent keeps retrying (with backoff) instead of
//! stopping anything, and once `pacer dev` is restarted on the same data directory and port the
//! agent reconnects by itself: its lease is renewed again, its watch resumes (a scale-up is
//! started there) and its status writes land — while the first instance is never restarted.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{AgentProcess, KillOnDrop, PACER, eventually, free_port, http, process_alive, ready};

const INSTANCES: &str = "/apis/pacer.dev/v1/namespaces/default/instances";
const APP: &str = "/apis/pacer.dev/v1/namespaces/default/apps/steady";
const LEASE: &str = "/apis/pacer.dev/v1/namespaces/pacer-node-lease/leases/outage-agent";

/// `pacer dev --no-agent` on a fixed data directory and address, restartable.
struct Dev {
    process: KillOnDrop,
    address: String,
    log: PathBuf,
}

impl Dev {
    fn start(data: &Path, address: &str, log: PathBuf) -> Self {
        let file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(PACER)
            .args(["dev", "--no-agent", "--data-dir"])
            .arg(data)
            .args(["--listen", address])
            .env("PACER_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let dev = Self {
            process: KillOnDrop(child),
            address: address.to_owned(),
            log,
        };
        eventually(
            "pacer dev to answer /readyz",
            || dev.log(),
            || ready(address).then_some(()),
        );
        dev
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> Value {
        let response = http(&self.address, "GET", path, None);
        assert_eq!(response.code, 200, "GET {path}: {}", response.body);
        response.json()
    }

    fn running(&self) -> Vec<Value> {
        self.get(&format!(
            "{INSTANCES}?labelSelector=pacer.dev%2Fapp%3Dsteady"
        ))["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["status"]["phase"] == "Running")
            .cloned()
            .collect()
    }
}

fn renew_time(dev: &Dev) -> Option<String> {
    let response = http(&dev.address, "GET", LEASE, None);
    (response.code == 200).then(|| {
        response.json()["spec"]["renewTime"]
            .as_str()
            .map(str::to_owned)
    })?
}

#[test]
fn instances_survive_a_control_plane_outage_and_the_agent_reconnects() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let address = format!("127.0.0.1:{}", free_port());
    let server_log = scratch.path().join("server.log");
    let mut dev = Dev::start(&data, &address, server_log.clone());
    let agent_data = scratch.path().join("agent");
    let agent = AgentProcess::start(
        &[
            "--server",
            &format!("http://{address}"),
            "--name",
            "outage-agent",
            "--attribute",
            "pool=outage",
            "--runtime",
            "process",
            "--data-dir",
            agent_data.to_str().unwrap(),
        ],
        scratch.path(),
        "agent.log",
    );
    let context = || {
        format!(
            "agent:\n{}\nserver:\n{}",
            agent.log(),
            std::fs::read_to_string(&server_log).unwrap_or_default()
        )
    };
    let app = json!({
        "apiVersion": "pacer.dev/v1",
        "kind": "App",
        "metadata": {"name": "steady", "namespace": "default"},
        "spec": {
            "cmd": "sleep 1000",
            "cpus": 0.1,
            "mem": 16,
            "instances": 1,
            "constraints": [["pool", "LIKE", "outage"]],
        },
    });
    let created = http(
        &address,
        "POST",
        "/apis/pacer.dev/v1/namespaces/default/apps",
        Some(&app),
    );
    assert_eq!(created.code, 201, "{}", created.body);
    let first = eventually("the instance running", context, || {
        dev.running().first().cloned()
    });
    let name = first["metadata"]["name"].as_str().unwrap().to_owned();
    let runtime_id = first["status"]["runtimeId"].as_str().unwrap().to_owned();
    let pid: u32 = runtime_id.parse().unwrap();
    // Whatever happens, the sleeper does not outlive the test.
    let _sleeper = scopeguard(pid);
    assert!(process_alive(pid));
    eventually("the lease renewed", context, || renew_time(&dev));

    // The control plane dies. The agent keeps retrying; its instance keeps running.
    dev.process.kill();
    let down_since = Instant::now();
    eventually("the agent to notice the outage", context, || {
        let log = agent.log();
        (log.contains("cannot renew the node lease")).then_some(())
    });
    while down_since.elapsed() < Duration::from_secs(14) {
        assert!(
            process_alive(pid),
            "the instance died with the control plane"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        process_alive(pid),
        "the instance died with the control plane"
    );

    // Back on the same data directory and port: the agent reconnects on its own.
    let restarted_at = jiff::Timestamp::now();
    dev = Dev::start(&data, &address, server_log.clone());
    eventually("the lease renewed after the restart", context, || {
        let renewed: jiff::Timestamp = renew_time(&dev)?.parse().ok()?;
        (renewed > restarted_at).then_some(())
    });
    // Its watch works again: a scale-up is started on it and reported Running.
    let mut app = dev.get(APP);
    app["spec"]["instances"] = json!(2);
    let scaled = http(&address, "PUT", APP, Some(&app));
    assert_eq!(scaled.code, 200, "scale: {}", scaled.body);
    let both = eventually("two instances running", context, || {
        let running = dev.running();
        (running.len() == 2).then_some(running)
    });
    let _second = scopeguard(
        both.iter()
            .find(|i| i["metadata"]["name"] != name.as_str())
            .and_then(|i| i["status"]["runtimeId"].as_str()?.parse().ok())
            .unwrap(),
    );
    // The first instance was never restarted: same process, same run.
    let again = both
        .iter()
        .find(|i| i["metadata"]["name"] == name.as_str())
        .expect("the first instance is still there");
    assert_eq!(
        again["status"]["runtimeId"],
        runtime_id.as_str(),
        "{again:#}"
    );
    assert_eq!(
        again["status"]["startedAt"], first["status"]["startedAt"],
        "{again:#}"
    );
    assert!(process_alive(pid));
    let node = dev.get("/apis/pacer.dev/v1/nodes/outage-agent");
    let ready_condition = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|condition| condition["type"] == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(ready_condition["status"], "True", "{node:#}");
    agent.assert_no_errors();

    // Clean up through the API: deleting the App stops both.
    // (once the scale-up's Deployment has finished: a running one locks the App).
    eventually("the App deleted", context, || {
        let deleted = http(&address, "DELETE", APP, None);
        assert!(matches!(deleted.code, 200 | 202 | 409), "{}", deleted.body);
        (deleted.code != 409).then_some(())
    });
    eventually("the instance stopped", context, || {
        (!process_alive(pid)).then_some(())
    });
}

/// Kills the process group of `pid` when dropped.
fn scopeguard(pid: u32) -> impl Drop {
    struct KillGroup(u32);
    impl Drop for KillGroup {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.0)])
                .status();
        }
    }
    KillGroup(pid)
}
