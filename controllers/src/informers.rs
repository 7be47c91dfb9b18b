//! One shared cache per kind for every controller of a process: [`Informers`].
//!
//! Without it, each controller listed and watched every kind it reads on each leadership term,
//! so one `pacer server` decoded, cloned and cached every Instance change five or six times.
//! An [`Informers`] handle (cheap to clone, created once per process in [`run`](crate::run))
//! starts one runtime watcher + reflector over a [`StoreSource`] per kind — or per kind and
//! namespace, e.g. the node Leases of `pacer-node-lease` — the first time a controller asks
//! for it, and keeps it for as long as any handle lives, whoever leads. This follows
//! kube-runtime's shared reflector: one writer, any number of subscribers.
//!
//! A subscriber gets from its [`Informer`]:
//! - the reflector's [`Store`](reflector::Store) reader (the cached objects are shared `Arc`s;
//!   no per-controller copy), with [`Informer::wait_until_ready`]; indexes are added once per
//!   kind by name ([`Informer::with_index`]);
//! - [`Applied`]: the newest store revision the cache has applied — the one place a controller
//!   learns whether its cache shows its own last write ([`caught_up`]);
//! - [`Changes`]: a bounded broadcast of [`Change`] notices sharing the cache's `Arc`s, for
//!   wake-ups and triggers. The informer never waits for a subscriber: one that falls more
//!   than [`InformersConfig::capacity`] notices behind gets [`Change::Resync`] (and the later
//!   notices), as it does after a relist — every round-based controller recomputes from its
//!   caches, so a resync is a full round.
//!
//! The informer applies a batch of changes to the cache — what the watch has handed out, which
//! always ends at a revision boundary — then advances [`Applied`], then sends the notices: a
//! subscriber that reads the cache on an `Applied` notice or after a [`caught_up`] sees every
//! change of that revision (one transaction's writes are all there or none is). A deletion alone is announced *before* the cache drops the object, so a subscriber
//! that reads the cache and then drains its notices ([`Changes::try_next`]) has been told of
//! every deletion that read reflects (the offer broker needs this to tell deletions it did not
//! make).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use pacer_client::runtime::Writer;
use pacer_client::runtime::reflector::{self, ObjectRef, WriterDropped};
use pacer_client::runtime::watcher::{self, Event, watcher};
use pacer_schemas::Resource;
use pacer_store::{Revision, Store};
use tokio::sync::{broadcast, watch};

use crate::rounds::AbortOnDrop;
use crate::store_source::{StoreSource, object_revision};

/// How the shared informers watch and how far a subscriber may fall behind.
#[derive(Clone, Debug)]
#[must_use]
pub struct InformersConfig {
    /// Retry policy of every watcher.
    pub watcher: watcher::Config,
    /// Change notices kept per informer for slow subscribers; one further behind gets a
    /// [`Change::Resync`]. Each kept notice holds an object version alive, so this bounds that
    /// memory too.
    pub capacity: usize,
}

impl Default for InformersConfig {
    /// The watcher's default retries; 4,096 notices per informer (a round-based controller
    /// that drains its notices once per round, like the offer broker, stays within that while
    /// a thousand nodes' offers are made and taken).
    fn default() -> Self {
        Self {
            watcher: watcher::Config::default(),
            capacity: 4096,
        }
    }
}

/// The shared informers of one process (see the module docs). Clones share the informers.
#[derive(Clone)]
pub struct Informers {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: InformersConfig,
    /// Per (kind, registry prefix): an `Arc<Shared<K>>`.
    started: Mutex<HashMap<(TypeId, String), Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Informers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let started: Vec<String> = lock(&self.inner.started)
            .keys()
            .map(|(_, prefix)| prefix.clone())
            .collect();
        f.debug_struct("Informers")
            .field("started", &started)
            .finish_non_exhaustive()
    }
}

