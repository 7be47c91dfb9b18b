//! The columns of `pacer get` per kind: apps show instances (running/desired), health,
//! version and age; instances their app, node and phase; nodes readiness and capacity;
//! deployments their phase and step; events kubectl's LAST SEEN/TYPE/REASON/OBJECT/MESSAGE;
//! leases their holder and time since the last renewal; app versions their app, revision,
//! version and kind of change;
//! any other kind NAME and AGE. `-o wide` adds columns; `-A` puts NAMESPACE first. Cells are
//! read from the JSON objects, so a field a newer server adds or omits never breaks a table.

use jiff::Timestamp;
use pacer_client::ResourceInfo;
use serde_json::Value;

use crate::output::{age, str_at};

/// The header cells.
pub(crate) fn headers(
    resource: &ResourceInfo,
    wide: bool,
    namespace_column: bool,
) -> Vec<&'static str> {
    let mut headers = Vec::new();
    if namespace_column && resource.namespaced {
        headers.push("NAMESPACE");
    }
    headers.extend_from_slice(match resource.kind {
        "App" => &["NAME", "INSTANCES", "HEALTHY", "VERSION", "AGE"][..],
        "Instance" => &["NAME", "APP", "NODE", "PHASE", "AGE"],
        "Node" => &["NAME", "STATUS", "CPUS", "MEM", "AGE"],
        "Deployment" => &["NAME", "PHASE", "STEP", "APPS", "AGE"],
        "Offer" => &["NAME", "NODE", "ROLE", "CPUS", "MEM", "PHASE", "AGE"],
        "Framework" => &["NAME", "ROLE", "WEIGHT", "SHARE", "OFFERS", "AGE"],
        "Event" => &["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "Lease" => &["NAME", "HOLDER", "RENEWED", "AGE"],
        "AppVersion" => &["NAME", "APP", "REVISION", "VERSION", "CHANGE", "AGE"],
        _ => &["NAME", "AGE"],
    });
    if wide {
        headers.extend_from_slice(match resource.kind {
            "App" => &["CPUS", "MEM", "IMAGE/COMMAND", "DEPLOYMENTS"][..],
            "Instance" => &["HOST", "PORTS", "RESTARTS", "HEALTHY"],
            "Node" => &["ROLE", "REGION", "ZONE", "ADDRESS", "VERSION"],
            "Event" => &["COUNT", "SOURCE"],
            _ => &[],
        });
    }
    headers
}

