//! The deployment controller's loop: it reads Apps, Instances, Deployments and AppVersions
//! from the process' shared [`Informers`] and works in debounced *rounds*
//! ([`Rounds`]), like the placement controller. One round, for every App:
//!
//! 1. **A change** — the App's `generation` or its [`RESTARTED_AT_ANNOTATION`] differs from its
//!    latest `AppVersion` (or it has none) — becomes, in one transaction: the next
//!    `AppVersion` (`<app>-<revision>`), a one-step `Deployment` (Start, Scale, Restart), the
//!    cancellation of any Deployment still running for the App (it is superseded: a change the
//!    API server let through with `?force=true`), and the App's status (current version,
//!    revision, config version, running deployments) plus the [`FINALIZER`].
//! 2. **Otherwise** the rolling step ([`plan_step`]) says how many Instances to create, which
//!    to kill (goal `Decommissioned`; an unbound one is deleted outright) and which finished
//!    ones to delete. A running Deployment waits while an App it depends on is not converged,
//!    and fails when the App is on a dependency cycle. Once converged, its Deployment is
//!    `Succeeded`. The App's status counts follow its Instances.
//! 3. **An App being deleted** (it carries the finalizer) gets a `StopApplication` Deployment;
//!    its Instances are killed (after those of deleting Apps that depend on it), then its
//!    versions are deleted, and finally the App itself (the finalizer is removed).
//!
//! 4. **A Deployment deleted through the API** (its finalizer holds it): a running one rolls
//!    its App back to the version it came from, or deletes the App it was creating; then the
//!    Deployment goes.
//!
//! Writes go out in batched fenced transactions ([`write_units`]); before each round the
//! controller waits until its caches reflect its last writes, so it never creates Instances
//! twice for the same gap. Finished Deployments are kept with their phase (Marathon lists only
//! running ones; the kept ones serve `pacer rollout status`) and deleted after
//! [`DeploymentConfig::finished_retention`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use pacer_client::runtime::reflector;
use pacer_schemas::app::{InstanceFailure, VersionInfo};
use pacer_schemas::app_version::{AppVersionSpec, RESTARTED_AT_ANNOTATION};
use pacer_schemas::condition::{Condition, ConditionStatus, find_condition, set_condition};
use pacer_schemas::deployment::{
    AUTO_REVERT_OF_ANNOTATION, ActionStatus, DeploymentAction, DeploymentActionKind,
    DeploymentPhase, DeploymentStatus, PROMOTED_ANNOTATION, conditions,
};
use pacer_schemas::event::EventType;
use pacer_schemas::instance::{InstanceGoal, InstancePhase};
use pacer_schemas::{App, AppStatus, AppVersion, Deployment, Instance, Resource, Time};
use pacer_store::{Leadership, Revision, Store};
use tokio_util::sync::CancellationToken;

use super::auto_revert::{
    DEPENDENCY_CYCLE, Failure, ProgressInputs, Verdict, deadline_at, judge, progressed, verdict,
};
use super::backoff::{
    BackoffDecision, BackoffInputs, BackoffPolicy, FAILURE_RECORDED_ANNOTATION, decide,
    launch_failure,
};
use super::canary::{canary_size, canary_step};
use super::dependencies::Dependencies;
use super::objects::{
    action_of, app_ref, config_of, counts_as_capacity, instance_state, is_stop, new_app_version,
    new_deployment, new_instance, now, strategy_of, version_for_change,
};
use super::rolling::{StepPlan, plan_step};
use super::writes::{KeyWrite, Unit, Written, write_units};
use crate::events::{EventDraft, involved, new_event};
use crate::informers::{Informers, caught_up};
use crate::placement::ObjectKey;
use crate::rounds::{AbortOnDrop, ControllerError, Rounds, encode_at};
use crate::store_source::{object_revision, registry_key};

/// The controller's name: its election is `/elections/deployment/`.
pub const CONTROLLER_NAME: &str = "deployment";
/// The finalizer that keeps an App until its Instances are stopped.
pub const FINALIZER: &str = "pacer.dev/deployment-controller";
/// The `source.component` of its Events.
pub const COMPONENT: &str = "deployment-controller";

/// How the deployment controller runs.
#[derive(Clone, Debug)]
#[must_use]
pub struct DeploymentConfig {
    /// After a change, wait this long for more before a round.
    pub debounce: Duration,
    /// Run a round at least this often (catches anything missed; ages finished Deployments).
    pub resync: Duration,
    /// How long a round waits for the caches to see the controller's last writes.
    pub cache_sync_timeout: Duration,
    /// Finished Deployments are deleted this long after they finished.
    pub finished_retention: Duration,
    /// An instance launched after an App's last failure that runs as healthy capacity this
    /// long resets the App's launch backoff (see [`backoff`](super::backoff)).
    pub viable_after: Duration,
}

impl Default for DeploymentConfig {
    /// 50 ms debounce, 10 s resync, 5 s cache-sync timeout, finished Deployments kept 1 h,
    /// a relaunched instance viable after 60 s.
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(50),
            resync: Duration::from_secs(10),
            cache_sync_timeout: Duration::from_secs(5),
            finished_retention: Duration::from_secs(3600),
            viable_after: Duration::from_secs(60),
        }
    }
}

/// Why the deployment controller stopped.
pub type DeploymentError = ControllerError;

/// The caches a round reads.
struct Caches {
    apps: reflector::Store<App>,
    instances: reflector::Store<Instance>,
    deployments: reflector::Store<Deployment>,
    versions: reflector::Store<AppVersion>,
}

/// The deployment controller. [`DeploymentController::run`] runs it until cancelled; wrap it
/// in [`run_elected`](crate::leader::run_elected) to run it on several replicas.
#[derive(Debug)]
pub struct DeploymentController {
    store: Arc<dyn Store>,
    informers: Informers,
    config: DeploymentConfig,
}

