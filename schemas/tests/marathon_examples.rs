//! Every app definition from Marathon's documentation fits an App spec unchanged: it decodes
//! strictly (no unknown field), re-encodes to the same JSON (less `null`s, which mean "absent"),
//! and validates — except where the example itself breaks Marathon's rules.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use pacer_schemas::field_error::FieldErrorKind;
use pacer_schemas::{App, AppSpec, MarathonId, Resource, decode_strict};
use serde_json::{Map, Value};

/// Fields of Marathon's app JSON that are not part of the definition: the id (which becomes
/// namespace and name) and response-only status fields.
const NOT_SPEC: &[&str] = &[
    "id",
    "version",
    "versionInfo",
    "tasksStaged",
    "tasksRunning",
    "tasksHealthy",
    "tasksUnhealthy",
    "deployments",
    "tasks",
    "lastTaskFailure",
    "taskStats",
    "readinessCheckResults",
];

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/marathon")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Every app definition in a fixture: the document itself, the items of an array, the
/// `apps` of an `app_list`, or every app of a group tree.
fn app_definitions(document: &Value) -> Vec<Value> {
    match document {
        Value::Array(items) => items.clone(),
        Value::Object(object) if object.contains_key("groups") => {
            let mut apps: Vec<Value> = object["apps"].as_array().unwrap().clone();
            for group in object["groups"].as_array().unwrap() {
                apps.extend(app_definitions(group));
            }
            apps
        }
        Value::Object(object) if object.contains_key("apps") => {
            object["apps"].as_array().unwrap().clone()
        }
        other => vec![other.clone()],
    }
}

fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(key, value)| (key.clone(), without_nulls(value)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Splits a Marathon app definition into an App: id → namespace/name, the rest → spec.
#[track_caller]
fn to_app(definition: &Value) -> (App, Value) {
    let mut spec_json = definition.as_object().unwrap().clone();
    let id = spec_json["id"].as_str().unwrap().to_owned();
    spec_json.retain(|key, _| !NOT_SPEC.contains(&key.as_str()));
    let spec_json = Value::Object(spec_json);
    let spec: AppSpec = decode_strict(spec_json.to_string().as_bytes())
        .unwrap_or_else(|error| panic!("{id}: {error}"));
    let object = MarathonId::parse(&id).unwrap().to_object().unwrap();
    (App::new(&object.namespace, &object.name, spec), spec_json)
}

/// `expect_errors`: per app id, the (field, kind) errors validation must report.
#[track_caller]
fn check(file: &str, expect_errors: &[(&str, &[(&str, FieldErrorKind)])]) {
    let definitions = app_definitions(&fixture(file));
    assert!(!definitions.is_empty(), "{file} holds no app");
    for definition in definitions {
        let (mut app, spec_json) = to_app(&definition);
        let id = definition["id"].as_str().unwrap();
        assert_eq!(
            serde_json::to_value(&app.spec).unwrap(),
            without_nulls(&spec_json),
            "{file} {id}: spec does not round-trip"
        );
        app.apply_defaults();
        let got: Vec<(String, FieldErrorKind)> = app
            .validate()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|error| (error.field, error.kind))
            .collect();
        let expect: Vec<(String, FieldErrorKind)> = expect_errors
            .iter()
            .find(|(expect_id, _)| *expect_id == id)
            .map(|(_, errors)| {
                errors
                    .iter()
                    .map(|(field, kind)| ((*field).to_owned(), *kind))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(got, expect, "{file} {id}: validation");
        // Defaulted specs round-trip too.
        let json = serde_json::to_vec(&app).unwrap();
        assert_eq!(
            decode_strict::<App>(&json).unwrap(),
            app,
            "{file} {id}: defaulted App"
        );
    }
}

#[test]
fn simple_apps() {
    check("app-simple.json", &[]);
    check("apps_create.json", &[]);
    check("app-check-http-example.json", &[]);
}

#[test]
fn the_full_example_decodes_but_breaks_two_of_marathons_rules() {
    // The RAML example sets both cmd and args (Marathon's validator rejects that too) and
    // refers to a secret it does not declare.
    check(
        "app.json",
        &[(
            "/foo",
            &[
                ("spec.args", FieldErrorKind::Forbidden),
                ("spec.env[PASSWORD].secret", FieldErrorKind::Invalid),
            ],
        )],
    );
}

#[test]
fn apps_inside_marathon_responses() {
    check("group.json", &[]);
    check("app_list.json", &[]);
}

#[test]
fn a_partial_update_body_decodes() {
    let definition = fixture("app_patch.json");
    let (app, _) = to_app(&definition);
    assert_eq!(app.spec.instances, Some(2));
    assert_eq!(app.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(app.metadata.name.as_deref(), Some("foo"));
}
