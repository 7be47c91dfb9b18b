//! Marathon path ids (`/prod/shop/web`) and their one mapping onto namespaced object names.
//!
//! The mapping, kept only here:
//!
//! | Marathon id         | namespace | name       |
//! |---------------------|-----------|------------|
//! | `/web`              | `default` | `web`      |
//! | `/prod/web`         | `prod`    | `web`      |
//! | `/prod/shop/web`    | `prod`    | `shop.web` |
//! | `/default/shop/web` | `default` | `shop.web` |
//!
//! It is a bijection on the ids it accepts, which costs two rules: a `.` inside a path segment
//! is rejected (`/prod/a.b` and `/prod/a/b` would both be `a.b`), and `/default/<one segment>`
//! is rejected in favour of `/<one segment>` (both would be `default/web`); a dotted name in
//! namespace `default` is written `/default/a/b`. Parsing follows Marathon's `PathId`: a leading
//! `/` makes an id absolute, empty segments are dropped, `.` and `..` are resolved, and a
//! relative id is resolved against a base group (the root by default).

use std::fmt;
use std::str::FromStr;

use crate::names::{DNS1123_LABEL_MAX, DNS1123_SUBDOMAIN_MAX};

/// The namespace that holds top-level Marathon ids (`/web`).
pub const DEFAULT_NAMESPACE: &str = "default";

/// An absolute Marathon path id; the empty path is the root group `/`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MarathonId {
    segments: Vec<String>,
}

/// A namespace and a name: where a Marathon app id lives as an object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespacedName {
    /// The namespace (first path segment, or `default`).
    pub namespace: String,
    /// The name (remaining segments joined with `.`).
    pub name: String,
}

