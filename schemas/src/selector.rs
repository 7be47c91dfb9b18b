//! Label selectors (`app=web,tier!=db,env in (a,b),!legacy`): the one parser of Kubernetes'
//! selector syntax shared by the API server (which filters lists and watches with it) and the
//! client (which sends it as `labelSelector` and matches manifests locally, e.g. `pacer apply -l`).
//!
//! Grammar: requirements joined by commas (commas inside parentheses belong to a value set),
//! every one must hold; the empty selector selects everything.
//!
//! | form | holds when |
//! |---|---|
//! | `k=v`, `k==v` | the label `k` is `v` |
//! | `k!=v` | `k` is absent or not `v` |
//! | `k in (a,b)` | `k` is one of the values |
//! | `k notin (a,b)` | `k` is absent or none of the values |
//! | `k` | `k` is present |
//! | `!k` | `k` is absent |
//!
//! Keys must be qualified names (`[prefix/]name`) and values label values, checked with the
//! same rules as `metadata.labels`. [`LabelSelector`]'s `Display` prints the canonical text
//! (value sets sorted), which parses back to an equal selector. Pure: no IO.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::names::{check_label_value, check_qualified_name};

/// A parsed label selector: every requirement must hold. Empty selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` or `key==value`.
    Equals(String, String),
    /// `key!=value` (also true when the key is absent).
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, BTreeSet<String>),
    /// `key notin (a,b)` (also true when the key is absent).
    NotIn(String, BTreeSet<String>),
    /// `key`: the key is present.
    Exists(String),
    /// `!key`: the key is absent.
    DoesNotExist(String),
}

/// Why a selector does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {reason}")]
pub struct SelectorError {
    /// The selector as given.
    pub selector: String,
    /// What is wrong.
    pub reason: SelectorErrorReason,
}

/// What is wrong with a selector.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorErrorReason {
    /// Two commas in a row, or a trailing or leading comma.
    #[error("empty requirement")]
    EmptyRequirement,
    /// Parentheses that do not pair up (or nest).
    #[error("unbalanced parentheses: {0}")]
    Parentheses(&'static str),
    /// Text after the `)` of a value set.
    #[error("{0:?}: text after ')'")]
    TextAfterValueSet(String),
    /// A requirement with spaces but no known operator.
    #[error("{0:?}: expected an operator (=, ==, !=, in, notin)")]
    MissingOperator(String),
    /// A word before `(…)` that is neither `in` nor `notin`.
    #[error("{requirement:?}: unknown operator {operator:?}; expected in or notin")]
    UnknownOperator {
        /// The requirement as written.
        requirement: String,
        /// The operator found.
        operator: String,
    },
    /// `key in ()`: a value set without a value.
    #[error("{0:?}: a value set must not be empty")]
    EmptyValueSet(String),
    /// A key that is not a qualified name.
    #[error("key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A value that is not a label value.
    #[error("value {value:?} of {key:?}: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Which rule it breaks.
        reason: String,
    },
}

impl LabelSelector {
    /// Parses a selector as `kubectl -l` writes it.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let fail = |reason: SelectorErrorReason| SelectorError {
            selector: selector.to_owned(),
            reason,
        };
        let mut requirements = Vec::new();
        if selector.trim().is_empty() {
            return Ok(Self { requirements });
        }
        for part in split_top_level(selector).map_err(fail)? {
            let part = part.trim();
            if part.is_empty() {
                return Err(fail(SelectorErrorReason::EmptyRequirement));
            }
            requirements.push(parse_requirement(part).map_err(fail)?);
        }
        Ok(Self { requirements })
    }

    /// The requirements, in the order given.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether the selector has no requirement (selects everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` (absent = none) satisfy every requirement.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let empty = BTreeMap::new();
        let labels = labels.unwrap_or(&empty);
        self.requirements
            .iter()
            .all(|requirement| requirement.matches(labels))
    }
}

