//! Field ownership (`metadata.managedFields`) and server-side apply, as pure functions over JSON
//! so they can be tested table by table without a server.
//!
//! Every write records which *field manager* set which fields, in Kubernetes' shape: one
//! `ManagedFieldsEntry` per (manager, operation, subresource) with `fieldsType: FieldsV1` and a
//! `fieldsV1` trie of `f:<field>` keys whose leaves are `{}`.
//!
//! - **Update** (POST, PUT, merge/JSON patch): the manager takes every field whose value the
//!   write changed or added, from whoever owned it; removed fields leave every manager's set.
//!   Never a conflict.
//! - **Apply** (`application/apply-patch+yaml`): the applied configuration is merged into the
//!   live object (objects recursively, everything else replaced); a field the manager applied
//!   last time but no longer does is removed from the object unless another manager owns it.
//!   Changing the *value* of a field another manager owns is a conflict (409, one
//!   `FieldManagerConflict` cause per field and manager) unless `force=true`, which moves
//!   ownership to the applier. Applying the value a field already has shares its ownership.
//!
//! What is tracked: everything but `apiVersion`, `kind`, the server's metadata (only
//! `metadata.labels`, `annotations`, `finalizers` and `ownerReferences` count) and — for kinds
//! with a `status` subresource — `status` on the main resource (`status` writes track only
//! `status`).
//!
//! **Lists are atomic**: a list (`healthChecks`, `constraints`, `portDefinitions`, `env` when a
//! list, …) is one field, owned and replaced as a whole. Kubernetes merges lists by key only for
//! `x-kubernetes-list-type: map` lists, which our schemas do not declare, so atomic is what a
//! real API server would do for them too. `null` in an applied configuration means "not
//! specified".

use std::collections::BTreeSet;

use pacer_schemas::Time;
use pacer_schemas::meta::ManagedFieldsEntry;
use serde_json::{Map, Value};

/// A path to a field from the object's root, e.g. `["spec", "instances"]`.
pub type FieldPath = Vec<String>;

/// The leaf fields a manager owns.
pub type FieldSet = BTreeSet<FieldPath>;

/// `operation` of an entry written by server-side apply.
pub const APPLY: &str = "Apply";
/// `operation` of an entry written by any other write.
pub const UPDATE: &str = "Update";

/// Metadata fields that are part of the desired state (the rest is the server's).
const TRACKED_METADATA: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

/// What a write is, for ownership.
#[derive(Clone, Debug)]
pub struct Manager<'a> {
    /// The field manager (`fieldManager`, or derived from the user agent).
    pub name: &'a str,
    /// `status` for writes to the `/status` subresource, `None` for the object itself.
    pub subresource: Option<&'a str>,
    /// Whether the kind has a `status` subresource (then the main resource does not own status).
    pub status_subresource: bool,
    /// `apiVersion` recorded in the entry.
    pub api_version: &'a str,
    /// `time` recorded in the entry.
    pub time: Time,
}

/// One field another manager owns and an apply would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The owner.
    pub manager: String,
    /// The field, as Kubernetes prints it (`.spec.instances`).
    pub field: String,
}

/// The part of `object` that ownership is tracked on.
pub fn trackable(object: &Value, manager: &Manager<'_>) -> Value {
    let Some(root) = object.as_object() else {
        return Value::Object(Map::new());
    };
    let mut out = Map::new();
    for (key, value) in root {
        let keep = match key.as_str() {
            "apiVersion" | "kind" => false,
            "status" => manager.subresource == Some("status") || !manager.status_subresource,
            _ => manager.subresource != Some("status"),
        };
        if !keep || value.is_null() {
            continue;
        }
        if key == "metadata" {
            let Some(metadata) = value.as_object() else {
                continue;
            };
            let kept: Map<String, Value> = metadata
                .iter()
                .filter(|(field, value)| {
                    TRACKED_METADATA.contains(&field.as_str()) && !value.is_null()
                })
                .map(|(field, value)| (field.clone(), value.clone()))
                .collect();
            if !kept.is_empty() {
                out.insert(key.clone(), Value::Object(kept));
            }
            continue;
        }
        out.insert(key.clone(), value.clone());
    }
    Value::Object(out)
}

