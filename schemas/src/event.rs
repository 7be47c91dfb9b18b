//! `Event`: a record that something happened to an object, in Kubernetes' `core/v1` Event
//! shape (`involvedObject`, `reason`, `message`, `type`, `count`, `firstTimestamp`,
//! `lastTimestamp`, `source`), so that `kubectl get events` and describe-style tools read it.
//! Events are also streamed to Marathon clients on `/v2/events`. Like Kubernetes' Event it has
//! no spec and status: its fields are top-level.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{ObjectMeta, ObjectReference};
use crate::resource::impl_resource;
use crate::time::Time;
use crate::wire_enum::wire_enum;

/// Something that happened to an object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Event")]
pub struct Event {
    /// `pacer.dev/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `Event`.
    #[serde(default)]
    pub kind: String,
    /// Name (unique, usually `<object>.<hash>`), namespace of the involved object.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The object this is about.
    #[serde(default)]
    pub involved_object: ObjectReference,
    /// Short CamelCase reason, e.g. `ScalingUp`, `Unhealthy`, `Killed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Normal` or `Warning`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<EventType>,
    /// How many times this event occurred (repeats are folded into one Event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// First occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<Time>,
    /// Latest occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<Time>,
    /// Who reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<EventSource>,
    /// What was done or failed, e.g. `Kill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

impl_resource!(Event {
    kind: "Event",
    plural: "events",
    singular: "event",
    short_names: ["ev"],
    categories: [],
    namespaced: true,
    scale: false,
    defaults: crate::defaults::apply_event_defaults,
    validate: crate::validation::validate_event,
    validate_update: crate::validation::validate_event_update,
});

wire_enum! {
    /// Severity of an event.
    pub enum EventType {
        /// Routine.
        Normal = "Normal",
        /// Something may need attention.
        Warning = "Warning",
    }
}

/// The component that reported an event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSource {
    /// Component, e.g. `deployment-controller`, `agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Node name, for agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}
