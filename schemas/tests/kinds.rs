//! The kinds as the API server sees them through `Resource`: names for discovery, JSON
//! round trips, and the validation rules of the kinds controllers and agents write.

#![allow(clippy::unwrap_used)]

use pacer_schemas::field_error::FieldErrorKind::{
    self, Forbidden, Invalid, NotSupported, Required,
};
use pacer_schemas::resource::{group_kind, group_resource};
use pacer_schemas::{
    App, Deployment, Event, HasSpec, HasStatus, Instance, List, Node, Offer, Resource,
    decode_strict,
};
use serde_json::{Value, json};

#[track_caller]
fn names<K: Resource>(expect: (&str, &str, &str, &[&str], bool, bool)) {
    let got = (
        K::KIND,
        K::PLURAL,
        K::SINGULAR,
        K::SHORT_NAMES,
        K::NAMESPACED,
        K::SCALE_SUBRESOURCE,
    );
    assert_eq!(got, expect);
    assert_eq!(K::LIST_KIND, format!("{}List", K::KIND));
    assert_eq!(K::API_VERSION, "pacer.dev/v1");
}

#[test]
fn discovery_names() {
    names::<App>(("App", "apps", "app", &["ap"], true, true));
    names::<Instance>(("Instance", "instances", "instance", &["inst"], true, false));
    names::<Node>(("Node", "nodes", "node", &["no"], false, false));
    names::<Deployment>((
        "Deployment",
        "deployments",
        "deployment",
        &["deploy"],
        false,
        false,
    ));
    names::<Offer>(("Offer", "offers", "offer", &["of"], false, false));
    names::<Event>(("Event", "events", "event", &["ev"], true, false));
    assert_eq!(group_resource::<App>(), "apps.pacer.dev");
    assert_eq!(group_kind::<App>(), "App.pacer.dev");
}

/// Decodes strictly, fills type metadata, re-encodes: the JSON must come back unchanged.
#[track_caller]
fn round_trip<K: Resource>(json: Value) -> K {
    let mut object: K = decode_strict(json.to_string().as_bytes()).unwrap();
    let (api_version, kind) = object.type_meta();
    assert_eq!((api_version, kind), (K::API_VERSION, K::KIND));
    object.set_type_meta();
    assert_eq!(serde_json::to_value(&object).unwrap(), json);
    object
}

fn instance_json() -> Value {
    json!({
        "apiVersion": "pacer.dev/v1", "kind": "Instance",
        "metadata": {
            "name": "web.7f3a", "namespace": "prod", "uid": "5d1c", "resourceVersion": "1234",
            "generation": 1, "creationTimestamp": "2024-05-01T10:00:00Z",
            "labels": {"pacer.dev/app": "web"},
            "ownerReferences": [{"apiVersion": "pacer.dev/v1", "kind": "App", "name": "web",
                                 "uid": "9e2b", "controller": true}],
            "finalizers": ["pacer.dev/agent"],
            "managedFields": [{"manager": "pacer", "operation": "Update", "apiVersion": "pacer.dev/v1",
                               "time": "2024-05-01T10:00:00Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:spec": {"f:nodeName": {}}}}],
        },
        "spec": {
            "app": "web", "appVersion": "2024-05-01T09:59:58.123Z", "nodeName": "node-1",
            "hostPorts": [31000], "goal": "Running",
            "template": {"cmd": "serve", "portDefinitions": [{"name": "http"}]},
        },
        "status": {
            "phase": "Running", "host": "10.0.0.5", "ipAddresses": ["10.0.0.5"],
            "health": [{"index": 0, "alive": true, "consecutiveFailures": 0,
                        "lastSuccess": "2024-05-01T10:01:00Z"}],
            "healthy": true, "restarts": 0, "stagedAt": "2024-05-01T10:00:01Z",
            "startedAt": "2024-05-01T10:00:03.5Z",
        },
    })
}

#[test]
fn every_kind_round_trips() {
    let instance: Instance = round_trip(instance_json());
    assert_eq!(instance.status().unwrap().healthy, Some(true));
    assert_eq!(instance.spec().node_name.as_deref(), Some("node-1"));
    round_trip::<Node>(json!({
        "apiVersion": "pacer.dev/v1", "kind": "Node", "metadata": {"name": "node-1"},
        "spec": {"attributes": {"rack": "r1", "level": "0.8"}, "zone": "a", "unschedulable": false},
        "status": {
            "capacity": {"cpus": 8, "mem": 16384, "disk": 100000, "gpus": 0,
                         "ports": [{"begin": 31000, "end": 32000}]},
            "allocatable": {"cpus": 7.5, "mem": 15360, "disk": 90000, "gpus": 0},
            "agentAddress": "10.0.0.5:5051", "hostname": "node-1.example",
            "conditions": [{"type": "Ready", "status": "True",
                            "lastTransitionTime": "2024-05-01T10:00:00Z", "reason": "LeaseAlive"}],
        },
    }));
    round_trip::<Deployment>(json!({
        "apiVersion": "pacer.dev/v1", "kind": "Deployment",
        "metadata": {"name": "97c136bf-5a28-4821-9d94-480d9fbb01c8"},
        "spec": {
            "affectedApps": [{"namespace": "default", "name": "foo"}],
            "steps": [
                {"actions": [{"action": "ResolveArtifacts", "app": {"namespace": "default", "name": "foo"}}]},
                {"actions": [{"action": "RestartApplication", "app": {"namespace": "default", "name": "foo"},
                              "version": "2015-09-30T09:09:17.614Z", "instances": 2}]},
            ],
        },
        "status": {
            "phase": "Running", "currentStep": 2, "totalSteps": 2,
            "currentActions": [{"action": "RestartApplication", "app": {"namespace": "default", "name": "foo"},
                "readinessCheckResults": [{"name": "myReadyCheck", "ready": false,
                    "lastResponse": {"status": 500, "contentType": "application/json", "body": "{}"}}]}],
        },
    }));
    round_trip::<Offer>(json!({
        "apiVersion": "pacer.dev/v1", "kind": "Offer", "metadata": {"name": "node-1-42"},
        "spec": {"nodeName": "node-1", "role": "*",
                 "resources": {"cpus": 2, "mem": 1024, "disk": 0, "gpus": 0, "ports": [{"begin": 31000, "end": 31010}]},
                 "attributes": {"rack": "r1"}, "expiresAt": "2024-05-01T10:00:05Z"},
        "status": {"phase": "Declined", "answeredBy": "placement", "refuseSeconds": 5, "reason": "UnfulfilledConstraint"},
    }));
    round_trip::<Event>(json!({
        "apiVersion": "pacer.dev/v1", "kind": "Event",
        "metadata": {"name": "web.17c3", "namespace": "prod"},
        "involvedObject": {"apiVersion": "pacer.dev/v1", "kind": "App", "namespace": "prod", "name": "web"},
        "reason": "ScalingUp", "message": "Scaled from 2 to 3 instances", "type": "Normal", "count": 1,
        "firstTimestamp": "2024-05-01T10:00:00Z", "lastTimestamp": "2024-05-01T10:00:00Z",
        "source": {"component": "deployment-controller"},
    }));
}

