//! Placement constraints: Marathon's `[field, OPERATOR, value?]` arrays, and their typed form.
//!
//! On the wire a constraint stays the 2- or 3-string array users write (and Marathon echoes,
//! including `["hostname", "UNIQUE", ""]`). [`Constraint`] keeps exactly those strings so that
//! an unknown operator or a bad value is a validation error (422, with the field path) rather
//! than a decoding error, and so it round-trips. [`Constraint::parse`] turns it into the typed
//! [`ParsedConstraint`] the placement controller uses; validation reports its errors.

use std::borrow::Cow;
use std::fmt;

use regex::Regex;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::wire_enum::wire_enum;

wire_enum! {
    /// A constraint operator.
    pub enum ConstraintOperator {
        /// At most one instance per distinct value of the field.
        Unique = "UNIQUE",
        /// Only on nodes whose field equals the value (or the first placed instance's value).
        Cluster = "CLUSTER",
        /// Spread evenly across the field's values (value: expected number of values).
        GroupBy = "GROUP_BY",
        /// Only where the field fully matches the regex value.
        Like = "LIKE",
        /// Only where the field does not fully match the regex value (or is absent).
        Unlike = "UNLIKE",
        /// At most `value` instances per distinct value of the field.
        MaxPer = "MAX_PER",
        /// Only where the field equals the value.
        Is = "IS",
    }
}

/// One constraint as written: `[field, OPERATOR]` or `[field, OPERATOR, value]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    /// Node attribute the constraint looks at: `hostname`/`@hostname`, `@region`, `@zone` or an
    /// attribute name.
    pub field: String,
    /// The operator, possibly one this version does not know.
    pub operator: ConstraintOperator,
    /// The third element, if present.
    pub value: Option<String>,
}

/// A constraint with its value checked and typed.
#[derive(Clone, Debug)]
pub struct ParsedConstraint {
    /// Node attribute the constraint looks at.
    pub field: String,
    /// What it requires.
    pub rule: ConstraintRule,
}

/// What a constraint requires of the nodes an App's instances run on.
#[derive(Clone, Debug)]
pub enum ConstraintRule {
    /// At most one instance per distinct field value.
    Unique,
    /// Every instance on the given value, or on the value of the first placed instance.
    Cluster(Option<String>),
    /// Spread evenly across the field's values; the number of values to expect, if given.
    GroupBy(Option<u32>),
    /// The field must fully match.
    Like(FullMatch),
    /// The field must not fully match (an absent field is accepted).
    Unlike(FullMatch),
    /// At most this many instances per distinct field value.
    MaxPer(u32),
    /// The field must equal this value.
    Is(String),
}

/// A regex that must match a whole value, as Marathon's `LIKE`/`UNLIKE` do.
#[derive(Clone, Debug)]
pub struct FullMatch {
    source: String,
    regex: Regex,
}

/// Why a constraint's value does not suit its operator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// The field (first element) is empty.
    #[error("constraint field must not be empty")]
    EmptyField,
    /// The operator is not known.
    #[error("unknown constraint operator {0:?}")]
    UnknownOperator(String),
    /// The operator needs a value and none was given.
    #[error("{operator} requires a value")]
    MissingValue {
        /// The operator.
        operator: &'static str,
    },
    /// The operator takes no value and one was given.
    #[error("{operator} takes no value")]
    UnexpectedValue {
        /// The operator.
        operator: &'static str,
    },
    /// The operator needs a non-negative integer value.
    #[error("{operator} value must be a non-negative integer, got {value:?}")]
    NotAnInteger {
        /// The operator.
        operator: &'static str,
        /// The value given.
        value: String,
    },
    /// The value of `LIKE`/`UNLIKE` is not a regular expression.
    #[error("{operator} value {value:?} is not a valid regular expression: {reason}")]
    InvalidRegex {
        /// The operator.
        operator: &'static str,
        /// The value given.
        value: String,
        /// The regex parser's complaint.
        reason: String,
    },
}

