//! Transactions: a list of compares and a list of writes, applied atomically if every compare
//! holds. Create, update, delete and leader fencing are all built from this one primitive.

use std::collections::HashSet;

use crate::error::{Result, StoreError};
use crate::key::{MAX_TXN_BYTES, MAX_TXN_OPS, validate_key, validate_value};
use crate::kv::{LeaseId, Revision};

/// A condition on one key's current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key to check.
    pub key: String,
    /// What must hold.
    pub expect: Expect,
}

/// What a [`Compare`] requires of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key does not exist.
    Absent,
    /// The key exists.
    Present,
    /// The key's `mod_revision` equals this (`0` means absent).
    ModRevision(Revision),
    /// The key's `create_revision` equals this: the same incarnation of the key still exists.
    /// Leader fencing compares the leader key's create revision this way.
    CreateRevision(Revision),
}

/// One write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or overwrite `key`, attached to `lease` (or to no lease).
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
        /// The lease to attach the key to; `None` detaches it from any lease.
        lease: Option<LeaseId>,
    },
    /// Delete `key` (a no-op if it does not exist).
    Delete {
        /// The key.
        key: String,
    },
}

impl Op {
    /// The key this operation writes.
    #[must_use]
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// An atomic transaction: if all compares hold, all ops are applied at one new revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Txn {
    /// Conditions, all of which must hold.
    pub compares: Vec<Compare>,
    /// Writes applied when they do.
    pub ops: Vec<Op>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a condition.
    pub fn when(mut self, key: impl Into<String>, expect: Expect) -> Self {
        self.compares.push(Compare {
            key: key.into(),
            expect,
        });
        self
    }

    /// Adds a compare built elsewhere (for example a leader's fencing compare).
    pub fn when_compare(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }

    /// Adds a put without a lease.
    pub fn put(self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.put_with_lease(key, value, None)
    }

    /// Adds a put attached to `lease`.
    pub fn put_with_lease(
        mut self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        lease: Option<LeaseId>,
    ) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
            lease,
        });
        self
    }

    /// Adds a delete.
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }

    /// Checks the transaction before it is sent: valid keys, value sizes, at most
    /// [`MAX_TXN_OPS`] compares and ops, total size, no key written twice. Every backend calls
    /// this first, so bad transactions fail identically everywhere and write nothing.
    pub fn validate(&self) -> Result<()> {
        for (count, what) in [(self.compares.len(), "compares"), (self.ops.len(), "ops")] {
            if count > MAX_TXN_OPS {
                tracing::debug!(count, what, "transaction over the operation limit");
                return Err(StoreError::TooManyOperations {
                    count,
                    limit: MAX_TXN_OPS,
                });
            }
        }
        for compare in &self.compares {
            validate_key(&compare.key)?;
        }
        let mut written = HashSet::with_capacity(self.ops.len());
        let mut size = 0usize;
        for op in &self.ops {
            validate_key(op.key())?;
            if let Op::Put { key, value, .. } = op {
                validate_value(key, value)?;
                size += value.len();
            }
            size += op.key().len();
            if !written.insert(op.key()) {
                return Err(StoreError::InvalidTxn(format!(
                    "key {:?} is written more than once",
                    op.key()
                )));
            }
        }
        if size > MAX_TXN_BYTES {
            return Err(StoreError::TxnTooLarge {
                size,
                limit: MAX_TXN_BYTES,
            });
        }
        Ok(())
    }
}

/// A key's state as a failed transaction observed it (all revisions `0` when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The compared key.
    pub key: String,
    /// Its `mod_revision`, or `0` when absent.
    pub mod_revision: Revision,
    /// Its `create_revision`, or `0` when absent.
    pub create_revision: Revision,
}

impl Compare {
    /// Whether this compare holds for a key in the `observed` state.
    #[must_use]
    pub fn holds(&self, observed: &Observed) -> bool {
        match self.expect {
            Expect::Absent => observed.mod_revision == 0,
            Expect::Present => observed.mod_revision != 0,
            Expect::ModRevision(revision) => observed.mod_revision == revision,
            Expect::CreateRevision(revision) => observed.create_revision == revision,
        }
    }
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Every compare held and the ops were applied; `revision` is the store's revision after
    /// the transaction (unchanged if the ops changed nothing, e.g. deletes of absent keys).
    Committed {
        /// The store revision after the transaction.
        revision: Revision,
    },
    /// A compare did not hold; nothing was written. `observed` has one entry per compare, in
    /// order, with the key's state at that moment.
    CompareFailed {
        /// The store revision at which the compares were evaluated.
        revision: Revision,
        /// The compared keys' states, one per compare, in order.
        observed: Vec<Observed>,
    },
}

impl TxnOutcome {
    /// Whether the transaction was applied.
    #[must_use]
    pub fn committed(&self) -> bool {
        matches!(self, TxnOutcome::Committed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicate_keys_and_too_many_ops() {
        let txn = Txn::new().put("/a", "1").delete("/a");
        assert!(matches!(txn.validate(), Err(StoreError::InvalidTxn(_))));
        let mut txn = Txn::new();
        for index in 0..=MAX_TXN_OPS {
            txn = txn.put(format!("/k/{index}"), "v");
        }
        assert!(matches!(
            txn.validate(),
            Err(StoreError::TooManyOperations { count: 129, .. })
        ));
    }

    #[test]
    fn rejects_oversized_transactions() {
        let big = vec![0u8; MAX_TXN_BYTES / 2 + 1];
        let txn = Txn::new().put("/a", big.clone()).put("/b", big);
        assert!(matches!(
            txn.validate(),
            Err(StoreError::TxnTooLarge { .. })
        ));
    }

    #[test]
    fn compares() {
        let absent = Observed {
            key: "/a".into(),
            mod_revision: 0,
            create_revision: 0,
        };
        let present = Observed {
            key: "/a".into(),
            mod_revision: 7,
            create_revision: 3,
        };
        let compare = |expect| Compare {
            key: "/a".into(),
            expect,
        };
        assert!(compare(Expect::Absent).holds(&absent));
        assert!(!compare(Expect::Absent).holds(&present));
        assert!(compare(Expect::Present).holds(&present));
        assert!(compare(Expect::ModRevision(7)).holds(&present));
        assert!(compare(Expect::ModRevision(0)).holds(&absent));
        assert!(compare(Expect::CreateRevision(3)).holds(&present));
        assert!(!compare(Expect::CreateRevision(3)).holds(&absent));
    }
}
