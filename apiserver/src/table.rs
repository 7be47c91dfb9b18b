//! Server-side printing: a `meta.k8s.io/v1` `Table` instead of the object or list when the
//! `Accept` header asks for `application/json;as=Table;v=v1;g=meta.k8s.io` (what `kubectl get`
//! sends, on lists, single objects and watches alike).
//!
//! A table has `columnDefinitions` and one row per object: `cells` (pre-formatted, Age as
//! kubectl's human duration) and `object`, the object's `PartialObjectMetadata` (kubectl reads it
//! for `-A`'s NAMESPACE column, `--show-labels` and `-L`). Columns per kind:
//!
//! | kind | columns |
//! |---|---|
//! | App | NAME, INSTANCES (`running/desired`), HEALTHY (`-` without health checks), AGE |
//! | Instance | NAME, APP, NODE, PHASE, AGE |
//! | Node | NAME, STATUS (`Ready`, `NotReady`, `Unknown`, `,SchedulingDisabled`), CPUS, MEM, AGE |
//! | Lease | NAME, HOLDER (`<none>` when free), RENEWED (time since `spec.renewTime`), AGE |
//! | others | NAME, AGE |
//!
//! On a watch every event's object is a one-row table; only the first carries
//! `columnDefinitions` (kubectl keeps the header it printed).

use axum::http::{HeaderMap, header};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::kinds::KindDef;

/// Whether the client prefers a `Table`: the first media range of `Accept` that the server can
/// answer is `application/json;as=Table;v=v1;g=meta.k8s.io` (rather than plain JSON).
pub fn wants_table(headers: &HeaderMap) -> bool {
    let Some(accept) = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|param| param.split_once('='))
            .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        match (media.as_str(), param("as")) {
            ("application/json", Some("Table"))
                if param("g") == Some("meta.k8s.io") && param("v") == Some("v1") =>
            {
                return true;
            }
            ("application/json" | "*/*" | "application/*", None) => return false,
            _ => {}
        }
    }
    false
}

/// The column definitions of `kind`.
pub fn columns(kind: &KindDef) -> Value {
    let column = |name: &str, kind: &str, format: &str, description: &str| {
        json!({"name": name, "type": kind, "format": format, "description": description,
               "priority": 0})
    };
    let name = column(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace.",
    );
    let age = column(
        "Age",
        "string",
        "",
        "Time since the object was created (metadata.creationTimestamp).",
    );
    let mut columns = vec![name];
    match kind.kind {
        "App" => columns.extend([
            column(
                "Instances",
                "string",
                "",
                "Running instances / desired instances (spec.instances).",
            ),
            column(
                "Healthy",
                "string",
                "",
                "Instances passing their health checks; - without health checks.",
            ),
        ]),
        "Instance" => columns.extend([
            column("App", "string", "", "The app this instance runs."),
            column("Node", "string", "", "The node it is bound to."),
            column("Phase", "string", "", "Lifecycle phase."),
        ]),
        "Node" => columns.extend([
            column("Status", "string", "", "Readiness and schedulability."),
            column("CPUs", "string", "", "CPU capacity."),
            column("Mem", "string", "", "Memory capacity."),
        ]),
        "AppVersion" => columns.extend([
            column("App", "string", "", "The app this version belongs to."),
            column(
                "Revision",
                "integer",
                "",
                "Revision number (spec.revision).",
            ),
            column("Version", "string", "", "Marathon version (spec.version)."),
            column(
                "Change",
                "string",
                "",
                "Created, Scaled, Updated or Restarted.",
            ),
        ]),
        "Deployment" => columns.extend([
            column("App", "string", "", "The app the deployment touches."),
            column("Action", "string", "", "The action of its step."),
            column(
                "Phase",
                "string",
                "",
                "Pending, Running, Succeeded, Failed, Cancelled.",
            ),
            column(
                "Progress",
                "string",
                "",
                "Healthy new instances / target instances of the current action.",
            ),
        ]),
        "Lease" => columns.extend([
            column(
                "Holder",
                "string",
                "",
                "The current holder (spec.holderIdentity).",
            ),
            column(
                "Renewed",
                "string",
                "",
                "Time since the holder last renewed (spec.renewTime).",
            ),
        ]),
        _ => {}
    }
    columns.push(age);
    Value::Array(columns)
}

