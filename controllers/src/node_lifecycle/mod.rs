//! The node lifecycle controller: turns expired node leases into unreachable Nodes and Lost
//! Instances, and applies each App's `unreachableStrategy` to them.
//!
//! Agents renew a `Lease` named after their node in namespace `pacer-node-lease` (see
//! `pacer_schemas::lease`). The controller reads Nodes, those Leases and Instances from the
//! process' shared [`Informers`] and works in *rounds*, like placement. A round decides, with
//! the pure functions of [`decide`] and the time of an injected [`Clock`]:
//!
//! * a Node whose lease ended (`renewTime + leaseDurationSeconds` passed, or no lease
//!   [`NodeLifecycleConfig::no_lease_grace`] after its creation) gets `Ready=Unknown`, reason
//!   `NodeLeaseExpired`, in its status, and a `NodeNotReady` Warning Event (namespace
//!   `default`, as Kubernetes files node Events); when its lease is renewed, `Ready=True`
//!   (`NodeLeaseRenewed`) and a `NodeReady` Event. Nodes annotated `pacer.dev/agentless: "true"`
//!   (hollow nodes without an agent) are exempt.
//! * every non-terminal Instance bound to an unreachable node turns `Lost`
//!   (`status.unreachableSince` = first loss); after its template's `inactiveAfterSeconds` its
//!   goal becomes `Decommissioned` (the deployment controller starts a replacement; the agent
//!   kills the stale copy when it returns); after `expungeAfterSeconds` its phase becomes
//!   `Gone` (the deployment controller then deletes it). Instances on a node that came back are
//!   left to their agent.
//!
//! Writes go straight to the store as the API server would store them — a node's status write
//! and its Event in one transaction; up to [`NodeLifecycleConfig::batch_size`] compare-and-swap
//! writes per transaction, plus the leader's fencing compare under a [`Leadership`]. An object
//! changed meanwhile is dropped from its batch and decided again next round.
//!
//! The round also yields the earliest instant at which any decision changes (a lease's expiry,
//! a grace period's end, an inactive or expunge deadline); the loop sleeps on the clock until
//! then or until a relevant change arrives — no polling. Lease renewals of reachable nodes do
//! not wake it: they only move a deadline that the next wake-up re-reads.

pub mod decide;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pacer_client::runtime::reflector;
use pacer_schemas::lease::NODE_LEASE_NAMESPACE;
use pacer_schemas::{Instance, Lease, Node, Time};
use pacer_store::key::MAX_TXN_OPS;
use pacer_store::{Expect, Leadership, Revision, Store, Txn, TxnOutcome};
use tokio_util::sync::CancellationToken;

pub use decide::{AGENTLESS_ANNOTATION, Reachability};

use crate::events::{EventDraft, involved, next_record};
use crate::informers::{Applied, Change, Informer, Informers, caught_up};
use crate::rounds::{AbortOnDrop, ControllerError, Rounds, batch_limit, commit, encode_at};
pub use crate::rounds::{Clock, ManualClock, SystemClock};
use crate::store_source::{object_revision, registry_key, registry_prefix};

/// The controller's name: its election is `/elections/node-lifecycle/`.
pub const CONTROLLER_NAME: &str = "node-lifecycle";
/// The `source.component` of its Events.
pub const COMPONENT: &str = "node-lifecycle-controller";
/// The namespace of its (node) Events.
pub const EVENT_NAMESPACE: &str = "default";

/// Bytes of values per transaction, well under the store's 1.5 MiB.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// The reflector index of Instances by `spec.nodeName`.
const BY_NODE: &str = "node";

/// How the node lifecycle controller runs.
#[derive(Clone, Debug)]
#[must_use]
pub struct NodeLifecycleConfig {
    /// How long a Node may exist without any lease before it counts as unreachable.
    pub no_lease_grace: Duration,
    /// After a change, wait this long for more before a round.
    pub debounce: Duration,
    /// Run a round at least this often anyway (catches anything missed).
    pub resync: Duration,
    /// Most object writes per transaction (1–128; one fewer under leadership).
    pub batch_size: usize,
    /// How long a round waits for the caches to see the controller's last write.
    pub cache_sync_timeout: Duration,
}

