//! GET of one object and LIST of a collection (one namespace or all of them), with label and
//! field selectors and `limit`/`continue` paging passed through to the store. Lists carry the
//! store revision they were read at as `metadata.resourceVersion`, so a watch can start there.
//! Either answers with a `Table` instead when the `Accept` header asks for one (see `table`).
//!
//! Selectors filter each page after the store returns it (as Kubernetes does on etcd): a page
//! may hold fewer than `limit` items, even none, while `metadata.continue` says more follow.
//!
//! JSON answers are written straight from the stored bytes: each object's top level and its
//! `metadata` are split into raw (unparsed) values, `metadata.resourceVersion` is added in its
//! key order, and the rest is copied byte for byte — the same JSON as decoding the object into
//! a `Value`, setting the field and encoding it again, at a fraction of the cost (a LIST of
//! 10,000 objects is mostly this loop). Label selectors alone decode only `metadata`.
//! An object this cannot split (not a JSON object, escaped keys, metadata not an object) goes
//! through the `Value` path, which also reports corrupt values. A `Table` list is written row
//! by row too, each object decoded once (its cells may read any field).

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pacer_store::{KeyValue, ListOptions, Revision};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::kinds::KindDef;
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
        if filtering && !selectors.matches(&selector_view(kv, &selectors)?) {
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

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), ApiError> {
    serde_json::to_writer(&mut *out, value)
        .map_err(|error| ApiError::Internal(format!("encode JSON: {error}")))
}

/// Writes the stored object `kv` with `metadata.resourceVersion` set to its `mod_revision`:
/// byte for byte what encoding [`object::from_store`]'s `Value` would write.
fn write_object(out: &mut Vec<u8>, kv: &KeyValue) -> Result<(), ApiError> {
    // Not an object, an escaped key, `metadata` not an object (`null`, say): the slow path
    // does what `Value` does with it.
    let Ok(split) = serde_json::from_slice::<SplitObject<'_>>(&kv.value) else {
        return write_object_slowly(out, kv);
    };
    out.push(b'{');
    let mut wrote_metadata = false;
    let mut first = true;
    for (key, raw) in &split.members {
        if *key > "metadata" && !wrote_metadata {
            write_metadata(out, &mut first, split.metadata.as_ref(), kv.mod_revision)?;
            wrote_metadata = true;
        }
        write_member(out, &mut first, key, raw.get().as_bytes())?;
    }
    if !wrote_metadata {
        write_metadata(out, &mut first, split.metadata.as_ref(), kv.mod_revision)?;
    }
    out.push(b'}');
    Ok(())
}

/// A stored object split in one pass: its members other than `metadata` as raw JSON, and
/// `metadata`'s members as raw JSON, each in key order (the last of duplicate keys wins, as
/// in a `Value`). Fails unless the object and its `metadata` are objects whose keys have no
/// escapes (they cannot be borrowed).
struct SplitObject<'a> {
    members: BTreeMap<&'a str, &'a RawValue>,
    metadata: Option<BTreeMap<&'a str, &'a RawValue>>,
}

impl<'de> Deserialize<'de> for SplitObject<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> serde::de::Visitor<'de> for ObjectVisitor {
            type Value = SplitObject<'de>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = BTreeMap::new();
                let mut metadata = None;
                while let Some(key) = map.next_key::<&'de str>()? {
                    if key == "metadata" {
                        metadata = Some(map.next_value()?);
                    } else {
                        members.insert(key, map.next_value()?);
                    }
                }
                Ok(SplitObject { members, metadata })
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// `"metadata":{…}` with `resourceVersion` among the other members in key order.
fn write_metadata(
    out: &mut Vec<u8>,
    first: &mut bool,
    metadata: Option<&BTreeMap<&str, &RawValue>>,
    revision: Revision,
) -> Result<(), ApiError> {
    if !std::mem::take(first) {
        out.push(b',');
    }
    out.extend_from_slice(b"\"metadata\":{");
    let version = format!("\"{revision}\"");
    let mut inner_first = true;
    let mut wrote_version = false;
    for (key, raw) in metadata.into_iter().flatten() {
        if *key == "resourceVersion" {
            continue;
        }
        if *key > "resourceVersion" && !wrote_version {
            write_member(out, &mut inner_first, "resourceVersion", version.as_bytes())?;
            wrote_version = true;
        }
        write_member(out, &mut inner_first, key, raw.get().as_bytes())?;
    }
    if !wrote_version {
        write_member(out, &mut inner_first, "resourceVersion", version.as_bytes())?;
    }
    out.push(b'}');
    Ok(())
}

fn write_member(
    out: &mut Vec<u8>,
    first: &mut bool,
    key: &str,
    raw: &[u8],
) -> Result<(), ApiError> {
    if !std::mem::take(first) {
        out.push(b',');
    }
    write_json(out, key)?;
    out.push(b':');
    out.extend_from_slice(raw);
    Ok(())
}

