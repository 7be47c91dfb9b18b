//! Request bodies: reading them within the size limit (413 beyond it), telling JSON from YAML
//! and the patch types apart by `Content-Type`, and parsing into JSON with the line and column
//! of any syntax error (400).

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use serde_json::Value;

use crate::error::ApiError;

/// How a create or update body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json` (the default when no `Content-Type` is sent).
    Json,
    /// `application/yaml`.
    Yaml,
}

/// The kind of a PATCH body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 7386 JSON merge patch (`application/merge-patch+json`): kubectl apply, scale.
    Merge,
    /// RFC 6902 JSON patch (`application/json-patch+json`).
    Json,
    /// Server-side apply (`application/apply-patch+yaml`).
    Apply,
}

/// Reads the whole body, failing with 413 past `limit` bytes.
pub async fn read(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        if is_length_limit(&error) {
            too_large(limit)
        } else {
            ApiError::BadRequest(format!("failed to read the request body: {error}"))
        }
    })
}

/// The 413 for a body over `limit` bytes.
pub fn too_large(limit: usize) -> ApiError {
    ApiError::TooLarge(format!(
        "the request body is too large: the limit is {limit} bytes"
    ))
}

/// The format of a create/update body, from its `Content-Type` (415 for anything else).
pub fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    match media_type(headers).as_deref() {
        None | Some("application/json" | "*/*") => Ok(BodyFormat::Json),
        Some("application/yaml" | "application/x-yaml" | "text/yaml") => Ok(BodyFormat::Yaml),
        Some(other) => Err(unsupported(other)),
    }
}

/// The patch type, from the `Content-Type` of a PATCH (415 for strategic merge patch and
/// anything unknown).
pub fn patch_type(headers: &HeaderMap) -> Result<PatchType, ApiError> {
    match media_type(headers).as_deref() {
        Some("application/merge-patch+json") => Ok(PatchType::Merge),
        Some("application/json-patch+json") => Ok(PatchType::Json),
        Some("application/apply-patch+yaml" | "application/apply-patch+json") => {
            Ok(PatchType::Apply)
        }
        Some("application/strategic-merge-patch+json") => Err(ApiError::UnsupportedMediaType {
            message: "the body of the request was in an unknown format - accepted media types \
                      include: application/json-patch+json, application/merge-patch+json, \
                      application/apply-patch+yaml (strategic merge patch is not supported for \
                      pacer.dev resources, as for Kubernetes custom resources)"
                .to_owned(),
        }),
        Some(other) => Err(unsupported(other)),
        None => Err(unsupported("")),
    }
}

/// Parses a body as JSON or YAML into a JSON value; a syntax error is a 400 that says where.
pub fn parse(bytes: &[u8], format: BodyFormat) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("the request body is empty".to_owned()));
    }
    match format {
        BodyFormat::Json => serde_json::from_slice(bytes).map_err(|error| {
            ApiError::BadRequest(format!(
                "malformed JSON at line {}, column {}: {}",
                error.line(),
                error.column(),
                strip_position(&error.to_string())
            ))
        }),
        BodyFormat::Yaml => {
            let text = std::str::from_utf8(bytes).map_err(|error| {
                ApiError::BadRequest(format!("the YAML body is not UTF-8: {error}"))
            })?;
            serde_saphyr::from_str::<Value>(text).map_err(|error| {
                let location = error
                    .location()
                    .map(|at| format!(" at line {}, column {}", at.line(), at.column()))
                    .unwrap_or_default();
                ApiError::BadRequest(format!("malformed YAML{location}: {error}"))
            })
        }
    }
}

/// Parses a body that must be a JSON object.
pub fn parse_object(bytes: &[u8], format: BodyFormat) -> Result<Value, ApiError> {
    let value = parse(bytes, format)?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::BadRequest(
            "the request body must be an object".to_owned(),
        ))
    }
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    (!media.is_empty()).then_some(media)
}

fn unsupported(content_type: &str) -> ApiError {
    ApiError::UnsupportedMediaType {
        message: format!(
            "the body of the request was in an unknown format - accepted media types include: \
             application/json, application/yaml, application/merge-patch+json, \
             application/json-patch+json (got {content_type:?})"
        ),
    }
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.to_string().contains("length limit exceeded") {
            return true;
        }
        source = current.source();
    }
    false
}

fn strip_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |index| &message[..index])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        headers
    }

    #[test]
    fn formats_and_patch_types() {
        assert_eq!(body_format(&HeaderMap::new()).unwrap(), BodyFormat::Json);
        assert_eq!(
            body_format(&headers("application/json; charset=utf-8")).unwrap(),
            BodyFormat::Json
        );
        assert_eq!(
            body_format(&headers("application/yaml")).unwrap(),
            BodyFormat::Yaml
        );
        assert_eq!(
            body_format(&headers("text/plain"))
                .unwrap_err()
                .to_status()
                .http_code(),
            415
        );
        assert_eq!(
            patch_type(&headers("application/merge-patch+json")).unwrap(),
            PatchType::Merge
        );
        assert_eq!(
            patch_type(&headers("application/strategic-merge-patch+json"))
                .unwrap_err()
                .to_status()
                .http_code(),
            415
        );
    }

    #[test]
    fn syntax_errors_say_where() {
        let error = parse(b"{\n  \"a\": ,\n}", BodyFormat::Json).unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
        let error = parse(b"a: [1\nb: 2\n", BodyFormat::Yaml).unwrap_err();
        assert!(error.to_string().contains("line"), "{error}");
        assert_eq!(
            parse(b"kind: App\nspec:\n  instances: 2\n", BodyFormat::Yaml).unwrap(),
            serde_json::json!({"kind": "App", "spec": {"instances": 2}})
        );
        assert!(parse_object(b"[1]", BodyFormat::Json).is_err());
        assert!(parse(b"  ", BodyFormat::Json).is_err());
    }
}
