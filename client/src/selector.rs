//! Label selectors (`app=web,tier!=db,env in (a,b),!legacy`): parsing with Kubernetes' syntax
//! and rules, matching against labels, and the canonical text sent as `labelSelector`.
//!
//! The server does the selecting for lists and watches; clients match locally where the
//! server is not asked (e.g. `pacer apply -l` filters the manifests it applies).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use pacer_schemas::names::{check_label_value, check_qualified_name};

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
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

/// Why a selector does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {reason}")]
pub struct SelectorError {
    /// The selector as given.
    pub selector: String,
    /// What is wrong.
    pub reason: String,
}

impl LabelSelector {
    /// Parses a selector.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let fail = |reason: String| SelectorError {
            selector: selector.to_owned(),
            reason,
        };
        let mut requirements = Vec::new();
        for part in split_top_level(selector).map_err(fail)? {
            let part = part.trim();
            if part.is_empty() {
                if selector.trim().is_empty() {
                    continue;
                }
                return Err(fail("empty requirement".to_owned()));
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
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
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
fn split_top_level(selector: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0_u32;
    let mut start = 0;
    for (index, character) in selector.char_indices() {
        match character {
            '(' if depth == 0 => depth = 1,
            '(' => return Err("nested parentheses".to_owned()),
            ')' if depth == 1 => depth = 0,
            ')' => return Err("unbalanced ')'".to_owned()),
            ',' if depth == 0 => {
                parts.push(&selector[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("missing ')'".to_owned());
    }
    parts.push(&selector[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        check_key(key)?;
        return Ok(Requirement::DoesNotExist(key.to_owned()));
    }
    if let Some(open) = part.find('(') {
        let head = part[..open].trim();
        let Some(values) = part[open + 1..].trim_end().strip_suffix(')') else {
            return Err(format!("{part:?}: text after ')'"));
        };
        let mut words = head.split_whitespace();
        let (Some(key), Some(operator), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "{part:?}: expected `key in (…)` or `key notin (…)`"
            ));
        };
        check_key(key)?;
        let values = values
            .split(',')
            .map(|value| {
                let value = value.trim();
                check_value(key, value).map(|()| value.to_owned())
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        return match operator {
            "in" => Ok(Requirement::In(key.to_owned(), values)),
            "notin" => Ok(Requirement::NotIn(key.to_owned(), values)),
            other => Err(format!("unknown operator {other:?}; expected in or notin")),
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
        return Err(format!(
            "{part:?}: expected an operator (=, ==, !=, in, notin)"
        ));
    }
    check_key(part)?;
    Ok(Requirement::Exists(part.to_owned()))
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty key".to_owned());
    }
    check_qualified_name(key).map_err(|reason| format!("key {key:?}: {reason}"))
}

fn check_value(key: &str, value: &str) -> Result<(), String> {
    check_label_value(value).map_err(|reason| format!("value {value:?} of {key:?}: {reason}"))
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

    #[track_caller]
    fn check(selector: &str, pairs: &[(&str, &str)], expected: bool) {
        let parsed = LabelSelector::parse(selector).unwrap();
        assert_eq!(
            parsed.matches(Some(&labels(pairs))),
            expected,
            "{selector} on {pairs:?}"
        );
    }

    #[test]
    fn selectors_match_like_kubernetes() {
        check("", &[], true);
        check("app=web", &[("app", "web")], true);
        check("app==web", &[("app", "db")], false);
        check("app!=web", &[], true);
        check("app!=web", &[("app", "web")], false);
        check("tier in (a, b)", &[("tier", "b")], true);
        check("tier in (a,b)", &[], false);
        check("tier notin (a,b)", &[], true);
        check("tier notin (a,b)", &[("tier", "a")], false);
        check("app", &[("app", "")], true);
        check("!app", &[("app", "x")], false);
        check(
            "app=web,pacer.dev/team in (shop),!legacy",
            &[("app", "web"), ("pacer.dev/team", "shop")],
            true,
        );
        assert!(!LabelSelector::parse("app=web").unwrap().matches(None));
    }

    #[test]
    fn selectors_print_canonically() {
        let selector = LabelSelector::parse(" app = web , tier in (b,a),!x, y ").unwrap();
        assert_eq!(selector.to_string(), "app=web,tier in (a,b),!x,y");
        assert_eq!(selector.requirements().len(), 4);
        assert!(LabelSelector::parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_selectors_are_rejected() {
        for bad in [
            "app=web,",
            "tier in (a,b",
            "tier between (a)",
            "a b",
            "=web",
            "app=we b",
            "-bad=x",
            "tier in (a)x",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} parsed");
        }
        let error = LabelSelector::parse("app=we b").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid label selector \"app=we b\"")
        );
    }
}
