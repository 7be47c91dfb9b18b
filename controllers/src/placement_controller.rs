//! The placement controller: binds pending Instances to Nodes.
//!
//! It caches Instances, Nodes and Apps with the runtime's watcher and reflector (fed by the
//! store through [`StoreSource`]), and works in *rounds*: any change wakes it, changes are
//! debounced ([`PlacementConfig::debounce`]), and one round runs [`place`] once over every
//! pending instance, with the cached nodes and the bound instances as the cluster. It then
//! writes, straight to the store and as the API server would store them:
//!
//! * bindings — `spec.nodeName`, `spec.hostPorts`, `spec.role` (so `metadata.generation` + 1),
//!   `status.phase: Staging`, `status.host`, `status.stagedAt` and `Scheduled=True` — up to
//!   [`PlacementConfig::batch_size`] per transaction, each a compare-and-swap on the instance
//!   key's `mod_revision`, plus the leader's fencing compare when running under a
//!   [`Leadership`]; up to [`IN_FLIGHT`] transactions are in flight at once, so that the
//!   store commits them together; under a leadership every Instance write is also stamped
//!   with the writer's term ([`LEADER_TERM_ANNOTATION`], [`LEADER_ANNOTATION`]);
//! * for instances that cannot be placed, the condition `Scheduled=False`, reason
//!   `Unschedulable`, with the reason as message (only when it changed, so no write storm), and
//!   one `FailedScheduling` Warning Event per instance (`/registry/events/<ns>/<instance>.
//!   failedscheduling`), whose `count` and `lastTimestamp` are bumped when it repeats.
//!
//! An instance written by someone else meanwhile fails its compare: it is dropped from the
//! batch (the rest is retried at once) and placed again in the next round, from fresh caches.
//! Before each round the controller waits until its Instance cache has seen its own last
//! write, so it never places on a view that misses bindings it made.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use pacer_client::runtime::reflector::{self, Writer};
use pacer_client::runtime::watcher::{self, watcher};
use pacer_schemas::condition::{Condition, ConditionStatus, find_condition, set_condition};
use pacer_schemas::event::EventType;
use pacer_schemas::instance::InstancePhase;
use pacer_schemas::{App, AppSpec, Instance, Node, Resource, Time};
use pacer_store::key::MAX_TXN_OPS;
use pacer_store::{Expect, Leadership, Revision, Store, Txn, TxnOutcome};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::deployment::writes::IN_FLIGHT;
use crate::events::{EventDraft, involved, next_record};
use crate::placement::view::is_pending;
use crate::placement::{
    Binding, BoundInstance, ClusterView, ObjectKey, PlacementRequest, Strategy, Unplaced, place,
};
use crate::rounds::{
    AbortOnDrop, ControllerError, Rounds, SeenRevisions, batch_limit, commit, encode_at,
};
use crate::store_source::{StoreSource, object_revision, registry_key, registry_prefix};

/// The controller's name: its election is `/elections/placement/`.
pub const CONTROLLER_NAME: &str = "placement";
/// The `source.component` of its Events.
pub const COMPONENT: &str = "placement-controller";
/// The condition type it sets on Instances.
pub const SCHEDULED: &str = "Scheduled";
/// The condition reason (and Event reason) of an instance that cannot be placed.
pub const UNSCHEDULABLE: &str = "Unschedulable";
/// The Event reason of an instance that cannot be placed.
pub const FAILED_SCHEDULING: &str = "FailedScheduling";

/// Bytes of values per transaction, well under the store's 1.5 MiB.
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// How the placement controller runs.
#[derive(Clone, Debug)]
#[must_use]
pub struct PlacementConfig {
    /// After a change, wait this long for more before a round (rounds are at most this often).
    pub debounce: Duration,
    /// Run a round at least this often while instances are pending (catches missed changes,
    /// repeats Events).
    pub resync: Duration,
    /// Most instance writes per transaction (1–128; one fewer under leadership, whose fencing
    /// compare counts against etcd's 128 compares).
    pub batch_size: usize,
    /// Spread or pack.
    pub strategy: Strategy,
    /// Repeat an unchanged `FailedScheduling` Event (bump its count) at most this often.
    pub event_repeat: Duration,
    /// How long a round waits for the Instance cache to see the controller's last write.
    pub cache_sync_timeout: Duration,
    /// Retry policy of the watchers.
    pub watcher: watcher::Config,
}

