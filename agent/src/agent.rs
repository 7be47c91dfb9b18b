//! One node's reconcile loop, [`NodeAgent`]: it keeps the Instances bound to its node (fed by
//! a watcher, as `Init`/`InitApply`/`InitDone`/`Apply`/`Delete` events) and what its runtimes
//! run side by side, and for every instance whose either side changed — and all of them on
//! every resync — takes the step [`decide`] names: start, report, kill, release. Steps run as
//! tasks, at most one per instance, their HTTP writes bounded by a semaphore shared by every
//! agent of the process (a hollow fleet).
//!
//! Before acting it adopts what its runtimes already run (a restarted agent), and it acts only
//! once it has seen a complete list of its Instances, so nothing is stopped for merely not being
//! known yet. When the API cannot be reached, nothing is stopped either: writes fail and are
//! retried on the next resync, and instances keep running.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use pacer_client::runtime::watcher::Event;
use pacer_client::{Api, Client};
use pacer_schemas::Instance;
use pacer_schemas::instance::InstancePhase;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::desired::Desired;
use crate::launch::{InstanceKey, Launch, LaunchContext};
use crate::node::now;
use crate::reconcile::{self, Local, Step, decide};
use crate::runtime::{Exit, ExitSender, Exited, Runtimes};

/// How often every instance is reconciled even without a change.
pub const RESYNC: Duration = Duration::from_secs(10);

/// What every step needs: the client, the runtimes, the node's names.
struct StepContext {
    client: Client,
    runtimes: Runtimes,
    launch: LaunchContext,
    exits: ExitSender,
    writes: Arc<Semaphore>,
}

/// What a finished step reports back to the loop.
enum Outcome {
    /// Started: this now runs here (and the Instance as last written, if it was).
    Started(Local, Option<Instance>),
    /// Stopped or released: nothing runs here any more.
    Gone(Option<Instance>),
    /// A status was written (or the start failed and that was reported).
    Done(Option<Instance>),
    /// Something failed; the next resync tries again.
    Retry(String),
}

/// The reconcile loop of one node.
pub struct NodeAgent {
    node: String,
    context: Arc<StepContext>,
    desired: Desired,
    listing: Option<HashMap<InstanceKey, Instance>>,
    synced: bool,
    local: HashMap<InstanceKey, Local>,
    busy: HashSet<InstanceKey>,
    early_exits: HashMap<(InstanceKey, String), Exit>,
    exits: mpsc::UnboundedReceiver<Exited>,
    steps: JoinSet<(InstanceKey, Outcome)>,
    resync: Duration,
}

impl NodeAgent {
    /// An agent for `launch.node`, writing through `client` with at most as many concurrent
    /// writes as `writes` has permits.
    pub fn new(
        client: Client,
        runtimes: Runtimes,
        launch: LaunchContext,
        writes: Arc<Semaphore>,
    ) -> Self {
        let (exits_tx, exits) = mpsc::unbounded_channel();
        Self {
            node: launch.node.clone(),
            context: Arc::new(StepContext {
                client,
                runtimes,
                launch,
                exits: exits_tx,
                writes,
            }),
            desired: Desired::default(),
            listing: None,
            synced: false,
            local: HashMap::new(),
            busy: HashSet::new(),
            early_exits: HashMap::new(),
            exits,
            steps: JoinSet::new(),
            resync: RESYNC,
        }
    }

    /// Finds what the runtimes already run for this agent (adoption after a restart).
    pub async fn adopt(&mut self) {
        for runtime in self.context.runtimes.all() {
            match runtime.list(&self.context.exits).await {
                Ok(owned) => {
                    for owned in owned {
                        tracing::info!(
                            node = %self.node,
                            instance = %owned.key,
                            runtime = runtime.name(),
                            runtime_id = %owned.runtime_id,
                            running = owned.exit.is_none(),
                            "found an instance run by an earlier agent"
                        );
                        self.local.insert(
                            owned.key,
                            Local {
                                runtime: runtime.name(),
                                runtime_id: owned.runtime_id,
                                exit: owned.exit,
                            },
                        );
                    }
                }
                Err(error) => tracing::warn!(
                    node = %self.node,
                    runtime = runtime.name(),
                    %error,
                    "cannot list what the runtime runs; nothing of it is adopted"
                ),
            }
        }
    }