impl Default for NodeLifecycleConfig {
    /// 40 s without a lease (Kubernetes' node-monitor grace period), 100 ms debounce, 60 s
    /// resync, 128 writes per transaction, 5 s cache-sync timeout.
    fn default() -> Self {
        Self {
            no_lease_grace: Duration::from_secs(40),
            debounce: Duration::from_millis(100),
            resync: Duration::from_secs(60),
            batch_size: MAX_TXN_OPS,
            cache_sync_timeout: Duration::from_secs(5),
        }
    }
}

/// Why the node lifecycle controller stopped.
pub type NodeLifecycleError = ControllerError;

/// What one round did (for logs and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundStats {
    /// Nodes found unreachable.
    pub unreachable: usize,
    /// Node `Ready` transitions written (each with its Event).
    pub node_writes: usize,
    /// Instance writes (Lost, Decommissioned, Gone).
    pub instance_writes: usize,
    /// Writes dropped because the object changed meanwhile.
    pub conflicts: usize,
}

/// The node lifecycle controller. [`NodeLifecycleController::run`] runs it until cancelled;
/// wrap it in [`run_elected`](crate::leader::run_elected) to run it on several replicas.
#[derive(Debug)]
pub struct NodeLifecycleController {
    store: Arc<dyn Store>,
    informers: Informers,
    clock: Arc<dyn Clock>,
    config: NodeLifecycleConfig,
}

/// The shared informers the controller reads.
struct NodeInformers {
    nodes: Informer<Node>,
    leases: Informer<Lease>,
    instances: Informer<Instance>,
}

/// The caches a round reads.
struct Caches {
    nodes: reflector::Store<Node>,
    leases: reflector::Store<Lease>,
    instances: reflector::Store<Instance>,
}

/// What a write group changes.
#[derive(Clone, Copy)]
enum Kind {
    Node,
    Instance,
}

/// Node names the last round found unreachable: lease and instance changes wake a round
/// only for these.
type Unreachable = Arc<Mutex<HashSet<String>>>;

/// One store write with its compare.
struct Write {
    key: String,
    expect: Expect,
    value: Vec<u8>,
}

/// Writes that commit together or not at all (a node's status and its Event; one instance).
struct Group {
    kind: Kind,
    /// For logs: `node/<name>` or `instance/<namespace>/<name>`.
    what: String,
    writes: Vec<Write>,
}

impl Group {
    fn bytes(&self) -> usize {
        self.writes
            .iter()
            .map(|write| write.key.len() + write.value.len())
            .sum()
    }
}

/// What writing a round's groups did.
#[derive(Default)]
struct Written {
    node_writes: usize,
    instance_writes: usize,
    conflicts: usize,
    last_node_revision: Revision,
    last_instance_revision: Revision,
}

/// What a round produced.
struct Round {
    stats: RoundStats,
    /// The earliest instant at which a decision changes.
    next_deadline: Option<Time>,
    /// The newest revision written per registry prefix (Nodes, Instances).
    written: HashMap<String, Revision>,
}

impl NodeLifecycleController {
    /// A controller that writes to `store`, reads through the process' shared `informers`
    /// (of the same store) and reads the time from `clock`.
    pub fn new(
        store: Arc<dyn Store>,
        informers: Informers,
        clock: Arc<dyn Clock>,
        config: NodeLifecycleConfig,
    ) -> Self {
        Self {
            store,
            informers,
            clock,
            config,
        }
    }

