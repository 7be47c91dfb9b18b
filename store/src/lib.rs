//! Pacer's store: keys, bytes, revisions and leases — never our object types.
//!
//! [`Store`] is etcd's model (revisions, compare-and-swap transactions, watch from a revision,
//! leases) as one trait with two backends: [`etcd::EtcdStore`] for clusters and
//! [`embedded::EmbeddedStore`], a durable in-process store for `pacer dev`. Everything else in
//! this crate (create/update/delete, leader election, lease keep-alive) is built on the trait,
//! so it behaves identically on both. `tests/conformance.rs` runs one suite against both.

pub mod election;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod key;
pub mod kv;
pub mod lease;
pub mod list;
pub mod store;
pub mod txn;

pub use election::{Election, FencingToken, Leadership};
pub use error::{Result, StoreError};
pub use kv::{EventKind, KeyValue, LeaseId, Revision, WatchEvent, WatchStream};
pub use lease::LeaseKeeper;
pub use list::{ListOptions, ListPage};
pub use store::Store;
pub use txn::{Compare, Expect, Observed, Op, Txn, TxnOutcome};
