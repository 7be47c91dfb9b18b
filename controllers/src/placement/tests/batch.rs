//! Counting within and across batches, strategies, determinism, offers, and building requests
//! from Instance objects.

use std::sync::Arc;

use pacer_schemas::instance::{InstancePhase, InstanceSpec, InstanceStatus};
use pacer_schemas::offer::{OfferPhase, OfferSpec, OfferStatus};
use pacer_schemas::{Instance, ObjectMeta, Offer};

use crate::placement::fixtures::{app, batch, check, node, racks, render};
use crate::placement::{
    BoundInstance, ClusterView, ObjectKey, PlacementRequest, Strategy, UnplacedReason, place,
};

#[test]
fn constraints_count_placements_earlier_in_the_batch() {
    // Two Apps with one-per-host constraints interleaved in one batch: each counts its own.
    let nodes = [node("n1").build(), node("n2").build()];
    let web = app("web").constraint("hostname", "UNIQUE", None);
    let api = app("api").constraint("hostname", "MAX_PER", Some("1"));
    let mut request = PlacementRequest::new(Strategy::Spread);
    for n in 0..3 {
        request.push_many(&web.key, &web.requirements(), n, 1);
        request.push_many(&api.key, &api.requirements(), n, 1);
    }
    let mut view = ClusterView::from_nodes(&nodes, Vec::new());
    let plan = place(&request, &mut view);
    assert_eq!(
        render(&plan),
        "web: n1 n2 | 1 pending: 0/2 nodes available: 2 did not match constraint \
         hostname:UNIQUE; api: n1 n2 | 1 pending: 0/2 nodes available: 2 did not match \
         constraint hostname:MAX_PER:1"
    );
}

#[test]
fn a_second_batch_on_the_same_view_sees_the_first() {
    let web = app("web").constraint("rack_id", "UNIQUE", None).cpus(1.0);
    let mut view = ClusterView::from_nodes(&racks(), Vec::new());
    let first = place(&batch(&[(&web, 2)], Strategy::Spread), &mut view);
    assert_eq!(render(&first), "web: n1 n3");
    let mut second = PlacementRequest::new(Strategy::Spread);
    second.push_many(&web.key, &web.requirements(), 2, 4);
    let second = place(&second, &mut view);
    assert_eq!(
        render(&second),
        "web: n5 n7 n8 | 1 pending: 0/8 nodes available: 8 did not match constraint \
         rack_id:UNIQUE"
    );
    assert_eq!(view.instances_of(&web.key), 5);
    assert_eq!(view.instances_on(&web.key, "n3"), 1);
    assert_eq!(view.node("n1").map(|node| node.allocated.cpus), Some(1000));
    assert_eq!(view.candidates()[0].free.cpus, 3000);
}

#[test]
fn spread_and_pack() {
    let nodes = [node("n1").build(), node("n2").build(), node("n3").build()];
    let web = app("web").cpus(1.0);
    let mut view = ClusterView::from_nodes(&nodes, Vec::new());
    let spread = place(&batch(&[(&web, 4)], Strategy::Spread), &mut view);
    assert_eq!(render(&spread), "web: n1×2 n2 n3");
    let mut view = ClusterView::from_nodes(&nodes, Vec::new());
    let pack = place(&batch(&[(&web, 6)], Strategy::Pack), &mut view);
    assert_eq!(render(&pack), "web: n1×4 n2×2");
    // Spread prefers the emptier node when the App has no instance on either.
    let other = app("other").cpus(3.0);
    check(&nodes, other.bound("n1", 1), &[(&web, 2)], "web: n2 n3");
    // Pack fills the fuller node first.
    let mut view = ClusterView::from_nodes(&nodes, other.bound("n2", 1));
    let pack = place(&batch(&[(&web, 2)], Strategy::Pack), &mut view);
    assert_eq!(render(&pack), "web: n1 n2");
}

#[test]
fn placement_is_deterministic_whatever_the_input_order() {
    let web = app("web")
        .constraint("rack_id", "GROUP_BY", None)
        .ports(&[0], false);
    let api = app("api").constraint("hostname", "MAX_PER", Some("2"));
    let request = batch(&[(&web, 7), (&api, 9)], Strategy::Spread);
    let mut forward = ClusterView::from_nodes(&racks(), Vec::new());
    let mut reversed_nodes = racks();
    reversed_nodes.reverse();
    let mut backward = ClusterView::from_nodes(&reversed_nodes, Vec::new());
    let a = place(&request, &mut forward);
    let b = place(&request, &mut backward);
    assert_eq!(a, b);
    assert_eq!(a.bindings.len(), 16);
}

