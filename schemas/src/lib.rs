//! Pacer's API objects (`pacer.dev/v1`): App, Instance, Node, Deployment, Offer, Event and the
//! RBAC kinds, with defaulting and validation. Pure data: this crate depends on no crate of
//! ours and does no IO.
//!
//! The object types arrive with the API server (issue 4); until then the crate holds only the
//! API group identity that every other crate agrees on.

/// The API group of every Pacer object.
pub const GROUP: &str = "pacer.dev";
/// The served version.
pub const VERSION: &str = "v1";
/// `apiVersion` as it appears in manifests.
pub const API_VERSION: &str = "pacer.dev/v1";
