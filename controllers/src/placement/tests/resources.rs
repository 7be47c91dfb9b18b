//! Resources, ports, node switches, roles and the reasons' text.

use pacer_schemas::capacity::PortRange;
use pacer_schemas::container::{Container, PortMapping};
use pacer_schemas::networking::{Network, NetworkMode};

use crate::placement::fixtures::{app, batch, check, node};
use crate::placement::{
    ClusterView, FailureSummary, PortAsk, PortPool, Reason, ResourceKind, ResourceRequest,
    Strategy, place,
};

#[test]
fn scalars_fit_exactly() {
    let nodes = [node("n1").cpus(1.0).build()];
    check(
        &nodes,
        Vec::new(),
        &[(&app("web").cpus(0.5), 3)],
        "web: n1×2 | 1 pending: 0/1 nodes available: 1 insufficient cpus",
    );
    // Thousandths are exact: three times 0.1 fills 0.3.
    let nodes = [node("n1").cpus(0.3).build()];
    check(
        &nodes,
        Vec::new(),
        &[(&app("web").cpus(0.1), 3)],
        "web: n1×3",
    );
    for (web, reason) in [
        (app("web").mem(5000.0), "insufficient mem"),
        (app("web").disk(10_000.001), "insufficient disk"),
        (app("web").gpus(1), "insufficient gpus"),
    ] {
        check(
            &[node("n1").build()],
            Vec::new(),
            &[(&web, 1)],
            &format!("web: | 1 pending: 0/1 nodes available: 1 {reason}"),
        );
    }
    check(
        &[node("n1").disk(100.0).build()],
        Vec::new(),
        &[(&app("web").disk(60.0), 2)],
        "web: n1 | 1 pending: 0/1 nodes available: 1 insufficient disk",
    );
    let nodes = [node("g").gpus(2).build(), node("n").build()];
    check(
        &nodes,
        Vec::new(),
        &[(&app("ml").gpus(1), 3)],
        "ml: g×2 | 1 pending: 0/2 nodes available: 2 insufficient gpus",
    );
}

#[test]
fn bound_instances_use_resources() {
    let nodes = [node("n1").cpus(2.0).build(), node("n2").cpus(2.0).build()];
    let old = app("old").cpus(1.5);
    let mut bound = old.bound("n1", 1);
    bound.extend(old.bound("n2", 1));
    check(
        &nodes,
        bound,
        &[(&app("web").cpus(1.0), 1)],
        "web: | 1 pending: 0/2 nodes available: 2 insufficient cpus",
    );
    // A node whose allocatable shrank below its instances' use takes nothing.
    let nodes = [node("n1").cpus(1.0).build()];
    check(
        &nodes,
        old.bound("n1", 1),
        &[(&app("web").cpus(0.001), 1)],
        "web: | 1 pending: 0/1 nodes available: 1 insufficient cpus",
    );
}

#[test]
fn unschedulable_not_ready_and_roles() {
    let nodes = [
        node("a").unschedulable().build(),
        node("b").not_ready().build(),
        node("c").role("prod").build(),
        node("d").cpus(0.0).build(),
        node("e").build(),
    ];
    check(&nodes, Vec::new(), &[(&app("web"), 2)], "web: e×2");
    check(
        &nodes,
        Vec::new(),
        &[(&app("big").cpus(8.0), 1)],
        "big: | 1 pending: 0/5 nodes available: 2 insufficient cpus, 1 not ready, 1 reserved \
         for another role, 1 unschedulable",
    );
    // acceptedResourceRoles opens reserved nodes (and closes unreserved ones).
    check(
        &nodes,
        Vec::new(),
        &[(&app("db").accepted_roles(&["prod"]), 1)],
        "db: c",
    );
    check(
        &nodes,
        Vec::new(),
        &[(&app("db").accepted_roles(&["prod", "*"]), 2)],
        "db: c e",
    );
}

#[test]
fn reasons_count_each_node_once_most_frequent_first() {
    // The Kubernetes-style example: 3 nodes too small, 2 already holding an instance.
    let nodes = [
        node("n1").mem(64.0).build(),
        node("n2").mem(64.0).build(),
        node("n3").mem(64.0).build(),
        node("n4").build(),
        node("n5").build(),
    ];
    let web = app("web").mem(128.0).constraint("hostname", "UNIQUE", None);
    let mut bound = web.bound("n4", 1);
    bound.extend(web.bound("n5", 1));
    check(
        &nodes,
        bound,
        &[(&web, 1)],
        "web: | 1 pending: 0/5 nodes available: 3 insufficient mem, 2 did not match \
         constraint hostname:UNIQUE",
    );
    check(
        &[],
        Vec::new(),
        &[(&web, 1)],
        "web: | 1 pending: 0/0 nodes available",
    );
    let summary = FailureSummary::new(
        4,
        "offers",
        vec![
            (Reason::Insufficient(ResourceKind::Cpus), 2),
            (Reason::Unschedulable, 0),
            (Reason::PortsTaken, 2),
        ],
    );
    assert_eq!(
        summary.to_string(),
        "0/4 offers available: 2 insufficient cpus, 2 required host ports in use"
    );
    assert_eq!(summary.count(&Reason::PortsTaken), 2);
}

