//! Builders for placement tests: nodes, Apps, bound instances, and a compact rendering of a
//! plan to compare against (`web: n1×2 n3 | 1 pending: 0/3 nodes available: …`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pacer_schemas::capacity::{PortRange, Resources};
use pacer_schemas::condition::{Condition, ConditionStatus};
use pacer_schemas::constraint::Constraint;
use pacer_schemas::networking::PortDefinition;
use pacer_schemas::node::{NodeSpec, NodeStatus};
use pacer_schemas::{AppSpec, Node, ObjectMeta};

use super::{
    BoundInstance, ClusterView, ObjectKey, PlacementPlan, PlacementRequest, Requirements, Scalars,
    Strategy, place,
};

/// A node with 4 cpus, 4096 MiB, 10000 MiB disk, no GPU, ports 31000-31009, ready.
pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder(Node {
        api_version: pacer_schemas::API_VERSION.to_owned(),
        kind: "Node".to_owned(),
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: NodeSpec::default(),
        status: Some(NodeStatus {
            allocatable: Resources {
                cpus: 4.0,
                mem: 4096.0,
                disk: 10_000.0,
                gpus: 0,
                ports: vec![PortRange {
                    begin: 31_000,
                    end: 31_009,
                }],
            },
            ..NodeStatus::default()
        }),
    })
}

/// Builds a [`Node`].
pub struct NodeBuilder(Node);

impl NodeBuilder {
    fn allocatable(&mut self) -> &mut Resources {
        &mut self
            .0
            .status
            .get_or_insert_with(NodeStatus::default)
            .allocatable
    }

    /// Sets an attribute.
    pub fn attr(mut self, name: &str, value: &str) -> Self {
        self.0
            .spec
            .attributes
            .get_or_insert_with(BTreeMap::new)
            .insert(name.to_owned(), value.to_owned());
        self
    }

    /// Sets `@zone`.
    pub fn zone(mut self, zone: &str) -> Self {
        self.0.spec.zone = Some(zone.to_owned());
        self
    }

    /// Sets `@region`.
    pub fn region(mut self, region: &str) -> Self {
        self.0.spec.region = Some(region.to_owned());
        self
    }

    /// Sets the host name.
    pub fn hostname(mut self, hostname: &str) -> Self {
        if let Some(status) = &mut self.0.status {
            status.hostname = Some(hostname.to_owned());
        }
        self
    }

    /// Sets allocatable cpus.
    pub fn cpus(mut self, cpus: f64) -> Self {
        self.allocatable().cpus = cpus;
        self
    }

    /// Sets allocatable mem.
    pub fn mem(mut self, mem: f64) -> Self {
        self.allocatable().mem = mem;
        self
    }

    /// Sets allocatable disk.
    pub fn disk(mut self, disk: f64) -> Self {
        self.allocatable().disk = disk;
        self
    }

    /// Sets allocatable GPUs.
    pub fn gpus(mut self, gpus: i32) -> Self {
        self.allocatable().gpus = gpus;
        self
    }

    /// Replaces the port ranges.
    pub fn ports(mut self, ranges: &[(i32, i32)]) -> Self {
        self.allocatable().ports = ranges
            .iter()
            .map(|&(begin, end)| PortRange { begin, end })
            .collect();
        self
    }

    /// Marks it unschedulable.
    pub fn unschedulable(mut self) -> Self {
        self.0.spec.unschedulable = Some(true);
        self
    }

    /// Gives it a `Ready=False` condition.
    pub fn not_ready(mut self) -> Self {
        if let Some(status) = &mut self.0.status {
            status
                .conditions
                .push(Condition::new("Ready", ConditionStatus::False));
        }
        self
    }

    /// Reserves it for a role.
    pub fn role(mut self, role: &str) -> Self {
        self.0.spec.role = Some(role.to_owned());
        self
    }

    /// The node.
    pub fn build(self) -> Node {
        self.0
    }
}

/// An App `name` in namespace `default`: 0.1 cpus, 32 MiB, no disk, no ports.
pub fn app(name: &str) -> TestApp {
    TestApp {
        key: ObjectKey::new("default", name),
        spec: AppSpec {
            cpus: Some(0.1),
            mem: Some(32.0),
            disk: Some(0.0),
            gpus: Some(0),
            port_definitions: Some(Vec::new()),
            ..AppSpec::default()
        },
    }
}

/// An App under test.
#[derive(Clone)]
pub struct TestApp {
    /// Its key.
    pub key: ObjectKey,
    /// Its spec.
    pub spec: AppSpec,
}

impl TestApp {
    /// Adds a constraint `[field, operator, value?]`.
    pub fn constraint(mut self, field: &str, operator: &str, value: Option<&str>) -> Self {
        self.spec
            .constraints
            .get_or_insert_with(Vec::new)
            .push(Constraint::new(field, operator, value));
        self
    }

    /// Sets cpus.
    pub fn cpus(mut self, cpus: f64) -> Self {
        self.spec.cpus = Some(cpus);
        self
    }

