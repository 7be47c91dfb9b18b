//! Rules for `metadata` and `apiVersion`/`kind`, shared by every kind (Kubernetes'
//! `ValidateObjectMeta`, reduced to what Pacer stores).

use crate::field_error::{Errors, FieldError, FieldPath};
use crate::meta::ObjectMeta;
use crate::names::{
    check_dns1123_label, check_dns1123_subdomain, check_label_value, check_qualified_name,
};
use crate::resource::Resource;

/// Largest total size of all annotations (keys and values), as Kubernetes allows.
pub const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// Checks `apiVersion` and `kind`: each may be empty (the server fills them) or must be this
/// kind's.
pub fn validate_type_meta<K: Resource>(object: &K) -> Vec<FieldError> {
    let (api_version, kind) = object.type_meta();
    let mut errors = Vec::new();
    if !api_version.is_empty() && api_version != K::API_VERSION {
        errors.push(FieldError::not_supported(
            &FieldPath::new("apiVersion"),
            api_version,
            &[K::API_VERSION],
        ));
    }
    if !kind.is_empty() && kind != K::KIND {
        errors.push(FieldError::not_supported(
            &FieldPath::new("kind"),
            kind,
            &[K::KIND],
        ));
    }
    errors
}

/// Checks an object's `metadata`: a DNS-1123 subdomain name (or a `generateName`), a DNS-1123
/// label namespace for namespaced kinds and none for cluster-scoped ones, qualified label,
/// annotation and finalizer keys, label values, annotation size and owner references.
pub fn validate_object_meta(meta: &ObjectMeta, namespaced: bool) -> Vec<FieldError> {
    let mut errors = Errors::default();
    let path = FieldPath::new("metadata");
    let name_path = path.child("name");
    match meta.name.as_deref() {
        Some(name) if !name.is_empty() => {
            if let Err(message) = check_dns1123_subdomain(name) {
                errors.push(FieldError::invalid(&name_path, name, message));
            }
        }
        _ => match meta.generate_name.as_deref() {
            Some(prefix) if !prefix.is_empty() => {
                let masked = prefix.trim_end_matches('-');
                if let Err(message) = check_dns1123_subdomain(masked) {
                    errors.push(FieldError::invalid(
                        &path.child("generateName"),
                        prefix,
                        message,
                    ));
                }
            }
            _ => errors.push(FieldError::required(
                &name_path,
                "name or generateName is required",
            )),
        },
    }
    let namespace_path = path.child("namespace");
    match meta
        .namespace
        .as_deref()
        .filter(|namespace| !namespace.is_empty())
    {
        Some(namespace) if namespaced => {
            if let Err(message) = check_dns1123_label(namespace) {
                errors.push(FieldError::invalid(&namespace_path, namespace, message));
            }
        }
        Some(_) => errors.push(FieldError::forbidden(
            &namespace_path,
            "not allowed on this type",
        )),
        None => {}
    }
    for (key, value) in meta.labels.iter().flatten() {
        let labels = path.child("labels");
        if let Err(message) = check_qualified_name(key) {
            errors.push(FieldError::invalid(&labels, key.as_str(), message));
        }
        if let Err(message) = check_label_value(value) {
            errors.push(FieldError::invalid(&labels, value.as_str(), message));
        }
    }
    let annotations = path.child("annotations");
    let mut annotation_bytes = 0;
    for (key, value) in meta.annotations.iter().flatten() {
        annotation_bytes += key.len() + value.len();
        if let Err(message) = check_qualified_name(&key.to_ascii_lowercase()) {
            errors.push(FieldError::invalid(&annotations, key.as_str(), message));
        }
    }
    if annotation_bytes > ANNOTATIONS_MAX_BYTES {
        errors.push(FieldError::too_long(&annotations, ANNOTATIONS_MAX_BYTES));
    }
    let finalizers = path.child("finalizers");
    for (index, finalizer) in meta.finalizers.iter().flatten().enumerate() {
        if let Err(message) = check_qualified_name(finalizer) {
            errors.push(FieldError::invalid(
                &finalizers.index(index),
                finalizer.as_str(),
                message,
            ));
        }
    }
    super::unique(
        &mut errors,
        &finalizers,
        meta.finalizers
            .iter()
            .flatten()
            .map(String::as_str)
            .enumerate(),
        None,
    );
    let owners = path.child("ownerReferences");
    let mut controllers = 0;
    for (index, owner) in meta.owner_references.iter().flatten().enumerate() {
        let owner_path = owners.index(index);
        for (field, value) in [
            ("apiVersion", &owner.api_version),
            ("kind", &owner.kind),
            ("name", &owner.name),
            ("uid", &owner.uid),
        ] {
            if value.is_empty() {
                errors.push(FieldError::required(&owner_path.child(field), ""));
            }
        }
        if owner.controller == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        errors.push(FieldError::invalid(
            &owners,
            controllers,
            "only one reference can have controller set to true",
        ));
    }
    errors.into_vec()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::field_error::FieldErrorKind;
    use crate::meta::OwnerReference;

    #[track_caller]
    fn check(meta: ObjectMeta, namespaced: bool, expect: &[(&str, FieldErrorKind)]) {
        let got: Vec<_> = validate_object_meta(&meta, namespaced)
            .into_iter()
            .map(|error| (error.field, error.kind))
            .collect();
        let expect: Vec<_> = expect
            .iter()
            .map(|(field, kind)| ((*field).to_owned(), *kind))
            .collect();
        assert_eq!(got, expect, "{meta:?}");
    }

    #[test]
    fn names_and_namespaces() {
        use FieldErrorKind::*;
        check(ObjectMeta::named("prod", "shop.web"), true, &[]);
        check(
            ObjectMeta::named("prod", "Shop"),
            true,
            &[("metadata.name", Invalid)],
        );
        check(
            ObjectMeta::named("prod", "a".repeat(254)),
            true,
            &[("metadata.name", Invalid)],
        );
        check(
            ObjectMeta::named("pr.od", "web"),
            true,
            &[("metadata.namespace", Invalid)],
        );
        check(
            ObjectMeta::named("prod", "web"),
            false,
            &[("metadata.namespace", Forbidden)],
        );
        check(ObjectMeta::default(), false, &[("metadata.name", Required)]);
        check(
            ObjectMeta {
                generate_name: Some("web-".into()),
                ..ObjectMeta::default()
            },
            true,
            &[],
        );
        check(
            ObjectMeta {
                generate_name: Some("Web-".into()),
                ..ObjectMeta::default()
            },
            true,
            &[("metadata.generateName", Invalid)],
        );
    }

    #[test]
    fn labels_annotations_finalizers_owners() {
        use FieldErrorKind::*;
        let meta = ObjectMeta {
            labels: Some(BTreeMap::from([
                ("pacer.dev/app".into(), "web".into()),
                ("bad key".into(), "ok".into()),
                ("ok".into(), "bad value!".into()),
            ])),
            annotations: Some(BTreeMap::from([
                (
                    "kubectl.kubernetes.io/last-applied-configuration".into(),
                    "{}".into(),
                ),
                ("big".into(), "x".repeat(ANNOTATIONS_MAX_BYTES)),
            ])),
            finalizers: Some(vec!["pacer.dev/cleanup".into(), "pacer.dev/cleanup".into()]),
            owner_references: Some(vec![
                OwnerReference {
                    api_version: "pacer.dev/v1".into(),
                    kind: "App".into(),
                    name: "web".into(),
                    uid: "u1".into(),
                    controller: Some(true),
                    block_owner_deletion: None,
                },
                OwnerReference {
                    controller: Some(true),
                    ..OwnerReference::default()
                },
            ]),
            ..ObjectMeta::named("prod", "web")
        };
        check(
            meta,
            true,
            &[
                ("metadata.labels", Invalid),
                ("metadata.labels", Invalid),
                ("metadata.annotations", TooLong),
                ("metadata.finalizers[1]", Duplicate),
                ("metadata.ownerReferences[1].apiVersion", Required),
                ("metadata.ownerReferences[1].kind", Required),
                ("metadata.ownerReferences[1].name", Required),
                ("metadata.ownerReferences[1].uid", Required),
                ("metadata.ownerReferences", Invalid),
            ],
        );
    }
}