/// The leaf fields set in `value`: scalars and lists (atomic); `null` is unset, and an empty
/// object sets nothing (applying `spec: {}` claims no field).
pub fn leaves(value: &Value) -> FieldSet {
    fn walk(value: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    if child.is_null() {
                        continue;
                    }
                    path.push(key.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ if !path.is_empty() => {
                out.insert(path.clone());
            }
            _ => {}
        }
    }
    let mut out = FieldSet::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

/// The value at `path`, if set.
pub fn value_at<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |node, key| node.as_object()?.get(key))
        .filter(|value| !value.is_null())
}

/// `fieldsV1` for a set: `{"f:spec": {"f:instances": {}}}`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for key in path {
            let entry = node
                .entry(format!("f:{key}"))
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let Value::Object(next) = entry else {
                break;
            };
            node = next;
        }
    }
    Value::Object(root)
}

/// The set a `fieldsV1` trie describes. `.` markers are dropped; a node keyed by list element
/// (`k:`, `v:`, `i:`) is read as owning its whole list, since lists are atomic here.
pub fn from_fields_v1(fields: &Value) -> FieldSet {
    fn walk(node: &Map<String, Value>, path: &mut FieldPath, out: &mut FieldSet) {
        let mut children = false;
        for (key, child) in node {
            if key == "." {
                continue;
            }
            let Some(field) = key.strip_prefix("f:") else {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
                children = true;
                continue;
            };
            children = true;
            path.push(field.to_owned());
            match child.as_object() {
                Some(grandchildren) => walk(grandchildren, path, out),
                None => {
                    out.insert(path.clone());
                }
            }
            path.pop();
        }
        if !children && !path.is_empty() {
            out.insert(path.clone());
        }
    }
    let mut out = FieldSet::new();
    if let Some(root) = fields.as_object() {
        walk(root, &mut Vec::new(), &mut out);
    }
    out
}

/// Whether two paths touch the same data (one is a prefix of the other).
fn overlaps(left: &[String], right: &[String]) -> bool {
    left.starts_with(right) || right.starts_with(left)
}

/// `.spec.instances`, as Kubernetes prints a field in conflicts.
pub fn dotted(path: &[String]) -> String {
    path.iter().map(|key| format!(".{key}")).collect()
}

/// An entry with its decoded set.
#[derive(Clone, Debug)]
struct Owned {
    entry: ManagedFieldsEntry,
    set: FieldSet,
}

impl Owned {
    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.entry.manager.as_deref() == Some(manager)
            && self.entry.operation.as_deref() == Some(operation)
            && self.entry.subresource.as_deref().filter(|s| !s.is_empty()) == subresource
    }

    fn manager(&self) -> &str {
        self.entry.manager.as_deref().unwrap_or("")
    }
}

fn decode(entries: &[ManagedFieldsEntry]) -> Vec<Owned> {
    entries
        .iter()
        .map(|entry| Owned {
            set: entry
                .fields_v1
                .as_ref()
                .map(from_fields_v1)
                .unwrap_or_default(),
            entry: entry.clone(),
        })
        .collect()
}

