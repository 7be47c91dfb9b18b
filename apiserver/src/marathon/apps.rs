//! `/v2/apps`: list (with `cmd`, `id`, `label` filters and `embed`), get, create (POST, and PUT
//! of an absent id), update (PUT with `partialUpdate`, PATCH, bulk PUT/PATCH of `/v2/apps`),
//! rollback (PUT `{"version": …}`), delete, restart, tasks and versions.
//!
//! Nested ids make `/v2/apps/{*path}` one route: a path ending in `/restart`, `/tasks`,
//! `/versions` or `/versions/{version}` addresses that sub-resource of the app before it (as in
//! Marathon, an app cannot be called `tasks`, `restart` or `versions`).
//!
//! Writes run the shared write path (`rest::write::create_value`, `guaranteed_update`,
//! `rest::delete::delete`), so defaults, validation, the deployment lock and the store's
//! compare-and-swap are the same as for `/apis`. Restart sets the App's
//! `pacer.dev/restartedAt` annotation, the deployment controller's restart request. The
//! `{deploymentId, version}` answer is the Deployment the controller starts (see
//! `deployments::started_by_write`). Bulk updates check every app (admission and the
//! deployment lock) before writing any, then write app by app: a change that races them can
//! still leave the earlier apps written.

use std::collections::BTreeSet;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use pacer_schemas::app_version::RESTARTED_AT_ANNOTATION;
use pacer_schemas::selector::LabelSelector;
use pacer_schemas::{App, AppVersion, Instance, MarathonId};
use pacer_store::ListOptions;
use serde_json::{Map, Value, json};

use super::app_json::{self, AppDefinition};
use super::deployments;
use super::error::{MarathonError, app_not_found, task_not_found};
use super::kill::{self, KillOptions, Killed};
use super::tasks::{self, TaskCounts};
use super::{MarathonQuery, app_request};
use crate::error::ApiError;
use crate::kinds;
use crate::object;
use crate::rest::{ResourceRequest, Subresource, delete, write};
use crate::state::ApiState;

/// What a `/v2/apps/{*path}` URL addresses.
#[derive(Debug, PartialEq, Eq)]
enum AppPath {
    App(String),
    Restart(String),
    Tasks(String),
    Task(String, String),
    Versions(String),
    Version(String, String),
}

impl AppPath {
    fn parse(path: &str) -> Self {
        let trimmed = path.trim_end_matches('/');
        let (head, last) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
        match last {
            "restart" => Self::Restart(head.to_owned()),
            "tasks" => Self::Tasks(head.to_owned()),
            "versions" => Self::Versions(head.to_owned()),
            _ => match head.rsplit_once('/') {
                Some((app, "versions")) => Self::Version(app.to_owned(), last.to_owned()),
                Some((app, "tasks")) => Self::Task(app.to_owned(), last.to_owned()),
                _ => Self::App(trimmed.to_owned()),
            },
        }
    }
}

/// Which extras `embed` asks for (`apps.*` and `app.*` spellings alike).
#[derive(Debug, Default)]
pub(crate) struct Embed {
    tasks: bool,
    readiness: bool,
    last_task_failure: bool,
    task_stats: bool,
}

impl Embed {
    pub(crate) fn parse(query: &MarathonQuery) -> Self {
        let mut embed = Self::default();
        for value in query.all("embed") {
            let name = value
                .strip_prefix("apps.")
                .or_else(|| value.strip_prefix("app."))
                .unwrap_or(value);
            match name {
                "tasks" => embed.tasks = true,
                "readiness" => embed.readiness = true,
                "lastTaskFailure" => embed.last_task_failure = true,
                "taskStats" => embed.task_stats = true,
                "failures" => {
                    embed.tasks = true;
                    embed.last_task_failure = true;
                }
                // counts and deployments are always shown.
                _ => {}
            }
        }
        embed
    }

    /// `embed` for one app (`GET /v2/apps/{id}`): Marathon always adds tasks and the last
    /// task failure there ("deprecated. For compatibility." in its `AppsResource.show`), and
    /// clients such as the Python client's `kill_tasks(batch_size=…)` rely on it.
    pub(crate) fn parse_for_one_app(query: &MarathonQuery) -> Self {
        Self {
            tasks: true,
            last_task_failure: true,
            ..Self::parse(query)
        }
    }
}