impl Default for PlacementConfig {
    /// 100 ms debounce, 30 s resync, 128 per transaction, spread, Events repeated at most once
    /// a minute, 5 s cache-sync timeout.
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(100),
            resync: Duration::from_secs(30),
            batch_size: MAX_TXN_OPS,
            strategy: Strategy::Spread,
            event_repeat: Duration::from_secs(60),
            cache_sync_timeout: Duration::from_secs(5),
            watcher: watcher::Config::default(),
        }
    }
}

/// Why the placement controller stopped.
pub type PlacementError = ControllerError;

/// What one round did (for logs and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundStats {
    /// Pending instances considered.
    pub pending: usize,
    /// Bindings written.
    pub bound: usize,
    /// Instances left pending.
    pub unplaced: usize,
    /// Writes dropped because the instance changed meanwhile.
    pub conflicts: usize,
    /// Status-only writes (unschedulable conditions).
    pub status_writes: usize,
    /// Events created or bumped.
    pub events: usize,
}

/// The placement controller. [`PlacementController::run`] runs it until cancelled; wrap it in
/// [`run_elected`](crate::leader::run_elected) to run it on several replicas.
#[derive(Debug)]
pub struct PlacementController {
    store: Arc<dyn Store>,
    config: PlacementConfig,
    /// The last `FailedScheduling` report per instance: message and when.
    reported: HashMap<ObjectKey, (String, Instant)>,
}

/// The caches a round reads.
struct Caches {
    instances: reflector::Store<Instance>,
    nodes: reflector::Store<Node>,
    apps: reflector::Store<App>,
}

/// What a watched change means for the loop.
struct Signal {
    /// Run a round.
    wake: bool,
    /// An Instance revision the cache now reflects.
    instance_revision: Option<Revision>,
}

/// One instance write of a round.
struct InstanceWrite {
    key: String,
    instance: ObjectKey,
    app: String,
    node: Option<String>,
    expected: Revision,
    value: Vec<u8>,
    binding: bool,
}

/// What writing a list of instance writes did.
#[derive(Default)]
struct Written {
    bound: usize,
    status_writes: usize,
    conflicts: usize,
    last_revision: Revision,
}

impl PlacementController {
    /// A controller over `store`.
    pub fn new(store: Arc<dyn Store>, config: PlacementConfig) -> Self {
        Self {
            store,
            config,
            reported: HashMap::new(),
        }
    }

