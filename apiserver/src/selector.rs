//! Label selectors (`labelSelector`: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`,
//! `!k`, comma-joined, all must hold) and field selectors (`fieldSelector` on `metadata.name`
//! and `metadata.namespace` with `=`, `==`, `!=`), parsed and matched against JSON objects.
//!
//! As in Kubernetes' etcd storage, selectors filter *after* paging: a `limit=N` page holds at
//! most N objects and may hold fewer (even none) while `continue` says more follow.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::ApiError;

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` / `key==value`.
    Equals(String, String),
    /// `key!=value`: the key is absent or has another value.
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)`: the key is absent or has none of the values.
    NotIn(String, Vec<String>),
    /// `key`: the key is present.
    Exists(String),
    /// `!key`: the key is absent.
    DoesNotExist(String),
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldTerm {
    field: FieldName,
    value: String,
    equal: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldName {
    Name,
    Namespace,
}

impl LabelSelector {
    /// Parses a selector as `kubectl -l` writes it.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        Parser::new(text).selector().map_err(|message| {
            ApiError::BadRequest(format!("unable to parse requirement: {message}"))
        })
    }

    /// Whether the selector has no requirement (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|requirement| {
            let value = |key: &String| labels.get(key);
            match requirement {
                Requirement::Equals(key, expected) => value(key) == Some(expected),
                Requirement::NotEquals(key, expected) => value(key) != Some(expected),
                Requirement::In(key, values) => value(key).is_some_and(|v| values.contains(v)),
                Requirement::NotIn(key, values) => !value(key).is_some_and(|v| values.contains(v)),
                Requirement::Exists(key) => labels.contains_key(key),
                Requirement::DoesNotExist(key) => !labels.contains_key(key),
            }
        })
    }

    /// Whether the object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        if self.is_empty() {
            return true;
        }
        let labels: BTreeMap<String, String> = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        self.matches_labels(&labels)
    }
}

impl FieldSelector {
    /// Parses `metadata.name=web,metadata.namespace!=kube-system`.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for term in text
            .split(',')
            .map(str::trim)
            .filter(|term| !term.is_empty())
        {
            let (field, value, equal) = if let Some((field, value)) = term.split_once("!=") {
                (field, value, false)
            } else if let Some((field, value)) = term.split_once("==") {
                (field, value, true)
            } else if let Some((field, value)) = term.split_once('=') {
                (field, value, true)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid field selector: {term:?}: expected field=value or field!=value"
                )));
            };
            let field = match field.trim() {
                "metadata.name" => FieldName::Name,
                "metadata.namespace" => FieldName::Namespace,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "field label not supported: {other}"
                    )));
                }
            };
            terms.push(FieldTerm {
                field,
                value: value.trim().to_owned(),
                equal,
            });
        }
        Ok(Self { terms })
    }

    /// Whether the selector has no term.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The name this selector pins (`metadata.name=x`), if any.
    pub fn exact_name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|term| term.equal && term.field == FieldName::Name)
            .map(|term| term.value.as_str())
    }

    /// Whether the object matches every term.
    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|term| {
            let pointer = match term.field {
                FieldName::Name => "/metadata/name",
                FieldName::Namespace => "/metadata/namespace",
            };
            let actual = object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == term.value) == term.equal
        })
    }
}

/// Both selectors of a request.
#[derive(Clone, Debug, Default)]
pub struct Selectors {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

impl Selectors {
    /// Whether the object matches both.
    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }
}