/// One App's state in a round.
struct AppState<'a> {
    app: &'a App,
    key: ObjectKey,
    instances: Vec<&'a Instance>,
    /// Its versions (same uid), newest last.
    versions: Vec<&'a AppVersion>,
    /// The highest revision of any version with its name (other incarnations included).
    max_revision: i64,
    /// Running Deployments that touch it.
    active: Vec<&'a Deployment>,
}

impl AppState<'_> {
    fn latest(&self) -> Option<&AppVersion> {
        self.versions.last().copied()
    }

    fn deleting(&self) -> bool {
        self.app.metadata.deletion_timestamp.is_some()
    }

    fn has_finalizer(&self) -> bool {
        has_finalizer(self.app)
    }

    fn restarted_at(&self) -> Option<String> {
        self.app
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(RESTARTED_AT_ANNOTATION))
            .cloned()
    }

    /// Whether the App changed since its latest version.
    fn changed(&self) -> bool {
        self.latest().is_none_or(|latest| {
            latest.spec.app_generation != self.app.metadata.generation
                || latest.spec.restarted_at != self.restarted_at()
        })
    }

    fn target(&self) -> usize {
        usize::try_from(self.app.spec.instances.unwrap_or(1)).unwrap_or(0)
    }
}

fn has_finalizer(app: &App) -> bool {
    app.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|finalizer| finalizer == FINALIZER)
}

impl DeploymentController {
    /// A controller that writes to `store` and reads through the process' shared
    /// `informers` (of the same store).
    pub fn new(store: Arc<dyn Store>, informers: Informers, config: DeploymentConfig) -> Self {
        Self {
            store,
            informers,
            config,
        }
    }

