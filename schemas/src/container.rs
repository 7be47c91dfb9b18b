//! An App's `container`: a Docker image (run by the Docker runtime, or by the Mesos-style
//! runtime for `type: MESOS`), its port mappings and volumes, in Marathon's shape — including
//! the pre-1.5 `docker.network` and `docker.portMappings`, which old definitions still use.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::constraint::Constraint;
use crate::networking::PortProtocol;
use crate::wire_enum::wire_enum;

wire_enum! {
    /// Which containerizer runs the App.
    pub enum ContainerType {
        /// The Docker engine.
        Docker = "DOCKER",
        /// Mesos' universal containerizer (a Docker image without the engine).
        Mesos = "MESOS",
    }
}

wire_enum! {
    /// Deprecated Docker network mode (Marathon < 1.5; replaced by `networks`).
    pub enum DockerNetwork {
        /// Docker's bridge network.
        Bridge = "BRIDGE",
        /// The host network.
        Host = "HOST",
        /// A user-defined network.
        User = "USER",
        /// No network.
        None = "NONE",
    }
}

wire_enum! {
    /// Access mode of a volume.
    pub enum VolumeMode {
        /// Read-only.
        Ro = "RO",
        /// Read-write.
        Rw = "RW",
    }
}

/// The container an App runs in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// `DOCKER` (default) or `MESOS`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ContainerType>,
    /// The image and Docker options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerContainer>,
    /// Container ports and how they map to host and service ports (container networking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_mappings: Option<Vec<PortMapping>>,
    /// Volumes mounted into the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,
}

/// The Docker part of a container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DockerContainer {
    /// Image reference, e.g. `nginx:1.25`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Deprecated network mode (`BRIDGE`, `HOST`, `USER`, `NONE`); use `networks` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<DockerNetwork>,
    /// Deprecated location of the port mappings; use `container.portMappings` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_mappings: Option<Vec<PortMapping>>,
    /// Run the container privileged (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Extra `docker run` options as key/value pairs (`--key=value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Vec<DockerParameter>>,
    /// Pull the image even when it is present locally (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_pull_image: Option<bool>,
}

/// One extra `docker run` option.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DockerParameter {
    /// Option name without dashes, e.g. `label`.
    pub key: String,
    /// Option value.
    pub value: String,
}

/// A container port and its host and service ports (container or bridge networking).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Port inside the container; 0 means the same as the host port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i32>,
    /// Host port; 0 (default in bridge mode) picks a free one, absent means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    /// Service port for load balancers; 0 lets Pacer pick one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_port: Option<i32>,
    /// `tcp` (default), `udp` or `udp,tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<PortProtocol>,
    /// Name, unique within the App.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free-form labels, e.g. `VIP_0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Container networks this mapping applies to (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_names: Option<Vec<String>>,
}

/// A volume mounted into the container: a host path, a local persistent volume, an external
/// volume or a secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Mount point inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_path: Option<String>,
    /// Path on the host (host volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// `RO` or `RW`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<VolumeMode>,
    /// A local persistent volume that pins instances to the node holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<PersistentVolume>,
    /// An external volume provided by a volume driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalVolume>,
    /// Name of an entry in `spec.secrets` to mount as a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Size and placement of a local persistent volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolume {
    /// `root` (default), `path` or `mount`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Size in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Largest acceptable size in MiB (`mount` volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<i64>,
    /// Constraints on the disk that backs the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Vec<Constraint>>,
}

/// An external volume (e.g. REX-Ray through `dvdi`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalVolume {
    /// Volume name, unique per provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Provider, e.g. `dvdi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Provider options, e.g. `dvdi/driver: rexray`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
    /// Size in GiB, for providers that create volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
}