/// Replaces (or appends) the entry of `manager`/`operation`, drops empty entries, and
/// re-encodes. An entry whose set did not change keeps its `time`.
fn encode(
    mut owners: Vec<Owned>,
    manager: &Manager<'_>,
    operation: &str,
    set: FieldSet,
) -> Vec<ManagedFieldsEntry> {
    let position = owners
        .iter()
        .position(|owned| owned.is(manager.name, operation, manager.subresource));
    match position {
        Some(index) => {
            if let Some(owned) = owners.get_mut(index)
                && owned.set != set
            {
                owned.set = set;
                owned.entry.time = Some(manager.time);
                owned.entry.api_version = Some(manager.api_version.to_owned());
            }
        }
        None => owners.push(Owned {
            entry: ManagedFieldsEntry {
                manager: Some(manager.name.to_owned()),
                operation: Some(operation.to_owned()),
                api_version: Some(manager.api_version.to_owned()),
                time: Some(manager.time),
                fields_type: Some("FieldsV1".to_owned()),
                fields_v1: None,
                subresource: manager.subresource.map(str::to_owned),
            },
            set,
        }),
    }
    owners
        .into_iter()
        .filter(|owned| !owned.set.is_empty())
        .map(|owned| ManagedFieldsEntry {
            fields_type: Some("FieldsV1".to_owned()),
            fields_v1: Some(to_fields_v1(&owned.set)),
            ..owned.entry
        })
        .collect()
}

/// The managed fields after an Update (any non-apply write) by `manager` from `old` (absent on
/// create) to `new`; `entries` are the current ones.
pub fn record_update(
    entries: &[ManagedFieldsEntry],
    old: Option<&Value>,
    new: &Value,
    manager: &Manager<'_>,
) -> Vec<ManagedFieldsEntry> {
    let empty = Value::Object(Map::new());
    let old = trackable(old.unwrap_or(&empty), manager);
    let new = trackable(new, manager);
    let changed: FieldSet = leaves(&new)
        .into_iter()
        .filter(|path| value_at(&old, path) != value_at(&new, path))
        .collect();
    let original = decode(entries);
    let mut owners = original.clone();
    let mut mine = FieldSet::new();
    for owned in &mut owners {
        let own = owned.is(manager.name, UPDATE, manager.subresource);
        owned.set.retain(|path| {
            let removed = value_at(&new, path).is_none() && value_at(&old, path).is_some();
            !removed && (own || !changed.iter().any(|changed| overlaps(changed, path)))
        });
        if own {
            mine = std::mem::take(&mut owned.set);
        }
    }
    let untouched = owners.iter().zip(&original).all(|(now, before)| {
        now.set == before.set || now.is(manager.name, UPDATE, manager.subresource)
    });
    if changed.is_empty()
        && untouched
        && original
            .iter()
            .all(|o| !o.is(manager.name, UPDATE, manager.subresource) || o.set == mine)
    {
        // Nothing changed hands: keep the entries as they are (no new timestamps).
        return entries.to_vec();
    }
    mine.extend(changed);
    encode(owners, manager, UPDATE, mine)
}

/// Server-side apply of `applied` by `manager` onto `live` (absent: create) with the current
/// `entries`: the merged object (without `managedFields`, which come back separately) or every
/// conflict.
pub fn apply(
    live: Option<&Value>,
    entries: &[ManagedFieldsEntry],
    applied: &Value,
    manager: &Manager<'_>,
    force: bool,
) -> Result<(Value, Vec<ManagedFieldsEntry>), Vec<Conflict>> {
    let intent = trackable(applied, manager);
    let applied_set = leaves(&intent);
    let empty = Value::Object(Map::new());
    let live_value = live.unwrap_or(&empty);
    let mut owners = decode(entries);
    let previous = owners
        .iter()
        .find(|owned| owned.is(manager.name, APPLY, manager.subresource))
        .map(|owned| owned.set.clone())
        .unwrap_or_default();

    let mut conflicts = Vec::new();
    let mut taken = Vec::new();
    for path in &applied_set {
        if value_at(live_value, path) == value_at(&intent, path) {
            continue;
        }
        for owned in &owners {
            if owned.manager() == manager.name {
                continue;
            }
            for owned_path in owned.set.iter().filter(|owned| overlaps(owned, path)) {
                conflicts.push(Conflict {
                    manager: owned.manager().to_owned(),
                    field: dotted(owned_path),
                });
                taken.push(owned_path.clone());
            }
        }
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort_by(|a, b| (&a.manager, &a.field).cmp(&(&b.manager, &b.field)));
        conflicts.dedup();
        return Err(conflicts);
    }
    for owned in &mut owners {
        if owned.manager() != manager.name {
            owned.set.retain(|path| !taken.contains(path));
        }
    }

    let mut merged = live_value.clone();
    for path in previous.difference(&applied_set) {
        let owned_elsewhere = applied_set.iter().any(|mine| overlaps(mine, path))
            || owners.iter().any(|owned| {
                !owned.is(manager.name, APPLY, manager.subresource)
                    && owned.set.iter().any(|other| overlaps(other, path))
            });
        if !owned_elsewhere {
            remove_at(&mut merged, path);
        }
    }
    merge_into(&mut merged, &strip_nulls(applied));
    let entries = encode(owners, manager, APPLY, applied_set);
    Ok((merged, entries))
}