    /// Runs until `shutdown` (running instances are left running) or until `events` ends.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event<Instance>>,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(self.resync);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = events.recv() => match event {
                    Some(event) => self.on_event(event),
                    None => break,
                },
                Some(exited) = self.exits.recv() => self.on_exit(exited),
                Some(joined) = self.steps.join_next() => match joined {
                    Ok((key, outcome)) => self.on_outcome(key, outcome),
                    Err(error) => tracing::error!(node = %self.node, %error, "an agent step panicked"),
                },
                _ = ticker.tick() => self.reconcile_all(),
            }
        }
        self.steps.abort_all();
        tracing::info!(node = %self.node, "agent loop stopped; instances keep running");
    }

    fn on_event(&mut self, event: Event<Instance>) {
        match event {
            Event::Init => self.listing = Some(HashMap::new()),
            Event::InitApply(instance) => {
                let listing = self.listing.get_or_insert_with(HashMap::new);
                listing.insert(InstanceKey::of(&instance), instance);
            }
            Event::InitDone => {
                self.desired
                    .replace_all(self.listing.take().unwrap_or_default());
                if !self.synced {
                    tracing::info!(node = %self.node, instances = self.desired.len(), "instances of this node listed");
                }
                self.synced = true;
                self.reconcile_all();
            }
            Event::Apply(instance) => {
                let key = self.desired.apply(instance);
                self.reconcile(&key);
            }
            Event::Delete(instance) => {
                let key = self.desired.remove(&instance);
                self.reconcile(&key);
            }
        }
    }

    fn on_exit(&mut self, exited: Exited) {
        match self.local.get_mut(&exited.key) {
            Some(local) if local.runtime_id == exited.runtime_id => {
                tracing::info!(node = %self.node, instance = %exited.key, runtime_id = %exited.runtime_id, exit = %exited.exit.message, "instance ended");
                local.exit = Some(exited.exit);
            }
            _ if self.busy.contains(&exited.key) => {
                self.early_exits
                    .insert((exited.key.clone(), exited.runtime_id), exited.exit);
            }
            _ => return,
        }
        self.reconcile(&exited.key);
    }

    fn on_outcome(&mut self, key: InstanceKey, outcome: Outcome) {
        self.busy.remove(&key);
        match outcome {
            Outcome::Started(mut local, written) => {
                self.remember(written);
                if let Some(exit) = self
                    .early_exits
                    .remove(&(key.clone(), local.runtime_id.clone()))
                {
                    local.exit = Some(exit);
                }
                self.local.insert(key.clone(), local);
            }
            Outcome::Gone(written) => {
                self.remember(written);
                self.local.remove(&key);
            }
            Outcome::Done(written) => self.remember(written),
            Outcome::Retry(error) => {
                tracing::warn!(node = %self.node, instance = %key, %error, "agent step failed; retrying on the next resync");
                self.early_exits.retain(|(exited, _), _| *exited != key);
                return;
            }
        }
        self.early_exits.retain(|(exited, _), _| *exited != key);
        self.reconcile(&key);
    }

    /// Takes the Instance a write answered with as the desired state, unless the watch has
    /// already delivered a newer one (or its deletion), so that the next decision does not
    /// repeat the write before the watch catches up.
    fn remember(&mut self, written: Option<Instance>) {
        if let Some(written) = written {
            self.desired.remember(written);
        }
    }

    fn reconcile_all(&mut self) {
        if !self.synced {
            return;
        }
        let keys: HashSet<InstanceKey> = self
            .desired
            .keys()
            .chain(self.local.keys())
            .cloned()
            .collect();
        for key in keys {
            self.reconcile(&key);
        }
    }

    /// Runs one step on a task; a panic in it counts as a failure to retry, so the instance
    /// is not left marked busy.
    fn spawn_step(
        &mut self,
        key: InstanceKey,
        step: impl std::future::Future<Output = Outcome> + Send + 'static,
    ) {
        self.steps.spawn(async move {
            let outcome = std::panic::AssertUnwindSafe(step)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Outcome::Retry("the step panicked".to_owned()));
            (key, outcome)
        });
    }

    fn reconcile(&mut self, key: &InstanceKey) {
        if !self.synced || self.busy.contains(key) {
            return;
        }
        let desired = self.desired.get(key);
        let local = self.local.get(key);
        let step = decide(desired, local, now());
        let context = Arc::clone(&self.context);
        let task_key = key.clone();
        match step {
            Step::Nothing => return,
            Step::Start => {
                let Some(instance) = desired.cloned() else {
                    return;
                };
                self.spawn_step(task_key, async move { start(context, instance).await });
            }
            Step::Report(patch) => {
                let key = task_key.clone();
                self.spawn_step(task_key, async move {
                    done_or_retry(report(&context, &key, &patch).await)
                });
            }
            Step::Kill { report } => {
                let Some(local) = local.cloned() else {
                    return;
                };
                let grace =
                    desired.map_or(crate::launch::DEFAULT_KILL_GRACE, Launch::kill_grace_of);
                let key = task_key.clone();
                self.spawn_step(task_key, async move {
                    kill(&context, &key, &local, grace, report).await
                });
            }
            Step::Release(patch) => {
                let Some(local) = local.cloned() else {
                    return;
                };
                let key = task_key.clone();
                self.spawn_step(task_key, async move {
                    release(&context, &key, &local, patch.as_ref()).await
                });
            }
        }
        self.busy.insert(key.clone());
    }
}

