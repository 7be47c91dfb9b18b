//! The offer broker (issue 10): Mesos' two-level scheduling as a controller. It turns the free
//! resources of each node into `Offer`s for registered `Framework`s, in Dominant Resource
//! Fairness order across their roles; a framework accepts an offer (launching Instances on the
//! offered node, atomically with the offer's deletion) or declines it, with a `refuseSeconds`
//! filter. Unanswered offers expire; offers of nodes that become unreachable, unschedulable or
//! whose resources were taken otherwise are rescinded.
//!
//! * [`drf`]: the pure DRF allocator (weights, quotas, reservations, progressive filling).
//! * [`broker`]: one round as a pure function of the caches and the time.
//! * [`accept`]: accept = bind — the checks and the one transaction that consumes an offer.
//! * [`decline`]: the decline an in-server framework writes.
//!
//! [`OfferBroker`] is the round loop over the process' shared [`Informers`] of Nodes,
//! Instances, Offers and Frameworks; a round runs on any change (debounced), at the
//! earliest offer expiry or filter end on the injected [`Clock`], and at a resync. Its writes
//! (offer deletions, accepts, new offers, Framework statuses) are units of CAS writes packed
//! into fenced transactions by [`write_units`]; before the next round it waits until its
//! caches have reached the revisions it wrote, so it never offers a node twice or forgets an
//! accept. An offer deleted by someone else — an in-server framework's accept, which binds
//! Instances in the same transaction — makes it wait for its Instance cache to reach that
//! deletion too, before it plans (see `ForeignDeletes`).
//!
//! How a framework uses it: register a `Framework` (role, weight, quota); watch `Offer`s
//! (`fieldSelector` or client-side on `spec.framework`); accept by writing the offer's
//! `/status` with `phase: Accepted` and `launch: [{namespace, name, template, …}]` at the
//! offer's `resourceVersion` (a stale one gets 409), or decline with `phase: Declined` and
//! `refuseSeconds`. In-server frameworks call [`accept::accept`] on the store directly.

pub mod accept;
pub mod broker;
pub mod decline;
pub mod drf;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use pacer_client::runtime::reflector;
use pacer_client::runtime::source::Source as _;
use pacer_schemas::framework::Framework;
use pacer_schemas::{Instance, Node, Offer};
use pacer_store::{Leadership, Revision, Store};
use tokio_util::sync::CancellationToken;

use crate::deployment::writes::{KeyWrite, Unit, write_units};
use crate::informers::{Applied, Change, Changes, Informers, caught_up};
use crate::rounds::{AbortOnDrop, Clock, ControllerError, Rounds, Waker, encode_at};
use crate::store_source::{StoreSource, object_revision, registry_key, registry_prefix};

use broker::{Removal, RoleHolding, RoundInput, RoundPlan, plan_round};
use pacer_metrics::RoleAllocation;

/// The controller's name: its election is `/elections/offer-broker/`.
pub const CONTROLLER_NAME: &str = "offer-broker";

/// Why the offer broker stopped.
pub type OfferBrokerError = ControllerError;

/// How the offer broker runs.
#[derive(Clone, Debug)]
#[must_use]
pub struct OfferBrokerConfig {
    /// After a change, wait this long for more before a round.
    pub debounce: Duration,
    /// Run a round at least this often anyway.
    pub resync: Duration,
    /// Longest wait for the caches to show the last round's writes.
    pub cache_sync_timeout: Duration,
    /// Longest wait for the Instance cache to reach an offer deletion the broker did not make;
    /// after it the round reads the Instances from the store.
    pub foreign_wait: Duration,
}

impl Default for OfferBrokerConfig {
    /// 50 ms debounce, 30 s resync, 5 s cache sync, 250 ms wait for foreign accepts.
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(50),
            resync: Duration::from_secs(30),
            cache_sync_timeout: Duration::from_secs(5),
            foreign_wait: Duration::from_millis(250),
        }
    }
}

/// What one round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundStats {
    /// Offers made.
    pub offered: usize,
    /// Offers accepted (their Instances created).
    pub accepted: usize,
    /// Instances launched by those accepts.
    pub launched: usize,
    /// Offers declined.
    pub declined: usize,
    /// Offers expired.
    pub expired: usize,
    /// Offers rescinded.
    pub rescinded: usize,
    /// Accepts refused (launches that did not fit).
    pub refused: usize,
    /// Units dropped because a key changed meanwhile.
    pub conflicts: usize,
}

/// The broker's caches.
struct Caches {
    nodes: reflector::Store<Node>,
    instances: reflector::Store<Instance>,
    offers: reflector::Store<Offer>,
    frameworks: reflector::Store<Framework>,
}

