//! Marathon's REST API (`/v2`, `/ping`) on the same objects as `/apis`: an app created through
//! `/v2/apps` is an App that `pacer get apps` lists, and the other way round. Every write goes
//! through the kube-style write path in `rest::write`/`rest::delete` (defaults, validation,
//! admission including the deployment lock, store compare-and-swap); these modules only
//! translate shapes, ids and errors.
//!
//! * `apps`: `/v2/apps` and `/v2/apps/{id}[/restart|/tasks|/versions[/{version}]]`.
//! * `app_json`: the one translation between Marathon's app JSON and App objects.
//! * `groups`: `/v2/groups`, the group tree derived from App ids.
//! * `tasks`: Marathon tasks from Instances, `/v2/tasks`, `POST /v2/tasks/delete`.
//! * `kill`: killing tasks (with `scale`, `wipe`) the way Pacer kills instances.
//! * `deployments`: `/v2/deployments`, and waiting for the deployment a write starts.
//! * `queue`: `/v2/queue` (what waits to launch, the launch backoff) and its delay reset.
//! * `events`: `/v2/events` (SSE) and `/v2/eventSubscriptions`, Marathon's events derived
//!   from store changes.
//! * `info`: `/v2/info`, `/v2/leader`, `/ping`.
//! * `error`: Marathon's error bodies.
//!
//! Ids map to namespaces and names only through `pacer_schemas::marathon_id`.

pub mod app_json;
pub mod apps;
pub mod deployments;
pub mod error;
pub mod events;
pub mod groups;
pub mod info;
pub mod kill;
pub mod queue;
pub mod tasks;

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pacer_schemas::MarathonId;
use serde_json::Value;

use self::error::MarathonError;
use crate::kinds;
use crate::params::Params;
use crate::rest::{ResourceRequest, Subresource, Target};
use crate::state::ApiState;

/// The field manager recorded for writes made through `/v2`.
pub const FIELD_MANAGER: &str = "marathon";

/// The `/v2` and `/ping` routes (merged into the server's router).
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/ping", get(info::ping))
        .route("/v2/info", get(info::info))
        .route("/v2/leader", get(info::leader).delete(info::abdicate))
        .route("/v2/tasks", get(tasks::list))
        .route("/v2/tasks/delete", axum::routing::post(tasks::delete_many))
        .route(
            "/v2/deployments/{id}",
            axum::routing::delete(deployments::delete),
        )
        .route("/v2/deployments", get(deployments::list))
        .route("/v2/events", get(events::stream))
        .route(
            "/v2/eventSubscriptions",
            get(events::subscriptions::list)
                .post(events::subscriptions::create)
                .delete(events::subscriptions::delete),
        )
        .route("/v2/queue", get(queue::list))
        .route(
            "/v2/queue/{*path}",
            axum::routing::delete(queue::delete_path),
        )
        .route(
            "/v2/groups",
            get(groups::get_root)
                .post(groups::post_root)
                .put(groups::put_root)
                .delete(groups::delete_root),
        )
        .route(
            "/v2/groups/",
            get(groups::get_root)
                .post(groups::post_root)
                .put(groups::put_root)
                .delete(groups::delete_root),
        )
        .route(
            "/v2/groups/{*path}",
            get(groups::get_path)
                .post(groups::post_path)
                .put(groups::put_path)
                .delete(groups::delete_path),
        )
        .route(
            "/v2/apps",
            get(apps::list)
                .post(apps::create)
                .put(apps::update_many)
                .patch(apps::update_many),
        )
        .route(
            "/v2/apps/{*path}",
            get(apps::get_path)
                .post(apps::post_path)
                .put(apps::put_path)
                .patch(apps::patch_path)
                .delete(apps::delete_path),
        )
}

/// The query parameters of a `/v2` request, repeated names kept (`embed=…&embed=…`).
#[derive(Debug, Default)]
pub struct MarathonQuery {
    pairs: Vec<(String, String)>,
}

impl MarathonQuery {
    /// Parses the query of `uri`.
    pub fn parse(uri: &Uri) -> Result<Self, MarathonError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|error| MarathonError::BadRequest(format!("malformed query: {error}")))?;
        Ok(Self { pairs })
    }

    /// The first value of `name`.
    pub fn one<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.all(name).next()
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A boolean parameter; Marathon clients send `true`, `True` (Python's `str(True)`) or
    /// `1`.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, MarathonError> {
        match self.one(name) {
            None | Some("") => Ok(default),
            Some(value) if value.eq_ignore_ascii_case("true") || value == "1" => Ok(true),
            Some(value) if value.eq_ignore_ascii_case("false") || value == "0" => Ok(false),
            Some(value) => Err(MarathonError::BadRequest(format!(
                "query parameter {name}: expected true or false, got {value:?}"
            ))),
        }
    }

    /// `?force=`.
    pub fn force(&self) -> Result<bool, MarathonError> {
        self.flag("force", false)
    }
}

/// The served kind named `kind` (a 500 if it is not: the registry and this module disagree).
pub(crate) fn served_kind(kind: &str) -> Result<&'static kinds::KindDef, MarathonError> {
    kinds::find_kind(kind)
        .ok_or_else(|| MarathonError::internal(format!("the {kind} kind is not served")))
}

/// A request of the shared write path for the App `id` (which must map to an object).
pub fn app_request(
    state: &ApiState,
    id: &MarathonId,
    force: bool,
) -> Result<ResourceRequest, MarathonError> {
    let object = id
        .to_object()
        .map_err(|error| MarathonError::invalid("/id", error.to_string()))?;
    let kind = served_kind("App")?;
    Ok(ResourceRequest {
        state: state.clone(),
        target: Target {
            kind,
            namespace: Some(object.namespace),
            name: Some(object.name),
            sub: Subresource::Main,
        },
        params: Params {
            force,
            ..Params::default()
        },
        headers: HeaderMap::new(),
        manager_name: FIELD_MANAGER.to_owned(),
    })
}

/// A JSON response.
pub fn json(code: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = (code, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The `host:port` the client reached this server at (its `Host` header).
pub fn request_host(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .filter(|host| !host.is_empty())
        .map(str::to_owned)
}
