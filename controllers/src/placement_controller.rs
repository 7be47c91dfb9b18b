//! The placement controller: binds pending Instances to Nodes by accepting the offer broker's
//! offers — it is the `placement` framework of [`offers`](crate::offers) (and one framework
//! per reserved role that pending instances accept).
//!
//! It reads Instances, Nodes, Apps, Offers and Frameworks from the process' shared
//! [`Informers`], and works in *rounds*: a change of an Instance, Node or App, or of one of its
//! own offers, wakes it; changes are debounced ([`PlacementConfig::debounce`]), and one round
//! runs [`place`] once over every pending instance, with the open offers made to its
//! frameworks as the candidates
//! ([`ClusterView::from_offers`]) and the bound instances counted for constraints. It then
//! writes, straight to the store and as the API server would store them:
//!
//! * accepts — per offer used, the offer compared at its revision and deleted, and each
//!   instance placed on it compared at its revision and bound ([`bind_unit`]): `spec.nodeName`,
//!   `spec.hostPorts`, `spec.role` (the offer's; so `metadata.generation` + 1), the
//!   [`OFFER_ANNOTATION`](crate::offers::accept::OFFER_ANNOTATION), `status.phase: Staging`, `status.host`, `status.stagedAt` and
//!   `Scheduled=True`. An offer's accept commits whole or not at all; several offers' accepts
//!   share a transaction (≤ 128 operations with the leader's fencing compare, ≤ 1 MiB), and
//!   several transactions are in flight at once ([`write_units`]). Under a leadership every
//!   Instance write is also stamped with the writer's term ([`LEADER_TERM_ANNOTATION`],
//!   [`LEADER_ANNOTATION`]);
//! * for instances that cannot be placed, the condition `Scheduled=False`, reason
//!   `Unschedulable`, with the reason as message (only when it changed, so no write storm), and
//!   one `FailedScheduling` Warning Event per instance (`/registry/events/<ns>/<instance>.
//!   failedscheduling`), whose `count` and `lastTimestamp` are bumped when it repeats;
//! * its `Framework`s: [`FRAMEWORK`] (role `*`), and for each role that some node is reserved
//!   for (`Node.spec.role`) and a pending instance accepts (`acceptedResourceRoles`, or the
//!   App's `role`) one labelled [`MANAGED_BY`]` = `[`COMPONENT`] with that role
//!   ([`role_framework_name`]), deleted once no node is reserved for the role — resources
//!   reserved for a role are offered only to that role.
//!   Each is created when absent (a user's later edits of its weight, quota or timeout are
//!   kept while it exists), and its `spec.suppressed` — Mesos' SUPPRESS and REVIVE — set after
//!   [`PlacementConfig::suppress_after`] without a pending instance that accepts its role, so
//!   an idle cluster does not churn offers for it and other frameworks get every node; cleared
//!   as soon as one is pending. An offer's candidate role is the node's reservation, so
//!   unreserved resources offered to a role's framework take instances of role `*` too;
//! * declines — when a round places nothing and leaves instances pending, each open offer is
//!   declined ([`decline_unit`], `refuseSeconds` [`PlacementConfig::decline_refuse`]), so
//!   other frameworks get those nodes now instead of when the offers expire. The broker's
//!   filter lapses early when the node frees resources; and when an instance is pending that
//!   was not at the last decline (new work), or Nodes or Apps changed since (their specs, or
//!   which nodes are ready), the controller revives its unsuppressed frameworks that hold
//!   filters (`spec.reviveCount` + 1, a new generation), which drops them (Mesos' DECLINE with
//!   filters and REVIVE, as Marathon uses them).
//!
//! Reasons: what the offers could not take is explained again on a view from the nodes
//! ([`ClusterView::from_nodes`], with this round's placements counted) on which nodes without
//! an open offer for the framework are withheld ([`ClusterView::withhold_unoffered`]). A node
//! that is not ready, unschedulable, short of resources or rejected by a constraint says so as
//! with direct placement (`0/5 nodes available: 5 insufficient mem`), and is reported at once;
//! one that would take the instance but is not offered to `placement` (offered to another
//! framework, filtered, or simply not offered yet — right after startup, a revive or an
//! accept) says `not offered`, and such an instance is reported only once it has waited
//! [`PlacementConfig::offer_wait`] for offers, so the window between an accept and the next
//! offers writes nothing.
//!
//! An accept that loses a compare (the offer was rescinded, expired or taken, an instance was
//! written by someone else) writes nothing; the rest is retried at once, and what it would
//! have bound is placed again in the next round, from fresh caches. Before each round the
//! controller waits until its Instance, Offer and Framework caches have seen its own last
//! writes, so it never places on a view that misses bindings it made nor accepts an offer it
//! consumed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use pacer_client::runtime::reflector::{self, ObjectRef};
use pacer_schemas::condition::{Condition, ConditionStatus, find_condition, set_condition};
use pacer_schemas::event::EventType;
use pacer_schemas::framework::{Framework, FrameworkSpec};
use pacer_schemas::instance::InstancePhase;
use pacer_schemas::offer::OfferPhase;
use pacer_schemas::{App, AppSpec, Instance, Node, ObjectMeta, Offer, Resource, Time};
use pacer_store::{Leadership, Revision, Store, Txn, TxnOutcome};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::deployment::writes::{KeyWrite, Unit, write_units};
use crate::events::{EventDraft, involved, next_record};
use crate::informers::{Applied, Change, Changes, Informer, Informers, caught_up};
use crate::offers::accept::{MAX_BINDINGS, annotate_offer, bind_unit};
use crate::offers::decline::{Decline, decline_unit};
use crate::placement::view::{UNRESERVED_ROLE, is_pending, is_ready};
use crate::placement::{
    Binding, BoundInstance, ClusterView, ObjectKey, PlacementRequest, Reason, Scalars, Strategy,
    UnplacedReason, place,
};
use crate::rounds::{AbortOnDrop, ControllerError, Rounds, Waker, batch_limit, commit, encode_at};
use crate::store_source::{object_revision, registry_key};

/// The controller's name: its election is `/elections/placement/`.
pub const CONTROLLER_NAME: &str = "placement";
/// The name of its `Framework` of role `*`, and the `spec.framework` of the offers it accepts
/// of that framework. For a reserved role that pending instances accept it registers one more
/// framework per role, named `placement-<role>` (see [`role_framework_name`]).
pub const FRAMEWORK: &str = "placement";
/// The label (`app.kubernetes.io/managed-by`) on the frameworks it registers; with its value
/// [`COMPONENT`] it marks the per-role ones as its own.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The `spec.offerTimeoutSeconds` of the Framework it creates: long enough that an offer is
/// used before it expires even when a round is slow, short enough that an offer it cannot use
/// goes back to the other frameworks soon.
pub const OFFER_TIMEOUT_SECONDS: f64 = 30.0;
/// The `source.component` of its Events.
pub const COMPONENT: &str = "placement-controller";
/// The condition type it sets on Instances.
pub const SCHEDULED: &str = "Scheduled";
/// The condition reason (and Event reason) of an instance that cannot be placed.
pub const UNSCHEDULABLE: &str = "Unschedulable";
/// The Event reason of an instance that cannot be placed.
pub const FAILED_SCHEDULING: &str = "FailedScheduling";

/// Bytes of instance values per accept, within [`write_units`]' 1 MiB per transaction.
const MAX_ACCEPT_BYTES: usize = 900 * 1024;
/// An offer expiring sooner than this is not accepted (the broker may be deleting it).
const EXPIRY_MARGIN_SECONDS: i64 = 1;

/// How the placement controller runs.
#[derive(Clone, Debug)]
#[must_use]
pub struct PlacementConfig {
    /// After a change, wait this long for more before a round (rounds are at most this often).
    pub debounce: Duration,
    /// Run a round at least this often while instances are pending (catches missed changes,
    /// repeats Events).
    pub resync: Duration,
    /// Most writes per transaction (1–128; one fewer under leadership, whose fencing compare
    /// counts against etcd's 128 compares): bounds the instances one accept binds (the offer's
    /// delete is one of the writes) and the Events written together.
    pub batch_size: usize,
    /// Spread or pack.
    pub strategy: Strategy,
    /// Repeat an unchanged `FailedScheduling` Event (bump its count) at most this often.
    pub event_repeat: Duration,
    /// How long a round waits for the caches to see the controller's last writes.
    pub cache_sync_timeout: Duration,
    /// Suppress the framework's offers after this long without pending instances.
    pub suppress_after: Duration,
    /// How long an instance that a node not offered to the framework would take waits for an
    /// offer before it is reported unschedulable.
    pub offer_wait: Duration,
    /// How long an offer it declines keeps its node from the framework (`refuseSeconds`; like
    /// Marathon's `--decline_offer_duration`). Shorter when the node frees resources, and
    /// ended by the revive that new pending instances trigger.
    pub decline_refuse: Duration,
}

