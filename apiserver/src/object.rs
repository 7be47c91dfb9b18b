//! Objects as the server handles them: JSON values with typed access to `metadata`, converted
//! to and from store values. The stored JSON never carries `resourceVersion`; it is filled from
//! the key's `mod_revision` on every read, so it cannot go stale.

use pacer_schemas::{ObjectMeta, Time};
use pacer_store::{KeyValue, Revision};
use serde_json::Value;

use crate::error::ApiError;

/// An object read from the store, with `metadata.resourceVersion` set to the key's
/// `mod_revision`.
pub fn from_store(kv: &KeyValue) -> Result<Value, ApiError> {
    from_store_bytes(&kv.key, &kv.value, kv.mod_revision)
}

/// An object from stored bytes, with `metadata.resourceVersion` set to `revision`.
pub fn from_store_bytes(key: &str, value: &[u8], revision: Revision) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(value).map_err(|error| {
        ApiError::Internal(format!("stored value of {key} is not JSON: {error}"))
    })?;
    set_resource_version(&mut object, revision);
    Ok(object)
}

/// The bytes to store for `object`: its JSON without `metadata.resourceVersion`.
pub fn to_store(object: &Value) -> Result<Vec<u8>, ApiError> {
    let mut copy = object.clone();
    if let Some(metadata) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    serde_json::to_vec(&copy).map_err(|error| ApiError::Internal(format!("encode object: {error}")))
}

/// Sets `metadata.resourceVersion` (creating `metadata` if needed).
pub fn set_resource_version(object: &mut Value, revision: Revision) {
    if let Some(root) = object.as_object_mut() {
        let metadata = root
            .entry("metadata")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.insert(
                "resourceVersion".to_owned(),
                Value::String(revision.to_string()),
            );
        }
    }
}

/// Removes `metadata.resourceVersion`.
pub fn clear_resource_version(object: &mut Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
}

/// The object's `metadata.resourceVersion`, when set and non-empty.
pub fn resource_version(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|version| !version.is_empty())
}

/// The object's metadata, typed (400 when it has the wrong shape).
pub fn meta(object: &Value) -> Result<ObjectMeta, ApiError> {
    match object.get("metadata") {
        None | Some(Value::Null) => Ok(ObjectMeta::default()),
        Some(metadata) => serde_json::from_value(metadata.clone())
            .map_err(|error| ApiError::BadRequest(format!("metadata: {error}"))),
    }
}

/// The JSON names of `ObjectMeta`'s fields (a test checks the list is complete).
const META_FIELDS: [&str; 14] = [
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "managedFields",
];

/// Writes `meta` into the object's metadata. Keys `ObjectMeta` does not know are kept, so that
/// admission can still report (or reject) them as unknown fields.
pub fn set_meta(object: &mut Value, meta: &ObjectMeta) -> Result<(), ApiError> {
    let Value::Object(encoded) = serde_json::to_value(meta)
        .map_err(|error| ApiError::Internal(format!("encode metadata: {error}")))?
    else {
        return Err(ApiError::Internal(
            "metadata did not encode as an object".to_owned(),
        ));
    };
    if let Some(root) = object.as_object_mut() {
        let mut metadata = match root.remove("metadata") {
            Some(Value::Object(existing)) => existing,
            _ => serde_json::Map::new(),
        };
        metadata.retain(|key, _| !META_FIELDS.contains(&key.as_str()));
        metadata.extend(encoded);
        root.insert("metadata".to_owned(), Value::Object(metadata));
    }
    Ok(())
}

/// Sets one annotation of the object (400 when its metadata has the wrong shape).
pub fn set_annotation(object: &mut Value, key: &str, value: &str) -> Result<(), ApiError> {
    let mut meta = meta(object)?;
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(key.to_owned(), value.to_owned());
    set_meta(object, &meta)
}

/// `metadata.name`, or `""`.
pub fn name(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.uid`, or `""`.
pub fn uid(object: &Value) -> &str {
    object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Whether two objects are the same apart from `resourceVersion`.
pub fn same_ignoring_version(left: &Value, right: &Value) -> bool {
    let mut left = left.clone();
    let mut right = right.clone();
    clear_resource_version(&mut left);
    clear_resource_version(&mut right);
    left == right
}

/// Now, to the second (as Kubernetes stores timestamps).
pub fn now() -> Time {
    let now = jiff::Timestamp::now();
    Time::from_unix_seconds(now.as_second()).unwrap_or_else(|| Time::new(now))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn meta_field_list_is_complete() {
        let full = ObjectMeta {
            name: Some("a".into()),
            generate_name: Some("a".into()),
            namespace: Some("a".into()),
            labels: Some(Default::default()),
            annotations: Some(Default::default()),
            uid: Some("a".into()),
            resource_version: Some("1".into()),
            generation: Some(1),
            creation_timestamp: Some(now()),
            deletion_timestamp: Some(now()),
            deletion_grace_period_seconds: Some(0),
            finalizers: Some(Vec::new()),
            owner_references: Some(Vec::new()),
            managed_fields: Some(Vec::new()),
        };
        let encoded = serde_json::to_value(&full).unwrap();
        let mut keys: Vec<&str> = encoded
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = META_FIELDS.to_vec();
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        let mut object = json!({"metadata": {"name": "x", "flavour": 1}});
        set_meta(&mut object, &ObjectMeta::named("ns", "y")).unwrap();
        assert_eq!(
            object,
            json!({"metadata": {"name": "y", "namespace": "ns", "flavour": 1}})
        );
    }

    #[test]
    fn resource_version_comes_from_the_store_not_the_value() {
        let kv = KeyValue {
            key: "/registry/apps/default/web".into(),
            value: br#"{"metadata":{"name":"web","resourceVersion":"1"}}"#.to_vec(),
            create_revision: 3,
            mod_revision: 7,
            version: 2,
            lease: None,
        };
        let object = from_store(&kv).unwrap();
        assert_eq!(resource_version(&object), Some("7"));
        let stored: Value = serde_json::from_slice(&to_store(&object).unwrap()).unwrap();
        assert_eq!(stored, json!({"metadata": {"name": "web"}}));
        assert!(same_ignoring_version(&object, &stored));
    }
}
