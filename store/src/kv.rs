//! The values the store hands out: revisions, lease ids, key-values and watch events.

use std::fmt;
use std::pin::Pin;

use futures::Stream;

use crate::error::Result;

/// A store revision: a counter bumped by every write transaction that changes something
/// (etcd's `revision`). `0` stands for "no revision" (an absent key, or "from the start").
pub type Revision = i64;

/// A lease's id, as the backend assigned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// One key with its value and the revisions that describe its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value's bytes (empty in a delete event).
    pub value: Vec<u8>,
    /// Revision of the write that created the key (the current incarnation of it).
    pub create_revision: Revision,
    /// Revision of the last write to the key; in a delete event, the revision of the delete.
    pub mod_revision: Revision,
    /// Number of writes since the key was created (1 after create; 0 in a delete event).
    pub version: i64,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// What a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted (explicitly, or because its lease ended).
    Delete,
}

/// One change, as a watch delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change; for a delete, the key with an empty value and the delete's
    /// revision as `mod_revision`.
    pub kv: KeyValue,
    /// The key before the change, when it existed (always present on deletes).
    pub prev_kv: Option<KeyValue>,
}

impl WatchEvent {
    /// The revision at which this change happened.
    #[must_use]
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A stream of watch events in revision order (and, within one revision, in the order of the
/// transaction's operations). It ends only if the store closes it with an error, such as
/// [`crate::StoreError::Expired`] when the watcher fell behind a compaction.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;