/// The cells of one object, matching [`headers`].
pub(crate) fn row(
    resource: &ResourceInfo,
    object: &Value,
    wide: bool,
    namespace_column: bool,
    now: Timestamp,
) -> Vec<String> {
    let mut cells = Vec::new();
    if namespace_column && resource.namespaced {
        cells.push(str_at(object, "/metadata/namespace").to_owned());
    }
    let name = str_at(object, "/metadata/name").to_owned();
    let created = age(str_at(object, "/metadata/creationTimestamp"), now);
    match resource.kind {
        "App" => {
            let desired = int_at(object, "/spec/instances").unwrap_or(1);
            let running = int_at(object, "/status/running").unwrap_or(0);
            let has_checks = object
                .pointer("/spec/healthChecks")
                .and_then(Value::as_array)
                .is_some_and(|checks| !checks.is_empty());
            let healthy = if has_checks {
                int_at(object, "/status/healthy").unwrap_or(0).to_string()
            } else {
                "-".to_owned()
            };
            cells.extend([
                name,
                format!("{running}/{desired}"),
                healthy,
                or_dash(str_at(object, "/status/currentVersion")),
                created,
            ]);
            if wide {
                cells.extend([
                    number_at(object, "/spec/cpus"),
                    number_at(object, "/spec/mem"),
                    app_command(object),
                    object
                        .pointer("/status/deployments")
                        .and_then(Value::as_array)
                        .map_or_else(|| "-".to_owned(), |ids| join_strings(ids)),
                ]);
            }
        }
        "Instance" => {
            cells.extend([
                name,
                or_dash(str_at(object, "/spec/app")),
                or_none(str_at(object, "/spec/nodeName")),
                or_default(str_at(object, "/status/phase"), "Scheduled"),
                created,
            ]);
            if wide {
                cells.extend([
                    or_none(str_at(object, "/status/host")),
                    object
                        .pointer("/spec/hostPorts")
                        .and_then(Value::as_array)
                        .map_or_else(|| "-".to_owned(), |ports| join_values(ports)),
                    int_at(object, "/status/restarts").unwrap_or(0).to_string(),
                    object
                        .pointer("/status/healthy")
                        .and_then(Value::as_bool)
                        .map_or_else(|| "-".to_owned(), |healthy| healthy.to_string()),
                ]);
            }
        }
        "Node" => {
            cells.extend([
                name,
                node_status(object),
                number_at(object, "/status/capacity/cpus"),
                object
                    .pointer("/status/capacity/mem")
                    .and_then(Value::as_f64)
                    .map_or_else(|| "-".to_owned(), |mem| format!("{}Mi", format_number(mem))),
                created,
            ]);
            if wide {
                cells.extend([
                    or_dash(str_at(object, "/spec/role")),
                    or_dash(str_at(object, "/spec/region")),
                    or_dash(str_at(object, "/spec/zone")),
                    or_dash(str_at(object, "/status/agentAddress")),
                    or_dash(str_at(object, "/status/agentVersion")),
                ]);
            }
        }
        "Deployment" => {
            let apps = object
                .pointer("/spec/affectedApps")
                .and_then(Value::as_array)
                .map(|apps| {
                    apps.iter()
                        .map(|app| {
                            format!("{}/{}", str_at(app, "/namespace"), str_at(app, "/name"))
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            cells.extend([
                name,
                or_dash(str_at(object, "/status/phase")),
                format!(
                    "{}/{}",
                    int_at(object, "/status/currentStep").unwrap_or(0),
                    int_at(object, "/status/totalSteps").unwrap_or_else(|| {
                        object
                            .pointer("/spec/steps")
                            .and_then(Value::as_array)
                            .map_or(0, |steps| i64::try_from(steps.len()).unwrap_or(i64::MAX))
                    })
                ),
                or_dash(&apps),
                created,
            ]);
        }
        "AppVersion" => {
            cells.extend([
                name,
                or_dash(str_at(object, "/spec/app")),
                int_at(object, "/spec/revision").unwrap_or(0).to_string(),
                or_dash(str_at(object, "/spec/version")),
                or_dash(str_at(object, "/spec/change")),
                created,
            ]);
        }
        "Lease" => {
            cells.extend([
                name,
                or_none(str_at(object, "/spec/holderIdentity")),
                age(str_at(object, "/spec/renewTime"), now),
                created,
            ]);
        }
        "Framework" => {
            cells.extend([
                name,
                or_default(str_at(object, "/spec/role"), "*"),
                object
                    .pointer("/spec/weight")
                    .and_then(Value::as_f64)
                    .map_or_else(|| "1".to_owned(), format_number),
                number_at(object, "/status/dominantShare"),
                number_at(object, "/status/outstandingOffers"),
                created,
            ]);
        }
        "Offer" => {
            cells.extend([
                name,
                or_dash(str_at(object, "/spec/nodeName")),
                or_dash(str_at(object, "/spec/role")),
                number_at(object, "/spec/resources/cpus"),
                number_at(object, "/spec/resources/mem"),
                or_dash(str_at(object, "/status/phase")),
                created,
            ]);
        }
        "Event" => {
            let last = [
                "/lastTimestamp",
                "/firstTimestamp",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .map(|pointer| str_at(object, pointer))
            .find(|time| !time.is_empty())
            .unwrap_or("");
            let involved = format!(
                "{}/{}",
                str_at(object, "/involvedObject/kind").to_ascii_lowercase(),
                str_at(object, "/involvedObject/name")
            );
            cells.extend([
                age(last, now),
                or_dash(str_at(object, "/type")),
                or_dash(str_at(object, "/reason")),
                involved,
                str_at(object, "/message").replace('\n', " "),
            ]);
            if wide {
                cells.extend([
                    int_at(object, "/count").unwrap_or(1).to_string(),
                    or_dash(str_at(object, "/source/component")),
                ]);
            }
        }
        _ => cells.extend([name, created]),
    }
    cells
}

fn node_status(object: &Value) -> String {
    let ready = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|condition| str_at(condition, "/type") == "Ready")
        })
        .map(|condition| str_at(condition, "/status"));
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

fn app_command(object: &Value) -> String {
    let image = str_at(object, "/spec/container/docker/image");
    let text = if !image.is_empty() {
        image.to_owned()
    } else if let Some(cmd) = object.pointer("/spec/cmd").and_then(Value::as_str) {
        cmd.to_owned()
    } else if let Some(args) = object.pointer("/spec/args").and_then(Value::as_array) {
        join_strings(args).replace(',', " ")
    } else {
        "-".to_owned()
    };
    truncate(&text, 40)
}

fn truncate(text: &str, limit: usize) -> String {
    let single_line = text.replace('\n', " ");
    if single_line.chars().count() <= limit {
        single_line
    } else {
        let mut cut: String = single_line.chars().take(limit - 1).collect();
        cut.push('…');
        cut
    }
}

fn int_at(object: &Value, pointer: &str) -> Option<i64> {
    object.pointer(pointer).and_then(Value::as_i64)
}

fn number_at(object: &Value, pointer: &str) -> String {
    object
        .pointer(pointer)
        .and_then(Value::as_f64)
        .map_or_else(|| "-".to_owned(), format_number)
}

/// `1` for 1.0, `0.5` for 0.5.
pub(crate) fn format_number(value: f64) -> String {
    let text = format!("{value}");
    text.strip_suffix(".0")
        .map_or_else(|| text.clone(), str::to_owned)
}

fn join_strings(values: &[Value]) -> String {
    values
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

fn join_values(values: &[Value]) -> String {
    values
        .iter()
        .map(|value| match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn or_dash(text: &str) -> String {
    or_default(text, "-")
}

fn or_none(text: &str) -> String {
    or_default(text, "<none>")
}

fn or_default(text: &str, default: &str) -> String {
    if text.is_empty() {
        default.to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn info(name: &str) -> ResourceInfo {
        *ResourceInfo::resolve(name).unwrap()
    }

    fn now() -> Timestamp {
        "2024-05-01T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn app_rows_show_instances_health_and_version() {
        let app = json!({"metadata": {"name": "web", "namespace": "shop", "creationTimestamp": "2024-05-01T09:58:00Z"},
            "spec": {"instances": 3, "cpus": 0.5, "mem": 64, "container": {"docker": {"image": "nginx:1.25"}},
                     "healthChecks": [{"protocol": "HTTP"}]},
            "status": {"running": 2, "healthy": 1, "currentVersion": "2024-05-01T09:58:00Z"}});
        assert_eq!(
            headers(&info("apps"), true, true),
            [
                "NAMESPACE",
                "NAME",
                "INSTANCES",
                "HEALTHY",
                "VERSION",
                "AGE",
                "CPUS",
                "MEM",
                "IMAGE/COMMAND",
                "DEPLOYMENTS"
            ]
        );
        assert_eq!(
            row(&info("apps"), &app, true, true, now()),
            [
                "shop",
                "web",
                "2/3",
                "1",
                "2024-05-01T09:58:00Z",
                "2m",
                "0.5",
                "64",
                "nginx:1.25",
                "-"
            ]
        );
        let bare = json!({"metadata": {"name": "new"}, "spec": {"cmd": "sleep 1"}});
        assert_eq!(
            row(&info("app"), &bare, false, false, now()),
            ["new", "0/1", "-", "-", "<unknown>"]
        );
    }

    #[test]
    fn instance_and_node_rows() {
        let instance = json!({"metadata": {"name": "web-1"}, "spec": {"app": "web", "nodeName": "n1", "hostPorts": [31000]},
            "status": {"phase": "Running", "restarts": 2, "healthy": true}});
        assert_eq!(
            row(&info("inst"), &instance, true, false, now()),
            [
                "web-1",
                "web",
                "n1",
                "Running",
                "<unknown>",
                "<none>",
                "31000",
                "2",
                "true"
            ]
        );
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true},
            "status": {"capacity": {"cpus": 4.0, "mem": 8192}, "conditions": [{"type": "Ready", "status": "True"}]}});
        // Nodes are cluster-scoped: no NAMESPACE column even with -A.
        assert_eq!(
            headers(&info("no"), false, true),
            ["NAME", "STATUS", "CPUS", "MEM", "AGE"]
        );
        assert_eq!(
            row(&info("no"), &node, false, true, now()),
            ["n1", "Ready,SchedulingDisabled", "4", "8192Mi", "<unknown>"]
        );
    }

    #[test]
    fn every_row_matches_its_headers() {
        let object = json!({"metadata": {"name": "x"}});
        for resource in pacer_client::KNOWN_RESOURCES.iter() {
            for wide in [false, true] {
                for all in [false, true] {
                    assert_eq!(
                        headers(resource, wide, all).len(),
                        row(resource, &object, wide, all, now()).len(),
                        "{} wide={wide} all={all}",
                        resource.kind
                    );
                }
            }
        }
    }
}
