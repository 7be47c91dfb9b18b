//! `wire_enum!`: string enums that keep values they do not know.
//!
//! Marathon answers an unknown `killSelection` or health-check `protocol` with a 422 that names
//! the field, not with a parse error; Kubernetes does the same (`NotSupported`). So these enums
//! decode any string, keep an unknown one verbatim in `Other(String)` (it round-trips), and
//! validation rejects it with the list of supported values. Their JSON Schema lists only the
//! known values.

/// Declares a string enum with known wire values and an `Other(String)` catch-all, with
/// `Serialize`, `Deserialize`, `JsonSchema`, `Display` and `From<&str>`.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version does not know. It is kept verbatim so that it round-trips,
            /// and validation rejects it as `NotSupported`.
            Other(String),
        }

        impl $name {
            /// Every value this version knows, as written on the wire.
            pub const KNOWN: &'static [&'static str] = &[$($wire),+];

            /// The wire form.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )+
                    Self::Other(other) => other.as_str(),
                }
            }

            /// Whether this is one of [`Self::KNOWN`].
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Other(_))
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $( $wire => Self::$variant, )+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, formatter: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                formatter.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(deserializer)?;
                Ok(Self::from(value.as_ref()))
            }
        }

        impl ::schemars::JsonSchema for $name {
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                ::std::borrow::Cow::Borrowed(stringify!($name))
            }

            fn json_schema(_: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                ::schemars::json_schema!({
                    "type": "string",
                    "enum": [$($wire),+],
                })
            }

            fn inline_schema() -> bool {
                true
            }
        }
    };
}

pub(crate) use wire_enum;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    wire_enum! {
        /// Test enum.
        enum Color {
            /// Red.
            Red = "RED",
            /// Green.
            Green = "GREEN",
        }
    }

    #[test]
    fn known_and_unknown_values_round_trip() {
        for (json, expect_known) in [("\"RED\"", true), ("\"GREEN\"", true), ("\"BLUE\"", false)] {
            let color: Color = serde_json::from_str(json).unwrap();
            assert_eq!(color.is_known(), expect_known, "{json}");
            assert_eq!(serde_json::to_string(&color).unwrap(), json);
        }
        assert_eq!(Color::KNOWN, &["RED", "GREEN"]);
        assert_eq!(Color::from("RED"), Color::Red);
        assert_eq!(Color::Other("x".into()).to_string(), "x");
    }
}