/// A recursive-descent parser over the selector text.
struct Parser<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, position: 0 }
    }

    fn selector(mut self) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        self.skip_spaces();
        if self.at_end() {
            return Ok(LabelSelector { requirements });
        }
        loop {
            requirements.push(self.requirement()?);
            self.skip_spaces();
            if self.at_end() {
                break;
            }
            self.expect(",")?;
        }
        Ok(LabelSelector { requirements })
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        self.skip_spaces();
        if self.eat("!") {
            let key = self.key()?;
            return Ok(Requirement::DoesNotExist(key));
        }
        let key = self.key()?;
        self.skip_spaces();
        if self.at_end() || self.peek() == Some(',') {
            return Ok(Requirement::Exists(key));
        }
        if self.eat("!=") {
            return Ok(Requirement::NotEquals(key, self.value()?));
        }
        if self.eat("==") || self.eat("=") {
            return Ok(Requirement::Equals(key, self.value()?));
        }
        if self.eat_word("notin") {
            return Ok(Requirement::NotIn(key, self.value_set()?));
        }
        if self.eat_word("in") {
            return Ok(Requirement::In(key, self.value_set()?));
        }
        Err(format!(
            "found {:?}, expected one of: '=', '==', '!=', 'in', 'notin', ','",
            self.rest()
        ))
    }

    fn key(&mut self) -> Result<String, String> {
        self.skip_spaces();
        let key =
            self.take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
        if key.is_empty() {
            return Err(format!("expected a label key at {:?}", self.rest()));
        }
        Ok(key.to_owned())
    }

    fn value(&mut self) -> Result<String, String> {
        self.skip_spaces();
        let value = self.take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if let Some(next) = self.peek()
            && next != ','
            && !next.is_whitespace()
        {
            return Err(format!("invalid label value at {:?}", self.rest()));
        }
        Ok(value.to_owned())
    }

    fn value_set(&mut self) -> Result<Vec<String>, String> {
        self.skip_spaces();
        self.expect("(")?;
        let mut values = Vec::new();
        loop {
            self.skip_spaces();
            let value =
                self.take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            values.push(value.to_owned());
            self.skip_spaces();
            if self.eat(")") {
                break;
            }
            self.expect(",")?;
        }
        if values.iter().all(String::is_empty) {
            return Err("a value set must not be empty".to_owned());
        }
        Ok(values)
    }

    fn word_boundary_after(&self, word: &str) -> bool {
        self.rest()
            .strip_prefix(word)
            .is_some_and(|after| after.starts_with(|c: char| c.is_whitespace() || c == '('))
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if self.word_boundary_after(word) {
            self.position += word.len();
            true
        } else {
            false
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.position += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(format!("expected {token:?} at {:?}", self.rest()))
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let rest = &self.text[self.position..];
        let end = rest.find(|c: char| !keep(c)).unwrap_or(rest.len());
        self.position += end;
        &rest[..end]
    }

    fn skip_spaces(&mut self) {
        self.take_while(char::is_whitespace);
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn rest(&self) -> &'a str {
        &self.text[self.position..]
    }

    fn at_end(&self) -> bool {
        self.position >= self.text.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[track_caller]
    fn check(selector: &str, pairs: &[(&str, &str)], expect: bool) {
        let parsed = LabelSelector::parse(selector).unwrap();
        assert_eq!(
            parsed.matches_labels(&labels(pairs)),
            expect,
            "{selector:?} on {pairs:?}"
        );
    }

    #[test]
    fn parses_every_operator() {
        use Requirement::*;
        let parsed = LabelSelector::parse(
            "app=web, tier==front,env!=prod,zone in (a, b),team notin (x),pacer.dev/app,!canary",
        )
        .unwrap();
        assert_eq!(
            parsed.requirements,
            vec![
                Equals("app".into(), "web".into()),
                Equals("tier".into(), "front".into()),
                NotEquals("env".into(), "prod".into()),
                In("zone".into(), vec!["a".into(), "b".into()]),
                NotIn("team".into(), vec!["x".into()]),
                Exists("pacer.dev/app".into()),
                DoesNotExist("canary".into()),
            ]
        );
        assert!(LabelSelector::parse("").unwrap().is_empty());
        assert!(LabelSelector::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn matches_like_kubernetes() {
        check("app=web", &[("app", "web")], true);
        check("app=web", &[("app", "db")], false);
        check("app=web", &[], false);
        check("app!=web", &[], true);
        check("app!=web", &[("app", "web")], false);
        check("app in (web,db)", &[("app", "db")], true);
        check("app in (web,db)", &[], false);
        check("app notin (web,db)", &[], true);
        check("app notin (web,db)", &[("app", "web")], false);
        check("app", &[("app", "")], true);
        check("!app", &[("app", "")], false);
        check("!app", &[("other", "x")], true);
        check("app=web,tier=front", &[("app", "web")], false);
        check("app=", &[("app", "")], true);
        check("inside=yes", &[("inside", "yes")], true);
    }

    #[test]
    fn rejects_malformed_selectors() {
        for bad in [
            "app=web,",
            "=web",
            "app in web",
            "app in ()",
            "app=we b",
            "app >",
            "app=(x)",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn field_selectors() {
        let object = json!({"metadata": {"name": "web", "namespace": "prod"}});
        let matches = |text: &str| FieldSelector::parse(text).unwrap().matches(&object);
        assert!(matches("metadata.name=web"));
        assert!(matches("metadata.name==web,metadata.namespace=prod"));
        assert!(!matches("metadata.name!=web"));
        assert!(matches("metadata.namespace!=default"));
        assert!(matches(""));
        assert_eq!(
            FieldSelector::parse("metadata.name=web")
                .unwrap()
                .exact_name(),
            Some("web")
        );
        assert!(FieldSelector::parse("spec.instances=1").is_err());
        assert!(FieldSelector::parse("metadata.name").is_err());
    }
}