impl Constraint {
    /// A constraint from its parts.
    pub fn new(field: &str, operator: &str, value: Option<&str>) -> Self {
        Self {
            field: field.to_owned(),
            operator: ConstraintOperator::from(operator),
            value: value.map(str::to_owned),
        }
    }

    /// Checks the value against the operator and gives the typed constraint. An empty third
    /// element counts as absent (Marathon writes `["hostname", "UNIQUE", ""]`).
    pub fn parse(&self) -> Result<ParsedConstraint, ConstraintError> {
        if self.field.is_empty() {
            return Err(ConstraintError::EmptyField);
        }
        let value = self.value.as_deref().filter(|value| !value.is_empty());
        let name = operator_name(&self.operator);
        let required = || value.ok_or(ConstraintError::MissingValue { operator: name });
        let integer = |value: &str| {
            value
                .parse::<u32>()
                .map_err(|_| ConstraintError::NotAnInteger {
                    operator: name,
                    value: value.to_owned(),
                })
        };
        let rule = match &self.operator {
            ConstraintOperator::Unique => match value {
                None => ConstraintRule::Unique,
                Some(_) => return Err(ConstraintError::UnexpectedValue { operator: name }),
            },
            ConstraintOperator::Cluster => ConstraintRule::Cluster(value.map(str::to_owned)),
            ConstraintOperator::GroupBy => ConstraintRule::GroupBy(value.map(integer).transpose()?),
            ConstraintOperator::Like => ConstraintRule::Like(FullMatch::new(name, required()?)?),
            ConstraintOperator::Unlike => {
                ConstraintRule::Unlike(FullMatch::new(name, required()?)?)
            }
            ConstraintOperator::MaxPer => ConstraintRule::MaxPer(integer(required()?)?),
            ConstraintOperator::Is => ConstraintRule::Is(required()?.to_owned()),
            ConstraintOperator::Other(other) => {
                return Err(ConstraintError::UnknownOperator(other.clone()));
            }
        };
        Ok(ParsedConstraint {
            field: self.field.clone(),
            rule,
        })
    }
}

impl FullMatch {
    fn new(operator: &'static str, source: &str) -> Result<Self, ConstraintError> {
        let regex = Regex::new(&format!("^(?:{source})$")).map_err(|error| {
            ConstraintError::InvalidRegex {
                operator,
                value: source.to_owned(),
                reason: error.to_string(),
            }
        })?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    /// Whether `value` matches entirely.
    pub fn matches(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }

    /// The regex as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

fn operator_name(operator: &ConstraintOperator) -> &'static str {
    match operator {
        ConstraintOperator::Unique => "UNIQUE",
        ConstraintOperator::Cluster => "CLUSTER",
        ConstraintOperator::GroupBy => "GROUP_BY",
        ConstraintOperator::Like => "LIKE",
        ConstraintOperator::Unlike => "UNLIKE",
        ConstraintOperator::MaxPer => "MAX_PER",
        ConstraintOperator::Is => "IS",
        ConstraintOperator::Other(_) => "unknown operator",
    }
}

impl Serialize for Constraint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = if self.value.is_some() { 3 } else { 2 };
        let mut seq = serializer.serialize_seq(Some(len))?;
        seq.serialize_element(&self.field)?;
        seq.serialize_element(self.operator.as_str())?;
        if let Some(value) = &self.value {
            seq.serialize_element(value)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Constraint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(ConstraintVisitor)
    }
}

struct ConstraintVisitor;

impl<'de> Visitor<'de> for ConstraintVisitor {
    type Value = Constraint;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a constraint [field, OPERATOR] or [field, OPERATOR, value] of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let field: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let operator: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let value: Option<String> = seq.next_element()?;
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(4, &self));
        }
        Ok(Constraint {
            field,
            operator: ConstraintOperator::from(operator.as_str()),
            value,
        })
    }
}

