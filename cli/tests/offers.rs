//! End to end, the offer broker over HTTP against the real `pacer dev` and a fleet of hollow
//! agents: a scheduler registers a `Framework`, receives `Offer`s of the nodes' free
//! resources, accepts one by writing its `/status` (`phase: Accepted` + `launch`) at its
//! `resourceVersion` — the broker creates the Instance bound to the offered node and the
//! agent runs it — and a second accept of the same offer version is refused with 409; a
//! decline filters the node from the framework; `pacer get offers` and `pacer get frameworks`
//! show them, and `/metrics` shows the role's dominant share and allocation and the offers
//! counted (a scrape that passes `promtool check metrics`).

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::{HollowFleet, Server, metrics};

const OFFERS: &str = "/apis/pacer.dev/v1/offers";

fn offers_for(server: &Server, framework: &str) -> Vec<Value> {
    server
        .list(OFFERS)
        .into_iter()
        .filter(|offer| offer["spec"]["framework"] == framework)
        .collect()
}

#[test]
fn a_framework_accepts_and_declines_offers_over_http() {
    let server = Server::dev();
    let _fleet = HollowFleet::start(&server, 3);
    server.eventually("3 hollow nodes", || {
        (server.list("/apis/pacer.dev/v1/nodes").len() == 3).then_some(())
    });
    server.create(
        "/apis/pacer.dev/v1/frameworks",
        &json!({"apiVersion": "pacer.dev/v1", "kind": "Framework",
                "metadata": {"name": "batch-runner"},
                "spec": {"role": "batch", "offerTimeoutSeconds": 120}}),
    );
    let offers = server.eventually("an offer per node", || {
        let offers = offers_for(&server, "batch-runner");
        (offers.len() == 3).then_some(offers)
    });

    // Accept the first offer: one job, launched on its node.
    let mut accepted = offers[0].clone();
    let node = accepted["spec"]["nodeName"].as_str().unwrap().to_owned();
    let name = accepted["metadata"]["name"].as_str().unwrap().to_owned();
    accepted["status"] = json!({
        "phase": "Accepted", "answeredBy": "batch-runner",
        "launch": [{"namespace": "default", "name": "job-1",
                    "template": {"cmd": "sleep 3600", "cpus": 0.5, "mem": 64,
                                 "portDefinitions": [{"port": 0}]}}],
    });
    let response = server.http("PUT", &format!("{OFFERS}/{name}/status"), Some(&accepted));
    assert_eq!(response.code, 200, "accept: {}", response.body);
    let instance = server.eventually("job-1 running on the offered node", || {
        server
            .get_if_found("/apis/pacer.dev/v1/namespaces/default/instances/job-1")
            .filter(|instance| instance["status"]["phase"] == "Running")
    });
    assert_eq!(instance["spec"]["nodeName"], node.as_str());
    assert_eq!(instance["spec"]["role"], "batch");
    assert_eq!(
        instance["metadata"]["labels"]["pacer.dev/framework"],
        "batch-runner"
    );
    assert_eq!(instance["spec"]["hostPorts"].as_array().unwrap().len(), 1);

    // /metrics: the role's share and allocation (job-1 plus the open offers), the accept
    // counted, and the scrape still passes promtool.
    let text = server.eventually("the accept in /metrics", || {
        let text = metrics::scrape(&server);
        (metrics::value(&text, "pacer_offers_accepted_total") >= Some(1.0)).then_some(text)
    });
    let share = metrics::value(&text, r#"pacer_offer_role_dominant_share{role="batch"}"#)
        .unwrap_or_else(|| panic!("no dominant share of role batch:\n{text}"));
    assert!(share > 0.0 && share <= 1.0, "{share}");
    let cpus = metrics::value(
        &text,
        r#"pacer_offer_role_allocated{role="batch",resource="cpus"}"#,
    )
    .unwrap_or_else(|| panic!("no cpus allocated to role batch:\n{text}"));
    assert!(cpus >= 0.5, "role batch holds {cpus} cpus, job-1 alone 0.5");
    assert!(
        metrics::value(
            &text,
            r#"pacer_offer_role_allocated{role="batch",resource="mem"}"#
        )
        .is_some_and(|mem| mem >= 64.0),
        "{text}"
    );
    assert!(
        metrics::value(&text, "pacer_offers_open").is_some_and(|open| open >= 1.0),
        "{text}"
    );
    assert!(
        metrics::value(&text, "pacer_offers_declined_total").is_some(),
        "{text}"
    );
    assert!(
        metrics::value(&text, "pacer_offers_rescinded_total").is_some(),
        "{text}"
    );
    metrics::promtool_check(&text);

    // The same offer version again (a second scheduler that read it): 409, nothing launched.
    let mut again = accepted.clone();
    again["status"]["launch"][0]["name"] = json!("job-2");
    let response = server.http("PUT", &format!("{OFFERS}/{name}/status"), Some(&again));
    assert!(
        matches!(response.code, 404 | 409),
        "a second accept of a consumed offer: {} {}",
        response.code,
        response.body
    );
    assert!(
        server
            .get_if_found("/apis/pacer.dev/v1/namespaces/default/instances/job-2")
            .is_none()
    );

    // Decline another node for a minute: its offer goes, and the framework's status filters it.
    let mut declined = offers[1].clone();
    let declined_node = declined["spec"]["nodeName"].as_str().unwrap().to_owned();
    let declined_name = declined["metadata"]["name"].as_str().unwrap().to_owned();
    declined["status"] = json!({"phase": "Declined", "refuseSeconds": 60});
    let response = server.http(
        "PUT",
        &format!("{OFFERS}/{declined_name}/status"),
        Some(&declined),
    );
    assert_eq!(response.code, 200, "decline: {}", response.body);
    let status = server.eventually("the decline filter in the framework's status", || {
        let framework = server.get_json("/apis/pacer.dev/v1/frameworks/batch-runner");
        let filtered = framework["status"]["filters"]
            .as_array()
            .is_some_and(|filters| {
                filters
                    .iter()
                    .any(|filter| filter["nodeName"] == declined_node.as_str())
            });
        filtered.then(|| framework["status"].clone())
    });
    assert!(status["roleAllocated"]["cpus"].as_f64().unwrap() > 0.0);
    // The accepted node is offered again (minus the job); the declined one is not.
    let offers = server.eventually("the accepted node offered again", || {
        let offers = offers_for(&server, "batch-runner");
        offers
            .iter()
            .any(|offer| offer["spec"]["nodeName"] == node.as_str())
            .then_some(offers)
    });
    assert!(
        offers
            .iter()
            .all(|offer| offer["spec"]["nodeName"] != declined_node.as_str())
    );

    let table = server.run(&["get", "offers"]).success();
    assert!(table.stdout.contains(&node), "{}", table.stdout);
    let table = server.run(&["get", "frameworks"]).success();
    let row = table
        .stdout
        .lines()
        .find(|line| line.starts_with("batch-runner"))
        .unwrap_or_else(|| panic!("{}", table.stdout));
    let cells: Vec<&str> = row.split_whitespace().collect();
    // NAME ROLE WEIGHT SHARE OFFERS AGE: one offer open (the declined node is filtered).
    assert_eq!(
        &cells[..3],
        ["batch-runner", "batch", "1"],
        "{}",
        table.stdout
    );
    assert!(cells[3].parse::<f64>().unwrap() > 0.0, "{}", table.stdout);
    server.assert_no_unexpected_errors(&[]);
}
