//! `Status`: the body of every error response (and of some successful deletes), in the shape
//! of Kubernetes' `metav1.Status`, with constructors for each situation the API server meets so
//! that `reason`, `code`, `message` and `details` read exactly as kubectl and kube-rs expect
//! (`Error from server (NotFound): apps.pacer.dev "web" not found`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::decode::DecodeError;
use crate::field_error::FieldError;
use crate::meta::ListMeta;
use crate::resource::{Resource, group_kind, group_resource};
use crate::wire_enum::wire_enum;

/// `apiVersion` of a Status.
pub const STATUS_API_VERSION: &str = "v1";

wire_enum! {
    /// Outcome of an operation.
    pub enum StatusOutcome {
        /// It worked.
        Success = "Success",
        /// It did not.
        Failure = "Failure",
    }
}

wire_enum! {
    /// Machine-readable reason of a failure (Kubernetes' `StatusReason`); clients classify
    /// errors by it before the HTTP code.
    pub enum StatusReason {
        /// 400: malformed request or body.
        BadRequest = "BadRequest",
        /// 401: no or bad credentials.
        Unauthorized = "Unauthorized",
        /// 403: not allowed.
        Forbidden = "Forbidden",
        /// 404: the object or collection does not exist.
        NotFound = "NotFound",
        /// 405: the resource does not support the verb.
        MethodNotAllowed = "MethodNotAllowed",
        /// 406: no acceptable response type.
        NotAcceptable = "NotAcceptable",
        /// 409: an object with that name exists.
        AlreadyExists = "AlreadyExists",
        /// 409: stale resourceVersion or another writer won.
        Conflict = "Conflict",
        /// 410: the resource version or continue token was compacted away.
        Expired = "Expired",
        /// 410: the resource is gone.
        Gone = "Gone",
        /// 413: the body is too large.
        RequestEntityTooLarge = "RequestEntityTooLarge",
        /// 415: unsupported content type (e.g. strategic merge patch).
        UnsupportedMediaType = "UnsupportedMediaType",
        /// 422: validation failed; see `details.causes`.
        Invalid = "Invalid",
        /// 429: slow down; see `details.retryAfterSeconds`.
        TooManyRequests = "TooManyRequests",
        /// 500: a bug or an unexpected failure.
        InternalError = "InternalError",
        /// 503: the server cannot serve right now.
        ServiceUnavailable = "ServiceUnavailable",
        /// 504: the operation did not finish in time.
        Timeout = "Timeout",
    }
}

/// The body of an error response (Kubernetes' `metav1.Status`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Status")]
pub struct Status {
    /// `v1`.
    #[serde(default)]
    pub api_version: String,
    /// `Status`.
    #[serde(default)]
    pub kind: String,
    /// Empty list metadata.
    #[serde(default)]
    pub metadata: ListMeta,
    /// `Success` or `Failure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusOutcome>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Machine-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<StatusReason>,
    /// The object concerned and, for `Invalid`, one cause per field error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    /// HTTP status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
}

/// The object a Status is about, and the causes of a failure.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    /// Name of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// API group of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Resource (for most reasons) or kind (for `Invalid`), as Kubernetes fills it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// UID of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// One entry per field error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    /// Seconds to wait before retrying (429, 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<i32>,
}

