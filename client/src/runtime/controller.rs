//! Runs a user-supplied reconciler on objects when they (or related objects) change: see
//! [`Controller`].
//!
//! Guarantees: a key queued many times runs once; at most [`Config::concurrency`] reconciles
//! run at a time and at most one per key (a key triggered while it reconciles runs again
//! right after); errors requeue through the error policy with per-key exponential backoff,
//! reset on success; every cached key is requeued every [`Config::resync`]; a reconcile that
//! panics is logged, counted and retried with backoff, and the controller carries on.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::stream::{self, BoxStream, SelectAll};
use futures::{Stream, StreamExt};
use pacer_schemas::Resource;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::runtime::backoff::BackoffConfig;
use crate::runtime::reflector::{ObjectRef, Store, Writer, reflector};
use crate::runtime::scheduler::Scheduler;
use crate::runtime::source::Source;
use crate::runtime::watcher::{self, Event, watcher};

/// What to do with an object after a reconcile (or, from an error policy, after a failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Action {
    next: Next,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    After(Duration),
    AwaitChange,
    Backoff,
}

impl Action {
    /// Reconcile again after `duration` (sooner if the object changes). The best practice
    /// after a successful reconcile: it keeps the controller eventually consistent even when a
    /// change was missed.
    pub const fn requeue(duration: Duration) -> Self {
        Self {
            next: Next::After(duration),
        }
    }

    /// Do nothing until the object or a related one changes (or the next resync).
    ///
    /// **Warning**: if you rely on this and a change is missed, only [`Config::resync`] will
    /// bring the object back.
    pub const fn await_change() -> Self {
        Self {
            next: Next::AwaitChange,
        }
    }

    /// Retry after the key's exponential backoff ([`Config::error_backoff`]): the delay grows
    /// with each consecutive failure of this key and starts over after a success. The usual
    /// answer of an error policy.
    pub const fn backoff() -> Self {
        Self {
            next: Next::Backoff,
        }
    }

    /// The delay this action asks for, given the key's consecutive failures so far.
    fn delay(self, backoff: &BackoffConfig, failures: u32) -> Option<Duration> {
        match self.next {
            Next::After(duration) => Some(duration),
            Next::AwaitChange => None,
            Next::Backoff => Some(backoff.delay(failures)),
        }
    }
}

/// How a [`Controller`] runs.
#[derive(Clone, Debug)]
#[must_use]
pub struct Config {
    /// Most reconciles in flight at once (at least 1).
    pub concurrency: usize,
    /// Every cached key is reconciled this often, to catch missed changes and drift; `None`
    /// disables it.
    pub resync: Option<Duration>,
    /// Per-key backoff for [`Action::backoff`] and panics.
    pub error_backoff: BackoffConfig,
    /// On shutdown, how long to let running reconciles finish before aborting them.
    pub shutdown_grace: Duration,
    /// Retry policy of the controller's own watchers.
    pub watcher: watcher::Config,
}

impl Default for Config {
    /// 4 at a time, resync every 5 minutes, errors backed off from 1 s to 5 minutes, 30 s of
    /// shutdown grace.
    fn default() -> Self {
        Self {
            concurrency: 4,
            resync: Some(Duration::from_secs(300)),
            error_backoff: BackoffConfig::new(Duration::from_secs(1), Duration::from_secs(300)),
            shutdown_grace: Duration::from_secs(30),
            watcher: watcher::Config::default(),
        }
    }
}

impl Config {
    /// Sets the most reconciles in flight at once (0 counts as 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Sets the resync period; `None` disables resync.
    pub fn resync(mut self, period: Option<Duration>) -> Self {
        self.resync = period;
        self
    }

    /// Sets the per-key error backoff.
    pub fn error_backoff(mut self, backoff: BackoffConfig) -> Self {
        self.error_backoff = backoff;
        self
    }

    /// Sets the shutdown grace period.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets the watchers' retry policy.
    pub fn watcher(mut self, watcher: watcher::Config) -> Self {
        self.watcher = watcher;
        self
    }
}