fn offer(name: &str, node: &str, cpus: f64, phase: Option<OfferPhase>) -> Offer {
    Offer {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: OfferSpec {
            node_name: node.to_owned(),
            role: "*".to_owned(),
            resources: pacer_schemas::capacity::Resources {
                cpus,
                mem: 1024.0,
                ..Default::default()
            },
            ..OfferSpec::default()
        },
        status: phase.map(|phase| OfferStatus {
            phase,
            ..OfferStatus::default()
        }),
        ..Offer::default()
    }
}

#[test]
fn offers_are_candidates_and_constraints_count_unoffered_nodes() {
    let web = app("web").constraint("rack_id", "UNIQUE", None).cpus(1.0);
    let offers = [
        offer("o-3", "n3", 4.0, None),
        offer("o-2", "n2", 4.0, Some(OfferPhase::Offered)),
        offer("o-5", "n5", 4.0, Some(OfferPhase::Declined)),
        offer("o-x", "x9", 0.5, None),
    ];
    // web already runs on n1 (rack-1), which is not offered: n2 (rack-1) is refused.
    let mut view = ClusterView::from_offers(&offers, &racks(), web.bound("n1", 1));
    assert_eq!(view.noun(), "offers");
    assert_eq!(view.candidates().len(), 3);
    let plan = place(&batch(&[(&web, 2)], Strategy::Spread), &mut view);
    assert_eq!(plan.bindings.len(), 1);
    assert_eq!(plan.bindings[0].node_name, "n3");
    assert_eq!(plan.bindings[0].offer.as_deref(), Some("o-3"));
    assert_eq!(
        plan.unplaced[0].reason.to_string(),
        "0/3 offers available: 3 did not match constraint rack_id:UNIQUE"
    );
}

fn instance(
    name: &str,
    app: &str,
    version: &str,
    node: Option<&str>,
    phase: InstancePhase,
) -> Instance {
    let spec = crate::placement::fixtures::app(app).cpus(2.0).spec;
    Instance {
        metadata: ObjectMeta::named("default", name),
        spec: InstanceSpec {
            app: app.to_owned(),
            app_version: version.to_owned(),
            template: Some(spec),
            node_name: node.map(str::to_owned),
            ..InstanceSpec::default()
        },
        status: Some(InstanceStatus {
            phase,
            ..InstanceStatus::default()
        }),
        ..Instance::default()
    }
}

#[test]
fn requests_and_bound_instances_from_instance_objects() {
    let instances = [
        instance("web-a", "web", "v1", Some("n1"), InstancePhase::Running),
        instance("web-b", "web", "v1", Some("n1"), InstancePhase::Finished),
        instance("web-c", "web", "v1", None, InstancePhase::Scheduled),
        instance("web-d", "web", "v1", None, InstancePhase::Scheduled),
        instance("web-e", "web", "v1", None, InstancePhase::Killed),
        instance("db-a", "db", "v1", None, InstancePhase::Scheduled),
    ];
    let bound = BoundInstance::from_instances(&instances);
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0].resources.cpus, 2000);
    let mut broken = instances[5].clone();
    if let Some(template) = &mut broken.spec.template {
        template.constraints = Some(vec![pacer_schemas::constraint::Constraint::new(
            "hostname", "NEAR", None,
        )]);
    }
    let mut all = instances.to_vec();
    all[5] = broken;
    let mut orphan = instances[2].clone();
    orphan.metadata.name = Some("ghost-a".to_owned());
    orphan.spec.app = "ghost".to_owned();
    orphan.spec.template = None;
    all.push(orphan);
    let request = PlacementRequest::from_instances(&all, |_| None, Strategy::Spread);
    assert_eq!(request.pending.len(), 2);
    assert!(Arc::ptr_eq(
        &request.pending[0].requirements,
        &request.pending[1].requirements
    ));
    let reasons: Vec<String> = request
        .invalid
        .iter()
        .map(|unplaced| format!("{}: {}", unplaced.instance, unplaced.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            "default/db-a: invalid constraints[0]: unknown constraint operator \"NEAR\"",
            "default/ghost-a: no spec for App default/ghost",
        ]
    );
    let mut view = ClusterView::from_nodes(&[node("n1").build(), node("n2").build()], bound);
    let plan = place(&request, &mut view);
    let placed: Vec<(String, &str)> = plan
        .bindings
        .iter()
        .map(|b| (b.instance.to_string(), b.node_name.as_str()))
        .collect();
    assert_eq!(
        placed,
        [
            ("default/web-c".to_owned(), "n2"),
            ("default/web-d".to_owned(), "n1")
        ]
    );
    assert_eq!(plan.unplaced.len(), 2);
    assert!(matches!(
        plan.unplaced[0].reason,
        UnplacedReason::Invalid(_)
    ));
    assert_eq!(
        view.instances_on(&ObjectKey::new("default", "web"), "n1"),
        2
    );
}
