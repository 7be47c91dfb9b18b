//! Validation, one rule per case: each case merges a JSON merge patch (RFC 7386: objects merge,
//! `null` deletes) into a valid App, defaults it as the API server would, validates, and lists
//! the `(field path, kind)` of every error it expects.

#![allow(clippy::unwrap_used)]

use pacer_schemas::field_error::FieldErrorKind::{
    self, Duplicate, Forbidden, Invalid, NotSupported, Required, TooLong, TooMany,
};
use pacer_schemas::{App, Resource, Status, decode_strict};
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "apiVersion": "pacer.dev/v1",
        "kind": "App",
        "metadata": {"name": "web", "namespace": "prod"},
        "spec": {
            "cmd": "serve --port $PORT0",
            "portDefinitions": [{"name": "http"}],
            "healthChecks": [{"protocol": "HTTP"}],
        },
    })
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn errors_of(patch: &Value) -> Vec<(String, FieldErrorKind)> {
    let mut document = base();
    merge(&mut document, patch);
    let mut app: App = decode_strict(document.to_string().as_bytes()).unwrap();
    app.apply_defaults();
    let mut errors: Vec<(String, FieldErrorKind)> = app
        .validate()
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|error| (error.field, error.kind))
        .collect();
    errors.sort_by(|a, b| a.0.cmp(&b.0));
    errors
}

#[track_caller]
fn check(patch: Value, expect: &[(&str, FieldErrorKind)]) {
    let mut expect: Vec<(String, FieldErrorKind)> = expect
        .iter()
        .map(|(field, kind)| ((*field).to_owned(), *kind))
        .collect();
    expect.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(errors_of(&patch), expect, "patch: {patch}");
}

#[test]
fn the_base_app_is_valid() {
    check(json!({}), &[]);
}

#[test]
fn type_meta_and_metadata() {
    check(json!({"apiVersion": "v1"}), &[("apiVersion", NotSupported)]);
    check(json!({"kind": "Instance"}), &[("kind", NotSupported)]);
    check(json!({"apiVersion": null, "kind": null}), &[]);
    check(
        json!({"metadata": {"name": "Web"}}),
        &[("metadata.name", Invalid)],
    );
    check(
        json!({"metadata": {"name": "web_1"}}),
        &[("metadata.name", Invalid)],
    );
    check(json!({"metadata": {"name": "shop.web"}}), &[]);
    check(
        json!({"metadata": {"name": "a".repeat(254)}}),
        &[("metadata.name", Invalid)],
    );
    check(
        json!({"metadata": {"name": null}}),
        &[("metadata.name", Required)],
    );
    check(
        json!({"metadata": {"namespace": "pr.od"}}),
        &[("metadata.namespace", Invalid)],
    );
    check(json!({"metadata": {"namespace": null}}), &[]);
    check(
        json!({"metadata": {"labels": {"pacer.dev/team": "a b"}}}),
        &[("metadata.labels", Invalid)],
    );
    check(
        json!({"metadata": {"annotations": {"big": "x".repeat(300 * 1024)}}}),
        &[("metadata.annotations", TooLong)],
    );
}

#[test]
fn command_args_and_image() {
    check(
        json!({"spec": {"args": ["serve"]}}),
        &[("spec.args", Forbidden)],
    );
    check(json!({"spec": {"cmd": null, "args": ["serve"]}}), &[]);
    check(json!({"spec": {"cmd": null}}), &[("spec.cmd", Required)]);
    check(
        json!({"spec": {"cmd": ""}}),
        &[("spec.cmd", Invalid), ("spec.cmd", Required)],
    );
    check(
        json!({"spec": {"cmd": null, "args": []}}),
        &[("spec.cmd", Required)],
    );
    check(
        json!({"spec": {"cmd": null, "container": {"docker": {"image": "nginx"}}}}),
        &[],
    );
    check(
        json!({"spec": {"container": {"type": "DOCKER"}}}),
        &[("spec.container.docker", Required)],
    );
    check(
        json!({"spec": {"container": {"docker": {"image": ""}}}}),
        &[("spec.container.docker.image", Required)],
    );
    check(
        json!({"spec": {"container": {"type": "RKT", "docker": {"image": "x"}}}}),
        &[("spec.container.type", NotSupported)],
    );
}