impl JsonSchema for Constraint {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Constraint")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A placement constraint [field, OPERATOR] or [field, OPERATOR, value]; \
                OPERATOR is one of UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER, IS.",
            "type": "array",
            "items": { "type": "string" },
            "minItems": 2,
            "maxItems": 3,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(json: &str, expect: Result<&str, &str>) {
        let constraint: Constraint = serde_json::from_str(json).unwrap();
        assert_eq!(
            serde_json::to_string(&constraint).unwrap(),
            json,
            "round trip"
        );
        match (constraint.parse(), expect) {
            (Ok(parsed), Ok(expect)) => assert_eq!(format!("{:?}", parsed.rule), expect, "{json}"),
            (Err(error), Err(fragment)) => {
                assert!(error.to_string().contains(fragment), "{json}: {error}")
            }
            (got, expect) => panic!("{json}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn each_operator_checks_its_value() {
        check(r#"["hostname","UNIQUE"]"#, Ok("Unique"));
        check(r#"["hostname","UNIQUE",""]"#, Ok("Unique"));
        check(r#"["hostname","UNIQUE","x"]"#, Err("UNIQUE takes no value"));
        check(r#"["rack","CLUSTER","r1"]"#, Ok(r#"Cluster(Some("r1"))"#));
        check(r#"["rack","CLUSTER"]"#, Ok("Cluster(None)"));
        check(r#"["@zone","GROUP_BY"]"#, Ok("GroupBy(None)"));
        check(r#"["@zone","GROUP_BY","3"]"#, Ok("GroupBy(Some(3))"));
        check(
            r#"["@zone","GROUP_BY","three"]"#,
            Err("non-negative integer"),
        );
        check(r#"["hostname","MAX_PER","2"]"#, Ok("MaxPer(2)"));
        check(
            r#"["hostname","MAX_PER","-1"]"#,
            Err("non-negative integer"),
        );
        check(r#"["hostname","MAX_PER"]"#, Err("MAX_PER requires a value"));
        check(r#"["level","IS","0.8"]"#, Ok(r#"Is("0.8")"#));
        check(r#"["level","IS"]"#, Err("IS requires a value"));
        check(
            r#"["hostname","LIKE","srv[*"]"#,
            Err("not a valid regular expression"),
        );
        check(r#"["hostname","LIKE"]"#, Err("LIKE requires a value"));
        check(
            r#"["hostname","UNLIKE","("]"#,
            Err("not a valid regular expression"),
        );
        check(
            r#"["hostname","NEAR","x"]"#,
            Err("unknown constraint operator \"NEAR\""),
        );
        check(r#"["","UNIQUE"]"#, Err("field must not be empty"));
    }

    #[test]
    fn like_matches_whole_values() {
        let constraint: Constraint =
            serde_json::from_str(r#"["hostname","LIKE","srv2.*"]"#).unwrap();
        let ConstraintRule::Like(regex) = constraint.parse().unwrap().rule else {
            panic!("not LIKE");
        };
        assert!(regex.matches("srv2.example.com"));
        assert!(!regex.matches("xsrv2"));
        assert_eq!(regex.as_str(), "srv2.*");
        let constraint = Constraint::new("hostname", "LIKE", Some("a|b"));
        let ConstraintRule::Like(regex) = constraint.parse().unwrap().rule else {
            panic!("not LIKE");
        };
        assert!(regex.matches("a") && regex.matches("b") && !regex.matches("ab"));
    }

    #[test]
    fn malformed_arrays_are_decode_errors() {
        for json in [
            r#"["hostname"]"#,
            r#"["a","UNIQUE","b","c"]"#,
            r#"["a",1]"#,
            r#""a""#,
        ] {
            assert!(serde_json::from_str::<Constraint>(json).is_err(), "{json}");
        }
    }
}