/// The offer broker. [`OfferBroker::run`] runs it until cancelled; wrap it in
/// [`run_elected`](crate::leader::run_elected) to run it on several replicas.
#[derive(Debug)]
pub struct OfferBroker {
    store: Arc<dyn Store>,
    informers: Informers,
    clock: Arc<dyn Clock>,
    config: OfferBrokerConfig,
}

/// Offer deletions the broker did not make, so that it plans only once its Instance cache
/// shows what they wrote with them.
///
/// An in-server framework (the placement controller) accepts by deleting the offer and binding
/// Instances in one transaction at revision R. The broker's Offer and Instance caches are fed
/// by two watches, so the Offer cache may show the deletion before the Instance cache shows the
/// bindings: planning then would see the node free, with no open offer, and offer its
/// resources a second time. So every Offer deletion is noted with its revision; the broker's
/// own deletions (those of a round whose writes all committed) are recognised by name and
/// skipped, and before planning the broker waits until its Instance cache has reached the
/// newest revision of the others. (An offer whose status an external framework writes is
/// answered by the broker itself, which creates the Instances, so only deletions need this.)
#[derive(Debug)]
struct ForeignDeletes {
    /// The Offer informer's notices, drained after each read of the Offer cache: a deletion
    /// that read reflects has been announced by then (see [`informers`](crate::informers)).
    notices: Changes<Offer>,
    /// Offers the broker deleted whose deletion has not been announced yet.
    own: HashSet<String>,
}

impl ForeignDeletes {
    /// Most own deletions remembered (a watch that relists misses deletions; this bounds what
    /// is never matched).
    const MAX_OWN: usize = 100_000;

    fn new(notices: Changes<Offer>) -> Self {
        Self {
            notices,
            own: HashSet::new(),
        }
    }

    /// Records offers the broker deleted.
    fn own(&mut self, names: impl IntoIterator<Item = String>) {
        if self.own.len() > Self::MAX_OWN {
            self.own.clear();
        }
        self.own.extend(names);
    }

    /// The newest revision of the deletions announced since the last call that the broker did
    /// not make (0: none). After missed notices (a [`Change::Resync`]: the broker fell more
    /// than the informers' capacity behind, or the Offer watch relisted) any deletion may have
    /// been foreign: then the newest revision the Offer cache has applied stands in for them.
    fn take_foreign(&mut self, offers_applied: &Applied) -> Revision {
        let mut newest = 0;
        while let Some(change) = self.notices.try_next() {
            match change {
                Change::Deleted(offer) => {
                    if !self.own.remove(offer.metadata.name_str()) {
                        newest = newest.max(object_revision(offer.as_ref()).unwrap_or(0));
                    }
                }
                Change::Applied(_) => {}
                Change::Resync => newest = newest.max(offers_applied.revision()),
            }
        }
        newest
    }
}

/// Wakes a round on any change of the four caches.
async fn wake_on_changes(
    mut nodes: Changes<Node>,
    mut instances: Changes<Instance>,
    mut offers: Changes<Offer>,
    mut frameworks: Changes<Framework>,
    wake: Waker,
) {
    loop {
        let changed = tokio::select! {
            change = nodes.next() => change.is_some(),
            change = instances.next() => change.is_some(),
            change = offers.next() => change.is_some(),
            change = frameworks.next() => change.is_some(),
        };
        if !changed {
            break;
        }
        wake.notify_one();
    }
}

