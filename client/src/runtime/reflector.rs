//! Caches objects in memory: a [`Writer`] applies a watcher's events, any number of cheap
//! [`Store`] readers look objects up by key or by a registered index.
//!
//! ```
//! use pacer_client::runtime::reflector::Writer;
//! use pacer_client::runtime::watcher::Event;
//! use pacer_schemas::{Instance, ObjectMeta};
//!
//! let mut writer = Writer::<Instance>::new()
//!     .with_index("by-app", |instance: &Instance| vec![instance.spec.app.clone()])
//!     .with_index("by-node", |instance: &Instance| {
//!         instance.spec.node_name.iter().cloned().collect()
//!     });
//! let instances = writer.as_reader();
//! // Usually: `reflector(writer, watcher(source, config))`, polled by a controller.
//! let mut web = Instance { metadata: ObjectMeta::named("default", "web.1"), ..Default::default() };
//! web.spec.app = "web".into();
//! for event in [Event::Init, Event::InitApply(web), Event::InitDone] {
//!     writer.apply_watcher_event(&event);
//! }
//! assert!(instances.is_ready());
//! assert_eq!(instances.by_index("by-app", "web")?.len(), 1);
//! assert!(instances.by_index("by-node", "node-1")?.is_empty());
//! # Ok::<(), pacer_client::runtime::reflector::UnknownIndex>(())
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::{Stream, TryStreamExt};
use pacer_schemas::Resource;
use tokio::sync::watch;

use crate::runtime::watcher::Event;

/// The key of an object in a cache: namespace (none for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// Namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// A cluster-scoped key.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            namespace: None,
            name: name.into(),
        }
    }

    /// The same name within `namespace`.
    #[must_use]
    pub fn within(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The key of `object`. An empty namespace counts as none.
    pub fn from_obj<K: Resource>(object: &K) -> Self {
        let meta = object.meta();
        Self {
            namespace: meta
                .namespace
                .clone()
                .filter(|namespace| !namespace.is_empty()),
            name: meta.name_str().to_owned(),
        }
    }
}

impl fmt::Display for ObjectRef {
    /// `namespace/name`, or `name` when cluster-scoped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{namespace}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// An index function: the index values an object is filed under (none, one or several).
pub type IndexFn<K> = Arc<dyn Fn(&K) -> Vec<String> + Send + Sync>;

/// [`Store::by_index`] was asked for an index that was never registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no index named {0:?} is registered on this store")]
pub struct UnknownIndex(pub String);

/// [`Store::wait_until_ready`] gave up: the [`Writer`] was dropped before its first list
/// completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the cache's writer was dropped before the cache became ready")]
pub struct WriterDropped;

/// The writing side of a cache: feed it a watcher's events, through [`reflector`] or
/// [`Writer::apply_watcher_event`]. There is one writer per cache.
pub struct Writer<K> {
    shared: Arc<RwLock<Cache<K>>>,
    index_fns: Vec<(String, IndexFn<K>)>,
    /// Objects of a list in progress, swapped in at `InitDone`.
    buffer: Option<HashMap<ObjectRef, Arc<K>>>,
    ready: watch::Sender<bool>,
}

/// A read handle to a cache: cheap to clone, safe to share between tasks. Readers get
/// `Arc<K>`s, so a lookup copies no object.
pub struct Store<K> {
    shared: Arc<RwLock<Cache<K>>>,
    ready: watch::Receiver<bool>,
}

/// Passes `stream` through, applying each event to `writer` first: by the time an event comes
/// out, the cache reflects it (an `InitDone` means the whole list has been swapped in).
pub fn reflector<K, E>(
    mut writer: Writer<K>,
    stream: impl Stream<Item = Result<Event<K>, E>>,
) -> impl Stream<Item = Result<Event<K>, E>>
where
    K: Resource,
{
    stream.inspect_ok(move |event| writer.apply_watcher_event(event))
}

impl<K: Resource> Default for Writer<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Resource> Writer<K> {
    /// An empty cache without indexes, not ready until its first list completes.
    pub fn new() -> Self {
        let (ready, _) = watch::channel(false);
        Self {
            shared: Arc::new(RwLock::new(Cache::default())),
            index_fns: Vec::new(),
            buffer: None,
            ready,
        }
    }

    /// Registers index `name`: `index` returns the values an object is filed under, and
    /// [`Store::by_index`]`(name, value)` returns the objects filed under `value`. Objects
    /// already cached are indexed at once; re-registering a name replaces that index.
    ///
    /// A panicking index function is treated as returning no values (and logged).
    pub fn with_index<F>(mut self, name: impl Into<String>, index: F) -> Self
    where
        F: Fn(&K) -> Vec<String> + Send + Sync + 'static,
    {
        let name = name.into();
        let index: IndexFn<K> = Arc::new(index);
        let objects: Vec<(ObjectRef, Arc<K>)> = read(&self.shared)
            .objects
            .iter()
            .map(|(key, object)| (key.clone(), Arc::clone(object)))
            .collect();
        let mut built = Index::default();
        for (key, object) in objects {
            let values = index_values(&name, &index, &object);
            built.insert(&key, values);
        }
        write(&self.shared).indexes.insert(name.clone(), built);
        self.index_fns.retain(|(existing, _)| *existing != name);
        self.index_fns.push((name, index));
        self
    }

    /// A reader of this cache.
    pub fn as_reader(&self) -> Store<K> {
        Store {
            shared: Arc::clone(&self.shared),
            ready: self.ready.subscribe(),
        }
    }

