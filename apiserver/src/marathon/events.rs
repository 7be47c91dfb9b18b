//! Marathon's event bus: `GET /v2/events` (Server-Sent Events) and `/v2/eventSubscriptions`
//! (HTTP callbacks), with Marathon's event types derived from the store.
//!
//! Nothing in Pacer publishes events: the API server, the controllers and the agents only write
//! objects. [`EventBus`] turns the changes of Apps, Instances, Deployments and Events into
//! Marathon's events (`derive`): one watch of `/registry/` through the watch hub (the same
//! shared feed HTTP watchers use), one derivation per change, each event serialized once and
//! broadcast in memory to every consumer. The derivation starts with the first consumer and
//! then runs until the server shuts down.
//!
//! Consumers never slow the control plane or each other: the broadcast channel is bounded, and
//! an SSE subscriber that falls [`EVENT_BUFFER`] events behind is disconnected (Marathon's
//! `--event_stream_max_outstanding_messages`); callback subscribers have their own bounded
//! queues and delivery tasks (`subscriptions`).
//!
//! SSE frames are `event: <eventType>` + one `data:` line of JSON (the Python Marathon client
//! reads only single-line `data:` fields). The first event of a stream is its own
//! `event_stream_attached`; `event_stream_detached` is published when a stream ends.
//! `event_type=<t>` (repeatable) filters; `plan-format=light` drops the `original` and `target`
//! groups of deployment plans.

pub mod derive;
pub mod subscriptions;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use pacer_schemas::Time;
use pacer_store::{ListOptions, Revision, WatchStream};
use serde_json::Value;
use tokio::sync::{Notify, OnceCell, broadcast, oneshot};

use self::derive::{Derived, Deriver};
use super::MarathonQuery;
use super::error::MarathonError;
use crate::state::ApiState;
use crate::watch::event::FeedEvent;
use crate::watch::hub::Subscription;

/// How many events the bus holds for its slowest consumer; an SSE stream further behind is
/// disconnected.
pub const EVENT_BUFFER: usize = 4096;

/// The store prefix the bus watches (Apps, Instances, Deployments and Events are under it).
const WATCHED_PREFIX: &str = "/registry/";

/// Resources whose changes become events; the initial state of each is read before the watch.
const WATCHED_RESOURCES: [&str; 4] = ["apps", "instances", "deployments", "events"];

/// SSE keep-alive comments, so proxies do not close an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One Marathon event, serialized once for every consumer.
#[derive(Debug)]
pub struct BusEvent {
    /// Marathon's `eventType`.
    pub event_type: &'static str,
    /// The JSON payload (`plan-format=full`).
    pub full: String,
    /// The payload with light plans, for events that carry a plan.
    light: Option<String>,
}

impl BusEvent {
    fn new(derived: &Derived) -> Self {
        Self {
            event_type: derived.event_type,
            full: derived.payload.to_string(),
            light: derived.light.as_ref().map(Value::to_string),
        }
    }

    /// The payload for a consumer asking for light plans or not.
    pub fn payload(&self, light: bool) -> &str {
        match (&self.light, light) {
            (Some(light), true) => light,
            _ => &self.full,
        }
    }
}

/// The event bus of one API server (see the module docs).
#[derive(Debug)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<BusEvent>>,
    /// Set once the derivation runs (its initial state read).
    started: OnceCell<()>,
    /// Woken when this server changed the callback subscriptions.
    pub(crate) subscriptions_changed: Notify,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(EVENT_BUFFER).0,
            started: OnceCell::new(),
            subscriptions_changed: Notify::new(),
        }
    }
}

impl EventBus {
    /// Every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.sender.subscribe()
    }

    /// Publishes one event to every consumer (none is fine).
    pub fn publish(&self, derived: &Derived) {
        let _ = self.sender.send(Arc::new(BusEvent::new(derived)));
    }

    /// Starts deriving events from the store unless it runs already; returns once the
    /// derivation has read the current state, so every later change becomes an event.
    pub async fn ensure_started(&self, state: &ApiState) -> Result<(), MarathonError> {
        self.started
            .get_or_try_init(|| async {
                let (ready, started) = oneshot::channel();
                tokio::spawn(derive_events(state.clone(), ready));
                match started.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(error),
                    Err(_) => Err(MarathonError::Other {
                        code: StatusCode::SERVICE_UNAVAILABLE,
                        message: "the event bus stopped while starting".to_owned(),
                    }),
                }
            })
            .await
            .map(|_| ())
    }
}

/// Whether `key` belongs to a resource whose changes become events.
fn is_watched(key: &str) -> bool {
    key.strip_prefix(WATCHED_PREFIX).is_some_and(|rest| {
        WATCHED_RESOURCES.iter().any(|resource| {
            rest.strip_prefix(resource)
                .is_some_and(|rest| rest.starts_with('/'))
        })
    })
}

/// The events a change under `/registry/` gives, or none for other resources.
fn derive_change(deriver: &mut Deriver, change: &FeedEvent, now: Time) -> Vec<Derived> {
    let Some(object) = change.object() else {
        return Vec::new();
    };
    match change.kind {
        pacer_store::EventKind::Put => deriver.put(&change.key, object, now),
        pacer_store::EventKind::Delete => deriver.delete(&change.key, object, now),
    }
}