fn write_object_slowly(out: &mut Vec<u8>, kv: &KeyValue) -> Result<(), ApiError> {
    write_json(out, &object::from_store(kv)?)
}

/// A stored object's `metadata` alone, the rest skipped unparsed.
#[derive(Deserialize)]
struct MetadataOnly {
    #[serde(default)]
    metadata: Option<Value>,
}

/// What [`Selectors::matches`] needs of the stored object `kv`: a label selector reads only
/// `metadata.labels`, so without a field selector only `metadata` is decoded; a field selector
/// may read any field, so it gets the whole object.
fn selector_view(kv: &KeyValue, selectors: &Selectors) -> Result<Value, ApiError> {
    if selectors.fields.is_empty()
        && let Ok(MetadataOnly { metadata }) = serde_json::from_slice(&kv.value)
    {
        let mut view = serde_json::Map::new();
        if let Some(metadata) = metadata {
            view.insert("metadata".to_owned(), metadata);
        }
        return Ok(Value::Object(view));
    }
    object::from_store(kv)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::selector::{FieldSelector, parse_labels};

    fn kv(value: &str) -> KeyValue {
        KeyValue {
            key: "/registry/apps/default/web".into(),
            value: value.as_bytes().to_vec(),
            create_revision: 3,
            mod_revision: 42,
            version: 1,
            lease: None,
        }
    }

    /// What the `Value` path writes.
    fn slowly(kv: &KeyValue) -> String {
        serde_json::to_string(&object::from_store(kv).unwrap()).unwrap()
    }

    #[test]
    fn objects_are_written_as_the_value_path_writes_them() {
        let cases = [
            r#"{"apiVersion":"pacer.dev/v1","kind":"App","metadata":{"name":"web","namespace":"default","uid":"u"},"spec":{"instances":1}}"#,
            r#"{"apiVersion":"pacer.dev/v1","metadata":{"annotations":{"a":"b"},"name":"web","resourceVersion":"7"}}"#,
            r#"{"kind":"App","spec":{"cmd":"x"}}"#,
            r#"{"metadata":{}}"#,
            r#"{"metadata":{"uid":"u","zeta":1}}"#,
            r#"{"apiVersion":"v","metadata":null}"#,
            r#"{"a\"b":1,"metadata":{"name":"x"}}"#,
            r#"{"metadata":{"x\"y":1,"name":"x"}}"#,
            r#"{"metadata":{"name":"a"},"kind":"K","metadata":{"name":"b"}}"#,
            r#"{}"#,
            r#"[1,2]"#,
            r#"{"spec":{"z":1,"a":[1.5,"é\u0001"]},"metadata":{"name":"web"},"apiVersion":"x"}"#,
        ];
        for case in cases {
            let kv = kv(case);
            let mut fast = Vec::new();
            write_object(&mut fast, &kv).unwrap();
            let fast = String::from_utf8(fast).unwrap();
            if case.starts_with(r#"{"spec""#) {
                // Members the store holds out of key order keep their stored order: same JSON.
                assert_eq!(
                    serde_json::from_str::<Value>(&fast).unwrap(),
                    serde_json::from_str::<Value>(&slowly(&kv)).unwrap()
                );
            } else {
                assert_eq!(fast, slowly(&kv), "{case}");
            }
        }
        let mut out = Vec::new();
        let error = write_object(&mut out, &kv("{not json")).unwrap_err();
        assert!(error.to_string().contains("is not JSON"), "{error}");
    }

    #[test]
    fn selectors_on_the_view_match_as_on_the_whole_object() {
        let objects = [
            r#"{"metadata":{"name":"web","namespace":"prod","labels":{"app":"web","n":1},"uid":"u"},"spec":{"nodeName":"n1"}}"#,
            r#"{"metadata":{"name":"db","namespace":"default"}}"#,
            r#"{"spec":{}}"#,
            r#"{"metadata":null}"#,
        ];
        let selectors = [
            ("app=web", ""),
            ("!n", ""),
            ("app", "metadata.namespace=prod"),
            ("", "metadata.name!=web"),
            ("", "metadata.name=db"),
            ("!app", ""),
            ("app=web", "spec.nodeName=n1"),
            ("", "spec.nodeName!="),
        ];
        for object in objects {
            let kv = kv(object);
            let whole = object::from_store(&kv).unwrap();
            for (labels, fields) in selectors {
                let selector = Selectors {
                    labels: parse_labels(labels).unwrap(),
                    fields: FieldSelector::parse(fields).unwrap(),
                };
                let view = selector_view(&kv, &selector).unwrap();
                assert_eq!(
                    selector.matches(&view),
                    selector.matches(&whole),
                    "{object} with {labels:?} {fields:?}"
                );
            }
        }
    }
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
