//! Rules for an App's health and readiness checks.

use crate::app::AppSpec;
use crate::field_error::{Errors, FieldError, FieldPath};
use crate::health::{HealthCheck, HealthCheckProtocol, ReadinessCheck, ReadinessProtocol};

use super::{at_least, between, known};

pub(super) fn health_check(
    errors: &mut Errors,
    check: &HealthCheck,
    n_ports: usize,
    path: &FieldPath,
) {
    let protocol = check.protocol.clone().unwrap_or(HealthCheckProtocol::Http);
    known(
        errors,
        &path.child("protocol"),
        protocol.as_str(),
        protocol.is_known(),
        HealthCheckProtocol::KNOWN,
    );
    if protocol == HealthCheckProtocol::Command {
        match &check.command {
            None => errors.push(FieldError::required(
                &path.child("command"),
                "COMMAND checks need a command",
            )),
            Some(command) if command.value.is_empty() => errors.push(FieldError::required(
                &path.child("command").child("value"),
                "",
            )),
            Some(_) => {}
        }
    } else if protocol.is_known() {
        if check.command.is_some() {
            errors.push(FieldError::forbidden(
                &path.child("command"),
                "only COMMAND checks have a command",
            ));
        }
        match (check.port_index, check.port) {
            (Some(_), Some(_)) => errors.push(FieldError::forbidden(
                &path.child("port"),
                "may not be set together with portIndex",
            )),
            (None, None) => errors.push(FieldError::required(
                &path.child("portIndex"),
                "one of portIndex and port is required (the App has no ports)",
            )),
            (Some(index), None) => {
                let in_range = usize::try_from(index).is_ok_and(|index| index < n_ports);
                if !in_range {
                    errors.push(FieldError::invalid(
                        &path.child("portIndex"),
                        index,
                        format!(
                            "must be a valid index into the App's {n_ports} port(s) (0 to {})",
                            n_ports.saturating_sub(1)
                        ),
                    ));
                }
            }
            (None, Some(port)) => between(errors, &path.child("port"), Some(port), 1, 65535),
        }
    }
    if let Some(ip_protocol) = &check.ip_protocol {
        known(
            errors,
            &path.child("ipProtocol"),
            ip_protocol.as_str(),
            ip_protocol.is_known(),
            crate::health::IpProtocol::KNOWN,
        );
    }
    at_least(
        errors,
        &path.child("gracePeriodSeconds"),
        check.grace_period_seconds,
        0,
    );
    at_least(
        errors,
        &path.child("intervalSeconds"),
        check.interval_seconds,
        1,
    );
    at_least(
        errors,
        &path.child("timeoutSeconds"),
        check.timeout_seconds,
        1,
    );
    at_least(
        errors,
        &path.child("maxConsecutiveFailures"),
        check.max_consecutive_failures,
        0,
    );
    at_least(errors, &path.child("delaySeconds"), check.delay_seconds, 0);
}

/// At most one; a known protocol; a port name the App has; timeout below interval; status
/// codes that are HTTP codes.
pub(super) fn readiness_checks(
    errors: &mut Errors,
    spec: &AppSpec,
    port_names: &[Option<&str>],
    path: &FieldPath,
) {
    let checks_path = path.child("readinessChecks");
    let checks = spec.readiness_checks.as_deref().unwrap_or_default();
    if checks.len() > 1 {
        errors.push(FieldError::too_many(&checks_path, checks.len(), 1));
    }
    for (index, check) in checks.iter().enumerate() {
        readiness_check(errors, check, port_names, &checks_path.index(index));
    }
}

fn readiness_check(
    errors: &mut Errors,
    check: &ReadinessCheck,
    port_names: &[Option<&str>],
    path: &FieldPath,
) {
    if check.name.as_deref() == Some("") {
        errors.push(FieldError::invalid(
            &path.child("name"),
            "",
            "must not be empty",
        ));
    }
    if let Some(protocol) = &check.protocol {
        known(
            errors,
            &path.child("protocol"),
            protocol.as_str(),
            protocol.is_known(),
            ReadinessProtocol::KNOWN,
        );
    }
    let port_name = check
        .port_name
        .as_deref()
        .unwrap_or(crate::defaults::READINESS_PORT_NAME);
    if !port_names.contains(&Some(port_name)) {
        let names: Vec<&str> = port_names.iter().flatten().copied().collect();
        errors.push(FieldError::invalid(
            &path.child("portName"),
            port_name,
            format!(
                "must name one of the App's ports (portDefinitions or container.portMappings): \
                 {names:?}"
            ),
        ));
    }
    at_least(
        errors,
        &path.child("intervalSeconds"),
        check.interval_seconds,
        1,
    );
    at_least(
        errors,
        &path.child("timeoutSeconds"),
        check.timeout_seconds,
        1,
    );
    let interval = check
        .interval_seconds
        .unwrap_or(crate::defaults::READINESS_INTERVAL_SECONDS);
    let timeout = check
        .timeout_seconds
        .unwrap_or(crate::defaults::READINESS_TIMEOUT_SECONDS);
    if timeout >= interval {
        errors.push(FieldError::invalid(
            &path.child("timeoutSeconds"),
            timeout,
            format!("must be less than intervalSeconds ({interval})"),
        ));
    }
    let codes = path.child("httpStatusCodesForReady");
    match check.http_status_codes_for_ready.as_deref() {
        Some([]) => errors.push(FieldError::required(&codes, "at least one status code")),
        Some(list) => {
            for (index, code) in list.iter().enumerate() {
                between(errors, &codes.index(index), Some(*code), 100, 599);
            }
        }
        None => {}
    }
}
