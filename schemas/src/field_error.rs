//! `FieldError`: one validation failure with its Kubernetes-style field path
//! (`spec.healthChecks[0].portIndex`), its kind (`Required`, `Invalid`, `NotSupported`, …) and a
//! message worded as Kubernetes' `field.Error` words it, so a 422 `Status` built from a list of
//! them reads as kubectl users expect.

use std::fmt;

use serde_json::Value;

/// What kind of rule a value broke; maps onto Kubernetes' `field.ErrorType` (the `reason` of a
/// `Status` cause).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    /// A required value is missing.
    Required,
    /// A value is malformed or out of range.
    Invalid,
    /// A value is not one of the supported values.
    NotSupported,
    /// A value that must be unique is repeated.
    Duplicate,
    /// A value is longer than allowed.
    TooLong,
    /// A list has more items than allowed.
    TooMany,
    /// A value is not allowed here (for example together with another field).
    Forbidden,
}

impl FieldErrorKind {
    /// The `Status` cause reason Kubernetes uses for this kind (`FieldValueInvalid`, …).
    pub fn cause_reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Duplicate => "FieldValueDuplicate",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Forbidden => "FieldValueForbidden",
        }
    }
}

/// A path to a field, rendered as Kubernetes renders it: `spec.env[FOO]`,
/// `spec.healthChecks[0].portIndex`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// A top-level field, e.g. `spec`.
    pub fn new(name: &str) -> Self {
        Self(name.to_owned())
    }

    /// A named child: `spec` → `spec.cpus`.
    #[must_use]
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self::new(name)
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// A list item: `spec.healthChecks` → `spec.healthChecks[0]`.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    /// A map entry: `spec.env` → `spec.env[FOO]`.
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    /// The rendered path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// One validation failure. `Display` gives `field: message`, e.g.
/// `spec.cpus: Invalid value: 0: must be at least 0.001`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// Path of the offending field.
    pub field: String,
    /// Which kind of rule was broken.
    pub kind: FieldErrorKind,
    /// The offending value, when there is one to show.
    pub bad_value: Option<Value>,
    /// What was expected.
    pub detail: String,
}

impl FieldError {
    /// A required value is missing.
    pub fn required(field: &FieldPath, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Required, None, detail)
    }

    /// A value is malformed or out of range.
    pub fn invalid(field: &FieldPath, value: impl Into<Value>, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Invalid, Some(value.into()), detail)
    }

    /// A value is not one of `supported`.
    pub fn not_supported(field: &FieldPath, value: impl Into<Value>, supported: &[&str]) -> Self {
        let detail = format!(
            "supported values: {}",
            supported
                .iter()
                .map(|value| format!("\"{value}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Self::new(
            field,
            FieldErrorKind::NotSupported,
            Some(value.into()),
            detail,
        )
    }

    /// A value that must be unique is repeated.
    pub fn duplicate(field: &FieldPath, value: impl Into<Value>) -> Self {
        Self::new(field, FieldErrorKind::Duplicate, Some(value.into()), "")
    }

    /// A value is longer than `max` characters.
    pub fn too_long(field: &FieldPath, max: usize) -> Self {
        Self::new(
            field,
            FieldErrorKind::TooLong,
            None,
            format!("may not be more than {max} bytes"),
        )
    }

    /// A list has `actual` items where at most `max` are allowed.
    pub fn too_many(field: &FieldPath, actual: usize, max: usize) -> Self {
        Self::new(
            field,
            FieldErrorKind::TooMany,
            Some(Value::from(actual)),
            format!("must have at most {max} items"),
        )
    }

    /// A value is not allowed here.
    pub fn forbidden(field: &FieldPath, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Forbidden, None, detail)
    }

    fn new(
        field: &FieldPath,
        kind: FieldErrorKind,
        bad_value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            field: field.as_str().to_owned(),
            kind,
            bad_value,
            detail: detail.into(),
        }
    }

    /// The message without the field path, as Kubernetes puts it in a `Status` cause:
    /// `Invalid value: 0: must be at least 0.001`.
    pub fn message(&self) -> String {
        let value = self.bad_value.as_ref().map(render_value);
        let (label, value) = match self.kind {
            FieldErrorKind::Required => ("Required value", None),
            FieldErrorKind::Invalid => ("Invalid value", value),
            FieldErrorKind::NotSupported => ("Unsupported value", value),
            FieldErrorKind::Duplicate => ("Duplicate value", value),
            FieldErrorKind::TooLong => ("Too long", None),
            FieldErrorKind::TooMany => ("Too many", value),
            FieldErrorKind::Forbidden => ("Forbidden", None),
        };
        let mut message = label.to_owned();
        for part in [value.as_deref(), Some(self.detail.as_str())]
            .into_iter()
            .flatten()
            .filter(|part| !part.is_empty())
        {
            message.push_str(": ");
            message.push_str(part);
        }
        message
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.field, self.message())
    }
}

impl std::error::Error for FieldError {}

/// Renders a bad value as Kubernetes does: strings quoted, numbers and booleans bare, whole
/// numbers without a fraction.
fn render_value(value: &Value) -> String {
    match value.as_f64() {
        Some(number) if value.is_f64() && number.fract() == 0.0 && number.abs() < 1e15 => {
            format!("{number:.0}")
        }
        _ => value.to_string(),
    }
}

/// Collects errors while walking an object.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    pub(crate) fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    pub(crate) fn extend(&mut self, errors: impl IntoIterator<Item = FieldError>) {
        self.0.extend(errors);
    }

    pub(crate) fn into_vec(self) -> Vec<FieldError> {
        self.0
    }

    pub(crate) fn into_result(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_kubernetes() {
        let spec = FieldPath::new("spec");
        assert_eq!(
            spec.child("healthChecks")
                .index(0)
                .child("portIndex")
                .as_str(),
            "spec.healthChecks[0].portIndex"
        );
        assert_eq!(spec.child("env").key("FOO").as_str(), "spec.env[FOO]");
        assert_eq!(FieldPath::default().child("metadata").as_str(), "metadata");
    }

    #[track_caller]
    fn check(error: FieldError, expect: &str) {
        assert_eq!(error.to_string(), expect);
    }

    #[test]
    fn messages_read_like_kubernetes() {
        let path = FieldPath::new("spec").child("cpus");
        check(
            FieldError::invalid(&path, 0, "must be at least 0.001"),
            "spec.cpus: Invalid value: 0: must be at least 0.001",
        );
        check(FieldError::required(&path, ""), "spec.cpus: Required value");
        check(
            FieldError::not_supported(&path, "X", &["A", "B"]),
            "spec.cpus: Unsupported value: \"X\": supported values: \"A\", \"B\"",
        );
        check(
            FieldError::duplicate(&path, "http"),
            "spec.cpus: Duplicate value: \"http\"",
        );
        check(
            FieldError::too_long(&path, 253),
            "spec.cpus: Too long: may not be more than 253 bytes",
        );
        check(
            FieldError::forbidden(&path, "may not be set with args"),
            "spec.cpus: Forbidden: may not be set with args",
        );
        assert_eq!(
            FieldErrorKind::NotSupported.cause_reason(),
            "FieldValueNotSupported"
        );
    }
}
