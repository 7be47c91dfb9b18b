//! Group requests as changes of Apps, as pure functions: a `/v2/groups` body parsed into a tree
//! of [`GroupUpdate`]s (ids resolved against their group, Marathon's "not child of" rule,
//! JSON paths like `/groups(0)/apps(1)` kept for errors), and what creating, updating,
//! scaling or deleting a group means for the Apps below it ([`Change`]s).
//!
//! Marathon's update semantics: an app in the body is created or replaced (its definition as
//! given, defaults for the rest); a present `apps` list removes the group's direct apps it does
//! not name, a present `groups` list removes the subgroups (with every app inside) it does not
//! name, an absent list keeps what is there. Group `dependencies` (resolved against the group)
//! are added to the `dependencies` of every app of the group and of its subgroups, including
//! the apps the body keeps without naming them.

use std::collections::{BTreeMap, BTreeSet};

use pacer_schemas::{App, AppVersion, MarathonId};
use serde_json::{Map, Value, json};

use crate::marathon::app_json::{self, AppDefinition};
use crate::marathon::error::MarathonError;

/// What a group body asks for.
#[derive(Clone, Debug)]
pub enum GroupRequest {
    /// Create or update the tree.
    Update(GroupUpdate),
    /// `{"scaleBy": f}`: scale every app of the group by `f`.
    ScaleBy(f64),
    /// `{"version": v}` alone: roll the group back to `v`.
    Rollback(String),
}

/// One group of a request body, its ids resolved.
#[derive(Clone, Debug)]
pub struct GroupUpdate {
    /// The group's absolute id.
    pub id: MarathonId,
    /// The JSON path of this group in the body (`""` for the body itself).
    pub path: String,
    /// The apps the body names (`None`: the key was absent).
    pub apps: Option<Vec<AppEntry>>,
    /// The subgroups the body names (`None`: the key was absent).
    pub groups: Option<Vec<GroupUpdate>>,
    /// The group's dependencies, as absolute ids.
    pub dependencies: Vec<String>,
}

/// One app of a request body.
#[derive(Clone, Debug)]
pub struct AppEntry {
    /// The definition (absolute id, spec fields).
    pub definition: AppDefinition,
    /// Its JSON path in the body (`/apps(0)`, `/groups(1)/apps(0)`).
    pub path: String,
}

/// One change of one App that a group request makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Create the app from these spec fields (replace it, if it exists by the time of writing).
    Put {
        /// The app.
        id: MarathonId,
        /// Its complete definition.
        fields: Map<String, Value>,
        /// The JSON path of the definition in the body, for errors.
        path: String,
    },
    /// Lay these fields over the stored spec (scale, added dependencies).
    Merge {
        /// The app.
        id: MarathonId,
        /// The fields to set.
        fields: Map<String, Value>,
    },
    /// Delete the app.
    Delete {
        /// The app.
        id: MarathonId,
    },
}

impl Change {
    /// The app this change is about.
    pub fn id(&self) -> &MarathonId {
        match self {
            Self::Put { id, .. } | Self::Merge { id, .. } | Self::Delete { id } => id,
        }
    }
}

/// Parses a group body. `base`: the group of the URL; the body's `id` is resolved against it
/// (`POST /v2/groups` with `{"id": "tools"}` is `/tools`).
pub fn parse_request(body: Value, base: &MarathonId) -> Result<GroupRequest, MarathonError> {
    let Value::Object(fields) = &body else {
        return Err(MarathonError::InvalidJson {
            path: "/".to_owned(),
            error: "error.expected.jsobject".to_owned(),
        });
    };
    let only = |key: &str| fields.keys().all(|name| name == key || name == "id");
    if let Some(factor) = fields.get("scaleBy").filter(|value| !value.is_null()) {
        let Some(factor) = factor.as_f64() else {
            return Err(MarathonError::InvalidJson {
                path: "/scaleBy".to_owned(),
                error: "error.expected.jsnumber".to_owned(),
            });
        };
        if !only("scaleBy") {
            return Err(MarathonError::invalid(
                "/",
                "scaleBy can not be combined with other fields",
            ));
        }
        if !(factor.is_finite() && factor >= 0.0) {
            return Err(MarathonError::invalid(
                "/scaleBy",
                "must be a positive factor",
            ));
        }
        return Ok(GroupRequest::ScaleBy(factor));
    }
    if let Some(Value::String(version)) = fields.get("version")
        && only("version")
    {
        return Ok(GroupRequest::Rollback(version.clone()));
    }
    let id = match fields.get("id") {
        None | Some(Value::Null) => base.clone(),
        Some(Value::String(text)) => base
            .resolve(text)
            .map_err(|error| MarathonError::invalid("/id", error.to_string()))?,
        Some(_) => {
            return Err(MarathonError::InvalidJson {
                path: "/id".to_owned(),
                error: "error.expected.jsstring".to_owned(),
            });
        }
    };
    let update = parse_group(body, id, "")?;
    check_unique(&update)?;
    Ok(GroupRequest::Update(update))
}

