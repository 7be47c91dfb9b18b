//! Pacer's client: a typed HTTP client for the Kubernetes-style API
//! (`/apis/pacer.dev/v1/[namespaces/{ns}/]{plural}[/{name}]`), with an untyped variant keyed by
//! plural for generic tools, label selectors, and watch streams. The watcher/reflector/
//! controller runtime joins it later (issue 5).
//!
//! This crate depends on no server crate, only on `pacer-schemas` and general crates, so that
//! users' controllers pull in no server code.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pacer_client::Error> {
//! use pacer_client::{Api, Client, Config, ListParams};
//! use pacer_schemas::App;
//!
//! let client = Client::new(Config::new("http://127.0.0.1:8080"))?;
//! let apps: Api<App> = Api::namespaced(client, "default");
//! for app in apps.list(&ListParams::default().labels("team=shop")).await?.items {
//!     println!("{}", app.metadata.name_str());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! TLS uses rustls with the `ring` provider (installed on first use when no process-wide
//! default is set), so no C toolchain beyond what `ring` needs is required.

mod api;
mod client;
mod config;
mod dynamic;
mod error;
mod params;
mod resource;
pub mod runtime;
pub use pacer_schemas::selector;
mod watch;

pub use api::Api;
pub use client::Client;
pub use config::{Config, DEFAULT_NAMESPACE, DEFAULT_SERVER};
pub use dynamic::DynamicApi;
pub use error::{Error, Result};
pub use params::{
    DeleteParams, Deleted, ListParams, PatchParams, PostParams, Preconditions, PropagationPolicy,
    WatchParams,
};
pub use resource::{KNOWN_RESOURCES, ResourceInfo};
pub use selector::{LabelSelector, SelectorError};
pub use watch::{Bookmark, BookmarkMeta, WatchEvent};