    /// Runs rounds until `shutdown` is cancelled. With `leadership`, every write carries its
    /// fencing compare, and a refused fence ends the run with a lost-leadership error.
    pub async fn run(
        self,
        leadership: Option<Arc<Leadership>>,
        shutdown: CancellationToken,
    ) -> Result<(), DeploymentError> {
        let mut rounds = Rounds::new(self.config.debounce, self.config.resync);
        let apps = self.informers.informer::<App>();
        let instances = self.informers.informer::<Instance>();
        let deployments = self.informers.informer::<Deployment>();
        let versions = self.informers.informer::<AppVersion>();
        let applied = [
            apps.applied(),
            instances.applied(),
            deployments.applied(),
            versions.applied(),
        ];
        // Any change of any of the four kinds (or a resync) makes a round due.
        let changes = stream::select_all([
            apps.subscribe().into_stream().map(drop).boxed(),
            instances.subscribe().into_stream().map(drop).boxed(),
            deployments.subscribe().into_stream().map(drop).boxed(),
            versions.subscribe().into_stream().map(drop).boxed(),
        ]);
        let driver = {
            let wake = rounds.waker();
            AbortOnDrop(tokio::spawn(async move {
                let mut changes = changes;
                while let Some(()) = changes.next().await {
                    wake.notify_one();
                }
            }))
        };
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            ready = async {
                apps.wait_until_ready().await.map_err(|_| DeploymentError::CacheClosed("App"))?;
                instances.wait_until_ready().await.map_err(|_| DeploymentError::CacheClosed("Instance"))?;
                deployments.wait_until_ready().await.map_err(|_| DeploymentError::CacheClosed("Deployment"))?;
                versions.wait_until_ready().await.map_err(|_| DeploymentError::CacheClosed("AppVersion"))
            } => ready?,
        }
        let caches = Caches {
            apps: apps.store().clone(),
            instances: instances.store().clone(),
            deployments: deployments.store().clone(),
            versions: versions.store().clone(),
        };
        tracing::info!(
            apps = caches.apps.len(),
            instances = caches.instances.len(),
            fenced = leadership.is_some(),
            "deployment controller started"
        );
        let mut written: HashMap<String, Revision> = HashMap::new();
        while rounds.next(&shutdown).await {
            if !written.is_empty()
                && !caught_up(&applied, &written, self.config.cache_sync_timeout).await
            {
                tracing::warn!(
                    "the caches have not caught up with our last writes; planning anyway"
                );
            }
            let started = std::time::Instant::now();
            let (units, stats) = self.round(&caches)?;
            // Requeue exactly when a launch delay ends (or a backoff resets), not by polling.
            rounds.finished(stats.wake_at);
            if units.is_empty() {
                continue;
            }
            let count = units.len();
            let result: Written =
                write_units(self.store.as_ref(), leadership.as_deref(), units).await?;
            for informer in &applied {
                if let Some(revision) = result.revisions.get(informer.prefix()) {
                    written.insert(informer.prefix().to_owned(), *revision);
                }
            }
            tracing::info!(
                units = count,
                committed = result.committed,
                conflicts = result.conflicts,
                created = stats.created,
                killed = stats.killed,
                deleted = stats.deleted,
                versions = stats.versions,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "deployment round"
            );
            // Anything written (or lost to a conflict) wants a look from fresh caches.
            rounds.wake();
        }
        drop(driver);
        tracing::info!("deployment controller stopped");
        Ok(())
    }

    /// One round: the units to write (see the module docs).
    fn round(&self, caches: &Caches) -> Result<(Vec<Unit>, RoundStats), DeploymentError> {
        let now = now();
        // Launch delays need sub-second precision (`now` is whole seconds, as stored).
        let precise_now = Time::new(jiff::Timestamp::now());
        let apps = caches.apps.state();
        let instances = caches.instances.state();
        let deployments = caches.deployments.state();
        let versions = caches.versions.state();

        let mut states: Vec<AppState<'_>> = apps
            .iter()
            .map(|app| AppState {
                app: app.as_ref(),
                key: ObjectKey::new(app.metadata.namespace_str(), app.metadata.name_str()),
                instances: Vec::new(),
                versions: Vec::new(),
                max_revision: 0,
                active: Vec::new(),
            })
            .collect();
        let index: HashMap<ObjectKey, usize> = states
            .iter()
            .enumerate()
            .map(|(position, state)| (state.key.clone(), position))
            .collect();
        for instance in &instances {
            let key = ObjectKey::new(instance.metadata.namespace_str(), &instance.spec.app);
            if let Some(&position) = index.get(&key) {
                states[position].instances.push(instance.as_ref());
            }
        }
        for version in &versions {
            let key = ObjectKey::new(version.metadata.namespace_str(), &version.spec.app);
            if let Some(&position) = index.get(&key) {
                let state = &mut states[position];
                state.max_revision = state.max_revision.max(version.spec.revision);
                let owned = version
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|owner| Some(&owner.uid) == state.app.metadata.uid.as_ref());
                if owned {
                    state.versions.push(version.as_ref());
                }
            }
        }
        for state in &mut states {
            state.versions.sort_by_key(|version| version.spec.revision);
        }
        let mut units = Vec::new();
        let mut stats = RoundStats::default();
        for deployment in &deployments {
            if deployment.metadata.deletion_timestamp.is_some() {
                units.push(self.deleted(deployment, &states, &index, now)?);
            } else if deployment.phase().is_active() {
                for app in &deployment.spec.affected_apps {
                    let key = ObjectKey::new(app.namespace.as_str(), app.name.as_str());
                    if let Some(&position) = index.get(&key) {
                        states[position].active.push(deployment.as_ref());
                    }
                }
            } else if let Some(unit) = self.expire(deployment, now)? {
                units.push(unit);
            }
        }
        let graph = Dependencies::of(apps.iter().map(Arc::as_ref));

        // Failed Deployments already rolled back by another (`spec.reverts`).
        let reverted: HashSet<&str> = deployments
            .iter()
            .filter_map(|deployment| deployment.spec.reverts.as_deref())
            .collect();
        let failed: HashSet<&str> = deployments
            .iter()
            .filter(|deployment| deployment.phase() == DeploymentPhase::Failed)
            .map(|deployment| deployment.metadata.name_str())
            .collect();

        // First pass: the rolling plans of Apps without a pending change.
        let mut plans: HashMap<ObjectKey, Planned> = HashMap::new();
        for state in &states {
            if state.deleting() || state.changed() || !state.has_finalizer() {
                continue;
            }
            let Some(latest) = state.latest() else {
                continue;
            };
            let observed: Vec<_> = state
                .instances
                .iter()
                .map(|instance| instance_state(instance, &latest.spec.config_version))
                .collect();
            let strategy = strategy_of(&state.app.spec);
            let canary = state
                .active
                .iter()
                .copied()
                .find(|d| !is_stop(d))
                .and_then(|deployment| canary_of(state, deployment));
            let planned = match canary {
                Some(size) => {
                    let step = canary_step(state.target(), size, &strategy, &observed);
                    Planned {
                        plan: step.plan,
                        paused: step.paused,
                    }
                }
                None => Planned {
                    plan: plan_step(state.target(), &strategy, &observed),
                    paused: false,
                },
            };
            plans.insert(state.key.clone(), planned);
        }

        for state in &states {
            if state.deleting() {
                if state.has_finalizer() {
                    self.stop(state, &states, &index, &graph, now, &mut units, &mut stats)?;
                }
                continue;
            }
            if state.changed() || !state.has_finalizer() {
                // A change the controller made itself to roll back a failed deployment.
                let reverts = state
                    .app
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|annotations| annotations.get(AUTO_REVERT_OF_ANNOTATION))
                    .filter(|name| {
                        failed.contains(name.as_str()) && !reverted.contains(name.as_str())
                    })
                    .cloned();
                units.push(self.new_version(state, reverts, now)?);
                stats.versions += 1;
                continue;
            }
            let (Some(planned), Some(latest)) = (plans.get(&state.key), state.latest()) else {
                continue;
            };
            let paused = planned.paused;
            let mut plan = planned.plan.clone();
            let launch =
                self.launch_backoff(state, &mut plan, &latest.spec.config_version, precise_now);
            if let Some(at) = launch.decision.wake_at {
                stats.wake_at = Some(stats.wake_at.map_or(at, |current| current.min(at)));
            }
            let plan = &plan;
            let deployment = state.active.iter().copied().find(|d| !is_stop(d));
            let mut waiting_for = None;
            let mut failure = graph.cycle_of(&state.key).map(|cycle| Failure {
                reason: DEPENDENCY_CYCLE,
                message: format!("dependency cycle: {cycle}"),
            });
            if failure.is_none() && deployment.is_some() {
                waiting_for = graph
                    .depends_on(&state.key)
                    .find(|dependency| {
                        !plans
                            .get(*dependency)
                            .is_some_and(|planned| planned.plan.done)
                    })
                    .map(|dependency| format!("dependency {dependency} to be healthy"));
            }
            if paused && waiting_for.is_none() {
                waiting_for = Some(format!(
                    "promotion of the canary (pacer rollout promote {})",
                    state.app.metadata.name_str()
                ));
            }
            // Progress, the deadline and failures of new instances (autoRevert).
            let mut last_progress_at = None;
            let mut promoted_now = false;
            if let Some(deployment) = deployment {
                let previous = deployment.status.clone().unwrap_or_default();
                promoted_now = is_promoted(deployment)
                    && find_condition(&previous.conditions, conditions::PAUSED)
                        .is_some_and(Condition::is_true);
                last_progress_at = if promoted_now
                    || progressed(previous.current_actions.first(), &plan.progress)
                {
                    Some(now)
                } else {
                    previous.last_progress_at.or(previous.started_at)
                };
                let new_failures: Vec<(String, String)> = launch
                    .failures
                    .iter()
                    .filter(|(instance, _)| instance.spec.app_version == latest.spec.config_version)
                    .map(|(instance, what)| {
                        (
                            instance.metadata.name_str().to_owned(),
                            what.message
                                .clone()
                                .or_else(|| what.phase.clone())
                                .unwrap_or_else(|| "failed".to_owned()),
                        )
                    })
                    .collect();
                let upgrade = state.app.spec.upgrade_strategy.clone().unwrap_or_default();
                let inputs = ProgressInputs {
                    deadline_seconds: upgrade.progress_deadline_seconds,
                    auto_revert: upgrade.auto_revert == Some(true),
                    last_progress_at,
                    paused,
                    new_failures: &new_failures,
                    now,
                };
                if failure.is_none() {
                    failure = judge(&inputs);
                }
                if failure.is_none()
                    && let Some(at) = deadline_at(&inputs)
                    && let Some(wake) = Time::from_unix_seconds(at.as_unix_seconds() + 1)
                {
                    stats.wake_at = Some(stats.wake_at.map_or(wake, |current| current.min(wake)));
                }
            }
            let hold = failure.is_some() || waiting_for.is_some();
            if !hold {
                self.instance_writes(
                    state,
                    plan,
                    &latest.spec.config_version,
                    now,
                    &mut units,
                    &mut stats,
                )?;
            } else {
                self.delete_finished(state, plan, &mut units, &mut stats);
            }
            let mut active_names = Vec::new();
            let mut deployment_write = None;
            let mut app = state.app.clone();
            let mut event_write = None;
            if let Some(deployment) = deployment {
                let mut updated = deployment.clone();
                let status = updated.status.get_or_insert_with(DeploymentStatus::default);
                if last_progress_at.is_some() {
                    status.last_progress_at = last_progress_at;
                }
                if paused {
                    set_condition(
                        &mut status.conditions,
                        condition(
                            conditions::PAUSED,
                            ConditionStatus::True,
                            conditions::AWAITING_PROMOTION,
                            format!(
                                "{} canary instance(s) of the new version run healthy; \
                                 waiting for `pacer rollout promote {}`",
                                plan.progress.updated,
                                state.app.metadata.name_str()
                            ),
                            now,
                        ),
                    );
                } else if promoted_now {
                    set_condition(
                        &mut status.conditions,
                        condition(
                            conditions::PAUSED,
                            ConditionStatus::False,
                            conditions::PROMOTED,
                            "the canary was promoted; rolling the rest".to_owned(),
                            now,
                        ),
                    );
                    tracing::info!(app = %state.key, deployment = deployment.metadata.name_str(), "canary promoted");
                }
                if let Some(failure) = &failure {
                    let outcome = self.fail(state, deployment, failure, &mut app, now)?;
                    status.phase = DeploymentPhase::Failed;
                    status.finished_at = Some(now);
                    status.message = Some(outcome.message);
                    for condition in outcome.conditions {
                        set_condition(&mut status.conditions, condition);
                    }
                    event_write = Some(outcome.event);
                } else if plan.done {
                    status.phase = DeploymentPhase::Succeeded;
                    status.finished_at = Some(now);
                    status.message = None;
                    tracing::info!(app = %state.key, deployment = deployment.metadata.name_str(), revision = latest.spec.revision, "deployment succeeded");
                } else {
                    active_names.push(deployment.metadata.name_str().to_owned());
                }
                status.current_actions = action_status(deployment, plan, waiting_for.clone());
                if updated.status != deployment.status {
                    deployment_write = Some(update_of(deployment, &updated)?);
                }
            }
            for other in state
                .active
                .iter()
                .filter(|d| deployment.is_none_or(|kept| kept.metadata.name != d.metadata.name))
            {
                active_names.push(other.metadata.name_str().to_owned());
            }
            let status = app.status.get_or_insert_with(AppStatus::default);
            count_instances(status, &state.instances, &latest.spec.config_version);
            status.deployments = active_names;
            status.launch_delay = launch.decision.delay.clone();
            if let Some((_, last)) = launch.failures.last() {
                status.last_failure = Some(last.clone());
            }
            let mut writes: Vec<KeyWrite> = deployment_write.into_iter().collect();
            writes.extend(event_write);
            if app != *state.app {
                writes.push(update_of(state.app, &app)?);
            }
            // Failed instances go in the same transaction that records their failure, so each
            // failure is counted exactly once (by whichever leader commits it).
            for (instance, _) in &launch.failures {
                if instance.phase().is_terminal() {
                    writes.push(delete_of(*instance));
                    stats.deleted += 1;
                } else {
                    let mut marked = (*instance).clone();
                    marked
                        .metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(FAILURE_RECORDED_ANNOTATION.to_owned(), "true".to_owned());
                    writes.push(update_of(*instance, &marked)?);
                }
            }
            if !writes.is_empty() {
                units.push(Unit::new(format!("app {}: status", state.key), writes));
            }
        }
        Ok((units, stats))
    }

    /// The unit recording a change of `state`'s App: version, Deployment, cancellations, status.
    /// `reverts` names the failed Deployment this change rolls back (`autoRevert`).
    fn new_version(
        &self,
        state: &AppState<'_>,
        reverts: Option<String>,
        now: Time,
    ) -> Result<Unit, DeploymentError> {
        let app = state.app;
        let previous = state.latest();
        if !state.changed() {
            // Only the finalizer is missing (an App written before this controller ran).
            let mut updated = app.clone();
            add_finalizer(&mut updated);
            return Ok(Unit::new(
                format!("app {}: finalizer", state.key),
                vec![update_of(app, &updated)?],
            ));
        }
        let revision = state.max_revision + 1;
        let version = version_for_change(app, previous.map(|p| p.spec.version.as_str()));
        let restarted_at = state.restarted_at();
        let same_config =
            previous.is_some_and(|p| config_of(&p.spec.template) == config_of(&app.spec));
        let restarted = previous.is_some_and(|p| p.spec.restarted_at != restarted_at);
        let (kind, change) = match previous {
            None => (DeploymentActionKind::StartApplication, "Created"),
            Some(_) if same_config && restarted => {
                (DeploymentActionKind::RestartApplication, "Restarted")
            }
            Some(_) if !same_config || restarted => {
                (DeploymentActionKind::RestartApplication, "Updated")
            }
            Some(_) => (DeploymentActionKind::ScaleApplication, "Scaled"),
        };
        // An automatic rollback returns to the version it came from: instances still running
        // that config stay, only the new version's are replaced.
        let reverted_to = reverts.as_ref().and_then(|_| {
            state.versions.iter().rev().find(|version| {
                config_of(&version.spec.template) == config_of(&app.spec)
                    && version.spec.restarted_at == restarted_at
            })
        });
        let config_version = match (previous, reverted_to) {
            (_, Some(original)) => original.spec.config_version.clone(),
            (Some(previous), None) if same_config && !restarted => {
                previous.spec.config_version.clone()
            }
            _ => version.clone(),
        };
        let change = if reverts.is_some() {
            "AutoReverted"
        } else {
            change
        };
        let action = DeploymentAction {
            action: kind,
            app: app_ref(app),
            version: Some(version.clone()),
            instances: app.spec.instances,
            from_version: previous.map(|p| p.spec.version.clone()),
            revision: Some(revision),
        };
        let mut deployment = new_deployment(app, action, !state.active.is_empty(), now);
        deployment.spec.reverts = reverts;
        let snapshot = new_app_version(
            app,
            AppVersionSpec {
                app: app.metadata.name_str().to_owned(),
                revision,
                version: version.clone(),
                config_version: config_version.clone(),
                app_generation: app.metadata.generation,
                restarted_at,
                change: Some(change.to_owned()),
                template: app.spec.clone(),
            },
            now,
        );
        let mut writes = Vec::new();
        for superseded in &state.active {
            writes.push(cancel(
                superseded,
                format!(
                    "superseded by deployment {} (App {} changed)",
                    deployment.metadata.name_str(),
                    state.key
                ),
                now,
            )?);
        }
        let mut updated = app.clone();
        add_finalizer(&mut updated);
        let status = updated.status.get_or_insert_with(AppStatus::default);
        status.observed_generation = app.metadata.generation;
        status.current_version = Some(version.clone());
        status.revision = Some(revision);
        if status.config_version.as_deref() != Some(config_version.as_str()) {
            // A new config (or a restart) starts without launch backoff.
            status.launch_delay = None;
        }
        status.config_version = Some(config_version);
        status.deployments = vec![deployment.metadata.name_str().to_owned()];
        let info = status.version_info.get_or_insert_with(VersionInfo::default);
        if kind == DeploymentActionKind::ScaleApplication {
            info.last_scaling_at = Some(now);
        } else {
            info.last_config_change_at = Some(now);
            info.last_scaling_at.get_or_insert(now);
        }
        writes.push(update_of(app, &updated)?);
        writes.push(create_of(&snapshot)?);
        writes.push(create_of(&deployment)?);
        tracing::info!(
            app = %state.key,
            revision,
            version = %version,
            action = ?kind,
            deployment = deployment.metadata.name_str(),
            superseded = state.active.len(),
            "new app version"
        );
        Ok(Unit::new(
            format!("app {}: version {revision}", state.key),
            writes,
        ))
    }

    /// What a failed deployment leaves: its message and conditions, the Event that records
    /// why, and — when `autoRevert` rolls back — the App's spec returned to the deployment's
    /// `fromVersion` (in `app`, with the [`AUTO_REVERT_OF_ANNOTATION`] naming the deployment;
    /// the next round makes it a new version whose Deployment `reverts` this one).
    fn fail(
        &self,
        state: &AppState<'_>,
        deployment: &Deployment,
        failure: &Failure,
        app: &mut App,
        now: Time,
    ) -> Result<FailOutcome, DeploymentError> {
        let name = deployment.metadata.name_str();
        let from = action_of(deployment).and_then(|action| action.from_version.as_deref());
        let original = from.and_then(|from| {
            state
                .versions
                .iter()
                .find(|version| version.spec.version == from)
        });
        let auto_revert = state
            .app
            .spec
            .upgrade_strategy
            .as_ref()
            .and_then(|strategy| strategy.auto_revert)
            == Some(true);
        let decision = verdict(
            failure,
            auto_revert,
            from,
            original.is_some(),
            deployment.spec.reverts.is_some(),
        );
        let mut conditions_out = vec![condition(
            conditions::PROGRESSING,
            ConditionStatus::False,
            failure.reason,
            failure.message.clone(),
            now,
        )];
        let (message, event_reason) = match (&decision, original) {
            (Verdict::Revert { to_version }, Some(original)) => {
                app.spec = original.spec.template.clone();
                app.metadata.generation = Some(app.metadata.generation.unwrap_or(1) + 1);
                app.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(AUTO_REVERT_OF_ANNOTATION.to_owned(), name.to_owned());
                let message = format!(
                    "{}; rolled back automatically to version {to_version} (revision {})",
                    failure.message, original.spec.revision
                );
                conditions_out.push(condition(
                    conditions::REVERTED,
                    ConditionStatus::True,
                    conditions::AUTO_REVERTED,
                    message.clone(),
                    now,
                ));
                tracing::warn!(app = %state.key, deployment = name, reason = failure.reason, to_version = %to_version, "deployment failed: reverting");
                (message, "DeploymentReverted")
            }
            (
                Verdict::Fail {
                    why_not_reverted: Some(why),
                },
                _,
            ) => {
                let message = format!("{}; not rolled back: {why}", failure.message);
                tracing::warn!(app = %state.key, deployment = name, reason = failure.reason, %message, "deployment failed");
                (message, "DeploymentFailed")
            }
            _ => {
                tracing::warn!(app = %state.key, deployment = name, reason = failure.reason, message = %failure.message, "deployment failed");
                (failure.message.clone(), "DeploymentFailed")
            }
        };
        let event_name = format!("{}.{name}", state.app.metadata.name_str());
        let namespace = state.app.metadata.namespace_str();
        let event = new_event(
            EventDraft {
                namespace,
                name: &event_name,
                involved: involved::<App>(&state.app.metadata),
                reason: event_reason,
                message: &format!("deployment {name}: {message}"),
                type_: EventType::Warning,
                action: "Deploying",
                component: COMPONENT,
            },
            now,
        );
        Ok(FailOutcome {
            message,
            conditions: conditions_out,
            event: create_of(&event)?,
        })
    }

    /// The launch backoff of `state`'s App (see [`backoff`](super::backoff)): the failures
    /// among the instances `plan` deletes are taken out of `plan.delete` (the caller deletes
    /// them with the status write that records them; a health-killed instance not terminal yet
    /// is marked recorded instead), and while the delay is in force `plan` starts nothing.
    fn launch_backoff<'a>(
        &self,
        state: &AppState<'a>,
        plan: &mut StepPlan,
        config_version: &str,
        now: Time,
    ) -> LaunchBackoff<'a> {
        let mut failures: Vec<(&'a Instance, InstanceFailure)> = state
            .instances
            .iter()
            .copied()
            .filter(|instance| {
                !instance.phase().is_terminal()
                    || plan
                        .delete
                        .iter()
                        .any(|name| name == instance.metadata.name_str())
            })
            .filter_map(|instance| launch_failure(instance).map(|failure| (instance, failure)))
            .collect();
        failures.sort_by_key(|(_, failure)| failure.timestamp);
        plan.delete.retain(|name| {
            !failures
                .iter()
                .any(|(instance, _)| instance.metadata.name_str() == name)
        });
        let current: Vec<InstanceFailure> = failures
            .iter()
            .filter(|(instance, _)| instance.spec.app_version == config_version)
            .map(|(_, failure)| failure.clone())
            .collect();
        let candidates: Vec<(Option<Time>, Option<Time>)> = state
            .instances
            .iter()
            .filter(|instance| {
                instance.spec.app_version == config_version
                    && instance
                        .spec
                        .goal
                        .as_ref()
                        .is_none_or(|goal| *goal == InstanceGoal::Running)
                    && counts_as_capacity(instance)
            })
            .map(|instance| {
                (
                    instance.metadata.creation_timestamp,
                    instance
                        .status
                        .as_ref()
                        .and_then(|status| status.started_at),
                )
            })
            .collect();
        let recorded = state
            .app
            .status
            .as_ref()
            .and_then(|status| status.launch_delay.as_ref());
        let decision = decide(&BackoffInputs {
            policy: BackoffPolicy::of(&state.app.spec),
            recorded,
            new_failures: &current,
            viable_candidates: &candidates,
            viable_after: self.config.viable_after,
            now,
        });
        if !current.is_empty()
            && let Some(delay) = &decision.delay
        {
            tracing::info!(
                app = %state.key,
                failures = delay.consecutive_failures,
                delay_seconds = delay.delay_seconds,
                until = ?delay.until.map(|until| until.to_string()),
                reason = delay.reason.as_deref().unwrap_or_default(),
                "instance failed: launch delayed"
            );
        } else if recorded.is_some() && decision.delay.is_none() {
            tracing::info!(app = %state.key, "launch backoff reset");
        }
        if !decision.launch_allowed && plan.start > 0 {
            tracing::debug!(app = %state.key, held = plan.start, "launches held by the backoff");
            plan.start = 0;
        }
        LaunchBackoff { failures, decision }
    }

    /// The writes that stop an App being deleted, step by step across rounds.
    #[allow(clippy::too_many_arguments)]
    fn stop(
        &self,
        state: &AppState<'_>,
        states: &[AppState<'_>],
        index: &HashMap<ObjectKey, usize>,
        graph: &Dependencies,
        now: Time,
        units: &mut Vec<Unit>,
        stats: &mut RoundStats,
    ) -> Result<(), DeploymentError> {
        let app = state.app;
        let Some(stop) = state.active.iter().copied().find(|d| is_stop(d)) else {
            let action = DeploymentAction {
                action: DeploymentActionKind::StopApplication,
                app: app_ref(app),
                version: state.latest().map(|v| v.spec.version.clone()),
                instances: Some(0),
                from_version: state.latest().map(|v| v.spec.version.clone()),
                revision: state.latest().map(|v| v.spec.revision),
            };
            let deployment = new_deployment(app, action, !state.active.is_empty(), now);
            let mut writes = Vec::new();
            for superseded in &state.active {
                writes.push(cancel(
                    superseded,
                    format!("superseded by the deletion of App {}", state.key),
                    now,
                )?);
            }
            let mut updated = app.clone();
            updated
                .status
                .get_or_insert_with(AppStatus::default)
                .deployments = vec![deployment.metadata.name_str().to_owned()];
            writes.push(update_of(app, &updated)?);
            writes.push(create_of(&deployment)?);
            tracing::info!(app = %state.key, deployment = deployment.metadata.name_str(), "stopping app");
            units.push(Unit::new(format!("app {}: stop", state.key), writes));
            return Ok(());
        };
        let config_version = state
            .latest()
            .map(|v| v.spec.config_version.clone())
            .unwrap_or_default();
        let observed: Vec<_> = state
            .instances
            .iter()
            .map(|instance| instance_state(instance, &config_version))
            .collect();
        let plan = plan_step(0, &strategy_of(&app.spec), &observed);
        // Dependents being deleted stop first.
        let waiting_for = graph
            .dependents_of(&state.key)
            .find(|dependent| {
                index.get(*dependent).is_some_and(|&position| {
                    let other = &states[position];
                    other.deleting()
                        && other
                            .instances
                            .iter()
                            .any(|instance| !instance.phase().is_terminal())
                })
            })
            .map(|dependent| format!("dependent {dependent} to stop"));
        if waiting_for.is_some() {
            self.delete_finished(state, &plan, units, stats);
        } else {
            self.instance_writes(state, &plan, &config_version, now, units, stats)?;
        }
        if !state.instances.is_empty() {
            let mut updated = stop.clone();
            if let Some(status) = updated.status.as_mut() {
                status.current_actions = action_status(stop, &plan, waiting_for);
            }
            if updated.status != stop.status {
                units.push(Unit::new(
                    format!("app {}: stop progress", state.key),
                    vec![update_of(stop, &updated)?],
                ));
            }
            return Ok(());
        }
        if !state.versions.is_empty() {
            for version in &state.versions {
                units.push(Unit::new(
                    format!(
                        "app {}: delete version {}",
                        state.key, version.spec.revision
                    ),
                    vec![delete_of(*version)],
                ));
            }
            return Ok(());
        }
        let mut finished = stop.clone();
        let status = finished
            .status
            .get_or_insert_with(DeploymentStatus::default);
        status.phase = DeploymentPhase::Succeeded;
        status.finished_at = Some(now);
        status.current_actions = action_status(stop, &plan, None);
        let mut updated = app.clone();
        if let Some(finalizers) = updated.metadata.finalizers.as_mut() {
            finalizers.retain(|finalizer| finalizer != FINALIZER);
        }
        let app_write = if updated
            .metadata
            .finalizers
            .as_ref()
            .is_none_or(Vec::is_empty)
        {
            delete_of(app)
        } else {
            update_of(app, &updated)?
        };
        tracing::info!(app = %state.key, deployment = stop.metadata.name_str(), "app stopped and removed");
        units.push(Unit::new(
            format!("app {}: removed", state.key),
            vec![update_of(stop, &finished)?, app_write],
        ));
        Ok(())
    }

    /// Creates, kills and deletes of `plan`, one unit per instance.
    fn instance_writes(
        &self,
        state: &AppState<'_>,
        plan: &StepPlan,
        config_version: &str,
        now: Time,
        units: &mut Vec<Unit>,
        stats: &mut RoundStats,
    ) -> Result<(), DeploymentError> {
        for _ in 0..plan.start {
            let instance = new_instance(state.app, config_version, now);
            units.push(Unit::new(
                format!("app {}: create {}", state.key, instance.metadata.name_str()),
                vec![create_of(&instance)?],
            ));
            stats.created += 1;
        }
        let by_name: HashMap<&str, &Instance> = state
            .instances
            .iter()
            .map(|instance| (instance.metadata.name_str(), *instance))
            .collect();
        for name in &plan.kill {
            let Some(instance) = by_name.get(name.as_str()) else {
                continue;
            };
            let unbound =
                instance.spec.node_name.is_none() && instance.phase() == InstancePhase::Scheduled;
            let write = if unbound {
                delete_of(*instance)
            } else {
                let mut killed = (*instance).clone();
                killed.spec.goal = Some(InstanceGoal::Decommissioned);
                killed.metadata.generation = Some(instance.metadata.generation.unwrap_or(1) + 1);
                update_of(*instance, &killed)?
            };
            tracing::debug!(app = %state.key, instance = %name, unbound, "kill");
            units.push(Unit::new(
                format!("app {}: kill {name}", state.key),
                vec![write],
            ));
            stats.killed += 1;
        }
        self.delete_finished(state, plan, units, stats);
        Ok(())
    }

    /// Deletes the instances that ended.
    fn delete_finished(
        &self,
        state: &AppState<'_>,
        plan: &StepPlan,
        units: &mut Vec<Unit>,
        stats: &mut RoundStats,
    ) {
        for instance in &state.instances {
            if plan
                .delete
                .iter()
                .any(|name| name == instance.metadata.name_str())
            {
                units.push(Unit::new(
                    format!("app {}: delete {}", state.key, instance.metadata.name_str()),
                    vec![delete_of(*instance)],
                ));
                stats.deleted += 1;
            }
        }
    }

    /// A Deployment deleted through the API (it carries the finalizer): a running one is
    /// rolled back first (Marathon's semantics) — its App's spec returns to the version it
    /// came from, which the next round turns into a new version and Deployment, and a
    /// deployment that created the App deletes it; then the Deployment goes.
    fn deleted(
        &self,
        deployment: &Deployment,
        states: &[AppState<'_>],
        index: &HashMap<ObjectKey, usize>,
        now: Time,
    ) -> Result<Unit, DeploymentError> {
        let name = deployment.metadata.name_str();
        let mut writes = vec![delete_of(deployment)];
        let action = action_of(deployment);
        let state = action.and_then(|action| {
            index
                .get(&ObjectKey::new(
                    action.app.namespace.as_str(),
                    action.app.name.as_str(),
                ))
                .map(|&position| &states[position])
        });
        if let (true, Some(action), Some(state)) = (deployment.phase().is_active(), action, state)
            && !state.deleting()
            && action.action != DeploymentActionKind::StopApplication
        {
            let mut app = state.app.clone();
            let original = action.from_version.as_deref().and_then(|from| {
                state
                    .versions
                    .iter()
                    .find(|version| version.spec.version == from)
            });
            match original {
                Some(original) => {
                    app.spec = original.spec.template.clone();
                    app.metadata.generation = Some(app.metadata.generation.unwrap_or(1) + 1);
                    tracing::info!(app = %state.key, deployment = name, revision = original.spec.revision, "deployment deleted: rolling back");
                }
                None if action.action == DeploymentActionKind::StartApplication => {
                    app.metadata.deletion_timestamp = Some(now);
                    tracing::info!(app = %state.key, deployment = name, "deployment deleted: removing the app it created");
                }
                None => {}
            }
            if app != *state.app {
                writes.push(update_of(state.app, &app)?);
            }
        }
        Ok(Unit::new(format!("deployment {name}: deleted"), writes))
    }

    /// Deletes a finished Deployment once it is older than the retention.
    fn expire(&self, deployment: &Deployment, now: Time) -> Result<Option<Unit>, DeploymentError> {
        let Some(finished) = deployment.status.as_ref().and_then(|s| s.finished_at) else {
            return Ok(None);
        };
        let age = now.as_unix_seconds() - finished.as_unix_seconds();
        let retention = i64::try_from(self.config.finished_retention.as_secs()).unwrap_or(i64::MAX);
        Ok((age >= retention).then(|| {
            Unit::new(
                format!("deployment {}: expired", deployment.metadata.name_str()),
                vec![delete_of(deployment)],
            )
        }))
    }
}

/// An App's rolling plan in a round, and whether it is a canary paused for promotion.
#[derive(Clone, Debug)]
struct Planned {
    plan: StepPlan,
    paused: bool,
}

/// What [`DeploymentController::fail`] leaves.
struct FailOutcome {
    message: String,
    conditions: Vec<Condition>,
    event: KeyWrite,
}

/// Whether `pacer rollout promote` promoted the Deployment's canary.
fn is_promoted(deployment: &Deployment) -> bool {
    deployment
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|annotations| annotations.contains_key(PROMOTED_ANNOTATION))
}

