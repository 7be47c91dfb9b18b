//! The health controller: kills instances whose health checks failed
//! `maxConsecutiveFailures` times in a row outside their grace period, so that their owner
//! replaces them.
//!
//! Agents run the checks next to the instances and report results into each Instance's
//! `status.health[]` (see `pacer-agent`'s `health` module); this controller only reads them.
//! It reads Instances from the process' shared [`Informers`] and works in rounds: each
//! round applies the pure [`decide::verdict`] to every instance at the time of an injected
//! [`Clock`]. An instance to kill gets `spec.goal: Decommissioned` (generation + 1) with
//! `status.reason: HealthCheckFailed` and a message naming the check, written together with a
//! `Warning`/`Unhealthy` Event about it (`<instance>.unhealthy`, same namespace) in one unit;
//! the deployment controller then starts a replacement and the agent kills the instance.
//! Units are packed into fenced, batched transactions by the deployment controller's
//! [`write_units`]; an instance changed meanwhile loses its compare and is decided again.
//!
//! Rounds run when a change of an instance with health results arrives, at the earliest end
//! of a grace period that currently protects a failing instance, and at a resync.

pub mod decide;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use pacer_client::runtime::reflector;
use pacer_schemas::event::EventType;
use pacer_schemas::instance::InstanceGoal;
use pacer_schemas::{Instance, Time};
use pacer_store::Expect;
use pacer_store::{Leadership, Store};
use tokio_util::sync::CancellationToken;

pub use decide::{HEALTH_CHECK_FAILED, UNHEALTHY, Verdict};

use crate::deployment::writes::{KeyWrite, Unit, write_units};
use crate::events::{EventDraft, involved, next_record};
use crate::informers::{Change, Informers};
use crate::rounds::{AbortOnDrop, Clock, ControllerError, Rounds, encode_at};
use crate::store_source::{object_revision, registry_key};

/// The controller's name: its election is `/elections/health/`.
pub const CONTROLLER_NAME: &str = "health";
/// The `source.component` of its Events.
pub const COMPONENT: &str = "health-controller";

/// How the health controller runs.
#[derive(Clone, Debug)]
#[must_use]
pub struct HealthConfig {
    /// After a change, wait this long for more before a round.
    pub debounce: Duration,
    /// Run a round at least this often anyway.
    pub resync: Duration,
}

impl Default for HealthConfig {
    /// 100 ms debounce, 60 s resync.
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(100),
            resync: Duration::from_secs(60),
        }
    }
}

/// Why the health controller stopped.
pub type HealthError = ControllerError;

/// What one round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundStats {
    /// Instances decommissioned (each with its Event).
    pub killed: usize,
    /// Kills dropped because the instance changed meanwhile.
    pub conflicts: usize,
}

/// The health controller. [`HealthController::run`] runs it until cancelled; wrap it in
/// [`run_elected`](crate::leader::run_elected) to run it on several replicas.
#[derive(Debug)]
pub struct HealthController {
    store: Arc<dyn Store>,
    informers: Informers,
    clock: Arc<dyn Clock>,
    config: HealthConfig,
}

/// Whether a change of `instance` can change a verdict: it has checks and results.
fn concerns_health(instance: &Instance) -> bool {
    instance
        .status
        .as_ref()
        .is_some_and(|status| !status.health.is_empty())
}

