//! The store's typed errors: every backend maps its failures onto these, so callers (the API
//! server, controllers) can tell a conflict from an outage without knowing the backend.

use crate::{LeaseId, Revision};

/// Why a store operation failed.
///
/// Validation errors (`InvalidKey`, `ValueTooLarge`, `TooManyOperations`, `InvalidTxn`,
/// `InvalidContinue`) are detected before anything is sent or written. `Conflict`,
/// `AlreadyExists` and `NotFound` come from a failed compare: nothing was written.
/// `Unavailable` is retriable; `Backend` is not (it means a local I/O or corruption problem).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A create found the key already present.
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The key that exists.
        key: String,
    },
    /// An update or delete found no such key.
    #[error("key {key:?} not found")]
    NotFound {
        /// The missing key.
        key: String,
    },
    /// A compare-and-swap saw another revision than the one expected; nothing was written.
    #[error("conflict on key {key:?}: expected revision {expected}, found {actual}")]
    Conflict {
        /// The contended key.
        key: String,
        /// The revision the caller expected (`0` = absent).
        expected: Revision,
        /// The key's current `mod_revision` (`0` = absent).
        actual: Revision,
    },
    /// The requested revision has been compacted away (reads below the compacted revision,
    /// watches from below it): relist and watch from the new revision.
    #[error("revision {requested} has been compacted (compacted up to {compacted})")]
    Expired {
        /// The revision the caller asked for.
        requested: Revision,
        /// The store's compacted revision: the state at it can still be read, history below it
        /// is gone, and watches must start at or after it.
        compacted: Revision,
    },
    /// A revision in the future was asked for.
    #[error("revision {requested} is newer than the store's current revision {current}")]
    FutureRevision {
        /// The revision the caller asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// The lease does not exist (never granted, revoked, or expired).
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    /// A lease TTL outside the accepted range.
    #[error("invalid lease TTL {ttl_seconds}s: {reason}")]
    InvalidLeaseTtl {
        /// The requested TTL.
        ttl_seconds: i64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key that is empty or malformed.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The offending key (lossy if it was not UTF-8).
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value over the store's size limit (etcd's default request limit, 1.5 MiB).
    #[error("value for key {key:?} is {size} bytes, over the limit of {limit} bytes")]
    ValueTooLarge {
        /// The key being written.
        key: String,
        /// The value's size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A transaction as a whole is over the request size limit.
    #[error("transaction is {size} bytes, over the limit of {limit} bytes")]
    TxnTooLarge {
        /// Total bytes of keys and values in the transaction.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A transaction with more operations than the store allows (etcd: 128).
    #[error("transaction has {count} operations, over the limit of {limit}")]
    TooManyOperations {
        /// Number of operations (compares and writes counted separately, as etcd does).
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A transaction that is malformed (for example it writes one key twice).
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),
    /// A `continue` token that this store did not issue, or issued for another prefix.
    #[error("invalid continue token: {0}")]
    InvalidContinue(&'static str),
    /// The backend could not be reached; retry with backoff.
    #[error("store unavailable at {endpoint}: {message}")]
    Unavailable {
        /// Which endpoint (or endpoints) failed.
        endpoint: String,
        /// The underlying failure.
        message: String,
    },
    /// The backend's configuration is wrong (a malformed URL, unreadable TLS files, no
    /// endpoints); fix the configuration, retrying will not help.
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    /// A local failure of the backend (I/O, corruption, a closed database).
    #[error("store backend failed: {0}")]
    Backend(String),
    /// The store was closed (its owner shut it down).
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    /// Whether retrying the same call later can succeed without the caller changing anything.
    #[must_use]
    pub fn is_retriable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// Result with [`StoreError`] as its default error.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
