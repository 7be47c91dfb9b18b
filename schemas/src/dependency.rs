//! Dependency cycles between Apps: a pure function over a set of Apps that the API server
//! calls before admitting a change (a cycle would deadlock every deployment that orders by
//! dependencies).
//!
//! A dependency names an App or a group by Marathon id, relative ones resolving against the
//! depending App's group. A group stands for every App inside it. Dependencies on ids that
//! match no App are not cycles and are ignored here.

use std::collections::{BTreeMap, BTreeSet};

use crate::app::App;
use crate::marathon_id::{DEFAULT_NAMESPACE, MarathonId};

/// Finds the dependency cycles among `apps`. Each cycle is the sorted list of the Marathon ids
/// of the Apps in one strongly connected component (an App depending on itself counts);
/// cycles are sorted too, so the answer is deterministic. Apps whose namespace/name have no
/// Marathon id are skipped.
pub fn dependency_cycles(apps: &[App]) -> Vec<Vec<MarathonId>> {
    let nodes: BTreeMap<MarathonId, &App> = apps
        .iter()
        .filter_map(|app| {
            let namespace = app
                .metadata
                .namespace
                .as_deref()
                .filter(|namespace| !namespace.is_empty())
                .unwrap_or(DEFAULT_NAMESPACE);
            let id = MarathonId::from_object(namespace, app.metadata.name_str()).ok()?;
            Some((id, app))
        })
        .collect();
    let ids: Vec<&MarathonId> = nodes.keys().collect();
    let index_of: BTreeMap<&MarathonId, usize> = ids
        .iter()
        .enumerate()
        .map(|(index, id)| (*id, index))
        .collect();
    let edges: Vec<BTreeSet<usize>> = nodes
        .iter()
        .map(|(id, app)| {
            let group = id.parent().unwrap_or_default();
            app.spec
                .dependencies
                .iter()
                .flatten()
                .filter_map(|dependency| group.resolve(dependency).ok())
                .flat_map(|target| match index_of.get(&target) {
                    Some(index) => vec![*index],
                    None => ids
                        .iter()
                        .enumerate()
                        .filter(|(_, candidate)| target.contains(candidate))
                        .map(|(index, _)| index)
                        .collect(),
                })
                .collect()
        })
        .collect();
    let mut cycles: Vec<Vec<MarathonId>> = strongly_connected(&edges)
        .into_iter()
        .filter(|component| match component.as_slice() {
            [single] => edges[*single].contains(single),
            _ => true,
        })
        .map(|component| {
            let mut cycle: Vec<MarathonId> = component
                .into_iter()
                .map(|index| ids[index].clone())
                .collect();
            cycle.sort();
            cycle
        })
        .collect();
    cycles.sort();
    cycles
}

/// The dependency cycle that App `namespace`/`name` sits on among `apps` (which include it as
/// it is about to be stored), as sorted Marathon ids, if any. The API server refuses such a
/// write (a cycle would deadlock every deployment that orders by dependencies).
pub fn cycle_through(apps: &[App], namespace: &str, name: &str) -> Option<Vec<MarathonId>> {
    let namespace = Some(namespace)
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE);
    let id = MarathonId::from_object(namespace, name).ok()?;
    dependency_cycles(apps)
        .into_iter()
        .find(|cycle| cycle.contains(&id))
}

/// A cycle as text: `/a → /b → /a`.
pub fn cycle_text(cycle: &[MarathonId]) -> String {
    let mut text: Vec<String> = cycle.iter().map(ToString::to_string).collect();
    if let Some(first) = text.first().cloned() {
        text.push(first);
    }
    text.join(" → ")
}

