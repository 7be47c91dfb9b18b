//! `Node`: a machine that runs instances, registered by its agent. Its attributes are what
//! Marathon constraints match on; capacity and allocatable feed placement and the offer broker.
//! Liveness is the agent's store lease, reflected here in the `Ready` condition.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::capacity::Resources;
use crate::condition::Condition;
use crate::meta::ObjectMeta;
use crate::resource::impl_resource;
use crate::time::Time;

/// A machine with an agent (cluster-scoped).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Node")]
pub struct Node {
    /// `pacer.dev/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `Node`.
    #[serde(default)]
    pub kind: String,
    /// Name (the agent's `--name`), labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Attributes and scheduling switches.
    #[serde(default)]
    pub spec: NodeSpec,
    /// Capacity, address and conditions reported by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
}

impl_resource!(Node {
    kind: "Node",
    plural: "nodes",
    singular: "node",
    short_names: ["no"],
    categories: [],
    namespaced: false,
    scale: false,
    defaults: crate::defaults::apply_node_defaults,
    validate: crate::validation::validate_node,
    validate_update: crate::validation::validate_node_update,
    spec: NodeSpec,
    status: NodeStatus,
});

/// Attributes and scheduling switches of a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    /// Attributes that constraints match (`rack: r1`, `level: 0.8`), as Mesos agent attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
    /// Fault-domain region (the `@region` constraint field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Fault-domain zone (the `@zone` constraint field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Role the node's resources are reserved for; `*` (default) is unreserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Place no new instances here (running ones stay). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable: Option<bool>,
}

/// What the agent reports about its node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Everything the machine has.
    #[serde(default)]
    pub capacity: Resources,
    /// What instances may use (capacity minus reserved).
    #[serde(default)]
    pub allocatable: Resources,
    /// `host:port` where the agent serves logs and probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_address: Option<String>,
    /// Host name (the `hostname` constraint field and Marathon's task `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Agent version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Runtimes the agent offers (`docker`, `process`, `hollow`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtimes: Vec<String>,
    /// Last time the agent wrote its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<Time>,
    /// `Ready` (lease alive) and other conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
