//! The store as a [`Source`] for the controller runtime: [`StoreSource`] lists and watches one
//! kind's keys (`/registry/<plural>/…`) directly, so controllers inside `pacer server` need no
//! HTTP round trip.
//!
//! It follows the API server's conventions (see `apiserver/src/object.rs`): values are the
//! object's JSON without `metadata.resourceVersion`, which is filled here from the key's
//! `mod_revision` (for a delete, the delete's revision, so a watcher resumes after it).

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use pacer_client::runtime::source::EventStream;
use pacer_client::runtime::{Source, SourceError, SourceEvent, SourceList};
use pacer_schemas::Resource;
use pacer_store::{EventKind, KeyValue, ListOptions, Revision, Store, StoreError};

/// Keys per list page.
const PAGE_SIZE: usize = 500;

/// The prefix under which the API server stores every object of kind `K`, in every namespace:
/// `/registry/<plural>/`.
pub fn registry_prefix<K: Resource>() -> String {
    format!("/registry/{}/", K::PLURAL)
}

/// The key of one object of kind `K`: `/registry/<plural>/<namespace>/<name>`, or
/// `/registry/<plural>/<name>` for cluster-scoped kinds.
pub fn registry_key<K: Resource>(namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|namespace| K::NAMESPACED && !namespace.is_empty()) {
        Some(namespace) => format!("/registry/{}/{namespace}/{name}", K::PLURAL),
        None => format!("/registry/{}/{name}", K::PLURAL),
    }
}

/// Decodes a stored value into `K`, with `metadata.resourceVersion` set to `revision`.
pub fn decode_stored<K: Resource>(value: &[u8], revision: Revision) -> serde_json::Result<K> {
    let mut object: K = serde_json::from_slice(value)?;
    object.meta_mut().resource_version = Some(revision.to_string());
    Ok(object)
}

/// Encodes `object` as the API server stores it: JSON without `metadata.resourceVersion`.
/// An object without one (a new one, or an updated copy whose version was cleared) is encoded
/// as it is, without a copy.
pub fn encode_stored<K: Resource>(object: &K) -> serde_json::Result<Vec<u8>> {
    if object.meta().resource_version.is_none() {
        return serde_json::to_vec(object);
    }
    let mut copy = object.clone();
    copy.meta_mut().resource_version = None;
    serde_json::to_vec(&copy)
}

/// The mod revision an object was read at (its `metadata.resourceVersion`), if it has one.
pub fn object_revision<K: Resource>(object: &K) -> Option<Revision> {
    object
        .meta()
        .resource_version
        .as_deref()
        .and_then(|version| version.parse().ok())
}

/// Every object of kind `K` in a [`Store`], as a runtime [`Source`].
///
/// A value that does not decode as `K` is logged and skipped (one corrupt object must not stop
/// a controller); store failures are [`SourceError::Other`], compacted revisions
/// [`SourceError::Expired`].
pub struct StoreSource<K> {
    store: Arc<dyn Store>,
    prefix: String,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for StoreSource<K> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            prefix: self.prefix.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for StoreSource<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSource")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<K: Resource> StoreSource<K> {
    /// Every object of kind `K` in `store` (all namespaces).
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            prefix: registry_prefix::<K>(),
            kind: PhantomData,
        }
    }

    /// The objects of kind `K` in one namespace only (ignored for cluster-scoped kinds).
    pub fn namespaced(store: Arc<dyn Store>, namespace: &str) -> Self {
        let prefix = if K::NAMESPACED {
            format!("/registry/{}/{namespace}/", K::PLURAL)
        } else {
            registry_prefix::<K>()
        };
        Self {
            store,
            prefix,
            kind: PhantomData,
        }
    }

    /// The key prefix this source reads.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

fn decode_or_skip<K: Resource>(kv: &KeyValue, value: &[u8], revision: Revision) -> Option<K> {
    match decode_stored::<K>(value, revision) {
        Ok(object) => Some(object),
        Err(error) => {
            tracing::warn!(kind = K::KIND, key = %kv.key, %error, "stored value does not decode; skipped");
            None
        }
    }
}

fn source_error(error: StoreError, resource_version: &str) -> SourceError {
    match error {
        StoreError::Expired { .. } => SourceError::expired(resource_version, error.to_string()),
        other => SourceError::other(other),
    }
}

#[async_trait]
impl<K: Resource> Source<K> for StoreSource<K> {
    async fn list(&self) -> Result<SourceList<K>, SourceError> {
        let mut items = Vec::new();
        let mut options = ListOptions {
            limit: PAGE_SIZE,
            ..ListOptions::default()
        };
        loop {
            let page = self
                .store
                .list(&self.prefix, &options)
                .await
                .map_err(|error| source_error(error, ""))?;
            items.extend(
                page.items
                    .iter()
                    .filter_map(|kv| decode_or_skip::<K>(kv, &kv.value, kv.mod_revision)),
            );
            match page.continue_token {
                Some(token) => options.continue_token = Some(token),
                None => {
                    return Ok(SourceList {
                        items,
                        resource_version: page.revision.to_string(),
                    });
                }
            }
        }
    }

