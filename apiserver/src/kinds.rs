//! The registry of served kinds: for each `pacer.dev/v1` kind, its names (for URLs, discovery and
//! messages), its scope, its subresources, its store keys, and a few type-erased hooks (strict
//! decoding + defaulting + validation, JSON Schema, scale) instantiated once per kind from the
//! [`Resource`] trait. Everything else in the server works on JSON and on this table, so the
//! handler code exists once, not once per kind.

use pacer_schemas::{App, AppVersion, Deployment, Event, Instance, Lease, Node, Offer, Resource};
use serde_json::Value;

use crate::error::ApiError;
use crate::params::FieldValidation;
use crate::rest::scale;

/// One served kind.
#[derive(Debug)]
pub struct KindDef {
    /// `kind`, e.g. `App`.
    pub kind: &'static str,
    /// `kind` of its lists, e.g. `AppList`.
    pub list_kind: &'static str,
    /// Resource name in URLs and discovery, e.g. `apps`.
    pub plural: &'static str,
    /// Singular name, e.g. `app`.
    pub singular: &'static str,
    /// Short names, e.g. `ap`.
    pub short_names: &'static [&'static str],
    /// Discovery categories, e.g. `all`.
    pub categories: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether `status` is a subresource: main-resource writes keep the stored status,
    /// `/status` writes change only the status, and `generation` follows `spec` only.
    pub status_subresource: bool,
    /// The `/scale` subresource, when served.
    pub scale: Option<ScaleDef>,
    admit: AdmitFn,
    schema: fn() -> Value,
}

/// How the `/scale` subresource reads and writes a kind (only Apps today).
#[derive(Debug)]
pub struct ScaleDef {
    /// The autoscaling/v1 `Scale` view of an object (with its `resourceVersion`).
    pub to_scale: fn(&Value) -> Result<Value, ApiError>,
    /// Writes the desired replicas into the object.
    pub set_replicas: fn(&mut Value, i32) -> Result<(), ApiError>,
}

/// An object that passed admission: decoded into its type, defaulted, validated and encoded
/// back (so it holds exactly the fields the type knows).
#[derive(Debug)]
pub struct Admitted {
    /// The object, as it will be stored (without `resourceVersion`).
    pub object: Value,
    /// `Warning` headers for the client (unknown fields under `fieldValidation=Warn`).
    pub warnings: Vec<String>,
}

type AdmitFn =
    fn(&'static KindDef, Value, Option<&Value>, FieldValidation) -> Result<Admitted, ApiError>;

/// Every served kind, in discovery order.
pub static KINDS: [KindDef; 9] = [
    KindDef::of::<App>(true, Some(scale::APP_SCALE)),
    KindDef::of::<AppVersion>(false, None),
    KindDef::of::<Instance>(true, None),
    KindDef::of::<Node>(true, None),
    KindDef::of::<Deployment>(true, None),
    KindDef::of::<Offer>(true, None),
    KindDef::of::<Event>(false, None),
    KindDef::of::<Lease>(false, None),
    KindDef::of::<pacer_schemas::framework::Framework>(true, None),
];

/// The kind served under `plural`, if any.
pub fn find(plural: &str) -> Option<&'static KindDef> {
    KINDS.iter().find(|kind| kind.plural == plural)
}

/// The kind whose `kind` is `kind`, if any.
pub fn find_kind(kind: &str) -> Option<&'static KindDef> {
    KINDS.iter().find(|def| def.kind == kind)
}

impl KindDef {
    const fn of<K: Resource>(status_subresource: bool, scale: Option<ScaleDef>) -> Self {
        Self {
            kind: K::KIND,
            list_kind: K::LIST_KIND,
            plural: K::PLURAL,
            singular: K::SINGULAR,
            short_names: K::SHORT_NAMES,
            categories: K::CATEGORIES,
            namespaced: K::NAMESPACED,
            status_subresource,
            scale,
            admit: admit::<K>,
            schema: pacer_schemas::schema::schema_for_kind::<K>,
        }
    }

