//! Writing `f64` fields: whole numbers as JSON integers (`128`, not `128.0`).
//!
//! Marathon writes `"mem": 128`, and so do users' manifests. kubectl decodes `128` as an
//! integer and `128.0` as a float and compares them as different values, so echoing `128.0`
//! would make every `kubectl apply` of an unchanged manifest send a patch and every
//! `kubectl diff` report a change. Used with `#[serde(serialize_with = …)]`.

use serde::Serializer;

/// Largest magnitude below which every whole `f64` is exactly an `i64`.
const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53

/// Serializes a number, whole values as integers.
pub(crate) fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    let value = *value;
    if value.is_finite() && value.fract() == 0.0 && value.abs() < EXACT {
        // Exact by the check above.
        #[allow(clippy::cast_possible_truncation)]
        serializer.serialize_i64(value as i64)
    } else {
        serializer.serialize_f64(value)
    }
}

/// Serializes an optional number (only called for `Some`, with `skip_serializing_if`).
pub(crate) fn serialize_option<S: Serializer>(
    value: &Option<f64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serialize(value, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[derive(serde::Serialize)]
    struct Probe(#[serde(serialize_with = "super::serialize")] f64);

    #[test]
    fn whole_numbers_are_integers() {
        for (value, expect) in [
            (128.0, "128"),
            (0.0, "0"),
            (-3.0, "-3"),
            (0.1, "0.1"),
            (1.15, "1.15"),
            (1e300, "1e+300"),
        ] {
            assert_eq!(
                serde_json::to_string(&Probe(value)).unwrap(),
                expect,
                "{value}"
            );
        }
    }
}
