//! Pacer's API server: the Kubernetes-style REST and watch API under `/apis/pacer.dev/v1`,
//! discovery and OpenAPI, with an authentication seam in front of the store.
//!
//! Entry points: [`router`] builds the whole axum [`Router`](axum::Router) (tests drive it with
//! `tower::ServiceExt::oneshot`, no socket), [`serve`] runs it on a listener until a shutdown
//! signal. Both take an [`ApiState`]: the store (`Arc<dyn Store>`) and an [`ApiConfig`].
//!
//! How a request flows: `server` (tracing span, body limit, auth seam) → `rest` (resolve the
//! kind from the URL through the `kinds` registry, parse query `params` and the `body`) →
//! a verb handler (`rest::read`, `rest::write`, `rest::delete`, `rest::scale`, `watch`) →
//! the store. Every failure is an [`ApiError`], turned into a Kubernetes `Status` in one place.
//!
//! Storage layout: `/registry/<plural>/<namespace>/<name>` (cluster-scoped kinds:
//! `/registry/<plural>/<name>`); values are the object's JSON without `resourceVersion`, which
//! is always filled from the key's `mod_revision` on the way out.
//!
//! Handlers are type-erased: objects travel as JSON (`serde_json::Value`), and each kind
//! contributes only a small table of function pointers (decode strictly, default, validate,
//! scale) instantiated once per kind — see `kinds`. This keeps one copy of the handler code
//! instead of one per kind.

pub mod auth;
pub mod body;
pub mod dependency_admission;
pub mod deployment_lock;
pub mod discovery;
pub mod error;
pub mod fence;
pub mod instance_log;
pub mod kinds;
pub mod managed;
pub mod marathon;
pub mod metrics;
pub mod object;
pub mod openapi;
pub mod params;
pub mod raw_json;
pub mod rest;
pub mod selector;
pub mod server;
pub mod state;
pub mod table;
pub mod watch;

pub use error::ApiError;
pub use server::{ServeError, router, serve};
pub use state::{ApiConfig, ApiState};
