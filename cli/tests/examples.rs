//! The example manifests in `manifests/examples/` are valid: every document decodes strictly
//! into its kind, and every App passes defaulting and validation with no dependency cycle.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use pacer_schemas::dependency::dependency_cycles;
use pacer_schemas::{App, Resource, decode_strict};
use serde_json::Value;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples")
}

fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(examples_dir().join(file)).unwrap();
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    documents
        .into_iter()
        .filter(|document| !document.is_null())
        .collect()
}

fn valid_apps(file: &str) -> Vec<App> {
    documents(file)
        .into_iter()
        .map(|document| {
            assert_eq!(document["apiVersion"], "pacer.dev/v1", "{file}");
            assert_eq!(document["kind"], "App", "{file}");
            let bytes = serde_json::to_vec(&document).unwrap();
            let mut app: App =
                decode_strict(&bytes).unwrap_or_else(|error| panic!("{file}: {error}"));
            app.apply_defaults();
            if let Err(errors) = app.validate() {
                panic!("{file}: {}: {errors:?}", app.metadata.name_str());
            }
            app
        })
        .collect()
}

#[test]
fn web_is_a_docker_app() {
    let apps = valid_apps("web.yaml");
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].spec.image(), Some("busybox:stable"));
}

#[test]
fn hello_process_is_a_plain_process() {
    let apps = valid_apps("hello-process.yaml");
    assert_eq!(apps.len(), 1);
    assert!(apps[0].spec.container.is_none());
    assert!(apps[0].spec.cmd.is_some());
}

#[test]
fn shop_is_a_group_with_dependencies_and_no_cycle() {
    let apps = valid_apps("shop.yaml");
    let names: Vec<&str> = apps.iter().map(|app| app.metadata.name_str()).collect();
    assert_eq!(names, ["db", "api", "web"]);
    assert!(
        apps.iter()
            .all(|app| app.metadata.namespace.as_deref() == Some("shop"))
    );
    assert!(apps[1].spec.dependencies.is_some() && apps[2].spec.dependencies.is_some());
    assert!(dependency_cycles(&apps).is_empty());
}

#[test]
fn every_example_file_is_covered() {
    let mut files: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    files.sort();
    assert_eq!(files, ["hello-process.yaml", "shop.yaml", "web.yaml"]);
}
