//! `Lease`: a named, time-bounded claim by one holder, in the shape of Kubernetes'
//! `coordination.k8s.io/v1` Lease (`spec.holderIdentity`, `spec.leaseDurationSeconds`,
//! `spec.acquireTime`, `spec.renewTime`, `spec.leaseTransitions`; no status).
//!
//! Two users: node agents keep one per node in namespace [`NODE_LEASE_NAMESPACE`] as their
//! heartbeat, and controllers that talk to Pacer over HTTP elect a leader on one (the
//! `LeaderElector` of `pacer-client`). The API server gives the kind one extra behaviour: an
//! update that changes `holderIdentity` recreates the store key in one transaction, so every
//! term has its own create revision — the fencing token that `Pacer-Fence` write requests are
//! checked against.
//!
//! The expiry rule lives here, once, as pure functions over a caller-supplied `now`: a lease is
//! held while `renewTime + leaseDurationSeconds` is in the future. So does the one wire form
//! of a fence, [`LeaseFence`] (`Pacer-Fence: <namespace>/<lease>/<holderIdentity>`), which
//! the server parses and the client writes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::field_error::{Errors, FieldError, FieldPath};
use crate::meta::ObjectMeta;
use crate::resource::impl_resource;
use crate::time::Time;

/// Namespace of the node heartbeat leases (one per Node, named after it).
pub const NODE_LEASE_NAMESPACE: &str = "pacer-node-lease";

/// `spec.leaseDurationSeconds` when a writer leaves it unset (client-go's default).
pub const DEFAULT_LEASE_DURATION_SECONDS: i32 = 15;

/// Longest `holderIdentity`, in bytes.
pub const HOLDER_IDENTITY_MAX_BYTES: usize = 253;

/// The HTTP request header that fences a write: its value is a [`LeaseFence`].
pub const FENCE_HEADER: &str = "Pacer-Fence";

/// A fence: "apply this write only while `holder` holds Lease `namespace/lease`". On the wire
/// (`Display`/[`LeaseFence::parse`]) it is `<namespace>/<lease>/<holder>`; the holder comes
/// last and may itself contain `/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseFence {
    /// Namespace of the Lease (a DNS-1123 label).
    pub namespace: String,
    /// Name of the Lease (a DNS-1123 subdomain).
    pub lease: String,
    /// The holder identity the writer claims.
    pub holder: String,
}

/// A `Pacer-Fence` value that is not `<namespace>/<lease>/<holder>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid Pacer-Fence header {input:?}: expected <namespace>/<lease name>/<holderIdentity> \
     (a DNS-1123 label, a DNS-1123 subdomain, and a holder of at most 253 printable bytes)"
)]
pub struct FenceParseError {
    /// What was given.
    pub input: String,
}

impl LeaseFence {
    /// The fence of `holder` on Lease `namespace/lease`.
    pub fn new(
        namespace: impl Into<String>,
        lease: impl Into<String>,
        holder: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            lease: lease.into(),
            holder: holder.into(),
        }
    }

    /// Parses the wire form (surrounding whitespace ignored).
    pub fn parse(input: &str) -> Result<Self, FenceParseError> {
        let error = || FenceParseError {
            input: input.to_owned(),
        };
        let mut parts = input.trim().splitn(3, '/');
        let (Some(namespace), Some(lease), Some(holder)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(error());
        };
        if crate::names::check_dns1123_label(namespace).is_err()
            || crate::names::check_dns1123_subdomain(lease).is_err()
            || holder.is_empty()
            || holder.len() > HOLDER_IDENTITY_MAX_BYTES
            || holder.chars().any(char::is_control)
        {
            return Err(error());
        }
        Ok(Self::new(namespace, lease, holder))
    }
}

impl std::fmt::Display for LeaseFence {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{}/{}/{}",
            self.namespace, self.lease, self.holder
        )
    }
}

/// A time-bounded claim by one holder (namespaced).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Lease")]
pub struct Lease {
    /// `pacer.dev/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `Lease`.
    #[serde(default)]
    pub kind: String,
    /// Name and namespace of the lease.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Who holds the lease and until when.
    #[serde(default)]
    pub spec: LeaseSpec,
}