/// `GET /v2/apps`.
pub async fn list(State(state): State<ApiState>, uri: Uri) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(&uri)?;
    let embed = Embed::parse(&query);
    let cmd = query.one("cmd").filter(|cmd| !cmd.is_empty());
    let id_filter = query.one("id").filter(|id| !id.is_empty());
    let label = LabelSelector::parse(query.one("label").unwrap_or(""))
        .map_err(|error| MarathonError::BadRequest(format!("label: {error}")))?;
    let apps = list_apps(&state).await?;
    let mut instances = tasks::instances_by_app(&state, None).await?;
    let mut out = Vec::new();
    for app in apps {
        let id = app_json::app_id(&app)?;
        if cmd.is_some_and(|cmd| !app.spec.cmd.as_deref().unwrap_or("").contains(cmd))
            || id_filter.is_some_and(|filter| !id.to_string().contains(filter))
            || !label.matches(app.spec.labels.as_ref())
        {
            continue;
        }
        let own = instances
            .remove(&(
                app.metadata.namespace_str().to_owned(),
                app.metadata.name_str().to_owned(),
            ))
            .unwrap_or_default();
        out.push(app_with_embeds(&app, &own, &embed)?);
    }
    Ok(super::json(StatusCode::OK, &json!({"apps": out})))
}

/// `GET /v2/apps/{id}[/tasks|/versions[/{version}]]`.
pub async fn get_path(
    State(state): State<ApiState>,
    Path(path): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(&uri)?;
    match AppPath::parse(&path) {
        AppPath::App(id) => {
            let id = path_id(&id)?;
            let (app, instances) = app_and_instances(&state, &id).await?;
            let body = app_with_embeds(&app, &instances, &Embed::parse_for_one_app(&query))?;
            Ok(super::json(StatusCode::OK, &json!({"app": body})))
        }
        AppPath::Tasks(id) => {
            let id = path_id(&id)?;
            let (app, instances) = app_and_instances(&state, &id).await?;
            if tasks::wants_text(&headers) {
                return Ok(tasks::text_response(&tasks::endpoints_text(&[(
                    &id,
                    Some(&app),
                    instances.as_slice(),
                )])));
            }
            let tasks: Vec<Value> = instances
                .iter()
                .map(|instance| tasks::task_json(&id, instance))
                .collect();
            Ok(super::json(StatusCode::OK, &json!({"tasks": tasks})))
        }
        AppPath::Versions(id) => {
            let id = path_id(&id)?;
            let (app, _) = app_and_instances(&state, &id).await?;
            let mut versions: Vec<String> = app_versions(&state, &app)
                .await?
                .into_iter()
                .map(|version| version.spec.version)
                .collect();
            let current = app_json::version(&app);
            if !versions.contains(&current) {
                versions.insert(0, current);
            }
            Ok(super::json(StatusCode::OK, &json!({"versions": versions})))
        }
        AppPath::Version(id, version) => {
            let id = path_id(&id)?;
            let (app, _) = app_and_instances(&state, &id).await?;
            let body = app_at_version(&state, &app, &version)
                .await?
                .ok_or_else(|| {
                    MarathonError::NotFound(format!(
                        "App '{id}' does not exist in version {version}"
                    ))
                })?;
            Ok(super::json(StatusCode::OK, &body))
        }
        AppPath::Restart(_) => Err(MarathonError::Other {
            code: StatusCode::METHOD_NOT_ALLOWED,
            message: "restart takes POST".to_owned(),
        }),
        AppPath::Task(..) => Err(MarathonError::Other {
            code: StatusCode::METHOD_NOT_ALLOWED,
            message: "a task takes DELETE; GET /v2/apps/{id}/tasks lists them".to_owned(),
        }),
    }
}

/// `POST /v2/apps`: creates an app (201, `Location`, the app with its `deployments`).
pub async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(&uri)?;
    let definition = app_json::parse_definition(parse_json(&body)?, None)?;
    let id = definition.id.clone();
    let request = app_request(&state, &id, query.force()?)?;
    create_app(&request, &definition).await?;
    let key = request.key();
    deployments::started_by_write(&state, &key, &[], Some(1)).await;
    let (app, instances) = app_and_instances(&state, &id).await?;
    let mut body = app_with_embeds(&app, &instances, &Embed::default())?;
    if let Some(root) = body.as_object_mut() {
        root.insert("tasks".to_owned(), json!([]));
    }
    let mut response = super::json(StatusCode::CREATED, &body);
    set_location(&mut response, &headers, &id);
    Ok(response)
}

