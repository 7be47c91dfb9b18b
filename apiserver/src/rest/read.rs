//! GET of one object and LIST of a collection (one namespace or all of them), with label and
//! field selectors and `limit`/`continue` paging passed through to the store. Lists carry the
//! store revision they were read at as `metadata.resourceVersion`, so a watch can start there.
//! Either answers with a `Table` instead when the `Accept` header asks for one (see `table`).
//!
//! Selectors filter each page after the store returns it (as Kubernetes does on etcd): a page
//! may hold fewer than `limit` items, even none, while `metadata.continue` says more follow.

use axum::http::StatusCode;
use axum::response::Response;
use pacer_store::ListOptions;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::object;
use crate::rest::{ResourceRequest, json_response};
use crate::selector::Selectors;
use crate::table;

/// `GET …/{plural}/{name}` (and `…/status`): the object with its current `resourceVersion`.
pub async fn get(request: ResourceRequest) -> Result<Response, ApiError> {
    let kind = request.target.kind;
    let key = request.key();
    let kv = request
        .state
        .store
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind,
            name: request.name().to_owned(),
        })?;
    let object = object::from_store(&kv)?;
    if table::wants_table(&request.headers) {
        let metadata = json!({"resourceVersion": kv.mod_revision.to_string()});
        let table = table::table(kind, std::slice::from_ref(&object), metadata, true);
        return Ok(json_response(StatusCode::OK, &table, &[]));
    }
    Ok(json_response(StatusCode::OK, &object, &[]))
}

/// `GET …/{plural}`: one page of the collection.
pub async fn list(request: ResourceRequest) -> Result<Response, ApiError> {
    let kind = request.target.kind;
    let params = &request.params;
    let selectors = Selectors {
        labels: params.label_selector.clone(),
        fields: params.field_selector.clone(),
    };
    let options = ListOptions {
        limit: params.limit,
        continue_token: params.continue_token.clone(),
        revision: params
            .resource_version
            .filter(|_| params.resource_version_exact && params.continue_token.is_none()),
    };
    let prefix = kind.prefix(request.target.namespace.as_deref());
    let page = request.state.store.list(&prefix, &options).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for kv in &page.items {
        let item = object::from_store(kv)?;
        if selectors.matches(&item) {
            items.push(item);
        }
    }
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = page.continue_token {
        metadata["continue"] = Value::String(token);
    }
    if table::wants_table(&request.headers) {
        let table = table::table(kind, &items, metadata, true);
        return Ok(json_response(StatusCode::OK, &table, &[]));
    }
    let list = json!({
        "apiVersion": pacer_schemas::API_VERSION,
        "kind": kind.list_kind,
        "metadata": metadata,
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &list, &[]))
}
