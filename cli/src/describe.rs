//! `pacer describe RESOURCE NAME`: one object in human-readable sections — metadata, the spec
//! (as indented YAML), the status, its conditions as a table, and the recent Events whose
//! `involvedObject` is this object.

use jiff::Timestamp;
use pacer_client::{DynamicApi, ListParams, ResourceInfo};
use serde_json::Value;

use crate::apply::api_for;
use crate::config::ConnectArgs;
use crate::get::resolve_resource;
use crate::merge::LAST_APPLIED;
use crate::output::{self, Outcome, age, str_at};

/// Options of `pacer describe`.
#[derive(Debug, clap::Args)]
pub(crate) struct DescribeArgs {
    /// The kind (`apps`, `app`, `ap`), or `TYPE/NAME`.
    pub(crate) resource: String,
    /// Names of the objects.
    pub(crate) names: Vec<String>,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// Runs `pacer describe`.
pub(crate) async fn run(args: DescribeArgs) -> anyhow::Result<Outcome> {
    let (kind, mut names) = match args.resource.split_once('/') {
        Some((kind, name)) => (kind, vec![name.to_owned()]),
        None => (args.resource.as_str(), Vec::new()),
    };
    names.extend(args.names.iter().cloned());
    let resource = resolve_resource(kind)?;
    if names.is_empty() {
        anyhow::bail!(
            "a name is required: pacer describe {} NAME",
            resource.singular
        );
    }
    let (client, settings) = args.connect.connect()?;
    let namespace = resource.namespaced.then_some(settings.namespace.as_str());
    let api = api_for(&client, resource, namespace);
    let event_api = match namespace {
        Some(namespace) => api_for(
            &client,
            ResourceInfo::resolve("events").unwrap_or(resource),
            Some(namespace),
        ),
        None => DynamicApi::all(
            client.clone(),
            *ResourceInfo::resolve("events").unwrap_or(resource),
        ),
    };
    let mut failed = false;
    for (index, name) in names.iter().enumerate() {
        let object = match api.get(name).await {
            Ok(object) => object,
            Err(error) => {
                failed = true;
                eprintln!("{}", output::render_error(&anyhow::Error::new(error)));
                continue;
            }
        };
        // Events are a courtesy: a server without them still describes the object.
        let events = match event_api.list_all(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(error) => {
                tracing::debug!(%error, "list events for describe");
                Vec::new()
            }
        };
        if index > 0 {
            println!();
        }
        print!("{}", render(resource, &object, &events, Timestamp::now())?);
    }
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

/// The whole description of one object.
pub(crate) fn render(
    resource: &ResourceInfo,
    object: &Value,
    events: &[Value],
    now: Timestamp,
) -> anyhow::Result<String> {
    let mut out = String::new();
    let field = |out: &mut String, label: &str, value: &str| {
        out.push_str(&format!("{:<14}{value}\n", format!("{label}:")));
    };
    field(&mut out, "Name", str_at(object, "/metadata/name"));
    if resource.namespaced {
        field(&mut out, "Namespace", str_at(object, "/metadata/namespace"));
    }
    field(
        &mut out,
        "Labels",
        &map_lines(object.pointer("/metadata/labels"), 14),
    );
    let annotations = object.pointer("/metadata/annotations").map(|annotations| {
        let mut annotations = annotations.clone();
        if let Some(map) = annotations.as_object_mut() {
            map.remove(LAST_APPLIED);
        }
        annotations
    });
    field(
        &mut out,
        "Annotations",
        &map_lines(annotations.as_ref(), 14),
    );
    field(&mut out, "API Version", str_at(object, "/apiVersion"));
    field(&mut out, "Kind", str_at(object, "/kind"));
    let created = str_at(object, "/metadata/creationTimestamp");
    if !created.is_empty() {
        field(
            &mut out,
            "Created",
            &format!("{created} ({} ago)", age(created, now)),
        );
    }
    for (label, pointer) in [
        ("UID", "/metadata/uid"),
        ("Version", "/metadata/resourceVersion"),
        ("Generation", "/metadata/generation"),
        ("Deleting", "/metadata/deletionTimestamp"),
    ] {
        if let Some(value) = object.pointer(pointer) {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            field(&mut out, label, &text);
        }
    }
    if let Some(finalizers) = object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        && !finalizers.is_empty()
    {
        let names: Vec<&str> = finalizers.iter().filter_map(Value::as_str).collect();
        field(&mut out, "Finalizers", &names.join(", "));
    }

    let (spec, status) = sections(resource, object);
    if let Some(spec) = spec {
        out.push_str("Spec:\n");
        out.push_str(&indented_yaml(&spec)?);
    }
    let mut conditions = Vec::new();
    if let Some(mut status) = status {
        if let Some(found) = status
            .as_object_mut()
            .and_then(|map| map.remove("conditions"))
        {
            conditions = found.as_array().cloned().unwrap_or_default();
        }
        if status.as_object().is_some_and(|map| !map.is_empty()) {
            out.push_str("Status:\n");
            out.push_str(&indented_yaml(&status)?);
        }
    }
    if !conditions.is_empty() {
        out.push_str("Conditions:\n");
        let mut table =
            output::plain_table(&["Type", "Status", "Reason", "Message", "Last Transition"]);
        for condition in &conditions {
            let since = str_at(condition, "/lastTransitionTime");
            table.add_row(vec![
                str_at(condition, "/type").to_owned(),
                str_at(condition, "/status").to_owned(),
                str_at(condition, "/reason").to_owned(),
                str_at(condition, "/message").to_owned(),
                if since.is_empty() {
                    String::new()
                } else {
                    format!("{} ago", age(since, now))
                },
            ]);
        }
        out.push_str(&indent(&output::render_table(&table), 2));
    }

    let mut related: Vec<&Value> = events
        .iter()
        .filter(|event| involves(event, resource, object))
        .collect();
    related.sort_by_key(|event| event_time(event).to_owned());
    out.push_str("Events:");
    if related.is_empty() {
        out.push_str("       <none>\n");
    } else {
        out.push('\n');
        let mut table = output::plain_table(&["Type", "Reason", "Age", "From", "Message"]);
        for event in related.iter().rev().take(20).rev() {
            let count = event.pointer("/count").and_then(Value::as_i64).unwrap_or(1);
            let mut when = age(event_time(event), now);
            if count > 1 {
                when = format!("{when} (x{count})");
            }
            table.add_row(vec![
                str_at(event, "/type").to_owned(),
                str_at(event, "/reason").to_owned(),
                when,
                str_at(event, "/source/component").to_owned(),
                str_at(event, "/message").replace('\n', " "),
            ]);
        }
        out.push_str(&indent(&output::render_table(&table), 2));
    }
    Ok(out)
}

/// The spec and status to show: `spec`/`status` when the kind has them; for kinds with
/// top-level fields (Event), everything but type and metadata as the "spec".
fn sections(resource: &ResourceInfo, object: &Value) -> (Option<Value>, Option<Value>) {
    if resource.kind == "Event" {
        let mut rest = object.clone();
        if let Some(map) = rest.as_object_mut() {
            for key in ["apiVersion", "kind", "metadata"] {
                map.remove(key);
            }
        }
        return (Some(rest), None);
    }
    (object.get("spec").cloned(), object.get("status").cloned())
}

fn involves(event: &Value, resource: &ResourceInfo, object: &Value) -> bool {
    str_at(event, "/involvedObject/kind") == resource.kind
        && str_at(event, "/involvedObject/name") == str_at(object, "/metadata/name")
        && (!resource.namespaced
            || str_at(event, "/involvedObject/namespace").is_empty()
            || str_at(event, "/involvedObject/namespace") == str_at(object, "/metadata/namespace"))
}

fn event_time(event: &Value) -> &str {
    [
        "/lastTimestamp",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .map(|pointer| str_at(event, pointer))
    .find(|time| !time.is_empty())
    .unwrap_or("")
}

fn map_lines(map: Option<&Value>, column: usize) -> String {
    let Some(map) = map.and_then(Value::as_object).filter(|map| !map.is_empty()) else {
        return "<none>".to_owned();
    };
    map.iter()
        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(&format!("\n{}", " ".repeat(column)))
}

fn indented_yaml(value: &Value) -> anyhow::Result<String> {
    Ok(indent(output::to_yaml(value)?.trim_end(), 2))
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    let mut out = String::new();
    for line in text.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str(&format!("{pad}{line}\n"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn description_has_sections_and_matching_events() {
        let app = json!({"apiVersion": "pacer.dev/v1", "kind": "App",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web", "tier": "front"},
                         "annotations": {LAST_APPLIED: "{}"}, "resourceVersion": "12", "generation": 2,
                         "creationTimestamp": "2024-05-01T09:00:00Z"},
            "spec": {"cmd": "serve", "instances": 2},
            "status": {"running": 1, "conditions": [{"type": "Available", "status": "False",
                        "reason": "Scaling", "lastTransitionTime": "2024-05-01T09:59:00Z"}]}});
        let events = vec![
            json!({"involvedObject": {"kind": "App", "name": "web", "namespace": "shop"},
                   "type": "Normal", "reason": "Scaled", "message": "scaled to 2", "count": 3,
                   "lastTimestamp": "2024-05-01T09:59:50Z", "source": {"component": "deployment-controller"}}),
            json!({"involvedObject": {"kind": "App", "name": "db", "namespace": "shop"},
                   "type": "Warning", "reason": "Other", "message": "not this one"}),
        ];
        let now = "2024-05-01T10:00:00Z".parse().unwrap();
        let text = render(ResourceInfo::resolve("app").unwrap(), &app, &events, now).unwrap();
        let expected = "\
Name:         web
Namespace:    shop
Labels:       app=web
              tier=front
Annotations:  <none>
API Version:  pacer.dev/v1
Kind:         App
Created:      2024-05-01T09:00:00Z (60m ago)
Version:      12
Generation:   2
Spec:
  cmd: serve
  instances: 2
Status:
  running: 1
Conditions:
  Type        Status   Reason    Message   Last Transition
  Available   False    Scaling             60s ago
Events:
  Type     Reason   Age        From                    Message
  Normal   Scaled   10s (x3)   deployment-controller   scaled to 2
";
        assert_eq!(text, expected);
    }
}