impl Informers {
    /// Informers over `store`, with the default [`InformersConfig`]. Nothing is watched until
    /// a controller asks for a kind.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_config(store, InformersConfig::default())
    }

    /// Informers over `store`, configured.
    pub fn with_config(store: Arc<dyn Store>, config: InformersConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                started: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The informer of every object of kind `K`, started on first use (within a Tokio
    /// runtime).
    pub fn informer<K: Resource>(&self) -> Informer<K> {
        self.start(StoreSource::<K>::new(Arc::clone(&self.inner.store)))
    }

    /// The informer of the objects of kind `K` in `namespace` only (all of them for a
    /// cluster-scoped kind), started on first use (within a Tokio runtime).
    pub fn namespaced<K: Resource>(&self, namespace: &str) -> Informer<K> {
        self.start(StoreSource::<K>::namespaced(
            Arc::clone(&self.inner.store),
            namespace,
        ))
    }

    fn start<K: Resource>(&self, source: StoreSource<K>) -> Informer<K> {
        let mut started = lock(&self.inner.started);
        let key = (TypeId::of::<K>(), source.prefix().to_owned());
        if let Some(shared) = started.get(&key)
            && let Ok(shared) = Arc::clone(shared).downcast::<Shared<K>>()
        {
            return Informer { shared };
        }
        let shared = Arc::new(Shared::start(source, &self.inner.config));
        tracing::debug!(kind = K::KIND, prefix = %shared.prefix, "informer started");
        started.insert(key, Arc::clone(&shared) as Arc<dyn Any + Send + Sync>);
        Informer { shared }
    }
}

/// One kind's (or one namespace's) shared cache, for its subscribers. Clones share it.
pub struct Informer<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K> std::fmt::Debug for Informer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informer")
            .field("prefix", &self.shared.prefix)
            .field("applied", &*self.shared.applied.borrow())
            .finish_non_exhaustive()
    }
}

struct Shared<K> {
    prefix: String,
    /// Also held by the task; locked to apply an event or to add an index.
    writer: Arc<Mutex<Writer<K>>>,
    reader: reflector::Store<K>,
    applied: watch::Receiver<Revision>,
    changes: broadcast::Sender<Change<K>>,
    /// The watcher + reflector task; it stops with the last handle.
    _task: AbortOnDrop,
}

impl<K: Resource> Shared<K> {
    fn start(source: StoreSource<K>, config: &InformersConfig) -> Self {
        let prefix = source.prefix().to_owned();
        let writer = Arc::new(Mutex::new(Writer::<K>::new()));
        let reader = lock(&writer).as_reader();
        let (applied_tx, applied) = watch::channel(0);
        let (changes, _) = broadcast::channel(config.capacity.max(1));
        let task = tokio::spawn(drive(
            watcher(source, config.watcher.clone()),
            Arc::clone(&writer),
            reader.clone(),
            applied_tx,
            changes.clone(),
        ));
        Self {
            prefix,
            writer,
            reader,
            applied,
            changes,
            _task: AbortOnDrop(task),
        }
    }
}

/// Most events applied before the applied revision and the notices are published; a batch
/// that reaches it runs on to the end of its last revision.
const BATCH: usize = 1024;

