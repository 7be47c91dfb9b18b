//! Marathon's `/v2/groups`: the group tree (GET with `embed`), create (POST), update (PUT:
//! apps created, replaced and removed as the body says, `scaleBy`, `force`, `dryRun`,
//! rollback), delete, and a group's versions.
//!
//! **Groups are not stored: they are derived from App ids.** `/prod/shop/web` is the App
//! `prod/shop.web` (`pacer_schemas::marathon_id`), and the groups `/prod` and `/prod/shop`
//! exist because it does. This keeps one source of truth (Apps that `pacer get apps` and
//! `kubectl` see are exactly what `/v2/groups` shows) and needs no second object to keep
//! consistent. What that costs, compared with Marathon:
//! - a group exists while an app lies inside it: a group created empty (`POST` of
//!   `{"id": "/tools/log"}`) is accepted (201) but not kept, and a group whose last app goes
//!   disappears;
//! - a group's `dependencies` are written into the `dependencies` of each of its apps (and of
//!   its subgroups' apps; the deployment controller orders by those), and read back as the
//!   dependencies all its apps share outside it;
//! - a group's `version` is the newest version of an app inside it, and its versions are the
//!   versions of its apps (their AppVersions; `GET /v2/groups/{id}/versions`); a group is only
//!   readable at its current version. Rolling a group back (`PUT` of `{"version": v}`, or the
//!   legacy `PUT /v2/groups/{id}/versions/{v}` marathon-python uses) gives each of its apps
//!   its definition as of `v` and deletes the apps created after `v`; apps deleted since `v`
//!   do not come back (their AppVersions went with them).
//!
//! Writes run through the shared write path and commit atomically where the store allows
//! (`commit`); the translation of each app's JSON is `app_json`'s.
//!
//! * `plan`: a body as a tree of group updates, and the App changes a request means (pure).
//! * `tree`: the group JSON from the apps' JSON (pure).
//! * `commit`: admission, the deployment lock and the store transaction(s).

mod commit;
pub mod plan;
pub mod tree;

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use pacer_schemas::{App, AppVersion, MarathonId};
use pacer_store::ListOptions;
use serde_json::{Value, json};

use self::commit::Applied;
use self::plan::{GroupRequest, plan_delete, plan_scale, plan_update};
use self::tree::{GroupEmbed, TreeApp};
use super::apps::{self, Embed};
use super::error::MarathonError;
use super::{MarathonQuery, app_json, tasks};
use crate::kinds;
use crate::state::ApiState;

/// What a `/v2/groups/{*path}` URL addresses.
#[derive(Debug, PartialEq, Eq)]
enum GroupPath {
    Group(String),
    Versions(String),
    Version(String, String),
}

impl GroupPath {
    fn parse(path: &str) -> Self {
        let trimmed = path.trim_end_matches('/');
        let (head, last) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
        if last == "versions" {
            return Self::Versions(head.to_owned());
        }
        match head.rsplit_once('/').unwrap_or(("", head)) {
            (group, "versions") => Self::Version(group.to_owned(), last.to_owned()),
            _ => Self::Group(trimmed.to_owned()),
        }
    }
}

/// `GET /v2/groups`: the root group.
pub async fn get_root(State(state): State<ApiState>, uri: Uri) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(&uri)?;
    read_group(&state, &MarathonId::root(), &query).await
}

/// `GET /v2/groups/{id}`, `/v2/groups/{id}/versions`, `/v2/groups/{id}/versions/{version}`.
pub async fn get_path(
    State(state): State<ApiState>,
    Path(path): Path<String>,
    uri: Uri,
) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(&uri)?;
    match GroupPath::parse(&path) {
        GroupPath::Group(id) => read_group(&state, &group_id(&id)?, &query).await,
        GroupPath::Versions(id) => {
            let id = group_id(&id)?;
            let apps = existing_apps(&state).await?;
            if !plan::group_exists(&id, apps.keys().cloned()) {
                return Err(group_not_found(&id));
            }
            let versions = group_versions(&state, &id, &apps).await?;
            Ok(super::json(StatusCode::OK, &json!(versions)))
        }
        GroupPath::Version(id, version) => {
            let id = group_id(&id)?;
            let response = read_group(&state, &id, &query).await?;
            let current = response_version(&state, &id).await?;
            if current != version {
                return Err(MarathonError::NotFound(format!(
                    "Group '{id}' does not exist in version {version}"
                )));
            }
            Ok(response)
        }
    }
}