/// The canary size that applies to `deployment` of `state`'s App now, if any.
fn canary_of(state: &AppState<'_>, deployment: &Deployment) -> Option<usize> {
    let action = action_of(deployment)?;
    canary_size(
        &state.app.spec,
        action.action,
        state.target(),
        deployment.spec.reverts.is_some(),
        is_promoted(deployment),
    )
}

/// A condition as the controller writes it.
fn condition(
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: String,
    now: Time,
) -> Condition {
    Condition {
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_transition_time: Some(now),
        ..Condition::new(type_, status)
    }
}

/// What a round decided (for logs), and when the next round is due at the latest.
#[derive(Clone, Copy, Debug, Default)]
struct RoundStats {
    created: usize,
    killed: usize,
    deleted: usize,
    versions: usize,
    /// The earliest instant a launch-backoff decision changes by itself.
    wake_at: Option<Time>,
}

/// One App's launch backoff in a round: the failures being recorded (with the Instances that
/// are deleted with them) and the decision.
struct LaunchBackoff<'a> {
    failures: Vec<(&'a Instance, InstanceFailure)>,
    decision: BackoffDecision,
}

fn add_finalizer(app: &mut App) {
    if !has_finalizer(app) {
        app.metadata
            .finalizers
            .get_or_insert_with(Vec::new)
            .push(FINALIZER.to_owned());
    }
}

