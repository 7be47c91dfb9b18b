//! Kubernetes-style object metadata (`metadata` of every object, `metadata` of lists) and
//! references between objects.
//!
//! The shapes and JSON names follow `k8s.io/apimachinery/pkg/apis/meta/v1` so that kubectl,
//! kube-rs and GitOps tools read and write them unchanged: `resourceVersion` is an opaque
//! string (the store revision), `managedFields` has `ManagedFieldsEntry`'s shape. Every field is
//! optional on the wire; the API server fills `uid`, `resourceVersion`, `generation` and
//! `creationTimestamp`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::time::Time;

/// Metadata that every persisted object has: identity, labels and annotations, and the fields
/// the API server maintains (`uid`, `resourceVersion`, `generation`, timestamps).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Name, unique within the namespace (or cluster, for cluster-scoped kinds). A DNS-1123
    /// subdomain: lower-case alphanumerics, '-' and '.', at most 253 characters. Marathon group
    /// paths below the namespace become dotted names: `/prod/shop/web` is `shop.web` in `prod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Prefix from which the server generates a unique name when `name` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    /// Namespace (a DNS-1123 label); the first segment of a Marathon id, `default` for
    /// top-level Marathon ids. Empty for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels for selection (`-l`/`labelSelector`): qualified-name keys, values of at most 63
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Free-form annotations, stored verbatim (kubectl keeps
    /// `kubectl.kubernetes.io/last-applied-configuration` here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Unique id of this incarnation of the object, set by the server on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Opaque version of the object: the store revision of its last write. Sent back on update
    /// to make the write a compare-and-swap (409 Conflict when stale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Sequence number of the desired state, set by the server: 1 on create, +1 on every spec
    /// change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// When the object was created, set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Time>,
    /// When deletion was requested; the object goes away once its finalizers are empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<Time>,
    /// Seconds allowed for graceful deletion, set together with `deletionTimestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    /// Controllers that must finish clean-up before the object is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalizers: Option<Vec<String>>,
    /// Objects this one depends on; garbage collection deletes it when they are gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_references: Option<Vec<OwnerReference>>,
    /// Which field manager set which fields (server-side apply bookkeeping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_fields: Option<Vec<ManagedFieldsEntry>>,
}

/// A reference from an object to its owner, for garbage collection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    /// API version of the owner, e.g. `pacer.dev/v1`.
    pub api_version: String,
    /// Kind of the owner, e.g. `App`.
    pub kind: String,
    /// Name of the owner (same namespace as the dependent).
    pub name: String,
    /// UID of the owner; a re-created owner with the same name does not adopt dependents.
    pub uid: String,
    /// Whether the owner is the managing controller of this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    /// Whether foreground deletion of the owner waits for this dependent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

/// One field manager's record of the fields it owns (Kubernetes' `ManagedFieldsEntry`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFieldsEntry {
    /// Name of the manager (`kubectl`, `pacer`, a controller's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// `Apply` (server-side apply) or `Update` (any other write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// API version of the object the fields were set in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// When the manager last changed its fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// Format of `fieldsV1`; always `FieldsV1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields_type: Option<String>,
    /// The owned fields as a trie of `f:<name>` / `k:<key>` / `v:<value>` / `i:<index>` keys.
    #[serde(default, rename = "fieldsV1", skip_serializing_if = "Option::is_none")]
    pub fields_v1: Option<serde_json::Value>,
    /// Subresource the fields were written through (`status`, `scale`), empty for the main
    /// resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
}

/// Metadata of a list response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    /// Store revision the list was read at; watch from here to see every later change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Opaque token for the next page, absent on the last page.
    #[serde(default, rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
    /// How many items remain after this page, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_item_count: Option<i64>,
}

/// A reference to any object (Kubernetes' `ObjectReference`), e.g. an Event's subject.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// API version of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Namespace of the referent; empty for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// UID of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The referent's resourceVersion this reference was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// A part of the referent, e.g. `spec.healthChecks[0]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
}

impl ObjectMeta {
    /// Metadata with a name and namespace and nothing else.
    pub fn named(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Self::default()
        }
    }

    /// The name, or `""` when unset.
    pub fn name_str(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    /// The namespace, or `""` when unset.
    pub fn namespace_str(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }
}
