//! Strict decoding: every unknown field is reported with its full path, a type error with the
//! path where it happened, and both turn into a 400 `Status` with one cause per field.

#![allow(clippy::unwrap_used)]

use pacer_schemas::decode::{decode_reporting_unknown, decode_value_strict};
use pacer_schemas::{App, DecodeError, Status, decode_strict};
use serde_json::json;

#[track_caller]
fn check(json: &str, expect: Result<(), &str>) {
    let got = decode_strict::<App>(json.as_bytes()).map(|_| ());
    match (got, expect) {
        (Ok(()), Ok(())) => {}
        (Err(error), Err(message)) => assert_eq!(error.to_string(), message, "{json}"),
        (got, expect) => panic!("{json}: got {got:?}, expected {expect:?}"),
    }
}

#[test]
fn every_unknown_field_is_named_with_its_path() {
    let json = json!({
        "apiVersion": "pacer.dev/v1",
        "kind": "App",
        "metadata": {"name": "web", "nmae": "x", "labels": {"any-key": "is fine"}},
        "spec": {
            "cmd": "serve",
            "cpu": 1,
            "env": {"ANY_NAME": "is fine"},
            "healthChecks": [{"protocol": "HTTP"}, {"protocol": "TCP", "portindex": 0}],
            "container": {"docker": {"image": "nginx", "imagePullPolicy": "Always"}},
            "unreachableStrategy": {"inactiveAfterSeconds": 1, "foo": 2},
            "constraints": [["hostname", "UNIQUE"]],
        },
        "extra": true,
    });
    check(
        &json.to_string(),
        Err(
            "strict decoding error: unknown field \"extra\", unknown field \"metadata.nmae\", \
             unknown field \"spec.container.docker.imagePullPolicy\", unknown field \"spec.cpu\", \
             unknown field \"spec.healthChecks[1].portindex\", unknown field \
             \"spec.unreachableStrategy.foo\"",
        ),
    );
    let (app, unknown) = decode_reporting_unknown::<App>(json.to_string().as_bytes()).unwrap();
    assert_eq!(app.spec.cmd.as_deref(), Some("serve"));
    assert_eq!(unknown.len(), 6);
}

#[test]
fn type_errors_name_their_path() {
    check(
        r#"{"spec": {"instances": "three"}}"#,
        Err("spec.instances: invalid type: string \"three\", expected i32"),
    );
    check(
        r#"{"spec": {"healthChecks": [{}, {"portIndex": 1.5}]}}"#,
        Err("spec.healthChecks[1].portIndex: invalid type: floating point `1.5`, expected i32"),
    );
    check(
        r#"{"spec": {"constraints": [["hostname"]]}}"#,
        Err(
            "spec.constraints[0]: invalid length 1, expected a constraint [field, OPERATOR] or [field, OPERATOR, value] of strings",
        ),
    );
    check(
        r#"{"spec": {"env": {"PASSWORD": {"secret": "db", "key": "x"}}}}"#,
        Err("spec.env.PASSWORD: unknown field `key`, expected `secret`"),
    );
    check(
        r#"{"spec": {"unreachableStrategy": "sometimes"}}"#,
        Err(
            "spec.unreachableStrategy: invalid value: string \"sometimes\", expected \"disabled\" or an object {\"inactiveAfterSeconds\", \"expungeAfterSeconds\"}",
        ),
    );
    let error = decode_strict::<App>(br#"{"metadata": {"creationTimestamp": "yesterday"}}"#)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(
            "metadata.creationTimestamp: invalid timestamp \"yesterday\": expected RFC 3339"
        ),
        "{error}"
    );
    check(
        r#"{"spec": {"cmd": "a", "cmd": "b"}}"#,
        Err("spec: duplicate field `cmd`"),
    );
    check(
        r#""app""#,
        Err("<document>: invalid type: string \"app\", expected struct App"),
    );
}

#[test]
fn syntax_errors_give_a_position() {
    check(
        r#"{"spec": {"#,
        Err("malformed JSON at line 1, column 10: EOF while parsing an object"),
    );
    check(
        r#"{} {}"#,
        Err("malformed JSON at line 1, column 4: trailing characters"),
    );
}

#[test]
fn values_decode_strictly_too() {
    let value = json!({"spec": {"cmd": "x", "commnd": "y"}});
    let error = decode_value_strict::<App>(value).unwrap_err();
    assert_eq!(error.unknown_fields(), ["spec.commnd"]);
    assert!(decode_value_strict::<App>(json!({"spec": {"cmd": "x"}})).is_ok());
}

#[test]
fn decode_errors_become_bad_request_statuses() {
    let error = decode_strict::<App>(br#"{"spec": {"cpu": 1, "memory": 2}}"#).unwrap_err();
    let status = Status::from_decode_error(&error);
    assert_eq!(
        serde_json::to_value(&status).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "message": "strict decoding error: unknown field \"spec.cpu\", unknown field \"spec.memory\"",
            "reason": "BadRequest",
            "details": {"causes": [
                {"reason": "FieldValueUnknown", "message": "unknown field \"spec.cpu\"", "field": "spec.cpu"},
                {"reason": "FieldValueUnknown", "message": "unknown field \"spec.memory\"", "field": "spec.memory"},
            ]},
            "code": 400,
        })
    );
    let error = decode_strict::<App>(br#"{"spec": {"mem": "lots"}}"#).unwrap_err();
    assert!(matches!(&error, DecodeError::Type { path, .. } if path == "spec.mem"));
    let causes = Status::from_decode_error(&error).details.unwrap().causes;
    assert_eq!(causes[0].field.as_deref(), Some("spec.mem"));
    let error = decode_strict::<App>(b"{").unwrap_err();
    assert!(Status::from_decode_error(&error).details.is_none());
}
