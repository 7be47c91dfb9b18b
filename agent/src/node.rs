//! The agent's Node and its heartbeat: [`register`] creates the Node (or updates the
//! attributes of an existing one) and writes its status — capacity, allocatable, host name,
//! runtimes, `Ready=True` — through `/status`; [`LeaseKeeper`] keeps the node's `Lease` in
//! namespace `pacer-node-lease` renewed every `leaseDuration / 3` (the node lifecycle
//! controller declares a node whose lease is older than its duration unreachable). One keeper
//! renews the leases of many nodes (a hollow fleet) with bounded concurrency.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use pacer_client::{Api, Client, PatchParams, PostParams};
use pacer_schemas::capacity::Resources;
use pacer_schemas::condition::{Condition, ConditionStatus};
use pacer_schemas::lease::{LeaseSpec, NODE_LEASE_NAMESPACE};
use pacer_schemas::node::{NodeSpec, NodeStatus};
use pacer_schemas::{Lease, Node, ObjectMeta, Time};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Seconds a node lease lasts without renewal: 8, renewed every 2.67 s (a third), so two
/// renewals may fail or stall (≈ 5 s under load on a busy 2-core machine) before the node is
/// judged unreachable. With `inactiveAfterSeconds` 0 this bounds node death → replacement
/// Running at ≈ 8 s + placement and start (target ≤ 10 s); 10 s gave 25 s with the old 15 s
/// inactive default. Shorter leases cost more heartbeat writes (1,000 agents: 375 writes/s at
/// 8 s vs 300 at 10 s) and raise false positives under load.
pub const LEASE_DURATION_SECONDS: i32 = 8;

/// How often the Node's status (capacity, `Ready`, `lastHeartbeatTime`) is rewritten even when
/// nothing changed; the lease is the frequent heartbeat.
pub const NODE_STATUS_PERIOD: Duration = Duration::from_secs(300);

/// What an agent says about its node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    /// The Node's name.
    pub name: String,
    /// The machine's host name (Marathon's task `host`).
    pub hostname: String,
    /// Attributes constraints match on.
    pub attributes: BTreeMap<String, String>,
    /// Labels of the Node object.
    pub labels: BTreeMap<String, String>,
    /// Capacity (= allocatable: nothing is reserved yet).
    pub resources: Resources,
    /// Runtimes offered.
    pub runtimes: Vec<String>,
    /// `host:port` of the agent's own endpoint, if it serves one.
    pub agent_address: Option<String>,
}

/// The current instant.
pub fn now() -> Time {
    Time::new(jiff::Timestamp::now())
}

/// Creates the Node (an existing one gets these attributes and labels) and writes its status.
pub async fn register(client: &Client, info: &NodeInfo) -> Result<(), pacer_client::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(info.name.clone()),
            labels: (!info.labels.is_empty()).then(|| info.labels.clone()),
            ..ObjectMeta::default()
        },
        spec: NodeSpec {
            attributes: (!info.attributes.is_empty()).then(|| info.attributes.clone()),
            ..NodeSpec::default()
        },
        ..Node::default()
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %info.name, "node registered"),
        Err(error) if error.is_already_exists() => {
            // The agent's flags are the authority on attributes (absent ones are removed);
            // labels are only added, so that labels others put on the Node stay.
            let mut patch = json!({"spec": {"attributes": node.spec.attributes}});
            if let Some(labels) = &node.metadata.labels {
                patch["metadata"] = json!({ "labels": labels });
            }
            api.patch_merge(&info.name, &PatchParams::default(), &patch)
                .await?;
            tracing::info!(node = %info.name, "node re-registered");
        }
        Err(error) => return Err(error),
    }
    write_status(client, info).await
}

