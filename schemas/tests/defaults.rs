//! Defaulting: each case gives a spec as a user writes it and the spec after
//! `apply_defaults`, in full, so every default is visible here. Defaulting twice changes
//! nothing, and a defaulted spec validates.

#![allow(clippy::unwrap_used)]

use pacer_schemas::{App, AppSpec, Resource, decode_strict};
use serde_json::{Value, json};

#[track_caller]
fn check(spec: Value, expect: Value) {
    let spec: AppSpec = decode_strict(spec.to_string().as_bytes()).unwrap();
    let mut app = App::new("prod", "web", spec);
    app.apply_defaults();
    assert_eq!(serde_json::to_value(&app.spec).unwrap(), expect);
    let once = app.clone();
    app.apply_defaults();
    assert_eq!(app, once, "defaulting is not idempotent");
    if let Err(errors) = app.validate() {
        panic!("defaulted App is invalid: {errors:#?}");
    }
}

/// What `check` expects for fields that the case leaves alone, merged under `fields`.
fn with_common(fields: Value) -> Value {
    let mut expect = json!({
        "instances": 1,
        "cpus": 1,
        "mem": 128,
        "disk": 0,
        "gpus": 0,
        "backoffSeconds": 1,
        "backoffFactor": 1.15,
        "maxLaunchDelaySeconds": 3600,
        "requirePorts": false,
        "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "default"}],
        "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 1, "autoRevert": false},
        "killSelection": "YOUNGEST_FIRST",
        "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 300},
    });
    for (key, value) in fields.as_object().unwrap() {
        if value.is_null() {
            expect.as_object_mut().unwrap().remove(key);
        } else {
            expect[key] = value.clone();
        }
    }
    expect
}

#[test]
fn a_bare_command_gets_marathons_defaults() {
    check(
        json!({"cmd": "sleep 1000"}),
        with_common(json!({"cmd": "sleep 1000"})),
    );
}

#[test]
fn set_values_are_kept() {
    check(
        json!({
            "args": ["serve"], "instances": 0, "cpus": 0.5, "mem": 64, "disk": 10, "gpus": 1,
            "backoffSeconds": 5, "backoffFactor": 2, "maxLaunchDelaySeconds": 60,
            "requirePorts": true, "killSelection": "OLDEST_FIRST",
            "portDefinitions": [{"port": 8080, "name": "http"}],
            "upgradeStrategy": {"minimumHealthCapacity": 0.5, "canary": 1},
            "unreachableStrategy": {"inactiveAfterSeconds": 600},
        }),
        with_common(json!({
            "args": ["serve"], "instances": 0, "cpus": 0.5, "mem": 64, "disk": 10, "gpus": 1,
            "backoffSeconds": 5, "backoffFactor": 2, "maxLaunchDelaySeconds": 60,
            "requirePorts": true, "killSelection": "OLDEST_FIRST",
            "portDefinitions": [{"port": 8080, "protocol": "tcp", "name": "http"}],
            "upgradeStrategy": {
                "minimumHealthCapacity": 0.5, "maximumOverCapacity": 1, "canary": 1,
                "autoRevert": false,
            },
            // expunge is raised to at least inactiveAfterSeconds
            "unreachableStrategy": {"inactiveAfterSeconds": 600, "expungeAfterSeconds": 600},
        })),
    );
    check(
        json!({"cmd": "x", "unreachableStrategy": "disabled"}),
        with_common(json!({"cmd": "x", "unreachableStrategy": "disabled"})),
    );
}

#[test]
fn health_checks_get_the_raml_defaults() {
    check(
        json!({"cmd": "x", "healthChecks": [
            {},
            {"protocol": "TCP"},
            {"protocol": "MESOS_HTTPS", "port": 8443},
            {"protocol": "COMMAND", "command": {"value": "true"}},
        ]}),
        with_common(json!({"cmd": "x", "healthChecks": [
            {
                "protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 300,
                "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3,
                "ignoreHttp1xx": false, "delaySeconds": 15,
            },
            {
                "protocol": "TCP", "portIndex": 0, "gracePeriodSeconds": 300,
                "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3,
                "delaySeconds": 15,
            },
            {
                "protocol": "MESOS_HTTPS", "path": "/", "port": 8443, "gracePeriodSeconds": 300,
                "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3,
                "ignoreHttp1xx": false, "delaySeconds": 15,
            },
            {
                "protocol": "COMMAND", "command": {"value": "true"}, "gracePeriodSeconds": 300,
                "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3,
                "delaySeconds": 15,
            },
        ]})),
    );
}