/// `POST /v2/apps/{id}/restart`.
pub async fn post_path(
    State(state): State<ApiState>,
    Path(path): Path<String>,
    uri: Uri,
) -> Result<Response, MarathonError> {
    let AppPath::Restart(id) = AppPath::parse(&path) else {
        return Err(MarathonError::Other {
            code: StatusCode::METHOD_NOT_ALLOWED,
            message: "POST /v2/apps/{id} is not supported: POST /v2/apps creates apps".to_owned(),
        });
    };
    let query = MarathonQuery::parse(&uri)?;
    let id = path_id(&id)?;
    let request = app_request(&state, &id, query.force()?)?;
    let before = current_deployments(&request).await?;
    let restarted_at = app_json::now_version();
    let written = write::guaranteed_update(&request, Subresource::Main, true, |current| {
        let mut new = current.clone();
        object::set_annotation(&mut new, RESTARTED_AT_ANNOTATION, &restarted_at)?;
        Ok(new)
    })
    .await;
    if let Err(error) = written {
        return Err(translate(&request, &id, error).await);
    }
    tracing::info!(app = %id, "restart requested through /v2");
    let (deployment, version) =
        deployments::started_by_write(&state, &request.key(), &before, None).await;
    Ok(super::json(
        StatusCode::OK,
        &app_json::deployment_result(&deployment, &version),
    ))
}

/// `PUT /v2/apps/{id}`: creates (201) or updates (200) the app; `partialUpdate` (default
/// true) keeps the fields the body leaves out; a body of only `{"version": …}` rolls back.
pub async fn put_path(
    State(state): State<ApiState>,
    Path(path): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, MarathonError> {
    let AppPath::App(id) = AppPath::parse(&path) else {
        return Err(MarathonError::Other {
            code: StatusCode::METHOD_NOT_ALLOWED,
            message: "PUT is only supported on an app".to_owned(),
        });
    };
    let query = MarathonQuery::parse(&uri)?;
    let id = path_id(&id)?;
    let partial = query.flag("partialUpdate", true)?;
    let body = parse_json(&body)?;
    let result = upsert(&state, &id, body, partial, query.force()?, true).await?;
    let mut response = super::json(
        if result.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &app_json::deployment_result(&result.deployment, &result.version),
    );
    if result.created {
        set_location(&mut response, &headers, &id);
    }
    Ok(response)
}

/// `PATCH /v2/apps/{id}`: a partial update of an existing app.
pub async fn patch_path(
    State(state): State<ApiState>,
    Path(path): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, MarathonError> {
    let AppPath::App(id) = AppPath::parse(&path) else {
        return Err(MarathonError::Other {
            code: StatusCode::METHOD_NOT_ALLOWED,
            message: "PATCH is only supported on an app".to_owned(),
        });
    };
    let query = MarathonQuery::parse(&uri)?;
    let id = path_id(&id)?;
    let result = upsert(&state, &id, parse_json(&body)?, true, query.force()?, false).await?;
    Ok(super::json(
        StatusCode::OK,
        &app_json::deployment_result(&result.deployment, &result.version),
    ))
}

/// `PUT`/`PATCH /v2/apps`: creates or updates every app of the array (PATCH: partially).
pub async fn update_many(
    State(state): State<ApiState>,
    method: axum::http::Method,
    uri: Uri,
    body: Bytes,
) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(&uri)?;
    let partial = method == axum::http::Method::PATCH || query.flag("partialUpdate", true)?;
    let force = query.force()?;
    let Value::Array(items) = parse_json(&body)? else {
        return Err(MarathonError::InvalidJson {
            path: "/".to_owned(),
            error: "error.expected.jsarray".to_owned(),
        });
    };
    // Check every definition before writing any, so that an invalid one writes nothing.
    let mut definitions = Vec::with_capacity(items.len());
    for item in items {
        let definition = app_json::parse_definition(item, None)?;
        check_definition(&state, &definition, partial, force).await?;
        definitions.push(definition);
    }
    let mut first = None;
    for definition in definitions {
        let body = Value::Object(definition.fields.clone());
        let result = upsert(&state, &definition.id, body, partial, force, true).await?;
        first.get_or_insert(result);
    }
    let (deployment, version) = match first {
        Some(result) => (result.deployment, result.version),
        None => (uuid::Uuid::new_v4().to_string(), app_json::now_version()),
    };
    Ok(super::json(
        StatusCode::OK,
        &app_json::deployment_result(&deployment, &version),
    ))
}

/// `DELETE /v2/apps/{id}`: `{deploymentId, version}` of the app's stop;
/// `DELETE /v2/apps/{id}/tasks[/{taskId}]`: kills tasks (see [`kill_tasks`]).
pub async fn delete_path(
    State(state): State<ApiState>,
    Path(path): Path<String>,
    uri: Uri,
) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(&uri)?;
    let id = match AppPath::parse(&path) {
        AppPath::App(id) => id,
        AppPath::Tasks(id) => return kill_tasks(&state, &id, None, &query).await,
        AppPath::Task(id, task) => return kill_tasks(&state, &id, Some(&task), &query).await,
        _ => {
            return Err(MarathonError::Other {
                code: StatusCode::METHOD_NOT_ALLOWED,
                message: "DELETE is only supported on an app and its tasks".to_owned(),
            });
        }
    };
    let id = path_id(&id)?;
    let request = app_request(&state, &id, query.force()?)?;
    let before = current_deployments(&request).await?;
    let key = request.key();
    let outcome = delete::delete(request, Body::empty()).await;
    if let Err(error) = outcome {
        let request = app_request(&state, &id, false)?;
        return Err(translate(&request, &id, error).await);
    }
    tracing::info!(app = %id, "app deleted through /v2");
    let (deployment, version) = deployments::started_by_write(&state, &key, &before, None).await;
    Ok(super::json(
        StatusCode::OK,
        &app_json::deployment_result(&deployment, &version),
    ))
}