/// Reads the current state of the watched resources into a fresh deriver (no events); returns
/// the revision it was read at.
async fn initial_state(state: &ApiState) -> Result<(Deriver, Revision), MarathonError> {
    let revision = state.store.current_revision().await?;
    let mut deriver = Deriver::default();
    let now = Time::new(jiff::Timestamp::now());
    for resource in WATCHED_RESOURCES {
        let mut options = ListOptions {
            limit: state.config.internal_page_size,
            revision: Some(revision),
            ..ListOptions::default()
        };
        loop {
            let page = state
                .store
                .list(&format!("{WATCHED_PREFIX}{resource}/"), &options)
                .await?;
            for kv in &page.items {
                match serde_json::from_slice::<Value>(&kv.value) {
                    Ok(object) => {
                        deriver.put(&kv.key, &object, now);
                    }
                    Err(error) => {
                        tracing::warn!(key = %kv.key, %error, "event bus: skipping a value that is not JSON");
                    }
                }
            }
            match page.continue_token {
                Some(token) => options.continue_token = Some(token),
                None => break,
            }
        }
    }
    Ok((deriver, revision))
}

/// Where the derivation reads changes from.
enum Changes {
    /// The hub's shared feed.
    Feed {
        replay: std::vec::IntoIter<Arc<FeedEvent>>,
        live: broadcast::Receiver<Arc<FeedEvent>>,
    },
    /// A store watch of its own (the feed no longer covers where it is).
    Store(WatchStream),
}

impl Changes {
    /// The next change; `None` when the source ended, lagged or failed (resume from the store).
    async fn next(&mut self) -> Option<Arc<FeedEvent>> {
        match self {
            Self::Feed { replay, live } => {
                if let Some(change) = replay.next() {
                    return Some(change);
                }
                match live.recv().await {
                    Ok(change) => Some(change),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "event bus lagged behind the watch feed; resuming");
                        None
                    }
                    Err(broadcast::error::RecvError::Closed) => None,
                }
            }
            Self::Store(stream) => match stream.next().await {
                Some(Ok(change)) => Some(Arc::new(FeedEvent::from_store(change))),
                Some(Err(error)) => {
                    tracing::warn!(%error, "event bus: store watch failed; resuming");
                    None
                }
                None => None,
            },
        }
    }
}

