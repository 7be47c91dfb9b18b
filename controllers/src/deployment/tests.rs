//! The deployment controller against a real embedded store. The tests write Apps as the API
//! server stores them and play the node agent: Instances with goal Running become Running
//! (healthy when the test says so), those with goal Decommissioned become Killed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use pacer_schemas::app::{KillSelection, UpgradeStrategy};
use pacer_schemas::app_version::RESTARTED_AT_ANNOTATION;
use pacer_schemas::condition::find_condition;
use pacer_schemas::deployment::{
    AUTO_REVERT_OF_ANNOTATION, DeploymentActionKind, DeploymentPhase, PROMOTED_ANNOTATION,
    conditions,
};
use pacer_schemas::health::HealthCheck;
use pacer_schemas::instance::{InstanceGoal, InstancePhase, InstanceStatus};
use pacer_schemas::{App, AppSpec, AppVersion, Deployment, Event, Instance, Resource, Time};
use pacer_store::embedded::EmbeddedStore;
use pacer_store::{Election, EventKind, Leadership, ListOptions, Store, StoreError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::objects::counts_as_capacity;
use super::{DeploymentConfig, DeploymentController, DeploymentError, FINALIZER};
use crate::informers::Informers;
use crate::store_source::{decode_stored, encode_stored, object_revision, registry_key};

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    /// The process' shared caches: every controller the test starts reads through them.
    informers: Informers,
    shutdown: CancellationToken,
    /// Apps whose instances the agent does not start (they stay in Staging).
    held: Arc<std::sync::Mutex<Vec<String>>>,
    /// Whether the agent reports instances healthy.
    healthy: Arc<AtomicBool>,
    /// Whether the agent is stopped.
    paused: Arc<AtomicBool>,
    /// Apps whose instances exit with code 1 as soon as they are placed (a crash loop).
    crashing: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Harness {
    /// A store, the agent, and a controller without leader election.
    async fn start() -> Self {
        let harness = Self::without_controller();
        harness.spawn_controller(None);
        harness
    }

    /// A store and the agent; the test starts controllers.
    fn without_controller() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
        let shutdown = CancellationToken::new();
        let harness = Self {
            _dir: dir,
            informers: Informers::new(Arc::clone(&store)),
            store,
            shutdown,
            held: Arc::default(),
            healthy: Arc::new(AtomicBool::new(true)),
            paused: Arc::new(AtomicBool::new(false)),
            crashing: Arc::default(),
        };
        harness.spawn_agent();
        harness
    }

    /// Starts a controller (fenced under `leadership`, if given); returns its task.
    fn spawn_controller(
        &self,
        leadership: Option<Arc<Leadership>>,
    ) -> tokio::task::JoinHandle<Result<(), DeploymentError>> {
        let config = DeploymentConfig {
            debounce: Duration::from_millis(10),
            resync: Duration::from_millis(500),
            viable_after: Duration::from_secs(1),
            ..DeploymentConfig::default()
        };
        let controller =
            DeploymentController::new(Arc::clone(&self.store), self.informers.clone(), config);
        tokio::spawn(controller.run(leadership, self.shutdown.clone()))
    }

    /// The agent: one pass over the Instances every few milliseconds.
    fn spawn_agent(&self) {
        let store = Arc::clone(&self.store);
        let shutdown = self.shutdown.clone();
        let held = Arc::clone(&self.held);
        let healthy = Arc::clone(&self.healthy);
        let paused = Arc::clone(&self.paused);
        let crashing = Arc::clone(&self.crashing);
        let clock = Arc::new(AtomicI64::new(1_700_000_000));
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                if paused.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                for instance in instances(store.as_ref()).await {
                    let held = held.lock().unwrap().contains(&instance.spec.app);
                    // An App's crashing list, or a template that cannot start (`exit 1`).
                    let crashing = crashing.lock().unwrap().contains(&instance.spec.app)
                        || instance
                            .spec
                            .template
                            .as_ref()
                            .is_some_and(|template| template.cmd.as_deref() == Some("exit 1"));
                    let mut updated = instance.clone();
                    let status = updated.status.get_or_insert_with(InstanceStatus::default);
                    match instance.spec.goal {
                        Some(InstanceGoal::Decommissioned) if !status.phase.is_terminal() => {
                            status.phase = InstancePhase::Killed;
                        }
                        // Held: what is not running yet stays in Staging.
                        Some(InstanceGoal::Running) | None
                            if held && status.phase == InstancePhase::Scheduled =>
                        {
                            status.phase = InstancePhase::Staging;
                        }
                        Some(InstanceGoal::Running) | None if held => {}
                        Some(InstanceGoal::Running) | None
                            if crashing && !status.phase.is_terminal() =>
                        {
                            status.phase = InstancePhase::Failed;
                            status.exit_code = Some(1);
                            status.host = Some("node-1".into());
                            status.message = Some("exited with code 1".into());
                            status.finished_at = Some(Time::new(jiff::Timestamp::now()));
                        }
                        Some(InstanceGoal::Running) | None if !status.phase.is_terminal() => {
                            if status.phase != InstancePhase::Running {
                                status.phase = InstancePhase::Running;
                                let second = clock.fetch_add(1, Ordering::SeqCst);
                                status.started_at = Time::from_unix_seconds(second);
                            }
                            status.healthy = Some(healthy.load(Ordering::SeqCst));
                        }
                        _ => {}
                    }
                    if updated != instance {
                        let key = key_of(&instance);
                        let _ = store
                            .update(
                                &key,
                                encode_stored(&updated).unwrap(),
                                object_revision(&instance).unwrap(),
                                None,
                            )
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        });
    }

    /// Creates an App as the API server would store it.
    async fn create_app(&self, name: &str, spec: AppSpec) {
        let mut app = App::new("default", name, spec);
        app.apply_defaults();
        app.metadata.uid = Some(format!("uid-{name}"));
        app.metadata.generation = Some(1);
        app.metadata.creation_timestamp = Time::from_unix_seconds(1_700_000_000);
        self.store
            .create(&key_of(&app), encode_stored(&app).unwrap(), None)
            .await
            .unwrap();
    }

    /// Changes an App as the API server would (generation + 1 on a spec change).
    async fn update_app(&self, name: &str, change: impl Fn(&mut App)) {
        loop {
            let app = self.app(name).await.unwrap();
            let mut updated = app.clone();
            change(&mut updated);
            updated.apply_defaults();
            if updated.spec != app.spec {
                updated.metadata.generation = Some(app.metadata.generation.unwrap_or(1) + 1);
            }
            let result = self
                .store
                .update(
                    &key_of(&app),
                    encode_stored(&updated).unwrap(),
                    object_revision(&app).unwrap(),
                    None,
                )
                .await;
            match result {
                Ok(_) => return,
                Err(StoreError::Conflict { .. }) => continue,
                Err(error) => panic!("{error}"),
            }
        }
    }

    /// Deletes an App as the API server does with finalizers: sets `deletionTimestamp`.
    async fn delete_app(&self, name: &str) {
        self.update_app(name, |app| {
            app.metadata.deletion_timestamp = Time::from_unix_seconds(1_700_000_000);
        })
        .await;
    }

    async fn app(&self, name: &str) -> Option<App> {
        let kv = self
            .store
            .get(&registry_key::<App>(Some("default"), name))
            .await
            .unwrap()?;
        Some(decode_stored(&kv.value, kv.mod_revision).unwrap())
    }

    async fn instances_of(&self, app: &str) -> Vec<Instance> {
        instances(self.store.as_ref())
            .await
            .into_iter()
            .filter(|i| i.spec.app == app)
            .collect()
    }

    async fn deployments_of(&self, app: &str) -> Vec<Deployment> {
        list::<Deployment>(self.store.as_ref(), "/registry/deployments/")
            .await
            .into_iter()
            .filter(|d| d.touches("default", app))
            .collect()
    }

    /// Waits until `app` runs `n` healthy instances of its current config and no Deployment
    /// of it is active; returns the App.
    async fn converged(&self, app: &str, n: usize) -> App {
        eventually(&format!("{app} converged on {n}"), || async {
            let Some(current) = self.app(app).await else {
                return false;
            };
            let observed = current.status.as_ref().and_then(|s| s.observed_generation);
            if observed != current.metadata.generation {
                return false;
            }
            let Some(version) = current
                .status
                .as_ref()
                .and_then(|s| s.config_version.clone())
            else {
                return false;
            };
            let instances = self.instances_of(app).await;
            let active = self
                .deployments_of(app)
                .await
                .iter()
                .any(|d| d.phase().is_active());
            !active
                && instances.len() == n
                && instances
                    .iter()
                    .all(|i| i.spec.app_version == version && counts_as_capacity(i))
        })
        .await;
        self.app(app).await.unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn key_of<K: Resource>(object: &K) -> String {
    registry_key::<K>(object.meta().namespace.as_deref(), object.meta().name_str())
}

async fn list<K: Resource>(store: &dyn Store, prefix: &str) -> Vec<K> {
    let page = store.list(prefix, &ListOptions::default()).await.unwrap();
    page.items
        .iter()
        .map(|kv| decode_stored::<K>(&kv.value, kv.mod_revision).unwrap())
        .collect()
}

async fn instances(store: &dyn Store) -> Vec<Instance> {
    list(store, "/registry/instances/").await
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn spec(instances: i32) -> AppSpec {
    AppSpec {
        cmd: Some("sleep 1000".into()),
        instances: Some(instances),
        ..AppSpec::default()
    }
}

fn with_strategy(mut spec: AppSpec, mhc: f64, moc: f64) -> AppSpec {
    spec.upgrade_strategy = Some(UpgradeStrategy {
        minimum_health_capacity: Some(mhc),
        maximum_over_capacity: Some(moc),
        ..UpgradeStrategy::default()
    });
    spec
}

/// Follows every Instance change of `app` in the store and calls `check` with the App's
/// instances after each one, until the returned handle is stopped.
fn observe(
    store: &Arc<dyn Store>,
    app: &'static str,
    check: impl Fn(&BTreeMap<String, Instance>) + Send + 'static,
) -> (CancellationToken, tokio::task::JoinHandle<usize>) {
    let store = Arc::clone(store);
    let stop = CancellationToken::new();
    let token = stop.clone();
    let handle = tokio::spawn(async move {
        let mut state: BTreeMap<String, Instance> = instances(store.as_ref())
            .await
            .into_iter()
            .filter(|i| i.spec.app == app)
            .map(|i| (i.metadata.name_str().to_owned(), i))
            .collect();
        let from = store.current_revision().await.unwrap();
        let mut events = store.watch("/registry/instances/", from).await.unwrap();
        let mut seen = 0;
        loop {
            let event = tokio::select! {
                () = token.cancelled() => return seen,
                event = events.next() => event,
            };
            let event = match event {
                Some(Ok(event)) => event,
                other => panic!("the watch ended: {other:?}"),
            };
            match event.kind {
                EventKind::Put => {
                    let instance: Instance =
                        decode_stored(&event.kv.value, event.kv.mod_revision).unwrap();
                    if instance.spec.app != app {
                        continue;
                    }
                    state.insert(instance.metadata.name_str().to_owned(), instance);
                }
                EventKind::Delete => {
                    let name = event
                        .kv
                        .key
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    if state.remove(&name).is_none() {
                        continue;
                    }
                }
            }
            seen += 1;
            check(&state);
        }
    });
    (stop, handle)
}

#[tokio::test]
async fn create_scale_and_kill_selection() {
    let harness = Harness::start().await;
    let mut web = spec(3);
    web.kill_selection = Some(KillSelection::OldestFirst);
    harness.create_app("web", web).await;
    let app = harness.converged("web", 3).await;
    let status = app.status.clone().unwrap();
    assert_eq!(status.revision, Some(1));
    assert_eq!(
        (status.running, status.instances, status.updated),
        (3, 3, Some(3))
    );
    assert!(
        app.metadata
            .finalizers
            .unwrap()
            .contains(&FINALIZER.to_owned())
    );
    let first_config = status.config_version.clone().unwrap();
    for instance in harness.instances_of("web").await {
        assert!(instance.metadata.name_str().starts_with("web-"));
        assert_eq!(
            instance.metadata.labels.as_ref().unwrap()["pacer.dev/app"],
            "web"
        );
        assert_eq!(
            instance.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-web"
        );
        assert_eq!(
            instance.spec.template.as_ref().unwrap().cmd.as_deref(),
            Some("sleep 1000")
        );
    }
    let deployments = harness.deployments_of("web").await;
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0].phase(), DeploymentPhase::Succeeded);
    assert_eq!(
        deployments[0].spec.steps[0].actions[0].action,
        DeploymentActionKind::StartApplication
    );

    // Scale up: a Scale deployment, new instances of the same config version.
    harness
        .update_app("web", |app| app.spec.instances = Some(5))
        .await;
    let app = harness.converged("web", 5).await;
    let status = app.status.unwrap();
    assert_eq!(status.revision, Some(2));
    assert_eq!(
        status.config_version.as_deref(),
        Some(first_config.as_str())
    );

    // Scale down oldest first: the three oldest go, the two youngest stay.
    let mut before = harness.instances_of("web").await;
    before.sort_by_key(|i| i.status.as_ref().unwrap().started_at);
    let youngest: Vec<String> = before[3..]
        .iter()
        .map(|i| i.metadata.name_str().to_owned())
        .collect();
    harness
        .update_app("web", |app| app.spec.instances = Some(2))
        .await;
    harness.converged("web", 2).await;
    let mut after: Vec<String> = harness
        .instances_of("web")
        .await
        .iter()
        .map(|i| i.metadata.name_str().to_owned())
        .collect();
    after.sort();
    let mut expected = youngest;
    expected.sort();
    assert_eq!(after, expected);
    let kinds: Vec<DeploymentActionKind> = harness
        .deployments_of("web")
        .await
        .iter()
        .map(|d| d.spec.steps[0].actions[0].action)
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == DeploymentActionKind::ScaleApplication)
            .count(),
        2
    );
    let versions: Vec<AppVersion> = list(harness.store.as_ref(), "/registry/appversions/").await;
    let mut names: Vec<&str> = versions.iter().map(|v| v.metadata.name_str()).collect();
    names.sort();
    assert_eq!(names, vec!["web-1", "web-2", "web-3"]);
}