impl OfferBroker {
    /// A broker that writes to `store`, reads through the process' shared `informers` (of the
    /// same store), and reads the time from `clock`.
    pub fn new(
        store: Arc<dyn Store>,
        informers: Informers,
        clock: Arc<dyn Clock>,
        config: OfferBrokerConfig,
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
    /// [`ControllerError::LostLeadership`].
    pub async fn run(
        self,
        leadership: Option<Arc<Leadership>>,
        shutdown: CancellationToken,
    ) -> Result<(), OfferBrokerError> {
        let mut rounds = Rounds::new(self.config.debounce, self.config.resync)
            .with_clock(Arc::clone(&self.clock));
        let nodes = self.informers.informer::<Node>();
        let instances = self.informers.informer::<Instance>();
        let offers = self.informers.informer::<Offer>();
        let frameworks = self.informers.informer::<Framework>();
        let mut foreign = ForeignDeletes::new(offers.subscribe());
        let driver = AbortOnDrop(tokio::spawn(wake_on_changes(
            nodes.subscribe(),
            instances.subscribe(),
            offers.subscribe(),
            frameworks.subscribe(),
            rounds.waker(),
        )));
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            ready = async {
                nodes.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Node"))?;
                instances.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Instance"))?;
                offers.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Offer"))?;
                frameworks.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Framework"))
            } => ready?,
        }
        // What the broker writes: Instances (external accepts), Offers, Framework statuses.
        let applied: [Applied; 3] = [instances.applied(), offers.applied(), frameworks.applied()];
        let instances_applied = [instances.applied()];
        let offers_applied = offers.applied();
        let caches = Caches {
            nodes: nodes.store().clone(),
            instances: instances.store().clone(),
            offers: offers.store().clone(),
            frameworks: frameworks.store().clone(),
        };
        tracing::info!(
            nodes = caches.nodes.len(),
            offers = caches.offers.len(),
            frameworks = caches.frameworks.len(),
            fenced = leadership.is_some(),
            "offer broker started"
        );
        let instances_prefix = registry_prefix::<Instance>();
        let mut expected: HashMap<String, Revision> = HashMap::new();
        // The newest offer deletion the broker did not make whose Instances its cache may
        // still miss.
        let mut awaited: Revision = 0;
        while rounds.next(&shutdown).await {
            if !expected.is_empty()
                && !caught_up(&applied, &expected, self.config.cache_sync_timeout).await
            {
                tracing::warn!(
                    revisions = ?expected,
                    "the offer broker's caches have not caught up with its last writes"
                );
            }
            // The offers first, then the deletions announced (each before the Offer cache
            // dropped it): every deletion this snapshot misses an offer for is among them, and
            // the Instance cache is then awaited up to the newest one of them that was not ours.
            let offers = caches.offers.state();
            awaited = awaited.max(foreign.take_foreign(&offers_applied));
            // Until the Instance cache reaches `awaited`, a round plans on the Instances read
            // from the store if the cache does not get there within `foreign_wait`: the cache
            // moves only with Instance writes, and the revision may have written none (an own
            // deletion after a conflict, a user's deletion, the stand-in after missed
            // notices). Read after the offers, the list shows every accept they miss; the
            // cache is then good again once it reaches the newest Instance write the list
            // shows beyond it (deletions it has not applied only make it count more as held).
            let mut fresh: Option<Vec<Instance>> = None;
            if awaited > instances_applied[0].revision()
                && !caught_up(
                    &instances_applied,
                    &HashMap::from([(instances_prefix.clone(), awaited)]),
                    self.config.foreign_wait,
                )
                .await
            {
                match StoreSource::<Instance>::new(Arc::clone(&self.store))
                    .list()
                    .await
                {
                    Ok(list) => {
                        let cached = instances_applied[0].revision();
                        awaited = list
                            .items
                            .iter()
                            .filter_map(object_revision)
                            .filter(|revision| *revision > cached)
                            .max()
                            .unwrap_or(0);
                        tracing::debug!(
                            instances = list.items.len(),
                            awaited,
                            "planning on Instances read from the store"
                        );
                        fresh = Some(list.items);
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        awaited,
                        "reading the Instances failed; planning on the cache"
                    ),
                }
            }
            if caches.frameworks.is_empty() && offers.is_empty() {
                // No framework registered and nothing to clean up: nothing to do.
                expected.clear();
                record_round(&RoundStats::default(), &[], 0);
                rounds.finished(None);
                continue;
            }
            let mut plan = {
                let nodes = caches.nodes.state();
                let cached = caches.instances.state();
                let frameworks = caches.frameworks.state();
                let node_refs: Vec<&Node> = nodes.iter().map(AsRef::as_ref).collect();
                let instance_refs: Vec<&Instance> = match &fresh {
                    Some(instances) => instances.iter().collect(),
                    None => cached.iter().map(AsRef::as_ref).collect(),
                };
                let offer_refs: Vec<&Offer> = offers.iter().map(AsRef::as_ref).collect();
                let framework_refs: Vec<&Framework> =
                    frameworks.iter().map(AsRef::as_ref).collect();
                plan_round(RoundInput {
                    now: self.clock.now(),
                    nodes: &node_refs,
                    instances: &instance_refs,
                    offers: &offer_refs,
                    frameworks: &framework_refs,
                })
            };
            drop(offers);
            let deadline = plan.deadline;
            let roles = std::mem::take(&mut plan.roles);
            let open_offers = plan.open_offers;
            let deleted: Vec<String> = plan
                .removals
                .iter()
                .map(|removal| &removal.offer)
                .chain(plan.accepts.iter().map(|accept| &accept.offer))
                .map(|offer| offer.metadata.name_str().to_owned())
                .collect();
            let (stats, written) = self.write(plan, leadership.as_deref()).await?;
            if stats.conflicts == 0 {
                // Every deletion committed: they are the broker's own. After a conflict it
                // cannot tell which did, so their deletions count as foreign (waited for).
                foreign.own(deleted);
            }
            record_round(&stats, &roles, open_offers);
            expected = written;
            rounds.finished(deadline);
            if stats != RoundStats::default() {
                tracing::info!(
                    offered = stats.offered,
                    accepted = stats.accepted,
                    launched = stats.launched,
                    declined = stats.declined,
                    expired = stats.expired,
                    rescinded = stats.rescinded,
                    refused = stats.refused,
                    conflicts = stats.conflicts,
                    "offer broker round"
                );
            }
            if stats.conflicts > 0 {
                rounds.wake();
            }
        }
        drop(driver);
        tracing::info!("offer broker stopped");
        Ok(())
    }