impl Default for PlacementConfig {
    /// 50 ms debounce, 30 s resync, 128 per transaction, spread, Events repeated at most once
    /// a minute, 5 s cache-sync timeout, suppressed after 3 s idle, 5 s wait for offers,
    /// declines refused for 30 s.
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(50),
            resync: Duration::from_secs(30),
            batch_size: pacer_store::key::MAX_TXN_OPS,
            strategy: Strategy::Spread,
            event_repeat: Duration::from_secs(60),
            cache_sync_timeout: Duration::from_secs(5),
            suppress_after: Duration::from_secs(3),
            offer_wait: Duration::from_secs(5),
            decline_refuse: Duration::from_secs(30),
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
    /// Open offers made to the framework.
    pub offers: usize,
    /// Offers accepted (their accepts committed).
    pub accepted: usize,
    /// Instances bound by the accepts written (those of an accept that lost a compare
    /// included).
    pub bound: usize,
    /// Instances placed but left for the next round (an accept binds at most a transaction's
    /// worth).
    pub deferred: usize,
    /// Instances left pending.
    pub unplaced: usize,
    /// Of those, the ones waiting for an offer (not reported yet).
    pub waiting: usize,
    /// Open offers declined: no pending instance fits them.
    pub declined: usize,
    /// Units of writes dropped because an offer or instance changed meanwhile.
    pub conflicts: usize,
    /// Status-only writes (unschedulable conditions).
    pub status_writes: usize,
    /// Events created or bumped.
    pub events: usize,
}

/// The placement controller. [`PlacementController::run`] runs it until cancelled; wrap it in
/// [`run_elected`](crate::leader::run_elected) to run it on several replicas. It places only
/// through the offers of an [`OfferBroker`](crate::offers::OfferBroker) running on the same
/// store.
#[derive(Debug)]
pub struct PlacementController {
    store: Arc<dyn Store>,
    informers: Informers,
    config: PlacementConfig,
    /// The last `FailedScheduling` report per instance: message and when.
    reported: HashMap<ObjectKey, (String, Instant)>,
    /// Instances that only a node not offered to the framework would take, and since when.
    waiting: HashMap<ObjectKey, Instant>,
    /// Per role of its frameworks: since when no pending instance has accepted the role.
    idle_since: HashMap<String, Instant>,
    /// The situation when it last declined offers (or revived): new work or changed Nodes or
    /// Apps since make it revive (drop its decline filters).
    last_decline: Option<Situation>,
}

/// What placement depends on besides the offers, as far as declines go: the pending
/// instances, and the Nodes and Apps (their specs, by generation, and which nodes are ready).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Situation {
    pending: HashSet<ObjectKey>,
    nodes: (usize, usize, i64),
    apps: (usize, i64),
}

impl Situation {
    fn of(pending: &[&Instance], nodes: &[Arc<Node>], apps: &[Arc<App>]) -> Self {
        let generations = |generation: Option<i64>| generation.unwrap_or(0);
        Self {
            pending: pending
                .iter()
                .map(|instance| instance_key(instance))
                .collect(),
            nodes: (
                nodes.len(),
                nodes.iter().filter(|node| is_ready(node)).count(),
                nodes
                    .iter()
                    .map(|node| generations(node.metadata.generation))
                    .sum(),
            ),
            apps: (
                apps.len(),
                apps.iter()
                    .map(|app| generations(app.metadata.generation))
                    .sum(),
            ),
        }
    }

    /// Whether `now` may let the declined offers take an instance: an instance pending that
    /// was not, or Nodes or Apps changed.
    fn calls_for_revive(&self, now: &Situation) -> bool {
        now.nodes != self.nodes
            || now.apps != self.apps
            || now.pending.iter().any(|key| !self.pending.contains(key))
    }
}

/// The shared informers it reads.
struct PlacementInformers {
    instances: Informer<Instance>,
    nodes: Informer<Node>,
    apps: Informer<App>,
    offers: Informer<Offer>,
    frameworks: Informer<Framework>,
}

impl PlacementInformers {
    fn subscribe(&self) -> PlacementChanges {
        PlacementChanges {
            instances: self.instances.subscribe(),
            nodes: self.nodes.subscribe(),
            apps: self.apps.subscribe(),
            offers: self.offers.subscribe(),
            frameworks: self.frameworks.subscribe(),
        }
    }
}

/// Their change notices, which wake rounds ([`wake_on_changes`]).
struct PlacementChanges {
    instances: Changes<Instance>,
    nodes: Changes<Node>,
    apps: Changes<App>,
    offers: Changes<Offer>,
    frameworks: Changes<Framework>,
}

/// The caches a round reads.
struct Caches {
    instances: reflector::Store<Instance>,
    nodes: reflector::Store<Node>,
    apps: reflector::Store<App>,
    offers: reflector::Store<Offer>,
    frameworks: reflector::Store<Framework>,
}

/// What a round did and asks of the loop.
#[derive(Default)]
struct Outcome {
    stats: RoundStats,
    /// Per registry prefix, the last revision written.
    written: HashMap<String, Revision>,
    /// Run another round soon (conflicts, deferred bindings).
    retry: bool,
    /// Run a round at this instant at the latest (suppression, the end of an offer wait).
    deadline: Option<Instant>,
}

/// An instance that stays pending, with the message to report (when it is reported).
struct Report<'a> {
    instance: &'a Instance,
    key: ObjectKey,
    app: ObjectKey,
    message: String,
}

