//! Client-side apply's three-way merge, as `kubectl apply` does it for custom resources: the
//! manifest as applied last time (kept in the `kubectl.kubernetes.io/last-applied-configuration`
//! annotation), the manifest now, and the live object give an RFC 7386 merge patch that
//!
//! - sets what the manifest says where the live object differs,
//! - deletes (`null`) what the previous manifest had and this one dropped,
//! - leaves alone what only the server or other writers set (status, defaults, other labels).
//!
//! Arrays are replaced whole by a merge patch. To stay idempotent when the server fills
//! defaults inside array elements (health checks, port definitions), an array is sent only when
//! the manifest changed it since the last apply, or when the live array no longer contains
//! what the manifest says (its elements are not supersets of the manifest's). Numbers compare
//! by value (`1` equals `1.0`).

use serde_json::{Map, Value};

/// The annotation that records the last applied manifest (kubectl's, so that `kubectl apply`
/// and `pacer apply` share it).
pub(crate) const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Metadata fields only the server writes; dropped from manifests before applying so that
/// `pacer get -o yaml` output can be applied back.
const SERVER_METADATA: &[&str] = &[
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
];

/// The object to send for a manifest: without server-owned fields and `status`, with
/// `metadata.namespace` set (for namespaced kinds), and with the last-applied annotation
/// holding exactly that object.
pub(crate) fn prepare(manifest: &Value, namespace: Option<&str>) -> Value {
    let mut object = manifest.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        let metadata = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(metadata) = metadata.as_object_mut() {
            for field in SERVER_METADATA {
                metadata.remove(*field);
            }
            if let Some(namespace) = namespace {
                metadata.insert("namespace".into(), Value::String(namespace.to_owned()));
            }
            let mut drop_annotations = false;
            if let Some(annotations) = metadata
                .get_mut("annotations")
                .and_then(Value::as_object_mut)
            {
                annotations.remove(LAST_APPLIED);
                drop_annotations = annotations.is_empty();
            }
            if drop_annotations {
                metadata.remove("annotations");
            }
        }
    }
    let recorded = object.to_string();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(LAST_APPLIED.into(), Value::String(recorded));
        }
    }
    object
}

/// The manifest recorded on a live object by the previous apply, if any.
pub(crate) fn last_applied(live: &Value) -> Option<Value> {
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    serde_json::from_str(text).ok()
}

/// The merge patch that takes `current` to what `modified` asks, given that `original` was
/// applied before (see the module docs). Empty when nothing needs to change.
pub(crate) fn three_way_patch(
    original: Option<&Value>,
    modified: &Value,
    current: &Value,
) -> Map<String, Value> {
    match modified.as_object() {
        Some(modified) => diff_objects(
            original.and_then(Value::as_object),
            modified,
            current.as_object(),
            original.is_some(),
        ),
        None => Map::new(),
    }
}

/// Whether two JSON values are equal, numbers compared by value.
pub(crate) fn same(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => {
            left == right || matches!((left.as_f64(), right.as_f64()), (Some(l), Some(r)) if l == r)
        }
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len() && left.iter().zip(right).all(|(l, r)| same(l, r))
        }
        (Value::Object(left), Value::Object(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .all(|(key, l)| right.get(key).is_some_and(|r| same(l, r)))
        }
        _ => left == right,
    }
}

/// Whether `current` contains everything `wanted` says (extra keys in objects allowed, arrays
/// element by element).
fn contains(current: &Value, wanted: &Value) -> bool {
    match (current, wanted) {
        (Value::Object(current), Value::Object(wanted)) => {
            wanted.iter().all(|(key, wanted)| match current.get(key) {
                Some(current) => contains(current, wanted),
                None => wanted.is_null(),
            })
        }
        (Value::Array(current), Value::Array(wanted)) => {
            current.len() == wanted.len()
                && current
                    .iter()
                    .zip(wanted)
                    .all(|(current, wanted)| contains(current, wanted))
        }
        _ => same(current, wanted),
    }
}