/// Writes the Node's status: resources, addresses, runtimes, `Ready=True`, heartbeat time.
pub async fn write_status(client: &Client, info: &NodeInfo) -> Result<(), pacer_client::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let now = now();
    let mut ready = Condition::new("Ready", ConditionStatus::True);
    ready.reason = Some("AgentReady".to_owned());
    ready.message = Some("the agent is registered and renews its lease".to_owned());
    ready.last_transition_time = Some(now);
    let status = NodeStatus {
        capacity: info.resources.clone(),
        allocatable: info.resources.clone(),
        agent_address: info.agent_address.clone(),
        hostname: Some(info.hostname.clone()),
        agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        runtimes: info.runtimes.clone(),
        last_heartbeat_time: Some(now),
        conditions: vec![ready],
    };
    api.patch_status(&info.name, &json!({ "status": status }))
        .await?;
    Ok(())
}

/// Keeps the leases of some nodes renewed until cancelled.
#[derive(Debug)]
pub struct LeaseKeeper {
    client: Client,
    nodes: Vec<Arc<NodeInfo>>,
    concurrency: usize,
}

impl LeaseKeeper {
    /// A keeper of the leases of `nodes`, renewing up to `concurrency` at once.
    pub fn new(client: Client, nodes: Vec<NodeInfo>, concurrency: usize) -> Self {
        Self {
            client,
            nodes: nodes.into_iter().map(Arc::new).collect(),
            concurrency: concurrency.max(1),
        }
    }

    /// Renews every `leaseDuration / 3` until `shutdown`. A failed renewal is logged and
    /// retried next round; a node whose lease had lapsed (the control plane may have marked
    /// it unreachable) gets its status, with `Ready=True`, rewritten.
    pub async fn run(self, shutdown: CancellationToken) {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), NODE_LEASE_NAMESPACE);
        let period =
            Duration::from_millis(u64::from(LEASE_DURATION_SECONDS.unsigned_abs()) * 1000 / 3);
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = tokio::time::Instant::now();
        let lease_duration = Duration::from_secs(u64::from(LEASE_DURATION_SECONDS.unsigned_abs()));
        let last_renewed: Arc<Mutex<HashMap<String, tokio::time::Instant>>> = Arc::default();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let rewrite_all = last_status.elapsed() >= NODE_STATUS_PERIOD;
            if rewrite_all {
                last_status = tokio::time::Instant::now();
            }
            let renewals = futures::stream::iter(self.nodes.clone())
                .map(|node| {
                    let api = api.clone();
                    let client = self.client.clone();
                    let last_renewed = Arc::clone(&last_renewed);
                    async move {
                        let node = node.as_ref();
                        match renew(&api, &node.name).await {
                            Ok(()) => {
                                let previous = last_renewed
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .insert(node.name.clone(), tokio::time::Instant::now());
                                let lapsed = previous
                                    .is_some_and(|previous| previous.elapsed() > lease_duration);
                                if lapsed {
                                    tracing::info!(node = %node.name, "lease renewed after it had lapsed: rewriting the node status");
                                }
                                if (lapsed || rewrite_all)
                                    && let Err(error) = write_status(&client, node).await
                                {
                                    tracing::warn!(node = %node.name, %error, "cannot write the node status");
                                }
                            }
                            Err(error) => {
                                tracing::warn!(node = %node.name, %error, "cannot renew the node lease");
                            }
                        }
                    }
                })
                .buffer_unordered(self.concurrency);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = renewals.collect::<()>() => {}
            }
        }
    }
}

/// Renews (or creates) the lease of `node`.
async fn renew(api: &Api<Lease>, node: &str) -> Result<(), pacer_client::Error> {
    let now = now();
    let patch = json!({"spec": {
        "holderIdentity": node,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": now,
    }});
    match api.patch_merge(node, &PatchParams::default(), &patch).await {
        Ok(_) => Ok(()),
        Err(error) if error.is_not_found() => {
            let lease = Lease {
                metadata: ObjectMeta::named(NODE_LEASE_NAMESPACE, node),
                spec: LeaseSpec {
                    holder_identity: Some(node.to_owned()),
                    lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                    acquire_time: Some(now),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                },
                ..Lease::default()
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(error) if error.is_already_exists() => Ok(()),
                Err(error) => Err(error),
            }
        }
        Err(error) => Err(error),
    }
}