/// Why an id or a namespace/name pair has no counterpart.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MarathonIdError {
    /// The id is the empty string.
    #[error("Marathon id must not be empty")]
    Empty,
    /// A path segment breaks Marathon's segment rule or contains a `.`.
    #[error("invalid Marathon id {id:?}: path segment {segment:?} {reason}")]
    InvalidSegment {
        /// The id as given.
        id: String,
        /// The offending segment.
        segment: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `..` climbs above the root group.
    #[error("invalid Marathon id {id:?}: '..' goes above the root group")]
    AboveRoot {
        /// The id as given.
        id: String,
    },
    /// The root group `/` is not an object.
    #[error("the root group / cannot be an app")]
    Root,
    /// `/default/x` names the same object as `/x`; only the latter is accepted.
    #[error(
        "Marathon id {id:?} is not canonical: write {canonical:?} (top-level ids live in namespace \
         default)"
    )]
    NonCanonical {
        /// The id as given.
        id: String,
        /// The id to use instead.
        canonical: String,
    },
    /// The namespace (first segment) is longer than a DNS-1123 label allows.
    #[error(
        "invalid Marathon id {id:?}: group {namespace:?} becomes the namespace and must be at most {DNS1123_LABEL_MAX} characters"
    )]
    NamespaceTooLong {
        /// The id as given.
        id: String,
        /// The first segment.
        namespace: String,
    },
    /// The name (joined remaining segments) is longer than 253 characters.
    #[error(
        "invalid Marathon id {id:?}: the object name {name:?} would be longer than {DNS1123_SUBDOMAIN_MAX} characters"
    )]
    NameTooLong {
        /// The id as given.
        id: String,
        /// The joined name.
        name: String,
    },
    /// The namespace is not a DNS-1123 label.
    #[error("namespace {namespace:?} has no Marathon id: {reason}")]
    InvalidNamespace {
        /// The namespace as given.
        namespace: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The name is not a DNS-1123 subdomain.
    #[error("name {name:?} has no Marathon id: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl MarathonId {
    /// The root group `/`.
    pub fn root() -> Self {
        Self::default()
    }

    /// Parses an id; a relative id is taken relative to the root group.
    pub fn parse(input: &str) -> Result<Self, MarathonIdError> {
        Self::root().resolve(input)
    }

    /// Parses `input` relative to `self` (a group): `../db` from `/prod/shop` is `/prod/db`;
    /// an absolute `input` ignores `self`.
    pub fn resolve(&self, input: &str) -> Result<Self, MarathonIdError> {
        if input.is_empty() {
            return Err(MarathonIdError::Empty);
        }
        let mut segments = if input.starts_with('/') {
            Vec::new()
        } else {
            self.segments.clone()
        };
        for segment in input.split('/').filter(|segment| !segment.is_empty()) {
            match segment {
                "." => {}
                ".." => {
                    if segments.pop().is_none() {
                        return Err(MarathonIdError::AboveRoot {
                            id: input.to_owned(),
                        });
                    }
                }
                _ => {
                    check_segment(segment).map_err(|reason| MarathonIdError::InvalidSegment {
                        id: input.to_owned(),
                        segment: segment.to_owned(),
                        reason,
                    })?;
                    segments.push(segment.to_owned());
                }
            }
        }
        Ok(Self { segments })
    }

    /// The id of the object `namespace`/`name`.
    pub fn from_object(namespace: &str, name: &str) -> Result<Self, MarathonIdError> {
        crate::names::check_dns1123_label(namespace).map_err(|reason| {
            MarathonIdError::InvalidNamespace {
                namespace: namespace.to_owned(),
                reason,
            }
        })?;
        crate::names::check_dns1123_subdomain(name).map_err(|reason| {
            MarathonIdError::InvalidName {
                name: name.to_owned(),
                reason,
            }
        })?;
        let mut segments = Vec::new();
        if namespace != DEFAULT_NAMESPACE || name.contains('.') {
            segments.push(namespace.to_owned());
        }
        segments.extend(name.split('.').map(str::to_owned));
        Ok(Self { segments })
    }

    /// The namespace and name of this app id.
    pub fn to_object(&self) -> Result<NamespacedName, MarathonIdError> {
        match self.segments.as_slice() {
            [] => Err(MarathonIdError::Root),
            [name] => Ok(NamespacedName {
                namespace: DEFAULT_NAMESPACE.to_owned(),
                name: name.clone(),
            }),
            [namespace, rest @ ..] => {
                if namespace == DEFAULT_NAMESPACE && rest.len() == 1 {
                    return Err(MarathonIdError::NonCanonical {
                        id: self.to_string(),
                        canonical: format!("/{}", rest.join("/")),
                    });
                }
                if namespace.len() > DNS1123_LABEL_MAX {
                    return Err(MarathonIdError::NamespaceTooLong {
                        id: self.to_string(),
                        namespace: namespace.clone(),
                    });
                }
                let name = rest.join(".");
                if name.len() > DNS1123_SUBDOMAIN_MAX {
                    return Err(MarathonIdError::NameTooLong {
                        id: self.to_string(),
                        name,
                    });
                }
                Ok(NamespacedName {
                    namespace: namespace.clone(),
                    name,
                })
            }
        }
    }

    /// The path segments, outermost group first.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Whether this is the root group `/`.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The enclosing group; `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        let (_, parent) = self.segments.split_last()?;
        Some(Self {
            segments: parent.to_vec(),
        })
    }

    /// Whether `other` is this id or lies inside it (this id taken as a group).
    pub fn contains(&self, other: &Self) -> bool {
        other.segments.starts_with(&self.segments)
    }
}

impl FromStr for MarathonId {
    type Err = MarathonIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl fmt::Display for MarathonId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return formatter.write_str("/");
        }
        for segment in &self.segments {
            write!(formatter, "/{segment}")?;
        }
        Ok(())
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.namespace, self.name)
    }
}

