//! `Framework`: a scheduler registered with the offer broker under a role, Mesos-style. The
//! broker offers free node resources to registered frameworks in Dominant Resource Fairness
//! order across roles (weighted, within quotas, honouring reservations); a framework answers
//! each `Offer` by accepting it (launching Instances on the offered node) or declining it, and
//! the broker keeps a declined node from the framework for the decline's `refuseSeconds`.
//!
//! The spec is the framework's registration (what its scheduler writes); the status is the
//! broker's view of it (what the role holds, its dominant share, outstanding offers and active
//! decline filters).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::capacity::Resources;
use crate::field_error::{Errors, FieldError, FieldPath};
use crate::meta::ObjectMeta;
use crate::names::check_dns1123_subdomain;
use crate::resource::impl_resource;
use crate::time::Time;

/// The role of unreserved resources, and of a framework that names none.
pub const DEFAULT_ROLE: &str = "*";

/// Seconds an offer stays open when the framework does not say (`spec.offerTimeoutSeconds`).
pub const DEFAULT_OFFER_TIMEOUT_SECONDS: f64 = 10.0;

/// Seconds a declined node is filtered from the framework when the decline does not say
/// (Mesos' default `refuse_seconds`).
pub const DEFAULT_REFUSE_SECONDS: f64 = 5.0;

/// A scheduler registered to receive offers (cluster-scoped).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Framework")]
pub struct Framework {
    /// `pacer.dev/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `Framework`.
    #[serde(default)]
    pub kind: String,
    /// Name (the framework id), labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The registration: role, weight, quota, offer timeout.
    #[serde(default)]
    pub spec: FrameworkSpec,
    /// The offer broker's view: allocation, dominant share, offers, decline filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<FrameworkStatus>,
}

impl_resource!(Framework {
    kind: "Framework",
    plural: "frameworks",
    singular: "framework",
    short_names: ["fw"],
    categories: [],
    namespaced: false,
    scale: false,
    defaults: apply_framework_defaults,
    validate: validate_framework,
    validate_update: validate_framework_update,
    spec: FrameworkSpec,
    status: FrameworkStatus,
});

/// A framework's registration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FrameworkSpec {
    /// Role the framework receives offers for; resources of nodes reserved for this role
    /// (`Node.spec.role`) are offered only to it. Default `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Weight of the role in DRF (the largest weight among the role's frameworks counts).
    /// Default 1; must be greater than 0.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::number::serialize_option"
    )]
    pub weight: Option<f64>,
    /// Most the role may hold, per resource (the smallest quota among the role's frameworks
    /// counts); absent: no limit. Port ranges are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Resources>,
    /// Set aside for the role: other roles are not offered the part of it the role does not
    /// use (the largest reservation among the role's frameworks counts). Port ranges are
    /// ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<Resources>,
    /// Seconds an offer to this framework stays open before the broker expires it. Default
    /// 10; must be greater than 0.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::number::serialize_option"
    )]
    pub offer_timeout_seconds: Option<f64>,
    /// Receive no offers while true (Mesos' SUPPRESS). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<bool>,
    /// Mesos' REVIVE: raising it drops every decline filter of the framework, so declined
    /// nodes are offered to it again at once (a framework does so when it has new work).
    /// Any change of the spec does the same: a filter lasts only while the registration it
    /// was made under (`metadata.generation`) does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revive_count: Option<i64>,
}

impl FrameworkSpec {
    /// The role, `*` when unset or empty.
    pub fn role(&self) -> &str {
        self.role
            .as_deref()
            .filter(|role| !role.is_empty())
            .unwrap_or(DEFAULT_ROLE)
    }

    /// The weight, 1 when unset.
    pub fn weight(&self) -> f64 {
        self.weight.unwrap_or(1.0)
    }

    /// The offer timeout in seconds, with the default when unset.
    pub fn offer_timeout_seconds(&self) -> f64 {
        self.offer_timeout_seconds
            .unwrap_or(DEFAULT_OFFER_TIMEOUT_SECONDS)
    }
}

/// A declined node the broker does not offer to the framework again before `until`, as Mesos
/// filters a decline: only while what the node has to offer fits within what was declined
/// (more free resources, say after an instance ends, are offered at once), and only while the
/// framework's registration is the one it declined under.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeclineFilter {
    /// The declined node.
    pub node_name: String,
    /// The filter ends at this instant.
    pub until: Time,
    /// The declined amounts (port ranges are not compared); absent: the node, whatever it
    /// has free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// The framework's `metadata.generation` when it declined; a later one (a revive, or any
    /// change of its spec) ends the filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