/// `DELETE /v2/apps/{id}/tasks?host=&scale=&wipe=&force=` (every task of the app, or those on
/// `host`; `*` is every host) and `DELETE /v2/apps/{id}/tasks/{taskId}`: without `scale`
/// `{"tasks": […]}` (one task: `{"task": …}`, 404 when the app has no such task), with
/// `scale=true` the Scale deployment's `{deploymentId, version}`.
async fn kill_tasks(
    state: &ApiState,
    id: &str,
    task: Option<&str>,
    query: &MarathonQuery,
) -> Result<Response, MarathonError> {
    let options = KillOptions::parse(query)?;
    let id = path_id(id)?;
    let (_, instances) = app_and_instances(state, &id).await?;
    let chosen: Vec<Instance> = match task {
        Some(task) => {
            let found: Vec<Instance> = instances
                .into_iter()
                .filter(|instance| tasks::task_id(&id, instance) == task)
                .collect();
            if found.is_empty() {
                return Err(MarathonError::NotFound(task_not_found(task)));
            }
            found
        }
        None => {
            let host = query.one("host").filter(|host| !host.is_empty());
            instances
                .into_iter()
                .filter(|instance| host.is_none_or(|host| tasks::on_host(instance, host)))
                .collect()
        }
    };
    let body = match kill::kill(state, &id, chosen, options).await? {
        Killed::Deployment(result) => result,
        Killed::Tasks(mut killed) if task.is_some() => {
            json!({"task": killed.pop().unwrap_or(Value::Null)})
        }
        Killed::Tasks(killed) => json!({"tasks": killed}),
    };
    Ok(super::json(StatusCode::OK, &body))
}

/// What a create-or-update did.
#[derive(Debug)]
struct Upserted {
    created: bool,
    deployment: String,
    version: String,
}

