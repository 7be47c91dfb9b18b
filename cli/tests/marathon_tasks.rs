//! End to end: the real Python Marathon client (PyPI `marathon==0.13.0`, installed into
//! `target/python` by `hack/install-python-deps.sh`) against `pacer dev` with hollow agents,
//! on tasks, deployments and the leader: list tasks (all, per app, by status, as text); kill
//! tasks with and without scaling (`kill_task`, `kill_given_tasks`, `kill_tasks`, by host) —
//! replaced without scale, the app smaller with; roll back by deleting a deployment that cannot
//! finish, and stop one with `force`; read the leader and make it abdicate, after which the
//! controllers lead again and deploy. Every call must succeed and parse — the client builds
//! objects from every key it receives and fails on one it does not know.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{HollowFleet, Server};

/// The client session, in Python. Exits non-zero (with a traceback) on the first failure.
const CLIENT_SESSION: &str = r#"
import os, time
import requests
from marathon import MarathonClient
from marathon.exceptions import NotFoundError
from marathon.models import MarathonApp, MarathonTask

URL = os.environ["PACER_URL"]
client = MarathonClient([URL], timeout=30)
APP = "/e2e/killer"
# No node has this much CPU: a deployment that needs it keeps running. (Constraints would do
# too, but this client version cannot serialise them on Python 3.10+.)
TOO_BIG = 1000

def wait(what, check, timeout=120):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            if check():
                return
        except NotFoundError as error:
            last = error
        time.sleep(0.3)
    app = client.get_app(APP, embed_tasks=True)
    raise AssertionError(f"timed out waiting for {what}; last error {last}; app {app.to_json()}")

def settled(count):
    app = client.get_app(APP, embed_tasks=True)
    running = [task for task in app.tasks if task.state == "TASK_RUNNING"]
    return (not app.deployments and app.instances == count and app.tasks_running == count
            and len(app.tasks) == count and len(running) == count)

def task_ids():
    return sorted(task.id for task in client.list_tasks(APP))

def deployment_ids():
    return [deployment.id for deployment in client.list_deployments()]

def deployment_exists(result):
    """The answered deploymentId is the Deployment the controller started (an object)."""
    assert set(result) == {"deploymentId", "version"}, result
    url = f"{URL}/apis/pacer.dev/v1/deployments/{result['deploymentId']}"
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, (result, response.status_code, response.text)

created = client.create_app(APP, MarathonApp(cmd="sleep 1000", instances=3, cpus=0.1, mem=32))
assert created and created.id == APP, created
wait("the first deployment", lambda: settled(3))

# Listing: all tasks, one app's, by status (the client has no status filter: plain HTTP),
# and Marathon's text form.
everything = client.list_tasks()
assert all(isinstance(task, MarathonTask) for task in everything)
mine = [task for task in everything if task.app_id == APP]
assert sorted(task.id for task in mine) == task_ids() and len(mine) == 3, everything
assert all(task.host and task.started_at is not None for task in mine), [t.to_json() for t in mine]
running = requests.get(f"{URL}/v2/tasks", params={"status": "running"}, timeout=30).json()["tasks"]
assert sorted(task["id"] for task in running if task["appId"] == APP) == task_ids(), running
assert requests.get(f"{URL}/v2/tasks", params={"status": "killed"}, timeout=30).json() == {"tasks": []}
text = requests.get(f"{URL}/v2/tasks", headers={"Accept": "text/plain"}, timeout=30)
assert text.headers["content-type"].startswith("text/plain"), text.headers
line = [row for row in text.text.splitlines() if row.startswith("e2e_killer\t")]
assert len(line) == 1 and len(line[0].split("\t")) >= 5, text.text
stats = client.get_app(APP, embed_task_stats=True).task_stats
assert stats.total_summary.stats.counts.running == 3, stats.to_json()

# kill_task without scale: replaced, the app keeps 3.
victim = task_ids()[0]
killed = client.kill_task(APP, victim)
assert isinstance(killed, MarathonTask) and killed.id == victim, killed
wait("a replacement for the killed task", lambda: settled(3) and victim not in task_ids())