    /// Writes a round's plan; what it did and what the caches must show before the next round.
    async fn write(
        &self,
        plan: RoundPlan,
        leadership: Option<&Leadership>,
    ) -> Result<(RoundStats, HashMap<String, Revision>), OfferBrokerError> {
        let mut stats = RoundStats::default();
        let mut units = Vec::new();
        for removal in &plan.removals {
            let name = removal.offer.metadata.name_str();
            let key = registry_key::<Offer>(None, name);
            let revision = object_revision(&removal.offer).unwrap_or(0);
            match &removal.why {
                Removal::Declined => stats.declined += 1,
                Removal::Expired => stats.expired += 1,
                Removal::Rescinded(reason) => {
                    stats.rescinded += 1;
                    tracing::info!(offer = name, node = %removal.offer.spec.node_name, %reason, "offer rescinded");
                }
                Removal::Refused(reason) => {
                    stats.refused += 1;
                    tracing::warn!(offer = name, framework = removal.offer.spec.framework.as_deref().unwrap_or_default(), %reason, "accept refused");
                }
                Removal::Finished => {}
            }
            units.push(Unit::new(
                format!("offer {name}: delete ({:?})", removal.why),
                vec![KeyWrite::delete(key, revision)],
            ));
        }
        let accepts = plan.accepts.len();
        for accept in &plan.accepts {
            let name = accept.offer.metadata.name_str();
            let offer_key = registry_key::<Offer>(None, name);
            let mut writes = vec![KeyWrite::delete(
                offer_key,
                object_revision(&accept.offer).unwrap_or(0),
            )];
            for instance in &accept.instances {
                let key = registry_key::<Instance>(
                    Some(instance.metadata.namespace_str()),
                    instance.metadata.name_str(),
                );
                writes.push(KeyWrite::create(key.clone(), encode_at(&key, instance)?));
            }
            units.push(Unit::new(format!("offer {name}: accept"), writes));
        }
        for offer in &plan.offers {
            let key = registry_key::<Offer>(None, offer.metadata.name_str());
            units.push(Unit::new(
                format!("offer {}: create", offer.metadata.name_str()),
                vec![KeyWrite::create(key.clone(), encode_at(&key, offer)?)],
            ));
        }
        for (framework, status) in &plan.statuses {
            let key = registry_key::<Framework>(None, framework.metadata.name_str());
            let mut updated = framework.clone();
            updated.status = Some(status.clone());
            units.push(Unit::new(
                format!("framework {}: status", framework.metadata.name_str()),
                vec![KeyWrite::update(
                    key.clone(),
                    object_revision(framework).unwrap_or(0),
                    encode_at(&key, &updated)?,
                )],
            ));
        }
        let planned = units.len();
        let written = write_units(self.store.as_ref(), leadership, units).await?;
        stats.conflicts = planned.saturating_sub(written.committed);
        stats.offered = plan.offers.len();
        stats.accepted = accepts;
        stats.launched = plan
            .accepts
            .iter()
            .map(|accept| accept.instances.len())
            .sum();
        // The caches must reach the last revision written under each prefix: then they show
        // every unit that committed, whatever happened since (an offer made here may already
        // be consumed by an in-server accept), and decline filters live in the statuses.
        Ok((stats, written.revisions))
    }
}

/// Records a round in `/metrics` (`pacer_offers_*`, `pacer_offer_role_*`): the offers open
/// after it, what it made, accepted, declined, expired and rescinded (as planned: a unit lost
/// to a concurrent change is counted too, and answered again next round), and what each role
/// holds.
fn record_round(stats: &RoundStats, roles: &[RoleHolding], open_offers: usize) {
    let metrics = &pacer_metrics::global().offers;
    metrics
        .open
        .set(i64::try_from(open_offers).unwrap_or(i64::MAX));
    for (counter, count) in [
        (&metrics.made, stats.offered),
        (&metrics.accepted, stats.accepted),
        (&metrics.declined, stats.declined),
        (&metrics.expired, stats.expired),
        (&metrics.rescinded, stats.rescinded),
    ] {
        counter.inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }
    let roles: Vec<RoleAllocation> = roles
        .iter()
        .map(|holding| {
            let amounts = broker::to_resources(&holding.allocated, Vec::new());
            RoleAllocation {
                role: holding.role.clone(),
                dominant_share: holding.dominant_share,
                cpus: amounts.cpus,
                mem: amounts.mem,
                disk: amounts.disk,
                gpus: f64::from(amounts.gpus),
            }
        })
        .collect();
    metrics.set_roles(&roles);
}