impl HealthController {
    /// A controller that writes to `store`, reads through the process' shared `informers`
    /// (of the same store) and reads the time from `clock`.
    pub fn new(
        store: Arc<dyn Store>,
        informers: Informers,
        clock: Arc<dyn Clock>,
        config: HealthConfig,
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
    ) -> Result<(), HealthError> {
        let mut rounds = Rounds::new(self.config.debounce, self.config.resync)
            .with_clock(Arc::clone(&self.clock));
        let informer = self.informers.informer::<Instance>();
        let driver = {
            let wake = rounds.waker();
            let mut changes = informer.subscribe();
            AbortOnDrop(tokio::spawn(async move {
                while let Some(change) = changes.next().await {
                    match change {
                        Change::Applied(instance) if concerns_health(&instance) => {
                            wake.notify_one();
                        }
                        Change::Resync => wake.notify_one(),
                        Change::Applied(_) | Change::Deleted(_) => {}
                    }
                }
            }))
        };
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            ready = informer.wait_until_ready() => ready.map_err(|_| ControllerError::CacheClosed("Instance"))?,
        }
        let instances = informer.store();
        tracing::info!(
            instances = instances.len(),
            fenced = leadership.is_some(),
            "health controller started"
        );
        while rounds.next(&shutdown).await {
            let (stats, deadline) = self.round(instances, leadership.as_deref()).await?;
            rounds.finished(deadline);
            if stats.killed + stats.conflicts > 0 {
                tracing::info!(
                    killed = stats.killed,
                    conflicts = stats.conflicts,
                    "health round"
                );
            }
            if stats.conflicts > 0 {
                rounds.wake();
            }
        }
        drop(driver);
        tracing::info!("health controller stopped");
        Ok(())
    }

    /// One round over every instance: decide, write, and return when to look again.
    async fn round(
        &self,
        instances: &reflector::Store<Instance>,
        leadership: Option<&Leadership>,
    ) -> Result<(RoundStats, Option<Time>), HealthError> {
        let now = self.clock.now();
        let mut next_deadline: Option<Time> = None;
        let mut units = Vec::new();
        for instance in instances.state() {
            if !concerns_health(&instance) {
                continue;
            }
            match decide::verdict(&instance, now) {
                Verdict::Keep => {}
                Verdict::Until(deadline) => {
                    next_deadline = Some(next_deadline.map_or(deadline, |next| next.min(deadline)));
                }
                Verdict::Kill {
                    index,
                    check,
                    failures,
                    cause,
                } => {
                    let message = format!(
                        "{check} failed {failures} time(s) in a row; last cause: {cause}; \
                         killing the instance"
                    );
                    tracing::warn!(
                        app = %instance.spec.app,
                        instance = %instance.metadata.name_str(),
                        namespace = %instance.metadata.namespace_str(),
                        node = instance.spec.node_name.as_deref().unwrap_or_default(),
                        check = index,
                        failures,
                        %cause,
                        "instance unhealthy: decommissioning it"
                    );
                    units.push(self.kill_unit(&instance, &message, now).await?);
                }
            }
        }
        let planned = units.len();
        let written = write_units(self.store.as_ref(), leadership, units).await?;
        Ok((
            RoundStats {
                killed: written.committed,
                conflicts: planned.saturating_sub(written.committed),
            },
            next_deadline,
        ))
    }

    /// The instance's goal change and its Event, as one unit.
    async fn kill_unit(
        &self,
        instance: &Instance,
        message: &str,
        now: Time,
    ) -> Result<Unit, HealthError> {
        let namespace = instance.metadata.namespace_str();
        let name = instance.metadata.name_str();
        let mut updated = instance.clone();
        updated.spec.goal = Some(InstanceGoal::Decommissioned);
        updated.metadata.generation = Some(instance.metadata.generation.unwrap_or(1) + 1);
        let status = updated.status.get_or_insert_with(Default::default);
        status.reason = Some(HEALTH_CHECK_FAILED.to_owned());
        status.message = Some(message.to_owned());
        let instance_key = registry_key::<Instance>(Some(namespace), name);
        let event_name = format!("{name}.unhealthy");
        let event_key = registry_key::<pacer_schemas::Event>(Some(namespace), &event_name);
        let draft = EventDraft {
            namespace,
            name: &event_name,
            involved: involved::<Instance>(&instance.metadata),
            reason: UNHEALTHY,
            message,
            type_: EventType::Warning,
            action: "Kill",
            component: COMPONENT,
        };
        let (expect, record) = next_record(self.store.as_ref(), &event_key, draft, now).await?;
        let value = encode_at(&event_key, &record)?;
        let event_write = match expect {
            Expect::ModRevision(revision) => KeyWrite::update(event_key.clone(), revision, value),
            _ => KeyWrite::create(event_key.clone(), value),
        };
        Ok(Unit::new(
            format!("instance {namespace}/{name}: decommission (unhealthy)"),
            vec![
                KeyWrite::update(
                    instance_key.clone(),
                    object_revision(instance).unwrap_or(0),
                    encode_at(&instance_key, &updated)?,
                ),
                event_write,
            ],
        ))
    }
}
