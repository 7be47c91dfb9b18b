//! Writing stored objects as JSON straight from their stored bytes, shared by GET/LIST
//! (`rest::read`) and WATCH (`watch::event`): each object's top level and its `metadata` are
//! split into raw (unparsed) values, `metadata.resourceVersion` is added in its key order, and
//! the rest is copied byte for byte — the same JSON as decoding the object into a `Value`,
//! setting the field and encoding it again, at a fraction of the cost. An object this cannot
//! split (not a JSON object, escaped keys, metadata not an object) goes through the `Value`
//! path, which also reports corrupt values. Selectors get a partial decode (see
//! [`selector_view`]).
//!
//! Byte for byte means: for values stored as the API server stores them (`object::to_store`,
//! every object's keys sorted). Nested objects stored in another key order (controllers store
//! typed structs, in field order) keep their stored order — the same JSON, other bytes.

use std::collections::BTreeMap;

use pacer_store::{KeyValue, Revision};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::object;

/// Appends `value` encoded as JSON.
pub(crate) fn write_json<T: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), ApiError> {
    serde_json::to_writer(&mut *out, value)
        .map_err(|error| ApiError::Internal(format!("encode JSON: {error}")))
}

/// Writes the stored object `kv` with `metadata.resourceVersion` set to its `mod_revision`:
/// byte for byte what encoding [`object::from_store`]'s `Value` would write.
pub(crate) fn write_object(out: &mut Vec<u8>, kv: &KeyValue) -> Result<(), ApiError> {
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

/// What selectors read of a stored object: `metadata` and `spec.nodeName` (the fields
/// `FieldSelector` knows), the rest skipped unparsed. Duplicate keys or a `spec` that is not an
/// object fail it, and the caller decodes the whole object instead.
#[derive(Deserialize)]
struct SelectedFields {
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    spec: Option<NodeNameOnly>,
}

#[derive(Deserialize)]
struct NodeNameOnly {
    #[serde(default, rename = "nodeName")]
    node_name: Option<Value>,
}

/// What [`Selectors::matches`](crate::selector::Selectors::matches) needs of the stored object
/// `kv`: label selectors read only `metadata.labels`, field selectors only `metadata.name`,
/// `metadata.namespace` and `spec.nodeName`, so only those are decoded (the whole object when
/// that fails, which also reports a corrupt value). Keep [`SelectedFields`] in step with `FieldSelector`'s fields.
pub(crate) fn selector_view(kv: &KeyValue) -> Result<Value, ApiError> {
    // A derived struct also decodes from an array (by position): objects only.
    if kv.value.trim_ascii_start().starts_with(b"{")
        && let Ok(SelectedFields { metadata, spec }) = serde_json::from_slice(&kv.value)
    {
        let mut view = serde_json::Map::new();
        if let Some(metadata) = metadata {
            view.insert("metadata".to_owned(), metadata);
        }
        if let Some(NodeNameOnly {
            node_name: Some(node_name),
        }) = spec
        {
            view.insert(
                "spec".to_owned(),
                serde_json::json!({ "nodeName": node_name }),
            );
        }
        return Ok(Value::Object(view));
    }
    object::from_store(kv)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::selector::{FieldSelector, Selectors, parse_labels};

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
            r#"{"metadata":{"name":"x"},"spec":"n1"}"#,
            r#"{"metadata":{"name":"x"},"spec":null}"#,
            r#"{"metadata":{"name":"x"},"spec":{"nodeName":7}}"#,
            r#"{"metadata":{"name":"x"},"spec":{"nodeName":"n1","nodeName":"n2"}}"#,
            r#"{"metadata":{"name":"x"},"spec":{"nodeName":null}}"#,
            r#"{"metadata":{"name":"a"},"metadata":{"name":"web"}}"#,
            r#"[1]"#,
            r#"[{"labels":{"app":"web"},"name":"web"},{"nodeName":"n1"}]"#,
            r#" {"metadata":{"name":"web"}}"#,
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
            ("", "spec.nodeName=n2"),
            ("", "metadata.name=web"),
        ];
        for object in objects {
            let kv = kv(object);
            let whole = object::from_store(&kv).unwrap();
            for (labels, fields) in selectors {
                let selector = Selectors {
                    labels: parse_labels(labels).unwrap(),
                    fields: FieldSelector::parse(fields).unwrap(),
                };
                let view = selector_view(&kv).unwrap();
                assert_eq!(
                    selector.matches(&view),
                    selector.matches(&whole),
                    "{object} with {labels:?} {fields:?}"
                );
            }
        }
    }
}