/// Counters of a running controller, readable at any time (plain atomics; exporting them to
/// Prometheus is the caller's business).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Reconciles finished, successful or not.
    pub reconciles: AtomicU64,
    /// Reconciles that returned an error or panicked.
    pub failures: AtomicU64,
    /// Reconciles that panicked (also counted in `failures`).
    pub panics: AtomicU64,
    /// Keys waiting: scheduled (due or not) plus those to rerun once their reconcile ends.
    pub queue_depth: AtomicU64,
    /// Reconciles running now.
    pub in_flight: AtomicU64,
    /// Keys triggered by watch events, before deduplication.
    pub triggers: AtomicU64,
    /// Errors reported by the controller's watchers (each retried by the watcher).
    pub watch_errors: AtomicU64,
}

/// A copy of [`Metrics`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// See [`Metrics::reconciles`].
    pub reconciles: u64,
    /// See [`Metrics::failures`].
    pub failures: u64,
    /// See [`Metrics::panics`].
    pub panics: u64,
    /// See [`Metrics::queue_depth`].
    pub queue_depth: u64,
    /// See [`Metrics::in_flight`].
    pub in_flight: u64,
    /// See [`Metrics::triggers`].
    pub triggers: u64,
    /// See [`Metrics::watch_errors`].
    pub watch_errors: u64,
}

impl Metrics {
    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            reconciles: self.reconciles.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            triggers: self.triggers.load(Ordering::Relaxed),
            watch_errors: self.watch_errors.load(Ordering::Relaxed),
        }
    }
}

/// Reconciles objects of kind `K`: watches them into a cache, turns their changes (and changes
/// of owned or related objects) into a deduplicated queue of keys, and runs `reconcile` on the
/// cached object of each key.
///
/// ```no_run
/// # use std::{sync::Arc, time::Duration};
/// # use pacer_client::runtime::{Action, Controller, ControllerConfig, Source};
/// # use pacer_schemas::{App, Instance};
/// # #[derive(Debug, thiserror::Error)] #[error("x")] struct MyError;
/// # async fn demo(apps: impl Source<App> + 'static, instances: impl Source<Instance> + 'static) {
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// Controller::new(apps, ControllerConfig::default())
///     .owns(instances, Default::default())
///     .shutdown_on(shutdown.clone())
///     .run(
///         |app: Arc<App>, _ctx: Arc<()>| async move {
///             // … make the world match `app` …
///             Ok::<_, MyError>(Action::requeue(Duration::from_secs(300)))
///         },
///         |_app, _error, _ctx| Action::backoff(),
///         Arc::new(()),
///     )
///     .await;
/// # }
/// ```
///
/// A key whose object is not in the cache (deleted) is not reconciled: clean-up belongs in
/// owner references (garbage collection) or finalizers.
#[must_use]
pub struct Controller<K: Resource> {
    store: Store<K>,
    triggers: Vec<BoxStream<'static, Trigger>>,
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

/// What a watched stream asks of the runner.
enum Trigger {
    /// Reconcile these keys.
    Keys(Vec<ObjectRef>),
}

impl<K: Resource> Controller<K> {
    /// A controller of the objects in `source`, cached in [`Controller::store`].
    pub fn new<S: Source<K> + 'static>(source: S, config: Config) -> Self {
        let writer = Writer::new();
        let store = writer.as_reader();
        let stream = reflector(writer, watcher(source, config.watcher.clone()));
        Self::for_stream(stream, store, config)
    }

    /// A controller fed by a stream you built, typically `reflector(writer, watcher(…))` with
    /// indexes registered on the writer; `store` must be that writer's reader.
    pub fn for_stream(
        stream: impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
        store: Store<K>,
        config: Config,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let reader = store.clone();
        let main = Self::trigger_stream(stream, Arc::clone(&metrics), move |event| match event {
            // The cache has just swapped in a full list: reconcile all of it (this also covers
            // anything missed while the watch was down).
            Event::InitDone => reader.keys(),
            Event::Apply(object) => vec![ObjectRef::from_obj(&object)],
            // Deleted objects are not reconciled; listed ones wait for `InitDone`.
            Event::Init | Event::InitApply(_) | Event::Delete(_) => Vec::new(),
        });
        Self {
            store,
            triggers: vec![main],
            config: Config {
                concurrency: config.concurrency.max(1),
                ..config
            },
            metrics,
            shutdown: CancellationToken::new(),
        }
    }

