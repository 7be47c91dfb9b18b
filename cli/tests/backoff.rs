//! End to end: launch backoff with `pacer dev` and its in-process agent running real
//! processes. An App whose command exits 1 crash-loops; the deployment controller relaunches it
//! only after a growing delay (`backoffSeconds × backoffFactor^(n−1)`), which `GET /v2/queue`
//! and `pacer get queue` show; only a handful of Instances are ever created (counted on a
//! watch); `pacer queue reset` and `DELETE /v2/queue/{appId}/delay` reset the delay, so the
//! next failure counts from one again. The last failure is served as Marathon's
//! `lastTaskFailure`, and the Python Marathon client parses the queue.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, Watch, WatchItem};

const DEADLINE: Duration = Duration::from_secs(90);
const APP: &str = "/apis/pacer.dev/v1/namespaces/default/apps/crash";
const INSTANCES: &str = "/apis/pacer.dev/v1/namespaces/default/instances";

/// Polls `check` every 200 ms until it returns `Some`, or panics after [`DEADLINE`].
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The App's `status.launchDelay` (Null when none).
fn launch_delay(server: &Server) -> Value {
    let response = server.http("GET", APP, None);
    assert_eq!(response.code, 200, "{}", response.body);
    response.json()["status"]["launchDelay"].clone()
}

fn failures(server: &Server) -> i64 {
    launch_delay(server)["consecutiveFailures"]
        .as_i64()
        .unwrap_or(0)
}

/// Counts the ADDED events of the crash App's Instances on `watch` so far.
fn count_creations(watch: &Watch, created: &mut usize) {
    while let Some(item) = watch.next(Duration::from_millis(10)) {
        match item {
            WatchItem::Event(event) => {
                if event["type"] == "ADDED" && event["object"]["spec"]["app"] == "crash" {
                    *created += 1;
                }
            }
            other => panic!("the instance watch broke: {other:?}"),
        }
    }
}