impl_resource!(Lease {
    kind: "Lease",
    plural: "leases",
    singular: "lease",
    short_names: [],
    categories: [],
    namespaced: true,
    scale: false,
    defaults: apply_lease_defaults,
    validate: validate_lease,
    validate_update: validate_lease_update,
});

/// Who holds a lease and until when (Kubernetes' `LeaseSpec`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaseSpec {
    /// Identity of the current holder; absent or empty when the lease is free. Changing it
    /// starts a new term (the server recreates the object, so fenced writes of the previous
    /// holder fail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    /// Seconds the holder may go without renewing before others may take the lease over.
    /// Default 15; must be greater than 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i32>,
    /// When the current holder acquired the lease (RFC 3339, fractional seconds allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<Time>,
    /// When the current holder last renewed the lease (RFC 3339, fractional seconds allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<Time>,
    /// How many times the lease changed hands. Default 0; never negative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<i32>,
}

impl Lease {
    /// The holder, `None` when the lease is free (no or an empty `holderIdentity`).
    pub fn holder(&self) -> Option<&str> {
        self.spec.holder()
    }

    /// When the lease ends unless renewed: `renewTime` (or `acquireTime`) plus the duration.
    /// `None` when it was never renewed or acquired.
    pub fn expires_at(&self) -> Option<Time> {
        self.spec.expires_at()
    }

    /// Whether `holder` holds the lease at `now`: it is the holder and the lease has not
    /// expired.
    pub fn is_held_by(&self, holder: &str, now: Time) -> bool {
        self.spec.is_held_by(holder, now)
    }

    /// Whether anyone holds the lease at `now`.
    pub fn is_held(&self, now: Time) -> bool {
        self.spec.is_held(now)
    }
}

impl LeaseSpec {
    /// The holder, `None` when the lease is free.
    pub fn holder(&self) -> Option<&str> {
        self.holder_identity
            .as_deref()
            .filter(|holder| !holder.is_empty())
    }

    /// The duration in seconds, with the default when unset.
    pub fn duration_seconds(&self) -> i32 {
        self.lease_duration_seconds
            .unwrap_or(DEFAULT_LEASE_DURATION_SECONDS)
    }

    /// When the lease ends unless renewed; `None` when it was never renewed or acquired.
    pub fn expires_at(&self) -> Option<Time> {
        let since = self.renew_time.or(self.acquire_time)?;
        let duration = jiff::SignedDuration::from_secs(i64::from(self.duration_seconds()));
        since.timestamp().checked_add(duration).ok().map(Time::new)
    }

    /// Whether anyone holds the lease at `now`.
    pub fn is_held(&self, now: Time) -> bool {
        self.holder().is_some() && self.expires_at().is_some_and(|end| now < end)
    }

    /// Whether `holder` holds the lease at `now`.
    pub fn is_held_by(&self, holder: &str, now: Time) -> bool {
        self.holder() == Some(holder) && self.is_held(now)
    }
}

/// Defaults: `leaseDurationSeconds` 15, `leaseTransitions` 0.
pub fn apply_lease_defaults(lease: &mut Lease) {
    lease
        .spec
        .lease_duration_seconds
        .get_or_insert(DEFAULT_LEASE_DURATION_SECONDS);
    lease.spec.lease_transitions.get_or_insert(0);
}

