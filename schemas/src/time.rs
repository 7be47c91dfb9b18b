//! `Time`: an instant on the wire as an RFC 3339 string in UTC (`2015-09-25T15:13:48.343Z`).
//!
//! Kubernetes' `metav1.Time` and Marathon's timestamps are both RFC 3339 UTC strings with a `Z`
//! suffix (marathon-python rejects `+00:00` offsets), so that is the only form written. Any RFC
//! 3339 offset is accepted on input and normalised to UTC. Fractional seconds are written only
//! when present. Reading the clock is the caller's business: this crate does no IO.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant, serialized as an RFC 3339 UTC timestamp such as `2024-05-01T10:00:00Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(jiff::Timestamp);

/// A timestamp string that is not RFC 3339.
#[derive(Debug, thiserror::Error)]
#[error("invalid timestamp {input:?}: expected RFC 3339 such as 2024-05-01T10:00:00Z ({source})")]
pub struct TimeParseError {
    /// What was given.
    pub input: String,
    /// Why it was rejected.
    #[source]
    pub source: jiff::Error,
}

impl Time {
    /// Wraps an instant.
    pub const fn new(timestamp: jiff::Timestamp) -> Self {
        Self(timestamp)
    }

    /// The instant `seconds` after the Unix epoch, or `None` when out of range.
    pub fn from_unix_seconds(seconds: i64) -> Option<Self> {
        jiff::Timestamp::from_second(seconds).ok().map(Self)
    }

    /// The wrapped instant.
    pub const fn timestamp(self) -> jiff::Timestamp {
        self.0
    }

    /// Whole seconds since the Unix epoch.
    pub fn as_unix_seconds(self) -> i64 {
        self.0.as_second()
    }
}

impl From<jiff::Timestamp> for Time {
    fn from(timestamp: jiff::Timestamp) -> Self {
        Self(timestamp)
    }
}

impl FromStr for Time {
    type Err = TimeParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        jiff::Timestamp::from_str(input)
            .map(Self)
            .map_err(|source| TimeParseError {
                input: input.to_owned(),
                source,
            })
    }
}

impl fmt::Display for Time {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // jiff writes UTC with a `Z` and only as many fractional digits as needed.
        fmt::Display::fmt(&self.0, formatter)
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Time {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Time")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "date-time" })
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expect: Option<&str>) {
        let parsed: Result<Time, _> = serde_json::from_value(serde_json::json!(input));
        match (parsed, expect) {
            (Ok(time), Some(expect)) => {
                assert_eq!(
                    serde_json::to_value(time).unwrap(),
                    serde_json::json!(expect)
                )
            }
            (Err(_), None) => {}
            (got, expect) => panic!("{input}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn parses_rfc3339_and_writes_utc_z() {
        check("2024-05-01T10:00:00Z", Some("2024-05-01T10:00:00Z"));
        check("2015-09-25T15:13:48.343Z", Some("2015-09-25T15:13:48.343Z"));
        check("2024-05-01T12:00:00+02:00", Some("2024-05-01T10:00:00Z"));
        check("2024-05-01 10:00:00", None);
        check("yesterday", None);
        check("", None);
    }

    #[test]
    fn unix_seconds_round_trip() {
        let time = Time::from_unix_seconds(1_700_000_000).unwrap();
        assert_eq!(time.as_unix_seconds(), 1_700_000_000);
        assert_eq!(time.to_string(), "2023-11-14T22:13:20Z");
    }
}
