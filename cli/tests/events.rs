//! End to end: Marathon's event bus on `pacer dev` with hollow agents — `/v2/events` as
//! Server-Sent Events (a create seen as `api_post_event`, `deployment_info`,
//! `status_update_event` TASK_RUNNING, `deployment_success` in that order; `event_type`
//! filters; `plan-format=light`), `/v2/eventSubscriptions` callbacks received by a listener in
//! the test (retried after it first answers 500), the real Python Marathon client consuming the
//! stream, and `pacer get events -w`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{HollowFleet, Server};

/// How long a test waits for one event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(90);

/// One `GET /v2/events…` stream, read on a background thread into `(eventType, data)` pairs.
struct EventStream {
    events: mpsc::Receiver<(String, Value)>,
    stream: TcpStream,
    /// Everything received so far, for failure messages.
    seen: Vec<(String, Value)>,
}

impl EventStream {
    /// Opens `path` with `Accept: text/event-stream` (HTTP/1.0, so the body is the raw stream
    /// until the server closes it) and returns once the head is in.
    fn open(server: &Server, path: &str) -> Self {
        let mut stream = TcpStream::connect(&server.address).unwrap();
        stream
            .write_all(
                format!(
                    "GET {path} HTTP/1.0\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
                    server.address
                )
                .as_bytes(),
            )
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "GET {path}: {status}");
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{head}"
        );
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            let mut event_type = String::new();
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if let Some(name) = line.strip_prefix("event:") {
                    event_type = name.trim().to_owned();
                } else if let Some(data) = line.strip_prefix("data:") {
                    let data: Value = serde_json::from_str(data.trim())
                        .unwrap_or_else(|error| panic!("data line {data:?}: {error}"));
                    if sender.send((event_type.clone(), data)).is_err() {
                        return;
                    }
                }
            }
        });
        Self {
            events,
            stream,
            seen: Vec::new(),
        }
    }

    /// The next event, failing after [`EVENT_TIMEOUT`].
    #[track_caller]
    fn next(&mut self) -> (String, Value) {
        let event = self.events.recv_timeout(EVENT_TIMEOUT).unwrap_or_else(|_| {
            panic!("no event within {EVENT_TIMEOUT:?}; seen: {:#?}", self.seen)
        });
        self.seen.push(event.clone());
        event
    }

    /// Reads events until one satisfies `done`; returns every event read, that one included.
    #[track_caller]
    fn until(&mut self, done: impl Fn(&str, &Value) -> bool) -> Vec<(String, Value)> {
        let mut read = Vec::new();
        loop {
            let event = self.next();
            let stop = done(&event.0, &event.1);
            read.push(event);
            if stop {
                return read;
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

fn create_app(server: &Server, id: &str) {
    let response = server.http(
        "POST",
        "/v2/apps",
        Some(&json!({"id": id, "cmd": "sleep 1000", "instances": 1, "cpus": 0.1, "mem": 32})),
    );
    assert_eq!(response.code, 201, "POST /v2/apps: {}", response.body);
}

/// Whether `event` is the `deployment_success` of a plan touching `app`.
fn deployed(event_type: &str, data: &Value, app: &str) -> bool {
    event_type == "deployment_success"
        && data["plan"]["steps"].as_array().is_some_and(|steps| {
            steps
                .iter()
                .flat_map(|step| step["actions"].as_array().cloned().unwrap_or_default())
                .any(|action| action["app"] == app)
        })
}

fn sorted_keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[test]
fn the_event_stream_shows_a_create_in_order_and_filters() {
    let server = Server::dev();
    let _fleet = HollowFleet::start(&server, 1);
    // Marathon answers 406 to a client that does not accept an event stream.
    assert_eq!(server.http("GET", "/v2/events", None).code, 406);

    let mut all = EventStream::open(&server, "/v2/events");
    let (first, attached) = all.next();
    assert_eq!(first, "event_stream_attached", "{attached}");
    assert_eq!(
        sorted_keys(&attached),
        ["eventType", "remoteAddress", "timestamp"]
    );
    let mut filtered = EventStream::open(
        &server,
        "/v2/events?event_type=api_post_event&event_type=deployment_success",
    );
    let mut light = EventStream::open(
        &server,
        "/v2/events?event_type=deployment_info&plan-format=light",
    );

    create_app(&server, "/e2e/web");
    let events = all.until(|event_type, data| deployed(event_type, data, "/e2e/web"));
    let position = |wanted: &dyn Fn(&str, &Value) -> bool| {
        events
            .iter()
            .position(|(event_type, data)| wanted(event_type, data))
            .unwrap_or_else(|| panic!("missing from {events:#?}"))
    };
    let post = position(&|t, d| t == "api_post_event" && d["appDefinition"]["id"] == "/e2e/web");
    let info = position(&|t, _| t == "deployment_info");
    let running = position(&|t, d| {
        t == "status_update_event" && d["appId"] == "/e2e/web" && d["taskStatus"] == "TASK_RUNNING"
    });
    let success = events.len() - 1;
    assert!(
        post < info && info < running && running < success,
        "out of order: {events:#?}"
    );
    // Payloads carry exactly Marathon's keys, and the SSE event name is the eventType.
    for (event_type, data) in &events {
        assert_eq!(&data["eventType"], event_type.as_str());
    }
    assert_eq!(
        sorted_keys(&events[running].1),
        [
            "appId",
            "eventType",
            "host",
            "ipAddresses",
            "message",
            "ports",
            "slaveId",
            "taskId",
            "taskStatus",
            "timestamp",
            "version"
        ]
    );
    assert_eq!(
        sorted_keys(&events[post].1),
        ["appDefinition", "clientIp", "eventType", "timestamp", "uri"]
    );
    assert_eq!(
        sorted_keys(&events[info].1),
        ["currentStep", "eventType", "plan", "timestamp"]
    );
    assert_eq!(
        sorted_keys(&events[info].1["plan"]),
        ["id", "original", "steps", "target", "version"]
    );
    assert_eq!(
        sorted_keys(&events[success].1),
        ["eventType", "id", "plan", "timestamp"]
    );
    let task = events[running].1["taskId"].as_str().unwrap();
    let tasks = server.get_json("/v2/apps/e2e/web/tasks");
    assert_eq!(tasks["tasks"][0]["id"], task, "{tasks}");

    // Filtered: only the asked types, in order.
    let filtered_events = filtered.until(|event_type, data| deployed(event_type, data, "/e2e/web"));
    let types: Vec<&str> = filtered_events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        ["api_post_event", "deployment_success"],
        "{filtered_events:#?}"
    );
    // Light plans: no original and target groups.
    let (event_type, info) = light.next();
    assert_eq!(event_type, "deployment_info");
    assert_eq!(sorted_keys(&info["plan"]), ["id", "steps", "version"]);

    // Deleting the app: its termination is an event too.
    assert_eq!(server.http("DELETE", "/v2/apps/e2e/web", None).code, 200);
    all.until(|event_type, data| {
        event_type == "app_terminated_event" && data["appId"] == "/e2e/web"
    });
    server.assert_no_unexpected_errors(&[]);
}

/// A callback receiver: answers 500 to its first request and 200 afterwards, recording each
/// request's JSON body and the status it answered.
struct Callback {
    url: String,
    received: Arc<Mutex<Vec<(u16, Value)>>>,
}

impl Callback {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/callback", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        std::thread::spawn(move || {
            for connection in listener.incoming() {
                let Ok(connection) = connection else { return };
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve_callback(connection, &log));
            }
        });
        Self { url, received }
    }

    fn received(&self) -> Vec<(u16, Value)> {
        self.received.lock().unwrap().clone()
    }
}