/// Parses one group object whose id is `id`; `path` is its JSON path in the body.
fn parse_group(body: Value, id: MarathonId, path: &str) -> Result<GroupUpdate, MarathonError> {
    let Value::Object(mut fields) = body else {
        return Err(MarathonError::InvalidJson {
            path: or_root(path),
            error: "error.expected.jsobject".to_owned(),
        });
    };
    if let Some(pods) = fields.get("pods").and_then(Value::as_array)
        && !pods.is_empty()
    {
        return Err(MarathonError::invalid(
            &format!("{path}/pods"),
            "pods are not supported",
        ));
    }
    let dependencies = match fields.remove("dependencies") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut resolved = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let item_path = format!("{path}/dependencies({index})");
                let Some(text) = item.as_str() else {
                    return Err(MarathonError::InvalidJson {
                        path: item_path,
                        error: "error.expected.jsstring".to_owned(),
                    });
                };
                let dependency = id
                    .resolve(text)
                    .map_err(|error| MarathonError::invalid(&item_path, error.to_string()))?;
                resolved.push(dependency.to_string());
            }
            resolved
        }
        Some(_) => return Err(expected_array(&format!("{path}/dependencies"))),
    };
    let apps = match fields.remove("apps") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut apps = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                apps.push(parse_app(item, &id, &format!("{path}/apps({index})"))?);
            }
            Some(apps)
        }
        Some(_) => return Err(expected_array(&format!("{path}/apps"))),
    };
    let groups = match fields.remove("groups") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut groups = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                let item_path = format!("{path}/groups({index})");
                let child = child_id(&item, &id, &item_path)?;
                groups.push(parse_group(item, child, &item_path)?);
            }
            Some(groups)
        }
        Some(_) => return Err(expected_array(&format!("{path}/groups"))),
    };
    Ok(GroupUpdate {
        id,
        path: path.to_owned(),
        apps,
        groups,
        dependencies,
    })
}

/// Parses one app of a group; its id must be a direct child of the group.
fn parse_app(item: Value, group: &MarathonId, path: &str) -> Result<AppEntry, MarathonError> {
    if !item.is_object() {
        return Err(MarathonError::InvalidJson {
            path: path.to_owned(),
            error: "error.expected.jsobject".to_owned(),
        });
    }
    let id = child_id(&item, group, path)?;
    id.to_object()
        .map_err(|error| MarathonError::invalid(&format!("{path}/id"), error.to_string()))?;
    let definition =
        app_json::parse_definition(item, Some(&id)).map_err(|error| at_path(error, path))?;
    Ok(AppEntry {
        definition,
        path: path.to_owned(),
    })
}

/// The id of an app or subgroup of `group`: its `id` resolved against the group, which must
/// be the group's direct child (Marathon's rule).
fn child_id(item: &Value, group: &MarathonId, path: &str) -> Result<MarathonId, MarathonError> {
    let id_path = format!("{path}/id");
    let text = match item.get("id") {
        Some(Value::String(text)) => text,
        None | Some(Value::Null) => {
            return Err(MarathonError::invalid(&id_path, "error.path.missing"));
        }
        Some(_) => {
            return Err(MarathonError::InvalidJson {
                path: id_path,
                error: "error.expected.jsstring".to_owned(),
            });
        }
    };
    let id = group
        .resolve(text)
        .map_err(|error| MarathonError::invalid(&id_path, error.to_string()))?;
    if id.parent().as_ref() != Some(group) {
        return Err(MarathonError::invalid(
            &id_path,
            format!("identifier {text} is not child of {group}. Hint: use relative paths."),
        ));
    }
    Ok(id)
}

