//! The authentication and authorization seam: a middleware that runs before every handler and
//! puts the caller's [`UserInfo`] into the request extensions.
//!
//! **Today it admits everyone** as `system:anonymous` (group `system:unauthenticated`). A later
//! issue fills this seam with real authentication (tokens, client certificates) and RBAC
//! (Role/RoleBinding checks on verb, resource, namespace and name), answering 401/403 `Status`
//! objects from here; handlers already read the user from the extensions, so they will not
//! change.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// User name, e.g. `system:anonymous`.
    pub name: String,
    /// Groups the user belongs to.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The anonymous user every request runs as until authentication lands.
    pub fn anonymous() -> Self {
        Self {
            name: "system:anonymous".to_owned(),
            groups: vec!["system:unauthenticated".to_owned()],
        }
    }
}

/// Authenticates and authorizes a request. Admits everyone as [`UserInfo::anonymous`] for now.
pub async fn authenticate(mut request: Request, next: Next) -> Response {
    let user = UserInfo::anonymous();
    tracing::Span::current().record("user", user.name.as_str());
    request.extensions_mut().insert(user);
    next.run(request).await
}
