//! Marathon's launch queue: `GET /v2/queue` lists every App with instances waiting to launch
//! or a launch delay in force (the deployment controller's backoff in `status.launchDelay`),
//! and `DELETE /v2/queue/{appId}/delay` resets that delay.
//!
//! The view is derived, per request, from the App's status and its Instances by
//! `pacer_schemas::app::launch_queue_entry` — the same function `pacer get queue` uses. A reset
//! is a `/status` write that removes `status.launchDelay`; the deployment controller reacts to
//! it (it launches at once and counts failures from zero). The API server never talks to the
//! controllers.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use pacer_schemas::app::launch_queue_entry;
use pacer_schemas::{App, Instance, Time};
use serde_json::{Value, json};

use super::app_json;
use super::error::{MarathonError, app_not_found};
use super::tasks::{self, TaskCounts, marathon_time};
use super::{MarathonQuery, app_request};
use crate::object;
use crate::rest::Subresource;
use crate::rest::write;
use crate::state::ApiState;

/// `GET /v2/queue`: `{"queue": [{app, count, delay: {timeLeftSeconds, overdue}, overdue, since,
/// processedOffersSummary}]}`, one item per waiting App (`embed=lastUnusedOffers` adds an empty
/// `lastUnusedOffers`: Pacer places without offers).
pub async fn list(State(state): State<ApiState>, uri: Uri) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(&uri)?;
    let unused_offers = query.all("embed").any(|embed| embed == "lastUnusedOffers");
    let apps = super::apps::list_apps(&state).await?;
    let instances = tasks::instances_by_app(&state, None).await?;
    let now = Time::new(jiff::Timestamp::now());
    let mut queue = Vec::new();
    for app in &apps {
        let key = (
            app.metadata.namespace_str().to_owned(),
            app.metadata.name_str().to_owned(),
        );
        let own: Vec<&Instance> = instances.get(&key).into_iter().flatten().collect();
        if let Some(item) = queue_item(app, &own, now, unused_offers)? {
            queue.push(item);
        }
    }
    Ok(super::json(StatusCode::OK, &json!({ "queue": queue })))
}

/// One queue item, or `None` when nothing of `app` waits.
fn queue_item(
    app: &App,
    instances: &[&Instance],
    now: Time,
    unused_offers: bool,
) -> Result<Option<Value>, MarathonError> {
    let Some(entry) = launch_queue_entry(app, instances, now) else {
        return Ok(None);
    };
    let counts = TaskCounts::of(instances.iter().copied());
    let body = app_json::to_marathon(app, counts)?;
    // Marathon reports whole seconds left; round up so a delay in force never shows 0.
    let left = entry.delay_left_seconds.ceil() as i64;
    let mut item = json!({
        "app": body,
        "count": entry.waiting,
        "delay": {"timeLeftSeconds": left, "overdue": entry.overdue},
        "overdue": entry.overdue,
        "since": entry.since.map(marathon_time),
        "processedOffersSummary": {
            "processedOffersCount": 0,
            "unusedOffersCount": 0,
            "rejectSummaryLastOffers": [],
            "rejectSummaryLaunchAttempt": [],
        },
    });
    if unused_offers && let Some(map) = item.as_object_mut() {
        map.insert("lastUnusedOffers".to_owned(), json!([]));
    }
    Ok(Some(item))
}

/// `DELETE /v2/queue/{appId}/delay`: removes the App's launch delay (204); 404 when the App
/// does not exist, or has no delay recorded and nothing waiting.
pub async fn delete_path(
    State(state): State<ApiState>,
    Path(path): Path<String>,
) -> Result<Response, MarathonError> {
    let Some(app_path) = path.trim_end_matches('/').strip_suffix("/delay") else {
        return Err(MarathonError::NotFound(format!(
            "no such queue resource: /v2/queue/{path}"
        )));
    };
    let id = super::apps::path_id(app_path)?;
    let request = app_request(&state, &id, false)?;
    let not_in_queue =
        || MarathonError::NotFound(format!("Application {id} not found in tasks queue."));
    let Some(kv) = state.store.get(&request.key()).await? else {
        return Err(MarathonError::NotFound(app_not_found(&id.to_string())));
    };
    let app: App = serde_json::from_value(object::from_store(&kv)?)
        .map_err(|error| MarathonError::internal(format!("stored App does not decode: {error}")))?;
    let instances = tasks::instances_by_app(&state, Some(app.metadata.namespace_str())).await?;
    let key = (
        app.metadata.namespace_str().to_owned(),
        app.metadata.name_str().to_owned(),
    );
    let own: Vec<&Instance> = instances.get(&key).into_iter().flatten().collect();
    let delayed = app
        .status
        .as_ref()
        .is_some_and(|status| status.launch_delay.is_some());
    if !delayed && launch_queue_entry(&app, &own, Time::new(jiff::Timestamp::now())).is_none() {
        return Err(not_in_queue());
    }
    write::guaranteed_update(&request, Subresource::Status, true, |current| {
        let mut new = current.clone();
        if let Some(status) = new.get_mut("status").and_then(Value::as_object_mut) {
            status.remove("launchDelay");
        }
        Ok(new)
    })
    .await
    .map_err(|error| MarathonError::from_api(error, &id.to_string()))?;
    tracing::info!(app = %id, "launch delay reset through /v2/queue");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use pacer_schemas::app::{AppStatus, LaunchDelay};
    use pacer_schemas::{AppSpec, Time};

    use super::*;

    #[test]
    fn a_delayed_app_is_a_queue_item_the_python_client_parses() {
        let now = Time::from_unix_seconds(1_700_000_000).unwrap();
        let mut app = App::new("default", "web", AppSpec::default());
        app.status = Some(AppStatus {
            launch_delay: Some(LaunchDelay {
                consecutive_failures: 3,
                delay_seconds: 4.0,
                until: Time::from_unix_seconds(1_700_000_004),
                since: Time::from_unix_seconds(1_699_999_990),
                reason: Some("Failed: exit code 1".into()),
            }),
            ..AppStatus::default()
        });
        let item = queue_item(&app, &[], now, false).unwrap().unwrap();
        assert_eq!(item["app"]["id"], "/web");
        assert_eq!(item["count"], 1);
        assert_eq!(
            item["delay"],
            json!({"timeLeftSeconds": 4, "overdue": false})
        );
        assert_eq!(item["since"], "2023-11-14T22:13:10.000Z");
        // marathon-python 0.13's MarathonQueueItem takes exactly these keys.
        let mut keys: Vec<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "app",
                "count",
                "delay",
                "overdue",
                "processedOffersSummary",
                "since"
            ]
        );
        // Past the delay and nothing pending: not queued.
        let later = Time::from_unix_seconds(1_700_000_005).unwrap();
        assert!(queue_item(&app, &[], later, false).unwrap().is_none());
    }
}
