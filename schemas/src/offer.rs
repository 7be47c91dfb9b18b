//! `Offer`: a slice of one node's free resources offered to one role's scheduler, Mesos-style.
//! The offer broker creates offers (fairly across roles, by Dominant Resource Fairness) and
//! expires them; the placement controller or an external scheduler accepts or declines them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::app::AppSpec;
use crate::capacity::Resources;
use crate::meta::ObjectMeta;
use crate::resource::impl_resource;
use crate::time::Time;

/// Free resources of one node, offered to one role (cluster-scoped).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Offer")]
pub struct Offer {
    /// `pacer.dev/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `Offer`.
    #[serde(default)]
    pub kind: String,
    /// Name (unique offer id).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What is offered, to whom, until when.
    #[serde(default)]
    pub spec: OfferSpec,
    /// The answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<OfferStatus>,
}

impl_resource!(Offer {
    kind: "Offer",
    plural: "offers",
    singular: "offer",
    short_names: ["of"],
    categories: [],
    namespaced: false,
    scale: false,
    defaults: crate::defaults::apply_offer_defaults,
    validate: crate::validation::validate_offer,
    validate_update: crate::validation::validate_offer_update,
    spec: OfferSpec,
    status: OfferStatus,
});

/// What is offered, to whom, until when.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferSpec {
    /// Node whose resources these are.
    #[serde(default)]
    pub node_name: String,
    /// Host name of the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Role the offer is made to (`*` for unreserved resources).
    #[serde(default)]
    pub role: String,
    /// The offered amounts.
    #[serde(default)]
    pub resources: Resources,
    /// The node's attributes, for constraint matching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
    /// The offer is void after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// The `Framework` the offer is made to (the offer broker's offers always name one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
}

/// Phase of an offer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum OfferPhase {
    /// Waiting for an answer.
    #[default]
    Offered,
    /// Accepted: the listed instances were launched with it.
    Accepted,
    /// Declined; the resources are not re-offered to the role for `refuseSeconds`.
    Declined,
    /// Not answered before `expiresAt`.
    Expired,
    /// Withdrawn by the broker (node lost, resources gone).
    Rescinded,
}

/// The answer to an offer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferStatus {
    /// Phase.
    #[serde(default)]
    pub phase: OfferPhase,
    /// Who answered (scheduler name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// Instances launched with an accepted offer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<String>,
    /// Seconds the declined resources are filtered from the role (decline filter).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::number::serialize_option"
    )]
    pub refuse_seconds: Option<f64>,
    /// With phase `Declined`: the framework's `metadata.generation` the decline was made
    /// under; its filter ends once the framework's generation moves past it (a revive).
    /// Absent: the generation the broker sees when it handles the decline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_generation: Option<i64>,
    /// Why it was declined or rescinded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// With phase `Accepted`: the Instances to launch on the offered node (Mesos' LAUNCH
    /// operation). The offer broker creates them bound to the node, with the offer's role, in
    /// the one transaction that deletes the offer; they must fit in the offered resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub launch: Vec<OfferLaunch>,
}

/// One Instance an accepting framework launches with an offer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferLaunch {
    /// Namespace of the Instance.
    #[serde(default)]
    pub namespace: String,
    /// Name of the Instance (must not exist yet).
    #[serde(default)]
    pub name: String,
    /// `spec.app` of the Instance (the job or app it belongs to); default: its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// `spec.appVersion` of the Instance; default: the offer's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// What to run (an App spec: command or container, cpus, mem, disk, ports…); its
    /// resources are what the instance takes from the offer.
    #[serde(default)]
    pub template: AppSpec,
    /// Host ports, one per port the template asks for, each within the offered ranges;
    /// default: the broker picks the lowest free offered ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ports: Option<Vec<i32>>,
    /// Labels of the Instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}