    /// `<plural>.<group>`, as Kubernetes names a resource in messages (`apps.pacer.dev`).
    pub fn group_resource(&self) -> String {
        format!("{}.{}", self.plural, pacer_schemas::GROUP)
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(namespace) if self.namespaced => {
                format!("/registry/{}/{namespace}/{name}", self.plural)
            }
            _ => format!("/registry/{}/{name}", self.plural),
        }
    }

    /// The store prefix of a collection: one namespace, or every object of the kind.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(namespace) if self.namespaced => format!("/registry/{}/{namespace}/", self.plural),
            _ => format!("/registry/{}/", self.plural),
        }
    }

    /// Decodes `object` into this kind (rejecting unknown fields under `Strict`), fills
    /// defaults and type metadata, validates it (as an update of `old` when given), and
    /// encodes it back.
    pub fn admit(
        &'static self,
        object: Value,
        old: Option<&Value>,
        validation: FieldValidation,
    ) -> Result<Admitted, ApiError> {
        (self.admit)(self, object, old, validation)
    }

    /// The kind's JSON Schema (2020-12, definitions under `$defs`), tagged with
    /// `x-kubernetes-group-version-kind`.
    pub fn schema(&self) -> Value {
        (self.schema)()
    }
}

fn admit<K: Resource>(
    kind: &'static KindDef,
    object: Value,
    old: Option<&Value>,
    validation: FieldValidation,
) -> Result<Admitted, ApiError> {
    let bytes = serde_json::to_vec(&object)
        .map_err(|error| ApiError::Internal(format!("encode object for decoding: {error}")))?;
    let (mut typed, unknown) = pacer_schemas::decode::decode_reporting_unknown::<K>(&bytes)?;
    let warnings = match validation {
        FieldValidation::Strict if !unknown.is_empty() => {
            return Err(ApiError::Decode(
                pacer_schemas::DecodeError::UnknownFields { paths: unknown },
            ));
        }
        FieldValidation::Warn => unknown
            .iter()
            .map(|path| format!("unknown field \"{path}\""))
            .collect(),
        _ => Vec::new(),
    };
    typed.apply_defaults();
    typed.set_type_meta();
    let verdict = match old {
        Some(old) => {
            let old: K = serde_json::from_value(old.clone()).map_err(|error| {
                ApiError::Internal(format!("decode stored {}: {error}", K::KIND))
            })?;
            typed.validate_update(&old)
        }
        None => typed.validate(),
    };
    if let Err(errors) = verdict {
        return Err(ApiError::Invalid {
            kind,
            name: typed.meta().name_str().to_owned(),
            errors,
        });
    }
    let object = serde_json::to_value(&typed)
        .map_err(|error| ApiError::Internal(format!("encode {}: {error}", K::KIND)))?;
    Ok(Admitted { object, warnings })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_and_prefixes() {
        let apps = find("apps").unwrap();
        assert_eq!(apps.key(Some("prod"), "web"), "/registry/apps/prod/web");
        assert_eq!(apps.prefix(Some("prod")), "/registry/apps/prod/");
        assert_eq!(apps.prefix(None), "/registry/apps/");
        let nodes = find("nodes").unwrap();
        assert_eq!(nodes.key(None, "n1"), "/registry/nodes/n1");
        assert!(!nodes.namespaced);
        assert!(find("pods").is_none());
        assert_eq!(find_kind("App").unwrap().plural, "apps");
    }

    #[test]
    fn admission_defaults_validates_and_reports_unknown_fields() {
        let apps = find("apps").unwrap();
        let object = json!({"metadata": {"name": "web", "namespace": "default"},
                            "spec": {"cmd": "sleep 1", "bogus": 1}});
        let error = apps
            .admit(object.clone(), None, FieldValidation::Strict)
            .unwrap_err();
        assert!(error.to_string().contains("spec.bogus"), "{error}");
        let admitted = apps.admit(object, None, FieldValidation::Warn).unwrap();
        assert_eq!(admitted.warnings, vec!["unknown field \"spec.bogus\""]);
        assert_eq!(admitted.object["kind"], "App");
        assert_eq!(admitted.object["spec"]["instances"], 1);
        let invalid = json!({"metadata": {"name": "Web"}, "spec": {"cmd": "x"}});
        let error = apps
            .admit(invalid, None, FieldValidation::Strict)
            .unwrap_err();
        assert_eq!(error.to_status().http_code(), 422);
    }
}
