//! The HTTP API as a [`Source`]: [`Api`] lists with `list_all` and watches with `?watch=true`,
//! so users' controllers run on the same runtime as Pacer's own.

use async_trait::async_trait;
use futures::StreamExt;
use pacer_schemas::Resource;

use crate::api::Api;
use crate::error::Error;
use crate::params::{ListParams, WatchParams};
use crate::runtime::source::{EventStream, Source, SourceError, SourceEvent, SourceList};
use crate::watch::WatchEvent;

/// Every object `api` addresses (its namespace, or all namespaces), with default parameters.
/// Use [`ApiSource`] to filter by labels or fields.
#[async_trait]
impl<K: Resource> Source<K> for Api<K> {
    async fn list(&self) -> Result<SourceList<K>, SourceError> {
        list(self, &ListParams::default()).await
    }

    async fn watch(&self, resource_version: &str) -> Result<EventStream<K>, SourceError> {
        watch(self, &WatchParams::default(), resource_version).await
    }
}

/// An [`Api`] with list and watch parameters (label and field selectors, page size, server
/// timeout), as a [`Source`].
#[derive(Clone, Debug)]
pub struct ApiSource<K> {
    api: Api<K>,
    list: ListParams,
    watch: WatchParams,
}

impl<K: Resource> ApiSource<K> {
    /// Every object `api` addresses, listed in pages of 500.
    pub fn new(api: Api<K>) -> Self {
        Self {
            api,
            list: ListParams::default().limit(500),
            watch: WatchParams::default(),
        }
    }

    /// Only objects matching a label selector, e.g. `team=shop`.
    #[must_use]
    pub fn labels(mut self, selector: &str) -> Self {
        self.list = self.list.labels(selector);
        self.watch = self.watch.labels(selector);
        self
    }

    /// Only objects matching a field selector, e.g. `spec.nodeName=node-1`.
    #[must_use]
    pub fn fields(mut self, selector: &str) -> Self {
        self.list = self.list.fields(selector);
        self.watch = self.watch.fields(selector);
        self
    }

    /// Asks the server to end each watch after `seconds` (the watcher then resumes).
    #[must_use]
    pub fn watch_timeout(mut self, seconds: u32) -> Self {
        self.watch = self.watch.timeout(seconds);
        self
    }
}

#[async_trait]
impl<K: Resource> Source<K> for ApiSource<K> {
    async fn list(&self) -> Result<SourceList<K>, SourceError> {
        list(&self.api, &self.list).await
    }

    async fn watch(&self, resource_version: &str) -> Result<EventStream<K>, SourceError> {
        watch(&self.api, &self.watch, resource_version).await
    }
}

async fn list<K: Resource>(
    api: &Api<K>,
    params: &ListParams,
) -> Result<SourceList<K>, SourceError> {
    let list = api
        .list_all(params)
        .await
        .map_err(|error| source_error(error, ""))?;
    Ok(SourceList {
        items: list.items,
        resource_version: list.metadata.resource_version.unwrap_or_default(),
    })
}

async fn watch<K: Resource>(
    api: &Api<K>,
    params: &WatchParams,
    resource_version: &str,
) -> Result<EventStream<K>, SourceError> {
    let from = resource_version.to_owned();
    let stream = api
        .watch(params, resource_version)
        .await
        .map_err(|error| source_error(error, &from))?;
    Ok(stream
        .map(move |event| match event {
            Ok(WatchEvent::Added(object)) => Ok(SourceEvent::Added(object)),
            Ok(WatchEvent::Modified(object)) => Ok(SourceEvent::Modified(object)),
            Ok(WatchEvent::Deleted(object)) => Ok(SourceEvent::Deleted(object)),
            Ok(WatchEvent::Bookmark(bookmark)) => {
                Ok(SourceEvent::Bookmark(bookmark.metadata.resource_version))
            }
            Ok(WatchEvent::Error(status)) => Err(source_error(
                Error::Api {
                    status,
                    method: "GET".to_owned(),
                    url: "(watch stream)".to_owned(),
                },
                &from,
            )),
            Err(error) => Err(source_error(error, &from)),
        })
        .boxed())
}

/// 410 `Expired`/`Gone` means relist; everything else is retried.
fn source_error(error: Error, resource_version: &str) -> SourceError {
    if error.is_expired() {
        SourceError::expired(resource_version, error.to_string())
    } else {
        SourceError::other(error)
    }
}