    /// Runs rounds until `shutdown` is cancelled. With `leadership`, every write carries its
    /// fencing compare, and a refused fence ends the run with
    /// [`ControllerError::LostLeadership`]. Other store failures end it too (the caller, e.g.
    /// [`run_elected`](crate::leader::run_elected), retries).
    pub async fn run(
        mut self,
        leadership: Option<Arc<Leadership>>,
        shutdown: CancellationToken,
    ) -> Result<(), PlacementError> {
        let mut rounds = Rounds::new(self.config.debounce, self.config.resync);
        let seen = SeenRevisions::default();
        let instances_prefix = registry_prefix::<Instance>();
        let (caches, signals) = self.caches();
        let driver = {
            let wake = rounds.waker();
            let seen = seen.clone();
            let prefix = instances_prefix.clone();
            let mut signals = signals;
            AbortOnDrop(tokio::spawn(async move {
                while let Some(signal) = signals.next().await {
                    if let Some(revision) = signal.instance_revision {
                        seen.record(&prefix, revision);
                    }
                    if signal.wake {
                        wake.notify_one();
                    }
                }
            }))
        };
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            ready = async {
                caches.instances.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Instance"))?;
                caches.nodes.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Node"))?;
                caches.apps.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("App"))
            } => ready?,
        }
        tracing::info!(
            instances = caches.instances.len(),
            nodes = caches.nodes.len(),
            fenced = leadership.is_some(),
            "placement controller started"
        );
        let mut written: HashMap<String, Revision> = HashMap::new();
        while rounds.next(&shutdown).await {
            if !written.is_empty()
                && !seen
                    .caught_up(&written, self.config.cache_sync_timeout)
                    .await
            {
                tracing::warn!(
                    revision = written.get(&instances_prefix).copied().unwrap_or_default(),
                    "the Instance cache has not caught up with our last write; placing anyway"
                );
            }
            let started = std::time::Instant::now();
            let (stats, revision, retry) = self.round(&caches, leadership.as_deref()).await?;
            if revision > 0 {
                let last = written.entry(instances_prefix.clone()).or_default();
                *last = (*last).max(revision);
            }
            rounds.finished(None);
            if stats.pending > 0 {
                tracing::info!(
                    pending = stats.pending,
                    bound = stats.bound,
                    unplaced = stats.unplaced,
                    conflicts = stats.conflicts,
                    status_writes = stats.status_writes,
                    events = stats.events,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "placement round"
                );
            }
            if retry {
                rounds.wake();
            }
        }
        drop(driver);
        tracing::info!("placement controller stopped");
        Ok(())
    }

    /// The three caches and one merged stream of their changes.
    fn caches(&self) -> (Caches, BoxStream<'static, Signal>) {
        let config = &self.config.watcher;
        let instances = Writer::<Instance>::new();
        let nodes = Writer::<Node>::new();
        let apps = Writer::<App>::new();
        let caches = Caches {
            instances: instances.as_reader(),
            nodes: nodes.as_reader(),
            apps: apps.as_reader(),
        };
        let instance_signals = reflector::reflector(
            instances,
            watcher(
                StoreSource::<Instance>::new(Arc::clone(&self.store)),
                config.clone(),
            ),
        )
        .map(|event| signal(event, true));
        let node_signals = reflector::reflector(
            nodes,
            watcher(
                StoreSource::<Node>::new(Arc::clone(&self.store)),
                config.clone(),
            ),
        )
        .map(|event| signal(event, false));
        let app_signals = reflector::reflector(
            apps,
            watcher(
                StoreSource::<App>::new(Arc::clone(&self.store)),
                config.clone(),
            ),
        )
        .map(|event| signal(event, false));
        let merged = stream::select_all([
            instance_signals.boxed(),
            node_signals.boxed(),
            app_signals.boxed(),
        ])
        .boxed();
        (caches, merged)
    }

    /// One round: place every pending instance, write bindings, conditions and Events.
    /// Returns the stats, the last revision written to an Instance, and whether to run another
    /// round soon (conflicts).
    async fn round(
        &mut self,
        caches: &Caches,
        leadership: Option<&Leadership>,
    ) -> Result<(RoundStats, Revision, bool), PlacementError> {
        let instances = caches.instances.state();
        let mut pending: Vec<&Instance> = instances
            .iter()
            .map(Arc::as_ref)
            .filter(|instance| {
                is_pending(instance) && instance.metadata.deletion_timestamp.is_none()
            })
            .collect();
        if pending.is_empty() {
            self.reported.clear();
            return Ok((RoundStats::default(), 0, false));
        }
        pending.sort_by(|a, b| {
            (
                a.metadata.creation_timestamp,
                a.metadata.namespace_str(),
                a.metadata.name_str(),
            )
                .cmp(&(
                    b.metadata.creation_timestamp,
                    b.metadata.namespace_str(),
                    b.metadata.name_str(),
                ))
        });
        let nodes = caches.nodes.state();
        let apps = caches.apps.state();
        let app_specs: HashMap<ObjectKey, &AppSpec> = apps
            .iter()
            .map(|app| {
                (
                    ObjectKey::new(app.metadata.namespace_str(), app.metadata.name_str()),
                    &app.spec,
                )
            })
            .collect();
        let mut view = ClusterView::from_nodes(
            nodes.iter().map(Arc::as_ref),
            BoundInstance::from_instances(instances.iter().map(Arc::as_ref)),
        );
        let request = PlacementRequest::from_instances(
            pending.iter().copied(),
            |app| app_specs.get(app).copied(),
            self.config.strategy,
        );
        let plan = place(&request, &mut view);
        let by_key: HashMap<ObjectKey, &Instance> = pending
            .iter()
            .map(|instance| (instance_key(instance), *instance))
            .collect();
        let now = now();
        let mut writes = Vec::with_capacity(plan.bindings.len());
        for binding in &plan.bindings {
            if let Some(instance) = by_key.get(&binding.instance) {
                writes.push(bind(instance, binding, now, leadership)?);
            }
        }
        for unplaced in &plan.unplaced {
            if let Some(instance) = by_key.get(&unplaced.instance)
                && let Some(write) = mark_unschedulable(instance, unplaced, now, leadership)?
            {
                writes.push(write);
            }
        }
        let written = self.write_instances(writes, leadership).await?;
        let events = self
            .report_failures(&plan.unplaced, &by_key, leadership, now)
            .await?;
        let stats = RoundStats {
            pending: pending.len(),
            bound: written.bound,
            unplaced: plan.unplaced.len(),
            conflicts: written.conflicts,
            status_writes: written.status_writes,
            events,
        };
        Ok((stats, written.last_revision, written.conflicts > 0))
    }

    /// Writes instance values in batches, each a compare-and-swap per instance; a batch that
    /// loses a compare is retried without the instances that changed. Up to [`IN_FLIGHT`]
    /// batches are in flight at once (each instance is in one batch only, so they are
    /// independent), and the store commits them together.
    async fn write_instances(
        &self,
        writes: Vec<InstanceWrite>,
        leadership: Option<&Leadership>,
    ) -> Result<Written, PlacementError> {
        let limit = batch_limit(self.config.batch_size, leadership.is_some());
        let mut batches: Vec<Vec<InstanceWrite>> = Vec::new();
        let mut bytes = 0;
        for write in writes {
            let full = batches.last().is_none_or(|batch| {
                batch.len() >= limit || bytes + write.value.len() > MAX_BATCH_BYTES
            });
            if full {
                batches.push(Vec::with_capacity(limit));
                bytes = 0;
            }
            bytes += write.value.len() + write.key.len();
            if let Some(batch) = batches.last_mut() {
                batch.push(write);
            }
        }
        let store = self.store.as_ref();
        let mut results = stream::iter(
            batches
                .into_iter()
                .map(|batch| write_instance_batch(store, leadership, batch)),
        )
        .buffer_unordered(IN_FLIGHT);
        let mut written = Written::default();
        while let Some(result) = results.next().await {
            let part = result?;
            written.bound += part.bound;
            written.status_writes += part.status_writes;
            written.conflicts += part.conflicts;
            written.last_revision = written.last_revision.max(part.last_revision);
        }
        Ok(written)
    }

    /// Creates or bumps the `FailedScheduling` Event of each unplaced instance whose reason
    /// changed or was last reported more than [`PlacementConfig::event_repeat`] ago.
    async fn report_failures(
        &mut self,
        unplaced: &[Unplaced],
        instances: &HashMap<ObjectKey, &Instance>,
        leadership: Option<&Leadership>,
        now: Time,
    ) -> Result<usize, PlacementError> {
        let current: HashSet<&ObjectKey> = unplaced.iter().map(|u| &u.instance).collect();
        self.reported.retain(|key, _| current.contains(key));
        let due: Vec<(&Unplaced, String)> = unplaced
            .iter()
            .map(|u| (u, u.reason.to_string()))
            .filter(|(u, message)| match self.reported.get(&u.instance) {
                Some((last, at)) => last != message || at.elapsed() >= self.config.event_repeat,
                None => true,
            })
            .collect();
        let limit = batch_limit(self.config.batch_size, leadership.is_some());
        let mut count = 0;
        for chunk in due.chunks(limit) {
            let mut txn = Txn::new();
            let mut keys = Vec::with_capacity(chunk.len());
            for (unplaced, message) in chunk {
                let Some(instance) = instances.get(&unplaced.instance) else {
                    continue;
                };
                let key = registry_key::<pacer_schemas::Event>(
                    Some(&unplaced.instance.namespace),
                    &event_name(&unplaced.instance.name),
                );
                let draft = EventDraft {
                    namespace: &unplaced.instance.namespace,
                    name: &event_name(&unplaced.instance.name),
                    involved: involved::<Instance>(&instance.metadata),
                    reason: FAILED_SCHEDULING,
                    message,
                    type_: EventType::Warning,
                    action: "Scheduling",
                    component: COMPONENT,
                };
                let (expect, event) = next_record(self.store.as_ref(), &key, draft, now).await?;
                let value = encode_at(&key, &event)?;
                txn = txn.when(key.clone(), expect).put(key.clone(), value);
                keys.push(&unplaced.instance);
                tracing::info!(
                    app = %unplaced.app,
                    instance = %unplaced.instance,
                    reason = %message,
                    "cannot place instance"
                );
            }
            if keys.is_empty() {
                continue;
            }
            match commit(self.store.as_ref(), leadership, txn).await? {
                TxnOutcome::Committed { .. } => {
                    count += keys.len();
                    let at = Instant::now();
                    for (unplaced, message) in chunk {
                        self.reported
                            .insert(unplaced.instance.clone(), (message.clone(), at));
                    }
                }
                TxnOutcome::CompareFailed { .. } => {
                    tracing::debug!("an Event changed meanwhile; reporting again next round");
                }
            }
        }
        Ok(count)
    }
}

