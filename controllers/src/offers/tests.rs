//! The offer broker: its pure round (DRF order, declines, expiry, rescinds, reservations,
//! quotas), accept = bind on a real embedded store (one transaction; a stale offer writes
//! nothing), a property test of concurrent frameworks accepting under contention over
//! thousands of random rounds (no node is ever over-allocated, no host port given twice), and
//! the controller loop itself against the store with a [`ManualClock`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::StreamExt;
use pacer_schemas::framework::{DEFAULT_OFFER_TIMEOUT_SECONDS, FrameworkStatus};
use pacer_schemas::offer::{OfferLaunch, OfferPhase, OfferStatus};
use pacer_schemas::{AppSpec, Resource, Time};
use pacer_store::ListOptions;
use pacer_store::embedded::EmbeddedStore;
use serde_json::{Value, json};

use super::accept::{AcceptError, AcceptFailure, Accepted, OFFER_ANNOTATION, accept, plan_accept};
use super::*;
use crate::placement::Scalars;
use crate::rounds::ManualClock;
use crate::store_source::decode_stored;

const T0: i64 = 1_800_000_000;

fn at(seconds: i64) -> Time {
    Time::from_unix_seconds(T0 + seconds).unwrap()
}

fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
    (dir, Arc::new(store))
}

/// A ready node with `cpus` CPUs, `mem` MiB and ports 31000–31004, reserved for `role`.
fn node(name: &str, cpus: f64, mem: f64, role: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "pacer.dev/v1", "kind": "Node", "metadata": {"name": name},
        "spec": {"role": role, "attributes": {"rack": "r1"}},
        "status": {"allocatable": {"cpus": cpus, "mem": mem, "disk": 1000,
                                   "ports": [{"begin": 31000, "end": 31004}]},
                   "capacity": {"cpus": cpus, "mem": mem},
                   "hostname": format!("{name}.example"),
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .unwrap()
}

fn framework(name: &str, spec: Value) -> Framework {
    serde_json::from_value(json!({
        "apiVersion": "pacer.dev/v1", "kind": "Framework", "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

/// A bound, running instance of `role` on `node`.
fn running(name: &str, node: &str, role: &str, cpus: f64, mem: f64) -> Instance {
    serde_json::from_value(json!({
        "apiVersion": "pacer.dev/v1", "kind": "Instance",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"app": "app", "appVersion": "v1", "nodeName": node, "role": role,
                 "hostPorts": [], "template": {"cmd": "x", "cpus": cpus, "mem": mem,
                                               "portDefinitions": []}},
        "status": {"phase": "Running"},
    }))
    .unwrap()
}

fn launch(name: &str, cpus: f64, mem: f64, ports: usize) -> OfferLaunch {
    let template: AppSpec = serde_json::from_value(json!({
        "cmd": "sleep 1", "cpus": cpus, "mem": mem, "disk": 0,
        "portDefinitions": (0..ports).map(|_| json!({"port": 0})).collect::<Vec<_>>(),
    }))
    .unwrap();
    OfferLaunch {
        namespace: "jobs".to_owned(),
        name: name.to_owned(),
        template,
        ..OfferLaunch::default()
    }
}

fn plan(
    now: Time,
    nodes: &[Node],
    instances: &[Instance],
    offers: &[Offer],
    frameworks: &[Framework],
) -> RoundPlan {
    let nodes: Vec<&Node> = nodes.iter().collect();
    let instances: Vec<&Instance> = instances.iter().collect();
    let offers: Vec<&Offer> = offers.iter().collect();
    let frameworks: Vec<&Framework> = frameworks.iter().collect();
    plan_round(RoundInput {
        now,
        nodes: &nodes,
        instances: &instances,
        offers: &offers,
        frameworks: &frameworks,
    })
}

fn offers_per_framework(plan: &RoundPlan) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for offer in &plan.offers {
        *counts
            .entry(offer.spec.framework.clone().unwrap())
            .or_default() += 1;
    }
    counts
}

#[test]
fn offers_go_round_robin_by_dominant_share_and_weight() {
    let nodes: Vec<Node> = (0..8)
        .map(|index| node(&format!("n{index}"), 4.0, 4096.0, "*"))
        .collect();
    let frameworks = [
        framework("fa", json!({"role": "a"})),
        framework("fb", json!({"role": "b"})),
    ];
    let round = plan(at(0), &nodes, &[], &[], &frameworks);
    assert_eq!(
        offers_per_framework(&round),
        BTreeMap::from([("fa".into(), 4), ("fb".into(), 4)])
    );
    // Each offer holds the whole node, with its ports, attributes and expiry.
    let first = &round.offers[0];
    assert_eq!(first.spec.node_name, "n0");
    assert_eq!(first.spec.framework.as_deref(), Some("fa"));
    assert_eq!(first.spec.resources.cpus, 4.0);
    assert_eq!(first.spec.resources.ports.len(), 1);
    assert_eq!(first.spec.hostname.as_deref(), Some("n0.example"));
    assert_eq!(first.spec.attributes.as_ref().unwrap()["rack"], "r1");
    assert_eq!(
        first.spec.expires_at,
        Some(at(DEFAULT_OFFER_TIMEOUT_SECONDS as i64))
    );

    // Weight 3 against 1: three offers in four go to `a`.
    let frameworks = [
        framework("fa", json!({"role": "a", "weight": 3})),
        framework("fb", json!({"role": "b"})),
    ];
    let round = plan(at(0), &nodes, &[], &[], &frameworks);
    assert_eq!(
        offers_per_framework(&round),
        BTreeMap::from([("fa".into(), 6), ("fb".into(), 2)])
    );

    // A role already holding more goes last: `a` holds 3 nodes' worth, so `b` gets the first
    // offers until it catches up.
    let instances: Vec<Instance> = (0..3)
        .map(|index| running(&format!("i{index}"), &format!("n{index}"), "a", 4.0, 4096.0))
        .collect();
    let frameworks = [
        framework("fa", json!({"role": "a"})),
        framework("fb", json!({"role": "b"})),
    ];
    let round = plan(at(0), &nodes, &instances, &[], &frameworks);
    assert_eq!(
        offers_per_framework(&round),
        BTreeMap::from([("fa".into(), 1), ("fb".into(), 4)])
    );
    let (_, status) = round
        .statuses
        .iter()
        .find(|(framework, _)| framework.metadata.name_str() == "fa")
        .unwrap();
    assert_eq!(status.role_allocated.cpus, 16.0);
    assert_eq!(status.dominant_share, 0.5);
    assert_eq!(status.outstanding_offers, 1);
}

/// What `/metrics` shows comes from the plan: every role's holding (bound instances plus open
/// offers, kept or new) and the offers open once the plan is carried out.
#[test]
fn the_plan_reports_each_roles_holding_and_the_open_offers() {
    let nodes: Vec<Node> = (0..4)
        .map(|index| node(&format!("n{index}"), 4.0, 4096.0, "*"))
        .collect();
    let instances = [running("i0", "n0", "a", 1.0, 1024.0)];
    let frameworks = [
        framework("fa", json!({"role": "a"})),
        framework("fb", json!({"role": "b"})),
    ];
    let first = plan(at(0), &nodes, &instances, &[], &frameworks);
    assert_eq!(first.open_offers, 4);
    let holding = |round: &RoundPlan, role: &str| {
        round
            .roles
            .iter()
            .find(|holding| holding.role == role)
            .cloned()
            .unwrap()
    };
    let roles: Vec<&str> = first.roles.iter().map(|role| role.role.as_str()).collect();
    assert_eq!(roles, ["a", "b"]);
    // The cluster is 16 CPUs and 16 GiB: every node is offered (n0 minus i0), and each role's
    // holding is its instances plus its offers.
    let (a, b) = (holding(&first, "a"), holding(&first, "b"));
    assert_eq!(a.allocated.cpus + b.allocated.cpus, 16_000);
    assert_eq!(a.allocated.mem + b.allocated.mem, 16_384_000);
    assert_eq!(a.dominant_share, a.allocated.cpus.max(0) as f64 / 16_000.0);
    // Next round the offers are kept open, not made again: the same holdings, still 4 open.
    let second = plan(at(1), &nodes, &instances, &first.offers, &frameworks);
    assert!(second.offers.is_empty());
    assert_eq!(second.open_offers, 4);
    assert_eq!(holding(&second, "a"), a);
    // Without frameworks nothing is open and no role is weighed.
    let none = plan(at(2), &nodes, &instances, &[], &[]);
    assert_eq!(none.open_offers, 0);
    assert!(none.roles.is_empty());
}

#[test]
fn reserved_nodes_quotas_and_suppression() {
    let nodes = [
        node("n0", 4.0, 4096.0, "db"),
        node("n1", 4.0, 4096.0, "*"),
        node("n2", 4.0, 4096.0, "*"),
    ];
    let frameworks = [
        framework(
            "web",
            json!({"role": "web", "quota": {"cpus": 2, "mem": 100000}}),
        ),
        framework("db", json!({"role": "db"})),
        framework("quiet", json!({"role": "quiet", "suppressed": true})),
    ];
    let round = plan(at(0), &nodes, &[], &[], &frameworks);
    let by_node: HashMap<&str, &Offer> = round
        .offers
        .iter()
        .map(|offer| (offer.spec.node_name.as_str(), offer))
        .collect();
    // n0 is reserved for db; web's quota clips its offer to 2 CPUs; nobody offers to the
    // suppressed framework; once web is at its quota, n2 goes to db.
    assert_eq!(by_node["n0"].spec.framework.as_deref(), Some("db"));
    assert_eq!(by_node["n1"].spec.framework.as_deref(), Some("web"));
    assert_eq!(by_node["n1"].spec.resources.cpus, 2.0);
    assert_eq!(by_node["n2"].spec.framework.as_deref(), Some("db"));
    assert_eq!(round.offers.len(), 3);
}

fn open_offer(plan: &RoundPlan, node: &str) -> Offer {
    let mut offer = plan
        .offers
        .iter()
        .find(|offer| offer.spec.node_name == node)
        .unwrap()
        .clone();
    offer.metadata.resource_version = Some("7".to_owned());
    offer
}

#[test]
fn declines_filter_the_node_for_refuse_seconds() {
    let nodes = [node("n0", 4.0, 4096.0, "*")];
    let frameworks = vec![
        framework("fa", json!({"role": "a"})),
        framework("fb", json!({"role": "b"})),
    ];
    let first = plan(at(0), &nodes, &[], &[], &frameworks);
    let mut offer = open_offer(&first, "n0");
    assert_eq!(offer.spec.framework.as_deref(), Some("fa"));
    // While the offer is open, n0 is offered to no one else.
    let again = plan(
        at(1),
        &nodes,
        &[],
        std::slice::from_ref(&offer),
        &frameworks,
    );
    assert!(again.offers.is_empty() && again.removals.is_empty());

    offer.status = Some(OfferStatus {
        phase: OfferPhase::Declined,
        refuse_seconds: Some(30.0),
        ..OfferStatus::default()
    });
    let declined = plan(
        at(2),
        &nodes,
        &[],
        std::slice::from_ref(&offer),
        &frameworks,
    );
    assert_eq!(declined.removals.len(), 1);
    assert_eq!(declined.removals[0].why, Removal::Declined);
    // The node is offered again only next round (after the caches show the deletion).
    assert!(declined.offers.is_empty());
    let (_, status) = declined
        .statuses
        .iter()
        .find(|(framework, _)| framework.metadata.name_str() == "fa")
        .unwrap();
    assert_eq!(status.filters.len(), 1);
    assert_eq!(status.filters[0].until, at(32));
    assert_eq!(declined.deadline, Some(at(32)));

    // Next round: fa's filter holds, so fb gets n0 even though fa would be first by name.
    let mut filtered = frameworks.clone();
    filtered[0].status = Some(status.clone());
    let next = plan(at(3), &nodes, &[], &[], &filtered);
    assert_eq!(next.offers[0].spec.framework.as_deref(), Some("fb"));
    // Without fb, nobody gets it until the filter ends; then fa does, and the filter goes.
    let alone = [filtered[0].clone()];
    assert!(plan(at(31), &nodes, &[], &[], &alone).offers.is_empty());
    let later = plan(at(32), &nodes, &[], &[], &alone);
    assert_eq!(later.offers[0].spec.framework.as_deref(), Some("fa"));
    assert!(later.statuses[0].1.filters.is_empty());
}

/// Mesos' filters: a decline refuses only what was declined — once an instance on the node
/// ends, the larger free amount is offered at once — and a revive (or any spec change) drops
/// the framework's filters.
#[test]
fn a_decline_filter_lapses_when_the_node_frees_more_or_the_framework_revives() {
    let nodes = [node("n0", 4.0, 4096.0, "*")];
    let busy = [running("busy-1", "n0", "a", 2.0, 1024.0)];
    let mut fa = framework("fa", json!({"role": "a"}));
    fa.metadata.generation = Some(1);
    let first = plan(at(0), &nodes, &busy, &[], std::slice::from_ref(&fa));
    let mut offer = open_offer(&first, "n0");
    assert_eq!(offer.spec.resources.cpus, 2.0);
    offer.status = Some(OfferStatus {
        phase: OfferPhase::Declined,
        refuse_seconds: Some(60.0),
        ..OfferStatus::default()
    });
    let declined = plan(
        at(1),
        &nodes,
        &busy,
        std::slice::from_ref(&offer),
        std::slice::from_ref(&fa),
    );
    let filter = &declined.statuses[0].1.filters[0];
    assert_eq!(filter.generation, Some(1));
    assert_eq!(filter.resources.as_ref().unwrap().cpus, 2.0);
    fa.status = Some(declined.statuses[0].1.clone());

    // The same free amount stays refused.
    let fa = [fa];
    assert!(plan(at(2), &nodes, &busy, &[], &fa).offers.is_empty());
    // busy-1 ended: the whole node is more than was declined, and is offered.
    let freed = plan(at(2), &nodes, &[], &[], &fa);
    assert_eq!(freed.offers[0].spec.resources.cpus, 4.0);

    // A revive raises the generation: the filter goes, the declined amount is offered again.
    let mut revived = fa[0].clone();
    revived.spec.revive_count = Some(1);
    revived.metadata.generation = Some(2);
    let again = plan(at(3), &nodes, &busy, &[], std::slice::from_ref(&revived));
    assert_eq!(again.offers.len(), 1, "{again:#?}");
    assert!(again.statuses[0].1.filters.is_empty());

    // A decline made before a revive the broker sees first (the offer names the generation it
    // was declined under) leaves no filter in force: the revive wins.
    let mut late = open_offer(&again, "n0");
    late.status = Some(OfferStatus {
        phase: OfferPhase::Declined,
        refuse_seconds: Some(60.0),
        framework_generation: Some(1),
        ..OfferStatus::default()
    });
    let handled = plan(
        at(4),
        &nodes,
        &busy,
        std::slice::from_ref(&late),
        std::slice::from_ref(&revived),
    );
    assert_eq!(handled.removals[0].why, Removal::Declined);
    let mut after = revived.clone();
    after.status = handled.statuses.first().map(|(_, status)| status.clone());
    let offered = plan(at(5), &nodes, &busy, &[], std::slice::from_ref(&after));
    assert_eq!(offered.offers.len(), 1, "{offered:#?}");
}

#[test]
fn offers_expire_and_are_rescinded_when_their_node_goes() {
    let mut nodes = vec![node("n0", 4.0, 4096.0, "*"), node("n1", 4.0, 4096.0, "*")];
    let frameworks = [framework(
        "fa",
        json!({"role": "a", "offerTimeoutSeconds": 5}),
    )];
    let first = plan(at(0), &nodes, &[], &[], &frameworks);
    let offers = [open_offer(&first, "n0"), open_offer(&first, "n1")];
    assert_eq!(first.deadline, Some(at(5)));

    let expired = plan(at(5), &nodes, &[], &offers, &frameworks);
    assert_eq!(expired.removals.len(), 2);
    assert!(
        expired
            .removals
            .iter()
            .all(|removal| removal.why == Removal::Expired)
    );

    // n0 not ready (its lease lapsed), n1 cordoned: both rescinded before they expire.
    nodes[0].status.as_mut().unwrap().conditions[0].status =
        pacer_schemas::condition::ConditionStatus::Unknown;
    nodes[1].spec.unschedulable = Some(true);
    let rescinded = plan(at(1), &nodes, &[], &offers, &frameworks);
    let reasons: Vec<&Removal> = rescinded
        .removals
        .iter()
        .map(|removal| &removal.why)
        .collect();
    assert_eq!(
        reasons,
        [
            &Removal::Rescinded("node n0 is not ready".to_owned()),
            &Removal::Rescinded("node n1 is unschedulable".to_owned())
        ]
    );
    assert!(rescinded.offers.is_empty());
    // A node that is gone, or whose resources something else took, is rescinded too.
    let taken = [running("other", "n1", "*", 1.0, 128.0)];
    let fresh = [node("n1", 4.0, 4096.0, "*")];
    let removed = plan(at(1), &fresh, &taken, &offers, &frameworks);
    let reasons: Vec<&Removal> = removed
        .removals
        .iter()
        .map(|removal| &removal.why)
        .collect();
    assert_eq!(
        reasons,
        [
            &Removal::Rescinded("node n0 is gone".to_owned()),
            &Removal::Rescinded("node n1 no longer has the offered resources".to_owned())
        ]
    );
}

#[test]
fn accepts_must_fit_the_offer() {
    let nodes = [node("n0", 4.0, 4096.0, "*")];
    let frameworks = [framework("fa", json!({"role": "a"}))];
    let offer = open_offer(&plan(at(0), &nodes, &[], &[], &frameworks), "n0");
    let instances = plan_accept(
        &offer,
        &[launch("j1", 2.0, 1024.0, 2), launch("j2", 2.0, 1024.0, 1)],
        at(1),
    )
    .unwrap();
    assert_eq!(instances[0].spec.node_name.as_deref(), Some("n0"));
    assert_eq!(instances[0].spec.role.as_deref(), Some("a"));
    assert_eq!(instances[0].spec.host_ports, Some(vec![31000, 31001]));
    assert_eq!(instances[1].spec.host_ports, Some(vec![31002]));
    assert_eq!(
        instances[0].metadata.labels.as_ref().unwrap()["pacer.dev/framework"],
        "fa"
    );
    assert_eq!(
        plan_accept(&offer, &[launch("big", 4.5, 1.0, 0)], at(1)).unwrap_err(),
        AcceptError::Insufficient {
            resource: "cpus".to_owned()
        }
    );
    assert!(matches!(
        plan_accept(&offer, &[launch("many", 1.0, 1.0, 6)], at(1)),
        Err(AcceptError::Ports { .. })
    ));
    let mut outside = launch("outside", 1.0, 1.0, 1);
    outside.host_ports = Some(vec![8080]);
    assert!(matches!(
        plan_accept(&offer, &[outside], at(1)),
        Err(AcceptError::PortNotOffered { port: 8080, .. })
    ));
    assert_eq!(
        plan_accept(
            &offer,
            &[launch("d", 1.0, 1.0, 0), launch("d", 1.0, 1.0, 0)],
            at(1)
        )
        .unwrap_err(),
        AcceptError::Duplicate("jobs/d".to_owned())
    );
    assert_eq!(
        plan_accept(&offer, &[], at(1)).unwrap_err(),
        AcceptError::Empty
    );

    // An accepted offer whose launches do not fit is deleted and the refusal recorded.
    let mut refused = offer.clone();
    refused.status = Some(OfferStatus {
        phase: OfferPhase::Accepted,
        launch: vec![launch("big", 8.0, 1.0, 0)],
        ..OfferStatus::default()
    });
    let round = plan(at(1), &nodes, &[], &[refused], &frameworks);
    assert!(matches!(round.removals[0].why, Removal::Refused(_)));
    assert!(
        round.statuses[0]
            .1
            .last_refused_accept
            .as_deref()
            .unwrap()
            .contains("more cpus")
    );
}

async fn put<K: Resource>(store: &dyn Store, object: &K) {
    let key = registry_key::<K>(object.meta().namespace.as_deref(), object.meta().name_str());
    let value = encode_at(&key, object).unwrap();
    match store.get(&key).await.unwrap() {
        Some(kv) => store
            .update(&key, value, kv.mod_revision, None)
            .await
            .unwrap(),
        None => store.create(&key, value, None).await.unwrap(),
    };
}

async fn list<K: Resource>(store: &dyn Store) -> Vec<K> {
    let page = store
        .list(
            &crate::store_source::registry_prefix::<K>(),
            &ListOptions::default(),
        )
        .await
        .unwrap();
    page.items
        .iter()
        .map(|kv| decode_stored(&kv.value, kv.mod_revision).unwrap())
        .collect()
}

#[tokio::test]
async fn accept_consumes_the_offer_in_one_transaction() {
    let (_dir, store) = store();
    let nodes = [node("n0", 4.0, 4096.0, "*")];
    let frameworks = [framework("fa", json!({"role": "a"}))];
    let made = plan(at(0), &nodes, &[], &[], &frameworks).offers.remove(0);
    put(store.as_ref(), &made).await;
    let offer = list::<Offer>(store.as_ref()).await.remove(0);

    let launched = accept(
        store.as_ref(),
        None,
        &offer,
        &[launch("j1", 1.0, 512.0, 1)],
        at(1),
    )
    .await
    .unwrap();
    let Accepted::Launched(instances) = launched else {
        panic!("the accept did not commit")
    };
    assert_eq!(instances.len(), 1);
    assert!(list::<Offer>(store.as_ref()).await.is_empty());
    let stored = list::<Instance>(store.as_ref()).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].spec.node_name.as_deref(), Some("n0"));
    assert_eq!(
        stored[0].metadata.annotations.as_ref().unwrap()[super::accept::OFFER_ANNOTATION],
        offer.metadata.name_str()
    );

    // The same offer again (another framework that read it): nothing is written.
    let again = accept(
        store.as_ref(),
        None,
        &offer,
        &[launch("j2", 1.0, 512.0, 0)],
        at(1),
    )
    .await
    .unwrap();
    assert!(matches!(again, Accepted::Stale));
    assert_eq!(list::<Instance>(store.as_ref()).await.len(), 1);
    // An offer that changed since it was read (e.g. declined) is stale too, and a refusal
    // writes nothing.
    put(store.as_ref(), &made).await;
    let current = list::<Offer>(store.as_ref()).await.remove(0);
    let mut declined = current.clone();
    declined.status = Some(OfferStatus {
        phase: OfferPhase::Declined,
        ..OfferStatus::default()
    });
    put(store.as_ref(), &declined).await;
    let stale = accept(
        store.as_ref(),
        None,
        &current,
        &[launch("j3", 1.0, 1.0, 0)],
        at(2),
    )
    .await
    .unwrap();
    assert!(matches!(stale, Accepted::Stale));
    let refused = accept(
        store.as_ref(),
        None,
        &current,
        &[launch("j4", 9.0, 1.0, 0)],
        at(2),
    )
    .await;
    assert!(matches!(refused, Err(AcceptFailure::Refused(_))));
    assert_eq!(list::<Instance>(store.as_ref()).await.len(), 1);
}

/// SplitMix64: a small deterministic generator, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Per node: what its bound, non-terminal instances hold fits in its allocatable, and no host
/// port is held twice. Panics naming the round and listing the node's instances (with the
/// offer each consumed) on an over-allocation.
pub(crate) fn check_no_double_allocation(round: usize, nodes: &[Node], instances: &[Instance]) {
    let on = |node: &str| -> Vec<String> {
        instances
            .iter()
            .filter(|i| i.spec.node_name.as_deref() == Some(node) && !i.phase().is_terminal())
            .map(|i| {
                let offer = i
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(OFFER_ANNOTATION))
                    .cloned()
                    .unwrap_or_default();
                format!(
                    "{}/{} via {offer} (role {:?}, rv {:?}, ports {:?})",
                    i.metadata.namespace_str(),
                    i.metadata.name_str(),
                    i.spec.role,
                    i.metadata.resource_version,
                    i.spec.host_ports
                )
            })
            .collect()
    };
    let mut used: HashMap<&str, Scalars> = HashMap::new();
    let mut ports: HashSet<(&str, i32)> = HashSet::new();
    for instance in instances {
        let Some(node) = instance.spec.node_name.as_deref() else {
            continue;
        };
        if instance.phase().is_terminal() {
            continue;
        }
        let scalars = Scalars::from_spec(instance.spec.template.as_ref().unwrap());
        let sum = used.entry(node).or_default();
        *sum = sum.plus(&scalars);
        for port in instance.spec.host_ports.iter().flatten() {
            assert!(
                ports.insert((node, *port)),
                "round {round}: host port {port} on {node} held twice: {:#?}",
                on(node)
            );
        }
    }
    for node in nodes {
        let allocatable = Scalars::from_resources(&node.status.as_ref().unwrap().allocatable);
        if let Some(used) = used.get(node.metadata.name_str()) {
            assert!(
                used.fits_in(&allocatable),
                "round {round}: node {} over-allocated: {used:?} > {allocatable:?}: {:#?}",
                node.metadata.name_str(),
                on(node.metadata.name_str())
            );
        }
    }
}