#[test]
fn lists_carry_kind_and_revision() {
    let list = List::new(vec![Node::default()], "99", None);
    assert_eq!(list.kind, "NodeList");
    assert_eq!(list.items[0].kind, "Node");
    assert_eq!(
        serde_json::to_value(&list).unwrap()["metadata"],
        json!({"resourceVersion": "99"})
    );
}

fn errors<K: Resource>(object: &K, old: Option<&K>) -> Vec<(String, FieldErrorKind)> {
    let result = match old {
        Some(old) => object.validate_update(old),
        None => object.validate(),
    };
    result
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|error| (error.field, error.kind))
        .collect()
}

#[track_caller]
fn check<K: Resource>(object: &K, old: Option<&K>, expect: &[(&str, FieldErrorKind)]) {
    let expect: Vec<(String, FieldErrorKind)> = expect
        .iter()
        .map(|(field, kind)| ((*field).to_owned(), *kind))
        .collect();
    assert_eq!(errors(object, old), expect);
}

#[test]
fn instance_rules() {
    let valid: Instance = decode_strict(instance_json().to_string().as_bytes()).unwrap();
    check(&valid, None, &[]);
    let mut bad = valid.clone();
    bad.spec.app = String::new();
    bad.spec.app_version = String::new();
    bad.spec.host_ports = Some(vec![-1]);
    bad.spec.goal = Some("Sleeping".into());
    bad.spec.template.as_mut().unwrap().cpus = Some(0.0);
    check(
        &bad,
        None,
        &[
            ("spec.app", Required),
            ("spec.appVersion", Required),
            ("spec.hostPorts[0]", Invalid),
            ("spec.goal", NotSupported),
            ("spec.template.cpus", Invalid),
        ],
    );
    // Binding once is fine; rebinding, or changing what runs, is not.
    let mut unbound = valid.clone();
    unbound.spec.node_name = None;
    unbound.spec.host_ports = None;
    check(&valid, Some(&unbound), &[]);
    let mut moved = valid.clone();
    moved.spec.node_name = Some("node-2".into());
    moved.spec.app_version = "2024-06-01T00:00:00Z".into();
    check(
        &moved,
        Some(&valid),
        &[("spec.appVersion", Forbidden), ("spec.nodeName", Forbidden)],
    );
}

#[test]
fn cluster_scoped_kinds_have_no_namespace() {
    let mut node = Node::default();
    node.metadata.name = Some("node-1".into());
    check(&node, None, &[]);
    node.metadata.namespace = Some("prod".into());
    check(&node, None, &[("metadata.namespace", Forbidden)]);
}

#[test]
fn node_offer_deployment_event_rules() {
    let node: Node = decode_strict(
        json!({"metadata": {"name": "n"}, "status": {
            "capacity": {"cpus": -1, "ports": [{"begin": 200, "end": 100}]},
        }})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    check(
        &node,
        None,
        &[
            ("status.capacity.cpus", Invalid),
            ("status.capacity.ports[0].end", Invalid),
        ],
    );

    let offer: Offer =
        decode_strict(json!({"metadata": {"name": "o"}}).to_string().as_bytes()).unwrap();
    check(
        &offer,
        None,
        &[("spec.nodeName", Required), ("spec.role", Required)],
    );
    let mut answered = offer.clone();
    answered.spec.node_name = "n".into();
    answered.spec.role = "*".into();
    let mut changed = answered.clone();
    changed.spec.role = "other".into();
    check(&changed, Some(&answered), &[("spec", Forbidden)]);

    let deployment: Deployment = decode_strict(
        json!({"metadata": {"name": "d"}, "spec": {
            "affectedApps": [{"namespace": "Prod", "name": "web"}],
            "steps": [{"actions": []}],
        }, "status": {"currentStep": 3, "totalSteps": 1}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    check(
        &deployment,
        None,
        &[
            ("spec.affectedApps[0].namespace", Invalid),
            ("spec.steps[0].actions", Required),
            ("status.currentStep", Invalid),
        ],
    );

    let event: Event = decode_strict(
        json!({"metadata": {"name": "e", "namespace": "prod"}, "type": "Fatal"})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    check(
        &event,
        None,
        &[
            ("involvedObject.name", Required),
            ("involvedObject.kind", Required),
            ("type", NotSupported),
        ],
    );
}