/// Writes one batch of instance values in one transaction; when it loses compares, again
/// without the instances that changed.
async fn write_instance_batch(
    store: &dyn Store,
    leadership: Option<&Leadership>,
    mut batch: Vec<InstanceWrite>,
) -> Result<Written, PlacementError> {
    let mut written = Written::default();
    while !batch.is_empty() {
        let mut txn = Txn::new();
        for write in &batch {
            txn = txn
                .when(write.key.clone(), Expect::ModRevision(write.expected))
                .put(write.key.clone(), write.value.clone());
        }
        match commit(store, leadership, txn).await? {
            TxnOutcome::Committed { revision } => {
                written.last_revision = written.last_revision.max(revision);
                for write in &batch {
                    if write.binding {
                        written.bound += 1;
                        tracing::debug!(
                            app = %write.app,
                            instance = %write.instance,
                            node = write.node.as_deref().unwrap_or_default(),
                            revision,
                            "bound"
                        );
                    } else {
                        written.status_writes += 1;
                    }
                }
                break;
            }
            TxnOutcome::CompareFailed { observed, .. } => {
                let changed: HashSet<&str> = observed
                    .iter()
                    .zip(&batch)
                    .filter(|(state, write)| state.mod_revision != write.expected)
                    .map(|(state, _)| state.key.as_str())
                    .collect();
                if changed.is_empty() {
                    // Should not happen: nothing we compared changed. Give up on the batch;
                    // the next round starts from fresh caches.
                    written.conflicts += batch.len();
                    break;
                }
                let before = batch.len();
                batch.retain(|write| {
                    let keep = !changed.contains(write.key.as_str());
                    if !keep {
                        tracing::debug!(
                            app = %write.app,
                            instance = %write.instance,
                            "instance changed meanwhile; placing it again next round"
                        );
                    }
                    keep
                });
                written.conflicts += before - batch.len();
            }
        }
    }
    Ok(written)
}

