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
//!
//! [`OfferBroker`] is the round loop: caches of Nodes, Instances, Offers and Frameworks
//! (watchers + reflectors over [`StoreSource`]); a round runs on any change (debounced), at the
//! earliest offer expiry or filter end on the injected [`Clock`], and at a resync. Its writes
//! (offer deletions, accepts, new offers, Framework statuses) are units of CAS writes packed
//! into fenced transactions by [`write_units`]; before the next round it waits until its
//! caches show them, so it never offers a node twice or forgets an accept.
//!
//! How a framework uses it: register a `Framework` (role, weight, quota); watch `Offer`s
//! (`fieldSelector` or client-side on `spec.framework`); accept by writing the offer's
//! `/status` with `phase: Accepted` and `launch: [{namespace, name, template, …}]` at the
//! offer's `resourceVersion` (a stale one gets 409), or decline with `phase: Declined` and
//! `refuseSeconds`. In-server frameworks call [`accept::accept`] on the store directly.

pub mod accept;
pub mod broker;
pub mod drf;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use pacer_client::runtime::reflector::{self, ObjectRef, Writer};
use pacer_client::runtime::watcher::{self, watcher};
use pacer_schemas::framework::{Framework, FrameworkStatus};
use pacer_schemas::{Instance, Node, Offer, Resource};
use pacer_store::{Leadership, Store};
use tokio_util::sync::CancellationToken;

use crate::deployment::writes::{KeyWrite, Unit, write_units};
use crate::rounds::{AbortOnDrop, Clock, ControllerError, Rounds, encode_at};
use crate::store_source::{StoreSource, decode_stored, object_revision, registry_key};

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
    /// Retry policy of the watchers.
    pub watcher: watcher::Config,
}

impl Default for OfferBrokerConfig {
    /// 50 ms debounce, 30 s resync, 5 s cache sync.
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(50),
            resync: Duration::from_secs(30),
            cache_sync_timeout: Duration::from_secs(5),
            watcher: watcher::Config::default(),
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
    clock: Arc<dyn Clock>,
    config: OfferBrokerConfig,
}

/// A cache's reflector as a stream of "something changed" (true) / "nothing to do" (false).
fn changes<K: Resource + Clone + Send + Sync + 'static>(
    store: &Arc<dyn Store>,
    config: &watcher::Config,
) -> (reflector::Store<K>, BoxStream<'static, bool>) {
    let writer = Writer::<K>::new();
    let reader = writer.as_reader();
    let stream = reflector::reflector(
        writer,
        watcher(StoreSource::<K>::new(Arc::clone(store)), config.clone()),
    )
    .map(|event| {
        matches!(
            event,
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)
        )
    })
    .boxed();
    (reader, stream)
}

