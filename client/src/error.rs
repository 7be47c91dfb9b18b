//! The client's error type: a server's `Status` for non-2xx answers, transport failures that
//! name the method and URL, and decoding failures.

use pacer_schemas::Status;
use pacer_schemas::status::{StatusOutcome, StatusReason};

/// Result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a non-2xx code. The `Status` is the server's own when it sent
    /// one, otherwise one made up from the HTTP code and body.
    #[error("{}", server_message(.status))]
    Api {
        /// The server's `Status` (reason, code, message, causes).
        status: Box<Status>,
        /// The request method.
        method: String,
        /// The request URL.
        url: String,
    },
    /// The request could not be sent or its answer not read (connection refused, timeout,
    /// broken stream).
    #[error("{method} {url} failed")]
    Transport {
        /// The request method.
        method: String,
        /// The request URL.
        url: String,
        /// What went wrong underneath.
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not the JSON we expected.
    #[error("decode the answer of {method} {url}")]
    Decode {
        /// The request method.
        method: String,
        /// The request URL.
        url: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A request body could not be encoded as JSON.
    #[error("encode the body of {method} {url}")]
    Encode {
        /// The request method.
        method: String,
        /// The request URL.
        url: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The configured server URL cannot be used.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("build the HTTP client")]
    Build(#[source] reqwest::Error),
    /// An operation on one object of a namespaced kind was asked without a namespace.
    #[error("{resource}: a namespace is required to {verb} one object")]
    NamespaceRequired {
        /// `<plural>.<group>`.
        resource: String,
        /// What was attempted.
        verb: &'static str,
    },
    /// An object passed to a write has no `metadata.name`.
    #[error("{resource}: the object has no metadata.name")]
    MissingName {
        /// `<plural>.<group>`.
        resource: String,
    },
    /// A fence that cannot be sent as a `Pacer-Fence` header.
    #[error(transparent)]
    InvalidFence(#[from] pacer_schemas::lease::FenceParseError),
}

impl Error {
    /// The server's `Status`, for [`Error::Api`].
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Api { status, .. } => Some(status),
            _ => None,
        }
    }

    /// The server's reason, for [`Error::Api`].
    pub fn reason(&self) -> Option<&StatusReason> {
        self.status().and_then(|status| status.reason.as_ref())
    }

    /// The HTTP code, for [`Error::Api`].
    pub fn code(&self) -> Option<u16> {
        self.status().map(Status::http_code)
    }

    /// 404 `NotFound`.
    pub fn is_not_found(&self) -> bool {
        self.reason() == Some(&StatusReason::NotFound)
            || (self.reason().is_none() && self.code() == Some(404))
    }

    /// 409 `Conflict` (stale resourceVersion).
    pub fn is_conflict(&self) -> bool {
        self.reason() == Some(&StatusReason::Conflict)
    }

    /// 409 `AlreadyExists`.
    pub fn is_already_exists(&self) -> bool {
        self.reason() == Some(&StatusReason::AlreadyExists)
    }

    /// The server could not be reached at all (connection refused, DNS, TLS handshake):
    /// nothing was sent, so the request may be retried as is.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Transport { source, .. } if source.is_connect())
    }

    /// 410 `Expired`/`Gone`: relist and watch again.
    pub fn is_expired(&self) -> bool {
        matches!(
            self.reason(),
            Some(StatusReason::Expired | StatusReason::Gone)
        ) || self.code() == Some(410)
    }
}

/// Builds the `Status` for a non-2xx answer: the server's when the body is one, otherwise a
/// `Failure` with the HTTP code, a reason derived from it, and the body text as message.
pub(crate) fn status_from_body(code: u16, body: &[u8]) -> Status {
    if let Ok(mut status) = serde_json::from_slice::<Status>(body)
        && (status.kind == "Status" || status.message.is_some() || status.reason.is_some())
    {
        if status.code.is_none() {
            status.code = Some(i32::from(code));
        }
        if status.status.is_none() {
            status.status = Some(StatusOutcome::Failure);
        }
        return status;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        format!("the server answered HTTP {code}")
    } else {
        let mut text: String = text.chars().take(1000).collect();
        if text.len() < body.len() && body.len() > 1000 {
            text.push('…');
        }
        text
    };
    Status::failure(code, reason_for_code(code), message)
}

fn reason_for_code(code: u16) -> StatusReason {
    match code {
        400 => StatusReason::BadRequest,
        401 => StatusReason::Unauthorized,
        403 => StatusReason::Forbidden,
        404 => StatusReason::NotFound,
        405 => StatusReason::MethodNotAllowed,
        406 => StatusReason::NotAcceptable,
        409 => StatusReason::Conflict,
        410 => StatusReason::Gone,
        413 => StatusReason::RequestEntityTooLarge,
        415 => StatusReason::UnsupportedMediaType,
        422 => StatusReason::Invalid,
        429 => StatusReason::TooManyRequests,
        503 => StatusReason::ServiceUnavailable,
        504 => StatusReason::Timeout,
        _ => StatusReason::InternalError,
    }
}

/// kubectl's wording: `Error from server (NotFound): apps.pacer.dev "web" not found`.
fn server_message(status: &Status) -> String {
    let message = status
        .message
        .as_deref()
        .filter(|message| !message.is_empty())
        .map_or_else(|| format!("HTTP {}", status.http_code()), str::to_owned);
    match &status.reason {
        Some(reason) => format!("Error from server ({reason}): {message}"),
        None => format!("Error from server: {message}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn api(status: Status) -> Error {
        Error::Api {
            status: Box::new(status),
            method: "GET".into(),
            url: "http://x/".into(),
        }
    }

    #[test]
    fn server_status_is_kept_and_printed_like_kubectl() {
        let body = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message":"apps.pacer.dev \"web\" not found","reason":"NotFound","code":404}"#;
        let error = api(status_from_body(404, body));
        assert!(error.is_not_found());
        assert_eq!(
            error.to_string(),
            "Error from server (NotFound): apps.pacer.dev \"web\" not found"
        );
    }

    #[test]
    fn non_status_bodies_become_statuses() {
        let status = status_from_body(409, b"busy");
        assert_eq!(status.reason, Some(StatusReason::Conflict));
        assert_eq!(status.message.as_deref(), Some("busy"));
        let status = status_from_body(502, b"");
        assert_eq!(status.code, Some(502));
        assert_eq!(
            api(status).to_string(),
            "Error from server (InternalError): the server answered HTTP 502"
        );
        assert!(api(status_from_body(404, b"404 page not found")).is_not_found());
        assert!(api(status_from_body(410, b"")).is_expired());
    }
}