impl Requirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Equals(key, value) => labels.get(key) == Some(value),
            Self::NotEquals(key, value) => labels.get(key) != Some(value),
            Self::In(key, values) => labels.get(key).is_some_and(|value| values.contains(value)),
            Self::NotIn(key, values) => labels.get(key).is_none_or(|value| !values.contains(value)),
            Self::Exists(key) => labels.contains_key(key),
            Self::DoesNotExist(key) => !labels.contains_key(key),
        }
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(selector: &str) -> Result<Self, Self::Err> {
        Self::parse(selector)
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                formatter.write_str(",")?;
            }
            write!(formatter, "{requirement}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |values: &BTreeSet<String>| values.iter().cloned().collect::<Vec<_>>().join(",");
        match self {
            Self::Equals(key, value) => write!(formatter, "{key}={value}"),
            Self::NotEquals(key, value) => write!(formatter, "{key}!={value}"),
            Self::In(key, values) => write!(formatter, "{key} in ({})", join(values)),
            Self::NotIn(key, values) => write!(formatter, "{key} notin ({})", join(values)),
            Self::Exists(key) => formatter.write_str(key),
            Self::DoesNotExist(key) => write!(formatter, "!{key}"),
        }
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(selector: &str) -> Result<Vec<&str>, SelectorErrorReason> {
    let mut parts = Vec::new();
    let mut depth = 0_u32;
    let mut start = 0;
    for (index, character) in selector.char_indices() {
        match character {
            '(' if depth == 0 => depth = 1,
            '(' => return Err(SelectorErrorReason::Parentheses("nested '('")),
            ')' if depth == 1 => depth = 0,
            ')' => return Err(SelectorErrorReason::Parentheses("')' without '('")),
            ',' if depth == 0 => {
                parts.push(&selector[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(SelectorErrorReason::Parentheses("missing ')'"));
    }
    parts.push(&selector[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, SelectorErrorReason> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        check_key(key)?;
        return Ok(Requirement::DoesNotExist(key.to_owned()));
    }
    if let Some(open) = part.find('(') {
        let head = part[..open].trim();
        let Some(values) = part[open + 1..].trim_end().strip_suffix(')') else {
            return Err(SelectorErrorReason::TextAfterValueSet(part.to_owned()));
        };
        let mut words = head.split_whitespace();
        let (Some(key), Some(operator), None) = (words.next(), words.next(), words.next()) else {
            return Err(SelectorErrorReason::MissingOperator(part.to_owned()));
        };
        check_key(key)?;
        let values = values
            .split(',')
            .map(|value| {
                let value = value.trim();
                check_value(key, value).map(|()| value.to_owned())
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        if values.iter().all(String::is_empty) {
            return Err(SelectorErrorReason::EmptyValueSet(part.to_owned()));
        }
        return match operator {
            "in" => Ok(Requirement::In(key.to_owned(), values)),
            "notin" => Ok(Requirement::NotIn(key.to_owned(), values)),
            other => Err(SelectorErrorReason::UnknownOperator {
                requirement: part.to_owned(),
                operator: other.to_owned(),
            }),
        };
    }
    for (operator, make) in [
        (
            "!=",
            Requirement::NotEquals as fn(String, String) -> Requirement,
        ),
        ("==", Requirement::Equals),
        ("=", Requirement::Equals),
    ] {
        if let Some((key, value)) = part.split_once(operator) {
            let (key, value) = (key.trim(), value.trim());
            check_key(key)?;
            check_value(key, value)?;
            return Ok(make(key.to_owned(), value.to_owned()));
        }
    }
    if part.contains(char::is_whitespace) {
        return Err(SelectorErrorReason::MissingOperator(part.to_owned()));
    }
    check_key(part)?;
    Ok(Requirement::Exists(part.to_owned()))
}

fn check_key(key: &str) -> Result<(), SelectorErrorReason> {
    let invalid = |reason: String| SelectorErrorReason::InvalidKey {
        key: key.to_owned(),
        reason,
    };
    if key.is_empty() {
        return Err(invalid("must not be empty".to_owned()));
    }
    check_qualified_name(key).map_err(invalid)
}

fn check_value(key: &str, value: &str) -> Result<(), SelectorErrorReason> {
    check_label_value(value).map_err(|reason| SelectorErrorReason::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn set(values: &[&str]) -> BTreeSet<String> {
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    #[track_caller]
    fn check(selector: &str, pairs: &[(&str, &str)], expected: bool) {
        let parsed = LabelSelector::parse(selector).unwrap();
        assert_eq!(
            parsed.matches(Some(&labels(pairs))),
            expected,
            "{selector:?} on {pairs:?}"
        );
        let reparsed = LabelSelector::parse(&parsed.to_string()).unwrap();
        assert_eq!(reparsed, parsed, "{selector:?} does not round-trip");
    }

    #[test]
    fn parses_every_operator() {
        use Requirement::*;
        let parsed = LabelSelector::parse(
            "app=web, tier==front,env!=prod,zone in (a, b),team notin (x),pacer.dev/app,!canary",
        )
        .unwrap();
        assert_eq!(
            parsed.requirements(),
            &[
                Equals("app".into(), "web".into()),
                Equals("tier".into(), "front".into()),
                NotEquals("env".into(), "prod".into()),
                In("zone".into(), set(&["a", "b"])),
                NotIn("team".into(), set(&["x"])),
                Exists("pacer.dev/app".into()),
                DoesNotExist("canary".into()),
            ]
        );
        assert!(LabelSelector::parse("").unwrap().is_empty());
        assert!(LabelSelector::parse("  ").unwrap().is_empty());
        assert_eq!(
            "app=web".parse::<LabelSelector>().unwrap(),
            LabelSelector::parse("app==web").unwrap()
        );
    }

    #[test]
    fn selectors_match_like_kubernetes() {
        check("", &[], true);
        check("app=web", &[("app", "web")], true);
        check("app=web", &[("app", "db")], false);
        check("app=web", &[], false);
        check("app==web", &[("app", "db")], false);
        check("app!=web", &[], true);
        check("app!=web", &[("app", "web")], false);
        check("app in (web,db)", &[("app", "db")], true);
        check("tier in (a, b)", &[("tier", "b")], true);
        check("tier in (a,b)", &[], false);
        check("tier notin (a,b)", &[], true);
        check("tier notin (a,b)", &[("tier", "a")], false);
        check("app", &[("app", "")], true);
        check("!app", &[("app", "")], false);
        check("!app", &[("app", "x")], false);
        check("!app", &[("other", "x")], true);
        check("app=web,tier=front", &[("app", "web")], false);
        check("app=", &[("app", "")], true);
        check("inside=yes", &[("inside", "yes")], true);
        check(
            "app=web,pacer.dev/team in (shop),!legacy",
            &[("app", "web"), ("pacer.dev/team", "shop")],
            true,
        );
        assert!(!LabelSelector::parse("app=web").unwrap().matches(None));
        assert!(LabelSelector::parse("!app").unwrap().matches(None));
    }

    #[test]
    fn selectors_print_canonically() {
        let selector = LabelSelector::parse(" app = web , tier in (b,a),!x, y ").unwrap();
        assert_eq!(selector.to_string(), "app=web,tier in (a,b),!x,y");
        assert_eq!(selector.requirements().len(), 4);
        assert_eq!(
            LabelSelector::parse(&selector.to_string()).unwrap(),
            selector
        );
        let every = LabelSelector::parse("a=1,b!=2,c in (3),d notin (4,5),e,!f").unwrap();
        assert_eq!(every.to_string(), "a=1,b!=2,c in (3),d notin (4,5),e,!f");
    }

    #[test]
    fn bad_selectors_are_rejected() {
        for bad in [
            "app=web,",
            ",app=web",
            "tier in (a,b",
            "tier between (a)",
            "a b",
            "=web",
            "app in web",
            "app in ()",
            "app=we b",
            "app >",
            "app=(x)",
            "-bad=x",
            "tier in (a)x",
            "tier in ((a))",
            "a)",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad:?} parsed");
        }
        let error = LabelSelector::parse("app=we b").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid label selector \"app=we b\""),
            "{error}"
        );
        assert!(matches!(
            LabelSelector::parse("tier in ()").unwrap_err().reason,
            SelectorErrorReason::EmptyValueSet(_)
        ));
        assert!(matches!(
            LabelSelector::parse("a,,b").unwrap_err().reason,
            SelectorErrorReason::EmptyRequirement
        ));
    }
}