/// Applies the watcher's events to the cache, then advances the applied revision, then
/// notifies the subscribers — a batch at a time: whatever the watch has already handed out,
/// so that the applied revision never names a revision of which some events are still to be
/// applied. (Both stores hand out a revision's events together — one transaction's writes are
/// one etcd watch response, one embedded-store log entry — so the events ready at once end at
/// a revision boundary; only an etcd revision fragmented over several responses could be cut,
/// and our transactions stay far below that size.)
async fn drive<K: Resource>(
    events: impl futures::Stream<Item = watcher::Result<Event<K>>>,
    writer: Arc<Mutex<Writer<K>>>,
    reader: reflector::Store<K>,
    applied: watch::Sender<Revision>,
    changes: broadcast::Sender<Change<K>>,
) {
    let mut events = std::pin::pin!(events);
    // The newest revision of the list being received (applied at its `InitDone`).
    let mut listed: Revision = 0;
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(event) => event,
            None => match events.next().await {
                Some(event) => event,
                None => break,
            },
        };
        let mut batch = vec![first];
        let mut ended = false;
        loop {
            match events.next().now_or_never() {
                Some(Some(event)) => {
                    let boundary = batch.last().is_none_or(|last| {
                        let (last, next) = (event_revision(last), event_revision(&event));
                        last.is_none() || next.is_none() || last != next
                    });
                    if batch.len() >= BATCH && boundary {
                        carried = Some(event);
                        break;
                    }
                    batch.push(event);
                }
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        let mut newest: Option<Revision> = None;
        // The batch's `Applied` notices, sent once the batch is applied; one whose object a
        // later event of the batch deleted is dropped (its `Deleted` went out first, and a
        // subscriber must not see the object come back).
        let mut notices: Vec<(Option<ObjectRef>, Change<K>)> = Vec::new();
        for event in batch {
            // The watcher logs and retries its own errors.
            let Ok(event) = event else { continue };
            if let Event::Delete(object) = &event {
                let deleted = ObjectRef::from_obj(object);
                notices.retain(|(object, _)| object.as_ref() != Some(&deleted));
                // Before the cache drops it: a subscriber that drains its notices after
                // reading the cache has seen every deletion that read reflects.
                let _ = changes.send(Change::Deleted(Arc::new(object.clone())));
            }
            lock(&writer).apply_watcher_event(&event);
            let (revision, change) = match event {
                Event::Init => {
                    listed = 0;
                    (None, None)
                }
                Event::InitApply(object) => {
                    listed = listed.max(object_revision(&object).unwrap_or(0));
                    (None, None)
                }
                Event::InitDone => (Some(listed), Some((None, Change::Resync))),
                Event::Apply(object) => {
                    let revision = object_revision(&object);
                    let key = ObjectRef::from_obj(&object);
                    // The cache's own Arc, so subscribers share it.
                    let cached = reader.get(&key).unwrap_or_else(|| Arc::new(object));
                    (revision, Some((Some(key), Change::Applied(cached))))
                }
                Event::Delete(object) => (object_revision(&object), None),
            };
            newest = newest.max(revision);
            notices.extend(change);
        }
        if let Some(revision) = newest {
            applied.send_if_modified(|applied| {
                let newer = revision > *applied;
                if newer {
                    *applied = revision;
                }
                newer
            });
        }
        for (_, change) in notices {
            // Fails only while nobody subscribes.
            let _ = changes.send(change);
        }
        if ended {
            break;
        }
    }
}

/// The store revision a watcher event carries (none for the list's markers and errors).
fn event_revision<K: Resource>(event: &watcher::Result<Event<K>>) -> Option<Revision> {
    match event {
        Ok(Event::Apply(object) | Event::Delete(object) | Event::InitApply(object)) => {
            object_revision(object)
        }
        Ok(Event::Init | Event::InitDone) | Err(_) => None,
    }
}

impl<K: Resource> Informer<K> {
    /// The cache (a cheap reader of the shared objects).
    pub fn store(&self) -> &reflector::Store<K> {
        &self.shared.reader
    }

    /// Waits until the first list has been applied.
    pub async fn wait_until_ready(&self) -> Result<(), WriterDropped> {
        self.shared.reader.wait_until_ready().await
    }

    /// The registry prefix this informer watches (`/registry/<plural>/[<namespace>/]`).
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// The newest store revision the cache has applied, to wait on.
    pub fn applied(&self) -> Applied {
        Applied {
            prefix: self.shared.prefix.clone(),
            revision: self.shared.applied.clone(),
        }
    }

    /// The change notices from now on.
    pub fn subscribe(&self) -> Changes<K> {
        Changes {
            receiver: self.shared.changes.subscribe(),
        }
    }

    /// Registers index `name` on the shared cache (see [`Writer::with_index`]), unless this
    /// kind already has an index of that name: an index name means one thing per kind.
    #[must_use]
    pub fn with_index<F>(self, name: &str, index: F) -> Self
    where
        F: Fn(&K) -> Vec<String> + Send + Sync + 'static,
    {
        {
            let mut writer = lock(&self.shared.writer);
            if self.shared.reader.index_values(name).is_err() {
                let unindexed = std::mem::take(&mut *writer);
                *writer = unindexed.with_index(name, index);
            }
        }
        self
    }