/// The progress of `deployment`'s action after `plan`.
fn action_status(
    deployment: &Deployment,
    plan: &StepPlan,
    waiting_for: Option<String>,
) -> Vec<ActionStatus> {
    let Some(action) = action_of(deployment) else {
        return Vec::new();
    };
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    vec![ActionStatus {
        action: action.action,
        app: action.app.clone(),
        readiness_check_results: Vec::new(),
        target_instances: Some(count(plan.progress.target)),
        updated_instances: Some(count(plan.progress.updated)),
        healthy_instances: Some(count(plan.progress.healthy)),
        old_instances: Some(count(plan.progress.old)),
        waiting_for,
    }]
}

/// Marathon's counts from the App's instances.
fn count_instances(status: &mut AppStatus, instances: &[&Instance], config_version: &str) {
    let live: Vec<&Instance> = instances
        .iter()
        .copied()
        .filter(|i| !i.phase().is_terminal())
        .collect();
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let tally = |keep: &dyn Fn(&Instance) -> bool| count(live.iter().filter(|i| keep(i)).count());
    let running = |i: &Instance| i.phase() == InstancePhase::Running;
    let healthy = |i: &Instance| i.status.as_ref().and_then(|s| s.healthy);
    status.instances = count(live.len());
    status.staged = tally(&|i| i.phase() == InstancePhase::Scheduled || i.phase().is_staged());
    status.running = tally(&running);
    status.healthy = tally(&|i| running(i) && healthy(i) == Some(true));
    status.unhealthy = tally(&|i| running(i) && healthy(i) == Some(false));
    status.updated = Some(tally(&|i| {
        i.spec.app_version == config_version
            && i.spec
                .goal
                .as_ref()
                .is_none_or(|g| *g == InstanceGoal::Running)
    }));
}

