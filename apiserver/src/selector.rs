//! Selectors of a list or watch request: the `labelSelector` (parsed by the one shared parser,
//! [`pacer_schemas::selector::LabelSelector`], and matched here against an object's
//! `metadata.labels`) and the `fieldSelector` on `metadata.name`, `metadata.namespace` and
//! `spec.nodeName` (Instances: what node agents watch; an absent field counts as empty, so
//! `spec.nodeName!=` selects bound instances) with `=`, `==`, `!=` (only the server evaluates
//! field selectors, so they live here).
//!
//! As in Kubernetes' etcd storage, selectors filter *after* paging: a `limit=N` page holds at
//! most N objects and may hold fewer (even none) while `continue` says more follow.

use std::collections::BTreeMap;

pub use pacer_schemas::selector::{LabelSelector, Requirement, SelectorError};
use serde_json::Value;

use crate::error::ApiError;

/// A parsed field selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldTerm {
    field: FieldName,
    value: String,
    equal: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldName {
    Name,
    Namespace,
    NodeName,
}

impl FieldSelector {
    /// Parses `metadata.name=web,metadata.namespace!=kube-system`.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for term in text
            .split(',')
            .map(str::trim)
            .filter(|term| !term.is_empty())
        {
            let (field, value, equal) = if let Some((field, value)) = term.split_once("!=") {
                (field, value, false)
            } else if let Some((field, value)) = term.split_once("==") {
                (field, value, true)
            } else if let Some((field, value)) = term.split_once('=') {
                (field, value, true)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid field selector: {term:?}: expected field=value or field!=value"
                )));
            };
            let field = match field.trim() {
                "metadata.name" => FieldName::Name,
                "metadata.namespace" => FieldName::Namespace,
                "spec.nodeName" => FieldName::NodeName,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "field label not supported: {other}"
                    )));
                }
            };
            terms.push(FieldTerm {
                field,
                value: value.trim().to_owned(),
                equal,
            });
        }
        Ok(Self { terms })
    }

    /// Whether the selector has no term.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The name this selector pins (`metadata.name=x`), if any.
    pub fn exact_name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|term| term.equal && term.field == FieldName::Name)
            .map(|term| term.value.as_str())
    }

    /// Whether the object matches every term.
    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|term| {
            let pointer = match term.field {
                FieldName::Name => "/metadata/name",
                FieldName::Namespace => "/metadata/namespace",
                FieldName::NodeName => "/spec/nodeName",
            };
            let actual = object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == term.value) == term.equal
        })
    }
}

/// Both selectors of a request.
#[derive(Clone, Debug, Default)]
pub struct Selectors {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

impl Selectors {
    /// Whether the object matches both.
    pub fn matches(&self, object: &Value) -> bool {
        labels_match(&self.labels, object) && self.fields.matches(object)
    }
}

/// Parses a `labelSelector` query value (400 when malformed).
pub fn parse_labels(text: &str) -> Result<LabelSelector, ApiError> {
    Ok(LabelSelector::parse(text)?)
}

/// Whether the object's `metadata.labels` satisfy `selector`.
pub fn labels_match(selector: &LabelSelector, object: &Value) -> bool {
    if selector.is_empty() {
        return true;
    }
    let labels: BTreeMap<String, String> = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    selector.matches(Some(&labels))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn labels_match_objects() {
        let object = json!({"metadata": {"name": "web", "labels": {"app": "web", "n": 1}}});
        let matches = |text: &str| labels_match(&parse_labels(text).unwrap(), &object);
        assert!(matches(""));
        assert!(matches("app=web"));
        assert!(matches("!n"), "non-string label values are not labels");
        assert!(!matches("app in (db)"));
        assert!(labels_match(
            &parse_labels("!app").unwrap(),
            &json!({"metadata": {}})
        ));
        let error = parse_labels("app in (").unwrap_err();
        assert!(matches!(error, ApiError::Selector(_)));
        assert_eq!(error.to_status().code, Some(400));
    }

    #[test]
    fn field_selectors() {
        let object = json!({"metadata": {"name": "web", "namespace": "prod"}});
        let matches = |text: &str| FieldSelector::parse(text).unwrap().matches(&object);
        assert!(matches("metadata.name=web"));
        assert!(matches("metadata.name==web,metadata.namespace=prod"));
        assert!(!matches("metadata.name!=web"));
        assert!(matches("metadata.namespace!=default"));
        assert!(matches(""));
        assert_eq!(
            FieldSelector::parse("metadata.name=web")
                .unwrap()
                .exact_name(),
            Some("web")
        );
        assert!(FieldSelector::parse("spec.instances=1").is_err());
        let bound = json!({"metadata": {"name": "web-1"}, "spec": {"nodeName": "node-1"}});
        let unbound = json!({"metadata": {"name": "web-2"}, "spec": {}});
        let on_node = FieldSelector::parse("spec.nodeName=node-1").unwrap();
        assert!(on_node.matches(&bound) && !on_node.matches(&unbound));
        let any_node = FieldSelector::parse("spec.nodeName!=").unwrap();
        assert!(any_node.matches(&bound) && !any_node.matches(&unbound));
        assert!(FieldSelector::parse("metadata.name").is_err());
    }
}
