//! `DynamicApi`: the untyped client for one resource (keyed by its `ResourceInfo`, e.g.
//! resolved from a plural) and one namespace, with objects as JSON values. [`crate::Api`] is
//! its typed face; both share the request code here.

use futures::StreamExt;
use futures::stream::BoxStream;
use pacer_schemas::{List, ListMeta, Status};
use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::params::{DeleteParams, Deleted, ListParams, PatchParams, PostParams, WatchParams};
use crate::resource::ResourceInfo;
use crate::watch::WatchEvent;

/// A list as decoded here: `pacer_schemas::List<T>` derives its `Deserialize` with a
/// `T: Default` bound that typed objects need not meet.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireList<T> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

const JSON: &str = "application/json";
const MERGE_PATCH: &str = "application/merge-patch+json";

/// The untyped client for one resource in one namespace (or across all namespaces, or
/// cluster-scoped).
#[derive(Clone, Debug)]
pub struct DynamicApi {
    client: Client,
    resource: ResourceInfo,
    namespace: Option<String>,
}

impl DynamicApi {
    /// Objects of `resource` in `namespace`; the namespace is ignored for cluster-scoped
    /// kinds.
    pub fn namespaced(client: Client, resource: ResourceInfo, namespace: &str) -> Self {
        let namespace = resource.namespaced.then(|| namespace.to_owned());
        Self {
            client,
            resource,
            namespace,
        }
    }

    /// Objects of `resource` in every namespace (lists and watches only, for namespaced
    /// kinds), or a cluster-scoped kind.
    pub fn all(client: Client, resource: ResourceInfo) -> Self {
        Self {
            client,
            resource,
            namespace: None,
        }
    }

    /// The resource addressed.
    pub fn resource(&self) -> &ResourceInfo {
        &self.resource
    }

    /// The namespace addressed, `None` for all namespaces or a cluster-scoped kind.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Reads one object.
    pub async fn get(&self, name: &str) -> Result<Value> {
        self.get_as(name).await
    }

