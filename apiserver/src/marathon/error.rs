//! Marathon's error bodies: `{message, details:[{path, errors}]}` (400, 422), `{message}`
//! (404 for unknown apps, tasks and deployments, 409) and `{message, deployments:[{id}]}` (409, app locked), and the one translation
//! from the API server's [`ApiError`] into them. Field paths of the schemas' validation
//! (`spec.container.docker.image`, `spec.healthChecks[0].portIndex`) become Marathon's JSON
//! paths (`/container/docker/image`, `/healthChecks(0)/portIndex`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pacer_schemas::DecodeError;
use pacer_schemas::field_error::FieldError;
use serde_json::{Value, json};

use crate::error::ApiError;

/// Marathon's message when a change hits an app that a running deployment rolls out.
pub const LOCKED_MESSAGE: &str = "App is locked by one or more deployments. Override with the \
                                  option '?force=true'.";

/// A failed `/v2` request, answered in Marathon's shape.
#[derive(Debug, thiserror::Error)]
pub enum MarathonError {
    /// 404 `{message}`.
    #[error("{0}")]
    NotFound(String),
    /// 400 `{message: "Invalid JSON", details}`: not JSON, or JSON of the wrong type.
    #[error("Invalid JSON: {path}: {error}")]
    InvalidJson {
        /// Marathon JSON path of the problem (`/` for the document).
        path: String,
        /// What was wrong.
        error: String,
    },
    /// 422 `{message: "Object is not valid", details}`.
    #[error("Object is not valid")]
    Invalid {
        /// `(path, errors)` per offending field.
        details: Vec<(String, Vec<String>)>,
    },
    /// 409 `{message, deployments:[{id}]}`: the app is locked by running deployments.
    #[error("{LOCKED_MESSAGE}")]
    Locked {
        /// Names (ids) of the running deployments.
        deployments: Vec<String>,
    },
    /// 409 `{message}` (e.g. the app already exists).
    #[error("{0}")]
    Conflict(String),
    /// 400 `{message}`: a bad query parameter or id.
    #[error("{0}")]
    BadRequest(String),
    /// Any other failure of the API server's write path, with its HTTP status.
    #[error("{message}")]
    Other {
        /// HTTP status.
        code: StatusCode,
        /// Message for the client.
        message: String,
    },
}

impl MarathonError {
    /// A 500: the server's own state is not what it should be (a stored object that does not
    /// decode, a kind that is not served).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Other {
            code: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    /// A 422 for one field.
    pub fn invalid(path: &str, error: impl Into<String>) -> Self {
        Self::Invalid {
            details: vec![(path.to_owned(), vec![error.into()])],
        }
    }

    /// The HTTP status.
    pub fn code(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::InvalidJson { .. } | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Locked { .. } | Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Other { code, .. } => *code,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let details = |details: &[(String, Vec<String>)]| -> Value {
            details
                .iter()
                .map(|(path, errors)| json!({"path": path, "errors": errors}))
                .collect()
        };
        match self {
            Self::InvalidJson { path, error } => json!({
                "message": "Invalid JSON",
                "details": [{"path": path, "errors": [error]}],
            }),
            Self::Invalid { details: list } => {
                json!({"message": "Object is not valid", "details": details(list)})
            }
            Self::Locked { deployments } => json!({
                "message": locked_message(deployments),
                "deployments": deployments.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
            }),
            other => json!({"message": other.to_string()}),
        }
    }