#[test]
fn a_crash_looping_app_backs_off_and_the_delay_resets() {
    let server = Server::dev_with_agent();
    let watch = Watch::start(&server.address, &format!("{INSTANCES}?watch=1"));
    assert_eq!(watch.code, 200, "{}", watch.head);
    let started = Instant::now();
    let created = server.http(
        "POST",
        "/v2/apps",
        Some(&json!({
            "id": "/crash", "cmd": "exit 1", "instances": 1, "cpus": 0.1, "mem": 32,
            "backoffSeconds": 1, "backoffFactor": 2, "maxLaunchDelaySeconds": 300,
        })),
    );
    assert_eq!(created.code, 201, "{}", created.body);

    // Growing delays, recorded in the App's status: 1, 2, 4, 8 s after 1..4 failures.
    let mut seen: Vec<(i64, f64)> = Vec::new();
    wait_for("four consecutive failures", || {
        let delay = launch_delay(&server);
        let pair = (
            delay["consecutiveFailures"].as_i64().unwrap_or(0),
            delay["delaySeconds"].as_f64().unwrap_or(0.0),
        );
        if pair.0 > 0 && seen.last() != Some(&pair) {
            seen.push(pair);
        }
        (pair.0 >= 4).then_some(())
    });
    for pair in seen.windows(2) {
        assert!(
            pair[1].0 > pair[0].0 && pair[1].1 > pair[0].1,
            "delays grow: {seen:?}"
        );
    }
    for (failures, delay) in &seen {
        let expected = 2f64.powi(i32::try_from(*failures).unwrap() - 1);
        assert!(
            (delay - expected).abs() < 1e-9,
            "{failures} failures: {delay} s, {seen:?}"
        );
    }
    // 1 + 2 + 4 s of delays passed before the fourth launch could fail.
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    // GET /v2/queue shows the App waiting with time left (polled: between a delay's end and
    // the next failure nothing waits).
    let item = wait_for("the app delayed in /v2/queue", || {
        let queue = server.http("GET", "/v2/queue", None);
        assert_eq!(queue.code, 200, "{}", queue.body);
        let queue = queue.json();
        let item = queue["queue"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["app"]["id"] == "/crash")
            .cloned()?;
        (item["delay"]["timeLeftSeconds"].as_i64().unwrap_or(0) > 0).then_some(item)
    });
    assert_eq!(item["count"], 1, "{item}");
    assert_eq!(item["delay"]["overdue"], false, "{item}");
    assert_eq!(item["app"]["cmd"], "exit 1", "{item}");
    assert!(item["since"].as_str().unwrap().ends_with('Z'), "{item}");

    // `pacer get queue`: APP, WAITING, DELAY LEFT, REASON, SINCE.
    let table = wait_for("the app delayed in pacer get queue", || {
        let run = server.run(&["get", "queue"]).success();
        let row = run.stdout.lines().find(|line| line.starts_with("crash"))?;
        row.contains("Failed: exit code 1")
            .then(|| run.stdout.clone())
    });
    let header = table.lines().next().unwrap();
    for column in ["APP", "WAITING", "DELAY LEFT", "REASON", "SINCE"] {
        assert!(header.contains(column), "{table}");
    }

    // The last failure, as Marathon's lastTaskFailure.
    let app = server.http("GET", "/v2/apps/crash?embed=app.lastTaskFailure", None);
    assert_eq!(app.code, 200, "{}", app.body);
    let failure = &app.json()["app"]["lastTaskFailure"];
    assert_eq!(failure["appId"], "/crash", "{failure}");
    assert_eq!(failure["state"], "TASK_FAILED", "{failure}");
    assert!(
        failure["taskId"].as_str().unwrap().starts_with("crash."),
        "{failure}"
    );
    assert!(
        failure["timestamp"].as_str().unwrap().ends_with('Z'),
        "{failure}"
    );

    // The Python Marathon client parses the queue.
    let script = "import os\n\
                  from marathon import MarathonClient\n\
                  items = MarathonClient(os.environ['PACER_URL']).list_queue()\n\
                  print(' '.join(f'{i.app.id}:{i.count}:{i.delay.overdue}' for i in items))\n\
                  print('queue parsed')\n";
    let stdout = support::marathon_client::run_session(&server, script, "queue parsed");
    assert!(stdout.contains("/crash:"), "{stdout}");

    // Only a handful of Instances were ever created: one per delay window.
    let mut creations = 0;
    count_creations(&watch, &mut creations);
    let recorded = failures(&server);
    assert!(
        creations >= 4 && i64::try_from(creations).unwrap() <= recorded + 2,
        "{creations} instances created for {recorded} failures"
    );

    // `pacer queue reset` and `DELETE /v2/queue/{id}/delay` each start counting from one.
    let run = server.run(&["queue", "reset", "crash"]).success();
    assert!(
        run.stdout.contains("app/crash launch delay reset"),
        "{}",
        run.stdout
    );
    wait_for("a failure counted from one after pacer queue reset", || {
        (failures(&server) == 1).then_some(())
    });
    wait_for("three failures again", || {
        (failures(&server) >= 3).then_some(())
    });
    let reset = server.http("DELETE", "/v2/queue/crash/delay", None);
    assert_eq!(reset.code, 204, "{}", reset.body);
    wait_for(
        "a failure counted from one after DELETE /v2/queue/crash/delay",
        || (failures(&server) == 1).then_some(()),
    );
    let missing = server.http("DELETE", "/v2/queue/nothing/delay", None);
    assert_eq!(missing.code, 404, "{}", missing.body);

    // The start deployment never finishes (nothing stays up), so the App is locked: force.
    let deleted = server.http("DELETE", "/v2/apps/crash?force=true", None);
    assert_eq!(deleted.code, 200, "{}", deleted.body);
    wait_for("the app gone", || {
        (server.http("GET", APP, None).code == 404).then_some(())
    });
    server.assert_no_unexpected_errors(&[]);
}