/// Removes the field at `path`, then any object it leaves empty on the way up.
fn remove_at(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if let Some(Value::Object(parent)) = parents
        .iter()
        .try_fold(&mut *value, |node, key| node.as_object_mut()?.get_mut(key))
    {
        parent.remove(last);
        if parent.is_empty() && !parents.is_empty() {
            remove_at(value, parents);
        }
    }
}

/// `applied` without `null`s (unspecified fields).
fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, child)| !child.is_null())
                .map(|(key, child)| (key.clone(), strip_nulls(child)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Objects merge key by key; anything else replaces.
fn merge_into(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge_into(existing, value);
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// The object's `metadata.managedFields` (none when absent or malformed).
pub fn entries_of(object: &Value) -> Vec<ManagedFieldsEntry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(|entries| serde_json::from_value(entries.clone()).ok())
        .unwrap_or_default()
}

/// Sets `metadata.managedFields` (removes it when `entries` is empty).
pub fn set_entries(
    object: &mut Value,
    entries: &[ManagedFieldsEntry],
) -> Result<(), serde_json::Error> {
    let encoded = serde_json::to_value(entries)?;
    if let Some(root) = object.as_object_mut() {
        let metadata = root
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(metadata) = metadata.as_object_mut() {
            if entries.is_empty() {
                metadata.remove("managedFields");
            } else {
                metadata.insert("managedFields".to_owned(), encoded);
            }
        }
    }
    Ok(())
}

/// The default field manager of a non-apply write: the user agent's first token
/// (`kubectl/v1.32.0 (linux/amd64)` → `kubectl`), as Kubernetes derives it.
pub fn manager_from_user_agent(user_agent: Option<&str>) -> String {
    let name: String = user_agent
        .unwrap_or("")
        .split(['/', ' '])
        .next()
        .unwrap_or("")
        .chars()
        .take(128)
        .collect();
    if name.is_empty() {
        "unknown".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn manager(name: &str) -> Manager<'_> {
        Manager {
            name,
            subresource: None,
            status_subresource: true,
            api_version: "pacer.dev/v1",
            time: Time::from_unix_seconds(1_700_000_000).unwrap(),
        }
    }

    fn entries(object: &Value) -> Vec<ManagedFieldsEntry> {
        serde_json::from_value(object["metadata"]["managedFields"].clone()).unwrap_or_default()
    }

    fn with_entries(mut object: Value, entries: &[ManagedFieldsEntry]) -> Value {
        object["metadata"]["managedFields"] = serde_json::to_value(entries).unwrap();
        object
    }

    /// Applies `steps` in order from nothing: (manager, force, config) → expected object (or
    /// conflicting fields).
    /// (manager, force, applied configuration, expected object or conflicting fields).
    type Step<'a> = (&'a str, bool, Value, Result<Value, Vec<(&'a str, &'a str)>>);

    fn run(steps: &[Step<'_>]) -> Value {
        let mut live: Option<Value> = None;
        for (index, (name, force, config, expected)) in steps.iter().enumerate() {
            let current = live.as_ref().map(entries).unwrap_or_default();
            let result = apply(live.as_ref(), &current, config, &manager(name), *force);
            match (result, expected) {
                (Ok((merged, entries)), Ok(expected)) => {
                    let mut without = merged.clone();
                    if let Some(meta) = without["metadata"].as_object_mut() {
                        meta.remove("managedFields");
                    }
                    assert_eq!(&without, expected, "step {index}");
                    live = Some(with_entries(merged, &entries));
                }
                (Err(conflicts), Err(expected)) => {
                    let got: Vec<(&str, &str)> = conflicts
                        .iter()
                        .map(|c| (c.manager.as_str(), c.field.as_str()))
                        .collect();
                    assert_eq!(&got, expected, "step {index}");
                }
                (got, expected) => panic!("step {index}: got {got:?}, expected {expected:?}"),
            }
        }
        live.unwrap()
    }

    fn app(spec: Value) -> Value {
        json!({"apiVersion": "pacer.dev/v1", "kind": "App", "metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn fields_v1_round_trips() {
        let set = leaves(
            &json!({"spec": {"instances": 1, "env": {"A": "1"}, "constraints": [["a"]]},
                                 "metadata": {"labels": {}}}),
        );
        let fields = to_fields_v1(&set);
        assert_eq!(
            fields,
            json!({"f:spec": {"f:constraints": {}, "f:env": {"f:A": {}}, "f:instances": {}}})
        );
        assert_eq!(from_fields_v1(&fields), set);
        let kube = json!({"f:metadata": {"f:labels": {".": {}, "f:a": {}}},
                          "f:spec": {"f:ports": {"k:{\"port\":80}": {".": {}}}}});
        let read: Vec<String> = from_fields_v1(&kube).iter().map(|p| dotted(p)).collect();
        assert_eq!(read, vec![".metadata.labels.a", ".spec.ports"]);
    }

    #[test]
    fn trackable_skips_server_fields_and_status() {
        let object = json!({"apiVersion": "v", "kind": "App",
            "metadata": {"name": "web", "uid": "u", "labels": {"a": "1"}, "managedFields": []},
            "spec": {"cmd": "x"}, "status": {"running": 1}});
        assert_eq!(
            trackable(&object, &manager("m")),
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"cmd": "x"}})
        );
        let status = Manager {
            subresource: Some("status"),
            ..manager("m")
        };
        assert_eq!(
            trackable(&object, &status),
            json!({"status": {"running": 1}})
        );
    }

    #[test]
    fn apply_scenarios() {
        // Create, re-apply unchanged, change, drop a field.
        run(&[
            (
                "a",
                false,
                app(json!({"cmd": "x", "instances": 2})),
                Ok(app(json!({"cmd": "x", "instances": 2}))),
            ),
            (
                "a",
                false,
                app(json!({"cmd": "x", "instances": 2})),
                Ok(app(json!({"cmd": "x", "instances": 2}))),
            ),
            (
                "a",
                false,
                app(json!({"cmd": "y"})),
                Ok(app(json!({"cmd": "y"}))),
            ),
        ]);
        // Two managers: a conflict, then shared ownership, then force.
        let live = run(&[
            (
                "a",
                false,
                app(json!({"cmd": "x", "instances": 2})),
                Ok(app(json!({"cmd": "x", "instances": 2}))),
            ),
            (
                "b",
                false,
                app(json!({"instances": 3, "cpus": 1})),
                Err(vec![("a", ".spec.instances")]),
            ),
            (
                "b",
                false,
                app(json!({"instances": 2, "cpus": 1})),
                Ok(app(json!({"cmd": "x", "instances": 2, "cpus": 1}))),
            ),
            (
                "b",
                true,
                app(json!({"instances": 5, "cpus": 1})),
                Ok(app(json!({"cmd": "x", "instances": 5, "cpus": 1}))),
            ),
            // a drops instances: b owns it now, so it stays.
            (
                "a",
                false,
                app(json!({"cmd": "x"})),
                Ok(app(json!({"cmd": "x", "instances": 5, "cpus": 1}))),
            ),
            // b drops cpus: nobody else owns it, so it goes.
            (
                "b",
                false,
                app(json!({"instances": 5})),
                Ok(app(json!({"cmd": "x", "instances": 5}))),
            ),
        ]);
        let owners: Vec<(String, String)> = entries(&live)
            .iter()
            .map(|e| {
                (
                    e.manager.clone().unwrap(),
                    serde_json::to_string(e.fields_v1.as_ref().unwrap()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            owners,
            vec![
                ("a".to_owned(), r#"{"f:spec":{"f:cmd":{}}}"#.to_owned()),
                (
                    "b".to_owned(),
                    r#"{"f:spec":{"f:instances":{}}}"#.to_owned()
                ),
            ]
        );
        assert!(
            entries(&live)
                .iter()
                .all(|e| e.operation.as_deref() == Some(APPLY)
                    && e.fields_type.as_deref() == Some("FieldsV1"))
        );
    }

    #[test]
    fn lists_are_atomic_and_labels_are_per_key() {
        run(&[
            (
                "a",
                false,
                json!({"metadata": {"labels": {"x": "1"}}, "spec": {"constraints": [["a", "UNIQUE"]]}}),
                Ok(
                    json!({"metadata": {"labels": {"x": "1"}}, "spec": {"constraints": [["a", "UNIQUE"]]}}),
                ),
            ),
            (
                "b",
                false,
                json!({"metadata": {"labels": {"y": "2"}}, "spec": {"constraints": [["b", "UNIQUE"]]}}),
                Err(vec![("a", ".spec.constraints")]),
            ),
            (
                "b",
                false,
                json!({"metadata": {"labels": {"y": "2"}}}),
                Ok(
                    json!({"metadata": {"labels": {"x": "1", "y": "2"}}, "spec": {"constraints": [["a", "UNIQUE"]]}}),
                ),
            ),
            (
                "a",
                false,
                json!({"spec": {"constraints": [["a", "UNIQUE"]]}}),
                Ok(
                    json!({"metadata": {"labels": {"y": "2"}}, "spec": {"constraints": [["a", "UNIQUE"]]}}),
                ),
            ),
        ]);
    }

    #[test]
    fn updates_take_fields_without_conflict() {
        let m = manager("a");
        let created = app(json!({"cmd": "x", "instances": 1}));
        let entries = apply(None, &[], &created, &m, false).unwrap().1;
        let edited = app(json!({"cmd": "x", "instances": 4}));
        let after = record_update(&entries, Some(&created), &edited, &manager("kubectl-edit"));
        let summary: Vec<(String, String, Value)> = after
            .iter()
            .map(|e| {
                (
                    e.manager.clone().unwrap(),
                    e.operation.clone().unwrap(),
                    e.fields_v1.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("a".into(), APPLY.into(), json!({"f:spec": {"f:cmd": {}}})),
                (
                    "kubectl-edit".into(),
                    UPDATE.into(),
                    json!({"f:spec": {"f:instances": {}}})
                ),
            ]
        );
        // An update that changes nothing leaves the entries alone.
        assert_eq!(
            record_update(&after, Some(&edited), &edited, &manager("other")),
            after
        );
        // Removing a field removes it from every owner.
        let removed = app(json!({"instances": 4}));
        let after = record_update(&after, Some(&edited), &removed, &manager("kubectl-edit"));
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].manager.as_deref(), Some("kubectl-edit"));
    }

    #[test]
    fn user_agents_give_manager_names() {
        assert_eq!(
            manager_from_user_agent(Some("kubectl/v1.32.0 (linux/amd64) kubernetes/abc")),
            "kubectl"
        );
        assert_eq!(manager_from_user_agent(Some("pacer")), "pacer");
        assert_eq!(manager_from_user_agent(None), "unknown");
    }
}