    /// Translates a failure of the shared write path for the app `app_id` (a Marathon id).
    /// A deployment-lock conflict becomes [`MarathonError::Locked`] only through
    /// [`super::apps`], which knows the running deployments; here it stays a plain 409.
    pub fn from_api(error: ApiError, app_id: &str) -> Self {
        match error {
            ApiError::NotFound { .. } => Self::NotFound(app_not_found(app_id)),
            ApiError::AlreadyExists { .. } => {
                Self::Conflict(format!("An app with id [{app_id}] already exists."))
            }
            ApiError::Invalid { errors, .. } => Self::Invalid {
                details: field_details(&errors),
            },
            ApiError::Decode(DecodeError::UnknownFields { paths }) => Self::Invalid {
                details: paths
                    .iter()
                    .map(|path| (marathon_path(path), vec!["unknown field".to_owned()]))
                    .collect(),
            },
            ApiError::Decode(DecodeError::Type { path, message }) => Self::InvalidJson {
                path: marathon_path(&path),
                error: message,
            },
            ApiError::Decode(syntax @ DecodeError::Syntax { .. }) => Self::InvalidJson {
                path: "/".to_owned(),
                error: syntax.to_string(),
            },
            ApiError::BadRequest(message) => Self::BadRequest(message),
            ApiError::Conflict { detail, .. } => Self::Conflict(detail),
            other => {
                let code = StatusCode::from_u16(other.to_status().http_code())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                if code.is_server_error() {
                    tracing::error!(error = %other, app = app_id, "Marathon API request failed");
                }
                Self::Other {
                    code,
                    message: other.to_string(),
                }
            }
        }
    }
}

impl From<ApiError> for MarathonError {
    fn from(error: ApiError) -> Self {
        Self::from_api(error, "")
    }
}

impl From<pacer_store::StoreError> for MarathonError {
    fn from(error: pacer_store::StoreError) -> Self {
        Self::from(ApiError::from(error))
    }
}

impl IntoResponse for MarathonError {
    fn into_response(self) -> Response {
        super::json(self.code(), &self.body())
    }
}

/// Marathon's 404 message for an app.
pub fn app_not_found(app_id: &str) -> String {
    format!("App '{app_id}' does not exist")
}

/// Marathon's 404 message for a task.
pub fn task_not_found(task_id: &str) -> String {
    format!("Task '{task_id}' does not exist")
}

/// Marathon's 404 message for a deployment.
pub fn deployment_not_found(deployment_id: &str) -> String {
    format!("DeploymentPlan {deployment_id} does not exist")
}

fn locked_message(deployments: &[String]) -> String {
    match deployments.first() {
        Some(id) => format!("{LOCKED_MESSAGE} View details at '/v2/deployments/{id}'."),
        None => LOCKED_MESSAGE.to_owned(),
    }
}

/// Groups field errors by Marathon path, keeping their order.
fn field_details(errors: &[FieldError]) -> Vec<(String, Vec<String>)> {
    let mut details: Vec<(String, Vec<String>)> = Vec::new();
    for error in errors {
        let path = marathon_path(&error.field);
        let message = error.message();
        match details.iter_mut().find(|(known, _)| *known == path) {
            Some((_, messages)) => messages.push(message),
            None => details.push((path, vec![message])),
        }
    }
    details
}

/// Maps a schema field path to Marathon's JSON path: `spec.` goes (the app is the spec),
/// `metadata.name`/`metadata.namespace` are the `/id`, `.` becomes `/`, a list index `[0]`
/// becomes `(0)` and a map key `[FOO]` becomes `/FOO`.
pub fn marathon_path(field: &str) -> String {
    if field.starts_with("metadata.name") || field.starts_with("metadata.namespace") {
        return "/id".to_owned();
    }
    let field = field.strip_prefix("spec").unwrap_or(field);
    let field = field.strip_prefix('.').unwrap_or(field);
    let mut path = String::from("/");
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => path.push('/'),
            '[' => {
                let mut inner = String::new();
                for next in chars.by_ref() {
                    if next == ']' {
                        break;
                    }
                    inner.push(next);
                }
                if !inner.is_empty() && inner.bytes().all(|byte| byte.is_ascii_digit()) {
                    path.push_str(&format!("({inner})"));
                } else {
                    if !path.ends_with('/') {
                        path.push('/');
                    }
                    path.push_str(&inner);
                }
            }
            other => path.push(other),
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_paths_become_marathon_paths() {
        for (field, expect) in [
            ("spec.container.docker.image", "/container/docker/image"),
            (
                "spec.healthChecks[0].portIndex",
                "/healthChecks(0)/portIndex",
            ),
            ("spec.env[FOO]", "/env/FOO"),
            ("spec.cpus", "/cpus"),
            ("spec", "/"),
            ("metadata.name", "/id"),
            ("spec.constraints[1][2]", "/constraints(1)(2)"),
        ] {
            assert_eq!(marathon_path(field), expect, "{field}");
        }
    }
}
