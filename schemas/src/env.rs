//! `EnvVarValue`: an App's environment variable value, either a plain string or Marathon's
//! secret reference `{"secret": "<name of an entry in spec.secrets>"}`.
//!
//! Serialized untagged, exactly as Marathon writes it. Decoding is hand-written rather than
//! serde's `untagged` so that a wrong shape gets a precise message (and an unknown key in the
//! reference object is an error, not silently dropped).

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// The value of one environment variable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvVarValue {
    /// A literal value.
    Value(String),
    /// The value of a secret declared in `spec.secrets`.
    Secret(SecretRef),
}

/// A reference to an entry of `spec.secrets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SecretRef {
    /// Name of the entry in `spec.secrets`.
    pub secret: String,
}

impl From<&str> for EnvVarValue {
    fn from(value: &str) -> Self {
        Self::Value(value.to_owned())
    }
}

impl<'de> Deserialize<'de> for EnvVarValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EnvVarVisitor)
    }
}

struct EnvVarVisitor;

impl<'de> Visitor<'de> for EnvVarVisitor {
    type Value = EnvVarValue;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string or an object {\"secret\": \"<name>\"}")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(EnvVarValue::Value(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
        Ok(EnvVarValue::Value(value))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut secret = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "secret" {
                return Err(de::Error::unknown_field(&key, &["secret"]));
            }
            if secret.is_some() {
                return Err(de::Error::duplicate_field("secret"));
            }
            secret = Some(map.next_value::<String>()?);
        }
        let secret = secret.ok_or_else(|| de::Error::missing_field("secret"))?;
        Ok(EnvVarValue::Secret(SecretRef { secret }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(json: &str, expect: Result<EnvVarValue, &str>) {
        let got: Result<EnvVarValue, _> = serde_json::from_str(json);
        match (got, expect) {
            (Ok(value), Ok(expect)) => {
                assert_eq!(value, expect);
                assert_eq!(serde_json::to_string(&value).unwrap(), json);
            }
            (Err(error), Err(fragment)) => {
                assert!(error.to_string().contains(fragment), "{error}")
            }
            (got, expect) => panic!("{json}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn strings_and_secret_references() {
        check(r#""Test""#, Ok(EnvVarValue::from("Test")));
        check(
            r#"{"secret":"/db/password"}"#,
            Ok(EnvVarValue::Secret(SecretRef {
                secret: "/db/password".into(),
            })),
        );
        check(r#"{"secret":"a","other":1}"#, Err("unknown field `other`"));
        check(r#"{}"#, Err("missing field `secret`"));
        check("12", Err("a string or an object"));
    }
}
