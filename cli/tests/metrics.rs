//! End to end: `/metrics` of a real `pacer dev` with `pacer agent hollow` nodes. The scrape
//! passes `promtool check metrics` (Debian's `prometheus` package, installed by
//! `hack/install-deps.sh`), and its families show what the test did: API requests by verb,
//! resource and code (kube and Marathon routes), an open watch while it is open, every
//! controller leading, their rounds, the instances rolled out (by phase, none pending, each
//! placement counted) and store latencies. A second `pacer dev` pushes the same samples to a
//! StatsD (UDP) and a Graphite (TCP) listener opened by the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::json;
use support::metrics::{get_metrics, promtool_check, samples, scrape, value};
use support::{HollowFleet, Server, Watch};

const APPS: &str = "/apis/pacer.dev/v1/namespaces/default/apps";

/// Every controller `pacer dev` runs under an election.
const CONTROLLERS: [&str; 4] = ["placement", "deployment", "health", "node-lifecycle"];

#[test]
fn metrics_pass_promtool_and_show_what_the_control_plane_did() {
    let server = Server::dev();
    let _fleet = HollowFleet::start(&server, 2);
    let list_apps = r#"pacer_apiserver_requests_total{verb="LIST",resource="apps",code="200"}"#;
    let before = scrape(&server);
    let listed_before = value(&before, list_apps).unwrap_or(0.0);

    server.create(
        APPS,
        &json!({
            "apiVersion": "pacer.dev/v1",
            "kind": "App",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"cmd": "sleep 1000", "instances": 3, "cpus": 0.1, "mem": 16,
                     "portDefinitions": [],
                     // Hollow agents report a COMMAND check passing.
                     "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]}
        }),
    );
    server.rolled_out("default", "web");
    for _ in 0..5 {
        assert_eq!(server.http("GET", APPS, None).code, 200);
    }
    for _ in 0..2 {
        assert_eq!(server.http("GET", "/v2/apps", None).code, 200);
    }
    assert_eq!(server.http("GET", &format!("{APPS}/nope"), None).code, 404);
    let watch = Watch::start(&server.address, &format!("{APPS}?watch=true"));
    assert_eq!(watch.code, 200);
    let open_watches = r#"pacer_apiserver_open_watches{resource="apps"}"#;

    let text = server.eventually(
        "/metrics shows the rollout, the requests and the open watch",
        || {
            let text = scrape(&server);
            let running = value(&text, r#"pacer_instances{phase="Running"}"#)?;
            let placed = value(&text, "pacer_placements_total")?;
            let pending = value(&text, "pacer_instances_pending")?;
            let watching = value(&text, open_watches)?;
            let healthy = value(&text, r#"pacer_instance_health{status="healthy"}"#)?;
            (running >= 3.0 && placed >= 3.0 && pending == 0.0 && watching >= 1.0 && healthy >= 3.0)
                .then_some(text)
        },
    );
    let report = promtool_check(&text);

    // API requests by verb, resource and code; latency histograms beside them.
    assert!(
        value(&text, list_apps).unwrap() >= listed_before + 5.0,
        "{text}"
    );
    let created = r#"pacer_apiserver_requests_total{verb="POST",resource="apps",code="201"}"#;
    assert_eq!(value(&text, created), Some(1.0), "{text}");
    let marathon = r#"pacer_apiserver_requests_total{verb="GET",resource="v2/apps",code="200"}"#;
    assert!(value(&text, marathon).unwrap() >= 2.0, "{text}");
    let missing = r#"pacer_apiserver_requests_total{verb="GET",resource="apps",code="404"}"#;
    assert_eq!(value(&text, missing), Some(1.0), "{text}");
    let listed =
        r#"pacer_apiserver_request_duration_seconds_count{verb="LIST",resource="apps",code="200"}"#;
    assert!(value(&text, listed).unwrap() >= 5.0, "{text}");
    let watches = r#"pacer_apiserver_requests_total{verb="WATCH",resource="instances",code="200"}"#;
    assert!(
        value(&text, watches).unwrap() >= 1.0,
        "the hollow fleet watches its instances: {text}"
    );

    // Each controller leads in this single replica, has run rounds and never failed.
    for controller in CONTROLLERS {
        let labels = format!("{{controller=\"{controller}\"}}");
        assert_eq!(
            value(&text, &format!("pacer_controller_leader{labels}")),
            Some(1.0),
            "{controller} leads: {text}"
        );
        assert!(
            value(
                &text,
                &format!("pacer_controller_reconcile_duration_seconds_count{labels}")
            )
            .unwrap()
                >= 1.0,
            "{controller} ran rounds: {text}"
        );
        assert!(value(&text, &format!("pacer_controller_queue_depth{labels}")).is_some());
        assert_eq!(
            value(&text, &format!("pacer_controller_errors_total{labels}")),
            Some(0.0),
            "{text}"
        );
    }
    for (labels, leading) in samples(&text, "pacer_controller_leader") {
        assert_eq!(leading, 1.0, "every controller leads: {labels}");
    }

    // Instances by phase (every phase reported), health, store latencies.
    assert_eq!(samples(&text, "pacer_instances").len(), 10, "{text}");
    assert_eq!(samples(&text, "pacer_instance_health").len(), 2, "{text}");
    let passing = value(&text, r#"pacer_health_checks{result="passing"}"#).unwrap();
    assert!(passing >= 3.0, "{text}");
    assert_eq!(
        value(&text, r#"pacer_health_checks{result="failing"}"#),
        Some(0.0),
        "{text}"
    );
    assert!(value(&text, "pacer_health_check_failures_total").is_some());
    for operation in ["txn", "list", "watch", "lease_keep_alive"] {
        let series =
            format!("pacer_store_request_duration_seconds_count{{operation=\"{operation}\"}}");
        assert!(value(&text, &series).unwrap() >= 1.0, "{series}: {text}");
    }

    // The watch counts as open only while it is.
    drop(watch);
    server.eventually("the closed watch is no longer counted", || {
        (value(&scrape(&server), open_watches)? == 0.0).then_some(())
    });

    // OpenMetrics on request (Prometheus asks for it first), same families.
    let (content_type, open) = get_metrics(
        &server.address,
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    );
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(
        open.contains("# TYPE pacer_apiserver_requests counter\n"),
        "{open}"
    );

    // Marathon clients (`Accept: application/json`) get Marathon's Dropwizard JSON registry.
    let marathon = server.http("GET", "/metrics", None);
    assert_eq!(marathon.code, 200, "{}", marathon.body);
    let registry = marathon.json();
    assert_eq!(registry["version"], "4.0.0", "{registry}");
    assert_eq!(
        registry["gauges"]["pacer.controller_leader.controller.placement"]["value"], 1.0,
        "{registry}"
    );
    assert!(
        registry["counters"]["pacer.apiserver_requests_total.verb.LIST.resource.apps.code.200"]
            ["count"]
            .as_f64()
            .unwrap()
            >= 5.0,
        "{registry}"
    );
    assert!(
        registry["timers"]["pacer.apiserver_request_duration_seconds.verb.LIST.resource.apps.code.200"]
            ["count"]
            .as_f64()
            .unwrap()
            >= 5.0,
        "{registry}"
    );

    eprintln!(
        "promtool check metrics: passed ({} lines) {report}",
        text.lines().count()
    );
    server.assert_no_unexpected_errors(&[]);
}

/// Reads Graphite plaintext lines from the first connection to `listener` into `lines` until
/// `done(lines)` or the deadline.
fn graphite_until(
    listener: &TcpListener,
    deadline: Instant,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    listener.set_nonblocking(true).unwrap();
    let connection = loop {
        match listener.accept() {
            Ok((connection, _)) => break connection,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no Graphite connection");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("accept: {error}"),
        }
    };
    connection.set_nonblocking(false).unwrap();
    connection
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut reader = BufReader::new(connection);
    let mut lines = Vec::new();
    while !done(&lines) {
        assert!(
            Instant::now() < deadline,
            "Graphite got only:\n{}",
            lines.join("\n")
        );
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => panic!("the pusher closed the Graphite connection"),
            Ok(_) => lines.push(line.trim_end().to_owned()),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(error) => panic!("read from the pusher: {error}"),
        }
    }
    lines
}

#[test]
fn metrics_are_pushed_to_statsd_and_graphite() {
    let statsd = UdpSocket::bind("127.0.0.1:0").unwrap();
    statsd
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let graphite = TcpListener::bind("127.0.0.1:0").unwrap();
    let data = tempfile::tempdir().unwrap();
    let statsd_address = statsd.local_addr().unwrap().to_string();
    let graphite_address = graphite.local_addr().unwrap().to_string();
    let server = Server::start(&[
        "dev",
        "--no-agent",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--statsd",
        &statsd_address,
        "--graphite",
        &graphite_address,
        "--metrics-push-interval",
        "200ms",
    ]);
    // Nothing else lists Apps over HTTP in this process: the count is ours alone.
    for _ in 0..3 {
        assert_eq!(server.http("GET", APPS, None).code, 200);
    }
    let listed = "pacer.apiserver_requests_total.verb.LIST.resource.apps.code.200";
    let leader = "pacer.controller_leader.controller.placement";
    let deadline = Instant::now() + Duration::from_secs(60);

    // Graphite: absolute values with a timestamp.
    let lines = graphite_until(&graphite, deadline, |lines| {
        lines
            .iter()
            .any(|line| line.starts_with(&format!("{listed} 3 ")))
            && lines
                .iter()
                .any(|line| line.starts_with(&format!("{leader} 1 ")))
    });
    for line in &lines {
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words.len(), 3, "{line}");
        assert!(words[1].parse::<f64>().is_ok(), "{line}");
        assert!(words[2].parse::<u64>().unwrap() > 1_600_000_000, "{line}");
    }

    // StatsD: gauges, and counters as increases that add up to the counter.
    let mut datagrams = Vec::new();
    let mut buffer = [0u8; 65536];
    let listed_sum = |datagrams: &[String]| -> f64 {
        datagrams
            .iter()
            .flat_map(|datagram| datagram.lines())
            .filter_map(|line| line.strip_prefix(&format!("{listed}:")))
            .map(|rest| rest.strip_suffix("|c").unwrap().parse::<f64>().unwrap())
            .sum()
    };
    while !(listed_sum(&datagrams) == 3.0
        && datagrams
            .iter()
            .any(|datagram| datagram.lines().any(|line| line == format!("{leader}:1|g"))))
    {
        assert!(
            Instant::now() < deadline,
            "StatsD got only:\n{}",
            datagrams.join("\n")
        );
        match statsd.recv_from(&mut buffer) {
            Ok((length, _)) => {
                assert!(length <= 1432, "datagram of {length} bytes");
                datagrams.push(String::from_utf8(buffer[..length].to_vec()).unwrap());
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(error) => panic!("recv: {error}"),
        }
    }
    for line in datagrams.iter().flat_map(|datagram| datagram.lines()) {
        let (path, rest) = line.split_once(':').unwrap();
        assert!(path.starts_with("pacer."), "{line}");
        assert!(rest.ends_with("|c") || rest.ends_with("|g"), "{line}");
    }
    // Later pushes (several in a second) add nothing for requests that were not made again.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        if let Ok((length, _)) = statsd.recv_from(&mut buffer) {
            datagrams.push(String::from_utf8(buffer[..length].to_vec()).unwrap());
        }
    }
    assert_eq!(listed_sum(&datagrams), 3.0, "{}", datagrams.join("\n"));
    server.assert_no_unexpected_errors(&[]);
}
