//! Key and value validation shared by every backend, so that bad input fails the same way
//! on etcd and on the embedded store, before anything is written.

use crate::error::{Result, StoreError};

/// Largest value accepted, in bytes: etcd's default `--max-request-bytes` (1.5 MiB).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// Largest transaction accepted, in bytes of keys and values together: one value of the
/// largest size plus room for keys. etcd servers must run with `--max-request-bytes` of at
/// least 2 MiB to accept it with protobuf overhead (our test servers do).
pub const MAX_TXN_BYTES: usize = MAX_VALUE_BYTES + 64 * 1024;

/// Most operations in one transaction (compares and writes together): etcd's `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;

/// Checks a key: non-empty, starts with `/`, at most [`MAX_KEY_BYTES`], no control characters,
/// no empty segment (`//`), and not ending with `/` (that shape is reserved for prefixes).
pub fn validate_key(key: &str) -> Result<()> {
    validate_shape(key)?;
    if key.ends_with('/') {
        return Err(invalid(key, "a key must not end with '/'"));
    }
    Ok(())
}

/// Checks a prefix for list and watch: like a key, but it may end with `/`, and `/` alone
/// (everything) is allowed.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix == "/" {
        return Ok(());
    }
    validate_shape(prefix)?;
    validate_shape(prefix.strip_suffix('/').unwrap_or(prefix))
}

/// Checks a value's size against [`MAX_VALUE_BYTES`].
pub fn validate_value(key: &str, value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::ValueTooLarge {
            key: key.to_owned(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// The exclusive end of the key range that starts with `prefix` (etcd's `prefix_end`).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (cannot happen for a valid UTF-8 prefix): the range runs to the end.
    vec![0]
}

fn validate_shape(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(invalid(key, "a key must not be empty"));
    }
    if !key.starts_with('/') {
        return Err(invalid(key, "a key must start with '/'"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid(key, "a key must be at most 4096 bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err(invalid(key, "a key must not contain control characters"));
    }
    if key.contains("//") {
        return Err(invalid(
            key,
            "a key must not contain an empty segment ('//')",
        ));
    }
    Ok(())
}

fn invalid(key: &str, reason: &'static str) -> StoreError {
    StoreError::InvalidKey {
        key: key.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_key(key: &str, ok: bool) {
        assert_eq!(validate_key(key).is_ok(), ok, "key {key:?}");
    }

    #[test]
    fn keys() {
        for (key, ok) in [
            ("/registry/apps/default/web", true),
            ("/a", true),
            ("", false),
            ("registry/apps", false),
            ("/registry//apps", false),
            ("/registry/apps/", false),
            ("/bad\nkey", false),
            ("/bad\0key", false),
        ] {
            check_key(key, ok);
        }
        check_key(&format!("/{}", "x".repeat(MAX_KEY_BYTES)), false);
    }

    #[test]
    fn prefixes() {
        assert!(validate_prefix("/").is_ok());
        assert!(validate_prefix("/registry/apps/").is_ok());
        assert!(validate_prefix("/registry/apps").is_ok());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix("//").is_err());
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end("/"), b"0".to_vec());
    }

    #[test]
    fn value_limit() {
        assert!(validate_value("/k", &vec![0; MAX_VALUE_BYTES]).is_ok());
        assert!(matches!(
            validate_value("/k", &vec![0; MAX_VALUE_BYTES + 1]),
            Err(StoreError::ValueTooLarge { .. })
        ));
    }
}
