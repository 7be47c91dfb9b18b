//! What the `/v2` tests share: Marathon's example JSON (copied from its docs into the
//! repository, so a clean clone has it), JSON requests, Marathon's reply checks, and the task
//! keys marathon-python accepts.

use std::path::PathBuf;

use axum::http::{Method, header};
use serde_json::Value;

use super::{Harness, Reply};

/// Keys of a task that marathon-python 0.13.0 accepts (`MarathonTask.__init__`).
pub const CLIENT_TASK_KEYS: &[&str] = &[
    "appId",
    "healthCheckResults",
    "host",
    "id",
    "ports",
    "servicePorts",
    "slaveId",
    "stagedAt",
    "startedAt",
    "version",
    "ipAddresses",
    "state",
    "localVolumes",
    "region",
    "zone",
    "role",
];

/// The folder of Marathon's example JSON.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/marathon-examples")
}

/// One of Marathon's examples, parsed.
pub fn example(name: &str) -> Value {
    let path = examples_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A request with a JSON body.
pub async fn send_json(h: &Harness, method: Method, uri: &str, body: &Value) -> Reply {
    h.call(method, uri, Some("application/json"), body.to_string())
        .await
}

/// Asserts the status and Marathon's JSON content type; returns the body.
#[track_caller]
pub fn expect(reply: &Reply, code: u16) -> Value {
    let body = reply.json();
    assert_eq!(reply.status.as_u16(), code, "body: {body:#}");
    assert_eq!(
        reply.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    body
}

/// Every value of `expected` is in `actual` (objects may have more keys; numbers compare as
/// numbers, so `1` and `1.0` agree).
#[track_caller]
pub fn assert_contains(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                let found = actual
                    .get(key)
                    .unwrap_or_else(|| panic!("{path}/{key} missing in {actual:?}"));
                assert_contains(value, found, &format!("{path}/{key}"));
            }
        }
        (Value::Array(expected), Value::Array(actual)) => {
            assert_eq!(expected.len(), actual.len(), "{path}: {actual:?}");
            for (index, (value, found)) in expected.iter().zip(actual).enumerate() {
                assert_contains(value, found, &format!("{path}({index})"));
            }
        }
        (Value::Number(expected), Value::Number(actual)) => {
            assert_eq!(expected.as_f64(), actual.as_f64(), "{path}");
        }
        (expected, actual) => assert_eq!(expected, actual, "{path}"),
    }
}
