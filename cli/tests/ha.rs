//! High availability end to end (issue 5, item 2): three `pacer server` replicas on one
//! throwaway etcd. The test finds the placement leader in the election prefix, lets it bind the
//! Instances of one App, kills it with SIGKILL, and checks that another replica takes over within
//! the lease TTL (plus a generous margin) and binds the Instances of an App created after the
//! kill (the deployment controller creates each App's Instances); then it
//! reads the store's full history since the test began and checks that no object was written
//! by two leaders. The placement controller stamps every Instance write with its leadership
//! term (`pacer.dev/leader-term`, the create revision of the leader's election key, and
//! `pacer.dev/leader`, that key): in revision order the terms never go back, and each Instance
//! was written by exactly one term and bound exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pacer_store::etcd::{EtcdConfig, EtcdStore};
use pacer_store::{EventKind, KeyValue, ListOptions, Revision, Store, WatchEvent};
use pacer_testkit::EtcdServer;
use serde_json::{Value, json};
use support::{Server, eventually};

/// The placement controller's election (`pacer_controllers::leader::ElectionConfig::prefix`).
const ELECTION: &str = "/elections/placement/";
/// The election lease's TTL (`ElectionConfig::new`'s default).
const LEASE_TTL: Duration = Duration::from_secs(5);
/// How far past the TTL a takeover may take before the test fails (no tight timing).
const MARGIN: Duration = Duration::from_secs(10);
const TERM: &str = "pacer.dev/leader-term";
const LEADER: &str = "pacer.dev/leader";
const INSTANCES: &str = "/registry/instances/";

/// A direct connection to the test's etcd, for reading what the replicas wrote.
struct Etcd {
    runtime: tokio::runtime::Runtime,
    store: EtcdStore,
}

impl Etcd {
    fn connect(etcd: &EtcdServer) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = EtcdConfig::from_url(&format!("etcd://{}", etcd.endpoint())).unwrap();
        let store = runtime.block_on(EtcdStore::connect(config)).unwrap();
        Self { runtime, store }
    }

    fn current_revision(&self) -> Revision {
        self.runtime
            .block_on(self.store.current_revision())
            .unwrap()
    }

    /// The election key that leads (the lowest create revision), if any.
    fn leader(&self) -> Option<KeyValue> {
        let page = self
            .runtime
            .block_on(self.store.list(ELECTION, &ListOptions::default()))
            .unwrap();
        page.items.into_iter().min_by_key(|kv| kv.create_revision)
    }

    /// Every change under `/` after `after` up to the current revision, in revision order.
    fn history(&self, after: Revision) -> Vec<WatchEvent> {
        let end = self.current_revision();
        self.runtime.block_on(async {
            let mut stream = self.store.watch("/", after).await.unwrap();
            let mut events = Vec::new();
            loop {
                // Past `end`, only drain what a transaction at `end` still has in flight.
                let wait = if events
                    .last()
                    .is_some_and(|e: &WatchEvent| e.revision() >= end)
                {
                    Duration::from_millis(300)
                } else {
                    Duration::from_secs(20)
                };
                match tokio::time::timeout(wait, stream.next()).await {
                    Ok(Some(event)) => {
                        let event = event.unwrap();
                        if event.revision() > end {
                            break;
                        }
                        events.push(event);
                    }
                    Ok(None) => panic!("the history watch ended"),
                    Err(_) if events.last().is_some_and(|e| e.revision() >= end) => break,
                    Err(_) => panic!(
                        "the history watch stalled before revision {end}: {} events",
                        events.len()
                    ),
                }
            }
            events
        })
    }
}

/// The pid in an election value (`<pid>:<listen address>`).
fn pid_of(identity: &[u8]) -> u32 {
    let identity = String::from_utf8_lossy(identity);
    identity
        .split_once(':')
        .and_then(|(pid, _)| pid.parse().ok())
        .unwrap_or_else(|| panic!("election value {identity:?} is not <pid>:<address>"))
}

/// An App of `instances` small instances in `default`.
fn create_app(server: &Server, name: &str, instances: u32) {
    server.create(
        "/apis/pacer.dev/v1/namespaces/default/apps",
        &json!({
            "apiVersion": "pacer.dev/v1", "kind": "App",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"instances": instances, "cmd": "sleep 1000", "cpus": 0.1, "mem": 64},
        }),
    );
}