    /// Runs rounds until `shutdown` is cancelled. With `leadership`, every write carries its
    /// fencing compare, and a refused fence ends the run with
    /// [`ControllerError::LostLeadership`]; other store failures end it too (the caller,
    /// e.g. [`run_elected`](crate::leader::run_elected), retries).
    pub async fn run(
        self,
        leadership: Option<Arc<Leadership>>,
        shutdown: CancellationToken,
    ) -> Result<(), NodeLifecycleError> {
        let mut rounds = Rounds::new(self.config.debounce, self.config.resync)
            .with_clock(Arc::clone(&self.clock));
        let unreachable: Unreachable = Arc::default();
        let informers = self.informers();
        let driver = {
            let wake = rounds.waker();
            let unreachable = Arc::clone(&unreachable);
            let mut nodes = informers.nodes.subscribe();
            let mut leases = informers.leases.subscribe();
            let mut instances = informers.instances.subscribe();
            AbortOnDrop(tokio::spawn(async move {
                // Lease and Instance changes matter only for a node found unreachable; a
                // deleted lease may make its node unreachable at once.
                let on_unreachable = |node: Option<&str>| {
                    node.is_some_and(|node| {
                        unreachable
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .contains(node)
                    })
                };
                loop {
                    let relevant = tokio::select! {
                        change = nodes.next() => match change {
                            Some(_) => true,
                            None => break,
                        },
                        change = leases.next() => match change {
                            Some(Change::Applied(lease)) => on_unreachable(Some(lease.metadata.name_str())),
                            Some(Change::Deleted(_) | Change::Resync) => true,
                            None => break,
                        },
                        change = instances.next() => match change {
                            Some(Change::Applied(instance) | Change::Deleted(instance)) => {
                                on_unreachable(instance.spec.node_name.as_deref())
                            }
                            Some(Change::Resync) => true,
                            None => break,
                        },
                    };
                    if relevant {
                        wake.notify_one();
                    }
                }
            }))
        };
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            ready = async {
                informers.nodes.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Node"))?;
                informers.leases.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Lease"))?;
                informers.instances.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Instance"))
            } => ready?,
        }
        let applied: [Applied; 2] = [informers.nodes.applied(), informers.instances.applied()];
        let caches = Caches {
            nodes: informers.nodes.store().clone(),
            leases: informers.leases.store().clone(),
            instances: informers.instances.store().clone(),
        };
        tracing::info!(
            nodes = caches.nodes.len(),
            leases = caches.leases.len(),
            instances = caches.instances.len(),
            fenced = leadership.is_some(),
            "node lifecycle controller started"
        );
        // Lease expiry counts from no earlier than now (see `decide::reachability`): after a
        // control-plane outage agents get one lease duration to renew before any verdict.
        let observing_since = self.clock.now();
        let mut written: HashMap<String, Revision> = HashMap::new();
        while rounds.next(&shutdown).await {
            if !written.is_empty()
                && !caught_up(&applied, &written, self.config.cache_sync_timeout).await
            {
                tracing::warn!(
                    written = ?written,
                    "the caches have not caught up with our last write; deciding anyway"
                );
            }
            let round = self
                .round(
                    &caches,
                    &unreachable,
                    leadership.as_deref(),
                    observing_since,
                )
                .await?;
            for (prefix, revision) in round.written {
                let newest = written.entry(prefix).or_default();
                *newest = (*newest).max(revision);
            }
            let next_deadline = round.next_deadline;
            rounds.finished(next_deadline);
            let stats = round.stats;
            if stats.node_writes + stats.instance_writes + stats.conflicts > 0 {
                tracing::info!(
                    unreachable = stats.unreachable,
                    node_writes = stats.node_writes,
                    instance_writes = stats.instance_writes,
                    conflicts = stats.conflicts,
                    next_deadline = next_deadline.map(|t| t.to_string()).unwrap_or_default(),
                    "node lifecycle round"
                );
            }
            if stats.conflicts > 0 {
                rounds.wake();
            }
        }
        drop(driver);
        tracing::info!("node lifecycle controller stopped");
        Ok(())
    }

    /// The three shared informers it reads; Instances indexed by node.
    fn informers(&self) -> NodeInformers {
        NodeInformers {
            nodes: self.informers.informer::<Node>(),
            leases: self.informers.namespaced::<Lease>(NODE_LEASE_NAMESPACE),
            instances: self
                .informers
                .informer::<Instance>()
                .with_index(BY_NODE, |instance: &Instance| {
                    instance.spec.node_name.iter().cloned().collect()
                }),
        }
    }

    /// One round over every node: decide, write, and return when to look again.
    async fn round(
        &self,
        caches: &Caches,
        unreachable: &Unreachable,
        leadership: Option<&Leadership>,
        observing_since: Time,
    ) -> Result<Round, NodeLifecycleError> {
        let now = self.clock.now();
        let grace = i64::try_from(self.config.no_lease_grace.as_secs()).unwrap_or(i64::MAX);
        let leases: HashMap<String, Arc<Lease>> = caches
            .leases
            .state()
            .into_iter()
            .filter(|lease| lease.metadata.namespace_str() == NODE_LEASE_NAMESPACE)
            .map(|lease| (lease.metadata.name_str().to_owned(), lease))
            .collect();
        let mut stats = RoundStats::default();
        let mut next_deadline: Option<Time> = None;
        let mut earliest = |deadline: Option<Time>| {
            if let Some(deadline) = deadline {
                next_deadline = Some(next_deadline.map_or(deadline, |next| next.min(deadline)));
            }
        };
        let mut groups = Vec::new();
        let mut now_unreachable = HashSet::new();
        let mut nodes = caches.nodes.state();
        nodes.sort_by(|a, b| a.metadata.name_str().cmp(b.metadata.name_str()));
        for node in &nodes {
            let name = node.metadata.name_str();
            let reach = decide::reachability(
                node,
                leases.get(name).map(Arc::as_ref),
                now,
                observing_since,
                grace,
            );
            if let Some((updated, event)) = decide::node_transition(node, &reach, now) {
                if event.reason == decide::NODE_READY {
                    tracing::info!(node = name, message = %event.message, "node reachable again");
                } else {
                    tracing::warn!(node = name, message = %event.message, "node unreachable");
                }
                groups.push(self.node_group(node, &updated, &event, now).await?);
            }
            match reach {
                Reachability::Exempt => {}
                Reachability::Reachable { until } => earliest(until),
                Reachability::Unreachable { message } => {
                    stats.unreachable += 1;
                    now_unreachable.insert(name.to_owned());
                    let bound = caches.instances.by_index(BY_NODE, name).unwrap_or_default();
                    for instance in bound {
                        let (updated, next) = decide::lost_instance(&instance, &message, now);
                        earliest(next);
                        if let Some(updated) = updated {
                            tracing::info!(
                                app = %instance.spec.app,
                                instance = %instance.metadata.name_str(),
                                node = name,
                                phase = ?updated.phase(),
                                goal = ?updated.spec.goal,
                                "instance on an unreachable node"
                            );
                            groups.push(instance_group(&instance, &updated)?);
                        }
                    }
                }
            }
        }
        *unreachable.lock().unwrap_or_else(PoisonError::into_inner) = now_unreachable;
        let written = self.write(groups, leadership).await?;
        stats.node_writes = written.node_writes;
        stats.instance_writes = written.instance_writes;
        stats.conflicts = written.conflicts;
        Ok(Round {
            stats,
            next_deadline,
            written: [
                (registry_prefix::<Node>(), written.last_node_revision),
                (
                    registry_prefix::<Instance>(),
                    written.last_instance_revision,
                ),
            ]
            .into_iter()
            .filter(|(_, revision)| *revision > 0)
            .collect(),
        })
    }

    /// The node's status write and its Event, as one group.
    async fn node_group(
        &self,
        node: &Node,
        updated: &Node,
        event: &decide::NodeEvent,
        now: Time,
    ) -> Result<Group, NodeLifecycleError> {
        let name = node.metadata.name_str();
        let node_key = registry_key::<Node>(None, name);
        let event_name = format!("{name}.{}", event.reason.to_ascii_lowercase());
        let event_key = registry_key::<pacer_schemas::Event>(Some(EVENT_NAMESPACE), &event_name);
        let draft = EventDraft {
            namespace: EVENT_NAMESPACE,
            name: &event_name,
            involved: involved::<Node>(&node.metadata),
            reason: event.reason,
            message: &event.message,
            type_: event.type_.clone(),
            action: "NodeLease",
            component: COMPONENT,
        };
        let (expect, record) = next_record(self.store.as_ref(), &event_key, draft, now).await?;
        Ok(Group {
            kind: Kind::Node,
            what: format!("node/{name}"),
            writes: vec![
                Write {
                    value: encode_at(&node_key, updated)?,
                    expect: Expect::ModRevision(object_revision(node).unwrap_or(0)),
                    key: node_key,
                },
                Write {
                    value: encode_at(&event_key, &record)?,
                    expect,
                    key: event_key,
                },
            ],
        })
    }

    /// Writes the groups in batches; a batch that loses a compare is retried without the
    /// groups whose objects changed.
    async fn write(
        &self,
        groups: Vec<Group>,
        leadership: Option<&Leadership>,
    ) -> Result<Written, NodeLifecycleError> {
        let limit = batch_limit(self.config.batch_size, leadership.is_some());
        let mut written = Written::default();
        let mut batches: Vec<Vec<Group>> = Vec::new();
        let (mut ops, mut bytes) = (0, 0);
        for group in groups {
            let size = group.writes.len();
            let full = batches
                .last()
                .is_none_or(|_| ops + size > limit || bytes + group.bytes() > MAX_BATCH_BYTES);
            if full {
                batches.push(Vec::new());
                (ops, bytes) = (0, 0);
            }
            ops += size;
            bytes += group.bytes();
            if let Some(batch) = batches.last_mut() {
                batch.push(group);
            }
        }
        for mut batch in batches {
            while !batch.is_empty() {
                let mut txn = Txn::new();
                for write in batch.iter().flat_map(|group| &group.writes) {
                    txn = txn
                        .when(write.key.clone(), write.expect)
                        .put(write.key.clone(), write.value.clone());
                }
                match commit(self.store.as_ref(), leadership, txn).await? {
                    TxnOutcome::Committed { revision } => {
                        for group in &batch {
                            match group.kind {
                                Kind::Node => {
                                    written.node_writes += 1;
                                    written.last_node_revision = revision;
                                }
                                Kind::Instance => {
                                    written.instance_writes += 1;
                                    written.last_instance_revision = revision;
                                }
                            }
                        }
                        break;
                    }
                    TxnOutcome::CompareFailed { observed, .. } => {
                        let expected: Vec<&Expect> = batch
                            .iter()
                            .flat_map(|group| &group.writes)
                            .map(|write| &write.expect)
                            .collect();
                        let changed: HashSet<&str> = observed
                            .iter()
                            .zip(expected)
                            .filter(|(state, expect)| {
                                !pacer_store::Compare {
                                    key: state.key.clone(),
                                    expect: **expect,
                                }
                                .holds(state)
                            })
                            .map(|(state, _)| state.key.as_str())
                            .collect();
                        if changed.is_empty() {
                            written.conflicts += batch.len();
                            break;
                        }
                        let before = batch.len();
                        batch.retain(|group| {
                            let keep = group
                                .writes
                                .iter()
                                .all(|write| !changed.contains(write.key.as_str()));
                            if !keep {
                                tracing::debug!(
                                    object = group.what,
                                    "changed meanwhile; deciding again next round"
                                );
                            }
                            keep
                        });
                        written.conflicts += before - batch.len();
                    }
                }
            }
        }
        Ok(written)
    }
}

/// The write of `updated` over `instance`, compared on `instance`'s revision.
fn instance_group(instance: &Instance, updated: &Instance) -> Result<Group, NodeLifecycleError> {
    let namespace = instance.metadata.namespace_str();
    let name = instance.metadata.name_str();
    let key = registry_key::<Instance>(Some(namespace), name);
    Ok(Group {
        kind: Kind::Instance,
        what: format!("instance/{namespace}/{name}"),
        writes: vec![Write {
            value: encode_at(&key, updated)?,
            expect: Expect::ModRevision(object_revision(instance).unwrap_or(0)),
            key,
        }],
    })
}
