//! Validation: checks an object and returns every error at once, each with its
//! Kubernetes-style field path, kind and message (see `field_error.rs`), so the API server can
//! answer 422 with one `Status` cause per problem.
//!
//! The App rules are Marathon's (ranges, exclusive fields, constraint values, port and
//! dependency references) plus Kubernetes' name rules; [`validate`] expects an App after
//! [`crate::defaults::apply_defaults`] but also accepts one without defaults. Cross-object rules
//! (dependency cycles, port clashes between apps) belong to the API server; see
//! `dependency.rs` for the pure cycle finder it uses.

mod app;
mod kinds;
mod meta;
mod networking;
mod probes;

pub use app::{validate, validate_app_spec, validate_app_update};
pub use kinds::{
    validate_deployment, validate_deployment_update, validate_event, validate_event_update,
    validate_instance, validate_instance_update, validate_node, validate_node_update,
    validate_offer, validate_offer_update,
};
pub use meta::{validate_object_meta, validate_type_meta};

use crate::field_error::{Errors, FieldError, FieldPath};

/// Adds an `Invalid` error unless `min <= value` (when `value` is set).
fn at_least<T>(errors: &mut Errors, path: &FieldPath, value: Option<T>, min: T)
where
    T: PartialOrd + Copy + std::fmt::Display + Into<serde_json::Value>,
{
    if let Some(value) = value
        && value
            .partial_cmp(&min)
            .is_none_or(std::cmp::Ordering::is_lt)
    {
        errors.push(FieldError::invalid(
            path,
            value,
            format!("must be greater than or equal to {min}"),
        ));
    }
}

/// Adds an `Invalid` error unless `min <= value <= max` (when `value` is set).
fn between<T>(errors: &mut Errors, path: &FieldPath, value: Option<T>, min: T, max: T)
where
    T: PartialOrd + Copy + std::fmt::Display + Into<serde_json::Value>,
{
    if let Some(value) = value
        && !(value
            .partial_cmp(&min)
            .is_some_and(std::cmp::Ordering::is_ge)
            && value
                .partial_cmp(&max)
                .is_some_and(std::cmp::Ordering::is_le))
    {
        errors.push(FieldError::invalid(
            path,
            value,
            format!("must be between {min} and {max}, inclusive"),
        ));
    }
}

/// Adds a `NotSupported` error for a value of a `wire_enum!` enum this version does not know.
fn known(errors: &mut Errors, path: &FieldPath, value: &str, is_known: bool, supported: &[&str]) {
    if !is_known {
        errors.push(FieldError::not_supported(path, value, supported));
    }
}

/// Adds a `Duplicate` error for every repeated value, at the repeat's index.
fn unique<'a>(
    errors: &mut Errors,
    path: &FieldPath,
    values: impl IntoIterator<Item = (usize, &'a str)>,
    field: Option<&str>,
) {
    let mut seen = std::collections::HashSet::new();
    for (index, value) in values {
        if !seen.insert(value) {
            let item = path.index(index);
            let item = match field {
                Some(field) => item.child(field),
                None => item,
            };
            errors.push(FieldError::duplicate(&item, value));
        }
    }
}

/// Port numbers: 0..=65535.
fn port_number(errors: &mut Errors, path: &FieldPath, port: Option<i32>) {
    between(errors, path, port, 0, 65535);
}