/// Maps a watcher event to a loop signal.
fn signal<K: Resource>(event: watcher::Result<watcher::Event<K>>, instances: bool) -> Signal {
    match event {
        Ok(watcher::Event::Apply(object) | watcher::Event::Delete(object)) => Signal {
            wake: true,
            instance_revision: if instances {
                object_revision(&object)
            } else {
                None
            },
        },
        Ok(watcher::Event::InitApply(object)) => Signal {
            wake: false,
            instance_revision: if instances {
                object_revision(&object)
            } else {
                None
            },
        },
        Ok(watcher::Event::InitDone) => Signal {
            wake: true,
            instance_revision: None,
        },
        Ok(watcher::Event::Init) | Err(_) => Signal {
            wake: false,
            instance_revision: None,
        },
    }
}

fn instance_key(instance: &Instance) -> ObjectKey {
    ObjectKey::new(
        instance.metadata.namespace_str(),
        instance.metadata.name_str(),
    )
}

/// The name of an instance's `FailedScheduling` Event (one per instance, bumped on repeats).
pub fn event_name(instance: &str) -> String {
    format!("{instance}.failedscheduling")
}

/// Now, to the second (as the API server stores timestamps).
fn now() -> Time {
    let now = jiff::Timestamp::now();
    Time::from_unix_seconds(now.as_second()).unwrap_or_else(|| Time::new(now))
}

/// The annotation that names the leadership term (the create revision of the leader's
/// election key, i.e. its fencing token) under which an Instance was last written.
pub const LEADER_TERM_ANNOTATION: &str = "pacer.dev/leader-term";
/// The annotation that names the leader's election key (whose value is the replica's
/// identity, `<pid>:<listen address>`) under which an Instance was last written.
pub const LEADER_ANNOTATION: &str = "pacer.dev/leader";