impl OfferBroker {
    /// A broker over `store`, reading the time from `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: OfferBrokerConfig) -> Self {
        Self {
            store,
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
        let (nodes, node_changes) = changes::<Node>(&self.store, &self.config.watcher);
        let (instances, instance_changes) = changes::<Instance>(&self.store, &self.config.watcher);
        let (offers, offer_changes) = changes::<Offer>(&self.store, &self.config.watcher);
        let (frameworks, framework_changes) =
            changes::<Framework>(&self.store, &self.config.watcher);
        let caches = Caches {
            nodes,
            instances,
            offers,
            frameworks,
        };
        let driver = {
            let wake = rounds.waker();
            let mut all = stream::select_all([
                node_changes,
                instance_changes,
                offer_changes,
                framework_changes,
            ]);
            AbortOnDrop(tokio::spawn(async move {
                while let Some(changed) = all.next().await {
                    if changed {
                        wake.notify_one();
                    }
                }
            }))
        };
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            ready = async {
                caches.nodes.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Node"))?;
                caches.instances.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Instance"))?;
                caches.offers.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Offer"))?;
                caches.frameworks.wait_until_ready().await.map_err(|_| ControllerError::CacheClosed("Framework"))
            } => ready?,
        }
        tracing::info!(
            nodes = caches.nodes.len(),
            offers = caches.offers.len(),
            frameworks = caches.frameworks.len(),
            fenced = leadership.is_some(),
            "offer broker started"
        );
        let mut expected = Expected::default();
        while rounds.next(&shutdown).await {
            if !expected
                .wait(&caches, self.config.cache_sync_timeout, &shutdown)
                .await
            {
                tracing::warn!("the offer broker's caches have not caught up with its last writes");
            }
            if caches.frameworks.is_empty() && caches.offers.is_empty() {
                // No framework registered and nothing to clean up: nothing to do.
                expected = Expected::default();
                record_round(&RoundStats::default(), &[], 0);
                rounds.finished(None);
                continue;
            }
            let mut plan = {
                let nodes = caches.nodes.state();
                let instances = caches.instances.state();
                let offers = caches.offers.state();
                let frameworks = caches.frameworks.state();
                let node_refs: Vec<&Node> = nodes.iter().map(AsRef::as_ref).collect();
                let instance_refs: Vec<&Instance> = instances.iter().map(AsRef::as_ref).collect();
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
            let deadline = plan.deadline;
            let roles = std::mem::take(&mut plan.roles);
            let open_offers = plan.open_offers;
            let (stats, written) = self.write(plan, leadership.as_deref()).await?;
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
    ) -> Result<(RoundStats, Expected), OfferBrokerError> {
        let mut stats = RoundStats::default();
        let mut units = Vec::new();
        // What the units, once committed, make the caches show: (key, object, present).
        let mut effects: Vec<(String, ObjectRef, bool)> = Vec::new();
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
            effects.push((key.clone(), ObjectRef::from_obj(&removal.offer), false));
            units.push(Unit::new(
                format!("offer {name}: delete ({:?})", removal.why),
                vec![KeyWrite::delete(key, revision)],
            ));
        }
        let accepts = plan.accepts.len();
        for accept in &plan.accepts {
            let name = accept.offer.metadata.name_str();
            let offer_key = registry_key::<Offer>(None, name);
            effects.push((offer_key.clone(), ObjectRef::from_obj(&accept.offer), false));
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
                effects.push((key, ObjectRef::from_obj(instance), true));
            }
            units.push(Unit::new(format!("offer {name}: accept"), writes));
        }
        for offer in &plan.offers {
            let key = registry_key::<Offer>(None, offer.metadata.name_str());
            effects.push((key.clone(), ObjectRef::from_obj(offer), true));
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
        let statuses: Vec<(String, ObjectRef, FrameworkStatus)> = plan
            .statuses
            .iter()
            .map(|(framework, status)| {
                (
                    registry_key::<Framework>(None, framework.metadata.name_str()),
                    ObjectRef::from_obj(framework),
                    status.clone(),
                )
            })
            .collect();
        let written = write_units(self.store.as_ref(), leadership, units).await?;
        stats.conflicts = planned.saturating_sub(written.committed);
        stats.offered = plan.offers.len();
        stats.accepted = accepts;
        stats.launched = plan
            .accepts
            .iter()
            .map(|accept| accept.instances.len())
            .sum();
        let mut expected = Expected::default();
        for (key, object, present) in effects {
            // After a lost compare, `write_units` says how many units committed, not which:
            // expect only what the store shows, so a dropped unit is not waited for.
            if stats.conflicts > 0 && self.store.get(&key).await?.is_some() != present {
                continue;
            }
            if present {
                expected.present.insert(object);
            } else {
                expected.absent.insert(object);
            }
        }
        // Decline filters live in the statuses: the next round must see them.
        for (key, object, status) in statuses {
            if stats.conflicts > 0 {
                let stored = match self.store.get(&key).await? {
                    Some(kv) => decode_stored::<Framework>(&kv.value, kv.mod_revision).ok(),
                    None => None,
                };
                if stored.and_then(|framework| framework.status) != Some(status.clone()) {
                    continue;
                }
            }
            expected.statuses.push((object, status));
        }
        Ok((stats, expected))
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

/// What the caches must show before the next round: objects present or absent, and
/// Framework statuses.
#[derive(Debug, Default)]
struct Expected {
    present: HashSet<ObjectRef>,
    absent: HashSet<ObjectRef>,
    /// Framework statuses written (a framework deleted meanwhile counts as shown).
    statuses: Vec<(ObjectRef, FrameworkStatus)>,
}

impl Expected {
    fn shown(&self, caches: &Caches) -> bool {
        let shown = |object: &ObjectRef, present: bool| {
            let found =
                caches.offers.get(object).is_some() || caches.instances.get(object).is_some();
            found == present
        };
        self.present.iter().all(|object| shown(object, true))
            && self.absent.iter().all(|object| shown(object, false))
            && self.statuses.iter().all(|(object, status)| {
                caches
                    .frameworks
                    .get(object)
                    .is_none_or(|framework| framework.status.as_ref() == Some(status))
            })
    }

    /// Waits until the caches show every expected change, up to `timeout`; whether they did.
    async fn wait(&self, caches: &Caches, timeout: Duration, shutdown: &CancellationToken) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.shown(caches) {
            if tokio::time::Instant::now() >= deadline || shutdown.is_cancelled() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}
