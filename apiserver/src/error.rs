//! `ApiError`: every way a request can fail, and the one place (`IntoResponse`) where a failure
//! becomes an HTTP response carrying a Kubernetes `Status` (reason, code, details, causes),
//! worded as the real API server words it so kubectl and kube-rs classify it correctly.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pacer_schemas::decode::DecodeError;
use pacer_schemas::field_error::FieldError;
use pacer_schemas::selector::SelectorError;
use pacer_schemas::status::{StatusCause, StatusDetails, StatusReason};
use pacer_schemas::{GROUP, Status};
use pacer_store::StoreError;

use crate::kinds::KindDef;
use crate::managed::Conflict;

/// Why a request failed. Each variant maps onto one `Status` reason and HTTP code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404: the object does not exist.
    #[error("{} \"{name}\" not found", .kind.group_resource())]
    NotFound {
        /// Kind of the object.
        kind: &'static KindDef,
        /// Its name.
        name: String,
    },
    /// 404: no such URL (unknown resource, wrong scope).
    #[error("the server could not find the requested resource")]
    RouteNotFound,
    /// 409: an object with that name exists.
    #[error("{} \"{name}\" already exists", .kind.group_resource())]
    AlreadyExists {
        /// Kind of the object.
        kind: &'static KindDef,
        /// Its name.
        name: String,
    },
    /// 409: a stale `resourceVersion`, a failed precondition, or another writer won.
    #[error("Operation cannot be fulfilled on {} \"{name}\": {detail}", .kind.group_resource())]
    Conflict {
        /// Kind of the object.
        kind: &'static KindDef,
        /// Its name.
        name: String,
        /// What conflicted.
        detail: String,
    },
    /// 409: a server-side apply would change fields other managers own (without `force`).
    #[error("{}", apply_conflict_message(.conflicts))]
    ApplyConflict {
        /// Kind of the object.
        kind: &'static KindDef,
        /// Its name.
        name: String,
        /// Every conflicting field with its owner.
        conflicts: Vec<Conflict>,
    },
    /// 422: validation failed; one cause per field error.
    #[error("{}.{GROUP} \"{name}\" is invalid", .kind.kind)]
    Invalid {
        /// Kind of the object.
        kind: &'static KindDef,
        /// Its name.
        name: String,
        /// Every field error.
        errors: Vec<FieldError>,
    },
    /// 400: the body did not decode (syntax, type, or unknown fields under `Strict`).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// 400: a `labelSelector` that does not parse.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// 400: a malformed request (bad query parameter, namespace or name mismatch, bad YAML).
    #[error("{0}")]
    BadRequest(String),
    /// 405: the resource does not support this verb.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 410: a resource version or continue token that was compacted away.
    #[error("{0}")]
    Expired(String),
    /// 413: the request body or the stored object is too large.
    #[error("{0}")]
    TooLarge(String),
    /// 415: an unsupported content type (e.g. strategic merge patch).
    #[error("{message}")]
    UnsupportedMediaType {
        /// The full message (names the accepted types).
        message: String,
    },
    /// 503: the store cannot be reached; retry later.
    #[error("the storage backend is unavailable, retry later")]
    Unavailable,
    /// 504: the request could not finish in time (e.g. a resource version from the future).
    #[error("{0}")]
    Timeout(String),
    /// 500: a bug or an unexpected failure; the text is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Maps a store failure on object `name` of `kind`.
    pub fn from_store(error: StoreError, kind: &'static KindDef, name: &str) -> Self {
        match error {
            StoreError::NotFound { .. } => Self::NotFound {
                kind,
                name: name.to_owned(),
            },
            StoreError::AlreadyExists { .. } => Self::AlreadyExists {
                kind,
                name: name.to_owned(),
            },
            StoreError::Conflict { .. } => Self::stale(kind, name),
            other => Self::from(other),
        }
    }

    /// 409 for a stale `resourceVersion`, worded as Kubernetes words it.
    pub fn stale(kind: &'static KindDef, name: &str) -> Self {
        Self::Conflict {
            kind,
            name: name.to_owned(),
            detail: "the object has been modified; please apply your changes to the latest \
                     version and try again"
                .to_owned(),
        }
    }

    /// The `Status` this error is answered with.
    pub fn to_status(&self) -> Status {
        let message = self.to_string();
        match self {
            Self::NotFound { kind, name } => Status::failure(404, StatusReason::NotFound, message)
                .with_details(resource_details(kind, name)),
            Self::RouteNotFound => Status::failure(404, StatusReason::NotFound, message),
            Self::AlreadyExists { kind, name } => {
                Status::failure(409, StatusReason::AlreadyExists, message)
                    .with_details(resource_details(kind, name))
            }
            Self::Conflict { kind, name, .. } => {
                Status::failure(409, StatusReason::Conflict, message)
                    .with_details(resource_details(kind, name))
            }
            Self::ApplyConflict {
                kind,
                name,
                conflicts,
            } => {
                Status::failure(409, StatusReason::Conflict, message).with_details(StatusDetails {
                    causes: conflicts
                        .iter()
                        .map(|conflict| StatusCause {
                            reason: Some("FieldManagerConflict".to_owned()),
                            message: Some(format!(
                                "conflict with \"{}\" using {}",
                                conflict.manager,
                                pacer_schemas::API_VERSION
                            )),
                            field: Some(conflict.field.clone()),
                        })
                        .collect(),
                    ..resource_details(kind, name)
                })
            }
            Self::Invalid { kind, name, errors } => invalid_status(kind, name, errors),
            Self::Decode(error) => Status::from_decode_error(error),
            Self::BadRequest(_) | Self::Selector(_) => Status::bad_request(message),
            Self::MethodNotAllowed(_) => Status::method_not_allowed(message),
            Self::Expired(_) => Status::expired(message),
            Self::TooLarge(_) => Status::failure(413, StatusReason::RequestEntityTooLarge, message),
            Self::UnsupportedMediaType { .. } => {
                Status::failure(415, StatusReason::UnsupportedMediaType, message)
            }
            Self::Unavailable => Status::failure(503, StatusReason::ServiceUnavailable, message)
                .with_details(StatusDetails {
                    retry_after_seconds: Some(1),
                    ..StatusDetails::default()
                }),
            Self::Timeout(_) => Status::failure(504, StatusReason::Timeout, message),
            Self::Internal(_) => {
                Status::internal_error("an internal error occurred; the server log has the details")
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Expired {
                requested,
                compacted,
            } => Self::Expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StoreError::FutureRevision { requested, current } => Self::Timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )),
            StoreError::ValueTooLarge { size, limit, .. }
            | StoreError::TxnTooLarge { size, limit } => Self::TooLarge(format!(
                "the object is {size} bytes once stored, over the limit of {limit} bytes"
            )),
            StoreError::InvalidContinue(reason) => {
                Self::BadRequest(format!("invalid continue token: {reason}"))
            }
            StoreError::Unavailable { .. } => Self::Unavailable,
            other => Self::Internal(format!("store: {other}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(detail) => tracing::error!(error = %detail, "request failed"),
            Self::Unavailable => tracing::warn!("request failed: store unavailable"),
            _ => tracing::debug!(error = %self, "request rejected"),
        }
        let status = self.to_status();
        status_response(&status)
    }
}