# kill_task with scale: the app shrinks to 2 through a deployment.
victim = task_ids()[0]
result = client.kill_task(APP, victim, scale=True)
deployment_exists(result)
wait("the scale-down kill", lambda: settled(2) and victim not in task_ids())

# kill_given_tasks (POST /v2/tasks/delete) without, then with scale.
victim = task_ids()[0]
assert client.kill_given_tasks([victim]) is True
wait("a replacement for the given task", lambda: settled(2) and victim not in task_ids())
victim = task_ids()[0]
assert client.kill_given_tasks([victim], scale=True) is True
wait("the given task's scale-down", lambda: settled(1) and victim not in task_ids())

# kill_tasks: every task of the app, without scale (a list of tasks back), then by host with
# scale (a deployment back).
before = task_ids()
killed = client.kill_tasks(APP)
assert sorted(task.id for task in killed) == before, killed
wait("replacements for every task", lambda: settled(1) and not set(before) & set(task_ids()))
host = client.list_tasks(APP)[0].host
result = client.kill_tasks(APP, scale=True, host=host)
deployment_exists(result)
wait("the app to scale to 0", lambda: settled(0))

# Roll back by deleting a deployment that cannot finish.
client.scale_app(APP, instances=2)
wait("the scale to 2", lambda: settled(2))
stuck = client.update_app(APP, MarathonApp(cmd="sleep 2000", instances=2, cpus=TOO_BIG, mem=32))
stuck_id = stuck["deploymentId"]
assert stuck_id in deployment_ids(), (stuck, deployment_ids())
result = client.delete_deployment(stuck_id)
deployment_exists(result)
assert result["deploymentId"] != stuck_id, result
def rolled_back():
    app = client.get_app(APP)
    return (app.cmd == "sleep 1000" and app.cpus == 0.1 and settled(2)
            and stuck_id not in deployment_ids())
wait("the rollback", rolled_back)
assert client.get_app(APP).version == result["version"], (client.get_app(APP).version, result)

# Stop a deployment without rollback (force): it goes, the app keeps its new definition.
stuck = client.update_app(APP, MarathonApp(cmd="sleep 3000", instances=2, cpus=TOO_BIG, mem=32))
stuck_id = stuck["deploymentId"]
assert stuck_id in deployment_ids(), (stuck, deployment_ids())
assert client.delete_deployment(stuck_id, force=True) == {}
wait("the stopped deployment to go", lambda: stuck_id not in deployment_ids())
assert client.get_app(APP).cmd == "sleep 3000"
try:
    client.delete_deployment(stuck_id)
    raise AssertionError("deleting a gone deployment must be 404")
except NotFoundError:
    pass
client.update_app(APP, MarathonApp(cmd="sleep 1000", instances=1, cpus=0.1, mem=32), force=True)
wait("the app to run again", lambda: settled(1))

# The leader abdicates; the controllers lead again and deploy.
leader = client.get_leader()["leader"]
assert leader, leader
abdicated = time.time()
assert client.delete_leader() == {"message": "Leadership abdicated"}
assert client.get_leader()["leader"] == leader
client.scale_app(APP, instances=2)
wait("a deployment after the abdication", lambda: settled(2))
print(f"abdication to a finished deployment: {time.time() - abdicated:.1f} s")

client.delete_app(APP, force=True)
def gone():
    try:
        client.get_app(APP)
        return False
    except NotFoundError:
        return True
wait("the app to be deleted", gone)
print("marathon tasks session: ok")
"#;

#[test]
fn the_python_marathon_client_kills_tasks_rolls_back_and_abdicates() {
    let server = Server::dev();
    // Hollow agents run the tasks, so deployments finish (a running one locks its app).
    let _fleet = HollowFleet::start(&server, 2);
    let stdout = support::marathon_client::run_session(
        &server,
        CLIENT_SESSION,
        "marathon tasks session: ok",
    );
    print!("{stdout}");
    // The abdication reached the controllers: a leader gave up and leadership came back.
    let log = server.log();
    assert!(log.contains("leadership abdicated"), "{log}");
    assert!(log.contains("leadership lost"), "{log}");
    server.assert_no_unexpected_errors(&[]);
}