#[test]
fn resources_and_counts() {
    check(json!({"spec": {"cpus": 0}}), &[("spec.cpus", Invalid)]);
    check(json!({"spec": {"cpus": 0.001}}), &[]);
    check(json!({"spec": {"cpus": 0.0005}}), &[("spec.cpus", Invalid)]);
    check(json!({"spec": {"mem": -1}}), &[("spec.mem", Invalid)]);
    check(json!({"spec": {"mem": 0}}), &[]);
    check(json!({"spec": {"disk": -0.5}}), &[("spec.disk", Invalid)]);
    check(json!({"spec": {"gpus": -1}}), &[("spec.gpus", Invalid)]);
    check(
        json!({"spec": {"instances": -1}}),
        &[("spec.instances", Invalid)],
    );
    check(json!({"spec": {"instances": 0}}), &[]);
    check(
        json!({"spec": {"taskKillGracePeriodSeconds": -1}}),
        &[("spec.taskKillGracePeriodSeconds", Invalid)],
    );
    check(json!({"spec": {"user": ""}}), &[("spec.user", Invalid)]);
}

#[test]
fn launch_backoff() {
    check(
        json!({"spec": {"backoffSeconds": -1}}),
        &[("spec.backoffSeconds", Invalid)],
    );
    check(
        json!({"spec": {"backoffFactor": 0.9}}),
        &[("spec.backoffFactor", Invalid)],
    );
    check(json!({"spec": {"backoffFactor": 1}}), &[]);
    check(
        json!({"spec": {"maxLaunchDelaySeconds": -5}}),
        &[("spec.maxLaunchDelaySeconds", Invalid)],
    );
}

#[test]
fn upgrade_strategy() {
    let strategy = |value: Value| json!({"spec": {"upgradeStrategy": value}});
    check(
        strategy(json!({"minimumHealthCapacity": 1.5})),
        &[("spec.upgradeStrategy.minimumHealthCapacity", Invalid)],
    );
    check(
        strategy(json!({"minimumHealthCapacity": -0.1})),
        &[("spec.upgradeStrategy.minimumHealthCapacity", Invalid)],
    );
    check(
        strategy(json!({"maximumOverCapacity": 2})),
        &[("spec.upgradeStrategy.maximumOverCapacity", Invalid)],
    );
    // 1 and 0 is valid: the rollout runs one instance over capacity (issue 6).
    check(
        strategy(json!({"minimumHealthCapacity": 1, "maximumOverCapacity": 0})),
        &[],
    );
    check(
        strategy(json!({"minimumHealthCapacity": 0, "maximumOverCapacity": 0})),
        &[],
    );
    check(
        strategy(json!({"canary": -1})),
        &[("spec.upgradeStrategy.canary", Invalid)],
    );
    check(
        strategy(json!({"canary": 2, "autoRevert": true, "progressDeadlineSeconds": 600})),
        &[],
    );
    check(
        strategy(json!({"progressDeadlineSeconds": 0})),
        &[("spec.upgradeStrategy.progressDeadlineSeconds", Invalid)],
    );
}

#[test]
fn unreachable_strategy_and_kill_selection() {
    check(
        json!({"spec": {"unreachableStrategy": {"inactiveAfterSeconds": 60, "expungeAfterSeconds": 30}}}),
        &[("spec.unreachableStrategy.expungeAfterSeconds", Invalid)],
    );
    check(
        json!({"spec": {"unreachableStrategy": {"inactiveAfterSeconds": -1, "expungeAfterSeconds": 0}}}),
        &[("spec.unreachableStrategy.inactiveAfterSeconds", Invalid)],
    );
    check(json!({"spec": {"unreachableStrategy": "disabled"}}), &[]);
    check(json!({"spec": {"killSelection": "OLDEST_FIRST"}}), &[]);
    check(
        json!({"spec": {"killSelection": "RANDOM"}}),
        &[("spec.killSelection", NotSupported)],
    );
}