/// Writes a status patch and returns the Instance as written; a deleted Instance counts as
/// written.
async fn report(
    context: &StepContext,
    key: &InstanceKey,
    patch: &Value,
) -> Result<Option<Instance>, String> {
    let _permit = context
        .writes
        .acquire()
        .await
        .map_err(|error| error.to_string())?;
    let api: Api<Instance> = Api::namespaced(context.client.clone(), &key.namespace);
    match api.patch_status(&key.name, patch).await {
        Ok(instance) => Ok(Some(instance)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(format!("write the status of {key}: {error}")),
    }
}

/// Stages, starts and reports one instance.
async fn start(context: Arc<StepContext>, instance: Instance) -> Outcome {
    let key = InstanceKey::of(&instance);
    let now = now();
    let fail = |reason: &str, message: &str| reconcile::failed(None, reason, message, now);
    let launch = match Launch::from_instance(&instance, &context.launch) {
        Ok(launch) => launch,
        Err(error) => {
            tracing::warn!(instance = %key, %error, "cannot launch the instance");
            return done_or_retry(
                report(&context, &key, &fail("InvalidSpec", &error.to_string())).await,
            );
        }
    };
    let runtime = match context.runtimes.for_launch(&launch) {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!(instance = %key, %error, "no runtime for the instance");
            return done_or_retry(
                report(&context, &key, &fail(error.reason, &error.message)).await,
            );
        }
    };
    // A hollow runtime starts instantly: it goes straight to Running, one write.
    let hollow = runtime.name() == "hollow";
    if !hollow
        && instance.phase() == InstancePhase::Scheduled
        && let Err(error) = report(
            &context,
            &key,
            &reconcile::staging(&context.launch.host, now),
        )
        .await
    {
        return Outcome::Retry(error);
    }
    let started = match runtime.start(&launch, &context.exits).await {
        Ok(started) => started,
        Err(error) => {
            tracing::warn!(instance = %key, reason = error.reason, %error, "the instance could not start");
            return done_or_retry(
                report(&context, &key, &fail(error.reason, &error.message)).await,
            );
        }
    };
    let local = Local {
        runtime: runtime.name(),
        runtime_id: started.runtime_id.clone(),
        exit: None,
    };
    if !hollow {
        // Best effort: if these writes fail, the next reconcile reports Running.
        let _ = report(&context, &key, &reconcile::starting(&started.runtime_id)).await;
    }
    let started_at = instance
        .status
        .as_ref()
        .and_then(|status| status.started_at);
    let mut patch = reconcile::running(&started.runtime_id, started_at, now);
    if hollow {
        patch["status"]["host"] = Value::from(context.launch.host.clone());
        patch["status"]["stagedAt"] = serde_json::to_value(now).unwrap_or(Value::Null);
        // Hollow instances are fake: healthy and ready at once, never probed.
        if let Some(status) = patch["status"].as_object_mut() {
            status.extend(crate::health::hollow_status(
                instance.spec.template.as_ref(),
                now,
            ));
        }
    }
    let written = match report(&context, &key, &patch).await {
        Ok(written) => written,
        Err(error) => {
            tracing::warn!(instance = %key, %error, "started, but cannot report it yet");
            None
        }
    };
    Outcome::Started(local, written)
}

fn done_or_retry(written: Result<Option<Instance>, String>) -> Outcome {
    match written {
        Ok(written) => Outcome::Done(written),
        Err(error) => Outcome::Retry(error),
    }
}

/// Kills a run (`Killing` → stop → `Killed` when `report`), then releases it.
async fn kill(
    context: &StepContext,
    key: &InstanceKey,
    local: &Local,
    grace: Duration,
    report_phases: bool,
) -> Outcome {
    let Some(runtime) = context.runtimes.by_name(local.runtime) else {
        return Outcome::Retry(format!("runtime {} is gone", local.runtime));
    };
    if report_phases {
        if let Err(error) = report(context, key, &reconcile::killing()).await {
            tracing::warn!(instance = %key, %error, "cannot report Killing; killing anyway");
        }
    } else {
        tracing::info!(instance = %key, runtime_id = %local.runtime_id, "stopping an instance that is no longer wanted here (orphan)");
    }
    if let Err(error) = runtime.stop(key, &local.runtime_id, grace).await {
        return Outcome::Retry(error.to_string());
    }
    if let Err(error) = runtime.remove(key, &local.runtime_id).await {
        return Outcome::Retry(error.to_string());
    }
    let mut written = None;
    if report_phases {
        match report(context, key, &reconcile::killed(None, now())).await {
            Ok(instance) => written = instance,
            // Nothing runs any more; the next reconcile reports Killed.
            Err(error) => {
                tracing::warn!(instance = %key, %error, "killed, but cannot report it yet")
            }
        }
    }
    Outcome::Gone(written)
}

/// Reports how a run ended (if `patch`), then releases what it holds.
async fn release(
    context: &StepContext,
    key: &InstanceKey,
    local: &Local,
    patch: Option<&Value>,
) -> Outcome {
    let mut written = None;
    if let Some(patch) = patch {
        match report(context, key, patch).await {
            Ok(instance) => written = instance,
            Err(error) => return Outcome::Retry(error),
        }
    }
    let Some(runtime) = context.runtimes.by_name(local.runtime) else {
        return Outcome::Gone(written);
    };
    match runtime.remove(key, &local.runtime_id).await {
        Ok(()) => Outcome::Gone(written),
        Err(error) => Outcome::Retry(error.to_string()),
    }
}
