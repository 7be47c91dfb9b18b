//! The checked-in JSON Schemas under `schemas/json/` match the types. When they do not, run
//! `UPDATE_SCHEMAS=1 cargo test -p pacer-schemas --test schemas` and commit the result.
//! Every property carries a description (from the field's doc comment): `kubectl explain`
//! shows them.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use pacer_schemas::schema::{self, KindSchema};
use serde_json::Value;

fn json_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json")
}

#[test]
fn checked_in_schemas_are_current() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some_and(|value| value == "1");
    let mut stale = Vec::new();
    for KindSchema { file_name, schema } in schema::all() {
        let path = json_dir().join(file_name);
        let fresh = schema::render(&schema);
        if update {
            std::fs::create_dir_all(json_dir()).unwrap();
            std::fs::write(&path, &fresh).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(fresh.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale JSON Schemas: {stale:?}\nregenerate them with \
         `UPDATE_SCHEMAS=1 cargo test -p pacer-schemas --test schemas` and commit the result"
    );
    // No leftovers from renamed kinds.
    let mut files: Vec<String> = std::fs::read_dir(json_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut expected: Vec<String> = schema::all()
        .iter()
        .map(|kind| kind.file_name.to_owned())
        .collect();
    expected.sort();
    assert_eq!(
        files, expected,
        "files in schemas/json/ that no kind generates"
    );
}

/// Walks every schema object, calling `visit(path, object)`.
fn walk(value: &Value, path: &str, visit: &mut dyn FnMut(&str, &serde_json::Map<String, Value>)) {
    match value {
        Value::Object(object) => {
            visit(path, object);
            for (key, child) in object {
                walk(child, &format!("{path}/{key}"), visit);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                walk(item, &format!("{path}/{index}"), visit);
            }
        }
        _ => {}
    }
}

#[test]
fn every_property_is_described() {
    let mut missing = Vec::new();
    for KindSchema { file_name, schema } in schema::all() {
        walk(&schema, file_name, &mut |path, object| {
            if let Some(Value::Object(properties)) = object.get("properties") {
                for (name, property) in properties {
                    if property.get("description").is_none() {
                        missing.push(format!("{path}/properties/{name}"));
                    }
                }
            }
        });
    }
    assert!(
        missing.is_empty(),
        "properties without a doc comment: {missing:#?}"
    );
}

#[test]
fn optional_fields_are_not_nullable() {
    for KindSchema { file_name, schema } in schema::all() {
        let text = schema.to_string();
        assert!(
            !text.contains("\"null\""),
            "{file_name} still mentions null"
        );
    }
}

#[test]
fn kinds_are_tagged_and_marathon_shapes_show() {
    let app = schema::all()
        .into_iter()
        .find(|kind| kind.file_name == "app.json")
        .unwrap()
        .schema;
    assert_eq!(
        app["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "pacer.dev", "version": "v1", "kind": "App"}])
    );
    let spec = &app["$defs"]["AppSpec"]["properties"];
    assert_eq!(spec["cpus"]["type"], "number");
    assert_eq!(spec["instances"]["type"], "integer");
    assert_eq!(
        spec["killSelection"]["enum"],
        serde_json::json!(["YOUNGEST_FIRST", "OLDEST_FIRST"])
    );
    assert_eq!(app["$defs"]["Constraint"]["minItems"], 2);
    let health = &app["$defs"]["HealthCheck"]["properties"];
    assert!(health["protocol"]["enum"].as_array().unwrap().len() == 7);
    assert!(
        spec["cmd"]["description"]
            .as_str()
            .unwrap()
            .contains("/bin/sh -c")
    );
}
