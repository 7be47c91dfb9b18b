//! Byte layouts of the embedded store's records: a key's state at one revision, the list of
//! keys a revision changed, and a lease.
//!
//! Hand-rolled fixed layouts (big-endian integers, then the raw value bytes) rather than JSON:
//! values are arbitrary bytes that JSON would have to escape, every write stores a record twice
//! (current state and history), and a fixed header decodes without allocation beyond the value.
//! Every decoder checks lengths and tags and reports a corrupt record as
//! [`StoreError::Backend`], never panics.

use crate::error::{Result, StoreError};
use crate::kv::{KeyValue, LeaseId, Revision};

/// Tag of a live record (the key exists with a value).
const LIVE: u8 = 0;
/// Tag of a tombstone (the key was deleted at this revision).
const TOMBSTONE: u8 = 1;
/// Bytes before the value in a live record: tag, mod, create, version, lease.
const LIVE_HEADER: usize = 1 + 4 * 8;
/// Bytes of a tombstone: tag and mod revision.
const TOMBSTONE_LEN: usize = 1 + 8;
/// Bytes of a lease record: TTL and deadline.
const LEASE_LEN: usize = 2 * 8;

/// One incarnation of a key at one revision, as stored in the `current` and `history` tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    /// Revision of the write that produced this state.
    pub mod_revision: Revision,
    /// Revision of the put that created this incarnation.
    pub create_revision: Revision,
    /// Writes since creation (1 after the create).
    pub version: i64,
    /// The lease the key is attached to.
    pub lease: Option<LeaseId>,
    /// The value.
    pub value: Vec<u8>,
}

/// A key's state at one revision in the history: a value, or a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stored {
    /// The key held this record.
    Live(Record),
    /// The key was deleted at this revision.
    Tombstone {
        /// The revision of the delete.
        mod_revision: Revision,
    },
}

/// A lease as stored: its TTL and when it ends unless kept alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LeaseRecord {
    /// The granted TTL in seconds (what keep-alive returns).
    pub ttl_seconds: i64,
    /// Wall-clock deadline in unix milliseconds: the lease expires once this has passed.
    pub deadline_ms: i64,
}

impl Record {
    /// Encodes a live record: `[0][mod][create][version][lease or 0][value…]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(LIVE_HEADER + self.value.len());
        bytes.push(LIVE);
        bytes.extend_from_slice(&self.mod_revision.to_be_bytes());
        bytes.extend_from_slice(&self.create_revision.to_be_bytes());
        bytes.extend_from_slice(&self.version.to_be_bytes());
        bytes.extend_from_slice(&self.lease.map_or(0, |lease| lease.0).to_be_bytes());
        bytes.extend_from_slice(&self.value);
        bytes
    }

    /// Decodes a record that must be live (the `current` table holds no tombstones).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        match Stored::decode(bytes)? {
            Stored::Live(record) => Ok(record),
            Stored::Tombstone { mod_revision } => Err(corrupt(format!(
                "a tombstone (revision {mod_revision}) where a live record belongs"
            ))),
        }
    }

    /// This record as the public `KeyValue` of `key`.
    pub fn into_key_value(self, key: String) -> KeyValue {
        KeyValue {
            key,
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        }
    }
}

impl Stored {
    /// Encodes a tombstone: `[1][mod]`.
    pub fn encode_tombstone(mod_revision: Revision) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(TOMBSTONE_LEN);
        bytes.push(TOMBSTONE);
        bytes.extend_from_slice(&mod_revision.to_be_bytes());
        bytes
    }

    /// Decodes a history entry.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        match bytes.first() {
            Some(&LIVE) if bytes.len() >= LIVE_HEADER => {
                let lease = read_i64(bytes, 25)?;
                Ok(Stored::Live(Record {
                    mod_revision: read_i64(bytes, 1)?,
                    create_revision: read_i64(bytes, 9)?,
                    version: read_i64(bytes, 17)?,
                    lease: (lease != 0).then_some(LeaseId(lease)),
                    value: bytes[LIVE_HEADER..].to_vec(),
                }))
            }
            Some(&TOMBSTONE) if bytes.len() == TOMBSTONE_LEN => Ok(Stored::Tombstone {
                mod_revision: read_i64(bytes, 1)?,
            }),
            _ => Err(corrupt(format!(
                "a record of {} bytes with tag {:?}",
                bytes.len(),
                bytes.first()
            ))),
        }
    }
}

impl LeaseRecord {
    /// Encodes a lease: `[ttl][deadline]`.
    pub fn encode(&self) -> [u8; LEASE_LEN] {
        let mut bytes = [0u8; LEASE_LEN];
        bytes[..8].copy_from_slice(&self.ttl_seconds.to_be_bytes());
        bytes[8..].copy_from_slice(&self.deadline_ms.to_be_bytes());
        bytes
    }