/// Creates the app `id` from `body`, or updates it (`partial`: over its current spec).
/// `create_absent`: whether an absent app is created (PUT) or is a 404 (PATCH).
async fn upsert(
    state: &ApiState,
    id: &MarathonId,
    body: Value,
    partial: bool,
    force: bool,
    create_absent: bool,
) -> Result<Upserted, MarathonError> {
    let request = app_request(state, id, force)?;
    let rollback_to = rollback_version(&body);
    let mut definition = app_json::parse_definition(body, Some(id))?;
    let mut partial = partial;
    let current = request.state.store.get(&request.key()).await?;
    let Some(current) = current else {
        if !create_absent || rollback_to.is_some() {
            return Err(MarathonError::NotFound(app_not_found(&id.to_string())));
        }
        create_app(&request, &definition).await?;
        let (deployment, version) =
            deployments::started_by_write(state, &request.key(), &[], Some(1)).await;
        return Ok(Upserted {
            created: true,
            deployment,
            version,
        });
    };
    let current = object::from_store(&current).map_err(MarathonError::from)?;
    if let Some(version) = rollback_to {
        let app = decode_app(&current)?;
        let snapshot = app_versions(state, &app)
            .await?
            .into_iter()
            .find(|snapshot| snapshot.spec.version == version)
            .ok_or_else(|| {
                MarathonError::NotFound(format!("App '{id}' does not exist in version {version}"))
            })?;
        definition.fields = match serde_json::to_value(&snapshot.spec.template) {
            Ok(Value::Object(fields)) => fields,
            _ => Map::new(),
        };
        partial = false;
    }
    let before = deployments_of(&current);
    let revision_before = object::resource_version(&current).map(str::to_owned);
    let written = write::guaranteed_update(&request, Subresource::Main, true, |stored| {
        Ok(app_json::updated_object(
            stored,
            &definition.fields,
            partial,
        ))
    })
    .await;
    let written = match written {
        Ok(written) => written,
        Err(error) => return Err(translate(&request, id, error).await),
    };
    let unchanged = object::resource_version(&written.object) == revision_before.as_deref()
        && revision_before.is_some();
    let generation = object::meta(&written.object)
        .map_err(MarathonError::from)?
        .generation;
    let (deployment, version) = if unchanged {
        (
            uuid::Uuid::new_v4().to_string(),
            app_json::version(&decode_app(&written.object)?),
        )
    } else {
        deployments::started_by_write(state, &request.key(), &before, generation).await
    };
    Ok(Upserted {
        created: false,
        deployment,
        version,
    })
}

/// Runs admission (decode, defaults, validation) on what writing `definition` would store,
/// and (without `force`) the deployment lock, without writing.
async fn check_definition(
    state: &ApiState,
    definition: &AppDefinition,
    partial: bool,
    force: bool,
) -> Result<(), MarathonError> {
    let request = app_request(state, &definition.id, force)?;
    let current = match state.store.get(&request.key()).await? {
        Some(kv) => Some(object::from_store(&kv).map_err(MarathonError::from)?),
        None => None,
    };
    let candidate = match &current {
        Some(current) => app_json::updated_object(current, &definition.fields, partial),
        None => app_json::to_object(definition)?,
    };
    let admitted = request
        .target
        .kind
        .admit(candidate, current.as_ref(), request.field_validation())
        .map_err(|error| MarathonError::from_api(error, &definition.id.to_string()))?;
    if let Some(current) = &current
        && !force
        && current.get("spec") != admitted.object.get("spec")
    {
        let deployments = crate::deployment_lock::running_deployments(&request, current)
            .await
            .map_err(MarathonError::from)?;
        if !deployments.is_empty() {
            return Err(MarathonError::Locked { deployments });
        }
    }
    Ok(())
}

/// Creates the App of `definition` through the shared create path.
async fn create_app(
    request: &ResourceRequest,
    definition: &AppDefinition,
) -> Result<(), MarathonError> {
    let object = app_json::to_object(definition)?;
    match write::create_value(request, object, None).await {
        Ok(_) => {
            tracing::info!(app = %definition.id, "app created through /v2");
            Ok(())
        }
        Err(error) => Err(translate(request, &definition.id, error).await),
    }
}

/// `{"version": …}` alone (besides `id`) is Marathon's rollback request.
fn rollback_version(body: &Value) -> Option<String> {
    let fields = body.as_object()?;
    let version = fields.get("version")?.as_str()?;
    fields
        .keys()
        .all(|key| key == "version" || key == "id")
        .then(|| version.to_owned())
}

