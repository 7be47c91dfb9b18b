//! The node lifecycle controller: turns expired node leases into unreachable Nodes and Lost
//! Instances, and applies each App's `unreachableStrategy` to them.
//!
//! Agents renew a `Lease` named after their node in namespace `pacer-node-lease` (see
//! `pacer_schemas::lease`). The controller caches Nodes, those Leases and Instances (watcher +
//! reflector over [`StoreSource`]) and works in *rounds*, like placement. A round decides, with
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

use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use pacer_client::runtime::reflector::{self, Writer};
use pacer_client::runtime::watcher::{self, watcher};
use pacer_schemas::lease::NODE_LEASE_NAMESPACE;
use pacer_schemas::{Instance, Lease, Node, Resource, Time};
use pacer_store::key::MAX_TXN_OPS;
use pacer_store::{Expect, Leadership, Revision, Store, Txn, TxnOutcome};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use decide::{AGENTLESS_ANNOTATION, Reachability};

use crate::events::{EventDraft, involved, next_record};
use crate::rounds::{AbortOnDrop, ControllerError, Rounds, batch_limit, commit, encode_at};
pub use crate::rounds::{Clock, ManualClock, SystemClock};
use crate::store_source::{StoreSource, object_revision, registry_key};

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
    /// Retry policy of the watchers.
    pub watcher: watcher::Config,
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
            watcher: watcher::Config::default(),
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
    clock: Arc<dyn Clock>,
    config: NodeLifecycleConfig,
}

/// The caches a round reads.
struct Caches {
    nodes: reflector::Store<Node>,
    leases: reflector::Store<Lease>,
    instances: reflector::Store<Instance>,
}

/// Which cache a watched change came from.
#[derive(Clone, Copy)]
enum Kind {
    Node,
    Lease,
    Instance,
}

/// The merged changes of the three caches, each tagged with its cache.
type Changes = BoxStream<'static, (Kind, watcher::Result<watcher::Event<Change>>)>;

/// Node names the last round found unreachable: lease and instance changes wake a round
/// only for these.
type Unreachable = Arc<Mutex<HashSet<String>>>;

/// Revisions the Node and Instance caches have seen.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    nodes: Revision,
    instances: Revision,
}

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
    written: Seen,
}

