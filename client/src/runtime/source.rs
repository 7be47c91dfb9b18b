//! Where a watcher gets objects from: the [`Source`] trait (list at a revision, then watch the
//! changes after it), implemented over the store inside `pacer server` (in
//! `pacer-controllers`) and over the HTTP API (for [`Api`](crate::Api), in this crate).

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use pacer_schemas::Resource;

/// A boxed error from a source's underlying client.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The stream a [`Source::watch`] returns. It ends when the connection closes (the watcher
/// then resumes from the last version it saw).
pub type EventStream<K> = BoxStream<'static, Result<SourceEvent<K>, SourceError>>;

/// A consistent list and the revision it was read at.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceList<K> {
    /// Every object, all read at `resource_version`.
    pub items: Vec<K>,
    /// The revision of the list; watching from it delivers exactly the later changes.
    pub resource_version: String,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceEvent<K> {
    /// An object was created.
    Added(K),
    /// An object changed.
    Modified(K),
    /// An object was deleted; its last state.
    Deleted(K),
    /// Nothing to report, but the watch has reached this resourceVersion: a later watch may
    /// resume from here.
    Bookmark(String),
}

/// Why a source call failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The revision asked for is older than what the source keeps (compacted; HTTP 410
    /// `Expired`/`Gone`). The watcher answers it by listing again.
    #[error("resource version {resource_version:?} is no longer available: {message}")]
    Expired {
        /// The revision that was asked for (empty when unknown).
        resource_version: String,
        /// The source's explanation.
        message: String,
    },
    /// Anything else (connection lost, server error, decoding failure). The watcher retries
    /// after a backoff.
    #[error(transparent)]
    Other(BoxError),
}

impl SourceError {
    /// Wraps any error as [`SourceError::Other`].
    pub fn other(error: impl Into<BoxError>) -> Self {
        Self::Other(error.into())
    }

    /// An [`SourceError::Expired`] for `resource_version`.
    pub fn expired(resource_version: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Expired {
            resource_version: resource_version.into(),
            message: message.into(),
        }
    }

    /// Whether the watcher must list again (the revision is gone).
    pub fn is_expired(&self) -> bool {
        matches!(self, Self::Expired { .. })
    }
}

/// Lists and watches objects of kind `K`, the way the Kubernetes API and etcd do: `list` is
/// consistent at one revision, and `watch(rv)` delivers every change after `rv`, in order,
/// without gaps, or fails with [`SourceError::Expired`] when `rv` was compacted away.
///
/// Implementations should be cheap to call repeatedly: the watcher calls `watch` again after
/// each disconnect, and `list` again after each expiry.
#[async_trait]
pub trait Source<K: Resource>: Send + Sync {
    /// Lists every object and the revision the list was read at.
    async fn list(&self) -> Result<SourceList<K>, SourceError>;

    /// Watches the changes after `resource_version` (a list's or a later event's).
    async fn watch(&self, resource_version: &str) -> Result<EventStream<K>, SourceError>;
}

#[async_trait]
impl<K: Resource, S: Source<K> + ?Sized> Source<K> for Arc<S> {
    async fn list(&self) -> Result<SourceList<K>, SourceError> {
        (**self).list().await
    }

    async fn watch(&self, resource_version: &str) -> Result<EventStream<K>, SourceError> {
        (**self).watch(resource_version).await
    }
}
