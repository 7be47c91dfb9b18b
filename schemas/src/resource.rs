//! `Resource`: what the API server, the store layout and the clients need to know about a kind
//! — its names (kind, plural, singular, short names), whether it is namespaced, how to reach its
//! metadata, and its defaulting and validation — so that they can be generic over it.
//! `HasSpec` and `HasStatus` give typed access to `spec` and `status` for the kinds that have
//! them (every kind but Event), for generation bumps and the `/status` subresource.

use std::fmt;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::field_error::FieldError;
use crate::meta::ObjectMeta;

/// A kind of `pacer.dev/v1` object.
pub trait Resource:
    Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static
{
    /// `kind`, e.g. `App`.
    const KIND: &'static str;
    /// `kind` of a list, e.g. `AppList`.
    const LIST_KIND: &'static str;
    /// Resource name in URLs and discovery, e.g. `apps`.
    const PLURAL: &'static str;
    /// Singular name for `kubectl get app`, e.g. `app`.
    const SINGULAR: &'static str;
    /// Short names for `kubectl get ap`.
    const SHORT_NAMES: &'static [&'static str];
    /// Discovery categories, e.g. `all`.
    const CATEGORIES: &'static [&'static str];
    /// Whether objects live in a namespace.
    const NAMESPACED: bool;
    /// Whether the `/scale` subresource is served.
    const SCALE_SUBRESOURCE: bool = false;
    /// API group.
    const GROUP: &'static str = crate::GROUP;
    /// API version within the group.
    const VERSION: &'static str = crate::VERSION;
    /// `apiVersion` as written in objects.
    const API_VERSION: &'static str = crate::API_VERSION;

    /// The object's metadata.
    fn meta(&self) -> &ObjectMeta;
    /// The object's metadata, for the server to fill.
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    /// `apiVersion` and `kind` as the object carries them (empty when absent on input).
    fn type_meta(&self) -> (&str, &str);
    /// Sets `apiVersion` and `kind` to this kind's.
    fn set_type_meta(&mut self);
    /// Fills unset fields with their defaults; idempotent.
    fn apply_defaults(&mut self);
    /// Checks the object, returning every error at once.
    fn validate(&self) -> Result<(), Vec<FieldError>>;
    /// Checks an update of `old` into `self`: everything [`Resource::validate`] checks, plus
    /// the fields that may not change.
    fn validate_update(&self, old: &Self) -> Result<(), Vec<FieldError>> {
        let _ = old;
        self.validate()
    }
}

/// A kind with a `spec` (desired state).
pub trait HasSpec: Resource {
    /// The spec type.
    type Spec: Clone + fmt::Debug + PartialEq;
    /// The spec; a change bumps `metadata.generation`.
    fn spec(&self) -> &Self::Spec;
    /// The spec, mutably.
    fn spec_mut(&mut self) -> &mut Self::Spec;
}

/// A kind with a `status` (observed state) behind the `/status` subresource: writes to the
/// main resource keep the stored status, writes to `/status` change only the status.
pub trait HasStatus: Resource {
    /// The status type.
    type Status: Clone + fmt::Debug + PartialEq;
    /// The status, if any has been written.
    fn status(&self) -> Option<&Self::Status>;
    /// The status, mutably.
    fn status_mut(&mut self) -> &mut Option<Self::Status>;
}

/// `<plural>.<group>`, as Kubernetes names a resource in messages (`apps.pacer.dev`).
pub fn group_resource<K: Resource>() -> String {
    format!("{}.{}", K::PLURAL, K::GROUP)
}

/// `<Kind>.<group>`, as Kubernetes names a kind in `Invalid` messages (`App.pacer.dev`).
pub fn group_kind<K: Resource>() -> String {
    format!("{}.{}", K::KIND, K::GROUP)
}

/// Implements [`Resource`] (and [`HasSpec`]/[`HasStatus`] when `spec`/`status` are given) for
/// an object struct with `api_version`, `kind` and `metadata` fields.
macro_rules! impl_resource {
    (
        $ty:ident {
            kind: $kind:literal,
            plural: $plural:literal,
            singular: $singular:literal,
            short_names: [$($short:literal),*],
            categories: [$($category:literal),*],
            namespaced: $namespaced:literal,
            scale: $scale:literal,
            defaults: $defaults:path,
            validate: $validate:path,
            validate_update: $validate_update:path,
            $(spec: $spec:ty, status: $status:ty,)?
        }
    ) => {
        impl $crate::resource::Resource for $ty {
            const KIND: &'static str = $kind;
            const LIST_KIND: &'static str = concat!($kind, "List");
            const PLURAL: &'static str = $plural;
            const SINGULAR: &'static str = $singular;
            const SHORT_NAMES: &'static [&'static str] = &[$($short),*];
            const CATEGORIES: &'static [&'static str] = &[$($category),*];
            const NAMESPACED: bool = $namespaced;
            const SCALE_SUBRESOURCE: bool = $scale;

            fn meta(&self) -> &$crate::meta::ObjectMeta {
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut $crate::meta::ObjectMeta {
                &mut self.metadata
            }

            fn type_meta(&self) -> (&str, &str) {
                (&self.api_version, &self.kind)
            }

            fn set_type_meta(&mut self) {
                $crate::API_VERSION.clone_into(&mut self.api_version);
                $kind.clone_into(&mut self.kind);
            }

            fn apply_defaults(&mut self) {
                $defaults(self)
            }

            fn validate(&self) -> Result<(), Vec<$crate::field_error::FieldError>> {
                $validate(self)
            }

            fn validate_update(
                &self,
                old: &Self,
            ) -> Result<(), Vec<$crate::field_error::FieldError>> {
                $validate_update(self, old)
            }
        }

        $(
            impl $crate::resource::HasSpec for $ty {
                type Spec = $spec;

                fn spec(&self) -> &Self::Spec {
                    &self.spec
                }

                fn spec_mut(&mut self) -> &mut Self::Spec {
                    &mut self.spec
                }
            }

            impl $crate::resource::HasStatus for $ty {
                type Status = $status;

                fn status(&self) -> Option<&Self::Status> {
                    self.status.as_ref()
                }

                fn status_mut(&mut self) -> &mut Option<Self::Status> {
                    &mut self.status
                }
            }
        )?
    };
}

pub(crate) use impl_resource;