/// One cause of a failure: which field, what kind of problem, and the message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, … or
    /// `FieldValueUnknown` for strict decoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Path of the field, e.g. `spec.healthChecks[0].portIndex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Status {
    /// A `Success` status (e.g. for a delete that returns no object).
    pub fn success() -> Self {
        Self {
            status: Some(StatusOutcome::Success),
            ..Self::typed()
        }
    }

    /// A `Failure` with the given code, reason and message.
    pub fn failure(code: u16, reason: StatusReason, message: impl Into<String>) -> Self {
        Self {
            status: Some(StatusOutcome::Failure),
            message: Some(message.into()),
            reason: Some(reason),
            code: Some(i32::from(code)),
            ..Self::typed()
        }
    }

    /// 404 `NotFound` for object `name` of kind `K`.
    pub fn not_found<K: Resource>(name: &str) -> Self {
        Self::failure(
            404,
            StatusReason::NotFound,
            format!("{} \"{name}\" not found", group_resource::<K>()),
        )
        .with_details(resource_details::<K>(name))
    }

    /// 409 `AlreadyExists` for object `name` of kind `K`.
    pub fn already_exists<K: Resource>(name: &str) -> Self {
        Self::failure(
            409,
            StatusReason::AlreadyExists,
            format!("{} \"{name}\" already exists", group_resource::<K>()),
        )
        .with_details(resource_details::<K>(name))
    }

    /// 409 `Conflict`: the object changed since the client read it.
    pub fn conflict<K: Resource>(name: &str, detail: &str) -> Self {
        Self::failure(
            409,
            StatusReason::Conflict,
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {detail}",
                group_resource::<K>()
            ),
        )
        .with_details(resource_details::<K>(name))
    }

    /// 409 `Conflict` for a stale `resourceVersion`, worded as Kubernetes words it.
    pub fn stale<K: Resource>(name: &str) -> Self {
        Self::conflict::<K>(
            name,
            "the object has been modified; please apply your changes to the latest version and \
             try again",
        )
    }

    /// 422 `Invalid` with one cause per field error.
    pub fn invalid<K: Resource>(name: &str, errors: &[FieldError]) -> Self {
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
        Self::failure(
            422,
            StatusReason::Invalid,
            format!("{} \"{name}\" is invalid: {listed}", group_kind::<K>()),
        )
        .with_details(StatusDetails {
            name: Some(name.to_owned()),
            group: Some(K::GROUP.to_owned()),
            kind: Some(K::KIND.to_owned()),
            causes,
            ..StatusDetails::default()
        })
    }

    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::failure(400, StatusReason::BadRequest, message)
    }

    /// 400 `BadRequest` for a body that failed to decode; unknown fields become causes with
    /// reason `FieldValueUnknown`, a type error a `FieldValueInvalid` cause at its path.
    pub fn from_decode_error(error: &DecodeError) -> Self {
        let causes = match error {
            DecodeError::Syntax { .. } => Vec::new(),
            DecodeError::Type { path, message } => vec![StatusCause {
                reason: Some("FieldValueInvalid".to_owned()),
                message: Some(message.clone()),
                field: Some(path.clone()),
            }],
            DecodeError::UnknownFields { paths } => paths
                .iter()
                .map(|path| StatusCause {
                    reason: Some("FieldValueUnknown".to_owned()),
                    message: Some(format!("unknown field \"{path}\"")),
                    field: Some(path.clone()),
                })
                .collect(),
        };
        let status = Self::bad_request(error.to_string());
        if causes.is_empty() {
            status
        } else {
            status.with_causes(causes)
        }
    }

    /// 410 `Expired`: a resource version or continue token too old to serve.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::failure(410, StatusReason::Expired, message)
    }

    /// 415 `UnsupportedMediaType`.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::failure(
            415,
            StatusReason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/merge-patch+json, application/json-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    /// 405 `MethodNotAllowed`.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::failure(405, StatusReason::MethodNotAllowed, message)
    }

    /// 401 `Unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::failure(401, StatusReason::Unauthorized, message)
    }

    /// 403 `Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::failure(403, StatusReason::Forbidden, message)
    }

    /// 429 `TooManyRequests`, retry after `seconds`.
    pub fn too_many_requests(message: impl Into<String>, seconds: i32) -> Self {
        Self::failure(429, StatusReason::TooManyRequests, message).with_details(StatusDetails {
            retry_after_seconds: Some(seconds),
            ..StatusDetails::default()
        })
    }

    /// 500 `InternalError`; the message must not leak internals.
    pub fn internal_error(message: impl Into<String>) -> Self {
        Self::failure(500, StatusReason::InternalError, message)
    }

    /// Adds details.
    #[must_use]
    pub fn with_details(mut self, details: StatusDetails) -> Self {
        self.details = Some(details);
        self
    }

    /// Adds causes to the details.
    #[must_use]
    pub fn with_causes(mut self, causes: Vec<StatusCause>) -> Self {
        self.details
            .get_or_insert_with(StatusDetails::default)
            .causes = causes;
        self
    }

    /// The HTTP status code, 500 when unset or out of range.
    pub fn http_code(&self) -> u16 {
        self.code
            .and_then(|code| u16::try_from(code).ok())
            .unwrap_or(500)
    }

    fn typed() -> Self {
        Self {
            api_version: STATUS_API_VERSION.to_owned(),
            kind: "Status".to_owned(),
            ..Self::default()
        }
    }
}

fn resource_details<K: Resource>(name: &str) -> StatusDetails {
    StatusDetails {
        name: Some(name.to_owned()),
        group: Some(K::GROUP.to_owned()),
        kind: Some(K::PLURAL.to_owned()),
        ..StatusDetails::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::app::App;
    use crate::field_error::FieldPath;

    #[test]
    fn not_found_reads_like_kubernetes() {
        assert_eq!(
            serde_json::to_value(Status::not_found::<App>("web")).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "message": "apps.pacer.dev \"web\" not found", "reason": "NotFound",
                "details": {"name": "web", "group": "pacer.dev", "kind": "apps"}, "code": 404
            })
        );
        assert_eq!(Status::already_exists::<App>("web").http_code(), 409);
        assert!(Status::stale::<App>("web").message.unwrap().starts_with(
            "Operation cannot be fulfilled on apps.pacer.dev \"web\": the object has been modified"
        ));
    }

    #[test]
    fn invalid_lists_every_cause() {
        let spec = FieldPath::new("spec");
        let errors = [
            FieldError::invalid(&spec.child("cpus"), 0, "must be at least 0.001"),
            FieldError::required(&spec.child("cmd"), ""),
        ];
        let status = Status::invalid::<App>("web", &errors);
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "message": "App.pacer.dev \"web\" is invalid: [spec.cpus: Invalid value: 0: must be at least 0.001, spec.cmd: Required value]",
                "reason": "Invalid",
                "details": {"name": "web", "group": "pacer.dev", "kind": "App", "causes": [
                    {"reason": "FieldValueInvalid", "message": "Invalid value: 0: must be at least 0.001", "field": "spec.cpus"},
                    {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.cmd"}
                ]},
                "code": 422
            })
        );
        let single = Status::invalid::<App>("web", &errors[..1]);
        assert_eq!(
            single.message.as_deref(),
            Some(
                "App.pacer.dev \"web\" is invalid: spec.cpus: Invalid value: 0: must be at least 0.001"
            )
        );
    }

    #[test]
    fn statuses_decode_back() {
        let status = Status::too_many_requests("slow down", 3);
        let back: Status = serde_json::from_value(serde_json::to_value(&status).unwrap()).unwrap();
        assert_eq!(back, status);
        assert_eq!(back.details.unwrap().retry_after_seconds, Some(3));
        assert_eq!(Status::success().status, Some(StatusOutcome::Success));
        assert_eq!(Status::default().http_code(), 500);
    }
}