    /// Decodes a lease.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != LEASE_LEN {
            return Err(corrupt(format!("a lease record of {} bytes", bytes.len())));
        }
        Ok(Self {
            ttl_seconds: read_i64(bytes, 0)?,
            deadline_ms: read_i64(bytes, 8)?,
        })
    }
}

/// Encodes the keys one revision changed, in operation order: `[count u32]([len u32][key])*`.
pub(super) fn encode_keys<'a>(keys: impl ExactSizeIterator<Item = &'a str>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(4 + keys.len() * 32);
    bytes.extend_from_slice(&len_u32(keys.len()).to_be_bytes());
    for key in keys {
        bytes.extend_from_slice(&len_u32(key.len()).to_be_bytes());
        bytes.extend_from_slice(key.as_bytes());
    }
    bytes
}

/// Decodes the keys of one revision (see [`encode_keys`]).
pub(super) fn decode_keys(bytes: &[u8]) -> Result<Vec<String>> {
    let count = read_u32(bytes, 0)?;
    let mut keys = Vec::with_capacity(count.min(1024));
    let mut offset = 4;
    for _ in 0..count {
        let len = read_u32(bytes, offset)?;
        offset += 4;
        let end = offset
            .checked_add(len)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| corrupt("a truncated key list".to_owned()))?;
        keys.push(key_string(&bytes[offset..end])?);
        offset = end;
    }
    if offset != bytes.len() {
        return Err(corrupt("trailing bytes after a key list".to_owned()));
    }
    Ok(keys)
}

/// A stored key's bytes as a `String` (keys are validated UTF-8 before they are written).
pub(super) fn key_string(bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| corrupt("a key that is not UTF-8".to_owned()))
}

/// A revision as a table key (revisions are never negative).
pub(super) fn rev_key(revision: Revision) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

fn read_i64(bytes: &[u8], offset: usize) -> Result<i64> {
    bytes
        .get(offset..offset + 8)
        .and_then(|slice| <[u8; 8]>::try_from(slice).ok())
        .map(i64::from_be_bytes)
        .ok_or_else(|| corrupt(format!("a truncated integer at byte {offset}")))
}

fn read_u32(bytes: &[u8], offset: usize) -> Result<usize> {
    bytes
        .get(offset..offset + 4)
        .and_then(|slice| <[u8; 4]>::try_from(slice).ok())
        .map(|raw| u32::from_be_bytes(raw) as usize)
        .ok_or_else(|| corrupt(format!("a truncated length at byte {offset}")))
}

fn len_u32(len: usize) -> u32 {
    // Keys are at most 4 KiB and a revision has at most a lease's worth of keys.
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn corrupt(what: String) -> StoreError {
    StoreError::Backend(format!("embedded store is corrupt: found {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(lease: Option<LeaseId>, value: &[u8]) -> Record {
        Record {
            mod_revision: 7,
            create_revision: 3,
            version: 4,
            lease,
            value: value.to_vec(),
        }
    }

    #[test]
    fn records_round_trip() {
        for record in [
            record(None, b""),
            record(Some(LeaseId(12)), b"value"),
            record(None, &[0, 255, 1, 0]),
        ] {
            let bytes = record.encode();
            assert_eq!(Record::decode(&bytes).ok(), Some(record.clone()));
            assert_eq!(Stored::decode(&bytes).ok(), Some(Stored::Live(record)));
        }
        let tombstone = Stored::encode_tombstone(9);
        assert_eq!(
            Stored::decode(&tombstone).ok(),
            Some(Stored::Tombstone { mod_revision: 9 })
        );
        assert!(
            Record::decode(&tombstone).is_err(),
            "current holds no tombstones"
        );
    }

    #[test]
    fn corrupt_records_are_errors() {
        for bytes in [&b""[..], &[0, 1, 2], &[1, 0, 0], &[2; 40], &[1; 10]] {
            assert!(
                matches!(Stored::decode(bytes), Err(StoreError::Backend(_))),
                "{bytes:?}"
            );
        }
        assert!(LeaseRecord::decode(&[0; 15]).is_err());
    }

    #[test]
    fn key_lists_round_trip() {
        let keys = ["/a", "/registry/apps/default/web", "/ü/名前"];
        let bytes = encode_keys(keys.iter().copied());
        assert_eq!(
            decode_keys(&bytes).ok(),
            Some(keys.map(String::from).to_vec())
        );
        assert_eq!(decode_keys(&encode_keys([].into_iter())).ok(), Some(vec![]));
        assert!(decode_keys(&bytes[..bytes.len() - 1]).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_keys(&trailing).is_err());
        assert!(
            decode_keys(&[0, 0, 0, 1, 0, 0, 0, 1, 0xff]).is_err(),
            "not UTF-8"
        );
    }

    #[test]
    fn leases_round_trip() {
        let lease = LeaseRecord {
            ttl_seconds: 30,
            deadline_ms: 1_700_000_000_123,
        };
        assert_eq!(LeaseRecord::decode(&lease.encode()).ok(), Some(lease));
    }
}
