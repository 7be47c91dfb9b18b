//! Rules for Apps (and for the App spec an Instance carries as its template): Marathon's
//! app-definition validation plus the name rules every object follows.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::app::{App, AppSpec, UnreachableStrategy};
use crate::constraint::{ConstraintError, ConstraintOperator};
use crate::env::EnvVarValue;
use crate::field_error::{Errors, FieldError, FieldPath};
use crate::marathon_id::MarathonId;

use super::{at_least, known, unique};

/// Smallest `cpus` Marathon accepts.
pub const MIN_CPUS: f64 = 0.001;

/// Checks an App, returning every error at once.
pub fn validate(app: &App) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    errors.extend(super::validate_type_meta(app));
    errors.extend(super::validate_object_meta(&app.metadata, true));
    let namespace = app
        .metadata
        .namespace
        .as_deref()
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or(crate::marathon_id::DEFAULT_NAMESPACE);
    let id = MarathonId::from_object(namespace, app.metadata.name_str()).ok();
    errors.extend(validate_app_spec(
        &app.spec,
        &FieldPath::new("spec"),
        id.as_ref(),
    ));
    errors.into_result()
}

/// Checks an update of an App: every App field may change, so this is [`validate`] of the new
/// object.
pub fn validate_app_update(app: &App, _old: &App) -> Result<(), Vec<FieldError>> {
    validate(app)
}

/// Checks an App spec found at `path`. `id` is the App's Marathon id, when known: relative
/// dependencies resolve against its group and it may not depend on itself.
pub fn validate_app_spec(
    spec: &AppSpec,
    path: &FieldPath,
    id: Option<&MarathonId>,
) -> Vec<FieldError> {
    let mut errors = Errors::default();
    command(&mut errors, spec, path);
    resources(&mut errors, spec, path);
    launch(&mut errors, spec, path);
    environment(&mut errors, spec, path);
    if let Some(container) = &spec.container {
        super::networking::container(&mut errors, container, spec, &path.child("container"));
    }
    super::networking::ports(&mut errors, spec, path);
    super::networking::networks(&mut errors, spec, path);
    let port_names = spec.port_names();
    for (index, check) in spec.health_checks.iter().flatten().enumerate() {
        super::probes::health_check(
            &mut errors,
            check,
            port_names.len(),
            &path.child("healthChecks").index(index),
        );
    }
    super::probes::readiness_checks(&mut errors, spec, &port_names, path);
    constraints(&mut errors, spec, path);
    dependencies(&mut errors, spec, path, id);
    strategies(&mut errors, spec, path);
    let roles = path.child("acceptedResourceRoles");
    for (index, role) in spec.accepted_resource_roles.iter().flatten().enumerate() {
        if role.is_empty() {
            errors.push(FieldError::invalid(
                &roles.index(index),
                "",
                "must not be empty",
            ));
        }
    }
    unique(
        &mut errors,
        &roles,
        spec.accepted_resource_roles
            .iter()
            .flatten()
            .map(String::as_str)
            .enumerate(),
        None,
    );
    let fetch = path.child("fetch");
    for (index, item) in spec.fetch.iter().flatten().enumerate() {
        if item.uri.is_empty() {
            errors.push(FieldError::required(&fetch.index(index).child("uri"), ""));
        }
    }
    if spec.fetch.as_ref().is_some_and(|fetch| !fetch.is_empty())
        && spec.uris.as_ref().is_some_and(|uris| !uris.is_empty())
    {
        errors.push(FieldError::forbidden(
            &path.child("uris"),
            "may not be set together with fetch (uris is deprecated; use fetch)",
        ));
    }
    for (key, _) in spec.labels.iter().flatten() {
        if key.is_empty() {
            errors.push(FieldError::invalid(
                &path.child("labels"),
                "",
                "label keys must not be empty",
            ));
        }
    }
    errors.into_vec()
}

/// Exactly one of `cmd` and `args`, or neither with a Docker image (Marathon's
/// "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'").
fn command(errors: &mut Errors, spec: &AppSpec, path: &FieldPath) {
    if spec.cmd.as_deref() == Some("") {
        errors.push(FieldError::invalid(
            &path.child("cmd"),
            "",
            "must not be empty",
        ));
    }
    let has_cmd = spec.cmd.as_deref().is_some_and(|cmd| !cmd.is_empty());
    let has_args = spec.args.as_ref().is_some_and(|args| !args.is_empty());
    let has_image = spec.image().is_some_and(|image| !image.is_empty());
    if has_cmd && has_args {
        errors.push(FieldError::forbidden(
            &path.child("args"),
            "may not be set together with cmd: give the command either as a shell string (cmd) \
             or as an argument vector (args)",
        ));
    } else if !has_cmd && !has_args && !has_image {
        errors.push(FieldError::required(
            &path.child("cmd"),
            "one of cmd, args or container.docker.image is required",
        ));
    }
}

