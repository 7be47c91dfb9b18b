//! Rules for an App's container, port definitions, port mappings and networks.

use crate::app::AppSpec;
use crate::container::{Container, ContainerType, DockerNetwork, PortMapping, VolumeMode};
use crate::field_error::{Errors, FieldError, FieldPath};
use crate::networking::{NetworkMode, PortProtocol};

use super::{at_least, known, port_number, unique};

pub(super) fn container(
    errors: &mut Errors,
    container: &Container,
    spec: &AppSpec,
    path: &FieldPath,
) {
    let type_ = container.type_.as_ref();
    if let Some(type_) = type_ {
        known(
            errors,
            &path.child("type"),
            type_.as_str(),
            type_.is_known(),
            ContainerType::KNOWN,
        );
    }
    let docker_path = path.child("docker");
    match &container.docker {
        Some(docker) => {
            if docker.image.as_deref().is_none_or(str::is_empty) {
                errors.push(FieldError::required(&docker_path.child("image"), ""));
            }
            if let Some(network) = &docker.network {
                known(
                    errors,
                    &docker_path.child("network"),
                    network.as_str(),
                    network.is_known(),
                    DockerNetwork::KNOWN,
                );
            }
            let parameters = docker_path.child("parameters");
            for (index, parameter) in docker.parameters.iter().flatten().enumerate() {
                if parameter.key.is_empty() {
                    errors.push(FieldError::required(
                        &parameters.index(index).child("key"),
                        "",
                    ));
                }
            }
        }
        None if matches!(type_, None | Some(ContainerType::Docker)) => {
            errors.push(FieldError::required(
                &docker_path,
                "a DOCKER container needs docker.image",
            ));
        }
        None => {}
    }
    let docker_mappings = container
        .docker
        .as_ref()
        .and_then(|docker| docker.port_mappings.as_deref());
    let mappings = container.port_mappings.as_deref();
    if mappings.is_some_and(|mappings| !mappings.is_empty())
        && docker_mappings.is_some_and(|mappings| !mappings.is_empty())
    {
        errors.push(FieldError::forbidden(
            &docker_path.child("portMappings"),
            "may not be set together with container.portMappings (docker.portMappings is \
             deprecated)",
        ));
    }
    for (mappings, mappings_path) in [
        (mappings, path.child("portMappings")),
        (docker_mappings, docker_path.child("portMappings")),
    ] {
        let Some(mappings) = mappings else { continue };
        if !mappings.is_empty() && spec.uses_host_networking() {
            errors.push(FieldError::forbidden(
                &mappings_path,
                "port mappings need container or bridge networking; with host networking use \
                 portDefinitions",
            ));
        }
        for (index, mapping) in mappings.iter().enumerate() {
            port_mapping(errors, mapping, &mappings_path.index(index));
        }
        unique(
            errors,
            &mappings_path,
            mappings
                .iter()
                .enumerate()
                .filter_map(|(index, mapping)| Some((index, mapping.name.as_deref()?))),
            Some("name"),
        );
    }
    let volumes = path.child("volumes");
    for (index, volume) in container.volumes.iter().flatten().enumerate() {
        let volume_path = volumes.index(index);
        if volume.container_path.as_deref().is_none_or(str::is_empty) {
            errors.push(FieldError::required(
                &volume_path.child("containerPath"),
                "",
            ));
        }
        if let Some(mode) = &volume.mode {
            known(
                errors,
                &volume_path.child("mode"),
                mode.as_str(),
                mode.is_known(),
                VolumeMode::KNOWN,
            );
        }
        let sources = [
            volume.host_path.is_some(),
            volume.persistent.is_some(),
            volume.external.is_some(),
            volume.secret.is_some(),
        ];
        if sources.iter().filter(|set| **set).count() > 1 {
            errors.push(FieldError::forbidden(
                &volume_path,
                "only one of hostPath, persistent, external and secret may be set",
            ));
        }
        if let Some(persistent) = &volume.persistent {
            let size = volume_path.child("persistent").child("size");
            match persistent.size {
                None => errors.push(FieldError::required(&size, "")),
                Some(value) => at_least(errors, &size, Some(value), 1),
            }
        }
        if let Some(secret) = &volume.secret
            && !spec
                .secrets
                .as_ref()
                .is_some_and(|secrets| secrets.contains_key(secret))
        {
            errors.push(FieldError::invalid(
                &volume_path.child("secret"),
                secret.as_str(),
                "references a secret that is not declared in spec.secrets",
            ));
        }
    }
}