fn diff_objects(
    original: Option<&Map<String, Value>>,
    modified: &Map<String, Value>,
    current: Option<&Map<String, Value>>,
    have_original: bool,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, wanted) in modified {
        let live = current.and_then(|current| current.get(key));
        let before = original.and_then(|original| original.get(key));
        match (wanted, live) {
            (Value::Null, None | Some(Value::Null)) => {}
            (Value::Object(wanted_map), Some(Value::Object(live_map))) => {
                let nested = diff_objects(
                    before.and_then(Value::as_object),
                    wanted_map,
                    Some(live_map),
                    have_original,
                );
                if !nested.is_empty() {
                    patch.insert(key.clone(), Value::Object(nested));
                }
            }
            (Value::Array(_), Some(live)) => {
                let changed_in_manifest = before.is_some_and(|before| !same(before, wanted))
                    || (have_original && before.is_none() && !same(live, wanted));
                if changed_in_manifest || !contains(live, wanted) {
                    patch.insert(key.clone(), wanted.clone());
                }
            }
            (_, Some(live)) if same(live, wanted) => {}
            _ => {
                patch.insert(key.clone(), wanted.clone());
            }
        }
    }
    if let Some(original) = original {
        for key in original.keys() {
            let dropped = !modified.contains_key(key);
            let present =
                current.is_some_and(|current| current.get(key).is_some_and(|v| !v.is_null()));
            if dropped && present {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }
    patch
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn manifest() -> Value {
        json!({"apiVersion": "pacer.dev/v1", "kind": "App",
               "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"cmd": "serve", "instances": 2, "cpus": 1,
                        "healthChecks": [{"protocol": "HTTP", "path": "/"}]}})
    }

    /// What the server might store: defaults filled (also inside arrays), status, metadata.
    fn live_from(applied: &Value) -> Value {
        let mut live = applied.clone();
        live["metadata"]["resourceVersion"] = json!("7");
        live["metadata"]["uid"] = json!("u-1");
        live["metadata"]["labels"]["owner"] = json!("someone-else");
        live["spec"]["cpus"] = json!(1.0);
        live["spec"]["mem"] = json!(128);
        live["spec"]["healthChecks"][0]["gracePeriodSeconds"] = json!(300);
        live["status"] = json!({"running": 2});
        live
    }

    #[test]
    fn prepare_records_the_manifest_and_drops_server_fields() {
        let mut from_get = manifest();
        from_get["metadata"]["resourceVersion"] = json!("9");
        from_get["metadata"]["annotations"] = json!({LAST_APPLIED: "{}"});
        from_get["status"] = json!({"running": 1});
        let prepared = prepare(&from_get, Some("shop"));
        assert_eq!(prepared["metadata"]["namespace"], "shop");
        assert!(prepared.get("status").is_none());
        assert!(prepared["metadata"].get("resourceVersion").is_none());
        let recorded = last_applied(&prepared).unwrap();
        assert_eq!(recorded["spec"], manifest()["spec"]);
        assert!(recorded["metadata"].get("annotations").is_none());
        assert_eq!(prepare(&from_get, Some("shop")), prepared, "deterministic");
    }

    #[test]
    fn reapplying_the_same_manifest_changes_nothing() {
        let applied = prepare(&manifest(), Some("default"));
        let live = live_from(&applied);
        let patch = three_way_patch(last_applied(&live).as_ref(), &applied, &live);
        assert!(patch.is_empty(), "{patch:?}");
    }

    #[test]
    fn changes_and_removals_become_a_merge_patch() {
        let applied = prepare(&manifest(), Some("default"));
        let live = live_from(&applied);
        let mut next = manifest();
        next["spec"]["instances"] = json!(3);
        next["spec"].as_object_mut().unwrap().remove("cpus");
        next["spec"]["healthChecks"][0]["path"] = json!("/health");
        let next = prepare(&next, Some("default"));
        let patch = three_way_patch(last_applied(&live).as_ref(), &next, &live);
        let annotation = next["metadata"]["annotations"][LAST_APPLIED].clone();
        assert_eq!(
            Value::Object(patch),
            json!({"metadata": {"annotations": {LAST_APPLIED: annotation}},
                   "spec": {"instances": 3, "cpus": null,
                            "healthChecks": [{"protocol": "HTTP", "path": "/health"}]}})
        );
    }

    #[test]
    fn drift_in_live_arrays_is_repaired_and_others_labels_kept() {
        let applied = prepare(&manifest(), Some("default"));
        let mut live = live_from(&applied);
        live["spec"]["healthChecks"][0]["path"] = json!("/changed-by-hand");
        let patch = three_way_patch(last_applied(&live).as_ref(), &applied, &live);
        assert_eq!(
            Value::Object(patch),
            json!({"spec": {"healthChecks": [{"protocol": "HTTP", "path": "/"}]}})
        );
    }

    #[test]
    fn objects_without_annotation_get_only_what_differs() {
        let applied = prepare(&manifest(), Some("default"));
        let mut live = live_from(&applied);
        live["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        live["spec"]["instances"] = json!(5);
        let patch = three_way_patch(None, &applied, &live);
        assert_eq!(patch["spec"], json!({"instances": 2}));
        assert!(patch["metadata"]["annotations"].get(LAST_APPLIED).is_some());
        assert!(same(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!same(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    }
}