/// `POST /v2/groups`: creates the group of the body (its `id` relative to the root).
pub async fn post_root(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, MarathonError> {
    create(&state, &MarathonId::root(), &headers, &uri, &body).await
}

/// `POST /v2/groups/{id}`: creates the group of the body (its `id` relative to `{id}`).
pub async fn post_path(
    State(state): State<ApiState>,
    Path(path): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, MarathonError> {
    let base = group_id(&path)?;
    create(&state, &base, &headers, &uri, &body).await
}

/// `PUT /v2/groups`: updates the root group.
pub async fn put_root(
    State(state): State<ApiState>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, MarathonError> {
    update(&state, &MarathonId::root(), &uri, &body).await
}

/// `PUT /v2/groups/{id}`: updates (or creates) the group.
pub async fn put_path(
    State(state): State<ApiState>,
    Path(path): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, MarathonError> {
    match GroupPath::parse(&path) {
        GroupPath::Group(id) => update(&state, &group_id(&id)?, &uri, &body).await,
        GroupPath::Version(id, version) => {
            let body = serde_json::to_vec(&json!({"version": version})).unwrap_or_default();
            update(&state, &group_id(&id)?, &uri, &body).await
        }
        GroupPath::Versions(_) => Err(MarathonError::Other {
            code: StatusCode::METHOD_NOT_ALLOWED,
            message: "PUT /v2/groups/{id}/versions/{version} rolls back; the list is read-only"
                .to_owned(),
        }),
    }
}

/// `DELETE /v2/groups`: removes every app.
pub async fn delete_root(
    State(state): State<ApiState>,
    uri: Uri,
) -> Result<Response, MarathonError> {
    remove(&state, &MarathonId::root(), &uri).await
}

/// `DELETE /v2/groups/{id}`: removes every app below the group.
pub async fn delete_path(
    State(state): State<ApiState>,
    Path(path): Path<String>,
    uri: Uri,
) -> Result<Response, MarathonError> {
    let GroupPath::Group(id) = GroupPath::parse(&path) else {
        return Err(MarathonError::Other {
            code: StatusCode::METHOD_NOT_ALLOWED,
            message: "DELETE is only supported on a group".to_owned(),
        });
    };
    remove(&state, &group_id(&id)?, &uri).await
}

async fn read_group(
    state: &ApiState,
    id: &MarathonId,
    query: &MarathonQuery,
) -> Result<Response, MarathonError> {
    let embeds: Vec<&str> = query.all("embed").collect();
    let embed = GroupEmbed::parse(embeds.iter().copied());
    let app_embed = app_embed(&embeds);
    let apps = apps::list_apps(state).await?;
    let mut instances = tasks::instances_by_app(state, None).await?;
    let mut tree_apps = Vec::with_capacity(apps.len());
    for app in &apps {
        let Ok(app_id) = app_json::app_id(app) else {
            continue;
        };
        if !id.contains(&app_id) {
            continue;
        }
        let own = instances
            .remove(&(
                app.metadata.namespace_str().to_owned(),
                app.metadata.name_str().to_owned(),
            ))
            .unwrap_or_default();
        tree_apps.push(TreeApp {
            json: apps::app_with_embeds(app, &own, &app_embed)?,
            id: app_id,
        });
    }
    if !plan::group_exists(id, tree_apps.iter().map(|app| app.id.clone())) {
        return Err(group_not_found(id));
    }
    Ok(super::json(
        StatusCode::OK,
        &tree::group_json(id, &tree_apps, embed),
    ))
}

/// The apps' embeds of a group request (`group.apps.tasks` → the apps' `tasks`, …).
fn app_embed(embeds: &[&str]) -> Embed {
    let pairs = embeds
        .iter()
        .filter_map(|value| value.strip_prefix("group."))
        .filter(|value| value.starts_with("apps."))
        .map(|value| ("embed".to_owned(), value.to_owned()))
        .collect();
    Embed::parse(&MarathonQuery { pairs })
}

async fn create(
    state: &ApiState,
    base: &MarathonId,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(uri)?;
    let GroupRequest::Update(update) = plan::parse_request(parse_json(body)?, base)? else {
        return Err(MarathonError::invalid(
            "/",
            "POST creates a group: scaleBy and version are for PUT",
        ));
    };
    let existing = existing_apps(state).await?;
    if existing.contains_key(&update.id) {
        return Err(MarathonError::Conflict(format!(
            "An app with the path {} already exists.",
            update.id
        )));
    }
    if plan::group_exists(&update.id, existing.keys().cloned()) {
        return Err(MarathonError::Conflict(format!(
            "Group {} is already created. Use PUT to change this group.",
            update.id
        )));
    }
    let changes = plan_update(&update, &existing);
    let Applied::Written {
        deployment,
        version,
    } = commit::apply(state, &changes, query.force()?, false).await?
    else {
        return Err(MarathonError::internal("a create answered a plan"));
    };
    tracing::info!(group = %update.id, apps = changes.len(), "group created through /v2");
    let mut response = super::json(
        StatusCode::CREATED,
        &app_json::deployment_result(&deployment, &version),
    );
    let location = match super::request_host(headers) {
        Some(host) => format!("http://{host}/v2/groups{}", update.id),
        None => format!("/v2/groups{}", update.id),
    };
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

async fn update(
    state: &ApiState,
    id: &MarathonId,
    uri: &Uri,
    body: &[u8],
) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(uri)?;
    let force = query.force()?;
    let dry_run = query.flag("dryRun", false)?;
    let existing = existing_apps(state).await?;
    let changes = match plan::parse_request(parse_json(body)?, id)? {
        GroupRequest::Update(update) => plan_update(&update, &existing),
        GroupRequest::ScaleBy(factor) => {
            if !plan::group_exists(id, existing.keys().cloned()) {
                return Err(group_not_found(id));
            }
            plan_scale(id, factor, &existing)
        }
        GroupRequest::Rollback(version) => {
            let versions = app_versions(state, id, &existing).await?;
            plan::plan_rollback(id, &version, &existing, &versions).ok_or_else(|| {
                MarathonError::NotFound(format!("Group '{id}' does not exist in version {version}"))
            })?
        }
    };
    match commit::apply(state, &changes, force, dry_run).await? {
        Applied::Plan(plan) => Ok(super::json(StatusCode::OK, &plan)),
        Applied::Written {
            deployment,
            version,
        } => {
            tracing::info!(group = %id, apps = changes.len(), "group updated through /v2");
            Ok(super::json(
                StatusCode::OK,
                &app_json::deployment_result(&deployment, &version),
            ))
        }
    }
}

async fn remove(state: &ApiState, id: &MarathonId, uri: &Uri) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(uri)?;
    let existing = existing_apps(state).await?;
    if !plan::group_exists(id, existing.keys().cloned()) {
        return Err(group_not_found(id));
    }
    let changes = plan_delete(id, &existing);
    let Applied::Written {
        deployment,
        version,
    } = commit::apply(state, &changes, query.force()?, false).await?
    else {
        return Err(MarathonError::internal("a delete answered a plan"));
    };
    tracing::info!(group = %id, apps = changes.len(), "group deleted through /v2");
    Ok(super::json(
        StatusCode::OK,
        &app_json::deployment_result(&deployment, &version),
    ))
}

/// Every App by Marathon id (Apps being deleted included: they still hold their ids).
async fn existing_apps(state: &ApiState) -> Result<BTreeMap<MarathonId, App>, MarathonError> {
    Ok(apps::list_apps(state)
        .await?
        .into_iter()
        .filter_map(|app| Some((app_json::app_id(&app).ok()?, app)))
        .collect())
}

/// The group's versions, newest first: the versions of the apps inside it (their
/// AppVersions and current versions).
async fn group_versions(
    state: &ApiState,
    group: &MarathonId,
    apps: &BTreeMap<MarathonId, App>,
) -> Result<Vec<String>, MarathonError> {
    let mut versions: BTreeSet<String> = apps
        .iter()
        .filter(|(id, _)| group.contains(id))
        .map(|(_, app)| app_json::version(app))
        .collect();
    for snapshots in app_versions(state, group, apps).await?.into_values() {
        versions.extend(snapshots.into_iter().map(|snapshot| snapshot.spec.version));
    }
    versions.retain(|version| !version.is_empty());
    Ok(versions.into_iter().rev().collect())
}

/// The AppVersions of the apps inside `group`, by app id.
async fn app_versions(
    state: &ApiState,
    group: &MarathonId,
    apps: &BTreeMap<MarathonId, App>,
) -> Result<BTreeMap<MarathonId, Vec<AppVersion>>, MarathonError> {
    let inside: BTreeMap<(String, String), &MarathonId> = apps
        .iter()
        .filter(|(id, _)| group.contains(id))
        .map(|(id, app)| {
            (
                (
                    app.metadata.namespace_str().to_owned(),
                    app.metadata.name_str().to_owned(),
                ),
                id,
            )
        })
        .collect();
    let mut by_app: BTreeMap<MarathonId, Vec<AppVersion>> = BTreeMap::new();
    let Some(kind) = kinds::find_kind("AppVersion") else {
        return Ok(by_app);
    };
    let mut options = ListOptions {
        limit: state.config.internal_page_size,
        ..ListOptions::default()
    };
    loop {
        let page = state.store.list(&kind.prefix(None), &options).await?;
        for kv in &page.items {
            let Ok(snapshot) = serde_json::from_slice::<AppVersion>(&kv.value) else {
                continue;
            };
            let owner = (
                snapshot.metadata.namespace_str().to_owned(),
                snapshot.spec.app.clone(),
            );
            if let Some(id) = inside.get(&owner)
                && !snapshot.spec.version.is_empty()
            {
                by_app.entry((*id).clone()).or_default().push(snapshot);
            }
        }
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => break,
        }
    }
    Ok(by_app)
}

/// The current version of a group (see `tree`).
async fn response_version(state: &ApiState, id: &MarathonId) -> Result<String, MarathonError> {
    Ok(existing_apps(state)
        .await?
        .iter()
        .filter(|(app, _)| id.contains(app) && *app != id)
        .map(|(_, app)| app_json::version(app))
        .max()
        .unwrap_or_else(|| tree::EMPTY_GROUP_VERSION.to_owned()))
}

/// A group id from the URL; one that cannot be an id names no group (404).
fn group_id(text: &str) -> Result<MarathonId, MarathonError> {
    if text.trim_matches('/').is_empty() {
        return Ok(MarathonId::root());
    }
    MarathonId::parse(text).map_err(|_| {
        MarathonError::NotFound(format!(
            "Group '/{}' does not exist",
            text.trim_matches('/')
        ))
    })
}

fn group_not_found(id: &MarathonId) -> MarathonError {
    MarathonError::NotFound(format!("Group '{id}' does not exist"))
}

fn parse_json(body: &[u8]) -> Result<Value, MarathonError> {
    serde_json::from_slice(body).map_err(|error| MarathonError::InvalidJson {
        path: "/".to_owned(),
        error: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_paths() {
        for (path, expect) in [
            ("prod/shop", GroupPath::Group("prod/shop".into())),
            ("/tools/", GroupPath::Group("/tools".into())),
            ("prod/versions", GroupPath::Versions("prod".into())),
            (
                "prod/versions/2015-09-25T15:13:48.343Z",
                GroupPath::Version("prod".into(), "2015-09-25T15:13:48.343Z".into()),
            ),
            ("versions", GroupPath::Versions(String::new())),
        ] {
            assert_eq!(GroupPath::parse(path), expect, "{path}");
        }
    }
}