    /// Also watches `source` for children of kind `C`: a change of a child reconciles each of
    /// its owners of kind `K` (from `metadata.ownerReferences`, same namespace).
    pub fn owns<C: Resource, S: Source<C> + 'static>(
        self,
        source: S,
        config: watcher::Config,
    ) -> Self {
        self.owns_stream(watcher(source, config))
    }

    /// Like [`Controller::owns`], fed by a stream you built (e.g. a reflector whose cache the
    /// reconciler also reads).
    pub fn owns_stream<C: Resource>(
        self,
        stream: impl Stream<Item = watcher::Result<Event<C>>> + Send + 'static,
    ) -> Self {
        self.watches_stream(stream, owners_of::<K, C>)
    }

    /// Also watches `source` for related objects of kind `C`: a change of one reconciles the
    /// keys `mapper` returns for it (e.g. an Instance → its App by `spec.app`).
    pub fn watches<C, S, F, I>(self, source: S, config: watcher::Config, mapper: F) -> Self
    where
        C: Resource,
        S: Source<C> + 'static,
        F: Fn(&C) -> I + Send + Sync + 'static,
        I: IntoIterator<Item = ObjectRef>,
    {
        self.watches_stream(watcher(source, config), mapper)
    }

    /// Like [`Controller::watches`], fed by a stream you built.
    pub fn watches_stream<C, F, I>(
        mut self,
        stream: impl Stream<Item = watcher::Result<Event<C>>> + Send + 'static,
        mapper: F,
    ) -> Self
    where
        C: Resource,
        F: Fn(&C) -> I + Send + Sync + 'static,
        I: IntoIterator<Item = ObjectRef>,
    {
        let trigger =
            Self::trigger_stream(
                stream,
                Arc::clone(&self.metrics),
                move |event| match event {
                    Event::InitApply(object) | Event::Apply(object) | Event::Delete(object) => {
                        mapper(&object).into_iter().collect()
                    }
                    Event::Init | Event::InitDone => Vec::new(),
                },
            );
        self.triggers.push(trigger);
        self
    }

    /// Stops the controller when `token` is cancelled: no new reconciles start, running ones
    /// get [`Config::shutdown_grace`] to finish, then [`Controller::run`] returns.
    pub fn shutdown_on(mut self, token: CancellationToken) -> Self {
        self.shutdown = token;
        self
    }

    /// The cache of the controlled objects (ready once the first list is in).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// The controller's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Runs until shutdown ([`Controller::shutdown_on`]; without it, forever).
    ///
    /// `reconcile` gets the cached object and `ctx`. When it fails, `error_policy` (run on the
    /// same task) decides what happens next, usually [`Action::backoff`]. Panics in either are
    /// caught, counted and retried with the key's backoff.
    pub async fn run<Ctx, E, R, Fut, P>(self, reconcile: R, error_policy: P, ctx: Arc<Ctx>)
    where
        Ctx: Send + Sync + 'static,
        E: std::error::Error + Send + Sync + 'static,
        R: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(Arc<K>, &E, Arc<Ctx>) -> Action + Send + Sync + 'static,
    {
        let runner = Runner {
            store: self.store,
            config: self.config,
            metrics: self.metrics,
            reconcile: Arc::new(reconcile),
            error_policy: Arc::new(error_policy),
            ctx,
            scheduler: Scheduler::new(),
            rerun: HashMap::new(),
            in_flight: HashSet::new(),
            task_keys: HashMap::new(),
            failures: HashMap::new(),
            tasks: JoinSet::new(),
        };
        runner
            .run(stream::select_all(self.triggers), self.shutdown)
            .await;
    }

    fn trigger_stream<C, F>(
        stream: impl Stream<Item = watcher::Result<Event<C>>> + Send + 'static,
        metrics: Arc<Metrics>,
        keys: F,
    ) -> BoxStream<'static, Trigger>
    where
        C: Resource,
        F: Fn(Event<C>) -> Vec<ObjectRef> + Send + 'static,
    {
        stream
            .filter_map(move |item| {
                let trigger = match item {
                    Ok(event) => {
                        let keys = keys(event);
                        (!keys.is_empty()).then_some(Trigger::Keys(keys))
                    }
                    Err(_) => {
                        // Already logged and retried by the watcher.
                        metrics.watch_errors.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                };
                std::future::ready(trigger)
            })
            .boxed()
    }
}