fn port_mapping(errors: &mut Errors, mapping: &PortMapping, path: &FieldPath) {
    port_number(errors, &path.child("containerPort"), mapping.container_port);
    port_number(errors, &path.child("hostPort"), mapping.host_port);
    port_number(errors, &path.child("servicePort"), mapping.service_port);
    if let Some(protocol) = &mapping.protocol {
        known(
            errors,
            &path.child("protocol"),
            protocol.as_str(),
            protocol.is_known(),
            PortProtocol::KNOWN,
        );
    }
}

/// Port definitions: numbers in range, known protocols, unique names and unique non-zero
/// numbers; not together with the deprecated `ports`.
pub(super) fn ports(errors: &mut Errors, spec: &AppSpec, path: &FieldPath) {
    let definitions_path = path.child("portDefinitions");
    if spec.port_definitions.is_some() && spec.ports.is_some() {
        errors.push(FieldError::forbidden(
            &path.child("ports"),
            "may not be set together with portDefinitions (ports is deprecated)",
        ));
    }
    let definitions = spec.port_definitions.as_deref().unwrap_or_default();
    for (index, definition) in definitions.iter().enumerate() {
        let item = definitions_path.index(index);
        port_number(errors, &item.child("port"), definition.port);
        if let Some(protocol) = &definition.protocol {
            known(
                errors,
                &item.child("protocol"),
                protocol.as_str(),
                protocol.is_known(),
                PortProtocol::KNOWN,
            );
        }
        if definition.name.as_deref() == Some("") {
            errors.push(FieldError::invalid(
                &item.child("name"),
                "",
                "must not be empty",
            ));
        }
    }
    unique(
        errors,
        &definitions_path,
        definitions
            .iter()
            .enumerate()
            .filter_map(|(index, definition)| Some((index, definition.name.as_deref()?))),
        Some("name"),
    );
    let numbers: Vec<(usize, String)> = definitions
        .iter()
        .enumerate()
        .filter_map(|(index, definition)| {
            definition
                .port
                .filter(|port| *port != 0)
                .map(|port| (index, port.to_string()))
        })
        .collect();
    unique(
        errors,
        &definitions_path,
        numbers.iter().map(|(index, port)| (*index, port.as_str())),
        Some("port"),
    );
    let ports = path.child("ports");
    for (index, port) in spec.ports.iter().flatten().enumerate() {
        port_number(errors, &ports.index(index), Some(*port));
    }
}

/// Known modes; `host` and `container/bridge` stand alone.
pub(super) fn networks(errors: &mut Errors, spec: &AppSpec, path: &FieldPath) {
    let networks_path = path.child("networks");
    let networks = spec.networks.as_deref().unwrap_or_default();
    for (index, network) in networks.iter().enumerate() {
        let item = networks_path.index(index);
        let Some(mode) = &network.mode else { continue };
        known(
            errors,
            &item.child("mode"),
            mode.as_str(),
            mode.is_known(),
            NetworkMode::KNOWN,
        );
        if matches!(mode, NetworkMode::Host | NetworkMode::ContainerBridge) {
            if networks.len() > 1 {
                errors.push(FieldError::invalid(
                    &item.child("mode"),
                    mode.as_str(),
                    "host and container/bridge networking cannot be combined with other networks",
                ));
            }
            if network.name.is_some() {
                errors.push(FieldError::forbidden(
                    &item.child("name"),
                    "only container networks have a name",
                ));
            }
        }
    }
}