/// Refuses a body that names one id twice (two apps, two groups, or an app and a group).
fn check_unique(update: &GroupUpdate) -> Result<(), MarathonError> {
    fn walk(group: &GroupUpdate, seen: &mut BTreeSet<MarathonId>) -> Result<(), MarathonError> {
        for app in group.apps.iter().flatten() {
            if !seen.insert(app.definition.id.clone()) {
                return Err(MarathonError::invalid(
                    &format!("{}/id", app.path),
                    format!("{} is defined more than once", app.definition.id),
                ));
            }
        }
        for child in group.groups.iter().flatten() {
            if !seen.insert(child.id.clone()) {
                return Err(MarathonError::invalid(
                    &format!("{}/id", child.path),
                    format!("{} is defined more than once", child.id),
                ));
            }
            walk(child, seen)?;
        }
        Ok(())
    }
    walk(update, &mut BTreeSet::new())
}

/// What updating (or creating) the group tree `update` changes, given the Apps that exist
/// (by Marathon id).
pub fn plan_update(update: &GroupUpdate, existing: &BTreeMap<MarathonId, App>) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut scopes = Vec::new();
    plan_group(update, &[], existing, &mut changes, &mut scopes);
    // Apps the body keeps without naming them still get their groups' dependencies.
    let touched: BTreeSet<MarathonId> = changes.iter().map(|change| change.id().clone()).collect();
    for (id, app) in existing {
        if touched.contains(id) {
            continue;
        }
        let Some((_, dependencies)) = scopes
            .iter()
            .filter(|(group, _)| group.contains(id) && group != id)
            .max_by_key(|(group, _)| group.segments().len())
        else {
            continue;
        };
        let current = app.spec.dependencies.clone().unwrap_or_default();
        let merged = with_dependencies(id, &current, dependencies);
        if merged.len() != current.len() {
            let mut fields = Map::new();
            fields.insert("dependencies".to_owned(), json!(merged));
            changes.push(Change::Merge {
                id: id.clone(),
                fields,
            });
        }
    }
    changes
}

