//! The node lifecycle controller against a real embedded store, with a [`ManualClock`]: the
//! test plays the agents (it writes Lease renewals and Instance status straight to the store)
//! and moves time forward; the controller must wake at each deadline by itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pacer_schemas::condition::{ConditionStatus, find_condition};
use pacer_schemas::instance::{InstanceGoal, InstancePhase};
use pacer_store::embedded::EmbeddedStore;
use pacer_store::{Election, ListOptions};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::decide::{
    NODE_LEASE_EXPIRED, NODE_LEASE_RENEWED, NODE_UNREACHABLE, READY, UNREACHABLE_EXPUNGED,
    UNREACHABLE_INACTIVE,
};
use super::*;
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

/// Creates or overwrites `key` (the test is the only other writer).
async fn put(store: &dyn Store, key: &str, value: Value) {
    let value = serde_json::to_vec(&value).unwrap();
    match store.get(key).await.unwrap() {
        Some(kv) => store
            .update(key, value, kv.mod_revision, None)
            .await
            .unwrap(),
        None => store.create(key, value, None).await.unwrap(),
    };
}

async fn add_node(store: &dyn Store, name: &str, agentless: bool) {
    let annotations = if agentless {
        json!({AGENTLESS_ANNOTATION: "true"})
    } else {
        json!({})
    };
    put(
        store,
        &format!("/registry/nodes/{name}"),
        json!({
            "apiVersion": "pacer.dev/v1", "kind": "Node",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "generation": 1,
                         "creationTimestamp": at(0), "annotations": annotations},
            "spec": {"unschedulable": false, "role": "*"},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "AgentReady"}]},
        }),
    )
    .await;
}

/// The agent of `node` renews its lease at `renewed` for `duration` seconds.
async fn renew(store: &dyn Store, node: &str, renewed: i64, duration: i32) {
    put(
        store,
        &format!("/registry/leases/{NODE_LEASE_NAMESPACE}/{node}"),
        json!({
            "apiVersion": "pacer.dev/v1", "kind": "Lease",
            "metadata": {"name": node, "namespace": NODE_LEASE_NAMESPACE, "uid": format!("lease-{node}")},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": duration,
                     "acquireTime": at(0), "renewTime": at(renewed)},
        }),
    )
    .await;
}

async fn add_instance(store: &dyn Store, name: &str, node: &str, strategy: Value, phase: &str) {
    put(
        store,
        &format!("/registry/instances/default/{name}"),
        json!({
            "apiVersion": "pacer.dev/v1", "kind": "Instance",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "generation": 2, "creationTimestamp": at(0)},
            "spec": {"app": "web", "appVersion": "2026-01-01T00:00:00Z", "nodeName": node,
                     "goal": "Running",
                     "template": {"cmd": "sleep 1000", "unreachableStrategy": strategy}},
            "status": {"phase": phase},
        }),
    )
    .await;
}

async fn node(store: &dyn Store, name: &str) -> Node {
    let kv = store
        .get(&format!("/registry/nodes/{name}"))
        .await
        .unwrap()
        .unwrap();
    decode_stored(&kv.value, kv.mod_revision).unwrap()
}

async fn instance(store: &dyn Store, name: &str) -> Instance {
    let kv = store
        .get(&format!("/registry/instances/default/{name}"))
        .await
        .unwrap()
        .unwrap();
    decode_stored(&kv.value, kv.mod_revision).unwrap()
}

async fn event(store: &dyn Store, name: &str) -> Option<Value> {
    store
        .get(&format!("/registry/events/{EVENT_NAMESPACE}/{name}"))
        .await
        .unwrap()
        .map(|kv| serde_json::from_slice(&kv.value).unwrap())
}