/// The names of App `app`'s Instances, once there are `count` and all are bound.
fn bound(server: &Server, app: &str, count: usize) -> Option<Vec<String>> {
    let items = server.instances_of("default", app);
    (items.len() == count
        && items
            .iter()
            .all(|instance| instance["spec"]["nodeName"].is_string()))
    .then(|| {
        items
            .iter()
            .map(|instance| instance["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    })
}

fn logs(servers: &[Server]) -> String {
    servers
        .iter()
        .map(|server| {
            format!(
                "--- {} (pid {}) ---\n{}",
                server.address,
                server.pid(),
                server.log()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_killed_placement_leader_is_replaced_within_the_lease_ttl_and_terms_never_overlap() {
    let test_started = Instant::now();
    let etcd = EtcdServer::start()
        .expect("start a throwaway etcd (is etcd installed? hack/install-deps.sh)");
    let direct = Etcd::connect(&etcd);
    let start_revision = direct.current_revision();
    let store_url = format!("etcd://{}", etcd.endpoint());
    let mut servers: Vec<Server> = (0..3)
        .map(|_| Server::start(&["server", "--store", &store_url]))
        .collect();

    // The leader: the election key with the lowest create revision; its value names the pid.
    let first = eventually("a placement leader", || logs(&servers), || direct.leader());
    let leader_pid = pid_of(&first.value);
    let leader_index = servers
        .iter()
        .position(|server| server.pid() == leader_pid)
        .unwrap_or_else(|| panic!("leader pid {leader_pid} is none of the replicas"));
    // All API traffic goes to a replica that survives.
    let api = (leader_index + 1) % servers.len();

    servers[api]
        .run(&[
            "node",
            "register-hollow",
            "--count",
            "5",
            "--cpus",
            "8",
            "--mem",
            "8192",
        ])
        .success();
    create_app(&servers[api], "web", 10);
    let before = eventually(
        "the first leader to bind web's instances",
        || logs(&servers),
        || bound(&servers[api], "web", 10),
    );

    // SIGKILL the leader: no shutdown, no lease revoke; its lease must expire.
    let killed_at = Instant::now();
    let killed = Command::new("kill")
        .args(["-KILL", &leader_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -KILL {leader_pid}");
    while servers[leader_index].exited().is_none() {
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "SIGKILL ignored"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    create_app(&servers[api], "late", 10);

    let deadline = killed_at + LEASE_TTL + MARGIN;
    let mut new_leader: Option<(KeyValue, Duration)> = None;
    let after: Vec<String>;
    let takeover = loop {
        if new_leader.is_none()
            && let Some(leader) = direct.leader()
            && leader.create_revision != first.create_revision
        {
            new_leader = Some((leader, killed_at.elapsed()));
        }
        if new_leader.is_some()
            && let Some(names) = bound(&servers[api], "late", 10)
        {
            after = names;
            break killed_at.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "no replica took over and bound late's instances within {:?} of the SIGKILL \
             (new leader: {new_leader:?}):\n{}",
            LEASE_TTL + MARGIN,
            logs(&servers)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (second, elected_after) = new_leader.unwrap();
    let second_pid = pid_of(&second.value);
    assert_ne!(second_pid, leader_pid, "the killed replica cannot lead");
    assert!(
        servers.iter().any(|server| server.pid() == second_pid),
        "new leader pid {second_pid} is none of the replicas"
    );
    eprintln!(
        "takeover: new leader elected {elected_after:?} and the second batch bound \
         {takeover:?} after the SIGKILL (lease TTL {LEASE_TTL:?})"
    );

    // The full history since the test began: who wrote each Instance, in revision order.
    let history = direct.history(start_revision);
    let identities: BTreeMap<String, Vec<u8>> = history
        .iter()
        .filter(|event| event.kind == EventKind::Put && event.kv.key.starts_with(ELECTION))
        .map(|event| (event.kv.key.clone(), event.kv.value.clone()))
        .collect();
    let mut last_term: Option<(Revision, Revision)> = None;
    let mut terms_of: BTreeMap<String, BTreeSet<Revision>> = BTreeMap::new();
    let mut bindings_of: BTreeMap<String, Vec<Revision>> = BTreeMap::new();
    for event in &history {
        if event.kind != EventKind::Put || !event.kv.key.starts_with(INSTANCES) {
            continue;
        }
        let object: Value = serde_json::from_slice(&event.kv.value).unwrap();
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let annotations = &object["metadata"]["annotations"];
        let Some(term) = annotations[TERM].as_str() else {
            // Not written by placement (the deployment controller's create).
            assert!(
                object["spec"]["nodeName"].is_null(),
                "{name} bound without a leader term at revision {}: {object}",
                event.revision()
            );
            continue;
        };
        let term: Revision = term.parse().unwrap();
        let key = annotations[LEADER].as_str().unwrap();
        let identity = identities
            .get(key)
            .unwrap_or_else(|| panic!("{name} written by unknown election key {key}"));
        assert_eq!(
            term,
            if pid_of(identity) == leader_pid {
                first.create_revision
            } else {
                second.create_revision
            },
            "{name} at revision {}: term and leader {key} disagree",
            event.revision()
        );
        if let Some((previous, at)) = last_term {
            assert!(
                term >= previous,
                "term {previous} wrote at revision {at}, then the older term {term} wrote \
                 {name} at revision {}",
                event.revision()
            );
        }
        last_term = Some((term, event.revision()));
        terms_of.entry(name.clone()).or_default().insert(term);
        let was_bound = event.prev_kv.as_ref().is_some_and(|prev| {
            serde_json::from_slice::<Value>(&prev.value).unwrap()["spec"]["nodeName"].is_string()
        });
        if object["spec"]["nodeName"].is_string() && !was_bound {
            bindings_of.entry(name).or_default().push(term);
        }
    }
    for (names, term) in [
        (&before, first.create_revision),
        (&after, second.create_revision),
    ] {
        for name in names {
            assert_eq!(
                terms_of.get(name),
                Some(&BTreeSet::from([term])),
                "{name} must be written by exactly one leader, term {term}"
            );
            assert_eq!(
                bindings_of.get(name),
                Some(&vec![term]),
                "{name} must be bound exactly once"
            );
        }
    }
    assert_eq!(terms_of.len(), before.len() + after.len());
    assert!(takeover <= LEASE_TTL + MARGIN, "takeover took {takeover:?}");
    eprintln!(
        "{} history events checked; terms {} (pid {leader_pid}) then {} (pid {second_pid}); \
         test took {:?}",
        history.len(),
        first.create_revision,
        second.create_revision,
        test_started.elapsed()
    );
    drop(servers);
}
