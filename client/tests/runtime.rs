//! Tests of the watcher/reflector/controller runtime through its public API, on an in-memory
//! `Source` fake that can fail lists and watches, drop streams and expire revisions. Time is
//! paused (`start_paused`), so every delay is virtual: the tests are deterministic and fast.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use pacer_client::runtime::backoff::BackoffConfig;
use pacer_client::runtime::source::EventStream;
use pacer_client::runtime::watcher::Event;
use pacer_client::runtime::{
    Action, Controller, ControllerConfig, ObjectRef, Source, SourceError, SourceEvent, SourceList,
    Store, Writer, reflector, watcher,
};
use pacer_schemas::meta::OwnerReference;
use pacer_schemas::{App, Instance, ObjectMeta, Resource};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// The fake source
// ---------------------------------------------------------------------------------------------

/// A call the fake received.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    List,
    Watch(String),
}

enum Msg<K> {
    Event(SourceEvent<K>),
    Fail,
    Expire,
}

struct FakeState<K> {
    objects: BTreeMap<ObjectRef, K>,
    revision: u64,
    /// Every change with its revision, from `compacted` on.
    history: Vec<(u64, SourceEvent<K>)>,
    compacted: u64,
    watches: Vec<mpsc::UnboundedSender<Msg<K>>>,
    failing_lists: u32,
    failing_watch_starts: u32,
    calls: Vec<(Call, Instant)>,
}

/// An in-memory source: a map of objects, a revision counter, the change history, and one
/// channel per running watch.
struct Fake<K> {
    state: Arc<Mutex<FakeState<K>>>,
}

impl<K> Clone for Fake<K> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
        }
    }
}

impl<K: Resource> Fake<K> {
    fn new(objects: impl IntoIterator<Item = K>) -> Self {
        let fake = Self {
            state: Arc::new(Mutex::new(FakeState {
                objects: BTreeMap::new(),
                revision: 0,
                history: Vec::new(),
                compacted: 0,
                watches: Vec::new(),
                failing_lists: 0,
                failing_watch_starts: 0,
                calls: Vec::new(),
            })),
        };
        for object in objects {
            fake.apply(object);
        }
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState<K>> {
        self.state.lock().unwrap()
    }

    /// Creates or updates `object`, at a new revision.
    fn apply(&self, mut object: K) {
        let mut state = self.lock();
        state.revision += 1;
        object.meta_mut().resource_version = Some(state.revision.to_string());
        let key = ObjectRef::from_obj(&object);
        let event = if state.objects.insert(key, object.clone()).is_some() {
            SourceEvent::Modified(object)
        } else {
            SourceEvent::Added(object)
        };
        state.publish(event);
    }

    /// Deletes the object with `key`, if any.
    fn delete(&self, key: &ObjectRef) {
        let mut state = self.lock();
        let Some(mut object) = state.objects.remove(key) else {
            return;
        };
        state.revision += 1;
        object.meta_mut().resource_version = Some(state.revision.to_string());
        state.publish(SourceEvent::Deleted(object));
    }

    /// Other kinds were written: the revision moves on, and running watches get a bookmark.
    fn bookmark(&self, revisions: u64) {
        let mut state = self.lock();
        state.revision += revisions;
        let bookmark = state.revision.to_string();
        state.send(|| Msg::Event(SourceEvent::Bookmark(bookmark.clone())));
    }

    /// Forgets history up to now: watches from older revisions are `Expired`.
    fn compact(&self) {
        let mut state = self.lock();
        state.compacted = state.revision;
        state.history.clear();
    }

    /// Ends every running watch stream (a dropped connection).
    fn drop_watches(&self) {
        self.lock().watches.clear();
    }

    /// Running watches fail with an error (then end).
    fn fail_watches(&self) {
        let mut state = self.lock();
        state.send(|| Msg::Fail);
        state.watches.clear();
    }

    /// Running watches report `Expired` (then end).
    fn expire_watches(&self) {
        let mut state = self.lock();
        state.send(|| Msg::Expire);
        state.watches.clear();
    }

    fn fail_next_lists(&self, n: u32) {
        self.lock().failing_lists = n;
    }

    fn fail_next_watch_starts(&self, n: u32) {
        self.lock().failing_watch_starts = n;
    }

    fn calls(&self) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .map(|(call, _)| call.clone())
            .collect()
    }

    fn call_times(&self, which: &Call) -> Vec<Instant> {
        let state = self.lock();
        state
            .calls
            .iter()
            .filter(|(call, _)| call == which)
            .map(|(_, at)| *at)
            .collect()
    }

    fn objects(&self) -> BTreeMap<ObjectRef, K> {
        self.lock().objects.clone()
    }
}

impl<K: Resource> FakeState<K> {
    fn publish(&mut self, event: SourceEvent<K>) {
        self.history.push((self.revision, event.clone()));
        self.send(|| Msg::Event(event.clone()));
    }

