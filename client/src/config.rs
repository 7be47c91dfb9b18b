//! `Config`: where the API server is and how to talk to it (server URL, default namespace,
//! bearer token, timeouts). Loading it from files, flags and the environment is the CLI's job.

use std::time::Duration;

/// The server used when nothing else is configured (Marathon's port on this machine).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
/// The namespace used when nothing else is configured.
pub const DEFAULT_NAMESPACE: &str = "default";

/// How to reach the API server.
#[derive(Clone, Debug)]
#[must_use]
pub struct Config {
    /// Base URL, e.g. `http://127.0.0.1:8080`; may carry a path prefix.
    pub server: String,
    /// Namespace used by [`crate::Api::default_namespaced`].
    pub namespace: String,
    /// Bearer token sent as `Authorization: Bearer …`, if any.
    pub token: Option<String>,
    /// Limit for each non-watch request (watches run until the server ends them).
    pub request_timeout: Option<Duration>,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl Config {
    /// A config for `server` with the default namespace, no token and default timeouts.
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            token: None,
            request_timeout: Some(Duration::from_secs(60)),
            connect_timeout: Duration::from_secs(10),
            user_agent: format!("pacer-client/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Sets the default namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the `User-Agent`.
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new(DEFAULT_SERVER)
    }
}
