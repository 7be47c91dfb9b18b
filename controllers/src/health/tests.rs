//! The health controller against a real embedded store with a [`ManualClock`]: the test plays
//! the agents (it writes Instances with health results straight to the store) and moves time;
//! the controller must kill exactly the instances past `maxConsecutiveFailures` outside their
//! grace period, wake by itself when a grace period ends, and file one Event per kill.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pacer_schemas::instance::InstancePhase;
use pacer_store::embedded::EmbeddedStore;
use serde_json::{Value, json};

use super::*;
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

/// An instance started at T0 whose one HTTP check (max 3, grace `grace`) reports `failures`
/// failures in a row, after a success or not.
async fn add_instance(
    store: &dyn Store,
    name: &str,
    max: i32,
    grace: i32,
    failures: i32,
    succeeded: bool,
) {
    let first_success = if succeeded { json!(at(1)) } else { Value::Null };
    put(
        store,
        &format!("/registry/instances/default/{name}"),
        json!({
            "apiVersion": "pacer.dev/v1", "kind": "Instance",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "generation": 1, "creationTimestamp": at(0)},
            "spec": {"app": "web", "appVersion": "2026-01-01T00:00:00Z", "nodeName": "node-1",
                     "goal": "Running", "hostPorts": [31000],
                     "template": {"cmd": "serve", "portDefinitions": [{"port": 0}],
                                  "healthChecks": [{"protocol": "HTTP", "path": "/health",
                                                    "portIndex": 0,
                                                    "maxConsecutiveFailures": max,
                                                    "gracePeriodSeconds": grace}]}},
            "status": {"phase": "Running", "runtimeId": "4242", "startedAt": at(0),
                       "healthy": false,
                       "health": [{"index": 0, "alive": false,
                                   "consecutiveFailures": failures,
                                   "firstSuccess": first_success,
                                   "lastFailure": at(2),
                                   "lastFailureCause": "HTTP status 503"}]},
        }),
    )
    .await;
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
        .get(&format!("/registry/events/default/{name}.unhealthy"))
        .await
        .unwrap()
        .map(|kv| serde_json::from_slice(&kv.value).unwrap())
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn decommissioned(instance: &Instance) -> bool {
    instance.spec.goal == Some(InstanceGoal::Decommissioned)
}

fn start(store: &Arc<dyn Store>, clock: &Arc<ManualClock>) -> CancellationToken {
    let shutdown = CancellationToken::new();
    let controller = HealthController::new(
        Arc::clone(store),
        Informers::new(Arc::clone(store)),
        Arc::clone(clock) as Arc<dyn Clock>,
        HealthConfig {
            debounce: Duration::from_millis(10),
            resync: Duration::from_secs(3600),
        },
    );
    let token = shutdown.clone();
    tokio::spawn(async move { controller.run(None, token).await.unwrap() });
    shutdown
}

#[tokio::test]
async fn kills_after_max_failures_and_files_an_event() {
    let (_dir, store) = store();
    let clock = Arc::new(ManualClock::new(at(100)));
    add_instance(store.as_ref(), "failing", 3, 30, 3, true).await;
    add_instance(store.as_ref(), "flaky", 3, 30, 2, true).await;
    add_instance(store.as_ref(), "never-killed", 0, 0, 40, true).await;
    let shutdown = start(&store, &clock);

    eventually("the failing instance is decommissioned", || async {
        decommissioned(&instance(store.as_ref(), "failing").await)
    })
    .await;
    let killed = instance(store.as_ref(), "failing").await;
    assert_eq!(killed.metadata.generation, Some(2));
    let status = killed.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some(HEALTH_CHECK_FAILED));
    assert_eq!(
        status.phase,
        InstancePhase::Running,
        "the agent reports the kill"
    );
    let record = event(store.as_ref(), "failing")
        .await
        .expect("an Unhealthy Event");
    assert_eq!(record["type"], "Warning");
    assert_eq!(record["reason"], UNHEALTHY);
    assert_eq!(record["involvedObject"]["name"], "failing");
    assert_eq!(record["involvedObject"]["kind"], "Instance");
    let message = record["message"].as_str().unwrap();
    assert!(
        message.contains("healthChecks[0] (HTTP /health on port index 0)")
            && message.contains("HTTP status 503"),
        "{message}"
    );

    // One more failure of the flaky one reaches the limit: the change wakes the controller.
    add_instance(store.as_ref(), "flaky", 3, 30, 3, true).await;
    eventually("the flaky instance is decommissioned", || async {
        decommissioned(&instance(store.as_ref(), "flaky").await)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!decommissioned(
        &instance(store.as_ref(), "never-killed").await
    ));
    assert!(event(store.as_ref(), "never-killed").await.is_none());
    shutdown.cancel();
}

#[tokio::test]
async fn the_grace_period_protects_until_it_ends() {
    let (_dir, store) = store();
    let clock = Arc::new(ManualClock::new(at(10)));
    // Failing from the start, never passed, grace 60 s from T0.
    add_instance(store.as_ref(), "slow-start", 3, 60, 5, false).await;
    let shutdown = start(&store, &clock);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!decommissioned(
        &instance(store.as_ref(), "slow-start").await
    ));
    clock.advance(Duration::from_secs(49));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!decommissioned(
        &instance(store.as_ref(), "slow-start").await
    ));
    // At T0 + 60 the controller wakes by itself.
    clock.advance(Duration::from_secs(1));
    eventually("decommissioned when the grace period ends", || async {
        decommissioned(&instance(store.as_ref(), "slow-start").await)
    })
    .await;
    shutdown.cancel();
}

#[tokio::test]
async fn writes_are_fenced_and_a_deposed_leader_writes_nothing() {
    let (_dir, store) = store();
    let clock = Arc::new(ManualClock::new(at(100)));
    add_instance(store.as_ref(), "first", 3, 0, 3, true).await;
    let lease = store.lease_grant(30).await.unwrap();
    let election = pacer_store::Election::new(Arc::clone(&store), "/elections/health/").unwrap();
    let leadership = Arc::new(election.campaign(lease, b"me".to_vec()).await.unwrap());
    let shutdown = CancellationToken::new();
    let controller = HealthController::new(
        Arc::clone(&store),
        Informers::new(Arc::clone(&store)),
        Arc::clone(&clock) as Arc<dyn Clock>,
        HealthConfig {
            debounce: Duration::from_millis(10),
            resync: Duration::from_secs(3600),
        },
    );
    let task = tokio::spawn(controller.run(Some(Arc::clone(&leadership)), shutdown.clone()));
    eventually("the leader's fenced kill", || async {
        decommissioned(&instance(store.as_ref(), "first").await)
    })
    .await;
    // Depose the leader: its next fenced write fails and the controller stops.
    store.lease_revoke(lease).await.unwrap();
    add_instance(store.as_ref(), "second", 3, 0, 3, true).await;
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the controller stops")
        .unwrap();
    assert!(
        matches!(result, Err(HealthError::LostLeadership)),
        "{result:?}"
    );
    assert!(!decommissioned(&instance(store.as_ref(), "second").await));
    assert!(event(store.as_ref(), "second").await.is_none());
}