/// The owners of kind `K` of `child`, in the child's namespace.
fn owners_of<K: Resource, C: Resource>(child: &C) -> Vec<ObjectRef> {
    let meta = child.meta();
    let namespace = meta
        .namespace
        .as_deref()
        .filter(|namespace| !namespace.is_empty());
    meta.owner_references
        .iter()
        .flatten()
        .filter(|owner| owner.kind == K::KIND && api_group(&owner.api_version) == K::GROUP)
        .map(|owner| ObjectRef {
            namespace: namespace.filter(|_| K::NAMESPACED).map(str::to_owned),
            name: owner.name.clone(),
        })
        .collect()
}

/// `pacer.dev` of `pacer.dev/v1`; empty for the core group's `v1`.
fn api_group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// How a reconcile task ended.
enum Outcome {
    Success(Action),
    Failure(Action),
}

struct Runner<K: Resource, Ctx, R, P> {
    store: Store<K>,
    config: Config,
    metrics: Arc<Metrics>,
    reconcile: Arc<R>,
    error_policy: Arc<P>,
    ctx: Arc<Ctx>,
    scheduler: Scheduler<ObjectRef>,
    /// Keys triggered while reconciling, with the time they were wanted.
    rerun: HashMap<ObjectRef, Instant>,
    in_flight: HashSet<ObjectRef>,
    task_keys: HashMap<Id, ObjectRef>,
    /// Consecutive failures per key, for the backoff.
    failures: HashMap<ObjectRef, u32>,
    tasks: JoinSet<Outcome>,
}