/// The write of `updated` over `instance`, compared on `instance`'s revision. Under a
/// leadership, the value is stamped with [`LEADER_TERM_ANNOTATION`] and [`LEADER_ANNOTATION`]
/// so that the store's history shows which term wrote each version: the HA test
/// (`cli/tests/ha.rs`) reads it back to prove no Instance was written by two leaders.
fn write_of(
    instance: &Instance,
    mut updated: Instance,
    binding: bool,
    leadership: Option<&Leadership>,
) -> Result<InstanceWrite, PlacementError> {
    let key = registry_key::<Instance>(
        Some(instance.metadata.namespace_str()),
        instance.metadata.name_str(),
    );
    if let Some(leadership) = leadership {
        let token = leadership.token();
        let annotations = updated
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        annotations.insert(
            LEADER_TERM_ANNOTATION.to_owned(),
            token.create_revision.to_string(),
        );
        annotations.insert(LEADER_ANNOTATION.to_owned(), token.key.clone());
    }
    // Stored without a resourceVersion; cleared here so that encoding needs no copy.
    let expected = object_revision(instance).unwrap_or(0);
    updated.metadata.resource_version = None;
    let value = encode_at(&key, &updated)?;
    Ok(InstanceWrite {
        instance: instance_key(instance),
        app: instance.spec.app.clone(),
        node: updated.spec.node_name.clone(),
        expected,
        key,
        value,
        binding,
    })
}

/// The instance bound as `binding` says: spec (node, host ports, role; generation + 1) and
/// status (Staging, host, stagedAt, `Scheduled=True`).
fn bind(
    instance: &Instance,
    binding: &Binding,
    now: Time,
    leadership: Option<&Leadership>,
) -> Result<InstanceWrite, PlacementError> {
    let mut updated = instance.clone();
    updated.spec.node_name = Some(binding.node_name.clone());
    updated.spec.host_ports = Some(binding.host_ports.clone());
    updated.spec.role = Some(binding.role.clone());
    if updated.spec != instance.spec {
        updated.metadata.generation = Some(instance.metadata.generation.unwrap_or(0) + 1);
    }
    let generation = updated.metadata.generation;
    let status = updated.status.get_or_insert_with(Default::default);
    status.phase = InstancePhase::Staging;
    status.host = Some(binding.hostname.clone());
    status.staged_at = Some(now);
    set_condition(
        &mut status.conditions,
        Condition {
            type_: SCHEDULED.to_owned(),
            status: ConditionStatus::True,
            observed_generation: generation,
            last_transition_time: Some(now),
            reason: Some("Scheduled".to_owned()),
            message: Some(format!("bound to node {}", binding.node_name)),
        },
    );
    write_of(instance, updated, true, leadership)
}

