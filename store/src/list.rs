//! Paginated, consistent listing: a list reads every page at the revision of its first page,
//! and the opaque `continue` token carries that revision and where to resume.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::kv::{KeyValue, Revision};

/// How to list a prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// At most this many keys in the page; `0` means no limit.
    pub limit: usize,
    /// A token from a previous page of the same prefix: resume after its last key, at its
    /// revision.
    pub continue_token: Option<String>,
    /// Read at this revision instead of the current one (ignored when a token is given).
    /// A compacted revision gives [`StoreError::Expired`].
    pub revision: Option<Revision>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Keys in ascending byte order.
    pub items: Vec<KeyValue>,
    /// The revision every page of this list is read at.
    pub revision: Revision,
    /// Set when more keys follow: pass it back to get the next page.
    pub continue_token: Option<String>,
}

/// The decoded content of a `continue` token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinueToken {
    /// The revision the list is read at.
    #[serde(rename = "r")]
    pub revision: Revision,
    /// The first key of the next page (inclusive).
    #[serde(rename = "k")]
    pub next_key: String,
}

impl ContinueToken {
    /// The token for a page that ended at `last_key`: the next page starts at the key right
    /// after it (`last_key` followed by a NUL byte sorts just after it).
    #[must_use]
    pub fn after(revision: Revision, last_key: &str) -> Self {
        Self {
            revision,
            next_key: format!("{last_key}\0"),
        }
    }

    /// Encodes the token as opaque URL-safe text.
    #[must_use]
    pub fn encode(&self) -> String {
        // Serializing a struct of an integer and a string cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a token and checks that it belongs to a list of `prefix`.
    pub fn decode(token: &str, prefix: &str) -> Result<Self> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| StoreError::InvalidContinue("not a token this store issued"))?;
        let decoded: Self = serde_json::from_slice(&bytes)
            .map_err(|_| StoreError::InvalidContinue("not a token this store issued"))?;
        if !decoded.next_key.starts_with(prefix) {
            return Err(StoreError::InvalidContinue("token is for another prefix"));
        }
        if decoded.revision <= 0 {
            return Err(StoreError::InvalidContinue("token has no revision"));
        }
        Ok(decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_prefix_check() {
        let token = ContinueToken::after(42, "/registry/apps/default/web");
        let text = token.encode();
        assert_eq!(
            ContinueToken::decode(&text, "/registry/apps/").ok(),
            Some(token)
        );
        assert!(ContinueToken::decode(&text, "/registry/nodes/").is_err());
        assert!(ContinueToken::decode("garbage!", "/").is_err());
    }
}
