//! Leader election for controllers that talk to Pacer over HTTP, end to end on `pacer dev`
//! and on `pacer server` over a throwaway etcd:
//! three in-process `LeaderElector`s on one Lease, each writing Events through its fenced
//! client while it leads.
//!
//! Checked: exactly one leader at a time; a leader that stops renewing (its task killed, no
//! release) is replaced, not before the lease duration; a write fenced with the deposed
//! holder's identity — the write it would still send, believing it leads — is refused with 409
//! and writes nothing; a leader that shuts down releases the lease and the last candidate takes
//! over; and every Event a leader wrote was committed inside that leader's own term (its
//! resourceVersion falls between the holder changes of the Lease, replayed from a watch). Bad
//! Lease input is a 422 naming the field, and `pacer get leases` shows the holder. The race of
//! a takeover landing inside a fenced request is driven deterministically in
//! `apiserver/tests/fence.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pacer_client::runtime::{ElectionConfig, LeaderElector, LeaderState, Leadership};
use pacer_client::{
    Api, Client, Config, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams,
};
use pacer_schemas::{App, Event, Lease, LeaseFence};
use pacer_testkit::EtcdServer;
use serde_json::json;
use support::Server;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const NAMESPACE: &str = "default";
const LEASE: &str = "e2e-controller";
const WRITER_LABEL: &str = "e2e-writer";
const LEASE_DURATION: Duration = Duration::from_secs(6);
const RENEW_DEADLINE: Duration = Duration::from_secs(4);
const RETRY_PERIOD: Duration = Duration::from_secs(1);
/// Generous: the machine may be loaded.
const WAIT: Duration = Duration::from_secs(60);

/// One replica of a controller: an elector and the task running it.
struct Candidate {
    identity: String,
    state: watch::Receiver<LeaderState>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Candidate {
    fn start(client: &Client, identity: &str, sequence: Arc<AtomicU64>) -> Self {
        let config = ElectionConfig::new(NAMESPACE, LEASE, identity).timing(
            LEASE_DURATION,
            RENEW_DEADLINE,
            RETRY_PERIOD,
        );
        let elector = LeaderElector::new(client.clone(), config).unwrap();
        let state = elector.subscribe();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            let identity = identity.to_owned();
            async move {
                elector
                    .run(shutdown, |leader| {
                        work(leader, identity.clone(), Arc::clone(&sequence))
                    })
                    .await;
            }
        });
        Self {
            identity: identity.to_owned(),
            state,
            shutdown,
            task,
        }
    }

    fn leading(&self) -> bool {
        self.state.borrow().leading
    }
}