fn plan_group(
    group: &GroupUpdate,
    inherited: &[String],
    existing: &BTreeMap<MarathonId, App>,
    changes: &mut Vec<Change>,
    scopes: &mut Vec<(MarathonId, Vec<String>)>,
) {
    let mut dependencies = inherited.to_vec();
    for dependency in &group.dependencies {
        if !dependencies.contains(dependency) {
            dependencies.push(dependency.clone());
        }
    }
    scopes.push((group.id.clone(), dependencies.clone()));
    if let Some(apps) = &group.apps {
        for app in apps {
            let id = &app.definition.id;
            let mut fields = app.definition.fields.clone();
            if !dependencies.is_empty() {
                let own: Vec<String> = fields
                    .get("dependencies")
                    .and_then(Value::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                fields.insert(
                    "dependencies".to_owned(),
                    json!(with_dependencies(id, &own, &dependencies)),
                );
            }
            changes.push(Change::Put {
                id: id.clone(),
                fields,
                path: app.path.clone(),
            });
        }
        let named: BTreeSet<&MarathonId> = apps.iter().map(|app| &app.definition.id).collect();
        for id in existing.keys() {
            if id.parent().as_ref() == Some(&group.id) && !named.contains(id) {
                changes.push(Change::Delete { id: id.clone() });
            }
        }
    }
    if let Some(groups) = &group.groups {
        let named: BTreeSet<&MarathonId> = groups.iter().map(|child| &child.id).collect();
        let depth = group.id.segments().len();
        for id in existing.keys() {
            if !group.id.contains(id) || id.segments().len() <= depth + 1 {
                continue;
            }
            let subgroup = MarathonId::root()
                .resolve(&format!("/{}", id.segments()[..=depth].join("/")))
                .ok();
            if subgroup.is_some_and(|subgroup| !named.contains(&subgroup)) {
                changes.push(Change::Delete { id: id.clone() });
            }
        }
        for child in groups {
            plan_group(child, &dependencies, existing, changes, scopes);
        }
    }
}

/// `current` (an app's dependencies) with each of `added` (absolute ids) that it does not
/// already name, relative or absolute.
fn with_dependencies(app: &MarathonId, current: &[String], added: &[String]) -> Vec<String> {
    let group = app.parent().unwrap_or_default();
    let resolved: BTreeSet<String> = current
        .iter()
        .filter_map(|dependency| group.resolve(dependency).ok())
        .map(|dependency| dependency.to_string())
        .collect();
    let mut out = current.to_vec();
    for dependency in added {
        // A group does not make its own apps depend on themselves.
        let inside = MarathonId::parse(dependency).is_ok_and(|target| target.contains(app));
        if !inside && !resolved.contains(dependency) && !out.contains(dependency) {
            out.push(dependency.clone());
        }
    }
    out
}

/// Scaling every app of `group` by `factor` (Marathon rounds up).
pub fn plan_scale(
    group: &MarathonId,
    factor: f64,
    existing: &BTreeMap<MarathonId, App>,
) -> Vec<Change> {
    existing
        .iter()
        .filter(|(id, _)| group.contains(id))
        .filter_map(|(id, app)| {
            let instances = app.spec.instances.unwrap_or(1);
            let scaled = (f64::from(instances) * factor).ceil();
            // Bounded by the schema's i32 `instances`; validation refuses what is too large.
            let scaled = if scaled >= f64::from(i32::MAX) {
                i32::MAX
            } else {
                scaled as i32
            };
            (scaled != instances).then(|| {
                let mut fields = Map::new();
                fields.insert("instances".to_owned(), json!(scaled));
                Change::Merge {
                    id: id.clone(),
                    fields,
                }
            })
        })
        .collect()
}

/// Rolling `group` back to `version` (a version of one of its apps): each app of the group
/// gets the definition of its newest AppVersion at or before `version` (`versions`: the apps'
/// AppVersions by Marathon id); an app created after `version` is deleted; an app without
/// such a snapshot (collected, or none recorded yet) is left as it is. Apps deleted since
/// cannot come back: their AppVersions went with them. `None` when no app of the group has a
/// snapshot at or before `version`.
pub fn plan_rollback(
    group: &MarathonId,
    version: &str,
    existing: &BTreeMap<MarathonId, App>,
    versions: &BTreeMap<MarathonId, Vec<AppVersion>>,
) -> Option<Vec<Change>> {
    let mut changes = Vec::new();
    let mut known = false;
    for (id, app) in existing.iter().filter(|(id, _)| group.contains(id)) {
        let snapshot = versions
            .get(id)
            .into_iter()
            .flatten()
            .filter(|snapshot| snapshot.spec.version.as_str() <= version)
            .max_by(|left, right| left.spec.version.cmp(&right.spec.version));
        if let Some(snapshot) = snapshot {
            known = true;
            if let Ok(Value::Object(fields)) = serde_json::to_value(&snapshot.spec.template) {
                changes.push(Change::Put {
                    id: id.clone(),
                    fields,
                    path: String::new(),
                });
            }
            continue;
        }
        let created = app
            .metadata
            .creation_timestamp
            .map(|time| AppVersion::version_string(time.timestamp()));
        if created.is_some_and(|created| created.as_str() > version) {
            changes.push(Change::Delete { id: id.clone() });
        }
    }
    known.then_some(changes)
}

/// Deleting `group` (the root: every app).
pub fn plan_delete(group: &MarathonId, existing: &BTreeMap<MarathonId, App>) -> Vec<Change> {
    existing
        .keys()
        .filter(|id| group.contains(id))
        .map(|id| Change::Delete { id: id.clone() })
        .collect()
}

/// Whether `group` exists: the root always does, any other group while an app lies inside it.
pub fn group_exists(group: &MarathonId, apps: impl IntoIterator<Item = MarathonId>) -> bool {
    group.is_root()
        || apps
            .into_iter()
            .any(|id| group.contains(&id) && &id != group)
}

/// `error` with its JSON paths moved under `prefix` (the app's place in the group body).
pub fn at_path(error: MarathonError, prefix: &str) -> MarathonError {
    let join = |path: &str| {
        if path == "/" {
            prefix.to_owned()
        } else {
            format!("{prefix}{path}")
        }
    };
    match error {
        MarathonError::Invalid { details } => MarathonError::Invalid {
            details: details
                .into_iter()
                .map(|(path, errors)| (join(&path), errors))
                .collect(),
        },
        MarathonError::InvalidJson { path, error } => MarathonError::InvalidJson {
            path: join(&path),
            error,
        },
        other => other,
    }
}

fn or_root(path: &str) -> String {
    if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    }
}