    /// Applies one watcher event. Index functions run before the cache lock is taken, so
    /// readers never wait on user code.
    pub fn apply_watcher_event(&mut self, event: &Event<K>) {
        match event {
            Event::Init => self.buffer = Some(HashMap::new()),
            Event::InitApply(object) => {
                let object = Arc::new(object.clone());
                self.buffer
                    .get_or_insert_with(HashMap::new)
                    .insert(ObjectRef::from_obj(&*object), object);
            }
            Event::InitDone => {
                let objects = self.buffer.take().unwrap_or_default();
                let mut indexes: BTreeMap<String, Index> = self
                    .index_fns
                    .iter()
                    .map(|(name, _)| (name.clone(), Index::default()))
                    .collect();
                for (key, object) in &objects {
                    for (name, index) in &self.index_fns {
                        let values = index_values(name, index, object);
                        if let Some(built) = indexes.get_mut(name) {
                            built.insert(key, values);
                        }
                    }
                }
                *write(&self.shared) = Cache { objects, indexes };
                self.ready.send_replace(true);
            }
            Event::Apply(object) => {
                let key = ObjectRef::from_obj(object);
                let object = Arc::new(object.clone());
                let values: Vec<(&str, Vec<String>)> = self
                    .index_fns
                    .iter()
                    .map(|(name, index)| (name.as_str(), index_values(name, index, &object)))
                    .collect();
                let mut cache = write(&self.shared);
                for (name, values) in values {
                    if let Some(built) = cache.indexes.get_mut(name) {
                        built.remove(&key);
                        built.insert(&key, values);
                    }
                }
                cache.objects.insert(key, object);
            }
            Event::Delete(object) => {
                let key = ObjectRef::from_obj(object);
                let mut cache = write(&self.shared);
                for built in cache.indexes.values_mut() {
                    built.remove(&key);
                }
                cache.objects.remove(&key);
            }
        }
    }
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            ready: self.ready.clone(),
        }
    }
}

impl<K> fmt::Debug for Store<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("objects", &read(&self.shared).objects.len())
            .field("ready", &*self.ready.borrow())
            .finish()
    }
}

impl<K: Resource> Store<K> {
    /// The cached object with this key.
    pub fn get(&self, key: &ObjectRef) -> Option<Arc<K>> {
        read(&self.shared).objects.get(key).cloned()
    }

    /// Every cached object, in no particular order.
    pub fn state(&self) -> Vec<Arc<K>> {
        read(&self.shared).objects.values().cloned().collect()
    }

    /// The keys of every cached object, sorted.
    pub fn keys(&self) -> Vec<ObjectRef> {
        let mut keys: Vec<ObjectRef> = read(&self.shared).objects.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        read(&self.shared).objects.len()
    }

    /// Whether no object is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The objects filed under `value` in index `index`, sorted by key.
    pub fn by_index(&self, index: &str, value: &str) -> Result<Vec<Arc<K>>, UnknownIndex> {
        let cache = read(&self.shared);
        let built = cache
            .indexes
            .get(index)
            .ok_or_else(|| UnknownIndex(index.to_owned()))?;
        Ok(built
            .by_value
            .get(value)
            .into_iter()
            .flatten()
            .filter_map(|key| cache.objects.get(key).cloned())
            .collect())
    }

    /// The values in use in index `index`, sorted.
    pub fn index_values(&self, index: &str) -> Result<Vec<String>, UnknownIndex> {
        let cache = read(&self.shared);
        let built = cache
            .indexes
            .get(index)
            .ok_or_else(|| UnknownIndex(index.to_owned()))?;
        Ok(built.by_value.keys().cloned().collect())
    }

    /// Whether the first list has been applied.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the first list has been applied. Reconcilers that read a second cache
    /// (e.g. an App controller looking up Instances by app) should wait on it first, or they
    /// will act on an empty cache.
    pub async fn wait_until_ready(&self) -> Result<(), WriterDropped> {
        let mut ready = self.ready.clone();
        ready
            .wait_for(|ready| *ready)
            .await
            .map(|_| ())
            .map_err(|_| WriterDropped)
    }
}

struct Cache<K> {
    objects: HashMap<ObjectRef, Arc<K>>,
    indexes: BTreeMap<String, Index>,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
            indexes: BTreeMap::new(),
        }
    }
}

/// One index: value → keys, and key → values (to unfile an object without calling the index
/// function again).
#[derive(Default)]
struct Index {
    by_value: BTreeMap<String, BTreeSet<ObjectRef>>,
    values_of: HashMap<ObjectRef, Vec<String>>,
}

impl Index {
    fn insert(&mut self, key: &ObjectRef, values: Vec<String>) {
        for value in &values {
            self.by_value
                .entry(value.clone())
                .or_default()
                .insert(key.clone());
        }
        if !values.is_empty() {
            self.values_of.insert(key.clone(), values);
        }
    }

    fn remove(&mut self, key: &ObjectRef) {
        for value in self.values_of.remove(key).unwrap_or_default() {
            if let Some(keys) = self.by_value.get_mut(&value) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_value.remove(&value);
                }
            }
        }
    }
}

/// Runs a user index function, containing a panic.
fn index_values<K>(name: &str, index: &IndexFn<K>, object: &K) -> Vec<String> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| index(object))) {
        Ok(mut values) => {
            values.sort();
            values.dedup();
            values
        }
        Err(_) => {
            tracing::error!(
                index = name,
                "index function panicked; object left unindexed"
            );
            Vec::new()
        }
    }
}

// No user code runs while the lock is held, so a poisoned lock still holds a consistent cache.
fn read<K>(lock: &RwLock<Cache<K>>) -> RwLockReadGuard<'_, Cache<K>> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<K>(lock: &RwLock<Cache<K>>) -> RwLockWriteGuard<'_, Cache<K>> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
