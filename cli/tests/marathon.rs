//! End to end: the real Python Marathon client (PyPI `marathon==0.13.0`, installed into
//! `target/python` by `hack/install-python-deps.sh`) against `pacer dev` with hollow agents:
//! ping, info and leader; create an app and wait for its deployment to run it; list and get it
//! with embedded tasks; list its tasks; scale it; update its command (a rolling replacement);
//! restart it; list versions and deployments; roll back to the first version; delete it.
//! Every call must succeed and parse — the client builds objects from every key it receives
//! and fails on one it does not know. Cross-checks: an app created through `/v2` is an App for
//! `pacer get`, and an App applied with `pacer apply` is an app for the Marathon client.
//! And with the real local agent: Marathon's Docker example is accepted unchanged and fails at
//! launch (no image can be pulled here), with the reason in `lastTaskFailure`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{HollowFleet, Server};

/// The client session, in Python. Exits non-zero (with a traceback) on the first failure.
const CLIENT_SESSION: &str = r#"
import os, sys, time
import requests
from marathon import MarathonClient
from marathon.exceptions import NotFoundError
from marathon.models import MarathonApp

client = MarathonClient([os.environ["PACER_URL"]], timeout=30)
APP = "/e2e/sleeper"

def wait(what, check, timeout=120):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            if check():
                return
        except NotFoundError as error:
            last = error
        time.sleep(0.5)
    app = client.get_app(APP, embed_tasks=True)
    raise AssertionError(f"timed out waiting for {what}; last error {last}; app {app.to_json()}")

def settled(count):
    app = client.get_app(APP, embed_tasks=True)
    running = [task for task in app.tasks if task.state == "TASK_RUNNING"]
    return not app.deployments and app.tasks_running == count and len(running) == count

def deployment_exists(result):
    """The answered deploymentId is the Deployment the controller started (an object)."""
    assert result["deploymentId"] and result["version"], result
    url = f"{os.environ['PACER_URL']}/apis/pacer.dev/v1/deployments/{result['deploymentId']}"
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, (result, response.status_code, response.text)

def task_ids():
    return sorted(task.id for task in client.list_tasks(APP))

assert client.ping().strip() == b"pong", client.ping()
info = client.get_info()
leader = client.get_leader()["leader"]
assert info.leader == leader, (info.leader, leader)
assert info.elected

created = client.create_app(APP, MarathonApp(cmd="sleep 1000", instances=1, cpus=0.1, mem=32))
assert created, "create_app did not answer 201"
assert created.id == APP and created.version, created.to_json()
wait("the first deployment", lambda: settled(1))

apps = client.list_apps(embed_tasks=True, embed_counts=True, embed_deployments=True,
                        embed_readiness=True, embed_last_task_failure=True)
assert APP in [app.id for app in apps], [app.id for app in apps]
assert [app.id for app in client.list_apps(cmd="sleep 1000", app_id="/e2e/")] == [APP]
app = client.get_app(APP, embed_tasks=True, embed_counts=True)
assert app.cmd == "sleep 1000" and app.instances == 1 and app.tasks_running == 1
tasks = client.list_tasks(APP)
assert len(tasks) == 1, tasks
assert tasks[0].app_id == APP and tasks[0].started_at is not None and tasks[0].host, tasks[0].to_json()
first = task_ids()

result = client.scale_app(APP, instances=2)
deployment_exists(result)
wait("the scale to 2", lambda: settled(2))
assert set(first) <= set(task_ids()), "scaling up must keep the running task"

before_update = task_ids()
result = client.update_app(APP, MarathonApp(cmd="sleep 2000", instances=2, cpus=0.1, mem=32))
deployment_exists(result)
wait("the new command to roll out",
     lambda: settled(2) and client.get_app(APP).cmd == "sleep 2000"
     and not set(task_ids()) & set(before_update))

before_restart = task_ids()
result = client.restart_app(APP)
deployment_exists(result)
wait("the restart", lambda: settled(2) and not set(task_ids()) & set(before_restart))