fn expected_array(path: &str) -> MarathonError {
    MarathonError::InvalidJson {
        path: path.to_owned(),
        error: "error.expected.jsarray".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(text: &str) -> MarathonId {
        MarathonId::parse(text).unwrap()
    }

    fn existing(apps: &[(&str, Value)]) -> BTreeMap<MarathonId, App> {
        apps.iter()
            .map(|(text, spec)| {
                let object = id(text).to_object().unwrap();
                let app: App = serde_json::from_value(json!({
                    "metadata": {"name": object.name, "namespace": object.namespace},
                    "spec": spec,
                }))
                .unwrap();
                (id(text), app)
            })
            .collect()
    }

    fn update(body: Value, base: &str) -> GroupUpdate {
        match parse_request(body, &id(base)).unwrap() {
            GroupRequest::Update(update) => update,
            other => panic!("not an update: {other:?}"),
        }
    }

    fn summary(changes: &[Change]) -> Vec<String> {
        let mut out: Vec<String> = changes
            .iter()
            .map(|change| match change {
                Change::Put { id, .. } => format!("put {id}"),
                Change::Merge { id, fields } => {
                    format!("merge {id} {}", Value::Object(fields.clone()))
                }
                Change::Delete { id } => format!("delete {id}"),
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn ids_resolve_against_their_group_and_must_be_children() {
        let body = json!({"id": "shop", "apps": [{"id": "web", "cmd": "x"}],
                          "groups": [{"id": "db", "apps": [{"id": "/prod/shop/db/pg", "cmd": "y"}]}]});
        let tree = update(body, "/prod");
        assert_eq!(tree.id, id("/prod/shop"));
        let apps = tree.apps.as_ref().unwrap();
        assert_eq!(apps[0].definition.id, id("/prod/shop/web"));
        assert_eq!(apps[0].path, "/apps(0)");
        let db = &tree.groups.as_ref().unwrap()[0];
        assert_eq!(db.id, id("/prod/shop/db"));
        assert_eq!(db.apps.as_ref().unwrap()[0].path, "/groups(0)/apps(0)");

        let error = parse_request(
            json!({"id": "/group", "apps": [{"id": "/app", "cmd": "x"}]}),
            &MarathonId::root(),
        )
        .unwrap_err();
        assert_eq!(error.code().as_u16(), 422);
        let body = error.body();
        assert_eq!(body["details"][0]["path"], "/apps(0)/id");
        assert_eq!(
            body["details"][0]["errors"][0],
            "identifier /app is not child of /group. Hint: use relative paths."
        );
        let error = parse_request(
            json!({"id": "/g", "apps": [{"id": "a", "cmd": "x"}, {"id": "a", "cmd": "y"}]}),
            &MarathonId::root(),
        )
        .unwrap_err();
        assert_eq!(error.body()["details"][0]["path"], "/apps(1)/id");
    }

    #[test]
    fn scale_and_rollback_bodies() {
        assert!(matches!(
            parse_request(json!({"scaleBy": 2}), &id("/g")).unwrap(),
            GroupRequest::ScaleBy(factor) if factor == 2.0
        ));
        assert!(matches!(
            parse_request(json!({"version": "v1"}), &id("/g")).unwrap(),
            GroupRequest::Rollback(version) if version == "v1"
        ));
        // A version beside apps (a group as GET shows it) is not a rollback.
        assert!(matches!(
            parse_request(json!({"version": "v1", "apps": []}), &id("/g")).unwrap(),
            GroupRequest::Update(_)
        ));
        assert_eq!(
            parse_request(json!({"scaleBy": 2, "apps": []}), &id("/g"))
                .unwrap_err()
                .code()
                .as_u16(),
            422
        );
    }

    #[test]
    fn present_lists_replace_absent_lists_keep() {
        let now = existing(&[
            ("/prod/shop/web", json!({"cmd": "a"})),
            ("/prod/shop/old", json!({"cmd": "b"})),
            ("/prod/shop/db/pg", json!({"cmd": "c"})),
            ("/prod/shop/cache/redis", json!({"cmd": "d"})),
            ("/prod/other", json!({"cmd": "e"})),
        ]);
        let tree = update(
            json!({"id": "/prod/shop", "apps": [{"id": "web", "cmd": "a2"}, {"id": "new", "cmd": "n"}],
                   "groups": [{"id": "db"}]}),
            "/",
        );
        assert_eq!(
            summary(&plan_update(&tree, &now)),
            [
                "delete /prod/shop/cache/redis",
                "delete /prod/shop/old",
                "put /prod/shop/new",
                "put /prod/shop/web",
            ]
        );
        // Only apps: subgroups are kept.
        let tree = update(json!({"id": "/prod/shop", "apps": []}), "/");
        assert_eq!(
            summary(&plan_update(&tree, &now)),
            ["delete /prod/shop/old", "delete /prod/shop/web"]
        );
    }

    #[test]
    fn group_dependencies_reach_every_app_of_the_group() {
        let now = existing(&[
            (
                "/prod/shop/db/pg",
                json!({"cmd": "c", "dependencies": ["/infra/dns"]}),
            ),
            (
                "/prod/shop/kept",
                json!({"cmd": "k", "dependencies": ["../../infra/log"]}),
            ),
        ]);
        let tree = update(
            json!({"id": "/prod/shop", "dependencies": ["/infra/log", "../../infra/dns"],
                   "apps": [{"id": "web", "cmd": "a", "dependencies": ["db"]}, {"id": "kept", "cmd": "k", "dependencies": ["../../infra/log"]}]}),
            "/",
        );
        let changes = plan_update(&tree, &now);
        let web = changes
            .iter()
            .find_map(|change| match change {
                Change::Put {
                    id: app, fields, ..
                } if app == &id("/prod/shop/web") => Some(fields),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            web["dependencies"],
            json!(["db", "/infra/log", "/infra/dns"])
        );
        let kept = changes
            .iter()
            .find_map(|change| match change {
                Change::Put {
                    id: app, fields, ..
                } if app == &id("/prod/shop/kept") => Some(fields),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            kept["dependencies"],
            json!(["../../infra/log", "/infra/dns"])
        );
        // The app of the kept subgroup gets the missing one.
        assert!(summary(&changes).contains(
            &r#"merge /prod/shop/db/pg {"dependencies":["/infra/dns","/infra/log"]}"#.to_owned()
        ));
    }

    #[test]
    fn scale_rounds_up_and_delete_takes_everything_inside() {
        let now = existing(&[
            ("/g/a", json!({"instances": 3})),
            ("/g/sub/b", json!({"instances": 1})),
            ("/g/zero", json!({"instances": 0})),
            ("/other", json!({"instances": 1})),
        ]);
        assert_eq!(
            summary(&plan_scale(&id("/g"), 1.5, &now)),
            [
                r#"merge /g/a {"instances":5}"#,
                r#"merge /g/sub/b {"instances":2}"#
            ]
        );
        assert_eq!(
            summary(&plan_delete(&id("/g"), &now)),
            ["delete /g/a", "delete /g/sub/b", "delete /g/zero"]
        );
        assert_eq!(plan_delete(&MarathonId::root(), &now).len(), 4);
        assert!(group_exists(&id("/g/sub"), now.keys().cloned()));
        assert!(!group_exists(&id("/g/a"), now.keys().cloned()));
        assert!(!group_exists(&id("/nope"), now.keys().cloned()));
    }

    #[test]
    fn rollback_takes_each_apps_snapshot_at_the_version() {
        let now = existing(&[
            ("/g/a", json!({"cmd": "a3"})),
            ("/g/late", json!({"cmd": "l"})),
        ]);
        let mut now = now;
        now.get_mut(&id("/g/late"))
            .unwrap()
            .metadata
            .creation_timestamp =
            Some(serde_json::from_value(json!("2030-01-01T00:00:00Z")).unwrap());
        let snapshot = |version: &str, cmd: &str| -> AppVersion {
            serde_json::from_value(json!({"spec": {"app": "a", "version": version,
                                                   "template": {"cmd": cmd}}}))
            .unwrap()
        };
        let versions = BTreeMap::from([(
            id("/g/a"),
            vec![
                snapshot("2020-01-01T00:00:00.000Z", "a1"),
                snapshot("2021-01-01T00:00:00.000Z", "a2"),
                snapshot("2022-01-01T00:00:00.000Z", "a3"),
            ],
        )]);
        let changes =
            plan_rollback(&id("/g"), "2021-06-01T00:00:00.000Z", &now, &versions).unwrap();
        assert_eq!(summary(&changes), ["delete /g/late", "put /g/a"]);
        let Change::Put { fields, .. } = &changes[0] else {
            panic!("{changes:?}")
        };
        assert_eq!(fields["cmd"], "a2");
        assert!(plan_rollback(&id("/g"), "2019-01-01T00:00:00.000Z", &now, &versions).is_none());
    }

    #[test]
    fn errors_move_under_the_app_path() {
        let error = at_path(MarathonError::invalid("/cmd", "bad"), "/apps(0)");
        assert_eq!(error.body()["details"][0]["path"], "/apps(0)/cmd");
        let error = at_path(MarathonError::invalid("/", "bad"), "/apps(0)");
        assert_eq!(error.body()["details"][0]["path"], "/apps(0)");
    }
}