/// Checks a Lease: a positive duration, non-negative transitions, and a holder identity that
/// fits in a header (printable, at most 253 bytes).
pub fn validate_lease(lease: &Lease) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    errors.extend(crate::validation::validate_type_meta(lease));
    errors.extend(crate::validation::validate_object_meta(
        &lease.metadata,
        true,
    ));
    let spec = FieldPath::new("spec");
    if let Some(duration) = lease.spec.lease_duration_seconds
        && duration <= 0
    {
        errors.push(FieldError::invalid(
            &spec.child("leaseDurationSeconds"),
            duration,
            "must be greater than 0",
        ));
    }
    if let Some(transitions) = lease.spec.lease_transitions
        && transitions < 0
    {
        errors.push(FieldError::invalid(
            &spec.child("leaseTransitions"),
            transitions,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(holder) = &lease.spec.holder_identity {
        let path = spec.child("holderIdentity");
        if holder.len() > HOLDER_IDENTITY_MAX_BYTES {
            errors.push(FieldError::too_long(&path, HOLDER_IDENTITY_MAX_BYTES));
        } else if holder.chars().any(|c| c.is_control()) {
            errors.push(FieldError::invalid(
                &path,
                holder.as_str(),
                "must not contain control characters",
            ));
        }
    }
    errors.into_result()
}

/// Checks a Lease update (as [`validate_lease`]; every field may change).
pub fn validate_lease_update(lease: &Lease, _old: &Lease) -> Result<(), Vec<FieldError>> {
    validate_lease(lease)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resource::Resource;

    fn at(text: &str) -> Time {
        text.parse().unwrap()
    }

    fn lease(spec: serde_json::Value) -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": "ctl", "namespace": "default"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn expiry_follows_renew_time_and_duration() {
        let held = lease(json!({
            "holderIdentity": "a",
            "leaseDurationSeconds": 10,
            "acquireTime": "2026-01-01T00:00:00Z",
            "renewTime": "2026-01-01T00:00:05.250Z",
        }));
        assert_eq!(held.expires_at(), Some(at("2026-01-01T00:00:15.250Z")));
        // (now, holder asked about, expected)
        let table = [
            ("2026-01-01T00:00:15.249Z", "a", true),
            ("2026-01-01T00:00:15.250Z", "a", false),
            ("2026-01-01T00:00:01Z", "b", false),
        ];
        for (now, holder, expect) in table {
            assert_eq!(held.is_held_by(holder, at(now)), expect, "{now} {holder}");
        }
        let free = lease(json!({"holderIdentity": "", "renewTime": "2026-01-01T00:00:00Z"}));
        assert!(!free.is_held(at("2026-01-01T00:00:01Z")));
        assert_eq!(free.holder(), None);
        let never_renewed = lease(json!({"holderIdentity": "a"}));
        assert!(!never_renewed.is_held(at("2026-01-01T00:00:01Z")));
    }

    #[test]
    fn fences_parse_and_print() {
        // (wire form, parsed as (namespace, lease, holder), or None when malformed)
        let table = [
            ("default/ctl/a", Some(("default", "ctl", "a"))),
            (
                "ops/my.lease/host-1/pid 42",
                Some(("ops", "my.lease", "host-1/pid 42")),
            ),
            (" default/ctl/a ", Some(("default", "ctl", "a"))),
            ("default/ctl", None),
            ("default/ctl/", None),
            ("/ctl/a", None),
            ("Default/ctl/a", None),
            ("default/CTL/a", None),
            ("default/ctl/a\tb", None),
        ];
        for (wire, expect) in table {
            let parsed = LeaseFence::parse(wire).ok();
            let got = parsed.as_ref().map(|fence| {
                (
                    fence.namespace.as_str(),
                    fence.lease.as_str(),
                    fence.holder.as_str(),
                )
            });
            assert_eq!(got, expect, "{wire:?}");
            if let Some(fence) = parsed {
                assert_eq!(LeaseFence::parse(&fence.to_string()).unwrap(), fence);
            }
        }
    }

    #[test]
    fn defaults_then_validation_names_each_field() {
        let mut object = lease(json!({"holderIdentity": "a"}));
        object.apply_defaults();
        assert_eq!(object.spec.lease_duration_seconds, Some(15));
        assert_eq!(object.spec.lease_transitions, Some(0));
        assert!(object.validate().is_ok());
        // (spec, offending field)
        let table = [
            (
                json!({"leaseDurationSeconds": 0}),
                "spec.leaseDurationSeconds",
            ),
            (
                json!({"leaseDurationSeconds": -5}),
                "spec.leaseDurationSeconds",
            ),
            (json!({"leaseTransitions": -1}), "spec.leaseTransitions"),
            (json!({"holderIdentity": "a\nb"}), "spec.holderIdentity"),
            (
                json!({"holderIdentity": "x".repeat(254)}),
                "spec.holderIdentity",
            ),
        ];
        for (spec, field) in table {
            let errors = lease(spec.clone()).validate().unwrap_err();
            assert_eq!(errors.len(), 1, "{spec}: {errors:?}");
            assert_eq!(errors[0].field, field, "{spec}");
        }
    }
}
