//! An App's ports and networks: `portDefinitions` (host networking), `networks`, and the
//! deprecated `ipAddress` (Marathon < 1.5) that Marathon users' definitions may still carry.
//! Container port mappings live with the container (`container.rs`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::wire_enum::wire_enum;

wire_enum! {
    /// Transport protocol(s) of a port.
    pub enum PortProtocol {
        /// TCP.
        Tcp = "tcp",
        /// UDP.
        Udp = "udp",
        /// Both UDP and TCP on the same port number.
        UdpTcp = "udp,tcp",
    }
}

wire_enum! {
    /// How an instance joins the network.
    pub enum NetworkMode {
        /// The host's network namespace; ports come from `portDefinitions`.
        Host = "host",
        /// A named container (CNI) network; ports come from `container.portMappings`.
        Container = "container",
        /// The container bridge; ports come from `container.portMappings` mapped to host ports.
        ContainerBridge = "container/bridge",
    }
}

/// A port the App asks for under host networking (Marathon's `portDefinitions[]`). Each
/// instance gets one host port per entry (`$PORT0`, `$PORT_<NAME>`…).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortDefinition {
    /// Service port; 0 (default) lets Pacer pick a cluster-unique one. With `requirePorts` it is
    /// also the host port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// `tcp` (default), `udp` or `udp,tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<PortProtocol>,
    /// Name, unique within the App; readiness checks refer to ports by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free-form labels, e.g. `VIP_0` for load balancers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// A network an instance joins (Marathon's `networks[]`, 1.5+).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// `host`, `container` (default) or `container/bridge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<NetworkMode>,
    /// Name of the container network (`container` mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels passed to the network plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Deprecated IP-per-task settings (Marathon < 1.5; replaced by `networks`). Accepted and kept
/// so that old definitions load unchanged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpAddress {
    /// Security groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Labels for the network plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Ports announced for service discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<IpDiscovery>,
    /// Name of the network to join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_name: Option<String>,
}

/// Service-discovery information of the deprecated `ipAddress`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpDiscovery {
    /// Announced ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<IpDiscoveryPort>>,
}

/// One announced port of the deprecated `ipAddress.discovery`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpDiscoveryPort {
    /// Port number inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i32>,
    /// Port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `tcp` or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<PortProtocol>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}