/// Serves the requests of one keep-alive connection.
fn serve_callback(connection: TcpStream, log: &Mutex<Vec<(u16, Value)>>) {
    let mut reader = BufReader::new(connection.try_clone().unwrap());
    let mut writer = connection;
    loop {
        let mut length = 0;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        let code = {
            let mut log = log.lock().unwrap();
            let code = if log.is_empty() { 500 } else { 200 };
            log.push((code, body));
            code
        };
        let reason = if code == 200 {
            "OK"
        } else {
            "Internal Server Error"
        };
        if writer
            .write_all(format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\n\r\n").as_bytes())
            .is_err()
        {
            return;
        }
    }
}

#[test]
fn callback_subscriptions_are_delivered_with_retries() {
    let server = Server::dev();
    let _fleet = HollowFleet::start(&server, 1);
    let callback = Callback::start();
    let query = format!(
        "callbackUrl={}",
        callback.url.replace(':', "%3A").replace('/', "%2F")
    );

    let answer = server.http("POST", &format!("/v2/eventSubscriptions?{query}"), None);
    assert_eq!(answer.code, 200, "{}", answer.body);
    let subscribed = answer.json();
    assert_eq!(subscribed["eventType"], "subscribe_event");
    assert_eq!(subscribed["callbackUrl"], callback.url.as_str());
    // Subscribing twice is one subscription.
    assert_eq!(
        server
            .http("POST", &format!("/v2/eventSubscriptions?{query}"), None)
            .code,
        200
    );
    assert_eq!(
        server.get_json("/v2/eventSubscriptions"),
        json!({"callbackUrls": [callback.url]})
    );
    assert_eq!(
        server
            .http(
                "POST",
                "/v2/eventSubscriptions?callbackUrl=ftp%3A%2F%2Fx",
                None
            )
            .code,
        400
    );

    // Delivery starts asynchronously (the delivering server picks a new subscription up):
    // subscribing again publishes a subscribe_event; once one arrives, delivery is live.
    server.eventually("a first delivery", || {
        let answer = server.http("POST", &format!("/v2/eventSubscriptions?{query}"), None);
        assert_eq!(answer.code, 200, "{}", answer.body);
        std::thread::sleep(Duration::from_millis(300));
        (!callback.received().is_empty()).then_some(())
    });
    create_app(&server, "/e2e/hooked");
    let received = server.eventually("the api_post_event at the callback", || {
        let received = callback.received();
        received
            .iter()
            .any(|(code, body)| {
                *code == 200
                    && body["eventType"] == "api_post_event"
                    && body["appDefinition"]["id"] == "/e2e/hooked"
            })
            .then_some(received)
    });
    // The first delivery was answered 500 and retried with the same event.
    assert_eq!(received[0].0, 500, "{received:#?}");
    assert_eq!(received[1].0, 200, "{received:#?}");
    assert_eq!(received[0].1, received[1].1, "{received:#?}");
    server.eventually("deployment_success at the callback", || {
        callback
            .received()
            .iter()
            .any(|(_, body)| {
                deployed(
                    body["eventType"].as_str().unwrap_or(""),
                    body,
                    "/e2e/hooked",
                )
            })
            .then_some(())
    });

    let answer = server.http("DELETE", &format!("/v2/eventSubscriptions?{query}"), None);
    assert_eq!(answer.code, 200, "{}", answer.body);
    assert_eq!(answer.json()["eventType"], "unsubscribe_event");
    assert_eq!(
        server.get_json("/v2/eventSubscriptions"),
        json!({"callbackUrls": []})
    );
    server.assert_no_unexpected_errors(&[]);
}

/// The Python client reads the whole unfiltered stream of a create (every event type and
/// payload must parse: it stops on an unknown type) and a filtered one.
const CLIENT_SESSION: &str = r#"
import os, sys, threading
from marathon import MarathonClient
from marathon.models import MarathonApp

client = MarathonClient([os.environ["PACER_URL"]], timeout=30)
attached = {"all": threading.Event(), "filtered": threading.Event()}
seen = {"all": [], "filtered": []}
errors = []

def consume(name, types):
    try:
        for event in client.event_stream(event_types=types):
            seen[name].append(event.event_type)
            if event.event_type == "event_stream_attached":
                attached[name].set()
            if event.event_type == "deployment_success":
                return
    except Exception as error:
        errors.append(f"{name}: {error!r}")
        attached[name].set()

threads = [
    threading.Thread(target=consume, args=("all", None), daemon=True),
    threading.Thread(target=consume, args=("filtered", ["event_stream_attached", "status_update_event", "deployment_success"]), daemon=True),
]
for thread in threads:
    thread.start()
for event in attached.values():
    assert event.wait(30), "no event_stream_attached"
assert not errors, errors

client.create_app("/e2e/py", MarathonApp(cmd="sleep 1000", instances=1, cpus=0.1, mem=32))
for thread in threads:
    thread.join(90)
    assert not thread.is_alive(), f"no deployment_success; seen {seen}"
assert not errors, errors
all_seen = seen["all"]
for wanted in ["api_post_event", "deployment_info", "status_update_event", "deployment_success"]:
    assert wanted in all_seen, (wanted, all_seen)
assert all_seen.index("api_post_event") < all_seen.index("deployment_info") < all_seen.index("deployment_success"), all_seen
assert set(seen["filtered"]) == {"event_stream_attached", "status_update_event", "deployment_success"}, seen["filtered"]
print("events seen:", all_seen)
print("marathon event stream: ok")
"#;

#[test]
fn the_python_marathon_client_consumes_the_event_stream() {
    let server = Server::dev();
    let _fleet = HollowFleet::start(&server, 1);
    let output =
        support::marathon_client::run_session(&server, CLIENT_SESSION, "marathon event stream: ok");
    eprintln!("{output}");
    server.assert_no_unexpected_errors(&[]);
}

#[test]
fn get_events_watch_prints_new_events() {
    let server = Server::dev();
    let mut child = server
        .command(&["get", "events", "-A", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    // Give the watch a moment to start, then record an Event; it must show up in the output.
    let started = Instant::now();
    let mut printed = Vec::new();
    let mut created = false;
    while started.elapsed() < EVENT_TIMEOUT {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
            printed.push(line);
        } else if !created {
            let event = json!({
                "apiVersion": "pacer.dev/v1", "kind": "Event",
                "metadata": {"name": "web.watched", "namespace": "e2e"},
                "involvedObject": {"kind": "App", "name": "web", "namespace": "e2e"},
                "reason": "Watched", "message": "seen by get -w", "type": "Normal", "count": 1
            });
            server.create("/apis/pacer.dev/v1/namespaces/e2e/events", &event);
            created = true;
        }
        if printed.iter().any(|line| line.contains("Watched")) {
            break;
        }
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert!(
        printed
            .iter()
            .any(|line| line.contains("Watched") && line.contains("e2e")),
        "`pacer get events -A -w` printed:\n{}\nstderr:\n{}",
        printed.join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Issue 8, point 5: an app whose HTTP health check starts failing is killed and replaced, and
/// the stream shows its failed checks, the kill, then the replacement running.
#[test]
fn a_failing_health_check_shows_on_the_stream_until_the_replacement_runs() {
    let server = Server::dev_with_agent();
    let mut stream = EventStream::open(
        &server,
        "/v2/events?event_type=failed_health_check_event&event_type=unhealthy_instance_kill_event\
         &event_type=status_update_event&event_type=health_status_changed_event",
    );
    // Serves for 5 s, then its port closes while the process lives on.
    let closes = "timeout 5 python3 -m http.server $PORT0 --bind 127.0.0.1; exec sleep 600";
    let app = json!({
        "id": "/flaky", "cmd": closes, "instances": 1, "cpus": 0.1, "mem": 64,
        "portDefinitions": [{"port": 0, "name": "http"}],
        "healthChecks": [{
            "protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 60,
            "intervalSeconds": 1, "timeoutSeconds": 5, "delaySeconds": 0,
            "maxConsecutiveFailures": 3
        }]
    });
    let response = server.http("POST", "/v2/apps", Some(&app));
    assert_eq!(response.code, 201, "{}", response.body);

    let (_, first) = stream
        .until(|event_type, data| {
            event_type == "status_update_event" && data["taskStatus"] == "TASK_RUNNING"
        })
        .pop()
        .unwrap();
    let task = first["taskId"].as_str().unwrap().to_owned();
    let healthy = stream.until(|event_type, data| {
        event_type == "health_status_changed_event" && data["instanceId"] == task.as_str()
    });
    assert_eq!(healthy.last().unwrap().1["alive"], true, "{healthy:#?}");
    let before_kill = stream.until(|event_type, data| {
        event_type == "unhealthy_instance_kill_event" && data["taskId"] == task.as_str()
    });
    let failed: Vec<&Value> = before_kill
        .iter()
        .filter(|(event_type, _)| event_type == "failed_health_check_event")
        .map(|(_, data)| data)
        .collect();
    assert!(
        !failed.is_empty(),
        "no failed_health_check_event: {before_kill:#?}"
    );
    assert_eq!(failed[0]["instanceId"], task.as_str());
    assert_eq!(failed[0]["appId"], "/flaky");
    assert_eq!(failed[0]["healthCheck"]["path"], "/");
    let kill = &before_kill.last().unwrap().1;
    assert_eq!(kill["appId"], "/flaky");
    assert_eq!(
        sorted_keys(kill),
        [
            "appId",
            "eventType",
            "host",
            "instanceId",
            "reason",
            "slaveId",
            "taskId",
            "timestamp",
            "version"
        ]
    );
    stream.until(|event_type, data| {
        event_type == "status_update_event"
            && data["appId"] == "/flaky"
            && data["taskStatus"] == "TASK_RUNNING"
            && data["taskId"] != task.as_str()
    });
    server.assert_no_unexpected_errors(&[]);
}