    fn send(&mut self, message: impl Fn() -> Msg<K>) {
        self.watches.retain(|watch| watch.send(message()).is_ok());
    }
}

#[async_trait]
impl<K: Resource> Source<K> for Fake<K> {
    async fn list(&self) -> Result<SourceList<K>, SourceError> {
        let mut state = self.lock();
        state.calls.push((Call::List, Instant::now()));
        if state.failing_lists > 0 {
            state.failing_lists -= 1;
            return Err(SourceError::other("injected list failure"));
        }
        Ok(SourceList {
            items: state.objects.values().cloned().collect(),
            resource_version: state.revision.to_string(),
        })
    }

    async fn watch(&self, resource_version: &str) -> Result<EventStream<K>, SourceError> {
        let mut state = self.lock();
        state
            .calls
            .push((Call::Watch(resource_version.to_owned()), Instant::now()));
        if state.failing_watch_starts > 0 {
            state.failing_watch_starts -= 1;
            return Err(SourceError::other("injected watch failure"));
        }
        let from: u64 = resource_version.parse().map_err(SourceError::other)?;
        if from < state.compacted {
            return Err(SourceError::expired(resource_version, "compacted"));
        }
        let replay: Vec<Result<SourceEvent<K>, SourceError>> = state
            .history
            .iter()
            .filter(|(revision, _)| *revision > from)
            .map(|(_, event)| Ok(event.clone()))
            .collect();
        let (sender, receiver) = mpsc::unbounded_channel();
        state.watches.push(sender);
        let live = futures::stream::unfold(receiver, |mut receiver| async move {
            let item = match receiver.recv().await? {
                Msg::Event(event) => Ok(event),
                Msg::Fail => Err(SourceError::other("injected stream failure")),
                Msg::Expire => Err(SourceError::expired("", "compacted")),
            };
            Some((item, receiver))
        });
        Ok(futures::stream::iter(replay).chain(live).boxed())
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures and helpers
// ---------------------------------------------------------------------------------------------

/// Logs to the test's output (shown for failing tests), at `RUST_LOG` or `debug`.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

fn app(name: &str, team: &str) -> App {
    let mut metadata = ObjectMeta::named("default", name);
    metadata.labels = Some(BTreeMap::from([("team".to_owned(), team.to_owned())]));
    App {
        metadata,
        ..App::default()
    }
}

fn key(name: &str) -> ObjectRef {
    ObjectRef::new(name).within("default")
}

fn team_of(app: &App) -> Vec<String> {
    app.metadata
        .labels
        .iter()
        .flatten()
        .filter(|(label, _)| *label == "team")
        .map(|(_, team)| team.clone())
        .collect()
}

/// An instance with an owner reference of `owner_kind`/`owner`, and `spec.app`.
fn instance(name: &str, owner_kind: Option<&str>, owner: &str, spec_app: &str) -> Instance {
    let mut metadata = ObjectMeta::named("default", name);
    metadata.owner_references = owner_kind.map(|kind| {
        vec![OwnerReference {
            api_version: "pacer.dev/v1".to_owned(),
            kind: kind.to_owned(),
            name: owner.to_owned(),
            uid: format!("uid-{owner}"),
            controller: Some(true),
            block_owner_deletion: None,
        }]
    });
    let mut instance = Instance {
        metadata,
        ..Instance::default()
    };
    instance.spec.app = spec_app.to_owned();
    instance
}

fn fast_backoff() -> BackoffConfig {
    BackoffConfig::new(Duration::from_secs(1), Duration::from_secs(60)).jitter(0.0)
}

/// What a watcher event looks like in an expectation: `Init`, `InitApply a`, `Apply b`, …
fn describe<K: Resource>(item: &watcher::Result<Event<K>>) -> String {
    match item {
        Ok(Event::Init) => "Init".to_owned(),
        Ok(Event::InitApply(object)) => format!("InitApply {}", object.meta().name_str()),
        Ok(Event::InitDone) => "InitDone".to_owned(),
        Ok(Event::Apply(object)) => format!("Apply {}", object.meta().name_str()),
        Ok(Event::Delete(object)) => format!("Delete {}", object.meta().name_str()),
        Err(watcher::Error::InitialListFailed(_)) => "Err list".to_owned(),
        Err(watcher::Error::WatchStartFailed { .. }) => "Err watch start".to_owned(),
        Err(watcher::Error::WatchFailed(_)) => "Err watch".to_owned(),
    }
}

/// The next `n` items of `stream`, described; fails if they do not come within an hour of
/// virtual time.
async fn take<S, K>(stream: &mut S, n: usize) -> Vec<String>
where
    S: Stream<Item = watcher::Result<Event<K>>> + Unpin,
    K: Resource,
{
    let mut items = Vec::new();
    for _ in 0..n {
        let item = timeout(Duration::from_secs(3600), stream.next())
            .await
            .expect("the watcher stalled")
            .expect("the watcher ended");
        items.push(describe(&item));
    }
    items
}

/// Polls `stream` until it has nothing more to say for a (virtual) second.
async fn drain<S: Stream + Unpin>(stream: &mut S) {
    drain_for(stream, Duration::from_secs(1)).await;
}

/// Polls `stream` until it has been quiet for `quiet`. With `quiet` above the longest backoff,
/// a watcher that went quiet sits on a live watch, caught up.
async fn drain_for<S: Stream + Unpin>(stream: &mut S, quiet: Duration) {
    while timeout(quiet, stream.next()).await.is_ok() {}
}

fn watch_call(version: u64) -> Call {
    Call::Watch(version.to_string())
}

// ---------------------------------------------------------------------------------------------
// Watcher
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn watcher_lists_then_watches_and_resumes_from_the_last_version_seen() {
    init_logs();
    let fake = Fake::new([app("a", "x"), app("b", "x")]);
    let mut stream = Box::pin(watcher(fake.clone(), watcher::Config::default()));
    assert_eq!(
        take(&mut stream, 4).await,
        ["Init", "InitApply a", "InitApply b", "InitDone"]
    );

    fake.apply(app("c", "x")); // revision 3
    assert_eq!(take(&mut stream, 1).await, ["Apply c"]);

    // Resume after a drop from the last object's version; a change made while disconnected
    // is replayed, not lost.
    fake.drop_watches();
    fake.apply(app("d", "x")); // revision 4
    assert_eq!(take(&mut stream, 1).await, ["Apply d"]);

    // Resume from a bookmark's version.
    fake.bookmark(6); // revision 10
    fake.delete(&key("a")); // revision 11, delivered live
    assert_eq!(take(&mut stream, 1).await, ["Delete a"]);
    fake.bookmark(4); // revision 15
    drain(&mut stream).await;
    fake.drop_watches();
    fake.apply(app("e", "x")); // revision 16
    assert_eq!(take(&mut stream, 1).await, ["Apply e"]);

    assert_eq!(
        fake.calls(),
        [Call::List, watch_call(2), watch_call(3), watch_call(15)]
    );
}

#[tokio::test(start_paused = true)]
async fn watcher_relists_on_expiry_and_the_relist_drops_vanished_objects() {
    init_logs();
    let fake = Fake::new([app("a", "x"), app("b", "x")]);
    let mut stream = Box::pin(watcher(fake.clone(), watcher::Config::default()));
    assert_eq!(take(&mut stream, 4).await.len(), 4);

    // Disconnected while `a` is deleted and `c` created, and history is compacted: resuming
    // from 2 is Expired, so the watcher lists again.
    fake.drop_watches();
    fake.delete(&key("a"));
    fake.apply(app("c", "x"));
    fake.compact(); // compacted at 4
    assert_eq!(
        take(&mut stream, 4).await,
        ["Init", "InitApply b", "InitApply c", "InitDone"]
    );

    // Expired in the middle of a stream: the same.
    fake.apply(app("d", "x")); // 5
    assert_eq!(take(&mut stream, 1).await, ["Apply d"]);
    drain(&mut stream).await;
    fake.expire_watches();
    assert_eq!(
        take(&mut stream, 5).await,
        [
            "Init",
            "InitApply b",
            "InitApply c",
            "InitApply d",
            "InitDone"
        ]
    );
    drain(&mut stream).await;
    assert_eq!(
        fake.calls(),
        [
            Call::List,
            watch_call(2), // the first watch: already Expired
            Call::List,
            watch_call(4),
            Call::List,
            watch_call(5)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn watcher_backs_off_exponentially_on_errors_and_recovers() {
    init_logs();
    struct Case {
        name: &'static str,
        inject: fn(&Fake<App>),
        expected: &'static [&'static str],
        /// Which calls to time, and the expected gaps between them in seconds.
        timed: Call,
        gaps: &'static [u64],
    }
    let cases = [
        Case {
            name: "failing lists",
            inject: |fake| fake.fail_next_lists(3),
            expected: &[
                "Err list",
                "Err list",
                "Err list",
                "Init",
                "InitApply a",
                "InitDone",
            ],
            timed: Call::List,
            gaps: &[1, 2, 4],
        },
        Case {
            name: "failing watch starts",
            inject: |fake| fake.fail_next_watch_starts(4),
            expected: &[
                "Init",
                "InitApply a",
                "InitDone",
                "Err watch start",
                "Err watch start",
                "Err watch start",
                "Err watch start",
            ],
            timed: watch_call(1),
            gaps: &[1, 2, 4, 8],
        },
    ];
    for case in cases {
        let fake = Fake::new([app("a", "x")]);
        (case.inject)(&fake);
        let config = watcher::Config::default().backoff(fast_backoff());
        let mut stream = Box::pin(watcher(fake.clone(), config));
        let got = take(&mut stream, case.expected.len()).await;
        assert_eq!(got, case.expected, "{}", case.name);
        // The watcher keeps working afterwards.
        fake.apply(app("z", "x"));
        assert_eq!(take(&mut stream, 1).await, ["Apply z"], "{}", case.name);
        let times = fake.call_times(&case.timed);
        let gaps: Vec<u64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
        assert_eq!(gaps, case.gaps, "{}", case.name);
    }

    // A failing stream is reported and resumed from the same version, without a relist.
    let fake = Fake::new([app("a", "x")]);
    let mut stream = Box::pin(watcher(fake.clone(), watcher::Config::default()));
    assert_eq!(take(&mut stream, 3).await.len(), 3);
    drain(&mut stream).await; // the watch starts
    fake.fail_watches();
    assert_eq!(take(&mut stream, 1).await, ["Err watch"]);
    fake.apply(app("b", "x"));
    assert_eq!(take(&mut stream, 1).await, ["Apply b"]);
    assert_eq!(fake.calls(), [Call::List, watch_call(1), watch_call(1)]);
}

#[tokio::test(start_paused = true)]
async fn watcher_does_not_spin_on_a_source_that_closes_every_watch() {
    init_logs();
    /// A source whose watches end at once, delivering nothing.
    struct Closing(Fake<App>);
    #[async_trait]
    impl Source<App> for Closing {
        async fn list(&self) -> Result<SourceList<App>, SourceError> {
            self.0.list().await
        }
        async fn watch(&self, resource_version: &str) -> Result<EventStream<App>, SourceError> {
            let _ignored = self.0.watch(resource_version).await?;
            Ok(futures::stream::empty().boxed())
        }
    }
    let fake = Fake::new([app("a", "x")]);
    let config = watcher::Config::default()
        .backoff(BackoffConfig::new(Duration::from_secs(1), Duration::from_secs(8)).jitter(0.0));
    let mut stream = Box::pin(watcher(Closing(fake.clone()), config));
    assert_eq!(take(&mut stream, 3).await.len(), 3);
    let _ = timeout(Duration::from_secs(60), stream.next()).await;
    // Watches at 0, 1, 3, 7, 15, 23, 31, 39, 47 and 55 s: ten in a minute, not thousands.
    assert_eq!(fake.call_times(&watch_call(1)).len(), 10);
}

// ---------------------------------------------------------------------------------------------
// Reflector
// ---------------------------------------------------------------------------------------------

/// A small deterministic pseudo-random generator, so each seed is a reproducible scenario.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn assert_store_matches(store: &Store<App>, fake: &Fake<App>, context: &str) {
    let expected = fake.objects();
    let keys: Vec<ObjectRef> = expected.keys().cloned().collect();
    assert_eq!(store.keys(), keys, "{context}: keys");
    for (key, object) in &expected {
        assert_eq!(store.get(key).as_deref(), Some(object), "{context}: {key}");
    }
    let teams: BTreeSet<String> = expected.values().flat_map(team_of).collect();
    assert_eq!(
        store.index_values("team").unwrap(),
        teams.iter().cloned().collect::<Vec<_>>(),
        "{context}: index values"
    );
    for team in ["red", "green", "blue", "none"] {
        let mut by_index: Vec<String> = store
            .by_index("team", team)
            .unwrap()
            .iter()
            .map(|app| app.metadata.name_str().to_owned())
            .collect();
        by_index.sort();
        let want: Vec<String> = expected
            .values()
            .filter(|app| team_of(app).contains(&team.to_owned()))
            .map(|app| app.metadata.name_str().to_owned())
            .collect();
        assert_eq!(by_index, want, "{context}: team {team}");
    }
}

#[tokio::test(start_paused = true)]
async fn reflector_converges_to_the_source_through_drops_relists_and_errors() {
    init_logs();
    let teams = ["red", "green", "blue"];
    for seed in 1..=25_u64 {
        let mut random = Lcg(seed);
        let fake = Fake::new((0..4).map(|i| app(&format!("app-{i}"), teams[i % 3])));
        let writer = Writer::new().with_index("team", team_of);
        let store = writer.as_reader();
        let config = watcher::Config::default().backoff(fast_backoff());
        let mut stream = Box::pin(reflector(writer, watcher(fake.clone(), config)));
        assert!(!store.is_ready());
        for step in 0..80 {
            let name = format!("app-{}", random.below(8));
            match random.below(20) {
                0..=8 => fake.apply(app(&name, teams[random.below(3) as usize])),
                9..=12 => fake.delete(&key(&name)),
                13 => fake.drop_watches(),
                14 => {
                    fake.drop_watches();
                    fake.compact();
                }
                15 => fake.expire_watches(),
                16 => fake.fail_watches(),
                17 => fake.bookmark(2),
                18 => fake.fail_next_watch_starts(1),
                _ => fake.fail_next_lists(1),
            }
            if random.below(3) == 0 {
                drain(&mut stream).await;
                if store.is_ready() && step % 10 == 0 {
                    // Mid-way the cache may lag, but an index never disagrees with the
                    // objects it holds.
                    for team in teams {
                        for app in store.by_index("team", team).unwrap() {
                            assert_eq!(team_of(&app), [team], "seed {seed}");
                        }
                    }
                }
            }
        }
        drain_for(&mut stream, Duration::from_secs(120)).await;
        assert!(store.is_ready(), "seed {seed}");
        assert_store_matches(&store, &fake, &format!("seed {seed}"));
    }
}

#[tokio::test(start_paused = true)]
async fn store_is_ready_after_the_first_list_and_reports_unknown_indexes() {
    init_logs();
    let fake = Fake::new([app("a", "red")]);
    let writer = Writer::new().with_index("team", team_of);
    let store = writer.as_reader();
    let mut stream = Box::pin(reflector(writer, watcher(fake.clone(), Default::default())));
    let waiter = tokio::spawn({
        let store = store.clone();
        async move { store.wait_until_ready().await }
    });
    drain(&mut stream).await;
    waiter.await.unwrap().unwrap();
    assert_eq!(store.len(), 1);
    assert!(store.by_index("nope", "x").is_err());

    let dropped = Writer::<App>::new().as_reader();
    assert!(dropped.wait_until_ready().await.is_err());

    // A panicking index function leaves the object unindexed instead of taking the cache
    // down; an index registered late covers what is already cached.
    let mut writer =
        Writer::<App>::new()
            .with_index("team", team_of)
            .with_index("boom", |app: &App| {
                assert!(app.metadata.name_str() != "bad", "index function bug");
                vec!["ok".to_owned()]
            });
    let store = writer.as_reader();
    writer.apply_watcher_event(&Event::Init);
    writer.apply_watcher_event(&Event::InitApply(app("good", "red")));
    writer.apply_watcher_event(&Event::InitApply(app("bad", "red")));
    writer.apply_watcher_event(&Event::InitDone);
    assert_eq!(store.by_index("boom", "ok").unwrap().len(), 1);
    assert_eq!(store.by_index("team", "red").unwrap().len(), 2);
    let writer = writer.with_index("name", |app: &App| vec![app.metadata.name_str().to_owned()]);
    assert_eq!(store.by_index("name", "bad").unwrap().len(), 1);
    drop(writer);
}

// ---------------------------------------------------------------------------------------------
// Controller
// ---------------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
#[error("injected reconcile failure")]
struct Failure;

/// What reconciles did: start times per object, and whether two ever overlapped.
#[derive(Default)]
struct Recorder {
    runs: Mutex<Vec<(String, Instant)>>,
    in_flight: Mutex<HashSet<String>>,
    most_in_flight: AtomicUsize,
    overlaps: AtomicUsize,
}

impl Recorder {
    fn enter(&self, name: &str) {
        self.runs
            .lock()
            .unwrap()
            .push((name.to_owned(), Instant::now()));
        let mut in_flight = self.in_flight.lock().unwrap();
        if !in_flight.insert(name.to_owned()) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        self.most_in_flight
            .fetch_max(in_flight.len(), Ordering::SeqCst);
    }

    fn exit(&self, name: &str) {
        self.in_flight.lock().unwrap().remove(name);
    }

    fn runs_of(&self, name: &str) -> Vec<Instant> {
        let runs = self.runs.lock().unwrap();
        runs.iter()
            .filter(|(run, _)| run == name)
            .map(|(_, at)| *at)
            .collect()
    }

    fn count(&self, name: &str) -> usize {
        self.runs_of(name).len()
    }
}

/// Gaps between consecutive runs, in whole milliseconds.
fn gaps_ms(runs: &[Instant]) -> Vec<u128> {
    runs.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect()
}

/// A reconcile that records itself, takes `busy`, and returns `action`.
#[derive(Default)]
struct Behaviour {
    recorder: Recorder,
    busy: Duration,
    /// Results of the next runs of `web`, in order (`None` fails); `action` afterwards.
    script: Mutex<VecDeque<Option<Action>>>,
    action: Option<Action>,
    /// Names that panic on their first run.
    panic_once: Mutex<HashSet<String>>,
}

async fn reconcile(app: Arc<App>, ctx: Arc<Behaviour>) -> Result<Action, Failure> {
    let name = app.metadata.name_str().to_owned();
    ctx.recorder.enter(&name);
    sleep(ctx.busy).await;
    ctx.recorder.exit(&name);
    assert!(
        !ctx.panic_once.lock().unwrap().remove(&name),
        "reconcile bug for {name}"
    );
    let scripted = if name == "web" {
        ctx.script.lock().unwrap().pop_front()
    } else {
        None
    };
    match scripted {
        Some(Some(action)) => Ok(action),
        Some(None) => Err(Failure),
        None => Ok(ctx.action.unwrap_or_else(Action::await_change)),
    }
}

/// Runs `controller` on a task; returns its shutdown token and handle.
fn spawn_controller(
    controller: Controller<App>,
    ctx: Arc<Behaviour>,
    policy: fn(Arc<App>, &Failure, Arc<Behaviour>) -> Action,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let controller = controller.shutdown_on(shutdown.clone());
    let handle = tokio::spawn(controller.run(reconcile, policy, ctx));
    (shutdown, handle)
}

fn backoff_policy(_: Arc<App>, _: &Failure, _: Arc<Behaviour>) -> Action {
    Action::backoff()
}

fn quiet_config() -> ControllerConfig {
    ControllerConfig::default()
        .resync(None)
        .error_backoff(fast_backoff())
        .watcher(watcher::Config::default().backoff(fast_backoff()))
}

async fn stop(shutdown: CancellationToken, handle: tokio::task::JoinHandle<()>) {
    shutdown.cancel();
    timeout(Duration::from_secs(60), handle)
        .await
        .expect("the controller did not stop")
        .expect("the controller panicked");
}

#[tokio::test(start_paused = true)]
async fn controller_runs_a_key_once_for_a_burst_and_once_more_for_changes_during_a_run() {
    init_logs();
    let fake = Fake::new([app("web", "red")]);
    let ctx = Arc::new(Behaviour {
        busy: Duration::from_secs(10),
        ..Behaviour::default()
    });
    let controller = Controller::new(fake.clone(), quiet_config());
    let metrics = controller.metrics();
    let (shutdown, handle) = spawn_controller(controller, Arc::clone(&ctx), backoff_policy);

    sleep(Duration::from_secs(1)).await;
    assert_eq!(ctx.recorder.count("web"), 1);
    assert_eq!(metrics.snapshot().in_flight, 1);
    for i in 0..100 {
        fake.apply(app("web", if i % 2 == 0 { "red" } else { "blue" }));
    }
    sleep(Duration::from_secs(1)).await;
    assert_eq!(metrics.snapshot().queue_depth, 1, "one rerun pending");
    sleep(Duration::from_secs(60)).await;
    let runs = ctx.recorder.runs_of("web");
    assert_eq!(
        runs.len(),
        2,
        "a burst of 100 changes during a run is one more run"
    );
    assert_eq!(
        gaps_ms(&runs),
        [10_000],
        "the rerun starts as soon as the first ends"
    );
    assert_eq!(ctx.recorder.overlaps.load(Ordering::SeqCst), 0);
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.reconciles, 2);
    assert_eq!(snapshot.triggers, 101);
    assert_eq!(snapshot.queue_depth, 0);
    stop(shutdown, handle).await;
}

#[tokio::test(start_paused = true)]
async fn controller_bounds_concurrency_and_never_runs_one_key_twice_at_once() {
    init_logs();
    let names: Vec<String> = (0..6).map(|i| format!("app-{i}")).collect();
    let fake = Fake::new(names.iter().map(|name| app(name, "red")));
    let ctx = Arc::new(Behaviour {
        busy: Duration::from_millis(700),
        action: Some(Action::requeue(Duration::from_millis(300))),
        ..Behaviour::default()
    });
    let config = quiet_config().concurrency(2);
    let (shutdown, handle) = spawn_controller(
        Controller::new(fake.clone(), config),
        Arc::clone(&ctx),
        backoff_policy,
    );
    let mut random = Lcg(7);
    for _ in 0..200 {
        let name = &names[random.below(6) as usize];
        fake.apply(app(name, "red"));
        sleep(Duration::from_millis(random.below(200))).await;
    }
    stop(shutdown, handle).await;
    assert_eq!(ctx.recorder.overlaps.load(Ordering::SeqCst), 0);
    assert_eq!(ctx.recorder.most_in_flight.load(Ordering::SeqCst), 2);
    for name in &names {
        assert!(ctx.recorder.count(name) >= 5, "{name} starved");
    }
}

#[tokio::test(start_paused = true)]
async fn controller_requeues_after_the_asked_delay_and_resyncs() {
    init_logs();
    struct Case {
        name: &'static str,
        action: Action,
        resync: Option<Duration>,
        run_for: Duration,
        gaps_s: &'static [u64],
    }
    let cases = [
        Case {
            name: "requeue after 30 s",
            action: Action::requeue(Duration::from_secs(30)),
            resync: None,
            run_for: Duration::from_secs(100),
            gaps_s: &[30, 30, 30],
        },
        Case {
            name: "await change, resync every 60 s",
            action: Action::await_change(),
            resync: Some(Duration::from_secs(60)),
            run_for: Duration::from_secs(200),
            gaps_s: &[60, 60, 60],
        },
        Case {
            name: "await change, no resync",
            action: Action::await_change(),
            resync: None,
            run_for: Duration::from_secs(200),
            gaps_s: &[],
        },
    ];
    for case in cases {
        let fake = Fake::new([app("web", "red")]);
        let ctx = Arc::new(Behaviour {
            action: Some(case.action),
            ..Behaviour::default()
        });
        let config = quiet_config().resync(case.resync);
        let (shutdown, handle) = spawn_controller(
            Controller::new(fake.clone(), config),
            Arc::clone(&ctx),
            backoff_policy,
        );
        sleep(case.run_for).await;
        stop(shutdown, handle).await;
        let gaps: Vec<u64> = gaps_ms(&ctx.recorder.runs_of("web"))
            .into_iter()
            .map(|ms| {
                // The delay queue works in whole milliseconds.
                assert!(ms % 1000 <= 1, "{}: gap of {ms} ms", case.name);
                (ms / 1000) as u64
            })
            .collect();
        assert_eq!(gaps, case.gaps_s, "{}", case.name);
    }
}

#[tokio::test(start_paused = true)]
async fn controller_backs_off_errors_per_key_and_resets_on_success() {
    init_logs();
    struct Case {
        name: &'static str,
        policy: fn(Arc<App>, &Failure, Arc<Behaviour>) -> Action,
        /// `None` = fail, `Some(action)` = succeed with it.
        script: Vec<Option<Action>>,
        gaps_s: &'static [u64],
        failures: u64,
    }
    let requeue_10 = Some(Action::requeue(Duration::from_secs(10)));
    let cases = [
        Case {
            name: "backoff grows, resets after a success",
            policy: backoff_policy,
            script: vec![None, None, None, requeue_10, None, None, None],
            gaps_s: &[1, 2, 4, 10, 1, 2, 4],
            failures: 6,
        },
        Case {
            name: "the error policy's own delay",
            policy: |_, _, _| Action::requeue(Duration::from_secs(7)),
            script: vec![None, None, None],
            gaps_s: &[7, 7, 7],
            failures: 3,
        },
        Case {
            name: "the error policy gives up until a change",
            policy: |_, _, _| Action::await_change(),
            script: vec![None],
            gaps_s: &[],
            failures: 1,
        },
    ];
    for case in cases {
        let fake = Fake::new([app("web", "red"), app("other", "red")]);
        let ctx = Arc::new(Behaviour {
            script: Mutex::new(case.script.into()),
            ..Behaviour::default()
        });
        let controller = Controller::new(fake.clone(), quiet_config().concurrency(1));
        let metrics = controller.metrics();
        // Only `web` follows the script; `other` shows that backoff is per key.
        let (shutdown, handle) = spawn_controller(controller, Arc::clone(&ctx), case.policy);
        sleep(Duration::from_secs(120)).await;
        stop(shutdown, handle).await;
        let gaps: Vec<u64> = gaps_ms(&ctx.recorder.runs_of("web"))
            .into_iter()
            .map(|ms| (ms / 1000) as u64)
            .collect();
        assert_eq!(gaps, case.gaps_s, "{}", case.name);
        assert_eq!(metrics.snapshot().failures, case.failures, "{}", case.name);
        assert_eq!(ctx.recorder.count("other"), 1, "{}", case.name);
    }
}

#[tokio::test(start_paused = true)]
async fn controller_maps_owned_and_watched_objects_to_their_apps() {
    init_logs();
    let apps = Fake::new([app("web", "red"), app("api", "red")]);
    let owned = Fake::new([
        instance("web.1", Some("App"), "web", "web"),
        instance("web.2", Some("Deployment"), "web", ""),
        instance("orphan", None, "", ""),
    ]);
    let related = Fake::new([instance("api.1", None, "", "api")]);
    let ctx = Arc::new(Behaviour::default());
    let controller = Controller::new(apps.clone(), quiet_config())
        .owns(owned.clone(), watcher::Config::default())
        .watches(
            related.clone(),
            watcher::Config::default(),
            |instance: &Instance| {
                let namespace = instance.metadata.namespace_str().to_owned();
                (!instance.spec.app.is_empty())
                    .then(|| ObjectRef::new(instance.spec.app.clone()).within(namespace))
            },
        );
    let (shutdown, handle) = spawn_controller(controller, Arc::clone(&ctx), backoff_policy);
    sleep(Duration::from_secs(10)).await;
    let runs = |ctx: &Behaviour| (ctx.recorder.count("web"), ctx.recorder.count("api"));
    let settled = runs(&ctx);
    assert!(settled.0 >= 1 && settled.1 >= 1, "{settled:?}");

    struct Step {
        name: &'static str,
        change: Box<dyn Fn()>,
        /// Extra runs of (web, api).
        expect: (usize, usize),
    }
    let steps = [
        Step {
            name: "an owned instance changes: its App",
            change: Box::new({
                let owned = owned.clone();
                move || owned.apply(instance("web.1", Some("App"), "web", "web"))
            }),
            expect: (1, 0),
        },
        Step {
            name: "an owned instance is deleted: its App",
            change: Box::new({
                let owned = owned.clone();
                move || owned.delete(&key("web.1"))
            }),
            expect: (1, 0),
        },
        Step {
            name: "owned by another kind: nothing",
            change: Box::new({
                let owned = owned.clone();
                move || owned.apply(instance("web.2", Some("Deployment"), "web", ""))
            }),
            expect: (0, 0),
        },
        Step {
            name: "no owner: nothing",
            change: Box::new({
                let owned = owned.clone();
                move || owned.apply(instance("orphan", None, "", ""))
            }),
            expect: (0, 0),
        },
        Step {
            name: "a watched instance changes: the mapped App",
            change: Box::new({
                let related = related.clone();
                move || related.apply(instance("api.1", None, "", "api"))
            }),
            expect: (0, 1),
        },
        Step {
            name: "an owned instance of a missing App: nothing (and no crash)",
            change: Box::new({
                let owned = owned.clone();
                move || owned.apply(instance("gone.1", Some("App"), "gone", ""))
            }),
            expect: (0, 0),
        },
    ];
    for step in steps {
        let before = runs(&ctx);
        (step.change)();
        sleep(Duration::from_secs(5)).await;
        let after = runs(&ctx);
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            step.expect,
            "{}",
            step.name
        );
    }
    stop(shutdown, handle).await;
}

#[tokio::test(start_paused = true)]
async fn controller_survives_a_panicking_reconcile() {
    init_logs();
    let fake = Fake::new([app("bad", "red"), app("good", "red")]);
    let ctx = Arc::new(Behaviour {
        panic_once: Mutex::new(HashSet::from(["bad".to_owned()])),
        ..Behaviour::default()
    });
    let controller = Controller::new(fake.clone(), quiet_config());
    let metrics = controller.metrics();
    let (shutdown, handle) = spawn_controller(controller, Arc::clone(&ctx), backoff_policy);
    sleep(Duration::from_secs(10)).await;
    let gaps_s: Vec<u128> = gaps_ms(&ctx.recorder.runs_of("bad"))
        .into_iter()
        .map(|ms| ms / 1000)
        .collect();
    assert_eq!(gaps_s, [1], "retried once, after the key's backoff");
    let snapshot = metrics.snapshot();
    assert_eq!((snapshot.panics, snapshot.failures), (1, 1));

    // Still running: changes are reconciled.
    fake.apply(app("good", "blue"));
    sleep(Duration::from_secs(1)).await;
    assert_eq!(ctx.recorder.count("good"), 2);
    assert!(!handle.is_finished());
    stop(shutdown, handle).await;
}

#[tokio::test(start_paused = true)]
async fn controller_skips_deleted_objects_and_keeps_working_through_watch_errors() {
    init_logs();
    let fake = Fake::new([app("web", "red")]);
    let ctx = Arc::new(Behaviour {
        action: Some(Action::requeue(Duration::from_secs(5))),
        ..Behaviour::default()
    });
    let controller = Controller::new(fake.clone(), quiet_config());
    let metrics = controller.metrics();
    let store = controller.store();
    let (shutdown, handle) = spawn_controller(controller, Arc::clone(&ctx), backoff_policy);
    sleep(Duration::from_secs(1)).await;
    assert_eq!(ctx.recorder.count("web"), 1);

    // Deleted before its requeue: never reconciled again.
    fake.delete(&key("web"));
    sleep(Duration::from_secs(30)).await;
    assert_eq!(ctx.recorder.count("web"), 1);
    assert!(store.is_empty());

    // Watch errors are counted; an object created after a relist is reconciled.
    fake.fail_next_lists(2);
    fake.drop_watches();
    fake.apply(app("api", "red"));
    fake.compact();
    sleep(Duration::from_secs(30)).await;
    assert!(ctx.recorder.count("api") >= 1);
    assert_eq!(metrics.snapshot().watch_errors, 2);
    stop(shutdown, handle).await;
}

#[tokio::test(start_paused = true)]
async fn controller_shutdown_waits_for_running_reconciles_then_aborts_them() {
    init_logs();
    // (reconcile takes, grace, shutdown takes in ms): it is stopped 10 ms into the reconcile.
    for (busy, grace, waited_ms) in [(5, 30, 4990), (600, 10, 10_000)] {
        let fake = Fake::new([app("web", "red")]);
        let ctx = Arc::new(Behaviour {
            busy: Duration::from_secs(busy),
            ..Behaviour::default()
        });
        let config = quiet_config().shutdown_grace(Duration::from_secs(grace));
        let (shutdown, handle) = spawn_controller(
            Controller::new(fake, config),
            Arc::clone(&ctx),
            backoff_policy,
        );
        sleep(Duration::from_millis(10)).await;
        let start = Instant::now();
        stop(shutdown, handle).await;
        assert_eq!(
            start.elapsed().as_millis(),
            waited_ms,
            "busy {busy} s, grace {grace} s"
        );
    }
}
