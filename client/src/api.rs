//! `Api<K>`: the typed client for one kind in one namespace (or all namespaces, or a
//! cluster-scoped kind) — get, list, create, replace, merge-patch (of the object or its
//! `/status`), delete and watch.

use std::marker::PhantomData;

use futures::stream::BoxStream;
use pacer_schemas::{List, Resource};
use serde::Serialize;

use crate::client::Client;
use crate::dynamic::DynamicApi;
use crate::error::{Error, Result};
use crate::params::{DeleteParams, Deleted, ListParams, PatchParams, PostParams, WatchParams};
use crate::resource::ResourceInfo;
use crate::watch::WatchEvent;

/// The typed client for kind `K`.
#[derive(Clone, Debug)]
pub struct Api<K> {
    raw: DynamicApi,
    kind: PhantomData<fn() -> K>,
}

impl<K: Resource> Api<K> {
    /// Objects in `namespace` (ignored for cluster-scoped kinds).
    pub fn namespaced(client: Client, namespace: &str) -> Self {
        Self::wrap(DynamicApi::namespaced(
            client,
            ResourceInfo::of::<K>(),
            namespace,
        ))
    }

    /// Objects in the client's configured namespace.
    pub fn default_namespaced(client: Client) -> Self {
        let namespace = client.default_namespace().to_owned();
        Self::namespaced(client, &namespace)
    }

    /// Objects in every namespace (lists and watches), or a cluster-scoped kind.
    pub fn all(client: Client) -> Self {
        Self::wrap(DynamicApi::all(client, ResourceInfo::of::<K>()))
    }

    fn wrap(raw: DynamicApi) -> Self {
        Self {
            raw,
            kind: PhantomData,
        }
    }

    /// The namespace addressed, `None` for all namespaces or a cluster-scoped kind.
    pub fn namespace(&self) -> Option<&str> {
        self.raw.namespace()
    }

    /// Reads one object.
    pub async fn get(&self, name: &str) -> Result<K> {
        self.raw.get_as(name).await
    }

    /// Reads one object, `None` when it does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>> {
        self.raw.get_opt_as(name).await
    }

    /// Lists one page.
    pub async fn list(&self, params: &ListParams) -> Result<List<K>> {
        self.raw.list_as(params).await
    }

    /// Lists every object, following `continue` tokens.
    pub async fn list_all(&self, params: &ListParams) -> Result<List<K>> {
        self.raw.list_all_as(params).await
    }

    /// Creates `object`; the server fills uid, resourceVersion, generation and timestamps and
    /// applies defaults.
    pub async fn create(&self, params: &PostParams, object: &K) -> Result<K> {
        self.raw.create_as(params, object).await
    }

    /// Replaces the object named like `object`. With `metadata.resourceVersion` set this is a
    /// compare-and-swap: a stale version fails with 409 `Conflict` ([`Error::is_conflict`]).
    pub async fn replace(&self, params: &PostParams, object: &K) -> Result<K> {
        let name = object
            .meta()
            .name
            .as_deref()
            .ok_or_else(|| Error::MissingName {
                resource: ResourceInfo::of::<K>().group_resource(),
            })?;
        self.raw.replace_as(name, params, object).await
    }

    /// Applies an RFC 7386 JSON merge patch (`null` deletes a key, objects merge, arrays are
    /// replaced).
    pub async fn patch_merge<P: Serialize + ?Sized>(
        &self,
        name: &str,
        params: &PatchParams,
        patch: &P,
    ) -> Result<K> {
        self.raw.patch_merge_as(name, params, patch).await
    }

    /// Applies an RFC 7386 JSON merge patch to the `/status` subresource: only `status`
    /// changes (the server ignores the rest of the patch), e.g.
    /// `api.patch_status("web-1", &json!({"status": {"phase": "Running"}}))`.
    pub async fn patch_status(&self, name: &str, patch: &serde_json::Value) -> Result<K> {
        self.raw.patch_status_as(name, patch).await
    }

    /// Deletes an object.
    pub async fn delete(&self, name: &str, params: &DeleteParams) -> Result<Deleted<K>> {
        self.raw.delete_as(name, params).await
    }

    /// Watches from `resource_version` — typically a list's `metadata.resourceVersion`; empty
    /// starts with the current state as ADDED events. The stream ends when the server closes
    /// it; an `Error` event with 410 `Expired` means: relist and watch again.
    pub async fn watch(
        &self,
        params: &WatchParams,
        resource_version: &str,
    ) -> Result<BoxStream<'static, Result<WatchEvent<K>>>> {
        self.raw.watch_as(params, resource_version).await
    }
}