/// Translates a write-path failure; a deployment-lock conflict names the running deployments.
pub(crate) async fn translate(
    request: &ResourceRequest,
    id: &MarathonId,
    error: ApiError,
) -> MarathonError {
    let locked = matches!(
        &error,
        ApiError::Conflict { detail, .. } if detail.starts_with("App is locked")
    );
    if locked && let Ok(Some(kv)) = request.state.store.get(&request.key()).await {
        let running = match object::from_store(&kv) {
            Ok(current) => crate::deployment_lock::running_deployments(request, &current).await,
            Err(error) => Err(error),
        };
        if let Ok(deployments) = running {
            return MarathonError::Locked { deployments };
        }
    }
    MarathonError::from_api(error, &id.to_string())
}

/// The app's JSON with the requested extras.
pub(crate) fn app_with_embeds(
    app: &App,
    instances: &[Instance],
    embed: &Embed,
) -> Result<Value, MarathonError> {
    let id = app_json::app_id(app)?;
    let mut body = app_json::to_marathon(app, TaskCounts::of(instances))?;
    let Some(root) = body.as_object_mut() else {
        return Ok(body);
    };
    if embed.tasks {
        let tasks: Vec<Value> = instances
            .iter()
            .map(|instance| tasks::task_json(&id, instance))
            .collect();
        root.insert("tasks".to_owned(), Value::Array(tasks));
    }
    if embed.last_task_failure
        && let Some(failure) = app_json::last_task_failure(app, &id)
    {
        root.insert("lastTaskFailure".to_owned(), failure);
    }
    if embed.task_stats {
        root.insert(
            "taskStats".to_owned(),
            tasks::task_stats(app, instances, crate::object::now()),
        );
    }
    if embed.readiness {
        let results: Vec<Value> = instances
            .iter()
            .flat_map(|instance| {
                let task = tasks::task_id(&id, instance);
                instance
                    .status
                    .iter()
                    .flat_map(|status| &status.readiness)
                    .map(move |result| {
                        json!({"name": result.name, "taskId": task, "ready": result.ready,
                               "lastResponse": result.last_response})
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        root.insert("readinessCheckResults".to_owned(), Value::Array(results));
    }
    Ok(body)
}

/// The app `id` and its live instances; 404 in Marathon's words when absent.
async fn app_and_instances(
    state: &ApiState,
    id: &MarathonId,
) -> Result<(App, Vec<Instance>), MarathonError> {
    let request = app_request(state, id, false)?;
    let kv = state
        .store
        .get(&request.key())
        .await?
        .ok_or_else(|| MarathonError::NotFound(app_not_found(&id.to_string())))?;
    let app = decode_app(&object::from_store(&kv).map_err(MarathonError::from)?)?;
    let namespace = app.metadata.namespace_str().to_owned();
    let name = app.metadata.name_str().to_owned();
    let instances = tasks::instances_by_app(state, Some(&namespace))
        .await?
        .remove(&(namespace, name))
        .unwrap_or_default();
    Ok((app, instances))
}

/// Every App, in store order.
pub(crate) async fn list_apps(state: &ApiState) -> Result<Vec<App>, MarathonError> {
    let kind = super::served_kind("App")?;
    let mut options = ListOptions {
        limit: state.config.internal_page_size,
        ..ListOptions::default()
    };
    let mut apps = Vec::new();
    loop {
        let page = state.store.list(&kind.prefix(None), &options).await?;
        for kv in &page.items {
            match serde_json::from_slice::<App>(&kv.value) {
                Ok(app) => apps.push(app),
                Err(error) => {
                    tracing::warn!(key = %kv.key, %error, "skipping an App that does not decode")
                }
            }
        }
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => break,
        }
    }
    Ok(apps)
}

/// The app's AppVersions, newest first.
async fn app_versions(state: &ApiState, app: &App) -> Result<Vec<AppVersion>, MarathonError> {
    let Some(kind) = kinds::find_kind("AppVersion") else {
        return Ok(Vec::new());
    };
    let name = app.metadata.name_str();
    let prefix = kind.prefix(Some(app.metadata.namespace_str()));
    let mut options = ListOptions {
        limit: state.config.internal_page_size,
        ..ListOptions::default()
    };
    let mut versions = Vec::new();
    loop {
        let page = state.store.list(&prefix, &options).await?;
        versions.extend(
            page.items
                .iter()
                .filter_map(|kv| serde_json::from_slice::<AppVersion>(&kv.value).ok())
                .filter(|version| version.spec.app == name),
        );
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => break,
        }
    }
    versions.sort_by_key(|version| std::cmp::Reverse(version.spec.revision));
    Ok(versions)
}

/// The app definition at `version`: its AppVersion's snapshot, or the current spec when
/// `version` is the current one.
async fn app_at_version(
    state: &ApiState,
    app: &App,
    version: &str,
) -> Result<Option<Value>, MarathonError> {
    let snapshot = app_versions(state, app)
        .await?
        .into_iter()
        .find(|snapshot| snapshot.spec.version == version);
    let mut at = app.clone();
    match snapshot {
        Some(snapshot) => at.spec = snapshot.spec.template,
        None if app_json::version(app) == version => {}
        None => return Ok(None),
    }
    let status = at.status.get_or_insert_with(Default::default);
    status.current_version = Some(version.to_owned());
    status.deployments.clear();
    let mut body = app_json::to_marathon(&at, TaskCounts::default())?;
    if let Some(root) = body.as_object_mut() {
        for key in [
            "tasksStaged",
            "tasksRunning",
            "tasksHealthy",
            "tasksUnhealthy",
            "deployments",
        ] {
            root.remove(key);
        }
    }
    Ok(Some(body))
}

async fn current_deployments(request: &ResourceRequest) -> Result<Vec<String>, MarathonError> {
    Ok(match request.state.store.get(&request.key()).await? {
        Some(kv) => deployments_of(&object::from_store(&kv).map_err(MarathonError::from)?),
        None => Vec::new(),
    })
}

pub(crate) fn deployments_of(object: &Value) -> Vec<String> {
    object
        .pointer("/status/deployments")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn decode_app(object: &Value) -> Result<App, MarathonError> {
    serde_json::from_value(object.clone())
        .map_err(|error| MarathonError::internal(format!("decode stored App: {error}")))
}

/// An app id from the URL; an id that names no object cannot exist (404).
pub(crate) fn path_id(text: &str) -> Result<MarathonId, MarathonError> {
    let id = MarathonId::parse(text)
        .map_err(|_| MarathonError::NotFound(app_not_found(&format!("/{text}"))))?;
    if id.to_object().is_err() {
        return Err(MarathonError::NotFound(app_not_found(&id.to_string())));
    }
    Ok(id)
}

/// A request body as JSON; 400 `Invalid JSON` when it is not.
fn parse_json(body: &[u8]) -> Result<Value, MarathonError> {
    serde_json::from_slice(body).map_err(|error| MarathonError::InvalidJson {
        path: "/".to_owned(),
        error: error.to_string(),
    })
}

fn set_location(response: &mut Response, headers: &HeaderMap, id: &MarathonId) {
    let location = match super::request_host(headers) {
        Some(host) => format!("http://{host}/v2/apps{id}"),
        None => format!("/v2/apps{id}"),
    };
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_paths() {
        for (path, expect) in [
            ("prod/shop/web", AppPath::App("prod/shop/web".into())),
            ("web/", AppPath::App("web".into())),
            ("prod/web/restart", AppPath::Restart("prod/web".into())),
            ("prod/web/tasks", AppPath::Tasks("prod/web".into())),
            ("prod/web/versions", AppPath::Versions("prod/web".into())),
            (
                "prod/web/tasks/prod_web.web-x7k2p",
                AppPath::Task("prod/web".into(), "prod_web.web-x7k2p".into()),
            ),
            (
                "prod/web/versions/2015-09-25T15:13:48.343Z",
                AppPath::Version("prod/web".into(), "2015-09-25T15:13:48.343Z".into()),
            ),
        ] {
            assert_eq!(AppPath::parse(path), expect, "{path}");
        }
    }

    #[test]
    fn rollback_bodies() {
        assert_eq!(
            rollback_version(&json!({"version": "v1"})).as_deref(),
            Some("v1")
        );
        assert_eq!(
            rollback_version(&json!({"id": "/a", "version": "v1"})).as_deref(),
            Some("v1")
        );
        assert_eq!(
            rollback_version(&json!({"version": "v1", "cmd": "x"})),
            None
        );
    }
}