#[test]
fn resident_apps() {
    let volumes = json!([{"containerPath": "data", "mode": "RW", "persistent": {"size": 10}}]);
    check(
        json!({"spec": {"container": {"type": "MESOS", "volumes": volumes}}}),
        &[],
    );
    check(
        json!({"spec": {
            "container": {"type": "MESOS", "volumes": volumes},
            "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 1},
            "unreachableStrategy": {"inactiveAfterSeconds": 10, "expungeAfterSeconds": 10},
        }}),
        &[
            ("spec.upgradeStrategy.minimumHealthCapacity", Invalid),
            ("spec.upgradeStrategy.maximumOverCapacity", Invalid),
            ("spec.unreachableStrategy", Invalid),
        ],
    );
    check(
        json!({"spec": {"container": {"type": "MESOS", "volumes": [
            {"containerPath": "data", "mode": "RW", "persistent": {}},
            {"mode": "RX", "hostPath": "/a", "secret": "s"},
        ]}}}),
        &[
            ("spec.container.volumes[0].persistent.size", Required),
            ("spec.container.volumes[1]", Forbidden),
            ("spec.container.volumes[1].containerPath", Required),
            ("spec.container.volumes[1].mode", NotSupported),
            ("spec.container.volumes[1].secret", Invalid),
        ],
    );
}

#[test]
fn health_checks() {
    let check_with = |value: Value| json!({"spec": {"healthChecks": [value]}});
    check(check_with(json!({"portIndex": 0})), &[]);
    check(
        check_with(json!({"portIndex": 1})),
        &[("spec.healthChecks[0].portIndex", Invalid)],
    );
    check(
        check_with(json!({"portIndex": -1})),
        &[("spec.healthChecks[0].portIndex", Invalid)],
    );
    check(
        check_with(json!({"portIndex": 0, "port": 8080})),
        &[("spec.healthChecks[0].port", Forbidden)],
    );
    check(check_with(json!({"port": 8080})), &[]);
    check(
        check_with(json!({"port": 70000})),
        &[("spec.healthChecks[0].port", Invalid)],
    );
    check(
        check_with(json!({"protocol": "SMTP"})),
        &[("spec.healthChecks[0].protocol", NotSupported)],
    );
    check(
        check_with(json!({"protocol": "COMMAND"})),
        &[("spec.healthChecks[0].command", Required)],
    );
    check(
        check_with(json!({"protocol": "COMMAND", "command": {"value": ""}})),
        &[("spec.healthChecks[0].command.value", Required)],
    );
    check(
        check_with(json!({"protocol": "COMMAND", "command": {"value": "true"}})),
        &[],
    );
    check(
        check_with(json!({"protocol": "TCP", "command": {"value": "true"}})),
        &[("spec.healthChecks[0].command", Forbidden)],
    );
    check(
        check_with(
            json!({"intervalSeconds": 0, "timeoutSeconds": 0, "gracePeriodSeconds": -1,
            "maxConsecutiveFailures": -1, "delaySeconds": -1}),
        ),
        &[
            ("spec.healthChecks[0].intervalSeconds", Invalid),
            ("spec.healthChecks[0].timeoutSeconds", Invalid),
            ("spec.healthChecks[0].gracePeriodSeconds", Invalid),
            ("spec.healthChecks[0].maxConsecutiveFailures", Invalid),
            ("spec.healthChecks[0].delaySeconds", Invalid),
        ],
    );
    // Marathon accepts a timeout equal to the interval for health checks (its own examples do).
    check(
        check_with(json!({"intervalSeconds": 20, "timeoutSeconds": 20})),
        &[],
    );
    // No ports at all: a port-probing check needs an explicit port.
    check(
        json!({"spec": {"portDefinitions": [], "healthChecks": [{"protocol": "TCP"}]}}),
        &[("spec.healthChecks[0].portIndex", Required)],
    );
}

#[test]
fn readiness_checks() {
    check(
        json!({"spec": {"readinessChecks": [{"portName": "http"}]}}),
        &[],
    );
    check(
        json!({"spec": {"readinessChecks": [{}]}}),
        &[("spec.readinessChecks[0].portName", Invalid)],
    );
    check(
        json!({"spec": {"readinessChecks": [{"portName": "http"}, {"portName": "http"}]}}),
        &[("spec.readinessChecks", TooMany)],
    );
    check(
        json!({"spec": {"readinessChecks": [{"portName": "http", "intervalSeconds": 5, "timeoutSeconds": 5}]}}),
        &[("spec.readinessChecks[0].timeoutSeconds", Invalid)],
    );
    check(
        json!({"spec": {"readinessChecks": [{"portName": "http", "protocol": "GRPC",
            "httpStatusCodesForReady": [200, 42]}]}}),
        &[
            ("spec.readinessChecks[0].protocol", NotSupported),
            (
                "spec.readinessChecks[0].httpStatusCodesForReady[1]",
                Invalid,
            ),
        ],
    );
    check(
        json!({"spec": {"readinessChecks": [{"portName": "http", "httpStatusCodesForReady": []}]}}),
        &[("spec.readinessChecks[0].httpStatusCodesForReady", Required)],
    );
}

