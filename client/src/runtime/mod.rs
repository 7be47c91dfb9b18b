//! The watcher/reflector/controller runtime, in kube-runtime's shape, shared by Pacer's own
//! controllers (fed by the store) and users' controllers (fed by the HTTP API).
//!
//! Each module is one stage, usable on its own:
//!
//! - [`source`]: the [`Source`] trait a watcher reads (list at a revision, watch after it);
//!   [`Api`](crate::Api) implements it over HTTP, `pacer-controllers` over the store.
//! - [`watcher`](mod@watcher): list, then watch, resuming after disconnects and relisting on expiry, as a
//!   stream of [`watcher::Event`]s.
//! - [`reflector`](mod@reflector): an in-memory cache ([`Store`]) with indexes, fed by a watcher.
//! - [`scheduler`]: a deduplicating delay queue.
//! - [`controller`]: the [`Controller`] that ties them together and runs reconcilers.
//! - [`backoff`]: the exponential backoff with jitter they retry with.
//! - [`leader`]: the [`LeaderElector`] — leader election on a `Lease` with fenced writes, so
//!   a controller runs on one replica at a time.
//!
//! Start with [`Controller`]; `client/examples/label_defaulter.rs` is a complete controller to
//! copy.

pub mod backoff;
pub mod controller;
mod http;
pub mod leader;
pub mod reflector;
pub mod scheduler;
pub mod source;
pub mod watcher;

pub use backoff::BackoffConfig;
pub use controller::{Action, Config as ControllerConfig, Controller, Metrics, MetricsSnapshot};
pub use http::ApiSource;
pub use leader::{ElectionConfig, ElectionError, LeaderElector, LeaderState, Leadership};
pub use reflector::{ObjectRef, Store, Writer, reflector};
pub use source::{Source, SourceError, SourceEvent, SourceList};
pub use watcher::{Event, watcher};