/// The status write that records why an instance stays pending, or `None` when its
/// `Scheduled` condition already says so.
fn mark_unschedulable(
    instance: &Instance,
    unplaced: &Unplaced,
    now: Time,
    leadership: Option<&Leadership>,
) -> Result<Option<InstanceWrite>, PlacementError> {
    let message = unplaced.reason.to_string();
    let current = instance
        .status
        .as_ref()
        .and_then(|status| find_condition(&status.conditions, SCHEDULED));
    if current.is_some_and(|condition| {
        condition.status == ConditionStatus::False
            && condition.reason.as_deref() == Some(UNSCHEDULABLE)
            && condition.message.as_deref() == Some(message.as_str())
    }) {
        return Ok(None);
    }
    let mut updated = instance.clone();
    let generation = updated.metadata.generation;
    let status = updated.status.get_or_insert_with(Default::default);
    set_condition(
        &mut status.conditions,
        Condition {
            type_: SCHEDULED.to_owned(),
            status: ConditionStatus::False,
            observed_generation: generation,
            last_transition_time: Some(now),
            reason: Some(UNSCHEDULABLE.to_owned()),
            message: Some(message),
        },
    );
    write_of(instance, updated, false, leadership).map(Some)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use pacer_store::embedded::EmbeddedStore;
    use pacer_store::{Election, ListOptions};
    use serde_json::{Value, json};

    use super::*;
    use crate::store_source::decode_stored;

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
        (dir, Arc::new(store))
    }

    async fn put(store: &dyn Store, key: &str, value: Value) {
        store
            .create(key, serde_json::to_vec(&value).unwrap(), None)
            .await
            .unwrap();
    }

    async fn add_node(store: &dyn Store, name: &str, rack: &str) {
        put(
            store,
            &format!("/registry/nodes/{name}"),
            json!({
                "apiVersion": "pacer.dev/v1", "kind": "Node",
                "metadata": {"name": name, "uid": format!("uid-{name}"), "generation": 1},
                "spec": {"attributes": {"rack": rack}, "unschedulable": false, "role": "*"},
                "status": {
                    "capacity": {"cpus": 4.0, "mem": 4096.0, "disk": 10000.0, "gpus": 0, "ports": [{"begin": 31000, "end": 31009}]},
                    "allocatable": {"cpus": 4.0, "mem": 4096.0, "disk": 10000.0, "gpus": 0, "ports": [{"begin": 31000, "end": 31009}]},
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }),
        )
        .await;
    }

    async fn add_instance(store: &dyn Store, name: &str, app: &str, template: Value) {
        put(
            store,
            &format!("/registry/instances/default/{name}"),
            json!({
                "apiVersion": "pacer.dev/v1", "kind": "Instance",
                "metadata": {
                    "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                    "generation": 1, "creationTimestamp": "2024-05-01T10:00:00Z",
                    "labels": {"pacer.dev/app": app},
                },
                "spec": {"app": app, "appVersion": "2024-05-01T10:00:00Z", "template": template, "goal": "Running"},
            }),
        )
        .await;
    }

    async fn instances(store: &dyn Store) -> Vec<Instance> {
        let page = store
            .list("/registry/instances/", &ListOptions::default())
            .await
            .unwrap();
        page.items
            .iter()
            .map(|kv| decode_stored::<Instance>(&kv.value, kv.mod_revision).unwrap())
            .collect()
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
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn config() -> PlacementConfig {
        PlacementConfig {
            debounce: Duration::from_millis(20),
            ..PlacementConfig::default()
        }
    }

    #[tokio::test]
    async fn binds_unique_instances_to_distinct_nodes_and_reports_what_does_not_fit() {
        let (_dir, store) = store();
        for (index, rack) in ["r1", "r1", "r2", "r2", "r3"].iter().enumerate() {
            add_node(store.as_ref(), &format!("n{}", index + 1), rack).await;
        }
        let web = json!({"cmd": "sleep 1000", "cpus": 0.5, "mem": 128, "constraints": [["hostname", "UNIQUE"]],
                         "portDefinitions": [{"port": 0, "name": "http"}]});
        for index in 1..=3 {
            add_instance(store.as_ref(), &format!("web.{index}"), "web", web.clone()).await;
        }
        add_instance(
            store.as_ref(),
            "huge.1",
            "huge",
            json!({"cmd": "sleep 1000", "cpus": 0.5, "mem": 100000}),
        )
        .await;
        let shutdown = CancellationToken::new();
        let controller = PlacementController::new(Arc::clone(&store), config());
        let task = tokio::spawn(controller.run(None, shutdown.clone()));

        eventually("three bindings", || async {
            instances(store.as_ref())
                .await
                .iter()
                .filter(|i| i.spec.node_name.is_some())
                .count()
                == 3
        })
        .await;
        let all = instances(store.as_ref()).await;
        let mut nodes = HashSet::new();
        for instance in all.iter().filter(|i| i.spec.app == "web") {
            let node = instance.spec.node_name.clone().unwrap();
            assert!(nodes.insert(node), "UNIQUE hostname violated: {all:#?}");
            assert_eq!(instance.metadata.generation, Some(2));
            assert_eq!(instance.spec.host_ports.as_ref().map(Vec::len), Some(1));
            let status = instance.status.as_ref().unwrap();
            assert_eq!(status.phase, InstancePhase::Staging);
            assert!(status.staged_at.is_some());
            assert!(
                find_condition(&status.conditions, SCHEDULED)
                    .unwrap()
                    .is_true()
            );
        }
        eventually("the unschedulable condition and its Event", || async {
            let huge = instances(store.as_ref())
                .await
                .into_iter()
                .find(|i| i.spec.app == "huge")
                .unwrap();
            let condition = huge
                .status
                .as_ref()
                .and_then(|s| find_condition(&s.conditions, SCHEDULED).cloned());
            let event = store
                .get("/registry/events/default/huge.1.failedscheduling")
                .await
                .unwrap();
            condition.is_some() && event.is_some()
        })
        .await;
        let huge = instances(store.as_ref())
            .await
            .into_iter()
            .find(|i| i.spec.app == "huge")
            .unwrap();
        assert_eq!(huge.spec.node_name, None);
        assert_eq!(
            huge.metadata.generation,
            Some(1),
            "status writes keep generation"
        );
        let condition = find_condition(&huge.status.as_ref().unwrap().conditions, SCHEDULED)
            .unwrap()
            .clone();
        assert_eq!(condition.status, ConditionStatus::False);
        assert_eq!(condition.reason.as_deref(), Some(UNSCHEDULABLE));
        assert_eq!(
            condition.message.as_deref(),
            Some("0/5 nodes available: 5 insufficient mem")
        );
        let kv = store
            .get("/registry/events/default/huge.1.failedscheduling")
            .await
            .unwrap()
            .unwrap();
        let stored: Value = serde_json::from_slice(&kv.value).unwrap();
        assert!(stored.pointer("/metadata/resourceVersion").is_none());
        assert_eq!(stored["reason"], "FailedScheduling");
        assert_eq!(stored["type"], "Warning");
        assert_eq!(stored["count"], 1);
        assert_eq!(stored["involvedObject"]["name"], "huge.1");
        let huge_revision = object_revision(&huge).unwrap();

        // A new node wakes a round and changes the reason (0/6): the condition is rewritten.
        add_node(store.as_ref(), "n6", "r3").await;
        let huge_of = || async {
            instances(store.as_ref())
                .await
                .into_iter()
                .find(|i| i.spec.app == "huge")
                .unwrap()
        };
        eventually("the reason updated", || async {
            object_revision(&huge_of().await) != Some(huge_revision)
        })
        .await;
        let revision = object_revision(&huge_of().await).unwrap();
        // An unrelated change wakes a round too, but the reason is the same: no write.
        put(
            store.as_ref(),
            "/registry/apps/default/other",
            json!({"apiVersion": "pacer.dev/v1", "kind": "App",
                   "metadata": {"name": "other", "namespace": "default"}, "spec": {"cmd": "true"}}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let huge = instances(store.as_ref())
            .await
            .into_iter()
            .find(|i| i.spec.app == "huge")
            .unwrap();
        assert_eq!(object_revision(&huge), Some(revision));
        assert!(
            find_condition(&huge.status.unwrap().conditions, SCHEDULED)
                .unwrap()
                .message
                .as_deref()
                .unwrap()
                .starts_with("0/6 nodes available")
        );
        shutdown.cancel();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn events_repeat_by_bumping_count_and_a_deposed_leader_writes_nothing() {
        let (_dir, store) = store();
        add_node(store.as_ref(), "n1", "r1").await;
        add_instance(
            store.as_ref(),
            "huge.1",
            "huge",
            json!({"cmd": "sleep 1000", "cpus": 0.5, "mem": 100000}),
        )
        .await;
        let lease = store.lease_grant(30).await.unwrap();
        let election = Election::new(Arc::clone(&store), "/elections/placement/").unwrap();
        let leadership = Arc::new(election.campaign(lease, b"me".to_vec()).await.unwrap());
        let shutdown = CancellationToken::new();
        let controller = PlacementController::new(
            Arc::clone(&store),
            PlacementConfig {
                event_repeat: Duration::ZERO,
                resync: Duration::from_millis(100),
                ..config()
            },
        );
        let task = tokio::spawn(controller.run(Some(Arc::clone(&leadership)), shutdown.clone()));
        let event_count = || async {
            store
                .get("/registry/events/default/huge.1.failedscheduling")
                .await
                .unwrap()
                .map(|kv| {
                    serde_json::from_slice::<Value>(&kv.value).unwrap()["count"]
                        .as_i64()
                        .unwrap()
                })
        };
        eventually("the Event repeated", || async {
            event_count().await.is_some_and(|count| count >= 3)
        })
        .await;
        // Depose the leader: its next fenced write fails and the controller stops.
        store.lease_revoke(lease).await.unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the controller stops")
            .unwrap();
        assert!(
            matches!(result, Err(PlacementError::LostLeadership)),
            "{result:?}"
        );
        let count = event_count().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(event_count().await, count, "no write after deposition");
    }
}
