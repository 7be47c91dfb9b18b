//! Name rules shared by Kubernetes and Marathon: DNS-1123 labels (namespaces, Marathon path
//! segments) and subdomains (object names), qualified names (label keys, finalizers) and label
//! values. Each check returns the message Kubernetes gives for a violation.

/// Longest DNS-1123 label (namespaces).
pub const DNS1123_LABEL_MAX: usize = 63;
/// Longest DNS-1123 subdomain (object names).
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
/// Longest label value and name part of a qualified name.
pub const LABEL_VALUE_MAX: usize = 63;

const LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
     characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', \
     or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
     (e.g. 'example.com', regex used for validation is \
     '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_NAME_MESSAGE: &str = "name part must consist of alphanumeric characters, '-', '_' \
     or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or \
     'my.name',  or '123-abc', regex used for validation is \
     '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of \
     alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
     character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is \
     '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// Checks a DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn check_dns1123_label(value: &str) -> Result<(), String> {
    if value.len() > DNS1123_LABEL_MAX {
        return Err(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if is_label_shape(value) {
        Ok(())
    } else {
        Err(LABEL_MESSAGE.to_owned())
    }
}

/// Checks a DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters.
pub fn check_dns1123_subdomain(value: &str) -> Result<(), String> {
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        return Err(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if value.split('.').all(is_label_shape) {
        Ok(())
    } else {
        Err(SUBDOMAIN_MESSAGE.to_owned())
    }
}

/// Checks a qualified name (label and annotation keys, finalizers): an optional DNS-1123
/// subdomain prefix and `/`, then a name of at most 63 alphanumerics, '-', '_' or '.'.
pub fn check_qualified_name(value: &str) -> Result<(), String> {
    let (prefix, name) = match value.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, value),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err("prefix part must be non-empty".to_owned());
        }
        check_dns1123_subdomain(prefix).map_err(|message| format!("prefix part {message}"))?;
    }
    if name.is_empty() {
        return Err("name part must be non-empty".to_owned());
    }
    if name.len() > LABEL_VALUE_MAX {
        return Err(format!(
            "name part must be no more than {LABEL_VALUE_MAX} characters"
        ));
    }
    if is_label_value_shape(name) {
        Ok(())
    } else {
        Err(QUALIFIED_NAME_MESSAGE.to_owned())
    }
}

/// Checks a label value: empty, or at most 63 alphanumerics, '-', '_' or '.' that start and end
/// with an alphanumeric.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.len() > LABEL_VALUE_MAX {
        return Err(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if value.is_empty() || is_label_value_shape(value) {
        Ok(())
    } else {
        Err(LABEL_VALUE_MESSAGE.to_owned())
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_label_shape(value: &str) -> bool {
    let bytes = value.as_bytes();
    let alnum = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|byte| alnum(byte) || *byte == b'-')
        }
        _ => false,
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_label_value_shape(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(checker: fn(&str) -> Result<(), String>, value: &str, ok: bool) {
        assert_eq!(
            checker(value).is_ok(),
            ok,
            "{value:?}: {:?}",
            checker(value)
        );
    }

    #[test]
    fn dns1123_labels() {
        for (value, ok) in [
            ("web", true),
            ("a", true),
            ("0", true),
            ("my-app-2", true),
            ("", false),
            ("-web", false),
            ("web-", false),
            ("Web", false),
            ("we.b", false),
            ("we_b", false),
        ] {
            check(check_dns1123_label, value, ok);
        }
        check(check_dns1123_label, &"a".repeat(63), true);
        check(check_dns1123_label, &"a".repeat(64), false);
    }

    #[test]
    fn dns1123_subdomains() {
        for (value, ok) in [
            ("web", true),
            ("shop.web", true),
            ("a.b-c.d", true),
            ("", false),
            (".web", false),
            ("web.", false),
            ("shop..web", false),
            ("shop.-web", false),
            ("Shop.web", false),
            ("shop/web", false),
        ] {
            check(check_dns1123_subdomain, value, ok);
        }
        check(check_dns1123_subdomain, &"a".repeat(253), true);
        check(check_dns1123_subdomain, &"a".repeat(254), false);
    }

    #[test]
    fn qualified_names_and_label_values() {
        for (value, ok) in [
            ("app", true),
            ("App_Name.v1", true),
            ("pacer.dev/app", true),
            ("kubectl.kubernetes.io/last-applied-configuration", true),
            ("/app", false),
            ("pacer.dev/", false),
            ("Pacer.dev/app", false),
            ("-app", false),
            ("a b", false),
        ] {
            check(check_qualified_name, value, ok);
        }
        for (value, ok) in [
            ("", true),
            ("v1.2_beta-3", true),
            ("-x", false),
            ("a/b", false),
        ] {
            check(check_label_value, value, ok);
        }
        check(check_label_value, &"a".repeat(64), false);
    }
}
