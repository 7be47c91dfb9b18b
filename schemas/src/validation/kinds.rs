//! Rules for the kinds the controllers and agents write: Instance, Node, Deployment, Offer
//! and Event. They guard against malformed writes (a bad reference, a negative amount, a
//! rebinding) rather than encode policy.

use crate::capacity::Resources;
use crate::deployment::{AppRef, Deployment};
use crate::event::{Event, EventType};
use crate::field_error::{Errors, FieldError, FieldPath};
use crate::instance::{Instance, InstanceGoal};
use crate::marathon_id::MarathonId;
use crate::names::{check_dns1123_label, check_dns1123_subdomain};
use crate::node::Node;
use crate::offer::Offer;

use super::{at_least, between, known};

/// Checks an Instance: its App reference, version, binding, ports, goal and template.
pub fn validate_instance(instance: &Instance) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    errors.extend(super::validate_type_meta(instance));
    errors.extend(super::validate_object_meta(&instance.metadata, true));
    let spec = &instance.spec;
    let path = FieldPath::new("spec");
    subdomain(&mut errors, &path.child("app"), &spec.app, true);
    if spec.app_version.is_empty() {
        errors.push(FieldError::required(&path.child("appVersion"), ""));
    }
    if let Some(node) = &spec.node_name {
        subdomain(&mut errors, &path.child("nodeName"), node, true);
    }
    let host_ports = path.child("hostPorts");
    for (index, port) in spec.host_ports.iter().flatten().enumerate() {
        between(&mut errors, &host_ports.index(index), Some(*port), 0, 65535);
    }
    if let Some(goal) = &spec.goal {
        known(
            &mut errors,
            &path.child("goal"),
            goal.as_str(),
            goal.is_known(),
            InstanceGoal::KNOWN,
        );
    }
    if let Some(template) = &spec.template {
        let namespace = instance
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(crate::marathon_id::DEFAULT_NAMESPACE);
        let id = MarathonId::from_object(namespace, &spec.app).ok();
        errors.extend(super::validate_app_spec(
            template,
            &path.child("template"),
            id.as_ref(),
        ));
    }
    if let Some(status) = &instance.status {
        at_least(
            &mut errors,
            &FieldPath::new("status").child("restarts"),
            Some(status.restarts),
            0,
        );
    }
    errors.into_result()
}

/// Checks an Instance update: the App, version and template never change, and a node
/// binding and host ports, once set, stay.
pub fn validate_instance_update(
    instance: &Instance,
    old: &Instance,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    if let Err(found) = validate_instance(instance) {
        errors.extend(found);
    }
    let path = FieldPath::new("spec");
    let (new, old) = (&instance.spec, &old.spec);
    if new.app != old.app {
        errors.push(immutable(&path.child("app")));
    }
    if new.app_version != old.app_version {
        errors.push(immutable(&path.child("appVersion")));
    }
    if new.template != old.template {
        errors.push(immutable(&path.child("template")));
    }
    if old.node_name.is_some() && new.node_name != old.node_name {
        errors.push(immutable(&path.child("nodeName")));
    }
    if old.host_ports.is_some() && new.host_ports != old.host_ports {
        errors.push(immutable(&path.child("hostPorts")));
    }
    errors.into_result()
}

/// Checks a Node: attribute names and amounts.
pub fn validate_node(node: &Node) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    errors.extend(super::validate_type_meta(node));
    errors.extend(super::validate_object_meta(&node.metadata, false));
    let spec = FieldPath::new("spec");
    for name in node.spec.attributes.iter().flatten().map(|(name, _)| name) {
        if name.is_empty() {
            errors.push(FieldError::invalid(
                &spec.child("attributes"),
                "",
                "attribute names must not be empty",
            ));
        }
    }
    if let Some(status) = &node.status {
        let status_path = FieldPath::new("status");
        resources(
            &mut errors,
            &status.capacity,
            &status_path.child("capacity"),
        );
        resources(
            &mut errors,
            &status.allocatable,
            &status_path.child("allocatable"),
        );
    }
    errors.into_result()
}

/// Checks a Node update (as [`validate_node`]).
pub fn validate_node_update(node: &Node, _old: &Node) -> Result<(), Vec<FieldError>> {
    validate_node(node)
}