impl<K, Ctx, E, R, Fut, P> Runner<K, Ctx, R, P>
where
    K: Resource,
    Ctx: Send + Sync + 'static,
    E: std::error::Error + Send + Sync + 'static,
    R: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    P: Fn(Arc<K>, &E, Arc<Ctx>) -> Action + Send + Sync + 'static,
{
    async fn run(
        mut self,
        mut triggers: SelectAll<BoxStream<'static, Trigger>>,
        shutdown: CancellationToken,
    ) {
        let mut resync = self
            .config
            .resync
            .filter(|period| !period.is_zero())
            .map(|period| {
                let mut interval = tokio::time::interval_at(Instant::now() + period, period);
                interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
                interval
            });
        let mut triggers_open = true;
        tracing::info!(
            kind = K::KIND,
            concurrency = self.config.concurrency,
            "controller started"
        );
        loop {
            self.update_gauges();
            let can_start = self.tasks.len() < self.config.concurrency;
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.finished(joined);
                }
                Some(key) = self.scheduler.next(), if can_start && !self.scheduler.is_empty() => {
                    self.start(key);
                }
                trigger = triggers.next(), if triggers_open => match trigger {
                    Some(Trigger::Keys(keys)) => {
                        self.metrics.triggers.fetch_add(keys.len() as u64, Ordering::Relaxed);
                        let now = Instant::now();
                        for key in keys {
                            self.want(key, now);
                        }
                    }
                    None => triggers_open = false,
                },
                _ = tick(resync.as_mut()) => {
                    let keys = self.store.keys();
                    tracing::debug!(kind = K::KIND, keys = keys.len(), "resync");
                    let now = Instant::now();
                    for key in keys {
                        self.want(key, now);
                    }
                }
            }
        }
        drop(triggers);
        self.shut_down().await;
    }

    /// Asks for `key` to be reconciled at `at`: queued, or marked for a rerun when it is
    /// reconciling now.
    fn want(&mut self, key: ObjectRef, at: Instant) {
        if self.in_flight.contains(&key) {
            self.rerun
                .entry(key)
                .and_modify(|wanted| *wanted = (*wanted).min(at))
                .or_insert(at);
        } else {
            self.scheduler.schedule(key, at);
        }
    }

    fn start(&mut self, key: ObjectRef) {
        let Some(object) = self.store.get(&key) else {
            tracing::debug!(kind = K::KIND, object = %key, "not in the cache (deleted), skipping");
            self.failures.remove(&key);
            return;
        };
        let span = tracing::info_span!(
            "reconcile",
            kind = K::KIND,
            namespace = key.namespace.as_deref().unwrap_or_default(),
            name = %key.name,
        );
        let reconcile = Arc::clone(&self.reconcile);
        let error_policy = Arc::clone(&self.error_policy);
        let ctx = Arc::clone(&self.ctx);
        let task = async move {
            match reconcile(Arc::clone(&object), Arc::clone(&ctx)).await {
                Ok(action) => Outcome::Success(action),
                Err(error) => {
                    tracing::warn!(error = %error, "reconcile failed");
                    Outcome::Failure(error_policy(object, &error, ctx))
                }
            }
        };
        let handle = self.tasks.spawn(task.instrument(span));
        self.task_keys.insert(handle.id(), key.clone());
        self.in_flight.insert(key);
    }

    fn finished(&mut self, joined: Result<(Id, Outcome), JoinError>) {
        let (id, outcome) = match joined {
            Ok((id, outcome)) => (id, Ok(outcome)),
            Err(error) => (error.id(), Err(error)),
        };
        let Some(key) = self.task_keys.remove(&id) else {
            return;
        };
        self.in_flight.remove(&key);
        self.metrics.reconciles.fetch_add(1, Ordering::Relaxed);
        let backoff = &self.config.error_backoff;
        let delay = match outcome {
            Ok(Outcome::Success(action)) => {
                self.failures.remove(&key);
                action.delay(backoff, 0)
            }
            Ok(Outcome::Failure(action)) => {
                self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                let failures = self.failures.entry(key.clone()).or_default();
                let delay = action.delay(backoff, *failures);
                *failures = failures.saturating_add(1);
                delay
            }
            Err(error) => {
                self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                let failures = self.failures.entry(key.clone()).or_default();
                let delay = backoff.delay(*failures);
                *failures = failures.saturating_add(1);
                if error.is_panic() {
                    self.metrics.panics.fetch_add(1, Ordering::Relaxed);
                    let message = panic_message(error.into_panic());
                    tracing::error!(
                        kind = K::KIND,
                        object = %key,
                        panic = %message,
                        retry_in = ?delay,
                        "reconcile panicked"
                    );
                } else {
                    tracing::warn!(kind = K::KIND, object = %key, error = %error, "reconcile task ended");
                }
                Some(delay)
            }
        };
        let mut at = delay.map(|delay| Instant::now() + delay);
        if let Some(wanted) = self.rerun.remove(&key) {
            at = Some(at.map_or(wanted, |at| at.min(wanted)));
        }
        if let Some(at) = at {
            self.scheduler.schedule(key, at);
        }
    }

    async fn shut_down(mut self) {
        let running = self.tasks.len();
        tracing::info!(kind = K::KIND, running, "controller stopping");
        let grace = self.config.shutdown_grace;
        let drained = tokio::time::timeout(grace, async {
            while let Some(joined) = self.tasks.join_next_with_id().await {
                self.finished(joined);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                kind = K::KIND,
                running = self.tasks.len(),
                "reconciles still running after the shutdown grace period, aborting them"
            );
            self.tasks.shutdown().await;
        }
        self.update_gauges();
        tracing::info!(kind = K::KIND, "controller stopped");
    }

    fn update_gauges(&self) {
        let depth = self.scheduler.len() + self.rerun.len();
        self.metrics
            .queue_depth
            .store(depth as u64, Ordering::Relaxed);
        self.metrics
            .in_flight
            .store(self.tasks.len() as u64, Ordering::Relaxed);
    }
}

async fn tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
