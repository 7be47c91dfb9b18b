//! App dependencies as the deployment controller orders by them: which Apps an App waits for
//! before it starts (its `dependencies`, resolved like Marathon ids relative to its group; a
//! group stands for every App inside it), which Apps wait for it to stop first (the reverse),
//! and which Apps sit on a dependency cycle (found by `pacer_schemas::dependency`), whose
//! deployments fail instead of waiting forever.

use std::collections::{BTreeMap, BTreeSet};

use pacer_schemas::App;
use pacer_schemas::dependency::dependency_cycles;
use pacer_schemas::marathon_id::{DEFAULT_NAMESPACE, MarathonId};

use crate::placement::ObjectKey;

/// The dependency graph of a set of Apps.
#[derive(Clone, Debug, Default)]
pub struct Dependencies {
    /// App → the Apps it depends on.
    depends_on: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    /// App → the cycle it is on, as Marathon ids (`/a → /b → /a`).
    cycles: BTreeMap<ObjectKey, String>,
}

fn key_of(app: &App) -> ObjectKey {
    ObjectKey::new(app.metadata.namespace_str(), app.metadata.name_str())
}

fn id_of(app: &App) -> Option<MarathonId> {
    let namespace = Some(app.metadata.namespace_str())
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE);
    MarathonId::from_object(namespace, app.metadata.name_str()).ok()
}

impl Dependencies {
    /// The graph of `apps`. Dependencies on ids that match no App are ignored here (the App
    /// waits for nothing it cannot name).
    pub fn of<'a>(apps: impl IntoIterator<Item = &'a App>) -> Self {
        let apps: Vec<&App> = apps.into_iter().collect();
        let ids: BTreeMap<MarathonId, ObjectKey> = apps
            .iter()
            .filter_map(|app| Some((id_of(app)?, key_of(app))))
            .collect();
        let mut depends_on = BTreeMap::new();
        for app in &apps {
            let Some(id) = id_of(app) else { continue };
            let group = id.parent().unwrap_or_default();
            let targets: BTreeSet<ObjectKey> = app
                .spec
                .dependencies
                .iter()
                .flatten()
                .filter_map(|dependency| group.resolve(dependency).ok())
                .flat_map(|target| match ids.get(&target) {
                    Some(key) => vec![key.clone()],
                    None => ids
                        .iter()
                        .filter(|(candidate, _)| target.contains(candidate))
                        .map(|(_, key)| key.clone())
                        .collect(),
                })
                .collect();
            if !targets.is_empty() {
                depends_on.insert(key_of(app), targets);
            }
        }
        let owned: Vec<App> = apps.iter().map(|app| (*app).clone()).collect();
        let mut cycles = BTreeMap::new();
        for cycle in dependency_cycles(&owned) {
            let mut text: Vec<String> = cycle.iter().map(ToString::to_string).collect();
            if let Some(first) = text.first().cloned() {
                text.push(first);
            }
            let text = text.join(" → ");
            for id in &cycle {
                if let Some(key) = ids.get(id) {
                    cycles.insert(key.clone(), text.clone());
                }
            }
        }
        Self { depends_on, cycles }
    }

    /// The Apps `app` depends on.
    pub fn depends_on(&self, app: &ObjectKey) -> impl Iterator<Item = &ObjectKey> {
        self.depends_on.get(app).into_iter().flatten()
    }

    /// The Apps that depend on `app`.
    pub fn dependents_of<'a>(&'a self, app: &'a ObjectKey) -> impl Iterator<Item = &'a ObjectKey> {
        self.depends_on
            .iter()
            .filter(move |(_, targets)| targets.contains(app))
            .map(|(dependent, _)| dependent)
    }

    /// The cycle `app` is on, if any (`/a → /b → /a`).
    pub fn cycle_of(&self, app: &ObjectKey) -> Option<&str> {
        self.cycles.get(app).map(String::as_str)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use pacer_schemas::AppSpec;

    use super::*;

    fn app(namespace: &str, name: &str, dependencies: &[&str]) -> App {
        App::new(
            namespace,
            name,
            AppSpec {
                cmd: Some("x".into()),
                dependencies: Some(dependencies.iter().map(|d| (*d).to_owned()).collect()),
                ..AppSpec::default()
            },
        )
    }

    #[test]
    fn resolves_relative_ids_groups_and_cycles() {
        let apps = [
            app("prod", "shop.web", &["db", "/prod/cache"]),
            app("prod", "shop.db", &[]),
            app("prod", "cache", &[]),
            app("prod", "batch", &["/prod/shop"]),
            app("default", "a", &["/b"]),
            app("default", "b", &["/a"]),
        ];
        let graph = Dependencies::of(&apps);
        let web = ObjectKey::new("prod", "shop.web");
        let deps: Vec<&ObjectKey> = graph.depends_on(&web).collect();
        assert_eq!(
            deps,
            vec![
                &ObjectKey::new("prod", "cache"),
                &ObjectKey::new("prod", "shop.db")
            ]
        );
        let batch: Vec<&ObjectKey> = graph.depends_on(&ObjectKey::new("prod", "batch")).collect();
        assert_eq!(batch.len(), 2, "a group stands for its apps: {batch:?}");
        let db = ObjectKey::new("prod", "shop.db");
        let dependents: Vec<&ObjectKey> = graph.dependents_of(&db).collect();
        assert_eq!(dependents.len(), 2);
        assert_eq!(
            graph.cycle_of(&ObjectKey::new("default", "a")),
            Some("/a → /b → /a")
        );
        assert_eq!(graph.cycle_of(&web), None);
    }
}