/// Three frameworks (two roles, one weighted) accept random launches from whichever open
/// offers they see — often the same offer at once, and sometimes offers from an older
/// snapshot — while instances finish, nodes flap and offers expire. Over thousands of rounds
/// on the real store, no node is ever given more than its allocatable nor a host port twice,
/// and contention really happened (stale accepts were refused by the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_frameworks_never_double_allocate() {
    const ROUNDS: usize = 2_000;
    // On tmpfs when there is one: the property is about transactions, not fsync latency.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
    let broker = OfferBroker::new(
        Arc::clone(&store),
        Informers::new(Arc::clone(&store)),
        Arc::new(ManualClock::new(at(0))),
        OfferBrokerConfig::default(),
    );
    let mut nodes: Vec<Node> = (0..4)
        .map(|index| {
            node(
                &format!("n{index}"),
                4.0,
                4096.0,
                if index == 3 { "b" } else { "*" },
            )
        })
        .collect();
    for node in &nodes {
        put(store.as_ref(), node).await;
    }
    for framework in [
        framework("fa", json!({"role": "a"})),
        framework(
            "fb",
            json!({"role": "b", "weight": 2, "offerTimeoutSeconds": 3}),
        ),
        framework(
            "fc",
            json!({"role": "a", "quota": {"cpus": 6, "mem": 100000}}),
        ),
    ] {
        put(store.as_ref(), &framework).await;
    }
    let mut rng = Rng(0x5EED_0FFE_2026);
    let mut stale_snapshot: Vec<Offer> = Vec::new();
    let (mut launched, mut stale, mut refused, mut next_id) = (0usize, 0usize, 0usize, 0usize);
    for round in 0..ROUNDS {
        let now = at(i64::try_from(round).unwrap());
        // The broker's round on the store's current state.
        let instances = list::<Instance>(store.as_ref()).await;
        let offers = list::<Offer>(store.as_ref()).await;
        let frameworks = list::<Framework>(store.as_ref()).await;
        let stored_nodes = list::<Node>(store.as_ref()).await;
        let round_plan = plan(now, &stored_nodes, &instances, &offers, &frameworks);
        broker.write(round_plan, None).await.unwrap();

        // The frameworks answer, concurrently, from one snapshot (or an old one).
        let snapshot = list::<Offer>(store.as_ref()).await;
        let mut answers = Vec::new();
        for _ in 0..3 {
            let source = if rng.below(8) == 0 && !stale_snapshot.is_empty() {
                &stale_snapshot
            } else {
                &snapshot
            };
            if source.is_empty() {
                continue;
            }
            let offer = source[usize::try_from(rng.below(source.len() as u64)).unwrap()].clone();
            let launches: Vec<OfferLaunch> = (0..1 + rng.below(3))
                .map(|_| {
                    next_id += 1;
                    launch(
                        &format!("job-{next_id}"),
                        0.5 * (1 + rng.below(4)) as f64,
                        256.0 * (1 + rng.below(8)) as f64,
                        usize::try_from(rng.below(3)).unwrap(),
                    )
                })
                .collect();
            let store = Arc::clone(&store);
            answers.push(async move { accept(store.as_ref(), None, &offer, &launches, now).await });
        }
        for answer in futures::future::join_all(answers).await {
            match answer {
                Ok(Accepted::Launched(instances)) => launched += instances.len(),
                Ok(Accepted::Stale) => stale += 1,
                Err(AcceptFailure::Refused(_)) => refused += 1,
                Err(AcceptFailure::Controller(error)) => panic!("round {round}: {error}"),
            }
        }
        if rng.below(4) == 0 {
            stale_snapshot = snapshot;
        }

        // Churn, in one transaction: instances end (and are deleted, as the deployment
        // controller deletes finished ones), a node flaps.
        let mut churn = pacer_store::Txn::new();
        for instance in list::<Instance>(store.as_ref()).await {
            if rng.below(3) == 0 {
                let key = registry_key::<Instance>(
                    Some(instance.metadata.namespace_str()),
                    instance.metadata.name_str(),
                );
                churn = churn
                    .when(
                        key.clone(),
                        pacer_store::Expect::ModRevision(object_revision(&instance).unwrap()),
                    )
                    .delete(key);
            }
        }
        if rng.below(10) == 0 {
            let index = usize::try_from(rng.below(nodes.len() as u64)).unwrap();
            let flip = nodes[index].spec.unschedulable != Some(true);
            nodes[index].spec.unschedulable = Some(flip);
            let key = registry_key::<Node>(None, nodes[index].metadata.name_str());
            churn = churn.put(key.clone(), encode_at(&key, &nodes[index]).unwrap());
        }
        if !churn.ops.is_empty() {
            store.txn(churn).await.unwrap();
        }

        check_no_double_allocation(round, &nodes, &list::<Instance>(store.as_ref()).await);
    }
    println!(
        "{ROUNDS} rounds: {launched} instances launched, {stale} stale accepts, {refused} refused"
    );
    // The run exercised what it claims to: many launches, real contention, refusals.
    assert!(launched > ROUNDS / 2, "only {launched} instances launched");
    assert!(
        stale > ROUNDS / 10,
        "only {stale} stale accepts: too little contention"
    );
    assert!(refused > 0, "no accept was refused");
    // Every framework got offers over the run (DRF shares and the weight show in statuses).
    let statuses: Vec<FrameworkStatus> = list::<Framework>(store.as_ref())
        .await
        .into_iter()
        .map(|framework| framework.status.unwrap())
        .collect();
    assert_eq!(statuses.len(), 3);
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The controller loop on the store: it offers, honours a decline's filter, accepts through
/// an offer's status (as an external scheduler over HTTP would), expires offers at
/// `expiresAt` on its clock, and rescinds the offer of a node that stops being ready.
#[tokio::test]
async fn the_broker_loop_offers_accepts_declines_expires_and_rescinds() {
    let (_dir, store) = store();
    let clock = Arc::new(ManualClock::new(at(0)));
    put(store.as_ref(), &node("n0", 4.0, 4096.0, "*")).await;
    put(
        store.as_ref(),
        &framework("batch", json!({"role": "batch", "offerTimeoutSeconds": 60})),
    )
    .await;
    let shutdown = CancellationToken::new();
    let broker = OfferBroker::new(
        Arc::clone(&store),
        Informers::new(Arc::clone(&store)),
        Arc::clone(&clock) as Arc<dyn Clock>,
        OfferBrokerConfig {
            debounce: Duration::from_millis(5),
            resync: Duration::from_secs(3600),
            ..OfferBrokerConfig::default()
        },
    );
    let token = shutdown.clone();
    let running = tokio::spawn(async move { broker.run(None, token).await.unwrap() });
    let s = store.as_ref();

    // An offer of the whole node.
    eventually("an offer", || async { list::<Offer>(s).await.len() == 1 }).await;
    let offer = list::<Offer>(s).await.remove(0);
    assert_eq!(offer.spec.framework.as_deref(), Some("batch"));
    assert_eq!(offer.spec.resources.mem, 4096.0);

    // Declined for 30 s: gone, filtered, and offered again once the filter ends.
    let mut declined = offer.clone();
    declined.status = Some(OfferStatus {
        phase: OfferPhase::Declined,
        refuse_seconds: Some(30.0),
        ..OfferStatus::default()
    });
    put(s, &declined).await;
    eventually("the filter", || async {
        list::<Offer>(s).await.is_empty()
            && list::<Framework>(s).await[0]
                .status
                .as_ref()
                .is_some_and(|status| status.filters.len() == 1)
    })
    .await;
    clock.set(at(31));
    eventually("a new offer after the filter", || async {
        list::<Offer>(s).await.len() == 1
    })
    .await;

    // Accepted through the status, as over HTTP: the instance is created, bound, the offer
    // gone, and the rest of the node offered again.
    let offer = list::<Offer>(s).await.remove(0);
    let mut accepted = offer.clone();
    accepted.status = Some(OfferStatus {
        phase: OfferPhase::Accepted,
        answered_by: Some("batch".to_owned()),
        launch: vec![launch("job-1", 1.0, 1024.0, 1)],
        ..OfferStatus::default()
    });
    put(s, &accepted).await;
    eventually("the launched instance and a smaller offer", || async {
        let offers = list::<Offer>(s).await;
        list::<Instance>(s).await.len() == 1
            && offers.len() == 1
            && offers[0].metadata.name != offer.metadata.name
    })
    .await;
    let instance = list::<Instance>(s).await.remove(0);
    assert_eq!(instance.spec.node_name.as_deref(), Some("n0"));
    assert_eq!(instance.spec.host_ports, Some(vec![31000]));
    let smaller = list::<Offer>(s).await.remove(0);
    assert_eq!(smaller.spec.resources.cpus, 3.0);
    assert_eq!(smaller.spec.resources.ports[0].begin, 31001);
    let status = list::<Framework>(s).await[0].status.clone().unwrap();
    assert_eq!(status.role_allocated.cpus, 4.0);

    // Unanswered, it expires at its expiry (and the node is offered anew).
    clock.set(at(31 + 61));
    eventually("the offer expired and was replaced", || async {
        let offers = list::<Offer>(s).await;
        offers.len() == 1 && offers[0].metadata.name != smaller.metadata.name
    })
    .await;

    // The node's lease lapses: its offer is rescinded, and none made.
    let mut lost = node("n0", 4.0, 4096.0, "*");
    lost.status.as_mut().unwrap().conditions[0].status =
        pacer_schemas::condition::ConditionStatus::Unknown;
    put(s, &lost).await;
    eventually("the offer rescinded", || async {
        list::<Offer>(s).await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(list::<Offer>(s).await.is_empty());

    shutdown.cancel();
    running.await.unwrap();
}

/// The store, with every event of an Instance watch delivered `delay` late: the broker's
/// Instance cache then lags its Offer cache, as it may when the two watches are served
/// unevenly.
#[derive(Debug)]
struct LaggingInstanceWatch {
    inner: Arc<dyn Store>,
    delay: Duration,
}

#[async_trait::async_trait]
impl Store for LaggingInstanceWatch {
    async fn get(&self, key: &str) -> pacer_store::Result<Option<pacer_store::KeyValue>> {
        self.inner.get(key).await
    }

    async fn list(
        &self,
        prefix: &str,
        options: &ListOptions,
    ) -> pacer_store::Result<pacer_store::ListPage> {
        self.inner.list(prefix, options).await
    }

    async fn txn(&self, txn: pacer_store::Txn) -> pacer_store::Result<pacer_store::TxnOutcome> {
        self.inner.txn(txn).await
    }

    async fn watch(
        &self,
        prefix: &str,
        after: pacer_store::Revision,
    ) -> pacer_store::Result<pacer_store::WatchStream> {
        let stream = self.inner.watch(prefix, after).await?;
        if !prefix.starts_with("/registry/instances/") {
            return Ok(stream);
        }
        let delay = self.delay;
        Ok(Box::pin(stream.then(move |event| async move {
            tokio::time::sleep(delay).await;
            event
        })))
    }

    async fn current_revision(&self) -> pacer_store::Result<pacer_store::Revision> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: pacer_store::Revision) -> pacer_store::Result<()> {
        self.inner.compact(revision).await
    }

    async fn lease_grant(&self, ttl_seconds: i64) -> pacer_store::Result<pacer_store::LeaseId> {
        self.inner.lease_grant(ttl_seconds).await
    }

    async fn lease_keep_alive(&self, lease: pacer_store::LeaseId) -> pacer_store::Result<i64> {
        self.inner.lease_keep_alive(lease).await
    }

    async fn lease_revoke(&self, lease: pacer_store::LeaseId) -> pacer_store::Result<()> {
        self.inner.lease_revoke(lease).await
    }

    async fn lease_time_to_live(&self, lease: pacer_store::LeaseId) -> pacer_store::Result<i64> {
        self.inner.lease_time_to_live(lease).await
    }
}

/// An in-server accept (the placement controller's: the offer deleted and a pending Instance
/// bound in one transaction) seen by the broker's Offer cache before its Instance cache: the
/// broker must not offer the node's resources again from a view that misses the binding. It
/// waits for its Instance cache to reach the deletion's revision, so the full node is never
/// offered again.
#[tokio::test]
async fn an_accept_seen_first_as_an_offer_deletion_is_not_offered_twice() {
    let (_dir, inner) = store();
    let store: Arc<dyn Store> = Arc::new(LaggingInstanceWatch {
        inner,
        delay: Duration::from_millis(400),
    });
    let s = store.as_ref();
    put(s, &node("n0", 4.0, 4096.0, "*")).await;
    put(
        s,
        &framework("fp", json!({"role": "*", "offerTimeoutSeconds": 60})),
    )
    .await;
    let pending: Instance = serde_json::from_value(json!({
        "apiVersion": "pacer.dev/v1", "kind": "Instance",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"app": "app", "appVersion": "v1", "goal": "Running",
                 "template": {"cmd": "x", "cpus": 4, "mem": 4096, "portDefinitions": []}},
    }))
    .unwrap();
    put(s, &pending).await;
    let shutdown = CancellationToken::new();
    let broker = OfferBroker::new(
        Arc::clone(&store),
        Informers::new(Arc::clone(&store)),
        Arc::new(crate::rounds::SystemClock),
        OfferBrokerConfig {
            debounce: Duration::from_millis(10),
            ..OfferBrokerConfig::default()
        },
    );
    let running = tokio::spawn(broker.run(None, shutdown.clone()));
    eventually("an offer of the whole node", || async {
        list::<Offer>(s).await.len() == 1
    })
    .await;
    let offer = list::<Offer>(s).await.remove(0);
    let pending = list::<Instance>(s).await.remove(0);

    // The accept: the offer deleted, the instance bound to the whole node.
    let mut bound = pending.clone();
    bound.spec.node_name = Some("n0".to_owned());
    bound.spec.role = Some("*".to_owned());
    bound.spec.host_ports = Some(Vec::new());
    super::accept::annotate_offer(&mut bound, offer.metadata.name_str());
    bound.metadata.resource_version = None;
    let key = registry_key::<Instance>(Some("default"), "p");
    let unit = super::accept::bind_unit(
        &offer,
        object_revision(&offer).unwrap(),
        vec![KeyWrite::update(
            key.clone(),
            object_revision(&pending).unwrap(),
            encode_at(&key, &bound).unwrap(),
        )],
    );
    let written = write_units(s, None, vec![unit]).await.unwrap();
    assert_eq!((written.committed, written.conflicts), (1, 0));

    // Long enough for the lagging Instance watch to deliver the binding and for several
    // broker rounds: the node, now full, is never offered again.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < deadline {
        let offers = list::<Offer>(s).await;
        assert!(
            offers.is_empty(),
            "the node was offered again while fully bound: {offers:#?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// An offer deleted by someone else with no Instance written alongside (a user's `kubectl
/// delete offer`): the Instance cache never reaches that revision, so the broker reads the
/// Instances from the store after `foreign_wait` and offers the node again — it does not wait
/// for a cache-sync timeout (an hour here).
#[tokio::test]
async fn an_offer_deleted_without_instance_writes_is_offered_again() {
    let (_dir, store) = store();
    let s = store.as_ref();
    put(s, &node("n0", 4.0, 4096.0, "*")).await;
    put(
        s,
        &framework("fp", json!({"role": "*", "offerTimeoutSeconds": 600})),
    )
    .await;
    let shutdown = CancellationToken::new();
    let broker = OfferBroker::new(
        Arc::clone(&store),
        Informers::new(Arc::clone(&store)),
        Arc::new(crate::rounds::SystemClock),
        OfferBrokerConfig {
            debounce: Duration::from_millis(10),
            cache_sync_timeout: Duration::from_secs(3600),
            ..OfferBrokerConfig::default()
        },
    );
    let running = tokio::spawn(broker.run(None, shutdown.clone()));
    eventually("an offer of the node", || async {
        list::<Offer>(s).await.len() == 1
    })
    .await;
    let first = list::<Offer>(s).await.remove(0);
    store
        .delete(
            &registry_key::<Offer>(None, first.metadata.name_str()),
            object_revision(&first).unwrap(),
        )
        .await
        .unwrap();
    eventually("the node offered again", || async {
        list::<Offer>(s)
            .await
            .iter()
            .any(|offer| offer.metadata.name_str() != first.metadata.name_str())
    })
    .await;
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