/// Marathon's segment rule without the dots: lower-case alphanumerics and '-', starting and
/// ending with an alphanumeric.
fn check_segment(segment: &str) -> Result<(), &'static str> {
    if segment.contains('.') {
        return Err(
            "contains '.', which Pacer reserves for joining group paths into object names \
             (use '/' or '-')",
        );
    }
    let bytes = segment.as_bytes();
    let alnum = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    let valid = bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|byte| alnum(byte) || *byte == b'-');
    if valid {
        Ok(())
    } else {
        Err(
            "must consist of lower case alphanumeric characters or '-', and must start and end \
             with an alphanumeric character",
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `expect`: `Ok((namespace, name, canonical id))` or `Err(fragment of the message)`.
    #[track_caller]
    fn check(id: &str, expect: Result<(&str, &str, &str), &str>) {
        let got = MarathonId::parse(id).and_then(|parsed| {
            let object = parsed.to_object()?;
            Ok((object, parsed.to_string()))
        });
        match (got, expect) {
            (Ok((object, canonical)), Ok((namespace, name, expect_canonical))) => {
                assert_eq!(
                    (
                        object.namespace.as_str(),
                        object.name.as_str(),
                        canonical.as_str()
                    ),
                    (namespace, name, expect_canonical),
                    "{id}"
                );
                let back = MarathonId::from_object(namespace, name).unwrap();
                assert_eq!(back.to_string(), expect_canonical, "{id}: formatting back");
            }
            (Err(error), Err(fragment)) => {
                let message = error.to_string();
                assert!(
                    message.contains(fragment),
                    "{id}: {message:?} lacks {fragment:?}"
                );
            }
            (got, expect) => panic!("{id}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn ids_map_onto_namespaces_and_names() {
        check("/prod/web", Ok(("prod", "web", "/prod/web")));
        check("/prod/shop/web", Ok(("prod", "shop.web", "/prod/shop/web")));
        check("/prod/a/b/c", Ok(("prod", "a.b.c", "/prod/a/b/c")));
        check("/web", Ok(("default", "web", "/web")));
        check("web", Ok(("default", "web", "/web")));
        check(
            "/default/shop/web",
            Ok(("default", "shop.web", "/default/shop/web")),
        );
        check("/prod//web/", Ok(("prod", "web", "/prod/web")));
        check("/prod/./shop/../web", Ok(("prod", "web", "/prod/web")));
        check(
            "/tools/docker/registry",
            Ok(("tools", "docker.registry", "/tools/docker/registry")),
        );
        check(
            "http-index-test",
            Ok(("default", "http-index-test", "/http-index-test")),
        );
    }

    #[test]
    fn invalid_ids_say_why() {
        check("", Err("must not be empty"));
        check("/", Err("root group"));
        check("/Prod/web", Err("path segment \"Prod\""));
        check("/prod/web_1", Err("path segment \"web_1\""));
        check("/prod/-web", Err("must start and end"));
        check("/prod/my.app", Err("contains '.'"));
        check("/../web", Err("above the root group"));
        check("/default/web", Err("write \"/web\""));
        check(&format!("/{}/web", "a".repeat(64)), Err("at most 63"));
        check(&format!("/p/{}", "a".repeat(254)), Err("longer than 253"));
    }

    #[test]
    fn objects_without_ids_say_why() {
        for (namespace, name, fragment) in [
            ("Prod", "web", "namespace \"Prod\""),
            ("prod", "Web", "name \"Web\""),
            ("prod", "shop..web", "name \"shop..web\""),
            ("prod", "", "name \"\""),
        ] {
            let error = MarathonId::from_object(namespace, name)
                .unwrap_err()
                .to_string();
            assert!(error.contains(fragment), "{error:?} lacks {fragment:?}");
        }
    }

    #[test]
    fn relative_ids_resolve_against_a_group() {
        let group = MarathonId::parse("/prod/shop").unwrap();
        for (input, expect) in [
            ("web", "/prod/shop/web"),
            ("./web", "/prod/shop/web"),
            ("../db", "/prod/db"),
            ("../../other/app", "/other/app"),
            ("/abs/app", "/abs/app"),
        ] {
            assert_eq!(group.resolve(input).unwrap().to_string(), expect, "{input}");
        }
        assert!(group.resolve("../../../x").is_err());
    }

    #[test]
    fn groups_contain_their_members() {
        let prod = MarathonId::parse("/prod").unwrap();
        let web = MarathonId::parse("/prod/shop/web").unwrap();
        assert!(prod.contains(&web));
        assert!(MarathonId::root().contains(&web));
        assert!(!web.contains(&prod));
        assert!(!MarathonId::parse("/production").unwrap().contains(&web));
        assert_eq!(web.parent().unwrap().to_string(), "/prod/shop");
        assert_eq!(MarathonId::root().parent(), None);
        assert!(MarathonId::root().is_root());
        assert_eq!(web.segments(), ["prod", "shop", "web"]);
    }
}