/// The derivation task: initial state, then every change, until shutdown. A change is derived
/// against the deriver's own cache (not the change's previous value), so resuming one
/// revision early after a lag repeats no event. When the store no longer has the revision to
/// resume from, the state is read afresh (changes in between give no events).
async fn derive_events(state: ApiState, ready: oneshot::Sender<Result<(), MarathonError>>) {
    let (mut deriver, mut after) = match initial_state(&state).await {
        Ok(initial) => initial,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    tracing::debug!(after, "event bus started");
    let bus = &state.events;
    while !state.shutdown.is_cancelled() {
        let mut changes = match state.hub.subscribe(WATCHED_PREFIX, after).await {
            Ok(Subscription::Live { replay, live }) => Changes::Feed {
                replay: replay.into_iter(),
                live,
            },
            Ok(Subscription::Behind) => match state.store.watch(WATCHED_PREFIX, after).await {
                Ok(stream) => Changes::Store(stream),
                Err(error) => {
                    tracing::warn!(%error, after, "event bus: cannot resume; reading the state afresh");
                    match initial_state(&state).await {
                        Ok(initial) => (deriver, after) = initial,
                        Err(error) => {
                            tracing::warn!(%error, "event bus: reading the state failed");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    continue;
                }
            },
            Err(error) => {
                tracing::warn!(%error, after, "event bus: cannot watch; reading the state afresh");
                match initial_state(&state).await {
                    Ok(initial) => (deriver, after) = initial,
                    Err(error) => {
                        tracing::warn!(%error, "event bus: reading the state failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                continue;
            }
        };
        loop {
            let change = tokio::select! {
                () = state.shutdown.cancelled() => return,
                change = changes.next() => change,
            };
            let Some(change) = change else {
                break;
            };
            if !is_watched(&change.key) {
                after = after.max(change.revision.saturating_sub(1));
                continue;
            }
            let now = Time::new(jiff::Timestamp::now());
            for derived in derive_change(&mut deriver, &change, now) {
                bus.publish(&derived);
            }
            // Resume (after a lag) from the start of this change's revision: the deriver's
            // cache makes a repeated change a no-op.
            after = after.max(change.revision.saturating_sub(1));
        }
    }
}

/// The client's address, for `remoteAddress`/`clientIp`: the socket's when the server records
/// it, else the first `X-Forwarded-For` hop.
pub(crate) fn client_address(headers: &HeaderMap, request: Option<&Request>) -> Option<String> {
    if let Some(ConnectInfo(address)) =
        request.and_then(|request| request.extensions().get::<ConnectInfo<SocketAddr>>())
    {
        return Some(address.ip().to_string());
    }
    headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// One SSE stream's view of the bus.
struct StreamState {
    live: broadcast::Receiver<Arc<BusEvent>>,
    types: Vec<String>,
    light: bool,
    /// Publishes `event_stream_detached` when the stream is dropped.
    _detach: DetachOnDrop,
}

struct DetachOnDrop {
    state: ApiState,
    remote: Option<String>,
}

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        self.state.events.publish(&derive::stream_event(
            "event_stream_detached",
            self.remote.as_deref(),
            Time::new(jiff::Timestamp::now()),
        ));
    }
}

impl StreamState {
    fn wants(&self, event: &BusEvent) -> bool {
        self.types.is_empty() || self.types.iter().any(|wanted| wanted == event.event_type)
    }
}

/// `GET /v2/events`: the event stream (see the module docs).
pub async fn stream(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Response, MarathonError> {
    let headers = request.headers().clone();
    let accepts = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    if !accepts.is_empty()
        && !accepts.contains("text/event-stream")
        && !accepts.contains("*/*")
        && !accepts.contains("text/*")
    {
        return Err(MarathonError::Other {
            code: StatusCode::NOT_ACCEPTABLE,
            message: "/v2/events serves text/event-stream only".to_owned(),
        });
    }
    let query = MarathonQuery::parse(request.uri())?;
    let light = match query.one("plan-format") {
        None | Some("" | "full") => false,
        Some("light") => true,
        Some(other) => {
            return Err(MarathonError::BadRequest(format!(
                "plan-format: expected light or full, got {other:?}"
            )));
        }
    };
    let types: Vec<String> = query
        .all("event_type")
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
        .collect();
    let remote = client_address(&headers, Some(&request));
    state.events.ensure_started(&state).await?;
    let live = state.events.subscribe();
    // Published after subscribing, so this stream's first event is its own attachment.
    state.events.publish(&derive::stream_event(
        "event_stream_attached",
        remote.as_deref(),
        Time::new(jiff::Timestamp::now()),
    ));
    tracing::debug!(
        remote = remote.as_deref().unwrap_or(""),
        ?types,
        light,
        "event stream attached"
    );
    let subscriber = StreamState {
        live,
        types,
        light,
        _detach: DetachOnDrop {
            state: state.clone(),
            remote,
        },
    };
    let events = futures::stream::unfold(subscriber, |mut subscriber| async move {
        loop {
            match subscriber.live.recv().await {
                Ok(event) => {
                    if subscriber.wants(&event) {
                        let frame = SseEvent::default()
                            .event(event.event_type)
                            .data(event.payload(subscriber.light));
                        return Some((Ok::<_, Infallible>(frame), subscriber));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "event stream: slow subscriber disconnected");
                    return None;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .take_until(state.shutdown.clone().cancelled_owned());
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Tell proxies (nginx) not to buffer the stream (Marathon issue 1926).
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(response)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use pacer_store::Store;
    use pacer_store::embedded::EmbeddedStore;
    use tower::ServiceExt;

    use super::*;
    use crate::state::ApiConfig;

    fn state() -> (tempfile::TempDir, ApiState) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
        (
            dir,
            ApiState::new(store as Arc<dyn Store>, ApiConfig::default()),
        )
    }

    /// A subscriber that does not read while more than [`EVENT_BUFFER`] events are published
    /// is disconnected: publishing never waits for it, and its stream ends after what it could
    /// still read instead of hanging or growing without bound.
    #[tokio::test]
    async fn a_slow_subscriber_is_disconnected_without_blocking_the_bus() {
        let (_dir, state) = state();
        let router = crate::router(state.clone());
        let request = HttpRequest::get("/v2/events?event_type=event_stream_attached")
            .header(header::ACCEPT, "text/event-stream")
            .body(Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let now = Time::new(jiff::Timestamp::now());
        let published = std::time::Instant::now();
        for _ in 0..EVENT_BUFFER * 3 {
            state
                .events
                .publish(&derive::stream_event("event_stream_attached", None, now));
        }
        assert!(published.elapsed() < Duration::from_secs(5));
        let body = tokio::time::timeout(
            Duration::from_secs(10),
            axum::body::to_bytes(response.into_body(), usize::MAX),
        )
        .await
        .expect("the lagging stream ends")
        .unwrap();
        let frames = String::from_utf8_lossy(&body).matches("data:").count();
        assert!(frames < EVENT_BUFFER * 3, "{frames} frames");
    }

    /// `Accept` without event streams is 406; an unknown `plan-format` is 400.
    #[tokio::test]
    async fn requests_the_stream_cannot_serve_are_refused() {
        let (_dir, state) = state();
        for (accept, uri, code) in [
            ("application/json", "/v2/events", StatusCode::NOT_ACCEPTABLE),
            (
                "text/event-stream",
                "/v2/events?plan-format=heavy",
                StatusCode::BAD_REQUEST,
            ),
        ] {
            let request = HttpRequest::get(uri)
                .header(header::ACCEPT, accept)
                .body(Body::empty())
                .unwrap();
            let response = crate::router(state.clone()).oneshot(request).await.unwrap();
            assert_eq!(response.status(), code, "{accept} {uri}");
        }
    }
}