/// A JSON response carrying `status`, with its HTTP code.
pub fn status_response(status: &Status) -> Response {
    let code =
        StatusCode::from_u16(status.http_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(status).unwrap_or_default();
    let mut response = (code, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Kubernetes' wording: `Apply failed with 1 conflict: conflict with "a" using pacer.dev/v1:
/// .spec.instances`, grouped by manager.
fn apply_conflict_message(conflicts: &[Conflict]) -> String {
    let count = conflicts.len();
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.dedup();
    let groups: Vec<String> = managers
        .iter()
        .map(|manager| {
            let fields: Vec<&str> = conflicts
                .iter()
                .filter(|c| c.manager == *manager)
                .map(|c| c.field.as_str())
                .collect();
            match fields.as_slice() {
                [single] => format!(
                    "conflict with \"{manager}\" using {}: {single}",
                    pacer_schemas::API_VERSION
                ),
                many => format!(
                    "conflicts with \"{manager}\" using {}:\n- {}",
                    pacer_schemas::API_VERSION,
                    many.join("\n- ")
                ),
            }
        })
        .collect();
    format!(
        "Apply failed with {count} conflict{}: {}",
        if count == 1 { "" } else { "s" },
        groups.join("\n")
    )
}

fn resource_details(kind: &KindDef, name: &str) -> StatusDetails {
    StatusDetails {
        name: Some(name.to_owned()),
        group: Some(GROUP.to_owned()),
        kind: Some(kind.plural.to_owned()),
        ..StatusDetails::default()
    }
}

/// 422 `Invalid`, as `Status::invalid` builds it, for a kind known only at run time.
fn invalid_status(kind: &KindDef, name: &str, errors: &[FieldError]) -> Status {
    let listed = match errors {
        [single] => single.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let causes = errors
        .iter()
        .map(|error| StatusCause {
            reason: Some(error.kind.cause_reason().to_owned()),
            message: Some(error.message()),
            field: Some(error.field.clone()),
        })
        .collect();
    Status::failure(
        422,
        StatusReason::Invalid,
        format!("{}.{GROUP} \"{name}\" is invalid: {listed}", kind.kind),
    )
    .with_details(StatusDetails {
        name: Some(name.to_owned()),
        group: Some(GROUP.to_owned()),
        kind: Some(kind.kind.to_owned()),
        causes,
        ..StatusDetails::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use pacer_schemas::field_error::FieldPath;
    use pacer_schemas::{App, Resource};

    use super::*;
    use crate::kinds;

    #[test]
    fn statuses_match_the_schema_constructors() {
        let apps = kinds::find("apps").unwrap();
        assert_eq!(
            ApiError::NotFound {
                kind: apps,
                name: "web".into()
            }
            .to_status(),
            Status::not_found::<App>("web")
        );
        assert_eq!(
            ApiError::stale(apps, "web").to_status(),
            Status::stale::<App>("web")
        );
        let errors = vec![FieldError::required(
            &FieldPath::new("spec").child("cmd"),
            "",
        )];
        assert_eq!(
            ApiError::Invalid {
                kind: apps,
                name: "web".into(),
                errors: errors.clone()
            }
            .to_status(),
            Status::invalid::<App>("web", &errors)
        );
        assert_eq!(App::KIND, apps.kind);
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let status = ApiError::Internal("disk /secret/path corrupt".into()).to_status();
        assert_eq!(status.http_code(), 500);
        assert!(!status.message.unwrap().contains("secret"));
        let status = ApiError::from(StoreError::Unavailable {
            endpoint: "10.0.0.1:2379".into(),
            message: "refused".into(),
        })
        .to_status();
        assert_eq!(status.http_code(), 503);
        assert!(!status.message.unwrap().contains("10.0.0.1"));
    }
}
