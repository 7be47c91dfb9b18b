//! Strict decoding: JSON into a typed object, reporting every unknown field with its full
//! path (as kubectl's `--validate=strict` / `fieldValidation=Strict` expects) and a type error
//! with the path where it happened.
//!
//! Unknown fields are found with `serde_ignored` (every key the types do not declare), type
//! errors located with `serde_path_to_error`. Paths are rendered as Kubernetes renders them:
//! `spec.healthChecks[0].portIndex`.
//!
//! Known gap: serde's derived structs also accept a JSON array of their fields in declaration
//! order (`"upgradeStrategy": [0.5, 1]`); Kubernetes would reject it. Such input still has to
//! pass validation, so it cannot smuggle in anything an object could not.

use serde::de::DeserializeOwned;

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON at all (or truncated).
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the parser found.
        message: String,
    },
    /// Valid JSON of the wrong shape at `path` (a string where a number belongs, a missing
    /// required field, a duplicate key).
    #[error("{}: {message}", display_path(.path))]
    Type {
        /// Where it happened, e.g. `spec.instances`; empty for the document itself.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// Fields the type does not declare, every one of them.
    #[error("strict decoding error: {}", unknown_list(.paths))]
    UnknownFields {
        /// Paths of the unknown fields, in document order.
        paths: Vec<String>,
    },
}

/// Decodes `json` into `T`, failing on unknown fields.
pub fn decode_strict<T: DeserializeOwned>(json: &[u8]) -> Result<T, DecodeError> {
    let (value, unknown) = decode_reporting_unknown(json)?;
    if unknown.is_empty() {
        Ok(value)
    } else {
        Err(DecodeError::UnknownFields { paths: unknown })
    }
}

/// Decodes `json` into `T`, returning the paths of unknown fields (which were dropped)
/// instead of failing on them — for `fieldValidation=Warn` and `Ignore`.
pub fn decode_reporting_unknown<T: DeserializeOwned>(
    json: &[u8],
) -> Result<(T, Vec<String>), DecodeError> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let (value, unknown) = decode_from(&mut deserializer)?;
    deserializer.end().map_err(syntax)?;
    Ok((value, unknown))
}

/// Strict decoding of an already-parsed document (e.g. YAML converted to JSON).
pub fn decode_value_strict<T: DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, DecodeError> {
    let (value, unknown) = decode_from(value)?;
    if unknown.is_empty() {
        Ok(value)
    } else {
        Err(DecodeError::UnknownFields { paths: unknown })
    }
}

fn decode_from<'de, D, T>(deserializer: D) -> Result<(T, Vec<String>), DecodeError>
where
    D: serde::Deserializer<'de, Error = serde_json::Error>,
    T: serde::Deserialize<'de>,
{
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(render_ignored(&path));
    let ignoring = serde_ignored::Deserializer::new(deserializer, &mut record);
    let value = serde_path_to_error::deserialize(ignoring).map_err(|error| {
        let path = render_tracked(error.path());
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            syntax(inner)
        } else {
            DecodeError::Type {
                path,
                message: strip_position(&inner),
            }
        }
    })?;
    Ok((value, unknown))
}

impl DecodeError {
    /// The unknown-field paths, if that is what went wrong.
    pub fn unknown_fields(&self) -> &[String] {
        match self {
            Self::UnknownFields { paths } => paths,
            _ => &[],
        }
    }
}

fn syntax(error: serde_json::Error) -> DecodeError {
    DecodeError::Syntax {
        line: error.line(),
        column: error.column(),
        message: strip_position(&error),
    }
}

/// serde_json appends " at line L column C" to its messages; the path says more.
fn strip_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message,
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "<document>" } else { path }
}

fn unknown_list(paths: &[String]) -> String {
    paths
        .iter()
        .map(|path| format!("unknown field \"{path}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders serde_ignored's path: struct fields and map keys joined by `.`, indexes in `[]`.
fn render_ignored(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    let mut out = String::new();
    fn walk(path: &Path<'_>, out: &mut String) {
        match path {
            Path::Root => {}
            Path::Seq { parent, index } => {
                walk(parent, out);
                out.push_str(&format!("[{index}]"));
            }
            Path::Map { parent, key } => {
                walk(parent, out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    walk(path, &mut out);
    out
}

/// Renders serde_path_to_error's path the same way.
fn render_tracked(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}