impl NodeLifecycleController {
    /// A controller over `store`, reading the time from `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: NodeLifecycleConfig) -> Self {
        Self {
            store,
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
        let (seen_tx, mut seen) = watch::channel(Seen::default());
        let (caches, changes) = self.caches();
        let driver = {
            let wake = rounds.waker();
            let unreachable = Arc::clone(&unreachable);
            let mut changes = changes;
            AbortOnDrop(tokio::spawn(async move {
                while let Some((kind, event)) = changes.next().await {
                    let (change, initial) = match event {
                        Ok(watcher::Event::Apply(change) | watcher::Event::Delete(change)) => {
                            (change, false)
                        }
                        Ok(watcher::Event::InitApply(change)) => (change, true),
                        Ok(watcher::Event::InitDone) => {
                            wake.notify_one();
                            continue;
                        }
                        Ok(watcher::Event::Init) | Err(_) => continue,
                    };
                    if let Some(revision) = change.revision {
                        seen_tx.send_if_modified(|seen| {
                            let slot = match kind {
                                Kind::Node => &mut seen.nodes,
                                Kind::Instance => &mut seen.instances,
                                Kind::Lease => return false,
                            };
                            let newer = revision > *slot;
                            if newer {
                                *slot = revision;
                            }
                            newer
                        });
                    }
                    if initial {
                        continue;
                    }
                    let relevant = match kind {
                        Kind::Node => true,
                        Kind::Lease | Kind::Instance => {
                            change.node.as_ref().is_some_and(|node| {
                                unreachable
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .contains(node)
                            }) || change.deleted_lease
                        }
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
                caches.nodes.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Node"))?;
                caches.leases.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Lease"))?;
                caches.instances.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Instance"))
            } => ready?,
        }
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
        let mut written = Seen::default();
        while rounds.next(&shutdown).await {
            if written != Seen::default() {
                let synced = tokio::time::timeout(
                    self.config.cache_sync_timeout,
                    seen.wait_for(|seen| {
                        seen.nodes >= written.nodes && seen.instances >= written.instances
                    }),
                )
                .await;
                if !matches!(synced, Ok(Ok(_))) {
                    tracing::warn!(
                        node_revision = written.nodes,
                        instance_revision = written.instances,
                        "the caches have not caught up with our last write; deciding anyway"
                    );
                }
            }
            let round = self
                .round(
                    &caches,
                    &unreachable,
                    leadership.as_deref(),
                    observing_since,
                )
                .await?;
            written.nodes = written.nodes.max(round.written.nodes);
            written.instances = written.instances.max(round.written.instances);
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

    /// The three caches and one merged stream of their changes.
    fn caches(&self) -> (Caches, Changes) {
        let config = &self.config.watcher;
        let nodes = Writer::<Node>::new();
        let leases = Writer::<Lease>::new();
        let instances = Writer::<Instance>::new().with_index(BY_NODE, |instance: &Instance| {
            instance.spec.node_name.iter().cloned().collect()
        });
        let caches = Caches {
            nodes: nodes.as_reader(),
            leases: leases.as_reader(),
            instances: instances.as_reader(),
        };
        let node_changes = reflector::reflector(
            nodes,
            watcher(
                StoreSource::<Node>::new(Arc::clone(&self.store)),
                config.clone(),
            ),
        )
        .map(|event| {
            (
                Kind::Node,
                event.map(|event| {
                    change_of(event, |node: &Node| {
                        Some(node.metadata.name_str().to_owned())
                    })
                }),
            )
        });
        let lease_changes = reflector::reflector(
            leases,
            watcher(
                StoreSource::<Lease>::namespaced(Arc::clone(&self.store), NODE_LEASE_NAMESPACE),
                config.clone(),
            ),
        )
        .map(|event| {
            let deleted = matches!(event, Ok(watcher::Event::Delete(_)));
            (
                Kind::Lease,
                event.map(|event| {
                    let mut change = change_of(event, |lease: &Lease| {
                        Some(lease.metadata.name_str().to_owned())
                    });
                    change.for_each(|change| change.deleted_lease = deleted);
                    change
                }),
            )
        });
        let instance_changes = reflector::reflector(
            instances,
            watcher(
                StoreSource::<Instance>::new(Arc::clone(&self.store)),
                config.clone(),
            ),
        )
        .map(|event| {
            (
                Kind::Instance,
                event.map(|event| {
                    change_of(event, |instance: &Instance| instance.spec.node_name.clone())
                }),
            )
        });
        let merged = stream::select_all([
            node_changes.boxed(),
            lease_changes.boxed(),
            instance_changes.boxed(),
        ])
        .boxed();
        (caches, merged)
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
            written: Seen {
                nodes: written.last_node_revision,
                instances: written.last_instance_revision,
            },
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
                                Kind::Instance | Kind::Lease => {
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

/// What the loop needs to know about a watched object.
#[derive(Clone, Debug, Default)]
struct Change {
    /// The node it concerns (a Node's or Lease's name, an Instance's `spec.nodeName`).
    node: Option<String>,
    /// Its store revision.
    revision: Option<Revision>,
    /// A Lease was deleted (its node may be unreachable at once).
    deleted_lease: bool,
}

/// Reduces a watcher event to the [`Change`] the loop needs.
fn change_of<K: Resource>(
    event: watcher::Event<K>,
    node_of: impl Fn(&K) -> Option<String>,
) -> watcher::Event<Change> {
    let change = |object: &K| Change {
        node: node_of(object),
        revision: object_revision(object),
        deleted_lease: false,
    };
    match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(change(&object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(change(&object)),
        watcher::Event::InitApply(object) => watcher::Event::InitApply(change(&object)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// Extension: run a closure on the change an event carries.
trait ForEachChange {
    fn for_each(&mut self, f: impl FnOnce(&mut Change));
}

impl ForEachChange for watcher::Event<Change> {
    fn for_each(&mut self, f: impl FnOnce(&mut Change)) {
        match self {
            watcher::Event::Apply(change)
            | watcher::Event::Delete(change)
            | watcher::Event::InitApply(change) => f(change),
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
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