fn cancel(
    deployment: &Deployment,
    message: String,
    now: Time,
) -> Result<KeyWrite, DeploymentError> {
    let mut cancelled = deployment.clone();
    let status = cancelled
        .status
        .get_or_insert_with(DeploymentStatus::default);
    status.phase = DeploymentPhase::Cancelled;
    status.finished_at = Some(now);
    status.message = Some(message);
    update_of(deployment, &cancelled)
}

fn key_of<K: Resource>(object: &K) -> String {
    registry_key::<K>(
        object.meta().namespace.as_deref(),
        object.meta().name.as_deref().unwrap_or_default(),
    )
}

fn create_of<K: Resource>(object: &K) -> Result<KeyWrite, DeploymentError> {
    let key = key_of(object);
    let value = encode_at(&key, object)?;
    Ok(KeyWrite::create(key, value))
}

fn update_of<K: Resource>(current: &K, updated: &K) -> Result<KeyWrite, DeploymentError> {
    let key = key_of(current);
    let value = encode_at(&key, updated)?;
    Ok(KeyWrite::update(
        key,
        object_revision(current).unwrap_or(0),
        value,
    ))
}

fn delete_of<K: Resource>(current: &K) -> KeyWrite {
    KeyWrite::delete(key_of(current), object_revision(current).unwrap_or(0))
}