    /// Reads one object, `None` when it does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<Value>> {
        self.get_opt_as(name).await
    }

    /// Lists one page of objects.
    pub async fn list(&self, params: &ListParams) -> Result<List<Value>> {
        self.list_as(params).await
    }

    /// Lists every object, following `continue` tokens; the result carries the last page's
    /// `resourceVersion`.
    pub async fn list_all(&self, params: &ListParams) -> Result<List<Value>> {
        self.list_all_as(params).await
    }

    /// Creates an object.
    pub async fn create(&self, params: &PostParams, object: &Value) -> Result<Value> {
        self.create_as(params, object).await
    }

    /// Replaces an object (a compare-and-swap when it carries `metadata.resourceVersion`).
    pub async fn replace(&self, name: &str, params: &PostParams, object: &Value) -> Result<Value> {
        self.replace_as(name, params, object).await
    }

    /// Applies an RFC 7386 JSON merge patch.
    pub async fn patch_merge(
        &self,
        name: &str,
        params: &PatchParams,
        patch: &Value,
    ) -> Result<Value> {
        self.patch_merge_as(name, params, patch).await
    }

    /// Deletes an object.
    pub async fn delete(&self, name: &str, params: &DeleteParams) -> Result<Deleted<Value>> {
        self.delete_as(name, params).await
    }

    /// Watches from `resource_version` (empty: the current state as ADDED events first).
    pub async fn watch(
        &self,
        params: &WatchParams,
        resource_version: &str,
    ) -> Result<BoxStream<'static, Result<WatchEvent<Value>>>> {
        self.watch_as(params, resource_version).await
    }

    pub(crate) async fn get_as<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let url = self.item_url(name, "get", &[])?;
        self.client.send_json(Method::GET, url, None).await
    }

    pub(crate) async fn get_opt_as<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match self.get_as(name).await {
            Ok(object) => Ok(Some(object)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub(crate) async fn list_as<T: DeserializeOwned>(
        &self,
        params: &ListParams,
    ) -> Result<List<T>> {
        let url = self.collection_url(&params.query())?;
        let page: WireList<T> = self.client.send_json(Method::GET, url, None).await?;
        Ok(List {
            api_version: page.api_version,
            kind: page.kind,
            metadata: page.metadata,
            items: page.items,
        })
    }

    pub(crate) async fn list_all_as<T: DeserializeOwned>(
        &self,
        params: &ListParams,
    ) -> Result<List<T>> {
        let mut page_params = params.clone();
        let mut all: List<T> = self.list_as(&page_params).await?;
        while let Some(token) = all
            .metadata
            .continue_token
            .take()
            .filter(|token| !token.is_empty())
        {
            page_params.continue_token = Some(token);
            let page: List<T> = self.list_as(&page_params).await?;
            all.items.extend(page.items);
            all.metadata = page.metadata;
        }
        all.metadata.remaining_item_count = None;
        Ok(all)
    }

    pub(crate) async fn create_as<T, B>(&self, params: &PostParams, object: &B) -> Result<T>
    where
        T: DeserializeOwned,
        B: Serialize + ?Sized,
    {
        let url = self.collection_url(&params.query())?;
        let body = Client::body(&Method::POST, &url, JSON, object)?;
        self.client.send_json(Method::POST, url, Some(body)).await
    }

    pub(crate) async fn replace_as<T, B>(
        &self,
        name: &str,
        params: &PostParams,
        object: &B,
    ) -> Result<T>
    where
        T: DeserializeOwned,
        B: Serialize + ?Sized,
    {
        let url = self.item_url(name, "replace", &params.query())?;
        let body = Client::body(&Method::PUT, &url, JSON, object)?;
        self.client.send_json(Method::PUT, url, Some(body)).await
    }

    pub(crate) async fn patch_merge_as<T, B>(
        &self,
        name: &str,
        params: &PatchParams,
        patch: &B,
    ) -> Result<T>
    where
        T: DeserializeOwned,
        B: Serialize + ?Sized,
    {
        let url = self.item_url(name, "patch", &params.query())?;
        let body = Client::body(&Method::PATCH, &url, MERGE_PATCH, patch)?;
        self.client.send_json(Method::PATCH, url, Some(body)).await
    }

    /// Merge-patches the `/status` subresource of `name`.
    pub(crate) async fn patch_status_as<T, B>(&self, name: &str, patch: &B) -> Result<T>
    where
        T: DeserializeOwned,
        B: Serialize + ?Sized,
    {
        let url = self.subresource_url(name, "status", "patch")?;
        let body = Client::body(&Method::PATCH, &url, MERGE_PATCH, patch)?;
        self.client.send_json(Method::PATCH, url, Some(body)).await
    }

    pub(crate) async fn delete_as<T: DeserializeOwned>(
        &self,
        name: &str,
        params: &DeleteParams,
    ) -> Result<Deleted<T>> {
        let url = self.item_url(name, "delete", &params.query())?;
        let body = Client::body(&Method::DELETE, &url, JSON, &params.body())?;
        let answer: Value = self
            .client
            .send_json(Method::DELETE, url.clone(), Some(body))
            .await?;
        let decode_error = |source| Error::Decode {
            method: Method::DELETE.to_string(),
            url: url.to_string(),
            source,
        };
        if answer.get("kind").and_then(Value::as_str) == Some("Status") {
            serde_json::from_value::<Status>(answer)
                .map(|status| Deleted::Status(Box::new(status)))
                .map_err(decode_error)
        } else {
            serde_json::from_value::<T>(answer)
                .map(Deleted::Object)
                .map_err(decode_error)
        }
    }

    pub(crate) async fn watch_as<T: DeserializeOwned + Send + 'static>(
        &self,
        params: &WatchParams,
        resource_version: &str,
    ) -> Result<BoxStream<'static, Result<WatchEvent<T>>>> {
        let url = self.collection_url(&params.query(resource_version))?;
        Ok(self.client.watch_lines::<WatchEvent<T>>(url).await?.boxed())
    }

    fn prefix(&self) -> Vec<&str> {
        let mut segments = vec!["apis", self.resource.group, self.resource.version];
        if let Some(namespace) = self
            .namespace
            .as_deref()
            .filter(|_| self.resource.namespaced)
        {
            segments.extend(["namespaces", namespace]);
        }
        segments.push(self.resource.plural);
        segments
    }

    fn collection_url(&self, query: &[(&'static str, String)]) -> Result<Url> {
        self.client.url(&self.prefix(), query)
    }

    fn item_url(
        &self,
        name: &str,
        verb: &'static str,
        query: &[(&'static str, String)],
    ) -> Result<Url> {
        if self.resource.namespaced && self.namespace.is_none() {
            return Err(Error::NamespaceRequired {
                resource: self.resource.group_resource(),
                verb,
            });
        }
        if name.is_empty() {
            return Err(Error::MissingName {
                resource: self.resource.group_resource(),
            });
        }
        let mut segments = self.prefix();
        segments.push(name);
        self.client.url(&segments, query)
    }

    /// The URL of `name`'s `subresource` (e.g. `status`).
    fn subresource_url(&self, name: &str, subresource: &str, verb: &'static str) -> Result<Url> {
        let mut url = self.item_url(name, verb, &[])?;
        let base = url.to_string();
        url.path_segments_mut()
            .map_err(|()| Error::InvalidUrl {
                url: base,
                reason: "it cannot be a base URL".to_owned(),
            })?
            .push(subresource);
        Ok(url)
    }
}