/// Checks a Deployment: App references, non-empty steps and sane progress.
pub fn validate_deployment(deployment: &Deployment) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    errors.extend(super::validate_type_meta(deployment));
    errors.extend(super::validate_object_meta(&deployment.metadata, false));
    let spec = FieldPath::new("spec");
    for (index, app) in deployment.spec.affected_apps.iter().enumerate() {
        app_ref(&mut errors, app, &spec.child("affectedApps").index(index));
    }
    for (step_index, step) in deployment.spec.steps.iter().enumerate() {
        let step_path = spec.child("steps").index(step_index);
        if step.actions.is_empty() {
            errors.push(FieldError::required(
                &step_path.child("actions"),
                "a step needs at least one action",
            ));
        }
        for (index, action) in step.actions.iter().enumerate() {
            let action_path = step_path.child("actions").index(index);
            app_ref(&mut errors, &action.app, &action_path.child("app"));
            at_least(
                &mut errors,
                &action_path.child("instances"),
                action.instances,
                0,
            );
        }
    }
    if let Some(status) = &deployment.status {
        let status_path = FieldPath::new("status");
        at_least(
            &mut errors,
            &status_path.child("totalSteps"),
            Some(status.total_steps),
            0,
        );
        between(
            &mut errors,
            &status_path.child("currentStep"),
            Some(status.current_step),
            0,
            status.total_steps.max(0),
        );
    }
    errors.into_result()
}

/// Checks a Deployment update: the plan (spec) never changes; only its status does.
pub fn validate_deployment_update(
    deployment: &Deployment,
    old: &Deployment,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    if let Err(found) = validate_deployment(deployment) {
        errors.extend(found);
    }
    if deployment.spec != old.spec {
        errors.push(immutable(&FieldPath::new("spec")));
    }
    errors.into_result()
}

/// Checks an Offer: its node, role and amounts.
pub fn validate_offer(offer: &Offer) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    errors.extend(super::validate_type_meta(offer));
    errors.extend(super::validate_object_meta(&offer.metadata, false));
    let spec = FieldPath::new("spec");
    subdomain(
        &mut errors,
        &spec.child("nodeName"),
        &offer.spec.node_name,
        true,
    );
    if offer.spec.role.is_empty() {
        errors.push(FieldError::required(&spec.child("role"), ""));
    }
    resources(&mut errors, &offer.spec.resources, &spec.child("resources"));
    errors.into_result()
}

/// Checks an Offer update: what was offered never changes; only the answer does.
pub fn validate_offer_update(offer: &Offer, old: &Offer) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    if let Err(found) = validate_offer(offer) {
        errors.extend(found);
    }
    if offer.spec != old.spec {
        errors.push(immutable(&FieldPath::new("spec")));
    }
    errors.into_result()
}

/// Checks an Event: it names its object, and its type and count are sane.
pub fn validate_event(event: &Event) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    errors.extend(super::validate_type_meta(event));
    errors.extend(super::validate_object_meta(&event.metadata, true));
    let involved = FieldPath::new("involvedObject");
    if event
        .involved_object
        .name
        .as_deref()
        .is_none_or(str::is_empty)
    {
        errors.push(FieldError::required(&involved.child("name"), ""));
    }
    if event
        .involved_object
        .kind
        .as_deref()
        .is_none_or(str::is_empty)
    {
        errors.push(FieldError::required(&involved.child("kind"), ""));
    }
    if let Some(type_) = &event.type_ {
        known(
            &mut errors,
            &FieldPath::new("type"),
            type_.as_str(),
            type_.is_known(),
            EventType::KNOWN,
        );
    }
    at_least(&mut errors, &FieldPath::new("count"), event.count, 0);
    errors.into_result()
}

/// Checks an Event update (as [`validate_event`]).
pub fn validate_event_update(event: &Event, _old: &Event) -> Result<(), Vec<FieldError>> {
    validate_event(event)
}

fn immutable(path: &FieldPath) -> FieldError {
    FieldError::forbidden(path, "field is immutable")
}

fn subdomain(errors: &mut Errors, path: &FieldPath, value: &str, required: bool) {
    if value.is_empty() {
        if required {
            errors.push(FieldError::required(path, ""));
        }
    } else if let Err(message) = check_dns1123_subdomain(value) {
        errors.push(FieldError::invalid(path, value, message));
    }
}

fn app_ref(errors: &mut Errors, app: &AppRef, path: &FieldPath) {
    if let Err(message) = check_dns1123_label(&app.namespace) {
        errors.push(FieldError::invalid(
            &path.child("namespace"),
            app.namespace.as_str(),
            message,
        ));
    }
    subdomain(errors, &path.child("name"), &app.name, true);
}

fn resources(errors: &mut Errors, resources: &Resources, path: &FieldPath) {
    for (field, value) in [
        ("cpus", resources.cpus),
        ("mem", resources.mem),
        ("disk", resources.disk),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            errors.push(FieldError::invalid(
                &path.child(field),
                value,
                "must be greater than or equal to 0",
            ));
        }
    }
    at_least(errors, &path.child("gpus"), Some(resources.gpus), 0);
    for (index, range) in resources.ports.iter().enumerate() {
        let range_path = path.child("ports").index(index);
        between(
            errors,
            &range_path.child("begin"),
            Some(range.begin),
            1,
            65535,
        );
        between(errors, &range_path.child("end"), Some(range.end), 1, 65535);
        if range.end < range.begin {
            errors.push(FieldError::invalid(
                &range_path.child("end"),
                range.end,
                format!("must be greater than or equal to begin ({})", range.begin),
            ));
        }
    }
}