fn ready_of(node: &Node) -> (ConditionStatus, Option<String>) {
    let ready = find_condition(&node.status.as_ref().unwrap().conditions, READY).unwrap();
    (ready.status.clone(), ready.reason.clone())
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn config() -> NodeLifecycleConfig {
    NodeLifecycleConfig {
        debounce: Duration::from_millis(10),
        ..NodeLifecycleConfig::default()
    }
}

fn start(
    store: &Arc<dyn Store>,
    clock: &Arc<ManualClock>,
    leadership: Option<Arc<Leadership>>,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), NodeLifecycleError>>,
) {
    let shutdown = CancellationToken::new();
    let clock: Arc<dyn Clock> = Arc::clone(clock) as Arc<dyn Clock>;
    let controller = NodeLifecycleController::new(
        Arc::clone(store),
        Informers::new(Arc::clone(store)),
        clock,
        config(),
    );
    let task = tokio::spawn(controller.run(leadership, shutdown.clone()));
    (shutdown, task)
}

/// Every instance's `(phase, goal)`, for "nothing else changed" checks.
async fn phases(store: &dyn Store) -> Vec<(String, InstancePhase, Option<InstanceGoal>)> {
    let page = store
        .list("/registry/instances/", &ListOptions::default())
        .await
        .unwrap();
    page.items
        .iter()
        .map(|kv| {
            let instance: Instance = decode_stored(&kv.value, kv.mod_revision).unwrap();
            (
                instance.metadata.name_str().to_owned(),
                instance.phase(),
                instance.spec.goal.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_expired_lease_walks_the_node_and_its_instances_through_the_strategy() {
    let (_dir, store) = store();
    let s = store.as_ref();
    // n1: its agent renews (10 s leases); n2: agentless, never renews; n3: a long lease.
    add_node(s, "n1", false).await;
    add_node(s, "n2", true).await;
    add_node(s, "n3", false).await;
    renew(s, "n1", 0, 10).await;
    renew(s, "n3", 0, 3600).await;
    let short = json!({"inactiveAfterSeconds": 10, "expungeAfterSeconds": 30});
    add_instance(s, "a-1", "n1", short.clone(), "Running").await;
    add_instance(s, "b-1", "n1", json!("disabled"), "Running").await;
    add_instance(s, "c-1", "n1", short.clone(), "Finished").await;
    add_instance(s, "d-1", "n2", short.clone(), "Running").await;
    add_instance(s, "e-1", "n3", short.clone(), "Running").await;
    // The controller starts observing at t=0 (lease expiry counts from no earlier than that).
    let clock = Arc::new(ManualClock::new(at(0)));
    let (shutdown, task) = start(&store, &clock, None);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Everything is fine at t=5 (and the agentless n2 is never checked).
    clock.set(at(5));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ready_of(&node(s, "n1").await).0, ConditionStatus::True);
    assert!(event(s, "n1.nodenotready").await.is_none());

    // t=10: n1's lease ends. The controller wakes by itself (no store change).
    clock.set(at(10));
    eventually("n1 unreachable", || async {
        ready_of(&node(s, "n1").await)
            == (ConditionStatus::Unknown, Some(NODE_LEASE_EXPIRED.into()))
    })
    .await;
    let n1 = node(s, "n1").await;
    assert_eq!(n1.metadata.generation, Some(1), "a status write");
    let ready = find_condition(&n1.status.unwrap().conditions, READY)
        .unwrap()
        .clone();
    assert_eq!(ready.last_transition_time, Some(at(10)));
    assert!(
        ready.message.unwrap().contains("expired"),
        "a reason to read"
    );
    let recorded = event(s, "n1.nodenotready")
        .await
        .expect("a NodeNotReady Event");
    assert_eq!(recorded["type"], "Warning");
    assert_eq!(recorded["reason"], "NodeNotReady");
    assert_eq!(recorded["involvedObject"]["kind"], "Node");
    assert_eq!(recorded["involvedObject"]["name"], "n1");
    assert_eq!(recorded["count"], 1);
    eventually("a-1 and b-1 Lost", || async {
        instance(s, "a-1").await.phase() == InstancePhase::Lost
            && instance(s, "b-1").await.phase() == InstancePhase::Lost
    })
    .await;
    let a = instance(s, "a-1").await;
    let status = a.status.as_ref().unwrap();
    assert_eq!(status.unreachable_since, Some(at(10)));
    assert_eq!(status.reason.as_deref(), Some(NODE_UNREACHABLE));
    assert_eq!(a.spec.goal, Some(InstanceGoal::Running));
    assert_eq!(a.metadata.generation, Some(2), "a status write");
    // Terminal and other nodes' instances, and the agentless node, are left alone.
    assert_eq!(instance(s, "c-1").await.phase(), InstancePhase::Finished);
    assert_eq!(instance(s, "d-1").await.phase(), InstancePhase::Running);
    assert_eq!(instance(s, "e-1").await.phase(), InstancePhase::Running);
    assert_eq!(ready_of(&node(s, "n2").await).0, ConditionStatus::True);
    assert_eq!(ready_of(&node(s, "n3").await).0, ConditionStatus::True);

    // t=19: not yet inactive. t=20: decommissioned (spec change: generation + 1).
    clock.set(at(19));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        instance(s, "a-1").await.spec.goal,
        Some(InstanceGoal::Running)
    );
    clock.set(at(20));
    eventually("a-1 decommissioned", || async {
        instance(s, "a-1").await.spec.goal == Some(InstanceGoal::Decommissioned)
    })
    .await;
    let a = instance(s, "a-1").await;
    assert_eq!(a.metadata.generation, Some(3));
    let status = a.status.as_ref().unwrap();
    assert_eq!(status.phase, InstancePhase::Lost);
    assert_eq!(status.reason.as_deref(), Some(UNREACHABLE_INACTIVE));
    assert_eq!(status.unreachable_since, Some(at(10)), "first loss kept");
    // `disabled`: never replaced.
    let b = instance(s, "b-1").await;
    assert_eq!(b.spec.goal, Some(InstanceGoal::Running));
    assert_eq!(b.phase(), InstancePhase::Lost);

    // t=40: expunged: Gone (terminal).
    clock.set(at(40));
    eventually("a-1 Gone", || async {
        instance(s, "a-1").await.phase() == InstancePhase::Gone
    })
    .await;
    let status = instance(s, "a-1").await.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some(UNREACHABLE_EXPUNGED));
    assert_eq!(status.finished_at, Some(at(40)));
    assert_eq!(instance(s, "b-1").await.phase(), InstancePhase::Lost);

    // t=50: the agent is back and renews: Ready again, with an Event; b-1 is left to it.
    clock.set(at(50));
    renew(s, "n1", 50, 10).await;
    eventually("n1 ready again", || async {
        ready_of(&node(s, "n1").await) == (ConditionStatus::True, Some(NODE_LEASE_RENEWED.into()))
    })
    .await;
    let recorded = event(s, "n1.nodeready").await.expect("a NodeReady Event");
    assert_eq!(recorded["type"], "Normal");
    let before = phases(s).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(phases(s).await, before, "nothing else written");
    assert_eq!(instance(s, "b-1").await.phase(), InstancePhase::Lost);

    // The agent reports b-1 running again; its lease then lapses a second time: b-1 is lost
    // anew (a new unreachableSince), and the node's Event count goes up.
    let mut b = instance(s, "b-1").await;
    b.status.as_mut().unwrap().phase = InstancePhase::Running;
    b.metadata.resource_version = None;
    put(
        s,
        "/registry/instances/default/b-1",
        serde_json::to_value(&b).unwrap(),
    )
    .await;
    clock.set(at(60));
    eventually("b-1 lost again", || async {
        let b = instance(s, "b-1").await;
        b.phase() == InstancePhase::Lost && b.status.unwrap().unreachable_since == Some(at(60))
    })
    .await;
    eventually("the NodeNotReady Event repeated", || async {
        event(s, "n1.nodenotready")
            .await
            .is_some_and(|e| e["count"] == 2)
    })
    .await;

    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn without_a_lease_a_node_is_unreachable_after_the_grace_period() {
    let (_dir, store) = store();
    let s = store.as_ref();
    add_node(s, "n1", false).await;
    // Marathon's {0, 0}: replaced and expunged at once.
    add_instance(
        s,
        "a-1",
        "n1",
        json!({"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0}),
        "Staging",
    )
    .await;
    let clock = Arc::new(ManualClock::new(at(0)));
    let (shutdown, task) = start(&store, &clock, None);
    // Let the controller start observing at t=0 (the grace counts from no earlier than that).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // (clock, expected Ready of n1, expected phase of a-1)
    let table = [
        (39, ConditionStatus::True, InstancePhase::Staging),
        (40, ConditionStatus::Unknown, InstancePhase::Gone),
    ];
    for (now, ready, phase) in table {
        clock.set(at(now));
        tokio::time::sleep(Duration::from_millis(200)).await;
        eventually(
            &format!("t={now}: Ready {ready}, a-1 {phase:?}"),
            || async {
                ready_of(&node(s, "n1").await).0 == ready
                    && instance(s, "a-1").await.phase() == phase
            },
        )
        .await;
    }
    let a = instance(s, "a-1").await;
    assert_eq!(a.spec.goal, Some(InstanceGoal::Decommissioned));
    // The lease appears (the agent started late): Ready again.
    renew(s, "n1", 41, 10).await;
    clock.set(at(41));
    eventually("n1 ready", || async {
        ready_of(&node(s, "n1").await).0 == ConditionStatus::True
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_deposed_leader_stops_and_writes_nothing() {
    let (_dir, store) = store();
    let s = store.as_ref();
    add_node(s, "n1", false).await;
    renew(s, "n1", 0, 10).await;
    let lease = store.lease_grant(30).await.unwrap();
    let election = Election::new(Arc::clone(&store), "/elections/node-lifecycle/").unwrap();
    let leadership = Arc::new(election.campaign(lease, b"me".to_vec()).await.unwrap());
    let clock = Arc::new(ManualClock::new(at(0)));
    let (_shutdown, task) = start(&store, &clock, Some(leadership));
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.lease_revoke(lease).await.unwrap();
    clock.set(at(10));
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the controller stops")
        .unwrap();
    assert!(
        matches!(result, Err(NodeLifecycleError::LostLeadership)),
        "{result:?}"
    );
    assert_eq!(ready_of(&node(s, "n1").await).0, ConditionStatus::True);
    assert!(event(s, "n1.nodenotready").await.is_none());
}

#[tokio::test]
async fn a_controller_starting_after_an_outage_gives_leases_one_duration_to_renew() {
    let (_dir, store) = store();
    let s = store.as_ref();
    // n1's lease was last renewed at t=0 (10 s); the control plane comes back at t=100.
    add_node(s, "n1", false).await;
    renew(s, "n1", 0, 10).await;
    let short = json!({"inactiveAfterSeconds": 0, "expungeAfterSeconds": 30});
    add_instance(s, "a-1", "n1", short, "Running").await;
    let clock = Arc::new(ManualClock::new(at(100)));
    let (shutdown, task) = start(&store, &clock, None);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Expired against the wall clock, but not yet as observed by this controller.
    clock.set(at(109));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ready_of(&node(s, "n1").await).0, ConditionStatus::True);
    assert_eq!(instance(s, "a-1").await.phase(), InstancePhase::Running);

    // The agent renews in time: nothing happens at t=110 either.
    renew(s, "n1", 109, 10).await;
    clock.set(at(110));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ready_of(&node(s, "n1").await).0, ConditionStatus::True);
    assert_eq!(instance(s, "a-1").await.phase(), InstancePhase::Running);

    // It stops renewing: unreachable once its lease really ends.
    clock.set(at(119));
    eventually("n1 unreachable and a-1 Lost", || async {
        ready_of(&node(s, "n1").await).0 == ConditionStatus::Unknown
            && instance(s, "a-1").await.phase() == InstancePhase::Lost
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
