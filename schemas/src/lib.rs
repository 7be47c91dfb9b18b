//! Pacer's API objects (`pacer.dev/v1`): App, AppVersion, Instance, Node, Deployment, Offer,
//! Event and Lease, with Kubernetes-style metadata, `Status`, `Scale` and lists; Marathon's
//! defaults; validation with Kubernetes field paths; strict decoding; the one mapping between
//! Marathon ids and namespaced names; and JSON Schemas generated from the types. Pure data:
//! this crate depends on no crate of ours and does no IO.
//!
//! The API server is generic over [`Resource`]: for a decoded object it calls
//! [`Resource::apply_defaults`], then [`Resource::validate`] (or
//! [`Resource::validate_update`]), and answers failures with [`Status::invalid`] or
//! [`Status::from_decode_error`].

pub mod app;
pub mod app_version;
pub mod capacity;
pub mod condition;
pub mod constraint;
pub mod container;
pub mod decode;
pub mod defaults;
pub mod dependency;
pub mod deployment;
pub mod env;
pub mod event;
pub mod field_error;
pub mod framework;
pub mod health;
pub mod instance;
pub mod lease;
pub mod list;
pub mod marathon_id;
pub mod meta;
pub mod names;
pub mod networking;
pub mod node;
mod number;
pub mod offer;
pub mod resource;
pub mod scale;
pub mod schema;
pub mod selector;
pub mod status;
pub mod time;
pub mod validation;
mod wire_enum;

pub use app::{App, AppSpec, AppStatus};
pub use app_version::AppVersion;
pub use decode::{DecodeError, decode_strict};
pub use deployment::Deployment;
pub use event::Event;
pub use field_error::{FieldError, FieldErrorKind, FieldPath};
pub use instance::Instance;
pub use lease::{Lease, LeaseFence, LeaseSpec};
pub use list::List;
pub use marathon_id::{MarathonId, MarathonIdError, NamespacedName};
pub use meta::{ListMeta, ObjectMeta};
pub use node::Node;
pub use offer::Offer;
pub use resource::{HasSpec, HasStatus, Resource};
pub use scale::Scale;
pub use status::Status;
pub use time::Time;

/// The API group of every Pacer object.
pub const GROUP: &str = "pacer.dev";
/// The served version.
pub const VERSION: &str = "v1";
/// `apiVersion` as it appears in manifests.
pub const API_VERSION: &str = "pacer.dev/v1";
