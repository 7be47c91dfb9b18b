//! The group tree Marathon shows, derived from app ids (pure): `{id, apps, groups, pods,
//! dependencies, version}` and no other key (marathon-python builds a group from every key it
//! receives). A group's `version` is the newest version of an app inside it; its
//! `dependencies` are the dependencies every app inside it shares that point outside it (what
//! a group-level `dependencies` of a write put there); `pods` is always empty.

use std::collections::BTreeSet;

use pacer_schemas::MarathonId;
use serde_json::{Value, json};

/// The version of a group without apps (the root of an empty cluster): the epoch.
pub const EMPTY_GROUP_VERSION: &str = "1970-01-01T00:00:00.000Z";

/// Which parts of a group `embed` asks for (Marathon's default: `group.groups`,
/// `group.apps`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupEmbed {
    /// `group.groups`: subgroups.
    pub groups: bool,
    /// `group.apps` (or any `group.apps.*`): apps.
    pub apps: bool,
}

impl GroupEmbed {
    /// From the `embed` values of a request.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let values: Vec<&str> = values.into_iter().collect();
        if values.is_empty() {
            return Self {
                groups: true,
                apps: true,
            };
        }
        Self {
            groups: values.contains(&"group.groups"),
            apps: values
                .iter()
                .any(|value| *value == "group.apps" || value.starts_with("group.apps.")),
        }
    }
}

/// One app of the tree: its id and its Marathon JSON.
#[derive(Clone, Debug)]
pub struct TreeApp {
    /// The app's id.
    pub id: MarathonId,
    /// Its Marathon JSON (with `version` and `dependencies`).
    pub json: Value,
}

/// The group `group` of the tree of `apps` (every app, any order).
pub fn group_json(group: &MarathonId, apps: &[TreeApp], embed: GroupEmbed) -> Value {
    let inside: Vec<&TreeApp> = apps
        .iter()
        .filter(|app| group.contains(&app.id) && &app.id != group)
        .collect();
    node_json(group, &inside, embed)
}

fn node_json(group: &MarathonId, inside: &[&TreeApp], embed: GroupEmbed) -> Value {
    let depth = group.segments().len();
    let mut out = serde_json::Map::new();
    out.insert("id".to_owned(), json!(group.to_string()));
    if embed.apps {
        let mut direct: Vec<&TreeApp> = inside
            .iter()
            .copied()
            .filter(|app| app.id.segments().len() == depth + 1)
            .collect();
        direct.sort_by(|left, right| left.id.cmp(&right.id));
        out.insert(
            "apps".to_owned(),
            Value::Array(direct.iter().map(|app| app.json.clone()).collect()),
        );
    }
    if embed.groups {
        let children: BTreeSet<&str> = inside
            .iter()
            .filter(|app| app.id.segments().len() > depth + 1)
            .map(|app| app.id.segments()[depth].as_str())
            .collect();
        let mut groups = Vec::with_capacity(children.len());
        for child in children {
            let Ok(child_id) = group.resolve(child) else {
                continue;
            };
            let below: Vec<&TreeApp> = inside
                .iter()
                .copied()
                .filter(|app| child_id.contains(&app.id) && app.id != child_id)
                .collect();
            groups.push(node_json(&child_id, &below, embed));
        }
        out.insert("groups".to_owned(), Value::Array(groups));
    }
    out.insert("pods".to_owned(), json!([]));
    out.insert(
        "dependencies".to_owned(),
        json!(shared_dependencies(group, inside)),
    );
    let version = inside
        .iter()
        .filter_map(|app| app.json.get("version").and_then(Value::as_str))
        .max()
        .unwrap_or(EMPTY_GROUP_VERSION);
    out.insert("version".to_owned(), json!(version));
    Value::Object(out)
}

/// The dependencies (absolute) that every app in `inside` has and that lie outside `group`.
fn shared_dependencies(group: &MarathonId, inside: &[&TreeApp]) -> Vec<String> {
    let mut shared: Option<BTreeSet<String>> = None;
    for app in inside {
        let parent = app.id.parent().unwrap_or_default();
        let own: BTreeSet<String> = app
            .json
            .get("dependencies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|dependency| parent.resolve(dependency).ok())
            .filter(|dependency| !group.contains(dependency))
            .map(|dependency| dependency.to_string())
            .collect();
        shared = Some(match shared {
            None => own,
            Some(so_far) => so_far.intersection(&own).cloned().collect(),
        });
    }
    shared.unwrap_or_default().into_iter().collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn app(id: &str, version: &str, dependencies: Value) -> TreeApp {
        TreeApp {
            id: MarathonId::parse(id).unwrap(),
            json: json!({"id": id, "version": version, "dependencies": dependencies}),
        }
    }

    #[test]
    fn the_tree_follows_the_ids() {
        let apps = [
            app("/web", "2020-01-01T00:00:00.000Z", json!([])),
            app("/tools/oauth", "2021-01-01T00:00:00.000Z", json!(["/db"])),
            app(
                "/tools/docker/registry",
                "2022-01-01T00:00:00.000Z",
                json!(["../../db"]),
            ),
        ];
        let all = GroupEmbed::parse([]);
        let root = group_json(&MarathonId::root(), &apps, all);
        assert_eq!(root["id"], "/");
        assert_eq!(root["apps"][0]["id"], "/web");
        assert_eq!(root["groups"][0]["id"], "/tools");
        assert_eq!(root["groups"][0]["apps"][0]["id"], "/tools/oauth");
        assert_eq!(root["groups"][0]["groups"][0]["id"], "/tools/docker");
        assert_eq!(
            root["groups"][0]["groups"][0]["apps"][0]["id"],
            "/tools/docker/registry"
        );
        assert_eq!(root["version"], "2022-01-01T00:00:00.000Z");
        assert_eq!(root["groups"][0]["dependencies"], json!(["/db"]));
        assert_eq!(root["dependencies"], json!([]));
        let mut keys: Vec<&str> = root
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["apps", "dependencies", "groups", "id", "pods", "version"]
        );

        let only_groups = GroupEmbed::parse(["group.groups"]);
        let root = group_json(&MarathonId::root(), &apps, only_groups);
        assert!(root.get("apps").is_none());
        assert!(root["groups"][0].get("apps").is_none());

        let empty = group_json(&MarathonId::root(), &[], all);
        assert_eq!(empty["version"], EMPTY_GROUP_VERSION);
        assert_eq!(empty["apps"], json!([]));
    }
}
