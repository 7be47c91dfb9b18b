//! The benchmark's scenario — 10,000 instances (100 Apps × 100) on 1,000 nodes with mixed
//! constraints — checked for correctness by an independent verifier (timing is the bench's
//! business).

use std::collections::{BTreeMap, HashMap, HashSet};

use pacer_schemas::Node;

use crate::placement::fixtures::{TestApp, app, batch, node};
use crate::placement::{Binding, ClusterView, Strategy, place};

const NODES: usize = 1000;
const APPS: usize = 100;
const PER_APP: usize = 100;
const LEVELS: [&str; 3] = ["0.5", "0.80", "1.0"];

fn nodes() -> Vec<Node> {
    (0..NODES)
        .map(|i| {
            node(&format!("node-{i:04}"))
                .attr("rack_id", &format!("rack-{:02}", i % 20))
                .attr("level", LEVELS[i % 3])
                .zone(&format!("zone-{}", i % 3))
                .cpus(16.0)
                .mem(65_536.0)
                .ports(&[(10_000, 10_199), (31_000, 31_099)])
                .build()
        })
        .collect()
}

/// App `i`'s constraints cycle through the operators.
fn apps() -> Vec<TestApp> {
    (0..APPS)
        .map(|i| {
            let web = app(&format!("app-{i:02}")).cpus(0.5).mem(256.0);
            match i % 8 {
                0 => web
                    .ports(&[0], false)
                    .constraint("hostname", "UNIQUE", None),
                1 => web
                    .ports(&[0], false)
                    .constraint("rack_id", "GROUP_BY", None),
                2 => web
                    .ports(&[0, 0], false)
                    .constraint("rack_id", "MAX_PER", Some("6")),
                3 => web
                    .constraint("rack_id", "LIKE", Some("rack-1[0-9]"))
                    .constraint("hostname", "MAX_PER", Some("1")),
                4 => web
                    .ports(&[0], false)
                    .constraint("@zone", "GROUP_BY", Some("3")),
                5 => web.constraint("rack_id", "CLUSTER", None),
                6 => web.ports(&[10_000 + i as i32], true),
                _ => web
                    .constraint("level", "IS", Some("0.8"))
                    .constraint("rack_id", "UNLIKE", Some("rack-0[0-4]"))
                    .constraint("hostname", "GROUP_BY", None),
            }
        })
        .collect()
}

#[test]
fn ten_thousand_instances_on_a_thousand_nodes() {
    let nodes = nodes();
    let apps = apps();
    let mut view = ClusterView::from_nodes(&nodes, Vec::new());
    let counts: Vec<(&TestApp, usize)> = apps.iter().map(|app| (app, PER_APP)).collect();
    let plan = place(&batch(&counts, Strategy::Spread), &mut view);
    assert!(plan.unplaced.is_empty(), "{:?}", plan.unplaced.first());
    assert_eq!(plan.bindings.len(), APPS * PER_APP);

    let attributes: HashMap<&str, &Node> = nodes
        .iter()
        .map(|node| (node.metadata.name.as_deref().unwrap_or_default(), node))
        .collect();
    let attr = |binding: &Binding, name: &str| -> String {
        let node = attributes[binding.node_name.as_str()];
        match name {
            "@zone" => node.spec.zone.clone().unwrap_or_default(),
            _ => node.spec.attributes.as_ref().unwrap()[name].clone(),
        }
    };

    // Resources and ports per node.
    let mut cpus: HashMap<&str, f64> = HashMap::new();
    let mut ports: HashMap<&str, HashSet<i32>> = HashMap::new();
    for binding in &plan.bindings {
        *cpus.entry(&binding.node_name).or_default() += 0.5;
        for port in &binding.host_ports {
            assert!((10_000..=10_199).contains(port) || (31_000..=31_099).contains(port));
            assert!(
                ports.entry(&binding.node_name).or_default().insert(*port),
                "port {port} twice on {}",
                binding.node_name
            );
        }
    }
    assert!(cpus.values().all(|&used| used <= 16.0));

    // Every constraint, per App.
    let mut by_app: BTreeMap<&str, Vec<&Binding>> = BTreeMap::new();
    for binding in &plan.bindings {
        by_app.entry(&binding.app.name).or_default().push(binding);
    }
    let spread = |values: Vec<String>, domain: usize| {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for value in values {
            *counts.entry(value).or_default() += 1;
        }
        let max = counts.values().max().copied().unwrap_or(0);
        let min = if counts.len() < domain {
            0
        } else {
            counts.values().min().copied().unwrap_or(0)
        };
        (counts, max - min)
    };
    for (i, web) in apps.iter().enumerate() {
        let bindings = &by_app[web.key.name.as_str()];
        assert_eq!(bindings.len(), PER_APP);
        let hosts: HashSet<&str> = bindings.iter().map(|b| b.node_name.as_str()).collect();
        let racks: Vec<String> = bindings.iter().map(|b| attr(b, "rack_id")).collect();
        match i % 8 {
            0 => assert_eq!(hosts.len(), PER_APP, "{i}: UNIQUE"),
            1 => assert_eq!(spread(racks, 20).1, 0, "{i}: GROUP_BY, 5 per rack"),
            2 => {
                let (counts, _) = spread(racks, 20);
                assert!(counts.values().all(|&n| n <= 6), "{i}: MAX_PER");
                assert!(bindings.iter().all(|b| b.host_ports.len() == 2));
            }
            3 => {
                assert!(
                    racks.iter().all(|rack| rack.starts_with("rack-1")),
                    "{i}: LIKE"
                );
                assert_eq!(hosts.len(), PER_APP, "{i}: MAX_PER 1");
            }
            4 => {
                let zones = bindings.iter().map(|b| attr(b, "@zone")).collect();
                assert!(spread(zones, 3).1 <= 1, "{i}: GROUP_BY 3");
            }
            5 => assert_eq!(spread(racks, 1).0.len(), 1, "{i}: CLUSTER"),
            6 => {
                assert_eq!(hosts.len(), PER_APP, "{i}: required port once per node");
                assert!(bindings.iter().all(|b| b.host_ports == [10_000 + i as i32]));
            }
            _ => {
                assert!(
                    bindings.iter().all(|b| attr(b, "level") == "0.80"),
                    "{i}: IS"
                );
                assert!(
                    racks.iter().all(|rack| rack.as_str() >= "rack-05"),
                    "{i}: UNLIKE"
                );
                assert_eq!(
                    hosts.len(),
                    PER_APP,
                    "{i}: GROUP_BY hostname over 250 hosts"
                );
            }
        }
    }
}