impl PlacementController {
    /// A controller over `store`.
    pub fn new(store: Arc<dyn Store>, informers: Informers, config: PlacementConfig) -> Self {
        Self {
            store,
            informers,
            config,
            reported: HashMap::new(),
            waiting: HashMap::new(),
            idle_since: HashMap::new(),
            last_decline: None,
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
        let informers = self.informers();
        let driver = AbortOnDrop(tokio::spawn(wake_on_changes(
            informers.subscribe(),
            rounds.waker(),
        )));
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            ready = async {
                informers.instances.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Instance"))?;
                informers.nodes.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Node"))?;
                informers.apps.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("App"))?;
                informers.offers.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Offer"))?;
                informers.frameworks.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Framework"))
            } => ready?,
        }
        // A round waits for its own writes: bindings (Instances), accepts (Offers) and the
        // suppression (its Framework).
        let applied: [Applied; 3] = [
            informers.instances.applied(),
            informers.offers.applied(),
            informers.frameworks.applied(),
        ];
        let caches = Caches {
            instances: informers.instances.store().clone(),
            nodes: informers.nodes.store().clone(),
            apps: informers.apps.store().clone(),
            offers: informers.offers.store().clone(),
            frameworks: informers.frameworks.store().clone(),
        };
        tracing::info!(
            instances = caches.instances.len(),
            nodes = caches.nodes.len(),
            offers = caches.offers.len(),
            fenced = leadership.is_some(),
            "placement controller started"
        );
        let mut written: HashMap<String, Revision> = HashMap::new();
        while rounds.next(&shutdown).await {
            if !written.is_empty()
                && !caught_up(&applied, &written, self.config.cache_sync_timeout).await
            {
                tracing::warn!(
                    revisions = ?written,
                    "the caches have not caught up with our last writes; placing anyway"
                );
            }
            let started = std::time::Instant::now();
            let outcome = self.round(&caches, leadership.as_deref()).await?;
            for (prefix, revision) in outcome.written {
                let last = written.entry(prefix).or_default();
                *last = (*last).max(revision);
            }
            rounds.finished(outcome.deadline.map(wall_time));
            let stats = outcome.stats;
            if stats.pending > 0 {
                tracing::info!(
                    pending = stats.pending,
                    offers = stats.offers,
                    accepted = stats.accepted,
                    bound = stats.bound,
                    deferred = stats.deferred,
                    unplaced = stats.unplaced,
                    waiting = stats.waiting,
                    declined = stats.declined,
                    conflicts = stats.conflicts,
                    status_writes = stats.status_writes,
                    events = stats.events,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "placement round"
                );
            }
            if outcome.retry {
                rounds.wake();
            }
        }
        drop(driver);
        tracing::info!("placement controller stopped");
        Ok(())
    }

    /// The five shared informers it reads.
    fn informers(&self) -> PlacementInformers {
        PlacementInformers {
            instances: self.informers.informer::<Instance>(),
            nodes: self.informers.informer::<Node>(),
            apps: self.informers.informer::<App>(),
            offers: self.informers.informer::<Offer>(),
            frameworks: self.informers.informer::<Framework>(),
        }
    }

    /// One round: steer the framework's suppression, place every pending instance on the open
    /// offers, accept them, and write conditions and Events for the others.
    async fn round(
        &mut self,
        caches: &Caches,
        leadership: Option<&Leadership>,
    ) -> Result<Outcome, PlacementError> {
        let started = Instant::now();
        let mut outcome = Outcome::default();
        let instances = caches.instances.state();
        let mut pending: Vec<&Instance> = instances
            .iter()
            .map(Arc::as_ref)
            .filter(|instance| {
                is_pending(instance) && instance.metadata.deletion_timestamp.is_none()
            })
            .collect();
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
        let request = PlacementRequest::from_instances(
            pending.iter().copied(),
            |app| app_specs.get(app).copied(),
            self.config.strategy,
        );
        // The roles the pending instances accept, among `*` and those some node is reserved
        // for: each gets a framework; the others' are suppressed once idle. (A role no node is
        // reserved for gets nothing but unreserved resources, which `*` covers.)
        let nodes = caches.nodes.state();
        let reserved: HashSet<&str> = nodes
            .iter()
            .filter_map(|node| node.spec.role.as_deref())
            .collect();
        let wanted: BTreeSet<&str> = request
            .pending
            .iter()
            .flat_map(|pending| pending.requirements.roles.iter().map(String::as_str))
            .filter(|role| *role == UNRESERVED_ROLE || reserved.contains(role))
            .collect();
        // New work, or Nodes or Apps changed, since its last declines: revive, so that the
        // declined nodes are offered again (only worth a look while a filter is in force).
        let now = now();
        let filtered = caches.frameworks.state().iter().any(|framework| {
            (framework.metadata.name_str() == FRAMEWORK || managed_by_placement(framework))
                && has_filters(framework, now)
        });
        let mut revived_in = None;
        if filtered {
            let current = Situation::of(&pending, &nodes, &apps);
            if self
                .last_decline
                .as_ref()
                .is_none_or(|declined| declined.calls_for_revive(&current))
            {
                revived_in = Some(current);
            }
        }
        let revive = revived_in.is_some();
        let own = self
            .steer_frameworks(caches, &wanted, &reserved, revive, leadership, &mut outcome)
            .await?;
        if pending.is_empty() {
            self.reported.clear();
            self.waiting.clear();
            self.last_decline = None;
            return Ok(outcome);
        }
        if let Some(situation) = revived_in {
            // Revived for this situation: not again until it changes.
            self.last_decline = Some(situation);
        }
        let offers = caches.offers.state();
        let open: Vec<&Offer> = offers
            .iter()
            .map(Arc::as_ref)
            .filter(|offer| open_for_placement(offer, &own, now))
            .collect();
        let bound = BoundInstance::from_instances(instances.iter().map(Arc::as_ref));
        let mut view = ClusterView::from_offers(
            open.iter().copied(),
            nodes.iter().map(Arc::as_ref),
            bound.iter().cloned(),
        );
        let plan = place(&request, &mut view);
        let by_key: HashMap<ObjectKey, &Instance> = pending
            .iter()
            .map(|instance| (instance_key(instance), *instance))
            .collect();

        // Accepts: the bindings grouped by offer, each offer's group one unit.
        let offers_by_name: HashMap<&str, &Offer> = open
            .iter()
            .map(|offer| (offer.metadata.name_str(), *offer))
            .collect();
        let per_accept = batch_limit(self.config.batch_size, leadership.is_some())
            .saturating_sub(1)
            .clamp(1, MAX_BINDINGS);
        let mut groups: BTreeMap<&str, Vec<&Binding>> = BTreeMap::new();
        for binding in &plan.bindings {
            if let Some(offer) = binding.offer.as_deref() {
                groups.entry(offer).or_default().push(binding);
            }
        }
        let mut units: Vec<Unit> = Vec::with_capacity(groups.len());
        let mut stats = RoundStats {
            pending: pending.len(),
            offers: open.len(),
            ..RoundStats::default()
        };
        // A round that places nothing and leaves instances pending: none of these offers
        // takes any of them as things stand, so they are declined and their nodes go to other
        // frameworks now rather than when the offers expire. (A round that binds keeps them:
        // its bindings change what constraints admit, so an offer may fit next round.)
        let mut declines = Vec::new();
        if plan.bindings.is_empty() && !plan.unplaced.is_empty() {
            for offer in &open {
                let framework = offer.spec.framework.as_deref().unwrap_or(FRAMEWORK);
                let generation = caches
                    .frameworks
                    .get(&ObjectRef::new(framework))
                    .and_then(|framework| framework.metadata.generation);
                let decline = Decline {
                    framework,
                    generation,
                    refuse_seconds: self.config.decline_refuse.as_secs_f64(),
                    reason: "no pending instance fits the offer",
                };
                declines.push(decline_unit(
                    offer,
                    object_revision(*offer).unwrap_or(0),
                    decline,
                )?);
                stats.declined += 1;
            }
            if stats.declined > 0 {
                self.last_decline = Some(Situation::of(&pending, &nodes, &apps));
            }
        }
        let mut placed_now: Vec<BoundInstance> = Vec::with_capacity(plan.bindings.len());
        for (offer_name, group) in groups {
            let Some(offer) = offers_by_name.get(offer_name) else {
                continue;
            };
            let mut writes = Vec::with_capacity(group.len().min(per_accept));
            let mut bytes = 0;
            for binding in group {
                let Some(instance) = by_key.get(&binding.instance) else {
                    continue;
                };
                placed_now.push(placed(instance, binding));
                if writes.len() >= per_accept || bytes >= MAX_ACCEPT_BYTES {
                    stats.deferred += 1;
                    continue;
                }
                let write = bind(instance, binding, now, leadership)?;
                bytes += write.key.len() + write.value.as_ref().map_or(0, Vec::len);
                writes.push(write);
            }
            if writes.is_empty() {
                continue;
            }
            stats.bound += writes.len();
            units.push(bind_unit(
                offer,
                object_revision(*offer).unwrap_or(0),
                writes,
            ));
        }
        let accepts = units.len();
        units.extend(declines);

        // What the offers could not take: explained on the nodes, reported now or after the
        // offer wait.
        let reports = self.explain(
            &plan.unplaced,
            &pending,
            &by_key,
            &app_specs,
            ExplainInput {
                nodes: &nodes,
                bound,
                placed_now,
                open: &open,
                started,
            },
            &mut outcome,
        );
        stats.unplaced = plan.unplaced.len();
        stats.waiting = plan.unplaced.len().saturating_sub(reports.len());
        for report in &reports {
            if let Some(write) =
                mark_unschedulable(report.instance, &report.message, now, leadership)?
            {
                units.push(Unit::new(
                    format!("instance {}: unschedulable", report.key),
                    vec![write],
                ));
                stats.status_writes += 1;
            }
        }
        let written = write_units(self.store.as_ref(), leadership, units).await?;
        stats.conflicts = written.conflicts;
        stats.accepted = accepts.saturating_sub(written.conflicts);
        for (prefix, revision) in written.revisions {
            let last = outcome.written.entry(prefix).or_default();
            *last = (*last).max(revision);
        }
        stats.events = self.report_failures(&reports, leadership, now).await?;
        outcome.retry |= stats.conflicts > 0 || stats.deferred > 0;
        outcome.stats = stats;
        Ok(outcome)
    }

    /// Why the offers could not take each unplaced instance, and which of them to report now.
    /// The unplaced instances are placed again on a view from the nodes (with what this round
    /// placed counted) on which nodes without an open offer are withheld: an instance that no
    /// node takes for an offer-independent reason is reported at once; one that a withheld node
    /// would take, or that the nodes take but the offers did not, waits for an offer up to
    /// [`PlacementConfig::offer_wait`] (the earliest end of a wait becomes the round's
    /// deadline).
    fn explain<'a>(
        &mut self,
        unplaced: &[crate::placement::Unplaced],
        pending: &[&'a Instance],
        by_key: &HashMap<ObjectKey, &'a Instance>,
        app_specs: &HashMap<ObjectKey, &AppSpec>,
        input: ExplainInput<'_>,
        outcome: &mut Outcome,
    ) -> Vec<Report<'a>> {
        let from_offers: HashMap<&ObjectKey, &UnplacedReason> = unplaced
            .iter()
            .map(|unplaced| (&unplaced.instance, &unplaced.reason))
            .collect();
        let mut view = ClusterView::from_nodes(
            input.nodes.iter().map(Arc::as_ref),
            input.bound.into_iter().chain(input.placed_now),
        );
        let offered: HashSet<&str> = input
            .open
            .iter()
            .map(|offer| offer.spec.node_name.as_str())
            .collect();
        view.withhold_unoffered(&offered);
        let request = PlacementRequest::from_instances(
            pending
                .iter()
                .copied()
                .filter(|instance| from_offers.contains_key(&instance_key(instance))),
            |app| app_specs.get(app).copied(),
            self.config.strategy,
        );
        let plan = place(&request, &mut view);
        let from_nodes: HashMap<&ObjectKey, &UnplacedReason> = plan
            .unplaced
            .iter()
            .map(|unplaced| (&unplaced.instance, &unplaced.reason))
            .collect();
        let mut reports = Vec::new();
        let mut waiting: HashMap<ObjectKey, Instant> = HashMap::new();
        for unplaced in unplaced {
            let Some(instance) = by_key.get(&unplaced.instance) else {
                continue;
            };
            let (message, waits) = match from_nodes.get(&unplaced.instance) {
                Some(UnplacedReason::NoFit(summary)) => {
                    (summary.to_string(), summary.count(&Reason::NotOffered) > 0)
                }
                Some(reason) => (reason.to_string(), false),
                // The nodes take it where the offers did not: wait for a better offer.
                None => (unplaced.reason.to_string(), true),
            };
            if waits {
                let since = self
                    .waiting
                    .get(&unplaced.instance)
                    .copied()
                    .unwrap_or(input.started);
                waiting.insert(unplaced.instance.clone(), since);
                let until = since + self.config.offer_wait;
                if input.started < until {
                    outcome.deadline = Some(outcome.deadline.map_or(until, |at| at.min(until)));
                    continue;
                }
            }
            reports.push(Report {
                instance,
                key: unplaced.instance.clone(),
                app: unplaced.app.clone(),
                message,
            });
        }
        self.waiting = waiting;
        reports
    }

    /// Registers and steers its frameworks: the one of role `*` ([`FRAMEWORK`]) always exists,
    /// and one per other role in `wanted` (the roles pending instances accept) is created when
    /// absent, and deleted once no node is `reserved` for its role. With `revive` (new work
    /// since the last declines), an unsuppressed one that holds
    /// decline filters gets `spec.reviveCount` + 1, which drops them. Each one's
    /// `spec.suppressed` is false while a pending instance accepts its role,
    /// and true after [`PlacementConfig::suppress_after`] without one (the end of that wait
    /// becomes the round's deadline; one created with nothing to place starts suppressed). Only
    /// `suppressed` and `reviveCount` are ever changed on an existing
    /// framework. Returns the names of its frameworks, whose offers it places on.
    async fn steer_frameworks(
        &mut self,
        caches: &Caches,
        wanted: &BTreeSet<&str>,
        reserved: &HashSet<&str>,
        revive: bool,
        leadership: Option<&Leadership>,
        outcome: &mut Outcome,
    ) -> Result<HashSet<String>, PlacementError> {
        // Its frameworks by role: `placement` for `*`, its labelled ones for the others.
        let mut by_role: BTreeMap<String, Option<Arc<Framework>>> =
            BTreeMap::from([(UNRESERVED_ROLE.to_owned(), None)]);
        let mut own = HashSet::from([FRAMEWORK.to_owned()]);
        for framework in caches.frameworks.state() {
            let name = framework.metadata.name_str();
            if name == FRAMEWORK {
                by_role.insert(UNRESERVED_ROLE.to_owned(), Some(framework));
            } else if managed_by_placement(&framework) && framework.spec.role() != UNRESERVED_ROLE {
                own.insert(name.to_owned());
                let role = framework.spec.role().to_owned();
                by_role.entry(role).or_insert(Some(framework));
            }
        }
        for role in wanted {
            by_role.entry((*role).to_owned()).or_insert(None);
        }
        let now = Instant::now();
        let wall = self::now();
        self.idle_since.retain(|role, _| by_role.contains_key(role));
        let mut units = Vec::new();
        let mut actions = Vec::new();
        for (role, framework) in &by_role {
            if role != UNRESERVED_ROLE && !reserved.contains(role.as_str()) {
                // No node is reserved for the role any more: its framework goes.
                if let Some(framework) = framework {
                    let name = framework.metadata.name_str().to_owned();
                    let key = registry_key::<Framework>(None, &name);
                    let write =
                        KeyWrite::delete(key, object_revision(framework.as_ref()).unwrap_or(0));
                    units.push(Unit::new(format!("framework {name}: delete"), vec![write]));
                    actions.push((name, role.clone(), "delete"));
                }
                self.idle_since.remove(role);
                continue;
            }
            let suppress = if wanted.contains(role.as_str()) {
                self.idle_since.remove(role);
                false
            } else if framework
                .as_ref()
                .is_none_or(|framework| framework.spec.suppressed == Some(true))
            {
                // Registered with nothing to place: suppressed from the start, so no offer
                // sits idle with it while other frameworks wait for the nodes; and one that is
                // suppressed stays so.
                self.idle_since.remove(role);
                true
            } else {
                let since = *self.idle_since.entry(role.clone()).or_insert(now);
                let until = since + self.config.suppress_after;
                if now < until {
                    outcome.deadline = Some(outcome.deadline.map_or(until, |at| at.min(until)));
                    false
                } else {
                    true
                }
            };
            let (name, write, what) = match framework {
                None => {
                    let name = if role == UNRESERVED_ROLE {
                        FRAMEWORK.to_owned()
                    } else {
                        role_framework_name(role)
                    };
                    if role != UNRESERVED_ROLE
                        && caches.frameworks.get(&ObjectRef::new(&name)).is_some()
                    {
                        // A framework of that name that is not this role's own (a user's):
                        // the role gets none, and its instances report `not offered`.
                        tracing::debug!(framework = %name, %role, "name taken; no framework for the role");
                        continue;
                    }
                    let key = registry_key::<Framework>(None, &name);
                    let framework = placement_framework(&name, role, suppress);
                    let write = KeyWrite::create(key.clone(), encode_at(&key, &framework)?);
                    (name, write, "create")
                }
                Some(framework) => {
                    let toggle = framework.spec.suppressed.unwrap_or(false) != suppress;
                    // Unsuppressed already, with filters to drop: a revive of its own.
                    let drop_filters =
                        !toggle && revive && !suppress && has_filters(framework, wall);
                    if !toggle && !drop_filters {
                        continue;
                    }
                    let name = framework.metadata.name_str().to_owned();
                    let key = registry_key::<Framework>(None, &name);
                    let mut updated = (**framework).clone();
                    if drop_filters {
                        updated.spec.revive_count =
                            Some(framework.spec.revive_count.unwrap_or(0) + 1);
                    }
                    let what = if suppress { "suppress" } else { "revive" };
                    updated.spec.suppressed = Some(suppress);
                    // Any spec change ends the decline filters (a new generation).
                    updated.metadata.generation =
                        Some(framework.metadata.generation.unwrap_or(0) + 1);
                    updated.metadata.resource_version = None;
                    let write = KeyWrite::update(
                        key.clone(),
                        object_revision(framework.as_ref()).unwrap_or(0),
                        encode_at(&key, &updated)?,
                    );
                    (name, write, what)
                }
            };
            units.push(Unit::new(format!("framework {name}: {what}"), vec![write]));
            actions.push((name, role.clone(), what));
        }
        if units.is_empty() {
            return Ok(own);
        }
        let planned = units.len();
        let written = write_units(self.store.as_ref(), leadership, units).await?;
        if written.committed == planned {
            for (framework, role, action) in &actions {
                tracing::info!(%framework, %role, %action, "placement framework");
            }
        } else {
            // Changed meanwhile (a user's edit): steered again next round, from the cache.
            outcome.retry = true;
        }
        outcome.written.extend(written.revisions);
        Ok(own)
    }

    /// Creates or bumps the `FailedScheduling` Event of each reported instance whose reason
    /// changed or was last reported more than [`PlacementConfig::event_repeat`] ago.
    async fn report_failures(
        &mut self,
        reports: &[Report<'_>],
        leadership: Option<&Leadership>,
        now: Time,
    ) -> Result<usize, PlacementError> {
        let current: HashSet<&ObjectKey> = reports.iter().map(|report| &report.key).collect();
        self.reported.retain(|key, _| current.contains(key));
        let due: Vec<&Report<'_>> = reports
            .iter()
            .filter(|report| match self.reported.get(&report.key) {
                Some((last, at)) => {
                    *last != report.message || at.elapsed() >= self.config.event_repeat
                }
                None => true,
            })
            .collect();
        let limit = batch_limit(self.config.batch_size, leadership.is_some());
        let mut count = 0;
        for chunk in due.chunks(limit) {
            let mut txn = Txn::new();
            for report in chunk {
                let name = event_name(&report.key.name);
                let key = registry_key::<pacer_schemas::Event>(Some(&report.key.namespace), &name);
                let draft = EventDraft {
                    namespace: &report.key.namespace,
                    name: &name,
                    involved: involved::<Instance>(&report.instance.metadata),
                    reason: FAILED_SCHEDULING,
                    message: &report.message,
                    type_: EventType::Warning,
                    action: "Scheduling",
                    component: COMPONENT,
                };
                let (expect, event) = next_record(self.store.as_ref(), &key, draft, now).await?;
                let value = encode_at(&key, &event)?;
                txn = txn.when(key.clone(), expect).put(key, value);
                tracing::info!(
                    app = %report.app,
                    instance = %report.key,
                    reason = %report.message,
                    "cannot place instance"
                );
            }
            if chunk.is_empty() {
                continue;
            }
            match commit(self.store.as_ref(), leadership, txn).await? {
                TxnOutcome::Committed { .. } => {
                    count += chunk.len();
                    let at = Instant::now();
                    for report in chunk {
                        self.reported
                            .insert(report.key.clone(), (report.message.clone(), at));
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

/// What [`PlacementController::explain`] reads besides the unplaced instances.
struct ExplainInput<'a> {
    nodes: &'a [Arc<Node>],
    /// The bound instances.
    bound: Vec<BoundInstance>,
    /// What this round placed on offers.
    placed_now: Vec<BoundInstance>,
    /// The open offers made to the framework.
    open: &'a [&'a Offer],
    /// When the round started.
    started: Instant,
}

/// Whether `offer` is an open offer to the placement framework that does not expire within
/// [`EXPIRY_MARGIN_SECONDS`] of `now`.
fn open_for_placement(offer: &Offer, own: &HashSet<String>, now: Time) -> bool {
    let open = offer
        .status
        .as_ref()
        .is_none_or(|status| status.phase == OfferPhase::Offered);
    let margin = now.timestamp().as_second() + EXPIRY_MARGIN_SECONDS;
    open && offer.metadata.deletion_timestamp.is_none()
        && offer
            .spec
            .framework
            .as_deref()
            .is_some_and(|framework| own.contains(framework))
        && offer
            .spec
            .expires_at
            .is_none_or(|at| at.timestamp().as_second() > margin)
}

/// Whether the broker keeps some node from `framework` for a decline of it at `now`.
fn has_filters(framework: &Framework, now: Time) -> bool {
    framework.status.as_ref().is_some_and(|status| {
        status
            .filters
            .iter()
            .any(|filter| filter.in_force(now, framework.metadata.generation))
    })
}

/// Whether `framework` is one the placement controller registered (its label).
fn managed_by_placement(framework: &Framework) -> bool {
    framework
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(MANAGED_BY))
        .is_some_and(|value| value == COMPONENT)
}

/// The name of the placement framework of `role` (not `*`): `placement-<role>` when the role
/// is a valid name segment, else `placement-<slug>-<8 hex>`, the slug lowercased with every
/// character a name cannot hold as `-` and the suffix a hash of the role (so two roles never
/// share a name). It is the same on every replica and every run, so a framework created twice
/// — after a lagging cache — loses its create compare instead of becoming a second one.
pub fn role_framework_name(role: &str) -> String {
    let slug: String = role
        .chars()
        .take(40)
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    let slug = slug.trim_matches('-');
    if slug == role {
        return format!("{FRAMEWORK}-{role}");
    }
    // FNV-1a: stable across builds and platforms (std's hasher is not).
    let hash = role.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    if slug.is_empty() {
        format!("{FRAMEWORK}-{hash:08x}")
    } else {
        format!("{FRAMEWORK}-{slug}-{hash:08x}")
    }
}

/// A placement framework as first registered.
fn placement_framework(name: &str, role: &str, suppressed: bool) -> Framework {
    let mut metadata = ObjectMeta {
        name: Some(name.to_owned()),
        uid: Some(uuid::Uuid::new_v4().to_string()),
        creation_timestamp: Some(now()),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    metadata.labels = Some(
        [(MANAGED_BY.to_owned(), COMPONENT.to_owned())]
            .into_iter()
            .collect(),
    );
    let mut framework = Framework {
        metadata,
        spec: FrameworkSpec {
            role: Some(role.to_owned()),
            offer_timeout_seconds: Some(OFFER_TIMEOUT_SECONDS),
            suppressed: Some(suppressed),
            ..FrameworkSpec::default()
        },
        ..Framework::default()
    };
    framework.set_type_meta();
    framework
}

/// What a binding makes the instance hold, as the nodes view of a later explanation counts it.
fn placed(instance: &Instance, binding: &Binding) -> BoundInstance {
    BoundInstance {
        app: binding.app.clone(),
        node_name: binding.node_name.clone(),
        resources: instance
            .spec
            .template
            .as_ref()
            .map(Scalars::from_spec)
            .unwrap_or_else(|| Scalars::from_spec(&Default::default())),
        host_ports: binding.host_ports.clone(),
    }
}

/// Wakes a round on every Instance, Node and App change, on changes of the framework's own
/// offers, and on a resync of any of the five caches (Framework changes are its own writes or
/// a user's edit of its weights, which do not change what it can place).
async fn wake_on_changes(changes: PlacementChanges, wake: Waker) {
    let PlacementChanges {
        mut instances,
        mut nodes,
        mut apps,
        mut offers,
        mut frameworks,
    } = changes;
    loop {
        let relevant = tokio::select! {
            change = instances.next() => match change {
                Some(_) => true,
                None => break,
            },
            change = nodes.next() => match change {
                Some(_) => true,
                None => break,
            },
            change = apps.next() => match change {
                Some(_) => true,
                None => break,
            },
            change = offers.next() => match change {
                // Its frameworks' offers (by name: a user's `placement-…` framework only wakes
                // a round that finds nothing to do).
                Some(Change::Applied(offer) | Change::Deleted(offer)) => {
                    offer.spec.framework.as_deref().is_some_and(|framework| {
                        framework == FRAMEWORK || framework.starts_with("placement-")
                    })
                }
                Some(Change::Resync) => true,
                None => break,
            },
            change = frameworks.next() => match change {
                Some(change) => matches!(change, Change::Resync),
                None => break,
            },
        };
        if relevant {
            wake.notify_one();
        }
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

/// The wall-clock time of a monotonic instant (for [`Rounds::finished`]'s deadline).
fn wall_time(at: Instant) -> Time {
    let ahead = at.saturating_duration_since(Instant::now());
    let now = jiff::Timestamp::now();
    let ahead = jiff::SignedDuration::try_from(ahead).unwrap_or_default();
    Time::new(now.checked_add(ahead).unwrap_or(now))
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
    leadership: Option<&Leadership>,
) -> Result<KeyWrite, PlacementError> {
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
    Ok(KeyWrite::update(key, expected, value))
}

/// The instance bound as `binding` says: spec (node, host ports, role; generation + 1),
/// the offer it consumes ([`OFFER_ANNOTATION`](crate::offers::accept::OFFER_ANNOTATION)) and status (Staging, host, stagedAt,
/// `Scheduled=True`).
fn bind(
    instance: &Instance,
    binding: &Binding,
    now: Time,
    leadership: Option<&Leadership>,
) -> Result<KeyWrite, PlacementError> {
    let mut updated = instance.clone();
    updated.spec.node_name = Some(binding.node_name.clone());
    updated.spec.host_ports = Some(binding.host_ports.clone());
    updated.spec.role = Some(binding.role.clone());
    if updated.spec != instance.spec {
        updated.metadata.generation = Some(instance.metadata.generation.unwrap_or(0) + 1);
    }
    if let Some(offer) = &binding.offer {
        annotate_offer(&mut updated, offer);
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
    write_of(instance, updated, leadership)
}

/// The status write that records why an instance stays pending, or `None` when its
/// `Scheduled` condition already says so.
fn mark_unschedulable(
    instance: &Instance,
    message: &str,
    now: Time,
    leadership: Option<&Leadership>,
) -> Result<Option<KeyWrite>, PlacementError> {
    let current = instance
        .status
        .as_ref()
        .and_then(|status| find_condition(&status.conditions, SCHEDULED));
    if current.is_some_and(|condition| {
        condition.status == ConditionStatus::False
            && condition.reason.as_deref() == Some(UNSCHEDULABLE)
            && condition.message.as_deref() == Some(message)
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
            message: Some(message.to_owned()),
        },
    );
    write_of(instance, updated, leadership).map(Some)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use pacer_schemas::offer::OfferLaunch;
    use pacer_store::embedded::EmbeddedStore;
    use pacer_store::{Election, ListOptions};
    use serde_json::{Value, json};

    use super::*;
    use crate::offers::accept::{AcceptFailure, Accepted, OFFER_ANNOTATION, accept};
    use crate::offers::tests::check_no_double_allocation;
    use crate::offers::{OfferBroker, OfferBrokerConfig};
    use crate::rounds::SystemClock;
    use crate::store_source::{decode_stored, registry_prefix};

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

    /// Reserves the node for `role` (`*`: unreserved).
    async fn set_node_role(store: &dyn Store, name: &str, role: &str) {
        let key = format!("/registry/nodes/{name}");
        let kv = store.get(&key).await.unwrap().unwrap();
        let mut node: Value = serde_json::from_slice(&kv.value).unwrap();
        node["spec"]["role"] = json!(role);
        store
            .update(
                &key,
                serde_json::to_vec(&node).unwrap(),
                kv.mod_revision,
                None,
            )
            .await
            .unwrap();
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

    /// The offer broker on the same store (the placement controller places only through its
    /// offers), until `shutdown`.
    fn start_broker(
        store: &Arc<dyn Store>,
        shutdown: &CancellationToken,
    ) -> tokio::task::JoinHandle<Result<(), ControllerError>> {
        let broker = OfferBroker::new(
            Arc::clone(store),
            Informers::new(Arc::clone(store)),
            Arc::new(SystemClock),
            OfferBrokerConfig {
                debounce: Duration::from_millis(20),
                ..OfferBrokerConfig::default()
            },
        );
        tokio::spawn(broker.run(None, shutdown.clone()))
    }

    /// The placement controller on `store` (unfenced), until `shutdown`.
    fn start_placement(
        store: &Arc<dyn Store>,
        config: PlacementConfig,
        shutdown: &CancellationToken,
    ) -> tokio::task::JoinHandle<Result<(), PlacementError>> {
        let controller =
            PlacementController::new(Arc::clone(store), Informers::new(Arc::clone(store)), config);
        tokio::spawn(controller.run(None, shutdown.clone()))
    }

    async fn list<K: Resource>(store: &dyn Store) -> Vec<K> {
        let page = store
            .list(&registry_prefix::<K>(), &ListOptions::default())
            .await
            .unwrap();
        page.items
            .iter()
            .map(|kv| decode_stored::<K>(&kv.value, kv.mod_revision).unwrap())
            .collect()
    }

    /// Every bound instance names the offer it consumed, and an offer was consumed on one node
    /// only (by one accept: its instances all went to its node).
    fn assert_bound_through_offers(instances: &[Instance]) {
        let mut nodes_of_offer: HashMap<String, HashSet<String>> = HashMap::new();
        for instance in instances.iter().filter(|i| i.spec.node_name.is_some()) {
            let offer = instance
                .metadata
                .annotations
                .as_ref()
                .and_then(|annotations| annotations.get(OFFER_ANNOTATION))
                .unwrap_or_else(|| panic!("bound without an offer: {instance:#?}"));
            assert!(
                offer.starts_with(&format!("{}.", instance.spec.node_name.as_ref().unwrap())),
                "offer {offer} is not of node {:?}",
                instance.spec.node_name
            );
            nodes_of_offer
                .entry(offer.clone())
                .or_default()
                .insert(instance.spec.node_name.clone().unwrap());
        }
        for (offer, nodes) in nodes_of_offer {
            assert_eq!(nodes.len(), 1, "offer {offer} consumed on {nodes:?}");
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
        let broker = start_broker(&store, &shutdown);
        let task = start_placement(&store, config(), &shutdown);

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
        assert_bound_through_offers(&all);
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
        // The framework it registered, as it registered it.
        let framework: Framework = list::<Framework>(store.as_ref())
            .await
            .into_iter()
            .find(|framework| framework.metadata.name_str() == FRAMEWORK)
            .unwrap();
        assert_eq!(framework.spec.role(), "*");
        assert_eq!(
            framework.spec.offer_timeout_seconds,
            Some(OFFER_TIMEOUT_SECONDS)
        );
        shutdown.cancel();
        task.await.unwrap().unwrap();
        broker.await.unwrap().unwrap();
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
        let _broker = start_broker(&store, &shutdown);
        let controller = PlacementController::new(
            Arc::clone(&store),
            Informers::new(Arc::clone(&store)),
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

    /// Placement binds only through offers: every bound instance names the offer it consumed,
    /// no offer is consumed twice (and consumed offers are gone), nothing is over-allocated,
    /// and the instances pending before the first offers exist get no `Unschedulable` report.
    #[tokio::test]
    async fn binds_through_offers_consuming_each_offer_once() {
        let (_dir, store) = store();
        for index in 1..=4 {
            add_node(store.as_ref(), &format!("n{index}"), "r1").await;
        }
        let template = json!({"cmd": "sleep 1000", "cpus": 0.25, "mem": 128,
                              "portDefinitions": [{"port": 0}]});
        for index in 0..30 {
            add_instance(
                store.as_ref(),
                &format!("w.{index:02}"),
                "w",
                template.clone(),
            )
            .await;
        }
        let shutdown = CancellationToken::new();
        // The controller first, so that it starts with no offer at all.
        let task = start_placement(&store, config(), &shutdown);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let broker = start_broker(&store, &shutdown);
        eventually("30 bindings", || async {
            instances(store.as_ref())
                .await
                .iter()
                .all(|i| i.spec.node_name.is_some())
        })
        .await;
        let all = instances(store.as_ref()).await;
        assert_bound_through_offers(&all);
        check_no_double_allocation(0, &list::<Node>(store.as_ref()).await, &all);
        let consumed: HashSet<String> = all
            .iter()
            .filter_map(|i| {
                i.metadata
                    .annotations
                    .as_ref()?
                    .get(OFFER_ANNOTATION)
                    .cloned()
            })
            .collect();
        for offer in list::<Offer>(store.as_ref()).await {
            assert!(
                !consumed.contains(offer.metadata.name_str()),
                "offer {} consumed but still there",
                offer.metadata.name_str()
            );
        }
        let events = store
            .list("/registry/events/", &ListOptions::default())
            .await
            .unwrap();
        assert!(
            events.items.is_empty(),
            "no FailedScheduling while offers came"
        );
        for instance in &all {
            let role = instance.spec.role.as_deref();
            assert_eq!(role, Some("*"), "the offer's role");
        }
        shutdown.cancel();
        task.await.unwrap().unwrap();
        broker.await.unwrap().unwrap();
    }

    #[test]
    fn role_framework_names_are_stable_valid_and_distinct() {
        assert_eq!(role_framework_name("batch"), "placement-batch");
        let public = role_framework_name("slave_public");
        assert_eq!(
            public,
            role_framework_name("slave_public"),
            "the same on every call"
        );
        assert!(public.starts_with("placement-slave-public-"), "{public}");
        for other in ["slave-public", "Slave_Public", "slave.public"] {
            assert_ne!(role_framework_name(other), public, "{other}");
        }
        for role in ["slave_public", "Slave_Public", "a/b", "__", "batch"] {
            let name = role_framework_name(role);
            assert!(
                name.len() <= 63
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !name.ends_with('-'),
                "{role}: {name}"
            );
        }
    }

    /// Nodes reserved for a role are offered only to that role: the controller registers a
    /// framework for each role pending instances accept, places `acceptedResourceRoles` on
    /// the reserved nodes only (and everything else on unreserved ones), and suppresses the
    /// role's framework once nothing pending accepts the role.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registers_a_framework_per_reserved_role_that_instances_accept() {
        let (_dir, store) = store();
        for index in 1..=2 {
            add_node(store.as_ref(), &format!("n{index}"), "r1").await;
        }
        for index in 3..=4 {
            let name = format!("n{index}");
            add_node(store.as_ref(), &name, "r2").await;
            set_node_role(store.as_ref(), &name, "slave_public").await;
        }
        let public = json!({"cmd": "sleep 1000", "cpus": 0.5, "mem": 128,
                            "acceptedResourceRoles": ["slave_public"]});
        let default = json!({"cmd": "sleep 1000", "cpus": 0.5, "mem": 128});
        for index in 0..6 {
            add_instance(
                store.as_ref(),
                &format!("pub.{index}"),
                "pub",
                public.clone(),
            )
            .await;
            add_instance(
                store.as_ref(),
                &format!("def.{index}"),
                "def",
                default.clone(),
            )
            .await;
        }
        let shutdown = CancellationToken::new();
        let task = start_placement(
            &store,
            PlacementConfig {
                suppress_after: Duration::from_millis(300),
                ..config()
            },
            &shutdown,
        );
        let broker = start_broker(&store, &shutdown);
        eventually("12 bindings", || async {
            instances(store.as_ref())
                .await
                .iter()
                .all(|i| i.spec.node_name.is_some())
        })
        .await;
        let all = instances(store.as_ref()).await;
        assert_bound_through_offers(&all);
        for instance in &all {
            let node = instance.spec.node_name.as_deref().unwrap();
            let reserved = matches!(node, "n3" | "n4");
            assert_eq!(
                reserved,
                instance.spec.app == "pub",
                "{} on {node}",
                instance.metadata.name_str()
            );
        }
        let frameworks = list::<Framework>(store.as_ref()).await;
        let public_framework = frameworks
            .iter()
            .find(|framework| framework.spec.role() == "slave_public")
            .expect("a framework for slave_public");
        let name = public_framework.metadata.name_str();
        assert_eq!(name, role_framework_name("slave_public"));
        assert!(name.starts_with("placement-slave-public-"), "{name}");
        assert!(managed_by_placement(public_framework));
        assert_eq!(
            frameworks.len(),
            2,
            "placement and placement-slave-public-…"
        );
        // Nothing pending accepts the role any more: its framework is suppressed.
        let name = name.to_owned();
        eventually("the role's framework suppressed", || async {
            list::<Framework>(store.as_ref())
                .await
                .iter()
                .any(|framework| {
                    framework.metadata.name_str() == name && framework.spec.suppressed == Some(true)
                })
        })
        .await;
        // No node is reserved for the role any more: its framework is deleted.
        for index in 3..=4 {
            set_node_role(store.as_ref(), &format!("n{index}"), "*").await;
        }
        eventually("the role's framework deleted", || async {
            let names: Vec<String> = list::<Framework>(store.as_ref())
                .await
                .iter()
                .map(|framework| framework.metadata.name_str().to_owned())
                .collect();
            names == [FRAMEWORK]
        })
        .await;
        shutdown.cancel();
        task.await.unwrap().unwrap();
        broker.await.unwrap().unwrap();
    }

    /// The placement framework and an external one, under contention on a small cluster:
    /// instances arrive and finish at random while the external framework accepts random
    /// launches from what it sees of its offers (sometimes an old snapshot). After every
    /// round, no node holds more than its allocatable nor a host port twice; both frameworks
    /// placed instances.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn placement_and_an_external_framework_never_over_allocate_a_node() {
        const ROUNDS: usize = 300;
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm).unwrap()
        } else {
            tempfile::tempdir().unwrap()
        };
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
        for index in 1..=3 {
            add_node(store.as_ref(), &format!("n{index}"), "r1").await;
        }
        put(
            store.as_ref(),
            "/registry/frameworks/batch",
            json!({"apiVersion": "pacer.dev/v1", "kind": "Framework",
                   "metadata": {"name": "batch"},
                   "spec": {"role": "batch", "offerTimeoutSeconds": 2}}),
        )
        .await;
        let shutdown = CancellationToken::new();
        let broker = start_broker(&store, &shutdown);
        let task = start_placement(&store, config(), &shutdown);
        let nodes = list::<Node>(store.as_ref()).await;
        let mut seed: u64 = 0x0FFE_2026_5EED;
        let mut below = move |n: u64| {
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n.max(1)
        };
        let mut stale: Vec<Offer> = Vec::new();
        let (mut next, mut launched, mut refused_or_stale) = (0usize, 0usize, 0usize);
        let mut placed: HashSet<String> = HashSet::new();
        for round in 0..ROUNDS {
            // New pending instances for placement.
            for _ in 0..below(3) {
                next += 1;
                let template = json!({"cmd": "sleep 1", "cpus": 0.5 * (1 + below(4)) as f64,
                                      "mem": 256 * (1 + below(8)),
                                      "portDefinitions": (0..below(3)).map(|_| json!({"port": 0})).collect::<Vec<_>>()});
                // One App per instance: placement reads an App version's needs once.
                add_instance(
                    store.as_ref(),
                    &format!("p{next}.1"),
                    &format!("p{next}"),
                    template,
                )
                .await;
            }
            // The external framework answers one of its offers.
            let offers: Vec<Offer> = list::<Offer>(store.as_ref())
                .await
                .into_iter()
                .filter(|offer| offer.spec.framework.as_deref() == Some("batch"))
                .collect();
            let source = if below(6) == 0 && !stale.is_empty() {
                &stale
            } else {
                &offers
            };
            if !source.is_empty() {
                let offer = source[usize::try_from(below(source.len() as u64)).unwrap()].clone();
                let launches: Vec<OfferLaunch> = (0..1 + below(2))
                    .map(|_| {
                        next += 1;
                        OfferLaunch {
                            namespace: "jobs".to_owned(),
                            name: format!("job-{next}"),
                            template: serde_json::from_value(json!({
                                "cmd": "sleep 1", "cpus": 0.5 * (1 + below(4)) as f64,
                                "mem": 256 * (1 + below(8)), "disk": 0,
                                "portDefinitions": (0..below(2)).map(|_| json!({"port": 0})).collect::<Vec<_>>(),
                            }))
                            .unwrap(),
                            ..OfferLaunch::default()
                        }
                    })
                    .collect();
                match accept(store.as_ref(), None, &offer, &launches, now()).await {
                    Ok(Accepted::Launched(instances)) => launched += instances.len(),
                    Ok(Accepted::Stale) | Err(AcceptFailure::Refused(_)) => refused_or_stale += 1,
                    Err(AcceptFailure::Controller(error)) => panic!("round {round}: {error}"),
                }
            }
            if below(4) == 0 {
                stale = offers;
            }
            // Bound instances finish (and are deleted).
            for instance in instances(store.as_ref()).await {
                if instance.spec.node_name.is_some() && below(5) == 0 {
                    let key = registry_key::<Instance>(
                        Some(instance.metadata.namespace_str()),
                        instance.metadata.name_str(),
                    );
                    let _ = store
                        .delete(&key, object_revision(&instance).unwrap())
                        .await;
                }
            }
            let all = instances(store.as_ref()).await;
            check_no_double_allocation(round, &nodes, &all);
            assert_bound_through_offers(&all);
            placed.extend(
                all.iter()
                    .filter(|i| i.spec.app.starts_with('p') && i.spec.node_name.is_some())
                    .map(|i| i.metadata.name_str().to_owned()),
            );
            tokio::time::sleep(Duration::from_millis(5 + below(30))).await;
        }
        let placed = placed.len();
        println!(
            "{ROUNDS} rounds: {launched} external launches, {refused_or_stale} refused or stale, \
             {placed} instances bound by placement"
        );
        assert!(launched > 20, "only {launched} external launches");
        assert!(placed > 20, "placement bound only {placed}");
        shutdown.cancel();
        task.await.unwrap().unwrap();
        broker.await.unwrap().unwrap();
    }

    /// Mesos' SUPPRESS and REVIVE: idle, the framework is suppressed and its offers go (an
    /// external framework gets every node); a pending instance revives it at once and is
    /// placed; idle again, it is suppressed again.
    #[tokio::test]
    async fn suppresses_when_idle_and_revives_when_instances_are_pending() {
        let (_dir, store) = store();
        for index in 1..=2 {
            add_node(store.as_ref(), &format!("n{index}"), "r1").await;
        }
        put(
            store.as_ref(),
            "/registry/frameworks/batch",
            json!({"apiVersion": "pacer.dev/v1", "kind": "Framework",
                   "metadata": {"name": "batch"},
                   "spec": {"role": "batch", "offerTimeoutSeconds": 1}}),
        )
        .await;
        let shutdown = CancellationToken::new();
        let broker = start_broker(&store, &shutdown);
        let task = start_placement(
            &store,
            PlacementConfig {
                suppress_after: Duration::from_millis(300),
                ..config()
            },
            &shutdown,
        );
        let suppressed = || async {
            list::<Framework>(store.as_ref())
                .await
                .into_iter()
                .find(|framework| framework.metadata.name_str() == FRAMEWORK)
                .and_then(|framework| framework.spec.suppressed)
        };
        let offers_of = |framework: &'static str| {
            let store = Arc::clone(&store);
            async move {
                list::<Offer>(store.as_ref())
                    .await
                    .into_iter()
                    .filter(|offer| offer.spec.framework.as_deref() == Some(framework))
                    .count()
            }
        };
        // Registered with nothing to place, it starts suppressed: no offer waits on it.
        eventually("the placement framework registered", || async {
            suppressed().await.is_some()
        })
        .await;
        assert_eq!(suppressed().await, Some(true), "created suppressed");
        eventually(
            "suppressed while idle, batch offered both nodes",
            || async {
                suppressed().await == Some(true)
                    && offers_of(FRAMEWORK).await == 0
                    && offers_of("batch").await == 2
            },
        )
        .await;
        // Idle stays quiet, whatever wakes its rounds (a new node here): no offer is made to
        // placement, and it is never revived meanwhile (each suppress or revive bumps the
        // generation).
        add_node(store.as_ref(), "n3", "r1").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(offers_of(FRAMEWORK).await, 0);
        assert_eq!(suppressed().await, Some(true));
        let generation = list::<Framework>(store.as_ref())
            .await
            .into_iter()
            .find(|framework| framework.metadata.name_str() == FRAMEWORK)
            .and_then(|framework| framework.metadata.generation);
        assert_eq!(generation, Some(1), "suppressed since it was created");

        add_instance(
            store.as_ref(),
            "late.1",
            "late",
            json!({"cmd": "sleep 1000", "cpus": 1, "mem": 256}),
        )
        .await;
        eventually("revived", || async { suppressed().await == Some(false) }).await;
        eventually("the pending instance bound through an offer", || async {
            instances(store.as_ref())
                .await
                .iter()
                .all(|i| i.spec.node_name.is_some())
        })
        .await;
        assert_bound_through_offers(&instances(store.as_ref()).await);
        eventually("suppressed again once idle", || async {
            suppressed().await == Some(true) && offers_of(FRAMEWORK).await == 0
        })
        .await;
        shutdown.cancel();
        task.await.unwrap().unwrap();
        broker.await.unwrap().unwrap();
    }

    #[test]
    fn new_work_and_changed_nodes_or_apps_call_for_a_revive() {
        let node = |name: &str, generation: i64, ready: bool| {
            let mut node: Node = serde_json::from_value(json!({
                "metadata": {"name": name, "generation": generation},
                "status": {"conditions": [{"type": "Ready",
                                           "status": if ready { "True" } else { "Unknown" }}]},
            }))
            .unwrap();
            node.metadata.generation = Some(generation);
            Arc::new(node)
        };
        let instance = |name: &str| Instance {
            metadata: ObjectMeta::named("default", name),
            ..Instance::default()
        };
        let (a, b) = (instance("a"), instance("b"));
        let apps = [Arc::new(App::new("default", "web", AppSpec::default()))];
        let nodes = [node("n1", 1, true), node("n2", 1, true)];
        let declined = Situation::of(&[&a, &b], &nodes, &apps);
        // Fewer pending, same world: the filters stand.
        assert!(!declined.calls_for_revive(&Situation::of(&[&a], &nodes, &apps)));
        // A new pending instance.
        let c = instance("c");
        assert!(declined.calls_for_revive(&Situation::of(&[&a, &c], &nodes, &apps)));
        // A node's spec changed (cordon, attributes), a node became ready, or one came.
        for changed in [
            vec![node("n1", 2, true), node("n2", 1, true)],
            vec![node("n1", 1, true), node("n2", 1, false)],
            vec![
                node("n1", 1, true),
                node("n2", 1, true),
                node("n3", 1, true),
            ],
        ] {
            assert!(declined.calls_for_revive(&Situation::of(&[&a], &changed, &apps)));
        }
        // An App came (its instances have a template now) or changed.
        let mut changed = (*apps[0]).clone();
        changed.metadata.generation = Some(2);
        assert!(declined.calls_for_revive(&Situation::of(&[&a], &nodes, &[Arc::new(changed)])));
        assert!(declined.calls_for_revive(&Situation::of(&[&a], &nodes, &[])));
    }

    /// Mesos' DECLINE and REVIVE: offers no pending instance fits are declined at once (here
    /// placement's own offers would otherwise stay open for 600 s), so the external framework
    /// gets those nodes; a new pending instance revives placement, which drops its filters
    /// (refusing for 600 s here) and places it.
    #[tokio::test]
    async fn declines_offers_nothing_fits_and_revives_for_new_work() {
        let (_dir, store) = store();
        for index in 1..=2 {
            add_node(store.as_ref(), &format!("n{index}"), "r1").await;
        }
        let batch_key = "/registry/frameworks/batch";
        put(
            store.as_ref(),
            batch_key,
            json!({"apiVersion": "pacer.dev/v1", "kind": "Framework",
                   "metadata": {"name": "batch"},
                   "spec": {"role": "batch", "offerTimeoutSeconds": 600}}),
        )
        .await;
        // Placement's own framework, registered ahead with a long offer timeout (kept).
        put(
            store.as_ref(),
            &format!("/registry/frameworks/{FRAMEWORK}"),
            json!({"apiVersion": "pacer.dev/v1", "kind": "Framework",
                   "metadata": {"name": FRAMEWORK, "generation": 1},
                   "spec": {"role": "*", "offerTimeoutSeconds": 600}}),
        )
        .await;
        add_instance(
            store.as_ref(),
            "huge.1",
            "huge",
            json!({"cmd": "sleep 1000", "cpus": 64, "mem": 256}),
        )
        .await;
        let shutdown = CancellationToken::new();
        let broker = start_broker(&store, &shutdown);
        let task = start_placement(
            &store,
            PlacementConfig {
                decline_refuse: Duration::from_secs(600),
                ..config()
            },
            &shutdown,
        );
        let offers_of = |framework: &'static str| {
            let store = Arc::clone(&store);
            async move {
                list::<Offer>(store.as_ref())
                    .await
                    .into_iter()
                    .filter(|offer| offer.spec.framework.as_deref() == Some(framework))
                    .count()
            }
        };
        let placement = || async {
            list::<Framework>(store.as_ref())
                .await
                .into_iter()
                .find(|framework| framework.metadata.name_str() == FRAMEWORK)
                .unwrap()
        };
        eventually(
            "placement's offers declined, batch offered both nodes",
            || async { offers_of("batch").await == 2 && offers_of(FRAMEWORK).await == 0 },
        )
        .await;
        let filters = placement().await.status.unwrap().filters;
        assert!(!filters.is_empty(), "placement's declines leave filters");
        assert!(instances(store.as_ref()).await[0].spec.node_name.is_none());

        // batch goes: its offers are rescinded, and the filters keep the nodes from placement.
        let batch = store.get(batch_key).await.unwrap().unwrap();
        store.delete(batch_key, batch.mod_revision).await.unwrap();
        eventually("batch's offers rescinded", || async {
            offers_of("batch").await == 0
        })
        .await;
        // Rounds later (the broker debounces 20 ms), still nothing for placement.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(offers_of(FRAMEWORK).await, 0, "the filters hold");
        let status = placement().await.status.unwrap();
        assert!(!status.filters.is_empty(), "{status:#?}");

        add_instance(
            store.as_ref(),
            "small.1",
            "small",
            json!({"cmd": "sleep 1000", "cpus": 1, "mem": 256}),
        )
        .await;
        eventually("the new instance bound after a revive", || async {
            instances(store.as_ref())
                .await
                .iter()
                .any(|i| i.metadata.name_str() == "small.1" && i.spec.node_name.is_some())
        })
        .await;
        let revived = placement().await;
        assert_eq!(revived.spec.revive_count, Some(1), "{revived:#?}");
        assert_bound_through_offers(&instances(store.as_ref()).await);
        shutdown.cancel();
        task.await.unwrap().unwrap();
        broker.await.unwrap().unwrap();
    }

    /// Constraints through offers: `GROUP_BY` spreads evenly over the racks, `MAX_PER` caps
    /// each rack and reports the rest with the constraint as the reason, `UNIQUE` keeps one
    /// per host (the first test covers it too).
    #[tokio::test]
    async fn constraints_hold_through_offers() {
        let (_dir, store) = store();
        for (index, rack) in ["r1", "r1", "r2", "r2", "r3", "r3"].iter().enumerate() {
            add_node(store.as_ref(), &format!("n{}", index + 1), rack).await;
        }
        let group = json!({"cmd": "sleep 1000", "cpus": 0.25, "mem": 64,
                           "constraints": [["rack", "GROUP_BY"]]});
        for index in 0..6 {
            add_instance(store.as_ref(), &format!("g.{index}"), "g", group.clone()).await;
        }
        let max_per = json!({"cmd": "sleep 1000", "cpus": 0.25, "mem": 64,
                             "constraints": [["rack", "MAX_PER", "1"]]});
        for index in 0..5 {
            add_instance(store.as_ref(), &format!("m.{index}"), "m", max_per.clone()).await;
        }
        let unique = json!({"cmd": "sleep 1000", "cpus": 0.25, "mem": 64,
                            "constraints": [["hostname", "UNIQUE"]]});
        for index in 0..7 {
            add_instance(store.as_ref(), &format!("u.{index}"), "u", unique.clone()).await;
        }
        let shutdown = CancellationToken::new();
        let broker = start_broker(&store, &shutdown);
        let task = start_placement(&store, config(), &shutdown);
        let rack_of = |node: &str| match node {
            "n1" | "n2" => "r1",
            "n3" | "n4" => "r2",
            _ => "r3",
        };
        eventually("g, 3 of m and 6 of u bound, the rest reported", || async {
            let all = instances(store.as_ref()).await;
            let bound = |app: &str| {
                all.iter()
                    .filter(|i| i.spec.app == app && i.spec.node_name.is_some())
                    .count()
            };
            let reported = all
                .iter()
                .filter(|i| {
                    i.status
                        .as_ref()
                        .and_then(|s| find_condition(&s.conditions, SCHEDULED))
                        .is_some_and(|c| c.status == ConditionStatus::False)
                })
                .count();
            bound("g") == 6 && bound("m") == 3 && bound("u") == 6 && reported == 3
        })
        .await;
        let all = instances(store.as_ref()).await;
        assert_bound_through_offers(&all);
        let per_rack = |app: &str| {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for instance in all.iter().filter(|i| i.spec.app == app) {
                if let Some(node) = instance.spec.node_name.as_deref() {
                    *counts.entry(rack_of(node)).or_default() += 1;
                }
            }
            counts
        };
        assert_eq!(
            per_rack("g"),
            BTreeMap::from([("r1", 2), ("r2", 2), ("r3", 2)]),
            "GROUP_BY"
        );
        assert_eq!(
            per_rack("m"),
            BTreeMap::from([("r1", 1), ("r2", 1), ("r3", 1)]),
            "MAX_PER"
        );
        let hosts: HashSet<&str> = all
            .iter()
            .filter(|i| i.spec.app == "u")
            .filter_map(|i| i.spec.node_name.as_deref())
            .collect();
        assert_eq!(hosts.len(), 6, "UNIQUE");
        for instance in all.iter().filter(|i| i.spec.node_name.is_none()) {
            let condition =
                find_condition(&instance.status.as_ref().unwrap().conditions, SCHEDULED).unwrap();
            let message = condition.message.as_deref().unwrap();
            let expected = if instance.spec.app == "m" {
                "0/6 nodes available: 6 did not match constraint rack:MAX_PER:1"
            } else {
                "0/6 nodes available: 6 did not match constraint hostname:UNIQUE"
            };
            assert_eq!(message, expected);
        }
        shutdown.cancel();
        task.await.unwrap().unwrap();
        broker.await.unwrap().unwrap();
    }
}