    async fn watch(&self, resource_version: &str) -> Result<EventStream<K>, SourceError> {
        let after: Revision = resource_version.parse().map_err(|_| {
            SourceError::other(format!(
                "resource version {resource_version:?} is not a store revision"
            ))
        })?;
        let from = resource_version.to_owned();
        let stream = self
            .store
            .watch(&self.prefix, after)
            .await
            .map_err(|error| source_error(error, &from))?;
        Ok(stream
            .filter_map(move |event| {
                let mapped = match event {
                    Err(error) => Some(Err(source_error(error, &from))),
                    Ok(event) => match event.kind {
                        EventKind::Put => {
                            decode_or_skip::<K>(&event.kv, &event.kv.value, event.kv.mod_revision)
                                .map(|object| {
                                    Ok(if event.kv.create_revision == event.kv.mod_revision {
                                        SourceEvent::Added(object)
                                    } else {
                                        SourceEvent::Modified(object)
                                    })
                                })
                        }
                        EventKind::Delete => match &event.prev_kv {
                            Some(prev) => {
                                decode_or_skip::<K>(prev, &prev.value, event.kv.mod_revision)
                                    .map(|object| Ok(SourceEvent::Deleted(object)))
                            }
                            // Without the last state there is no object to report, but the
                            // watch has still moved on.
                            None => {
                                Some(Ok(SourceEvent::Bookmark(event.kv.mod_revision.to_string())))
                            }
                        },
                    },
                };
                std::future::ready(mapped)
            })
            .boxed())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use pacer_schemas::{Node, ObjectMeta};
    use pacer_store::embedded::EmbeddedStore;
    use serde_json::json;

    use super::*;

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
        (dir, Arc::new(store))
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

    async fn next<K>(stream: &mut EventStream<K>) -> SourceEvent<K> {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("a watch event in time")
            .expect("the stream goes on")
            .expect("no error")
    }

    #[test]
    fn keys_follow_the_api_servers_layout() {
        assert_eq!(registry_prefix::<Node>(), "/registry/nodes/");
        assert_eq!(
            registry_key::<Node>(Some("ignored"), "n1"),
            "/registry/nodes/n1"
        );
        assert_eq!(
            registry_key::<pacer_schemas::Instance>(Some("prod"), "web.1"),
            "/registry/instances/prod/web.1"
        );
        let mut node = Node {
            metadata: ObjectMeta::named("", "n1"),
            ..Node::default()
        };
        node.metadata.resource_version = Some("7".into());
        let stored: serde_json::Value =
            serde_json::from_slice(&encode_stored(&node).unwrap()).unwrap();
        assert!(stored.pointer("/metadata/resourceVersion").is_none());
        assert_eq!(object_revision(&node), Some(7));
    }

    #[tokio::test]
    async fn lists_every_page_at_one_revision_and_fills_resource_versions() {
        let (_dir, store) = store();
        let mut revisions = Vec::new();
        for index in 0..(PAGE_SIZE + 3) {
            let name = format!("n{index:04}");
            revisions.push(
                store
                    .create(
                        &registry_key::<Node>(None, &name),
                        node_json(&name, "r1"),
                        None,
                    )
                    .await
                    .unwrap(),
            );
        }
        // Another kind under a sibling prefix is not listed; an undecodable value is skipped.
        store
            .create("/registry/nodesx/other", b"{}".to_vec(), None)
            .await
            .unwrap();
        store
            .create("/registry/nodes/broken", b"not json".to_vec(), None)
            .await
            .unwrap();
        let source = StoreSource::<Node>::new(Arc::clone(&store));
        let list = source.list().await.unwrap();
        assert_eq!(list.items.len(), PAGE_SIZE + 3);
        assert_eq!(
            list.resource_version,
            store.current_revision().await.unwrap().to_string()
        );
        for (node, revision) in list.items.iter().zip(&revisions) {
            assert_eq!(
                node.metadata.resource_version.as_deref(),
                Some(revision.to_string().as_str())
            );
        }
    }

    #[tokio::test]
    async fn watches_adds_modifies_and_deletes_after_a_revision() {
        let (_dir, store) = store();
        let key = registry_key::<Node>(None, "n1");
        let before = store
            .create(&key, node_json("n1", "r1"), None)
            .await
            .unwrap();
        let source = StoreSource::<Node>::new(Arc::clone(&store));
        let mut events = source.watch(&before.to_string()).await.unwrap();
        let updated = store
            .update(&key, node_json("n1", "r2"), before, None)
            .await
            .unwrap();
        let created = store
            .create(
                &registry_key::<Node>(None, "n2"),
                node_json("n2", "r1"),
                None,
            )
            .await
            .unwrap();
        let deleted = store.delete(&key, updated).await.unwrap();

        let SourceEvent::Modified(node) = next(&mut events).await else {
            panic!("expected Modified")
        };
        assert_eq!(node.metadata.resource_version, Some(updated.to_string()));
        assert_eq!(
            node.spec
                .attributes
                .unwrap()
                .get("rack")
                .map(String::as_str),
            Some("r2")
        );
        let SourceEvent::Added(node) = next(&mut events).await else {
            panic!("expected Added")
        };
        assert_eq!(node.metadata.name.as_deref(), Some("n2"));
        assert_eq!(node.metadata.resource_version, Some(created.to_string()));
        let SourceEvent::Deleted(node) = next(&mut events).await else {
            panic!("expected Deleted")
        };
        assert_eq!(node.metadata.name.as_deref(), Some("n1"));
        assert_eq!(node.metadata.resource_version, Some(deleted.to_string()));
    }

    #[tokio::test]
    async fn a_compacted_revision_is_expired() {
        let (_dir, store) = store();
        let key = registry_key::<Node>(None, "n1");
        let first = store
            .create(&key, node_json("n1", "r1"), None)
            .await
            .unwrap();
        let second = store
            .update(&key, node_json("n1", "r2"), first, None)
            .await
            .unwrap();
        store.compact(second).await.unwrap();
        let source = StoreSource::<Node>::new(Arc::clone(&store));
        let error = match source.watch(&(first - 1).to_string()).await {
            Ok(mut stream) => match stream.next().await {
                Some(Err(error)) => error,
                other => panic!("expected an error, got {other:?}"),
            },
            Err(error) => error,
        };
        assert!(error.is_expired(), "{error}");
        assert!(source.watch("not-a-number").await.is_err());
    }
}