/// Tarjan's algorithm, iterative (no recursion depth limit on long dependency chains).
fn strongly_connected(edges: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    const UNVISITED: usize = usize::MAX;
    let n_nodes = edges.len();
    let mut order = vec![UNVISITED; n_nodes];
    let mut low = vec![0; n_nodes];
    let mut on_stack = vec![false; n_nodes];
    let mut stack = Vec::new();
    let mut components = Vec::new();
    let mut next_order = 0;
    let successors: Vec<Vec<usize>> = edges
        .iter()
        .map(|set| set.iter().copied().collect())
        .collect();
    for root in 0..n_nodes {
        if order[root] != UNVISITED {
            continue;
        }
        // (node, index of the next successor to look at)
        let mut work = vec![(root, 0)];
        order[root] = next_order;
        low[root] = next_order;
        next_order += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some((node, next)) = work.last_mut() {
            let node = *node;
            if let Some(&successor) = successors[node].get(*next) {
                *next += 1;
                if order[successor] == UNVISITED {
                    order[successor] = next_order;
                    low[successor] = next_order;
                    next_order += 1;
                    stack.push(successor);
                    on_stack[successor] = true;
                    work.push((successor, 0));
                } else if on_stack[successor] {
                    low[node] = low[node].min(order[successor]);
                }
                continue;
            }
            work.pop();
            if let Some((parent, _)) = work.last() {
                low[*parent] = low[*parent].min(low[node]);
            }
            if low[node] == order[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::app::AppSpec;

    fn app(id: &str, dependencies: &[&str]) -> App {
        let object = MarathonId::parse(id).unwrap().to_object().unwrap();
        App::new(
            &object.namespace,
            &object.name,
            AppSpec {
                dependencies: Some(
                    dependencies
                        .iter()
                        .map(|dependency| (*dependency).to_owned())
                        .collect(),
                ),
                ..AppSpec::default()
            },
        )
    }

    #[track_caller]
    fn check(apps: &[App], expect: &[&[&str]]) {
        let got: Vec<Vec<String>> = dependency_cycles(apps)
            .iter()
            .map(|cycle| cycle.iter().map(ToString::to_string).collect())
            .collect();
        let expect: Vec<Vec<String>> = expect
            .iter()
            .map(|cycle| cycle.iter().map(|id| (*id).to_owned()).collect())
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn finds_cycles() {
        check(&[], &[]);
        check(
            &[app("/prod/web", &["/prod/db"]), app("/prod/db", &[])],
            &[],
        );
        check(
            &[
                app("/prod/web", &["/prod/db"]),
                app("/prod/db", &["/prod/web"]),
            ],
            &[&["/prod/db", "/prod/web"]],
        );
        check(&[app("/prod/web", &["web"])], &[&["/prod/web"]]);
        check(
            &[
                app("/a", &["/b"]),
                app("/b", &["/c"]),
                app("/c", &["/a"]),
                app("/x/one", &["two"]),
                app("/x/two", &["/x/one"]),
                app("/lonely", &["/missing"]),
            ],
            &[&["/a", "/b", "/c"], &["/x/one", "/x/two"]],
        );
    }

    #[test]
    fn a_group_dependency_stands_for_its_apps() {
        check(
            &[
                app("/prod/shop/web", &["/prod/db"]),
                app("/prod/db/main", &["../shop"]),
            ],
            &[&["/prod/db/main", "/prod/shop/web"]],
        );
        check(
            &[
                app("/prod/shop/web", &["/prod/db"]),
                app("/prod/db/main", &[]),
            ],
            &[],
        );
    }

    #[test]
    fn the_cycle_through_an_app_is_named() {
        let apps = [app("/a", &["/b"]), app("/b", &["/a"]), app("/c", &["/a"])];
        let cycle = cycle_through(&apps, "default", "a").unwrap();
        assert_eq!(cycle_text(&cycle), "/a → /b → /a");
        assert!(cycle_through(&apps, "default", "c").is_none());
        assert!(cycle_through(&apps, "", "b").is_some());
    }

    #[test]
    fn long_chains_do_not_overflow() {
        let apps: Vec<App> = (0..5000)
            .map(|index| {
                app(
                    &format!("/chain/a{index}"),
                    &[&format!("/chain/a{}", (index + 1) % 5000)],
                )
            })
            .collect();
        let cycles = dependency_cycles(&apps);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].len(), 5000);
    }
}