/// One row: the cells of `object` and its `PartialObjectMetadata`.
pub fn row(kind: &KindDef, object: &Value, now: Timestamp) -> Value {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let or = |value: String, fallback: &str| {
        if value.is_empty() {
            fallback.to_owned()
        } else {
            value
        }
    };
    let int = |pointer: &str| object.pointer(pointer).and_then(Value::as_i64);
    let mut cells = vec![Value::String(text("/metadata/name"))];
    match kind.kind {
        "App" => {
            let desired = int("/spec/instances").unwrap_or(1);
            let running = int("/status/running").unwrap_or(0);
            let has_checks = object
                .pointer("/spec/healthChecks")
                .and_then(Value::as_array)
                .is_some_and(|checks| !checks.is_empty());
            let healthy = if has_checks {
                int("/status/healthy").unwrap_or(0).to_string()
            } else {
                "-".to_owned()
            };
            cells.extend([json!(format!("{running}/{desired}")), json!(healthy)]);
        }
        "Instance" => cells.extend([
            json!(or(text("/spec/app"), "-")),
            json!(or(text("/spec/nodeName"), "<none>")),
            json!(or(text("/status/phase"), "Scheduled")),
        ]),
        "Node" => {
            let number = |pointer: &str| {
                object
                    .pointer(pointer)
                    .and_then(Value::as_f64)
                    .map(format_number)
            };
            cells.extend([
                json!(node_status(object)),
                json!(number("/status/capacity/cpus").unwrap_or_else(|| "-".to_owned())),
                json!(
                    number("/status/capacity/mem")
                        .map_or_else(|| "-".to_owned(), |mem| format!("{mem}Mi"))
                ),
            ]);
        }
        "AppVersion" => cells.extend([
            json!(or(text("/spec/app"), "-")),
            json!(int("/spec/revision").unwrap_or(0)),
            json!(or(text("/spec/version"), "-")),
            json!(or(text("/spec/change"), "-")),
        ]),
        "Deployment" => {
            let app = match (
                text("/spec/affectedApps/0/namespace"),
                text("/spec/affectedApps/0/name"),
            ) {
                (_, name) if name.is_empty() => "-".to_owned(),
                (namespace, name) => format!("{namespace}/{name}"),
            };
            let progress = match (
                int("/status/currentActions/0/healthyInstances"),
                int("/status/currentActions/0/targetInstances"),
            ) {
                (Some(healthy), Some(target)) => format!("{healthy}/{target}"),
                _ => "-".to_owned(),
            };
            cells.extend([
                json!(app),
                json!(or(text("/spec/steps/0/actions/0/action"), "-")),
                json!(or(text("/status/phase"), "Pending")),
                json!(progress),
            ]);
        }
        "Lease" => cells.extend([
            json!(or(text("/spec/holderIdentity"), "<none>")),
            json!(age(
                object.pointer("/spec/renewTime").and_then(Value::as_str),
                now
            )),
        ]),
        _ => {}
    }
    cells.push(Value::String(age(
        object
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
        now,
    )));
    json!({"cells": cells, "object": partial_metadata(object)})
}

/// A `Table` of `objects`, with `metadata` (`resourceVersion`, `continue`) of the list;
/// `with_columns: false` leaves `columnDefinitions` empty (later watch events).
pub fn table(kind: &KindDef, objects: &[Value], metadata: Value, with_columns: bool) -> Value {
    let now = Timestamp::now();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": if with_columns { columns(kind) } else { json!([]) },
        "rows": objects.iter().map(|object| row(kind, object, now)).collect::<Vec<_>>(),
    })
}

/// The object's `PartialObjectMetadata` (its metadata without `managedFields`).
fn partial_metadata(object: &Value) -> Value {
    let mut metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(fields) = metadata.as_object_mut() {
        fields.remove("managedFields");
    }
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata})
}