fn resources(errors: &mut Errors, spec: &AppSpec, path: &FieldPath) {
    if let Some(cpus) = spec.cpus
        && !(cpus.is_finite() && cpus >= MIN_CPUS)
    {
        errors.push(FieldError::invalid(
            &path.child("cpus"),
            cpus,
            format!("must be greater than or equal to {MIN_CPUS}"),
        ));
    }
    for (field, value) in [("mem", spec.mem), ("disk", spec.disk)] {
        if let Some(value) = value
            && !(value.is_finite() && value >= 0.0)
        {
            errors.push(FieldError::invalid(
                &path.child(field),
                value,
                "must be greater than or equal to 0",
            ));
        }
    }
    at_least(errors, &path.child("gpus"), spec.gpus, 0);
    at_least(errors, &path.child("instances"), spec.instances, 0);
}

fn launch(errors: &mut Errors, spec: &AppSpec, path: &FieldPath) {
    at_least(
        errors,
        &path.child("backoffSeconds"),
        spec.backoff_seconds,
        0,
    );
    if let Some(factor) = spec.backoff_factor
        && !(factor.is_finite() && factor >= 1.0)
    {
        errors.push(FieldError::invalid(
            &path.child("backoffFactor"),
            factor,
            "must be greater than or equal to 1",
        ));
    }
    at_least(
        errors,
        &path.child("maxLaunchDelaySeconds"),
        spec.max_launch_delay_seconds,
        0,
    );
    at_least(
        errors,
        &path.child("taskKillGracePeriodSeconds"),
        spec.task_kill_grace_period_seconds,
        0,
    );
    if spec.user.as_deref() == Some("") {
        errors.push(FieldError::invalid(
            &path.child("user"),
            "",
            "must not be empty",
        ));
    }
}

/// Variable names are non-empty; secret references name an entry of `secrets`.
fn environment(errors: &mut Errors, spec: &AppSpec, path: &FieldPath) {
    let env = path.child("env");
    for (name, value) in spec.env.iter().flatten() {
        if name.is_empty() {
            errors.push(FieldError::invalid(
                &env,
                "",
                "variable names must not be empty",
            ));
        }
        if let EnvVarValue::Secret(reference) = value {
            let declared = spec
                .secrets
                .as_ref()
                .is_some_and(|secrets| secrets.contains_key(&reference.secret));
            if !declared {
                errors.push(FieldError::invalid(
                    &env.key(name).child("secret"),
                    reference.secret.as_str(),
                    "references a secret that is not declared in spec.secrets",
                ));
            }
        }
    }
    let secrets = path.child("secrets");
    for (name, source) in spec.secrets.iter().flatten() {
        if source.source.is_empty() {
            errors.push(FieldError::required(&secrets.key(name).child("source"), ""));
        }
    }
}

/// Each constraint's value suits its operator; no constraint repeats.
fn constraints(errors: &mut Errors, spec: &AppSpec, path: &FieldPath) {
    let constraints_path = path.child("constraints");
    let mut seen = BTreeSet::new();
    for (index, constraint) in spec.constraints.iter().flatten().enumerate() {
        let item = constraints_path.index(index);
        let value = serde_json::to_value(constraint).unwrap_or(Value::Null);
        if !seen.insert(value.to_string()) {
            errors.push(FieldError::duplicate(&item, value.clone()));
        }
        match constraint.parse() {
            Ok(_) => {}
            Err(ConstraintError::UnknownOperator(operator)) => errors.push(
                FieldError::not_supported(&item.index(1), operator, ConstraintOperator::KNOWN),
            ),
            Err(error) => errors.push(FieldError::invalid(&item, value, error.to_string())),
        }
    }
}

