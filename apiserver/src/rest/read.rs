//! GET of one object and LIST of a collection (one namespace or all of them), with label and
//! field selectors and `limit`/`continue` paging passed through to the store. Lists carry the
//! store revision they were read at as `metadata.resourceVersion`, so a watch can start there.
//! Either answers with a `Table` instead when the `Accept` header asks for one (see `table`).
//!
//! Selectors filter each page after the store returns it (as Kubernetes does on etcd): a page
//! may hold fewer than `limit` items, even none, while `metadata.continue` says more follow.
//!
//! JSON answers are written straight from the stored bytes by `raw_json` (a LIST of 10,000
//! objects is mostly that loop), byte for byte what decoding into a `Value` and encoding it
//! again would write; selectors decode only what they read. A `Table` list is written row by
//! row too, each object decoded once (its cells may read any field).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pacer_store::ListOptions;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::kinds::KindDef;
use crate::object;
use crate::raw_json::{selector_view, write_json, write_object};
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
    if table::wants_table(&request.headers) {
        let object = object::from_store(&kv)?;
        let metadata = json!({"resourceVersion": kv.mod_revision.to_string()});
        let table = table::table(kind, std::slice::from_ref(&object), metadata, true);
        return Ok(json_response(StatusCode::OK, &table, &[]));
    }
    let mut body = Vec::with_capacity(kv.value.len() + 32);
    write_object(&mut body, &kv)?;
    Ok(json_bytes_response(body))
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
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = &page.continue_token {
        metadata["continue"] = Value::String(token.clone());
    }
    if table::wants_table(&request.headers) {
        let mut body = Vec::with_capacity(page.items.len() * 256 + 1024);
        let objects = page.items.iter().map(object::from_store);
        write_table(&mut body, kind, objects, &selectors, &metadata)?;
        return Ok(json_bytes_response(body));
    }
    // `{"apiVersion":…,"items":[…],"kind":…,"metadata":{…}}`: the keys in the order a
    // `Value` would write them.
    let stored: usize = page.items.iter().map(|kv| kv.value.len() + 40).sum();
    let mut body = Vec::with_capacity(stored + 256);
    body.extend_from_slice(b"{\"apiVersion\":");
    write_json(&mut body, &pacer_schemas::API_VERSION)?;
    body.extend_from_slice(b",\"items\":[");
    let filtering = !(selectors.labels.is_empty() && selectors.fields.is_empty());
    let mut first = true;
    for kv in &page.items {
        if filtering && !selectors.matches(&selector_view(kv)?) {
            continue;
        }
        if !first {
            body.push(b',');
        }
        first = false;
        write_object(&mut body, kv)?;
    }
    body.extend_from_slice(b"],\"kind\":");
    write_json(&mut body, &kind.list_kind)?;
    body.extend_from_slice(b",\"metadata\":");
    write_json(&mut body, &metadata)?;
    body.push(b'}');
    Ok(json_bytes_response(body))
}

/// What `table::table` writes for the `objects` that match `selectors`, one row at a time:
/// `{"apiVersion":…,"columnDefinitions":…,"kind":"Table","metadata":…,"rows":[…]}` (the keys in
/// `Value` order), without holding every object and row at once.
fn write_table(
    out: &mut Vec<u8>,
    kind: &KindDef,
    objects: impl Iterator<Item = Result<Value, ApiError>>,
    selectors: &Selectors,
    metadata: &Value,
) -> Result<(), ApiError> {
    let now = jiff::Timestamp::now();
    out.extend_from_slice(b"{\"apiVersion\":\"meta.k8s.io/v1\",\"columnDefinitions\":");
    write_json(out, &table::columns(kind))?;
    out.extend_from_slice(b",\"kind\":\"Table\",\"metadata\":");
    write_json(out, metadata)?;
    out.extend_from_slice(b",\"rows\":[");
    let mut first = true;
    for object in objects {
        let object = object?;
        if !selectors.matches(&object) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_json(out, &table::row(kind, &object, now))?;
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// A `200 OK` with an already encoded JSON body.
fn json_bytes_response(body: Vec<u8>) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::selector::{FieldSelector, parse_labels};

    #[test]
    fn table_lists_are_written_as_table_table_writes_them() {
        let kind = crate::kinds::find("apps").unwrap();
        let objects = [
            json!({"metadata": {"name": "web", "labels": {"tier": "front"}, "managedFields": []},
                   "spec": {"instances": 2}, "status": {"running": 1}}),
            json!({"metadata": {"name": "db"}, "spec": {"instances": 1}}),
        ];
        let metadata = json!({"resourceVersion": "9", "continue": "c"});
        for labels in ["", "tier=front", "tier=back"] {
            let selectors = Selectors {
                labels: parse_labels(labels).unwrap(),
                fields: FieldSelector::default(),
            };
            let mut written = Vec::new();
            let results = objects.iter().cloned().map(Ok);
            write_table(&mut written, kind, results, &selectors, &metadata).unwrap();
            let matching: Vec<Value> = objects
                .iter()
                .filter(|object| selectors.matches(object))
                .cloned()
                .collect();
            let expected = table::table(kind, &matching, metadata.clone(), true);
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&expected).unwrap(),
                "{labels:?}"
            );
        }
    }
}