fn node_status(object: &Value) -> String {
    let ready = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|condition| condition.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .and_then(|condition| condition.get("status").and_then(Value::as_str));
    let mut status = match ready {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    }
    .to_owned();
    if object
        .pointer("/spec/unschedulable")
        .and_then(Value::as_bool)
        == Some(true)
    {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// `0.25`, `64`, `1.5` — no trailing `.0`.
fn format_number(value: f64) -> String {
    let text = format!("{value}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

/// The age of an object created at `created` (RFC 3339), as kubectl prints it; `<unknown>`
/// without a timestamp.
pub fn age(created: Option<&str>, now: Timestamp) -> String {
    let Some(created) = created.and_then(|text| text.parse::<Timestamp>().ok()) else {
        return "<unknown>".to_owned();
    };
    human_duration(now.as_second() - created.as_second())
}

/// Kubernetes' `duration.HumanDuration` on whole seconds (`apimachinery/pkg/util/duration`).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let rest = seconds % 60;
        return if rest == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{rest}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let rest = minutes % 60;
        return if rest == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{rest}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let rest = hours % 24;
        return if rest == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{rest}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::kinds;

    #[test]
    fn accept_headers() {
        let with = |accept: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
            wants_table(&headers)
        };
        assert!(with(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(with("application/json; as=Table; g=meta.k8s.io; v=v1"));
        assert!(!with("application/json"));
        assert!(!with(
            "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!with(
            "application/json,application/json;as=Table;v=v1;g=meta.k8s.io"
        ));
        assert!(!with(
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
        ));
        assert!(!wants_table(&HeaderMap::new()));
    }

    #[test]
    fn ages_like_kubectl() {
        for (seconds, text) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (185, "3m5s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60 * 7, "3h7m"),
            (30 * 3600, "30h"),
            (50 * 3600, "2d2h"),
            (48 * 3600, "2d"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(human_duration(seconds), text, "{seconds}s");
        }
        let now: Timestamp = "2024-05-01T10:05:12Z".parse().unwrap();
        assert_eq!(age(Some("2024-05-01T10:00:00Z"), now), "5m12s");
        assert_eq!(age(None, now), "<unknown>");
    }

    #[test]
    fn rows_per_kind() {
        let now: Timestamp = "2024-05-01T10:00:30Z".parse().unwrap();
        let app = json!({"metadata": {"name": "web", "namespace": "default",
            "creationTimestamp": "2024-05-01T10:00:00Z", "managedFields": [{}]},
            "spec": {"instances": 3, "healthChecks": [{}]}, "status": {"running": 2, "healthy": 1}});
        let row = row(kinds::find("apps").unwrap(), &app, now);
        assert_eq!(row["cells"], json!(["web", "2/3", "1", "30s"]));
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["metadata"]["namespace"], "default");
        assert!(row["object"]["metadata"].get("managedFields").is_none());
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true},
            "status": {"capacity": {"cpus": 4.0, "mem": 2048.0},
                       "conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(
            super::row(kinds::find("nodes").unwrap(), &node, now)["cells"],
            json!(["n1", "Ready,SchedulingDisabled", "4", "2048Mi", "<unknown>"])
        );
        let instance = json!({"metadata": {"name": "web-1"}, "spec": {"app": "web"}});
        assert_eq!(
            super::row(kinds::find("instances").unwrap(), &instance, now)["cells"],
            json!(["web-1", "web", "<none>", "Scheduled", "<unknown>"])
        );
        let names: Vec<Value> = columns(kinds::find("offers").unwrap())
            .as_array()
            .unwrap()
            .iter()
            .map(|column| column["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("Name"), json!("Age")]);
        let deployment = json!({"metadata": {"name": "d1"},
            "spec": {"affectedApps": [{"namespace": "default", "name": "web"}],
                     "steps": [{"actions": [{"action": "RestartApplication"}]}]},
            "status": {"phase": "Running",
                       "currentActions": [{"healthyInstances": 2, "targetInstances": 3}]}});
        assert_eq!(
            super::row(kinds::find("deployments").unwrap(), &deployment, now)["cells"],
            json!([
                "d1",
                "default/web",
                "RestartApplication",
                "Running",
                "2/3",
                "<unknown>"
            ])
        );
        let version = json!({"metadata": {"name": "web-2"},
            "spec": {"app": "web", "revision": 2, "version": "2024-05-01T10:00:00.000Z",
                     "change": "Scaled"}});
        assert_eq!(
            super::row(kinds::find("appversions").unwrap(), &version, now)["cells"],
            json!([
                "web-2",
                "web",
                2,
                "2024-05-01T10:00:00.000Z",
                "Scaled",
                "<unknown>"
            ])
        );
    }
}