versions = client.list_versions(APP)
assert len(versions) >= 4, versions
assert client.get_version(APP, versions[0]).id == APP
first_version = client.get_version(APP, versions[-1])
assert first_version.cmd == "sleep 1000" and first_version.instances == 1, first_version.to_json()

# Rollback: PUT {"version": <the first version>} restores that definition.
result = client.rollback_app(APP, versions[-1])
deployment_exists(result)
wait("the rollback", lambda: settled(1) and client.get_app(APP).cmd == "sleep 1000")
client.list_deployments()

assert "/e2e/applied" in [app.id for app in client.list_apps()], "an applied App is an app"
assert client.get_app("/e2e/applied").cmd == "sleep 3000"

created = client.create_app("/e2e/kept", MarathonApp(cmd="sleep 4000", instances=0))
assert created and created.id == "/e2e/kept"

result = client.delete_app(APP)
deployment_exists(result)
def gone():
    try:
        client.get_app(APP)
        return False
    except NotFoundError:
        return True
wait("the app to be deleted", gone)
print("marathon client session: ok")
"#;

const APPLIED: &str = r#"apiVersion: pacer.dev/v1
kind: App
metadata:
  name: applied
  namespace: e2e
spec:
  cmd: sleep 3000
  instances: 0
"#;

#[test]
fn the_python_marathon_client_drives_pacer() {
    let server = Server::dev();
    // Hollow agents run the tasks, so deployments finish (a running one locks its app).
    let _fleet = HollowFleet::start(&server, 2);
    let manifest = server.write("applied.yaml", APPLIED);
    server.run(&["apply", "-f", &manifest]).success();

    support::marathon_client::run_session(&server, CLIENT_SESSION, "marathon client session: ok");

    // The app the client created is an App for `pacer get`.
    let kept = server
        .run(&["get", "app", "kept", "-n", "e2e", "-o", "json"])
        .success()
        .json();
    assert_eq!(kept["spec"]["cmd"], "sleep 4000", "{kept:#}");
    let table = server.run(&["get", "apps", "-n", "e2e"]).success().stdout;
    assert!(
        table.contains("kept") && table.contains("applied"),
        "{table}"
    );
    assert!(
        !table.contains("sleeper"),
        "the deleted app is gone: {table}"
    );
    server.assert_no_unexpected_errors(&[]);
}

/// Marathon's Docker example (the registry app of its group example) is accepted unchanged
/// through `/v2/apps` and fails at launch — not at validation — with a clear reason, since no
/// image can be pulled here; Marathon's `lastTaskFailure` says why.
#[test]
fn a_docker_app_whose_image_is_missing_fails_at_launch_not_at_validation() {
    let server = Server::dev_with_agent();
    let path = support::repo_root().join("apiserver/tests/fixtures/marathon-examples/group.json");
    let group: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let registry = group["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|tools| tools["groups"].as_array().into_iter().flatten())
        .flat_map(|sub| sub["apps"].as_array().into_iter().flatten())
        .find(|app| app["id"] == "/tools/docker/registry")
        .expect("the registry app of Marathon's group example")
        .clone();
    let created = server.http("POST", "/v2/apps", Some(&registry));
    assert_eq!(created.code, 201, "POST /v2/apps: {}", created.body);

    let failure = server.eventually("the launch to fail for the missing image", || {
        let app = server.get_json("/v2/apps/tools/docker/registry");
        let failure = app["app"]["lastTaskFailure"].clone();
        failure.is_object().then_some(failure)
    });
    assert_eq!(failure["state"], "TASK_FAILED", "{failure:#}");
    let message = failure["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("registry") && message.contains("not present"),
        "the reason names the image: {failure:#}"
    );
    // Failed launches back off, as Marathon's do; nothing else went wrong.
    let deleted = server.http("DELETE", "/v2/apps/tools/docker/registry?force=true", None);
    assert_eq!(deleted.code, 200, "{}", deleted.body);
    server.assert_no_unexpected_errors(&[]);
}