#[tokio::test]
async fn rolling_upgrade_one_zero_never_drops_below_n_healthy() {
    let harness = Harness::start().await;
    let mut web = with_strategy(spec(3), 1.0, 0.0);
    web.health_checks = Some(vec![HealthCheck::default()]);
    harness.create_app("web", web).await;
    harness.converged("web", 3).await;
    let (stop, observer) = observe(&harness.store, "web", |state| {
        let healthy = state
            .values()
            .filter(|i| counts_as_capacity(i) && i.spec.goal == Some(InstanceGoal::Running))
            .count();
        let alive = state.values().filter(|i| !i.phase().is_terminal()).count();
        assert!(
            healthy >= 3,
            "healthy capacity dropped to {healthy}: {state:#?}"
        );
        assert!(alive <= 4, "{alive} alive instances > 3 + 1");
    });
    harness
        .update_app("web", |app| app.spec.cmd = Some("sleep 2000".into()))
        .await;
    let app = harness.converged("web", 3).await;
    stop.cancel();
    let events = observer.await.unwrap();
    assert!(events > 6, "the observer saw the rollout ({events} events)");
    assert_eq!(app.status.unwrap().revision, Some(2));
    for instance in harness.instances_of("web").await {
        assert_eq!(
            instance.spec.template.as_ref().unwrap().cmd.as_deref(),
            Some("sleep 2000")
        );
    }
}