/// What a leader does until it is stopped (dropped, or its term's token cancelled): write an
/// Event every 200 ms through its fenced client. Refusals (after its term) are ignored.
async fn work(leader: Leadership, identity: String, sequence: Arc<AtomicU64>) {
    let events: Api<Event> = Api::namespaced(leader.client().clone(), NAMESPACE);
    let stop = leader.token();
    loop {
        let n = sequence.fetch_add(1, Ordering::SeqCst);
        let event: Event = serde_json::from_value(json!({
            "metadata": {"name": format!("tick-{n}"), "labels": {WRITER_LABEL: identity}},
            "involvedObject": {"kind": "Lease", "name": LEASE, "namespace": NAMESPACE},
            "reason": "Tick",
            "message": format!("written by {identity}"),
        }))
        .unwrap();
        let _ = events.create(&PostParams::default(), &event).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Polls every 100 ms until `identity` has written at least one Event; panics after
/// [`WAIT`].
async fn wait_for_writes_by(events: &Api<Event>, identity: &str) {
    let deadline = Instant::now() + WAIT;
    while writes_by(events, identity).await == 0 {
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?}: {identity} never wrote"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE)
        .await
        .unwrap()
        .and_then(|lease| lease.holder().map(str::to_owned))
}

/// Waits until exactly one running candidate leads and the Lease names it; returns its index.
async fn sole_leader(candidates: &[Candidate], running: &[usize], leases: &Api<Lease>) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let leading: Vec<usize> = running
            .iter()
            .copied()
            .filter(|&index| candidates[index].leading())
            .collect();
        if let [index] = leading[..]
            && holder(leases).await.as_deref() == Some(candidates[index].identity.as_str())
        {
            return index;
        }
        assert!(
            Instant::now() < deadline,
            "no sole leader named by the Lease after {WAIT:?}: leading {leading:?}, holder {:?}",
            holder(leases).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn writes_by(events: &Api<Event>, identity: &str) -> usize {
    events
        .list_all(&ListParams::default().labels(format!("{WRITER_LABEL}={identity}")))
        .await
        .unwrap()
        .items
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn elect_take_over_and_fence_on_pacer_dev() {
    let server = Server::dev();
    elect_take_over_and_fence(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn elect_take_over_and_fence_on_etcd() {
    let etcd = EtcdServer::start()
        .expect("start a throwaway etcd (is etcd installed? hack/install-deps.sh)");
    let server = Server::start(&["server", "--store", &format!("etcd://{}", etcd.endpoint())]);
    elect_take_over_and_fence(&server).await;
}

/// One leader; takeover after the lease duration; the deposed leader's fenced writes refused;
/// a release on shutdown; every write inside its writer's term.
async fn elect_take_over_and_fence(server: &Server) {
    let client = Client::new(Config::new(&server.url)).unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let events: Api<Event> = Api::namespaced(client.clone(), NAMESPACE);
    let start_version = leases
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    let sequence = Arc::new(AtomicU64::new(0));
    let mut candidates: Vec<Candidate> = ["alpha", "bravo", "charlie"]
        .iter()
        .map(|identity| Candidate::start(&client, identity, Arc::clone(&sequence)))
        .collect();
    let mut running: Vec<usize> = vec![0, 1, 2];

    // Exactly one leader, and it writes.
    let first = sole_leader(&candidates, &running, &leases).await;
    let deposed = candidates[first].identity.clone();
    wait_for_writes_by(&events, &deposed).await;

    // The leader stops renewing (killed: no release); another takes over, not before the
    // lease has run out.
    candidates[first].task.abort();
    let killed = Instant::now();
    running.retain(|&index| index != first);
    let second = sole_leader(&candidates, &running, &leases).await;
    let took = killed.elapsed();
    assert!(
        took >= LEASE_DURATION - RETRY_PERIOD,
        "{} took over {took:?} after the leader died, before its lease could end",
        candidates[second].identity
    );
    let lease = leases.get(LEASE).await.unwrap();
    assert_eq!(lease.spec.lease_transitions, Some(1), "{lease:?}");

    // The deposed leader still believes it leads: its fenced writes are refused, and nothing
    // is written.
    let deposed_client = client
        .fenced(&LeaseFence::new(NAMESPACE, LEASE, &deposed))
        .unwrap();
    let deposed_events: Api<Event> = Api::namespaced(deposed_client, NAMESPACE);
    let late: Event = serde_json::from_value(json!({
        "metadata": {"name": "late-write", "labels": {WRITER_LABEL: deposed}},
        "involvedObject": {"kind": "Lease", "name": LEASE},
    }))
    .unwrap();
    let error = deposed_events
        .create(&PostParams::default(), &late)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(409), "{error}");
    assert!(error.is_conflict(), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&format!("fence {NAMESPACE}/{LEASE}/{deposed}"))
            && message.contains(&format!("held by \"{}\"", candidates[second].identity)),
        "{message}"
    );
    assert!(events.get_opt("late-write").await.unwrap().is_none());
    let mine = events
        .list_all(&ListParams::default().labels(format!("{WRITER_LABEL}={deposed}")))
        .await
        .unwrap()
        .items;
    let victim = mine[0].metadata.name_str().to_owned();
    let error = deposed_events
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(409), "{error}");
    assert!(
        events.get_opt(&victim).await.unwrap().is_some(),
        "deleted anyway"
    );
    // Status writes are fenced too (`Api::patch_status`): refused for the deposed holder,
    // applied without a fence.
    let apps: Api<App> = Api::namespaced(client.clone(), NAMESPACE);
    let app: App = serde_json::from_value(json!({
        "metadata": {"name": "fenced-status"},
        "spec": {"cmd": "sleep 1000", "instances": 0},
    }))
    .unwrap();
    apps.create(&PostParams::default(), &app).await.unwrap();
    let deposed_apps: Api<App> = Api::namespaced(
        client
            .fenced(&LeaseFence::new(NAMESPACE, LEASE, &deposed))
            .unwrap(),
        NAMESPACE,
    );
    let error = deposed_apps
        .patch_status("fenced-status", &json!({"status": {"running": 7}}))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(409), "{error}");
    let patched = apps
        .patch_status("fenced-status", &json!({"status": {"running": 7}}))
        .await
        .unwrap();
    assert_eq!(patched.status.unwrap().running, 7);

    // The new leader writes too.
    wait_for_writes_by(&events, &candidates[second].identity).await;

    // A clean shutdown releases the lease; the last candidate takes over.
    candidates[second].shutdown.cancel();
    (&mut candidates[second].task).await.unwrap();
    running.retain(|&index| index != second);
    let third = sole_leader(&candidates, &running, &leases).await;
    let lease = leases.get(LEASE).await.unwrap();
    assert_eq!(lease.holder(), Some(candidates[third].identity.as_str()));
    wait_for_writes_by(&events, &candidates[third].identity).await;
    candidates[third].shutdown.cancel();
    (&mut candidates[third].task).await.unwrap();
    let final_version: i64 = leases
        .get(LEASE)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
        .parse()
        .unwrap();

    // Replay the Lease's history: (revision, holder) of every change.
    let mut history: Vec<(i64, Option<String>)> = Vec::new();
    let mut stream = leases
        .watch(&WatchParams::default().disable_bookmarks(), &start_version)
        .await
        .unwrap();
    while history
        .last()
        .is_none_or(|(revision, _)| *revision < final_version)
    {
        let event = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("the lease history did not replay")
            .expect("the watch ended")
            .unwrap();
        let (WatchEvent::Added(lease) | WatchEvent::Modified(lease) | WatchEvent::Deleted(lease)) =
            event
        else {
            panic!("unexpected watch event {event:?}");
        };
        if lease.metadata.name_str() == LEASE {
            let revision = lease.metadata.resource_version.as_deref().unwrap();
            history.push((revision.parse().unwrap(), lease.holder().map(str::to_owned)));
        }
    }
    // Every Event was committed while its writer held the lease.
    let written = events
        .list_all(&ListParams::default().labels(WRITER_LABEL))
        .await
        .unwrap()
        .items;
    assert!(written.len() >= 3, "{written:?}");
    for event in &written {
        let revision: i64 = event
            .metadata
            .resource_version
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        let writer = &event.metadata.labels.as_ref().unwrap()[WRITER_LABEL];
        let holder_then = history
            .iter()
            .rev()
            .find(|(change, _)| *change < revision)
            .and_then(|(_, holder)| holder.as_deref());
        assert_eq!(
            holder_then,
            Some(writer.as_str()),
            "{} (revision {revision}) was written by {writer} outside its term; lease history: {history:?}",
            event.metadata.name_str()
        );
    }

    for candidate in &candidates {
        candidate.shutdown.cancel();
    }
    server.assert_no_unexpected_errors(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_input_is_validated_and_listed_with_its_holder() {
    let server = Server::dev();
    let path = format!("/apis/pacer.dev/v1/namespaces/{NAMESPACE}/leases");
    // (spec, offending field)
    let table = [
        (
            json!({"leaseDurationSeconds": -5}),
            "spec.leaseDurationSeconds",
        ),
        (json!({"leaseTransitions": -1}), "spec.leaseTransitions"),
    ];
    for (spec, field) in table {
        let reply = server.http(
            "POST",
            &path,
            Some(&json!({"metadata": {"name": "bad"}, "spec": spec})),
        );
        assert_eq!(reply.code, 422, "{}", reply.body);
        let status = reply.json();
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(status["details"]["causes"][0]["field"], field, "{status}");
    }
    let lease = json!({"metadata": {"name": "held"}, "spec": {"holderIdentity": "node-1",
        "renewTime": jiff::Timestamp::now().to_string()}});
    let reply = server.http("POST", &path, Some(&lease));
    assert_eq!(reply.code, 201, "{}", reply.body);
    assert_eq!(
        reply.json()["spec"]["leaseDurationSeconds"],
        15,
        "defaulted"
    );
    let listed = server.run(&["get", "leases"]).success();
    let header = listed.stdout.lines().next().unwrap();
    assert!(
        header.contains("HOLDER") && header.contains("RENEWED"),
        "{}",
        listed.stdout
    );
    assert!(listed.stdout.contains("node-1"), "{}", listed.stdout);
    server.assert_no_unexpected_errors(&[]);
}