    /// Whether `self` and `other` are the same informer (one watch, one cache).
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

/// A change an [`Informer`] applied, as its subscribers see it.
#[derive(Debug)]
pub enum Change<K> {
    /// An object was created or changed: its new state (the cache's `Arc`).
    Applied(Arc<K>),
    /// An object was deleted: its last state. Sent just before the cache drops it.
    Deleted(Arc<K>),
    /// Anything may have changed: the cache was (re)listed, or this subscriber fell behind and
    /// missed notices. Look at the whole cache.
    Resync,
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Self::Applied(object) => Self::Applied(Arc::clone(object)),
            Self::Deleted(object) => Self::Deleted(Arc::clone(object)),
            Self::Resync => Self::Resync,
        }
    }
}

/// One subscriber's notices from an [`Informer`].
pub struct Changes<K> {
    receiver: broadcast::Receiver<Change<K>>,
}

impl<K> std::fmt::Debug for Changes<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field("queued", &self.receiver.len())
            .finish()
    }
}

impl<K: Resource> Changes<K> {
    /// The next notice; [`Change::Resync`] after falling behind; `None` once the informer
    /// stopped.
    pub async fn next(&mut self) -> Option<Change<K>> {
        match self.receiver.recv().await {
            Ok(change) => Some(change),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(kind = K::KIND, missed, "subscriber fell behind; resync");
                Some(Change::Resync)
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next notice if one is queued, without waiting ([`Change::Resync`] after falling
    /// behind); `None` when none is (or the informer stopped).
    pub fn try_next(&mut self) -> Option<Change<K>> {
        match self.receiver.try_recv() {
            Ok(change) => Some(change),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                tracing::debug!(kind = K::KIND, missed, "subscriber fell behind; resync");
                Some(Change::Resync)
            }
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => {
                None
            }
        }
    }

    /// The notices as a stream.
    pub fn into_stream(self) -> BoxStream<'static, Change<K>> {
        futures::stream::unfold(self, |mut changes| async move {
            changes.next().await.map(|change| (change, changes))
        })
        .boxed()
    }
}

/// The newest store revision one informer's cache has applied (not generic, so a controller
/// can wait on several kinds at once). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Applied {
    prefix: String,
    revision: watch::Receiver<Revision>,
}

impl Applied {
    /// The registry prefix of the informer.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The newest revision applied so far.
    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Waits until the cache has applied `revision` (or a later one); `false` if the informer
    /// stopped first.
    pub async fn wait_for(&self, revision: Revision) -> bool {
        let mut applied = self.revision.clone();
        applied
            .wait_for(|applied| *applied >= revision)
            .await
            .is_ok()
    }
}