#[test]
fn random_ports_come_from_the_ranges_and_are_never_reused() {
    let nodes = [node("n1").ports(&[(31000, 31002), (31005, 31005)]).build()];
    let mut view = ClusterView::from_nodes(&nodes, Vec::new());
    let web = app("web").ports(&[0, 0], false);
    let api = app("api").ports(&[8080], false);
    let plan = place(&batch(&[(&web, 2), (&api, 1)], Strategy::Spread), &mut view);
    let ports: Vec<Vec<i32>> = plan.bindings.iter().map(|b| b.host_ports.clone()).collect();
    assert_eq!(ports, [vec![31000, 31001], vec![31002, 31005]]);
    assert_eq!(
        plan.unplaced[0].reason.to_string(),
        "0/1 nodes available: 1 insufficient ports"
    );
    assert_eq!(view.candidates()[0].ports.free_count(), 0);
}

#[test]
fn required_ports_are_taken_exactly() {
    let nodes = [
        node("n1").ports(&[(80, 80), (31000, 31009)]).build(),
        node("n2").ports(&[(1, 1000)]).build(),
        node("n3").build(),
    ];
    let web = app("web").ports(&[80, 0], true);
    let mut view = ClusterView::from_nodes(&nodes, Vec::new());
    let plan = place(&batch(&[(&web, 3)], Strategy::Spread), &mut view);
    let ports: Vec<(String, Vec<i32>)> = plan
        .bindings
        .iter()
        .map(|b| (b.node_name.clone(), b.host_ports.clone()))
        .collect();
    assert_eq!(
        ports,
        [
            ("n1".to_owned(), vec![80, 31000]),
            ("n2".to_owned(), vec![80, 1])
        ]
    );
    assert_eq!(
        plan.unplaced[0].reason.to_string(),
        "0/3 nodes available: 3 required host ports in use"
    );
    // A bound instance holding the port blocks it too.
    let mut bound = web.bound("n1", 1);
    bound[0].host_ports = vec![80, 31000];
    check(&nodes, bound, &[(&web, 1)], "web: n2");
    // Without requirePorts the same definitions take any free ports.
    let loose = app("web").ports(&[80, 0], false);
    check(&nodes, Vec::new(), &[(&loose, 3)], "web: n1 n2 n3");
}

#[test]
fn container_port_mappings_ask_for_host_ports() {
    let mut spec = app("web").spec;
    spec.networks = Some(vec![Network {
        mode: Some(NetworkMode::ContainerBridge),
        ..Network::default()
    }]);
    spec.container = Some(Container {
        port_mappings: Some(vec![
            PortMapping {
                container_port: Some(80),
                host_port: Some(0),
                ..PortMapping::default()
            },
            PortMapping {
                container_port: Some(443),
                host_port: Some(8443),
                ..PortMapping::default()
            },
            PortMapping {
                container_port: Some(9000),
                ..PortMapping::default()
            },
        ]),
        ..Container::default()
    });
    assert_eq!(
        ResourceRequest::from_spec(&spec).ports,
        [PortAsk::Any, PortAsk::Fixed(8443)]
    );
    // Host networking without port definitions: Marathon's one default port.
    let mut spec = app("web").spec;
    spec.port_definitions = None;
    assert_eq!(ResourceRequest::from_spec(&spec).ports, [PortAsk::Any]);
}

#[test]
fn port_pools_merge_split_and_refuse_duplicates() {
    let mut pool = PortPool::from_ranges(&[
        PortRange { begin: 10, end: 12 },
        PortRange { begin: 11, end: 20 },
        PortRange { begin: 30, end: 29 },
        PortRange { begin: -5, end: 0 },
        PortRange {
            begin: 65_530,
            end: 70_000,
        },
    ]);
    assert_eq!(pool.free_count(), 11 + 6);
    assert!(pool.remove(15) && !pool.remove(15) && !pool.remove(25));
    assert_eq!(
        pool.ranges(),
        [
            PortRange { begin: 10, end: 14 },
            PortRange { begin: 16, end: 20 },
            PortRange {
                begin: 65_530,
                end: 65_535
            }
        ]
    );
    assert!(
        pool.allocate(&[PortAsk::Fixed(16), PortAsk::Fixed(16)])
            .is_none()
    );
    assert_eq!(pool.free_count(), 16);
    assert_eq!(
        pool.allocate(&[PortAsk::Any, PortAsk::Fixed(10), PortAsk::Any]),
        Some(vec![11, 10, 12])
    );
    assert!(pool.contains(13) && !pool.contains(12));
}