#[test]
fn readiness_checks_and_fetch_get_defaults() {
    check(
        json!({
            "cmd": "x",
            "portDefinitions": [{"name": "http-api"}],
            "readinessChecks": [{}],
            "fetch": [{"uri": "https://example.invalid/a.tgz"}],
            "check": {"tcp": {"portIndex": 0}},
        }),
        with_common(json!({
            "cmd": "x",
            "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "http-api"}],
            "readinessChecks": [{
                "name": "readinessCheck", "protocol": "HTTP", "path": "/", "portName": "http-api",
                "intervalSeconds": 30, "timeoutSeconds": 10, "httpStatusCodesForReady": [200],
                "preserveLastResponse": false,
            }],
            "fetch": [{"uri": "https://example.invalid/a.tgz", "executable": false, "extract": true, "cache": false}],
            "check": {"tcp": {"portIndex": 0}, "intervalSeconds": 60, "timeoutSeconds": 20, "delaySeconds": 15},
        })),
    );
}

#[test]
fn container_networking_gets_port_mappings_not_port_definitions() {
    check(
        json!({
            "container": {"docker": {"image": "nginx"}, "portMappings": [{"containerPort": 80, "name": "http"}]},
            "networks": [{"mode": "container/bridge"}],
            "healthChecks": [{"protocol": "MESOS_HTTP"}],
        }),
        with_common(json!({
            "container": {
                "type": "DOCKER",
                "docker": {"image": "nginx", "privileged": false, "forcePullImage": false},
                "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp", "name": "http"}],
            },
            "networks": [{"mode": "container/bridge"}],
            "portDefinitions": null,
            "healthChecks": [{
                "protocol": "MESOS_HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 300,
                "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3,
                "ignoreHttp1xx": false, "delaySeconds": 15,
            }],
        })),
    );
    // A named container network: no host port is invented, and a network's mode defaults
    // to `container`.
    check(
        json!({
            "container": {"docker": {"image": "nginx"}, "portMappings": [{"containerPort": 80}]},
            "networks": [{"name": "dcos"}],
        }),
        with_common(json!({
            "container": {
                "type": "DOCKER",
                "docker": {"image": "nginx", "privileged": false, "forcePullImage": false},
                "portMappings": [{"containerPort": 80, "protocol": "tcp"}],
            },
            "networks": [{"mode": "container", "name": "dcos"}],
            "portDefinitions": null,
        })),
    );
}

#[test]
fn deprecated_fields_choose_for_themselves() {
    // `ports` stands in for portDefinitions; `docker.network` for networks.
    check(
        json!({"cmd": "x", "ports": [0, 0]}),
        with_common(json!({"cmd": "x", "ports": [0, 0], "portDefinitions": null})),
    );
    check(
        json!({"container": {"docker": {"image": "registry", "network": "BRIDGE",
            "portMappings": [{"containerPort": 5000}]}}}),
        with_common(json!({
            "container": {"type": "DOCKER", "docker": {
                "image": "registry", "network": "BRIDGE", "privileged": false, "forcePullImage": false,
                "portMappings": [{"containerPort": 5000, "hostPort": 0, "protocol": "tcp"}],
            }},
            "networks": null,
            "portDefinitions": null,
        })),
    );
}

#[test]
fn resident_apps_get_marathons_resident_defaults() {
    check(
        json!({
            "cmd": "x",
            "container": {"type": "MESOS", "volumes": [
                {"containerPath": "data", "mode": "RW", "persistent": {"size": 100}},
            ]},
        }),
        with_common(json!({
            "cmd": "x",
            "container": {"type": "MESOS", "volumes": [
                {"containerPath": "data", "mode": "RW", "persistent": {"size": 100}},
            ]},
            "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0, "autoRevert": false},
            "unreachableStrategy": "disabled",
            "residency": {"relaunchEscalationTimeoutSeconds": 3600, "taskLostBehavior": "WAIT_FOREVER"},
        })),
    );
}

#[test]
fn other_kinds_have_small_defaults() {
    use pacer_schemas::instance::{InstanceGoal, InstanceSpec};
    use pacer_schemas::{Event, Instance, Node};

    let mut instance = Instance {
        spec: InstanceSpec {
            app: "web".into(),
            app_version: "2024-05-01T10:00:00.000Z".into(),
            template: Some(AppSpec {
                cmd: Some("x".into()),
                ..AppSpec::default()
            }),
            ..InstanceSpec::default()
        },
        ..Instance::default()
    };
    instance.apply_defaults();
    assert_eq!(instance.spec.goal, Some(InstanceGoal::Running));
    assert_eq!(instance.spec.template.unwrap().mem, Some(128.0));

    let mut node = Node::default();
    node.apply_defaults();
    assert_eq!(
        (node.spec.unschedulable, node.spec.role.as_deref()),
        (Some(false), Some("*"))
    );

    let mut event = Event::default();
    event.apply_defaults();
    assert_eq!(serde_json::to_value(&event).unwrap()["type"], "Normal");
    assert_eq!(event.count, Some(1));
}