#[test]
fn constraints() {
    let with = |constraints: Value| json!({"spec": {"constraints": constraints}});
    check(
        with(json!([
            ["hostname", "UNIQUE"],
            ["hostname", "UNIQUE", ""],
            ["rack", "CLUSTER", "r1"],
            ["@zone", "GROUP_BY", "3"],
            ["hostname", "LIKE", "srv[0-9]+"],
            ["hostname", "UNLIKE", "db.*"],
            ["rack", "MAX_PER", "2"],
            ["level", "IS", "0.8"],
        ])),
        &[],
    );
    check(
        with(json!([["hostname", "NEAR", "x"]])),
        &[("spec.constraints[0][1]", NotSupported)],
    );
    check(
        with(json!([["rack", "MAX_PER", "two"]])),
        &[("spec.constraints[0]", Invalid)],
    );
    check(
        with(json!([["rack", "MAX_PER"]])),
        &[("spec.constraints[0]", Invalid)],
    );
    check(
        with(json!([["rack", "GROUP_BY", "x"]])),
        &[("spec.constraints[0]", Invalid)],
    );
    check(
        with(json!([["hostname", "LIKE", "srv[0-9"]])),
        &[("spec.constraints[0]", Invalid)],
    );
    check(
        with(json!([["hostname", "UNLIKE"]])),
        &[("spec.constraints[0]", Invalid)],
    );
    check(
        with(json!([["hostname", "UNIQUE", "x"]])),
        &[("spec.constraints[0]", Invalid)],
    );
    check(
        with(json!([["level", "IS"]])),
        &[("spec.constraints[0]", Invalid)],
    );
    check(
        with(json!([["", "UNIQUE"]])),
        &[("spec.constraints[0]", Invalid)],
    );
    check(
        with(json!([["hostname", "UNIQUE"], ["hostname", "UNIQUE"]])),
        &[("spec.constraints[1]", Duplicate)],
    );
}

#[test]
fn ports_and_networks() {
    check(
        json!({"spec": {"portDefinitions": [{"name": "http"}, {"name": "http", "port": 70000, "protocol": "sctp"}]}}),
        &[
            ("spec.portDefinitions[1].name", Duplicate),
            ("spec.portDefinitions[1].port", Invalid),
            ("spec.portDefinitions[1].protocol", NotSupported),
        ],
    );
    check(
        json!({"spec": {"portDefinitions": [{"port": 8080, "name": "a"}, {"port": 8080, "name": "b"}]}}),
        &[("spec.portDefinitions[1].port", Duplicate)],
    );
    check(
        json!({"spec": {"portDefinitions": [{"port": 0, "name": "a"}, {"port": 0, "name": "b"}]}}),
        &[],
    );
    check(
        json!({"spec": {"ports": [8080]}}),
        &[("spec.ports", Forbidden)],
    );
    check(
        json!({"spec": {"portDefinitions": null, "ports": [8080, 70000]}}),
        &[("spec.ports[1]", Invalid)],
    );
    check(
        json!({"spec": {"container": {"docker": {"image": "x"}, "portMappings": [{"containerPort": 80}]}}}),
        &[("spec.container.portMappings", Forbidden)],
    );
    check(
        json!({"spec": {
            "networks": [{"mode": "container/bridge"}],
            "container": {"docker": {"image": "x"}, "portMappings": [
                {"containerPort": 80, "name": "http"}, {"containerPort": 99999, "name": "http"},
            ]},
        }}),
        &[
            ("spec.container.portMappings[1].containerPort", Invalid),
            ("spec.container.portMappings[1].name", Duplicate),
        ],
    );
    check(
        json!({"spec": {"networks": [{"mode": "host"}, {"mode": "container", "name": "a"}]}}),
        &[("spec.networks[0].mode", Invalid)],
    );
    check(
        json!({"spec": {"networks": [{"mode": "overlay"}]}}),
        // Not host networking, and no port mappings: the health check has no port to probe.
        &[
            ("spec.networks[0].mode", NotSupported),
            ("spec.healthChecks[0].portIndex", Required),
        ],
    );
}

