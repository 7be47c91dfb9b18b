//! End to end: the real Python Marathon client (PyPI `marathon==0.13.0`) drives `/v2/groups`
//! against `pacer dev` with hollow agents: `create_group` (a tree: two apps, a subgroup with
//! one, relative and absolute ids, an app dependency), `list_groups`, `get_group`,
//! `update_group` (one app removed, one changed, as the fetched group is sent back),
//! `scale_group`, the group's versions and `rollback_group`, `delete_group` — every call succeeds and parses, and every deployment runs
//! to the end. Cross-check: the group's apps are Apps for `pacer get apps -n <namespace>`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{HollowFleet, Server};

/// Helpers shared by the two halves of the session.
const PRELUDE: &str = r#"
import collections, collections.abc, os, time
import requests
# marathon 0.13.0 encodes nested objects (a group's apps) with `collections.Iterable`, which
# Python 3.10 removed; without this shim create_group and update_group fail in the client.
collections.Iterable = collections.abc.Iterable
from marathon import MarathonClient
from marathon.exceptions import NotFoundError
from marathon.models import MarathonApp, MarathonGroup

client = MarathonClient([os.environ["PACER_URL"]], timeout=30)
GROUP = "/e2eg/shop"

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
    raise AssertionError(f"timed out waiting for {what}; last error {last}")

def all_apps(group):
    apps = list(group.apps)
    for child in group.groups:
        apps.extend(all_apps(child))
    return apps

def settled(expected):
    """The group's apps are exactly `expected` ({id: instances}), each running and idle."""
    apps = {app.id: app for app in all_apps(client.get_group(GROUP))}
    if sorted(apps) != sorted(expected):
        return False
    return all(apps[id].tasks_running == count and not apps[id].deployments
               for id, count in expected.items())

def result_ok(result):
    assert result["deploymentId"] and result["version"], result
"#;

/// Create, list, get, update and scale.
const FIRST_HALF: &str = r#"
group = MarathonGroup(
    id=GROUP,
    apps=[
        MarathonApp(id="web", cmd="sleep 1000", instances=1, cpus=0.1, mem=32),
        MarathonApp(id="/e2eg/shop/api", cmd="sleep 1000", instances=2, cpus=0.1, mem=32,
                    dependencies=["web"]),
    ],
    groups=[MarathonGroup(id="db", apps=[
        MarathonApp(id="pg", cmd="sleep 1000", instances=1, cpus=0.1, mem=32)])],
)
result_ok(client.create_group(group))
wait("the group to run", lambda: settled(
    {"/e2eg/shop/web": 1, "/e2eg/shop/api": 2, "/e2eg/shop/db/pg": 1}))

created_version = client.get_group(GROUP).version
# One group change is one version, carried by every app it made.
app_versions = {app.id: app.version for app in all_apps(client.get_group(GROUP))}
assert set(app_versions.values()) == {created_version}, (created_version, app_versions)

top = [group.id for group in client.list_groups()]
assert "/e2eg" in top, top
assert [group.id for group in client.list_groups(id="/e2eg")] == ["/e2eg"]
fetched = client.get_group(GROUP)
assert fetched.id == GROUP and fetched.version, fetched.to_json()
assert sorted(app.id for app in fetched.apps) == ["/e2eg/shop/api", "/e2eg/shop/web"]
assert [child.id for child in fetched.groups] == ["/e2eg/shop/db"]
api = [app for app in fetched.apps if app.id == "/e2eg/shop/api"][0]
assert api.dependencies == ["web"], api.dependencies

# Send the fetched group back without api and with a new command for web.
fetched.apps = [app for app in fetched.apps if app.id != "/e2eg/shop/api"]
fetched.apps[0].cmd = "sleep 2000"
result_ok(client.update_group(GROUP, fetched))
wait("the update", lambda: settled({"/e2eg/shop/web": 1, "/e2eg/shop/db/pg": 1})
     and client.get_app("/e2eg/shop/web").cmd == "sleep 2000")

result_ok(client.scale_group(GROUP, 2))
wait("the scale", lambda: settled({"/e2eg/shop/web": 2, "/e2eg/shop/db/pg": 2}))

# The group's versions are its apps' versions; rolling back to the one after the create
# restores web's and pg's definitions then (api, deleted since, does not come back).
versions = requests.get(f"{os.environ['PACER_URL']}/v2/groups{GROUP}/versions", timeout=30).json()
assert created_version in versions and versions == sorted(versions, reverse=True), versions
result_ok(client.rollback_group(GROUP, created_version))
wait("the rollback", lambda: settled({"/e2eg/shop/web": 1, "/e2eg/shop/db/pg": 1})
     and client.get_app("/e2eg/shop/web").cmd == "sleep 1000")
print("groups session 1: ok")
"#;

/// Delete.
const SECOND_HALF: &str = r#"
result_ok(client.delete_group(GROUP))
def gone():
    try:
        client.get_group(GROUP)
        return False
    except NotFoundError:
        return not [task for task in client.list_tasks() if task.app_id.startswith(GROUP + "/")]
wait("the group to be deleted", gone)
assert "/e2eg" not in [group.id for group in client.list_groups()]
print("groups session 2: ok")
"#;

#[test]
fn the_python_marathon_client_drives_groups() {
    let server = Server::dev();
    // Hollow agents run the tasks, so deployments finish (a running one locks its apps).
    let _fleet = HollowFleet::start(&server, 2);

    let first = format!("{PRELUDE}{FIRST_HALF}");
    support::marathon_client::run_session(&server, &first, "groups session 1: ok");

    // The group's apps are Apps of namespace `e2eg`, named by the id mapping.
    let apps = server
        .run(&["get", "apps", "-n", "e2eg", "-o", "json"])
        .success()
        .json();
    let mut names: Vec<(String, i64)> = apps["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|app| {
            (
                app["metadata"]["name"].as_str().unwrap().to_owned(),
                app["spec"]["instances"].as_i64().unwrap(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [("shop.db.pg".to_owned(), 1), ("shop.web".to_owned(), 1)],
        "{apps:#}"
    );
    let table = server.run(&["get", "apps", "-n", "e2eg"]).success().stdout;
    assert!(
        table.contains("shop.web") && table.contains("shop.db.pg"),
        "{table}"
    );

    let second = format!("{PRELUDE}{SECOND_HALF}");
    support::marathon_client::run_session(&server, &second, "groups session 2: ok");
    let table = server.run(&["get", "apps", "-n", "e2eg"]).success();
    assert!(!table.stdout.contains("shop."), "{}", table.stdout);
    server.assert_no_unexpected_errors(&[]);
}