    /// Sets mem.
    pub fn mem(mut self, mem: f64) -> Self {
        self.spec.mem = Some(mem);
        self
    }

    /// Sets disk.
    pub fn disk(mut self, disk: f64) -> Self {
        self.spec.disk = Some(disk);
        self
    }

    /// Sets GPUs.
    pub fn gpus(mut self, gpus: i32) -> Self {
        self.spec.gpus = Some(gpus);
        self
    }

    /// Port definitions with these `port` values (0: any); `require` sets `requirePorts`.
    pub fn ports(mut self, ports: &[i32], require: bool) -> Self {
        self.spec.port_definitions = Some(
            ports
                .iter()
                .map(|&port| PortDefinition {
                    port: Some(port),
                    ..PortDefinition::default()
                })
                .collect(),
        );
        self.spec.require_ports = Some(require);
        self
    }

    /// Sets `acceptedResourceRoles`.
    pub fn accepted_roles(mut self, roles: &[&str]) -> Self {
        self.spec.accepted_resource_roles =
            Some(roles.iter().map(|role| (*role).to_owned()).collect());
        self
    }

    /// Its requirements.
    pub fn requirements(&self) -> Arc<Requirements> {
        match Requirements::from_spec(&self.spec) {
            Ok(requirements) => Arc::new(requirements),
            Err(error) => panic!("{}: {error}", self.key),
        }
    }

    /// `count` instances of it bound to `node`, with `host_ports` each.
    pub fn bound(&self, node: &str, count: usize) -> Vec<BoundInstance> {
        (0..count)
            .map(|_| BoundInstance {
                app: self.key.clone(),
                node_name: node.to_owned(),
                resources: Scalars::from_spec(&self.spec),
                host_ports: Vec::new(),
            })
            .collect()
    }
}

/// A batch of `count` instances of each App, App after App.
pub fn batch(apps: &[(&TestApp, usize)], strategy: Strategy) -> PlacementRequest {
    let mut request = PlacementRequest::new(strategy);
    for (app, count) in apps {
        let first = request
            .pending
            .iter()
            .filter(|pending| pending.app == app.key)
            .count();
        request.push_many(&app.key, &app.requirements(), first, *count);
    }
    request
}

/// Renders a plan per App, in order of first appearance: nodes that got instances (by name,
/// `×n` for several) and, if any stayed pending, how many and why.
/// E.g. `web: n1×2 n3 | 1 pending: 0/3 nodes available: 3 insufficient mem`.
pub fn render(plan: &PlacementPlan) -> String {
    let mut apps: Vec<&ObjectKey> = Vec::new();
    for app in plan
        .bindings
        .iter()
        .map(|binding| &binding.app)
        .chain(plan.unplaced.iter().map(|unplaced| &unplaced.app))
    {
        if !apps.contains(&app) {
            apps.push(app);
        }
    }
    let mut out = Vec::new();
    for app in apps {
        let mut nodes: BTreeMap<&str, usize> = BTreeMap::new();
        for binding in plan.bindings.iter().filter(|binding| &binding.app == app) {
            *nodes.entry(&binding.node_name).or_default() += 1;
        }
        let mut text = format!("{}:", app.name);
        for (node, count) in nodes {
            text.push(' ');
            text.push_str(node);
            if count > 1 {
                text.push_str(&format!("×{count}"));
            }
        }
        let pending: Vec<_> = plan
            .unplaced
            .iter()
            .filter(|unplaced| &unplaced.app == app)
            .collect();
        if !pending.is_empty() {
            let reasons: BTreeSet<String> = pending
                .iter()
                .map(|unplaced| unplaced.reason.to_string())
                .collect();
            let reasons: Vec<String> = reasons.into_iter().collect();
            text.push_str(&format!(
                " | {} pending: {}",
                pending.len(),
                reasons.join(" / ")
            ));
        }
        out.push(text);
    }
    out.join("; ")
}

/// Places `apps` (`count` instances each) on `nodes` with `bound` instances already there,
/// spreading, and compares the rendered plan with `expect`.
#[track_caller]
pub fn check(nodes: &[Node], bound: Vec<BoundInstance>, apps: &[(&TestApp, usize)], expect: &str) {
    let mut view = ClusterView::from_nodes(nodes, bound);
    let plan = place(&batch(apps, Strategy::Spread), &mut view);
    assert_eq!(render(&plan), expect);
}

/// The standard rack layout of the constraint tables: n1, n2 on rack-1; n3, n4 on rack-2;
/// n5 on rack-3; n6 without `rack_id`; n7 on rack-7; n8 on rack-8.
pub fn racks() -> Vec<Node> {
    [
        ("n1", Some("rack-1")),
        ("n2", Some("rack-1")),
        ("n3", Some("rack-2")),
        ("n4", Some("rack-2")),
        ("n5", Some("rack-3")),
        ("n6", None),
        ("n7", Some("rack-7")),
        ("n8", Some("rack-8")),
    ]
    .into_iter()
    .map(|(name, rack)| match rack {
        Some(rack) => node(name).attr("rack_id", rack).build(),
        None => node(name).build(),
    })
    .collect()
}