#[tokio::test]
async fn zero_zero_kills_every_old_instance_at_once_and_never_exceeds_n() {
    // Marathon's 0/0: all old instances are killed in the first step (nothing must stay
    // healthy), and new ones start only into the room the dead ones leave (nothing may run in
    // addition), so at no point do more than n instances live.
    let harness = Harness::start().await;
    harness
        .create_app("web", with_strategy(spec(3), 0.0, 0.0))
        .await;
    let app = harness.converged("web", 3).await;
    let old_version = app.status.unwrap().config_version.unwrap();
    let (stop, observer) = observe(&harness.store, "web", move |state| {
        let new_exists = state.values().any(|i| i.spec.app_version != old_version);
        let old_kept = state.values().any(|i| {
            i.spec.app_version == old_version && i.spec.goal == Some(InstanceGoal::Running)
        });
        assert!(
            !(old_kept && new_exists),
            "a new instance before every old one was killed: {state:#?}"
        );
        let alive = state.values().filter(|i| !i.phase().is_terminal()).count();
        assert!(alive <= 3, "{alive} alive instances > 3");
    });
    harness
        .update_app("web", |app| app.spec.cmd = Some("sleep 2000".into()))
        .await;
    harness.converged("web", 3).await;
    stop.cancel();
    assert!(observer.await.unwrap() > 6);
}

#[tokio::test]
async fn restart_annotation_replaces_every_instance() {
    let harness = Harness::start().await;
    harness.create_app("web", spec(2)).await;
    harness.converged("web", 2).await;
    let before: Vec<String> = harness
        .instances_of("web")
        .await
        .iter()
        .map(|i| i.metadata.name_str().to_owned())
        .collect();
    harness
        .update_app("web", |app| {
            app.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(
                    RESTARTED_AT_ANNOTATION.into(),
                    "2024-01-01T00:00:00Z".into(),
                );
        })
        .await;
    eventually("a restart deployment", || async {
        harness
            .deployments_of("web")
            .await
            .iter()
            .any(|d| d.spec.steps[0].actions[0].action == DeploymentActionKind::RestartApplication)
    })
    .await;
    harness.converged("web", 2).await;
    for instance in harness.instances_of("web").await {
        assert!(!before.contains(&instance.metadata.name.clone().unwrap()));
    }
}