#[test]
fn dependencies() {
    let with = |dependencies: Value| json!({"spec": {"dependencies": dependencies}});
    check(
        with(json!(["/prod/db", "../other/app", "cache", "/web"])),
        &[],
    );
    check(
        with(json!(["/prod/web"])),
        &[("spec.dependencies[0]", Invalid)],
    );
    check(with(json!(["web"])), &[("spec.dependencies[0]", Invalid)]);
    check(
        with(json!(["/Prod/db"])),
        &[("spec.dependencies[0]", Invalid)],
    );
    check(with(json!(["/"])), &[("spec.dependencies[0]", Invalid)]);
    check(
        with(json!(["../../x"])),
        &[("spec.dependencies[0]", Invalid)],
    );
    check(
        with(json!(["/prod/db", "db"])),
        &[("spec.dependencies[1]", Duplicate)],
    );
}

#[test]
fn env_secrets_fetch_roles() {
    check(
        json!({"spec": {"env": {"A": "1", "PASSWORD": {"secret": "db"}}, "secrets": {"db": {"source": "/db/password"}}}}),
        &[],
    );
    check(
        json!({"spec": {"env": {"PASSWORD": {"secret": "db"}}}}),
        &[("spec.env[PASSWORD].secret", Invalid)],
    );
    check(
        json!({"spec": {"secrets": {"db": {"source": ""}}}}),
        &[("spec.secrets[db].source", Required)],
    );
    check(
        json!({"spec": {"fetch": [{"uri": ""}], "uris": ["https://example.invalid/a"]}}),
        &[("spec.fetch[0].uri", Required), ("spec.uris", Forbidden)],
    );
    check(
        json!({"spec": {"acceptedResourceRoles": ["*", "", "*"]}}),
        &[
            ("spec.acceptedResourceRoles[1]", Invalid),
            ("spec.acceptedResourceRoles[2]", Duplicate),
        ],
    );
}

#[test]
fn every_error_comes_back_at_once() {
    let patch = json!({
        "metadata": {"name": "Web"},
        "spec": {
            "args": ["x"],
            "cpus": 0,
            "mem": -1,
            "instances": -2,
            "backoffFactor": 0.5,
            "killSelection": "RANDOM",
            "upgradeStrategy": {"minimumHealthCapacity": 2},
            "healthChecks": [{"portIndex": 3}],
            "constraints": [["rack", "MAX_PER", "x"]],
            "dependencies": ["/Bad"],
        },
    });
    check(
        patch.clone(),
        &[
            ("metadata.name", Invalid),
            ("spec.args", Forbidden),
            ("spec.cpus", Invalid),
            ("spec.mem", Invalid),
            ("spec.instances", Invalid),
            ("spec.backoffFactor", Invalid),
            ("spec.killSelection", NotSupported),
            ("spec.upgradeStrategy.minimumHealthCapacity", Invalid),
            ("spec.healthChecks[0].portIndex", Invalid),
            ("spec.constraints[0]", Invalid),
            ("spec.dependencies[0]", Invalid),
        ],
    );

    // …and they make one 422 Status with a cause each.
    let mut document = base();
    merge(&mut document, &patch);
    let mut app: App = decode_strict(document.to_string().as_bytes()).unwrap();
    app.apply_defaults();
    let errors = app.validate().unwrap_err();
    let status = Status::invalid::<App>("Web", &errors);
    assert_eq!(status.http_code(), 422);
    let causes = status.details.unwrap().causes;
    assert_eq!(causes.len(), 11);
    let cpus = causes
        .iter()
        .find(|cause| cause.field.as_deref() == Some("spec.cpus"))
        .unwrap();
    assert_eq!(cpus.reason.as_deref(), Some("FieldValueInvalid"));
    assert_eq!(
        cpus.message.as_deref(),
        Some("Invalid value: 0: must be greater than or equal to 0.001")
    );
}