/// Waits up to `timeout` until, for every prefix in `written`, the informer of `applied` with
/// that prefix has applied at least its revision; whether they all did (a prefix without an
/// informer among `applied` never does). A controller calls it before a round with the
/// revisions of its last writes, so that it does not decide again on state it already changed.
pub async fn caught_up(
    applied: &[Applied],
    written: &HashMap<String, Revision>,
    timeout: Duration,
) -> bool {
    let all = async {
        for (prefix, revision) in written {
            let Some(informer) = applied.iter().find(|applied| applied.prefix == *prefix) else {
                return false;
            };
            if !informer.wait_for(*revision).await {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(timeout, all).await.unwrap_or(false)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only the reflector's own code runs under these locks (index functions contain their
    // panics), so a poisoned lock still guards a consistent value.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use pacer_schemas::{Lease, Node};
    use pacer_store::embedded::EmbeddedStore;
    use pacer_store::{LeaseId, ListOptions, ListPage, Txn, TxnOutcome, WatchStream};
    use serde_json::json;

    use super::*;
    use crate::store_source::{registry_key, registry_prefix};

    /// The embedded store, counting the watches started per prefix.
    #[derive(Debug)]
    struct CountingStore {
        inner: EmbeddedStore,
        watches: Mutex<HashMap<String, usize>>,
        lists: AtomicUsize,
    }

    impl CountingStore {
        fn watches(&self, prefix: &str) -> usize {
            lock(&self.watches).get(prefix).copied().unwrap_or(0)
        }
    }

    #[async_trait]
    impl Store for CountingStore {
        async fn get(&self, key: &str) -> pacer_store::Result<Option<pacer_store::KeyValue>> {
            self.inner.get(key).await
        }
        async fn list(&self, prefix: &str, options: &ListOptions) -> pacer_store::Result<ListPage> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            self.inner.list(prefix, options).await
        }
        async fn txn(&self, txn: Txn) -> pacer_store::Result<TxnOutcome> {
            self.inner.txn(txn).await
        }
        async fn watch(&self, prefix: &str, after: Revision) -> pacer_store::Result<WatchStream> {
            *lock(&self.watches).entry(prefix.to_owned()).or_default() += 1;
            self.inner.watch(prefix, after).await
        }
        async fn current_revision(&self) -> pacer_store::Result<Revision> {
            self.inner.current_revision().await
        }
        async fn compact(&self, revision: Revision) -> pacer_store::Result<()> {
            self.inner.compact(revision).await
        }
        async fn lease_grant(&self, ttl_seconds: i64) -> pacer_store::Result<LeaseId> {
            self.inner.lease_grant(ttl_seconds).await
        }
        async fn lease_keep_alive(&self, lease: LeaseId) -> pacer_store::Result<i64> {
            self.inner.lease_keep_alive(lease).await
        }
        async fn lease_revoke(&self, lease: LeaseId) -> pacer_store::Result<()> {
            self.inner.lease_revoke(lease).await
        }
        async fn lease_time_to_live(&self, lease: LeaseId) -> pacer_store::Result<i64> {
            self.inner.lease_time_to_live(lease).await
        }
    }

    fn counting_store() -> (tempfile::TempDir, Arc<CountingStore>) {
        let dir = tempfile::tempdir().unwrap();
        let inner = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
        let store = Arc::new(CountingStore {
            inner,
            watches: Mutex::default(),
            lists: AtomicUsize::new(0),
        });
        (dir, store)
    }

    fn node_json(name: &str, rack: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "pacer.dev/v1",
            "kind": "Node",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "generation": 1},
            "spec": {"attributes": {"rack": rack}},
        }))
        .unwrap()
    }

    fn lease_json(namespace: &str, name: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "pacer.dev/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}")},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40},
        }))
        .unwrap()
    }

    async fn put_node(store: &dyn Store, name: &str, rack: &str) -> Revision {
        let key = registry_key::<Node>(None, name);
        match store.get(&key).await.unwrap() {
            Some(kv) => store
                .update(&key, node_json(name, rack), kv.mod_revision, None)
                .await
                .unwrap(),
            None => store
                .create(&key, node_json(name, rack), None)
                .await
                .unwrap(),
        }
    }

    async fn next<K: Resource>(changes: &mut Changes<K>) -> Change<K> {
        tokio::time::timeout(Duration::from_secs(10), changes.next())
            .await
            .expect("a notice in time")
            .expect("the informer runs")
    }

    async fn ready<K: Resource>(informer: &Informer<K>) {
        tokio::time::timeout(Duration::from_secs(10), informer.wait_until_ready())
            .await
            .expect("ready in time")
            .unwrap();
    }

    fn rack(node: &Node) -> Option<&str> {
        node.spec
            .attributes
            .as_ref()
            .and_then(|attributes| attributes.get("rack"))
            .map(String::as_str)
    }

    #[tokio::test]
    async fn subscribers_of_a_kind_share_one_watch_and_one_cache() {
        let (_dir, counting) = counting_store();
        let store: Arc<dyn Store> = Arc::clone(&counting) as Arc<dyn Store>;
        put_node(store.as_ref(), "n1", "r1").await;
        let informers = Informers::new(Arc::clone(&store));
        let first = informers.informer::<Node>();
        // A clone of the handle, as each controller gets one.
        let second = informers.clone().informer::<Node>();
        assert!(first.same_as(&second));
        let mut first_changes = first.subscribe();
        let mut second_changes = second.subscribe();
        ready(&first).await;
        ready(&second).await;
        // The first list is announced to whoever subscribed before it.
        assert!(matches!(next(&mut first_changes).await, Change::Resync));
        assert!(matches!(next(&mut second_changes).await, Change::Resync));

        let revision = put_node(store.as_ref(), "n1", "r2").await;
        let (Change::Applied(seen_first), Change::Applied(seen_second)) = (
            next(&mut first_changes).await,
            next(&mut second_changes).await,
        ) else {
            panic!("expected Applied notices")
        };
        // One decoded object, shared by both notices and the cache.
        assert!(Arc::ptr_eq(&seen_first, &seen_second));
        let cached = first.store().get(&ObjectRef::new("n1")).unwrap();
        assert!(Arc::ptr_eq(&seen_first, &cached));
        assert_eq!(rack(&cached), Some("r2"));
        assert_eq!(object_revision(cached.as_ref()), Some(revision));
        assert_eq!(counting.watches(&registry_prefix::<Node>()), 1);
        assert_eq!(counting.lists.load(Ordering::SeqCst), 1);

        // Another kind, or one namespace of a kind, is another informer with its own watch.
        let leases = informers.namespaced::<Lease>("pacer-node-lease");
        let all_leases = informers.informer::<Lease>();
        assert!(!leases.same_as(&all_leases));
        assert!(leases.same_as(&informers.namespaced::<Lease>("pacer-node-lease")));
        ready(&leases).await;
        ready(&all_leases).await;
        store
            .create(
                "/registry/leases/pacer-node-lease/n1",
                lease_json("pacer-node-lease", "n1"),
                None,
            )
            .await
            .unwrap();
        let elsewhere = store
            .create(
                "/registry/leases/default/other",
                lease_json("default", "other"),
                None,
            )
            .await
            .unwrap();
        assert!(all_leases.applied().wait_for(elsewhere).await);
        assert_eq!(all_leases.store().len(), 2);
        assert_eq!(leases.store().len(), 1);
        assert_eq!(counting.watches("/registry/leases/pacer-node-lease/"), 1);
        assert_eq!(counting.watches(&registry_prefix::<Lease>()), 1);
        assert_eq!(counting.watches(&registry_prefix::<Node>()), 1);
    }

    #[tokio::test]
    async fn a_late_subscriber_sees_the_full_state() {
        let (_dir, counting) = counting_store();
        let store: Arc<dyn Store> = Arc::clone(&counting) as Arc<dyn Store>;
        for name in ["n1", "n2"] {
            put_node(store.as_ref(), name, "r1").await;
        }
        let informers = Informers::new(Arc::clone(&store));
        let early = informers.informer::<Node>();
        ready(&early).await;
        let last = put_node(store.as_ref(), "n3", "r1").await;
        assert!(early.applied().wait_for(last).await);

        let late = informers.informer::<Node>();
        // Already ready: no second list, no second watch.
        assert!(late.store().is_ready());
        ready(&late).await;
        assert_eq!(late.store().keys().len(), 3);
        assert_eq!(late.applied().revision(), last);
        assert_eq!(counting.lists.load(Ordering::SeqCst), 1);
        assert_eq!(counting.watches(&registry_prefix::<Node>()), 1);

        // An index added late covers what is cached already, and later changes.
        let indexed = late.with_index("rack", |node: &Node| {
            rack(node).into_iter().map(str::to_owned).collect()
        });
        assert_eq!(indexed.store().by_index("rack", "r1").unwrap().len(), 3);
        let moved = put_node(store.as_ref(), "n1", "r2").await;
        assert!(indexed.applied().wait_for(moved).await);
        assert_eq!(early.store().by_index("rack", "r1").unwrap().len(), 2);
        assert_eq!(early.store().by_index("rack", "r2").unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_gets_a_resync_and_never_blocks_the_informer() {
        let (_dir, counting) = counting_store();
        let store: Arc<dyn Store> = Arc::clone(&counting) as Arc<dyn Store>;
        let config = InformersConfig {
            capacity: 2,
            ..InformersConfig::default()
        };
        let informers = Informers::with_config(Arc::clone(&store), config);
        let informer = informers.informer::<Node>();
        ready(&informer).await;
        let mut slow = informer.subscribe();
        let mut last = 0;
        for index in 0..5 {
            last = put_node(store.as_ref(), &format!("n{index}"), "r1").await;
        }
        // The informer applied everything although `slow` read nothing.
        assert!(
            tokio::time::timeout(Duration::from_secs(10), informer.applied().wait_for(last))
                .await
                .unwrap()
        );
        assert_eq!(informer.store().len(), 5);
        assert!(matches!(next(&mut slow).await, Change::Resync));
        // Then the notices still kept, the newest last.
        let mut kept = Vec::new();
        while let Ok(Some(change)) =
            tokio::time::timeout(Duration::from_millis(200), slow.next()).await
        {
            let Change::Applied(node) = change else {
                panic!("expected Applied")
            };
            kept.push(node.metadata.name_str().to_owned());
        }
        assert_eq!(kept, ["n3", "n4"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deletion_the_cache_shows_has_been_announced() {
        let (_dir, counting) = counting_store();
        let store: Arc<dyn Store> = Arc::clone(&counting) as Arc<dyn Store>;
        let informers = Informers::new(Arc::clone(&store));
        let informer = informers.informer::<Node>();
        ready(&informer).await;
        let mut changes = informer.subscribe();
        let mut revisions = Vec::new();
        for index in 0..50 {
            revisions.push(put_node(store.as_ref(), &format!("n{index}"), "r1").await);
        }
        let mut deleted = 0;
        for (index, revision) in revisions.into_iter().enumerate() {
            let name = format!("n{index}");
            store
                .delete(&registry_key::<Node>(None, &name), revision)
                .await
                .unwrap();
            // Read the cache as the informer works, then drain: whatever deletion the read
            // reflects has been announced by then.
            loop {
                let gone = informer
                    .store()
                    .get(&ObjectRef::new(name.as_str()))
                    .is_none();
                while let Some(change) = changes.try_next() {
                    if let Change::Deleted(node) = change {
                        assert_eq!(node.metadata.name_str(), format!("n{deleted}"));
                        deleted += 1;
                    }
                }
                if gone {
                    assert_eq!(deleted, index + 1, "{name} left the cache unannounced");
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        assert!(changes.try_next().is_none());
    }

    /// A transaction's writes share one revision, and the stores hand them out together: the
    /// applied revision names a revision only once all of its changes are cached (a
    /// controller waiting for its own multi-object transaction must never see a part of it).
    #[tokio::test]
    async fn the_applied_revision_waits_for_every_change_of_that_revision() {
        let node_at = |name: &str, revision: Revision| -> watcher::Result<Event<Node>> {
            let mut node: Node = serde_json::from_slice(&node_json(name, "r1")).unwrap();
            node.metadata.resource_version = Some(revision.to_string());
            Ok(Event::Apply(node))
        };
        // Revisions 10 and 11, three nodes each, all handed out at once.
        let events: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|name| node_at(name, 10))
            .chain(["d", "e", "f"].iter().map(|name| node_at(name, 11)))
            .collect();
        let writer = Arc::new(Mutex::new(Writer::<Node>::new()));
        let reader = lock(&writer).as_reader();
        let (applied_tx, applied) = watch::channel(0);
        let (changes, _) = broadcast::channel(16);
        let (seen_reader, seen_applied) = (reader.clone(), applied.clone());
        let checked = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&checked);
        // Whenever the informer takes the next change, whatever revision it has published
        // is wholly in the cache.
        let stream = futures::stream::iter(events).inspect(move |_| {
            let whole = match *seen_applied.borrow() {
                0 => return,
                10 => 3,
                _ => 6,
            };
            assert_eq!(
                seen_reader.len(),
                whole,
                "a revision published half applied"
            );
            counted.fetch_add(1, Ordering::SeqCst);
        });
        drive(stream, writer, reader.clone(), applied_tx, changes).await;
        assert_eq!(*applied.borrow(), 11);
        assert_eq!(reader.len(), 6);
        // All six were taken as one batch: nothing was published before the last.
        assert_eq!(checked.load(Ordering::SeqCst), 0);
    }

    /// Notices keep the order of the changes: an object changed and then deleted in one batch
    /// is announced deleted only (never as applied after its deletion); one deleted and then
    /// created again is announced deleted, then applied.
    #[tokio::test]
    async fn a_change_deleted_in_the_same_batch_is_not_announced_after_the_deletion() {
        let node_at = |name: &str, revision: Revision| -> Node {
            let mut node: Node = serde_json::from_slice(&node_json(name, "r1")).unwrap();
            node.metadata.resource_version = Some(revision.to_string());
            node
        };
        let events: Vec<watcher::Result<Event<Node>>> = vec![
            Ok(Event::Apply(node_at("gone", 10))),
            Ok(Event::Apply(node_at("back", 10))),
            Ok(Event::Delete(node_at("gone", 11))),
            Ok(Event::Delete(node_at("back", 11))),
            Ok(Event::Apply(node_at("back", 12))),
        ];
        let writer = Arc::new(Mutex::new(Writer::<Node>::new()));
        let reader = lock(&writer).as_reader();
        let (applied_tx, _applied) = watch::channel(0);
        let (changes, mut notices) = broadcast::channel(16);
        drive(
            futures::stream::iter(events),
            writer,
            reader.clone(),
            applied_tx,
            changes,
        )
        .await;
        let mut seen = Vec::new();
        while let Ok(change) = notices.try_recv() {
            seen.push(match change {
                Change::Applied(node) => format!("applied {}", node.metadata.name_str()),
                Change::Deleted(node) => format!("deleted {}", node.metadata.name_str()),
                Change::Resync => "resync".to_owned(),
            });
        }
        assert_eq!(seen, ["deleted gone", "deleted back", "applied back"]);
        assert_eq!(reader.len(), 1);
    }

    #[tokio::test]
    async fn applied_revisions_say_when_the_cache_shows_a_write() {
        let (_dir, counting) = counting_store();
        let store: Arc<dyn Store> = Arc::clone(&counting) as Arc<dyn Store>;
        let listed = put_node(store.as_ref(), "n1", "r1").await;
        let informers = Informers::new(Arc::clone(&store));
        let informer = informers.informer::<Node>();
        ready(&informer).await;
        // The list's newest object.
        assert!(informer.applied().wait_for(listed).await);
        assert_eq!(informer.applied().revision(), listed);
        let prefix = registry_prefix::<Node>();
        let applied = [informer.applied()];

        let written = put_node(store.as_ref(), "n1", "r2").await;
        let wants = HashMap::from([(prefix.clone(), written)]);
        assert!(caught_up(&applied, &wants, Duration::from_secs(10)).await);
        // Caught up means the cache shows it.
        let cached = informer.store().get(&ObjectRef::new("n1")).unwrap();
        assert_eq!(rack(&cached), Some("r2"));

        // A revision nobody wrote under the prefix is never reached; a prefix without an
        // informer never is either.
        let later = HashMap::from([(prefix.clone(), written + 100)]);
        assert!(!caught_up(&applied, &later, Duration::from_millis(100)).await);
        let unknown = HashMap::from([(registry_prefix::<Lease>(), 1)]);
        assert!(!caught_up(&applied, &unknown, Duration::from_millis(100)).await);

        // A delete advances it to the delete's revision.
        let deleted = store
            .delete(&registry_key::<Node>(None, "n1"), written)
            .await
            .unwrap();
        let wants = HashMap::from([(prefix, deleted)]);
        assert!(caught_up(&applied, &wants, Duration::from_secs(10)).await);
        assert!(informer.store().is_empty());
    }
}