#[tokio::test]
async fn dependencies_start_in_order_and_stop_in_reverse() {
    let harness = Harness::start().await;
    harness.held.lock().unwrap().push("db".into());
    harness.create_app("db", spec(2)).await;
    let mut web = spec(2);
    web.dependencies = Some(vec!["/db".into()]);
    harness.create_app("web", web).await;
    eventually("db instances staged", || async {
        harness.instances_of("db").await.len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        harness.instances_of("web").await.is_empty(),
        "web waits for db"
    );
    let waiting = harness.deployments_of("web").await;
    let action = &waiting[0].status.as_ref().unwrap().current_actions[0];
    assert_eq!(
        action.waiting_for.as_deref(),
        Some("dependency default/db to be healthy")
    );
    harness.held.lock().unwrap().clear();
    harness.converged("db", 2).await;
    harness.converged("web", 2).await;

    // Stop both: web's instances go before any of db's is killed.
    let store = Arc::clone(&harness.store);
    let violations = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&violations);
    let checker = tokio::spawn(async move {
        loop {
            let all = instances(store.as_ref()).await;
            let db_killed = all
                .iter()
                .any(|i| i.spec.app == "db" && i.spec.goal == Some(InstanceGoal::Decommissioned));
            let web_alive = all
                .iter()
                .any(|i| i.spec.app == "web" && !i.phase().is_terminal());
            if db_killed && web_alive {
                flag.store(true, Ordering::SeqCst);
            }
            if all.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    harness.delete_app("db").await;
    harness.delete_app("web").await;
    eventually("both apps removed", || async {
        harness.app("db").await.is_none() && harness.app("web").await.is_none()
    })
    .await;
    checker.await.unwrap();
    assert!(
        !violations.load(Ordering::SeqCst),
        "db was stopped while web still ran"
    );
    let versions: Vec<AppVersion> = list(harness.store.as_ref(), "/registry/appversions/").await;
    assert!(versions.is_empty(), "versions removed with their apps");
    let stops: HashMap<String, DeploymentPhase> =
        list::<Deployment>(harness.store.as_ref(), "/registry/deployments/")
            .await
            .into_iter()
            .filter(|d| d.spec.steps[0].actions[0].action == DeploymentActionKind::StopApplication)
            .map(|d| (d.spec.affected_apps[0].name.clone(), d.phase()))
            .collect();
    assert_eq!(stops.get("db"), Some(&DeploymentPhase::Succeeded));
    assert_eq!(stops.get("web"), Some(&DeploymentPhase::Succeeded));
}

#[tokio::test]
async fn a_dependency_cycle_fails_the_deployments() {
    let harness = Harness::start().await;
    let mut a = spec(1);
    a.dependencies = Some(vec!["/b".into()]);
    let mut b = spec(1);
    b.dependencies = Some(vec!["/a".into()]);
    harness.create_app("a", a).await;
    harness.create_app("b", b).await;
    eventually("both deployments failed", || async {
        let mut failed = 0;
        for app in ["a", "b"] {
            for deployment in harness.deployments_of(app).await {
                let status = deployment.status.unwrap_or_default();
                if status.phase == DeploymentPhase::Failed {
                    assert_eq!(
                        status.message.as_deref(),
                        Some("dependency cycle: /a → /b → /a")
                    );
                    failed += 1;
                }
            }
        }
        failed == 2
    })
    .await;
    assert!(instances(harness.store.as_ref()).await.is_empty());
}

#[tokio::test]
async fn a_forced_change_supersedes_the_running_deployment() {
    let harness = Harness::start().await;
    harness.healthy.store(true, Ordering::SeqCst);
    harness.held.lock().unwrap().push("web".into());
    harness.create_app("web", spec(2)).await;
    eventually("the start deployment runs", || async {
        harness.instances_of("web").await.len() == 2
    })
    .await;
    harness
        .update_app("web", |app| app.spec.cmd = Some("sleep 3".into()))
        .await;
    harness.held.lock().unwrap().clear();
    harness.converged("web", 2).await;
    let deployments = harness.deployments_of("web").await;
    let phases: Vec<DeploymentPhase> = {
        let mut sorted = deployments.clone();
        sorted.sort_by_key(|d| d.spec.steps[0].actions[0].revision);
        sorted.iter().map(Deployment::phase).collect()
    };
    assert_eq!(
        phases,
        vec![DeploymentPhase::Cancelled, DeploymentPhase::Succeeded]
    );
    let second = deployments
        .iter()
        .find(|d| d.phase() == DeploymentPhase::Succeeded)
        .unwrap();
    assert_eq!(second.spec.force, Some(true));
}

#[tokio::test]
async fn a_hundred_apps_of_a_hundred_instances_are_created_in_batches() {
    let harness = Harness::start().await;
    harness.paused.store(true, Ordering::SeqCst);
    for index in 0..100 {
        harness
            .create_app(&format!("app{index:03}"), spec(100))
            .await;
    }
    eventually("10,000 instances", || async {
        instances(harness.store.as_ref()).await.len() == 10_000
    })
    .await;
    let revision = harness.store.current_revision().await.unwrap();
    // 100 App creates, ~3 version transactions, ~80 instance batches, a few status writes:
    // far fewer transactions than instances.
    assert!(
        revision < 1_000,
        "{revision} store revisions for 10,000 instances"
    );
}

/// Deletes a Deployment as the API server does with finalizers: sets `deletionTimestamp`
/// (read-modify-write, retried while the controller writes its status).
async fn delete_deployment(store: &dyn Store, deployment: &Deployment) {
    let key = key_of(deployment);
    loop {
        let kv = store.get(&key).await.unwrap().unwrap();
        let mut deleted: Deployment = decode_stored(&kv.value, kv.mod_revision).unwrap();
        deleted.metadata.deletion_timestamp = Time::from_unix_seconds(1_700_000_000);
        let result = store
            .update(
                &key,
                encode_stored(&deleted).unwrap(),
                kv.mod_revision,
                None,
            )
            .await;
        match result {
            Ok(_) => return,
            Err(StoreError::Conflict { .. }) => continue,
            Err(error) => panic!("{error}"),
        }
    }
}

async fn running_deployment(harness: &Harness, app: &str) -> Deployment {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let active = harness
            .deployments_of(app)
            .await
            .into_iter()
            .find(|d| d.phase().is_active());
        if let Some(deployment) = active {
            return deployment;
        }
        assert!(Instant::now() < deadline, "no running deployment of {app}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn deleting_a_running_deployment_rolls_the_app_back() {
    let harness = Harness::start().await;
    harness.create_app("web", spec(2)).await;
    harness.converged("web", 2).await;
    harness.held.lock().unwrap().push("web".into());
    harness
        .update_app("web", |app| app.spec.cmd = Some("sleep 2000".into()))
        .await;
    let update = running_deployment(&harness, "web").await;
    assert_eq!(
        update.metadata.finalizers.as_deref(),
        Some(&["pacer.dev/deployment-controller".to_owned()][..])
    );
    delete_deployment(harness.store.as_ref(), &update).await;
    eventually("the deleted deployment gone", || async {
        !harness
            .deployments_of("web")
            .await
            .iter()
            .any(|d| d.metadata.name == update.metadata.name)
    })
    .await;
    harness.held.lock().unwrap().clear();
    let app = harness.converged("web", 2).await;
    assert_eq!(app.spec.cmd.as_deref(), Some("sleep 1000"), "rolled back");
    assert_eq!(app.status.unwrap().revision, Some(3));
    for instance in harness.instances_of("web").await {
        let template = instance.spec.template.unwrap();
        assert_eq!(template.cmd.as_deref(), Some("sleep 1000"));
    }
}

#[tokio::test]
async fn deleting_the_deployment_that_created_an_app_removes_the_app() {
    let harness = Harness::start().await;
    harness.held.lock().unwrap().push("web".into());
    harness.create_app("web", spec(2)).await;
    let start = running_deployment(&harness, "web").await;
    delete_deployment(harness.store.as_ref(), &start).await;
    eventually("the app removed", || async {
        harness.app("web").await.is_none()
    })
    .await;
    assert!(harness.instances_of("web").await.is_empty());
}

#[tokio::test]
async fn a_new_leader_continues_the_rollout_without_duplicating_instances() {
    let harness = Harness::without_controller();
    let election = Election::new(Arc::clone(&harness.store), "/elections/deployment/").unwrap();
    let first_lease = harness.store.lease_grant(30).await.unwrap();
    let first = Arc::new(election.campaign(first_lease, b"a".to_vec()).await.unwrap());
    let first_task = harness.spawn_controller(Some(first));
    let mut web = with_strategy(spec(3), 1.0, 0.0);
    web.health_checks = Some(vec![HealthCheck::default()]);
    harness.create_app("web", web).await;
    harness.converged("web", 3).await;
    let (stop, observer) = observe(&harness.store, "web", |state| {
        let healthy = state
            .values()
            .filter(|i| counts_as_capacity(i) && i.spec.goal == Some(InstanceGoal::Running))
            .count();
        let alive = state.values().filter(|i| !i.phase().is_terminal()).count();
        assert!(healthy >= 3, "healthy capacity dropped to {healthy}");
        assert!(
            alive <= 4,
            "{alive} alive instances: duplicated by a second leader?"
        );
    });
    // Mid-rollout (the new instance never starts while held), the leader is deposed.
    harness.held.lock().unwrap().push("web".into());
    harness
        .update_app("web", |app| app.spec.cmd = Some("sleep 2000".into()))
        .await;
    running_deployment(&harness, "web").await;
    eventually("the first new instance", || async {
        harness.instances_of("web").await.len() == 4
    })
    .await;
    harness.store.lease_revoke(first_lease).await.unwrap();
    // A successor continues the same plan from the state in the store.
    let second_lease = harness.store.lease_grant(30).await.unwrap();
    let second = Arc::new(
        election
            .campaign(second_lease, b"b".to_vec())
            .await
            .unwrap(),
    );
    let _second_task = harness.spawn_controller(Some(second));
    harness.held.lock().unwrap().clear();
    let app = harness.converged("web", 3).await;
    stop.cancel();
    observer.await.unwrap();
    assert_eq!(
        app.status.unwrap().revision,
        Some(2),
        "one version per change"
    );
    let deployments = harness.deployments_of("web").await;
    assert_eq!(
        deployments.len(),
        2,
        "no deployment duplicated: {deployments:#?}"
    );
    // The deposed leader's first write after the revocation was refused, which ended it.
    let ended = tokio::time::timeout(Duration::from_secs(30), first_task)
        .await
        .expect("the deposed leader stops")
        .unwrap();
    assert!(ended.is_err(), "a refused fence ends the run: {ended:?}");
}

/// A crash-looping App's spec: one instance, the given backoff.
fn crashing_spec(backoff: i32, factor: f64, max: i32) -> AppSpec {
    AppSpec {
        backoff_seconds: Some(backoff),
        backoff_factor: Some(factor),
        max_launch_delay_seconds: Some(max),
        ..spec(1)
    }
}

impl Harness {
    async fn launch_delay(&self, app: &str) -> Option<pacer_schemas::app::LaunchDelay> {
        self.app(app).await?.status?.launch_delay
    }

    /// Removes `status.launchDelay` as `DELETE /v2/queue/{id}/delay` does.
    async fn reset_delay(&self, name: &str) {
        loop {
            let app = self.app(name).await.unwrap();
            let mut updated = app.clone();
            if let Some(status) = updated.status.as_mut() {
                status.launch_delay = None;
            }
            let result = self
                .store
                .update(
                    &key_of(&app),
                    encode_stored(&updated).unwrap(),
                    object_revision(&app).unwrap(),
                    None,
                )
                .await;
            match result {
                Ok(_) => return,
                Err(StoreError::Conflict { .. }) => continue,
                Err(error) => panic!("{error}"),
            }
        }
    }
}

/// What the ordered store history shows of a crash loop: for each Instance creation, the
/// consecutive failures recorded before it; and the delays recorded, in order.
#[derive(Debug, Default)]
struct CrashHistory {
    creations: Vec<i32>,
    delays: Vec<(i32, f64)>,
}

/// Follows the App `app` and its Instances in one ordered watch of the registry.
fn follow_crashes(
    store: &Arc<dyn Store>,
    app: &'static str,
) -> (CancellationToken, tokio::task::JoinHandle<CrashHistory>) {
    let store = Arc::clone(store);
    let stop = CancellationToken::new();
    let token = stop.clone();
    let handle = tokio::spawn(async move {
        let from = store.current_revision().await.unwrap();
        let mut events = store.watch("/registry/", from).await.unwrap();
        let mut history = CrashHistory::default();
        let mut failures = 0;
        loop {
            let event = tokio::select! {
                () = token.cancelled() => return history,
                event = events.next() => event,
            };
            let event = event.unwrap().unwrap();
            if event.kind != EventKind::Put {
                continue;
            }
            let key = event.kv.key.clone();
            if key.starts_with("/registry/apps/default/") && key.ends_with(&format!("/{app}")) {
                let current: App = decode_stored(&event.kv.value, event.kv.mod_revision).unwrap();
                let delay = current.status.and_then(|s| s.launch_delay);
                let recorded = delay.as_ref().map_or(0, |d| d.consecutive_failures);
                if recorded != failures {
                    failures = recorded;
                    if let Some(delay) = delay {
                        history
                            .delays
                            .push((delay.consecutive_failures, delay.delay_seconds));
                    }
                }
            } else if key.starts_with("/registry/instances/")
                && event.kv.create_revision == event.kv.mod_revision
            {
                let instance: Instance =
                    decode_stored(&event.kv.value, event.kv.mod_revision).unwrap();
                if instance.spec.app == app {
                    history.creations.push(failures);
                }
            }
        }
    });
    (stop, handle)
}

#[tokio::test]
async fn a_crash_loop_backs_off_with_growing_delays_and_one_launch_per_window() {
    let harness = Harness::start().await;
    harness.crashing.lock().unwrap().push("crash".into());
    let (stop, follower) = follow_crashes(&harness.store, "crash");
    let started = Instant::now();
    harness.create_app("crash", crashing_spec(1, 2.0, 4)).await;
    eventually("five consecutive failures", || async {
        harness
            .launch_delay("crash")
            .await
            .is_some_and(|delay| delay.consecutive_failures >= 5)
    })
    .await;
    // Waited at least 1 + 2 + 4 + 4 s between the five launches (generous margin for clocks).
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let app = harness.app("crash").await.unwrap();
    let failure = app.status.as_ref().unwrap().last_failure.clone().unwrap();
    assert_eq!(failure.exit_code, Some(1));
    assert_eq!(failure.phase.as_deref(), Some("Failed"));
    assert_eq!(failure.host.as_deref(), Some("node-1"));
    assert!(failure.instance.as_deref().unwrap().starts_with("crash-"));
    let delay = app.status.unwrap().launch_delay.unwrap();
    assert_eq!(delay.reason.as_deref(), Some("Failed: exit code 1"));
    assert!(delay.since.is_some() && delay.until.is_some());

    // The agent stops crashing: the next launch runs, and once it has run for `viable_after`
    // the backoff resets.
    harness.crashing.lock().unwrap().clear();
    eventually("the backoff resets after a viable run", || async {
        harness.launch_delay("crash").await.is_none()
    })
    .await;
    harness.converged("crash", 1).await;
    stop.cancel();
    let history = follower.await.unwrap();
    // Delays grow 1, 2, 4 and stay at the cap 4.
    let delays: Vec<(i32, f64)> = history.delays.iter().copied().take(5).collect();
    assert_eq!(
        delays,
        vec![(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0), (5, 4.0)],
        "{history:?}"
    );
    // Never more than one launch per delay window: each creation follows a new failure.
    for pair in history.creations.windows(2) {
        assert!(pair[1] > pair[0], "two launches in one window: {history:?}");
    }
    assert!(
        history.creations.len() <= 7,
        "a hot loop would create many more: {history:?}"
    );
}

#[tokio::test]
async fn the_delay_survives_a_leader_change_and_a_reset_clears_it() {
    let harness = Harness::without_controller();
    let election = Election::new(Arc::clone(&harness.store), "/elections/deployment/").unwrap();
    let first_lease = harness.store.lease_grant(30).await.unwrap();
    let first = Arc::new(election.campaign(first_lease, b"a".to_vec()).await.unwrap());
    let _first_task = harness.spawn_controller(Some(first));
    harness.crashing.lock().unwrap().push("crash".into());
    harness
        .create_app("crash", crashing_spec(600, 2.0, 3600))
        .await;
    eventually(
        "the first failure recorded and its instance deleted",
        || async {
            harness.launch_delay("crash").await.is_some()
                && harness.instances_of("crash").await.is_empty()
        },
    )
    .await;
    let recorded = harness.launch_delay("crash").await.unwrap();
    assert_eq!(
        (recorded.consecutive_failures, recorded.delay_seconds),
        (1, 600.0)
    );

    // The leader goes; a successor reads the delay from the App's status.
    harness.store.lease_revoke(first_lease).await.unwrap();
    let second_lease = harness.store.lease_grant(30).await.unwrap();
    let second = Arc::new(
        election
            .campaign(second_lease, b"b".to_vec())
            .await
            .unwrap(),
    );
    let _second_task = harness.spawn_controller(Some(second));
    // Proof the successor runs rounds: it starts another App.
    harness.create_app("probe", spec(1)).await;
    harness.converged("probe", 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        harness.instances_of("crash").await.is_empty(),
        "the new leader relaunched during the delay"
    );
    assert_eq!(harness.launch_delay("crash").await, Some(recorded));

    // A reset (status.launchDelay removed) launches at once; the next failure counts from 1.
    harness.reset_delay("crash").await;
    eventually("a relaunch after the reset, failures from 1", || async {
        harness
            .launch_delay("crash")
            .await
            .is_some_and(|delay| delay.consecutive_failures == 1)
    })
    .await;
}

#[tokio::test]
async fn a_config_change_resets_the_delay() {
    let harness = Harness::start().await;
    harness.crashing.lock().unwrap().push("crash".into());
    harness
        .create_app("crash", crashing_spec(600, 2.0, 3600))
        .await;
    eventually("the first failure recorded", || async {
        harness.launch_delay("crash").await.is_some()
            && harness.instances_of("crash").await.is_empty()
    })
    .await;
    // A scale is not a config change: the delay holds.
    harness
        .update_app("crash", |app| app.spec.instances = Some(2))
        .await;
    eventually("the scale observed", || async {
        harness.app("crash").await.and_then(|a| a.status?.revision) == Some(2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        harness.instances_of("crash").await.is_empty(),
        "a scale launched during the delay"
    );
    assert!(harness.launch_delay("crash").await.is_some());
    // A new config: launches at once, without the old delay.
    harness.crashing.lock().unwrap().clear();
    harness
        .update_app("crash", |app| app.spec.cmd = Some("sleep 3000".into()))
        .await;
    let app = harness.converged("crash", 2).await;
    assert_eq!(app.status.as_ref().unwrap().launch_delay, None);
    assert!(
        app.status.unwrap().last_failure.is_some(),
        "the last failure is kept"
    );
}

#[tokio::test]
async fn a_health_kill_counts_once_as_a_launch_failure() {
    let harness = Harness::start().await;
    harness
        .create_app("sick", crashing_spec(600, 2.0, 3600))
        .await;
    harness.converged("sick", 1).await;
    // The health controller's kill: goal Decommissioned with reason HealthCheckFailed.
    harness.paused.store(true, Ordering::SeqCst);
    let instance = harness.instances_of("sick").await.remove(0);
    let mut killed = instance.clone();
    killed.spec.goal = Some(InstanceGoal::Decommissioned);
    let status = killed.status.as_mut().unwrap();
    status.reason = Some(super::backoff::HEALTH_KILL_REASON.into());
    status.message = Some("healthChecks[0] failed 3 times".into());
    harness
        .store
        .update(
            &key_of(&instance),
            encode_stored(&killed).unwrap(),
            object_revision(&instance).unwrap(),
            None,
        )
        .await
        .unwrap();
    eventually("the health kill recorded", || async {
        harness
            .launch_delay("sick")
            .await
            .is_some_and(|delay| delay.consecutive_failures == 1)
    })
    .await;
    let app = harness.app("sick").await.unwrap();
    let failure = app.status.unwrap().last_failure.unwrap();
    assert_eq!(failure.phase.as_deref(), Some("Killed"));
    assert_eq!(failure.reason.as_deref(), Some("HealthCheckFailed"));
    // The agent kills it; it is deleted without counting again, and no replacement starts
    // during the delay.
    harness.paused.store(false, Ordering::SeqCst);
    eventually("the killed instance deleted", || async {
        harness.instances_of("sick").await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(harness.instances_of("sick").await.is_empty());
    assert_eq!(
        harness
            .launch_delay("sick")
            .await
            .unwrap()
            .consecutive_failures,
        1
    );
}

/// The running Deployment of `app` once its canary is paused for promotion.
async fn paused_deployment(harness: &Harness, app: &str) -> Deployment {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let paused = harness.deployments_of(app).await.into_iter().find(|d| {
            d.phase().is_active()
                && d.status.as_ref().is_some_and(|status| {
                    find_condition(&status.conditions, conditions::PAUSED)
                        .is_some_and(|c| c.is_true())
                })
        });
        if let Some(deployment) = paused {
            return deployment;
        }
        assert!(Instant::now() < deadline, "no paused deployment of {app}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Sets an annotation on a stored Deployment (as `pacer rollout promote` does over the API).
async fn annotate_deployment(store: &dyn Store, deployment: &Deployment, key: &str) {
    let stored_key = key_of(deployment);
    loop {
        let kv = store.get(&stored_key).await.unwrap().unwrap();
        let mut annotated: Deployment = decode_stored(&kv.value, kv.mod_revision).unwrap();
        annotated
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), "2026-11-28T00:00:00Z".to_owned());
        let result = store
            .update(
                &stored_key,
                encode_stored(&annotated).unwrap(),
                kv.mod_revision,
                None,
            )
            .await;
        match result {
            Ok(_) => return,
            Err(StoreError::Conflict { .. }) => continue,
            Err(error) => panic!("{error}"),
        }
    }
}

fn with_upgrade(mut spec: AppSpec, upgrade: UpgradeStrategy) -> AppSpec {
    spec.upgrade_strategy = Some(upgrade);
    spec
}

/// Counts (current config, old config) among the live instances of `app`.
async fn new_and_old(harness: &Harness, app: &str) -> (usize, usize) {
    let current = harness.app(app).await.unwrap();
    let version = current.status.unwrap().config_version.unwrap();
    let live: Vec<Instance> = harness
        .instances_of(app)
        .await
        .into_iter()
        .filter(|i| !i.phase().is_terminal() && i.spec.goal == Some(InstanceGoal::Running))
        .collect();
    let new = live
        .iter()
        .filter(|i| i.spec.app_version == version)
        .count();
    (new, live.len() - new)
}

#[tokio::test]
async fn a_canary_pauses_with_n_new_instances_until_promoted() {
    let harness = Harness::start().await;
    let upgrade = UpgradeStrategy {
        minimum_health_capacity: Some(1.0),
        maximum_over_capacity: Some(0.25),
        canary: Some(2),
        ..UpgradeStrategy::default()
    };
    harness
        .create_app("web", with_upgrade(spec(4), upgrade))
        .await;
    harness.converged("web", 4).await;
    let created = running_or_none(&harness).await;
    assert!(created, "the creation is not a canary: it finished");
    harness
        .update_app("web", |app| app.spec.cmd = Some("sleep 2000".into()))
        .await;
    let paused = paused_deployment(&harness, "web").await;
    assert_eq!(new_and_old(&harness, "web").await, (2, 2));
    let status = paused.status.clone().unwrap();
    let action = &status.current_actions[0];
    assert!(
        action
            .waiting_for
            .as_deref()
            .is_some_and(|what| what.contains("pacer rollout promote web")),
        "{action:?}"
    );
    // Paused means paused: several rounds later nothing moved.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(new_and_old(&harness, "web").await, (2, 2));
    assert!(running_deployment(&harness, "web").await.metadata.name == paused.metadata.name);

    annotate_deployment(harness.store.as_ref(), &paused, PROMOTED_ANNOTATION).await;
    let app = harness.converged("web", 4).await;
    assert_eq!(app.spec.cmd.as_deref(), Some("sleep 2000"));
    let done = harness
        .deployments_of("web")
        .await
        .into_iter()
        .find(|d| d.metadata.name == paused.metadata.name)
        .unwrap();
    assert_eq!(done.phase(), DeploymentPhase::Succeeded);
    let condition = find_condition(
        &done.status.as_ref().unwrap().conditions,
        conditions::PAUSED,
    )
    .unwrap()
    .clone();
    assert_eq!(condition.reason.as_deref(), Some(conditions::PROMOTED));
    assert!(!condition.is_true());
}

/// Whether the App's creation deployment finished (it never pauses).
async fn running_or_none(harness: &Harness) -> bool {
    harness
        .deployments_of("web")
        .await
        .iter()
        .all(|d| d.phase() == DeploymentPhase::Succeeded)
}

#[tokio::test]
async fn auto_revert_rolls_back_when_a_new_instance_fails_and_records_why() {
    let harness = Harness::start().await;
    let upgrade = UpgradeStrategy {
        minimum_health_capacity: Some(1.0),
        maximum_over_capacity: Some(0.5),
        auto_revert: Some(true),
        ..UpgradeStrategy::default()
    };
    harness
        .create_app("web", with_upgrade(spec(2), upgrade))
        .await;
    harness.converged("web", 2).await;
    let before: Vec<String> = harness
        .instances_of("web")
        .await
        .iter()
        .map(|i| i.metadata.name_str().to_owned())
        .collect();
    harness
        .update_app("web", |app| app.spec.cmd = Some("exit 1".into()))
        .await;
    let failed = running_deployment(&harness, "web").await;
    let app = {
        eventually("the app rolled back and converged", || async {
            harness.app("web").await.is_some_and(|app| {
                app.spec.cmd.as_deref() == Some("sleep 1000")
                    && app.status.as_ref().and_then(|s| s.revision) == Some(3)
            })
        })
        .await;
        harness.converged("web", 2).await
    };
    assert_eq!(
        app.metadata.annotations.as_ref().unwrap()[AUTO_REVERT_OF_ANNOTATION],
        failed.metadata.name_str()
    );
    // The old instances never stopped: the rollback returned to their config.
    let after: Vec<String> = harness
        .instances_of("web")
        .await
        .iter()
        .map(|i| i.metadata.name_str().to_owned())
        .collect();
    assert_eq!(after, before);
    let deployments = harness.deployments_of("web").await;
    let failed = deployments
        .iter()
        .find(|d| d.metadata.name == failed.metadata.name)
        .unwrap();
    assert_eq!(failed.phase(), DeploymentPhase::Failed);
    let status = failed.status.as_ref().unwrap();
    let progressing = find_condition(&status.conditions, conditions::PROGRESSING).unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some(conditions::INSTANCE_FAILED)
    );
    let reverted = find_condition(&status.conditions, conditions::REVERTED).unwrap();
    assert!(reverted.is_true());
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("exited with code 1") && m.contains("rolled back")),
        "{status:?}"
    );
    let revert = deployments
        .iter()
        .find(|d| d.spec.reverts.as_deref() == Some(failed.metadata.name_str()))
        .expect("the rollback's deployment names the failed one");
    assert_eq!(revert.phase(), DeploymentPhase::Succeeded);
    let events = list::<Event>(harness.store.as_ref(), "/registry/events/default/").await;
    let event = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("DeploymentReverted"))
        .expect("a DeploymentReverted Event");
    assert_eq!(event.involved_object.name.as_deref(), Some("web"));
    let versions = list::<AppVersion>(harness.store.as_ref(), "/registry/appversions/").await;
    assert!(
        versions
            .iter()
            .any(|v| v.spec.revision == 3 && v.spec.change.as_deref() == Some("AutoReverted"))
    );
}

#[tokio::test]
async fn without_auto_revert_the_deadline_fails_the_deployment_and_leaves_the_app() {
    let harness = Harness::start().await;
    let upgrade = UpgradeStrategy {
        minimum_health_capacity: Some(1.0),
        maximum_over_capacity: Some(0.5),
        progress_deadline_seconds: Some(1),
        ..UpgradeStrategy::default()
    };
    harness
        .create_app("web", with_upgrade(spec(2), upgrade))
        .await;
    harness.converged("web", 2).await;
    harness.held.lock().unwrap().push("web".into());
    harness
        .update_app("web", |app| app.spec.cmd = Some("sleep 2000".into()))
        .await;
    let update = running_deployment(&harness, "web").await;
    eventually("the deployment failed", || async {
        harness.deployments_of("web").await.iter().any(|d| {
            d.metadata.name == update.metadata.name && d.phase() == DeploymentPhase::Failed
        })
    })
    .await;
    let failed = harness
        .deployments_of("web")
        .await
        .into_iter()
        .find(|d| d.metadata.name == update.metadata.name)
        .unwrap();
    let status = failed.status.unwrap();
    let progressing = find_condition(&status.conditions, conditions::PROGRESSING).unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some(conditions::PROGRESS_DEADLINE_EXCEEDED)
    );
    assert!(find_condition(&status.conditions, conditions::REVERTED).is_none());
    let app = harness.app("web").await.unwrap();
    assert_eq!(app.spec.cmd.as_deref(), Some("sleep 2000"), "left as it is");
    assert_eq!(app.status.unwrap().revision, Some(2));
    let events = list::<Event>(harness.store.as_ref(), "/registry/events/default/").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("DeploymentFailed"))
    );
}