/// Dependencies are Marathon ids (relative ones resolve against the App's group), unique,
/// and not the App itself.
fn dependencies(errors: &mut Errors, spec: &AppSpec, path: &FieldPath, id: Option<&MarathonId>) {
    let dependencies_path = path.child("dependencies");
    let group = id.and_then(MarathonId::parent).unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (index, dependency) in spec.dependencies.iter().flatten().enumerate() {
        let item = dependencies_path.index(index);
        match group.resolve(dependency) {
            Err(error) => errors.push(FieldError::invalid(
                &item,
                dependency.as_str(),
                error.to_string(),
            )),
            Ok(resolved) => {
                if resolved.is_root() {
                    errors.push(FieldError::invalid(
                        &item,
                        dependency.as_str(),
                        "must not be the root group",
                    ));
                } else if Some(&resolved) == id {
                    errors.push(FieldError::invalid(
                        &item,
                        dependency.as_str(),
                        "an App cannot depend on itself",
                    ));
                } else if !seen.insert(resolved) {
                    errors.push(FieldError::duplicate(&item, dependency.as_str()));
                }
            }
        }
    }
}

/// Upgrade, unreachable and kill-selection strategies, and the rules for resident Apps.
fn strategies(errors: &mut Errors, spec: &AppSpec, path: &FieldPath) {
    let resident = spec.is_resident();
    if let Some(strategy) = &spec.upgrade_strategy {
        let strategy_path = path.child("upgradeStrategy");
        let minimum_path = strategy_path.child("minimumHealthCapacity");
        let maximum_path = strategy_path.child("maximumOverCapacity");
        fraction(errors, &minimum_path, strategy.minimum_health_capacity);
        fraction(errors, &maximum_path, strategy.maximum_over_capacity);
        // 1 and 0 is allowed: as in Marathon's TaskReplaceActor, the rollout then runs one
        // instance over capacity (start a new one before killing an old one).
        if resident {
            if strategy
                .maximum_over_capacity
                .is_some_and(|maximum| maximum != 0.0)
            {
                errors.push(FieldError::invalid(
                    &maximum_path,
                    strategy.maximum_over_capacity.unwrap_or_default(),
                    "must be 0 for an App with persistent volumes",
                ));
            }
            if strategy
                .minimum_health_capacity
                .is_some_and(|minimum| minimum > 0.5)
            {
                errors.push(FieldError::invalid(
                    &minimum_path,
                    strategy.minimum_health_capacity.unwrap_or_default(),
                    "must be at most 0.5 for an App with persistent volumes",
                ));
            }
        }
        at_least(errors, &strategy_path.child("canary"), strategy.canary, 0);
        at_least(
            errors,
            &strategy_path.child("progressDeadlineSeconds"),
            strategy.progress_deadline_seconds,
            1,
        );
    }
    let unreachable_path = path.child("unreachableStrategy");
    match &spec.unreachable_strategy {
        Some(UnreachableStrategy::Enabled(enabled)) => {
            let inactive_path = unreachable_path.child("inactiveAfterSeconds");
            let expunge_path = unreachable_path.child("expungeAfterSeconds");
            at_least(errors, &inactive_path, enabled.inactive_after_seconds, 0);
            at_least(errors, &expunge_path, enabled.expunge_after_seconds, 0);
            if let (Some(inactive), Some(expunge)) = (
                enabled.inactive_after_seconds,
                enabled.expunge_after_seconds,
            ) && expunge < inactive
            {
                errors.push(FieldError::invalid(
                    &expunge_path,
                    expunge,
                    format!("must be greater than or equal to inactiveAfterSeconds ({inactive})"),
                ));
            }
            if resident {
                errors.push(FieldError::invalid(
                    &unreachable_path,
                    serde_json::to_value(&spec.unreachable_strategy).unwrap_or(Value::Null),
                    "must be \"disabled\" for an App with persistent volumes",
                ));
            }
        }
        Some(UnreachableStrategy::Disabled) | None => {}
    }
    if let Some(selection) = &spec.kill_selection {
        known(
            errors,
            &path.child("killSelection"),
            selection.as_str(),
            selection.is_known(),
            crate::app::KillSelection::KNOWN,
        );
    }
    if let Some(residency) = &spec.residency {
        let residency_path = path.child("residency");
        at_least(
            errors,
            &residency_path.child("relaunchEscalationTimeoutSeconds"),
            residency.relaunch_escalation_timeout_seconds,
            0,
        );
        if let Some(behavior) = &residency.task_lost_behavior {
            known(
                errors,
                &residency_path.child("taskLostBehavior"),
                behavior.as_str(),
                behavior.is_known(),
                crate::app::TaskLostBehavior::KNOWN,
            );
        }
    }
}

fn fraction(errors: &mut Errors, path: &FieldPath, value: Option<f64>) {
    if let Some(value) = value
        && !(0.0..=1.0).contains(&value)
    {
        errors.push(FieldError::invalid(
            path,
            value,
            "must be between 0 and 1, inclusive",
        ));
    }
}