impl DeclineFilter {
    /// Whether the filter still holds at `now` for a framework at `generation`: before
    /// `until`, and made under that generation (or a later one).
    pub fn in_force(&self, now: Time, generation: Option<i64>) -> bool {
        self.until > now && self.generation >= generation
    }
}

/// The offer broker's view of a framework.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FrameworkStatus {
    /// What the framework's role holds: instances bound with its role plus its outstanding
    /// offers.
    #[serde(default)]
    pub role_allocated: Resources,
    /// The role's dominant share of the cluster (0–1), as DRF weighs it before the weight.
    #[serde(default, serialize_with = "crate::number::serialize")]
    pub dominant_share: f64,
    /// Offers to this framework that are open now.
    #[serde(default)]
    pub outstanding_offers: i32,
    /// Nodes the framework declined, filtered from its offers until the given instants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<DeclineFilter>,
    /// Why the last accept of this framework was refused, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refused_accept: Option<String>,
}

/// Frameworks have no defaults written into them (accessors apply them).
pub fn apply_framework_defaults(_: &mut Framework) {}

/// Checks a Framework: role name, weight, quota, reservation and timeout.
pub fn validate_framework(framework: &Framework) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    errors.extend(crate::validation::validate_type_meta(framework));
    errors.extend(crate::validation::validate_object_meta(
        &framework.metadata,
        false,
    ));
    let spec = FieldPath::new("spec");
    if let Some(role) = framework.spec.role.as_deref()
        && role != DEFAULT_ROLE
        && !role.is_empty()
        && let Err(message) = check_dns1123_subdomain(role)
    {
        errors.push(FieldError::invalid(&spec.child("role"), role, message));
    }
    for (field, value) in [
        ("weight", framework.spec.weight),
        ("offerTimeoutSeconds", framework.spec.offer_timeout_seconds),
    ] {
        if let Some(value) = value
            && !(value.is_finite() && value > 0.0)
        {
            errors.push(FieldError::invalid(
                &spec.child(field),
                value,
                "must be greater than 0",
            ));
        }
    }
    for (field, amounts) in [
        ("quota", &framework.spec.quota),
        ("reservation", &framework.spec.reservation),
    ] {
        let Some(amounts) = amounts else { continue };
        let path = spec.child(field);
        for (name, value) in [
            ("cpus", amounts.cpus),
            ("mem", amounts.mem),
            ("disk", amounts.disk),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                errors.push(FieldError::invalid(
                    &path.child(name),
                    value,
                    "must be greater than or equal to 0",
                ));
            }
        }
        if amounts.gpus < 0 {
            errors.push(FieldError::invalid(
                &path.child("gpus"),
                amounts.gpus,
                "must be greater than or equal to 0",
            ));
        }
    }
    errors.into_result()
}

/// Checks a Framework update: the role never changes (offers and instances carry it).
pub fn validate_framework_update(
    framework: &Framework,
    old: &Framework,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    if let Err(found) = validate_framework(framework) {
        errors.extend(found);
    }
    if framework.spec.role() != old.spec.role() {
        errors.push(FieldError::invalid(
            &FieldPath::new("spec").child("role"),
            framework.spec.role(),
            "field is immutable",
        ));
    }
    errors.into_result()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Resource;

    fn framework(spec: serde_json::Value) -> Framework {
        serde_json::from_value(json!({
            "apiVersion": "pacer.dev/v1", "kind": "Framework",
            "metadata": {"name": "batch-runner"}, "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn defaults_come_from_accessors() {
        let framework = framework(json!({}));
        assert_eq!(framework.spec.role(), "*");
        assert_eq!(framework.spec.weight(), 1.0);
        assert_eq!(framework.spec.offer_timeout_seconds(), 10.0);
        assert!(Framework::validate(&framework).is_ok());
    }

    #[test]
    fn validation_names_each_bad_field() {
        let bad = framework(json!({
            "role": "Not A Role", "weight": 0, "offerTimeoutSeconds": -1,
            "quota": {"cpus": -1, "mem": 1, "gpus": -2},
        }));
        let errors = Framework::validate(&bad).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.role",
                "spec.weight",
                "spec.offerTimeoutSeconds",
                "spec.quota.cpus",
                "spec.quota.gpus"
            ]
        );
    }

    #[test]
    fn the_role_is_immutable() {
        let old = framework(json!({"role": "batch"}));
        let new = framework(json!({"role": "web"}));
        let errors = Framework::validate_update(&new, &old).unwrap_err();
        assert_eq!(errors[0].field.as_str(), "spec.role");
        assert!(Framework::validate_update(&old, &old).is_ok());
    }
}
