//! `/v2/eventSubscriptions`: Marathon's HTTP callback subscriptions, kept in the store and
//! delivered by HTTP POST from background tasks.
//!
//! **Storage.** One key per callback URL, `/event-subscriptions/<hex of the URL>`, holding
//! `{"callbackUrl", "clientIp", "createdAt"}`. Outside `/registry/` on purpose: a subscription
//! is server configuration, not an API object — it has no kind, is not served under `/apis`,
//! is not in the event bus's own watch of `/registry/`, and so no subscription change loops
//! back as an event. One key per URL makes a repeated `POST` an idempotent create and a
//! `DELETE` one key delete; hex keeps any URL a valid, reversible key. It is durable (etcd or
//! the embedded store) and shared by every API server replica.
//!
//! **Delivery.** Only one API server delivers: the one leading the election
//! `/elections/event-subscriptions/` (campaigned for only while a subscription exists). Its
//! dispatcher reloads the subscriptions every [`RELOAD_INTERVAL`] (at once after a change made
//! through this server), consumes the event bus only while there is at least one, and hands
//! each event to a per-URL worker through a
//! bounded queue ([`QUEUE`]; a full queue drops the event for that URL with a warning). The
//! worker POSTs each event's JSON in order, retrying failures (connection errors and non-2xx
//! answers) with exponential backoff ([`retry_policy`], `backon`), then gives up on that event.
//! Nothing here ever waits on the control plane or on the SSE streams, nor they on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use backon::{ExponentialBuilder, Retryable};
use pacer_schemas::Time;
use pacer_store::{Election, LeaseKeeper, ListOptions, Store, StoreError};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::derive::{event_time, subscription_event};
use super::{BusEvent, client_address};
use crate::marathon::MarathonQuery;
use crate::marathon::error::MarathonError;
use crate::state::ApiState;

/// Where subscriptions are stored (see the module docs).
pub const SUBSCRIPTIONS_PREFIX: &str = "/event-subscriptions/";

/// How often the dispatcher re-reads the subscriptions (to see other replicas' changes).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Events queued per callback URL before new ones are dropped.
pub const QUEUE: usize = 1024;

/// Longest one callback POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a callback delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The request did not complete.
    #[error("callback request failed: {0}")]
    Request(#[from] reqwest::Error),
    /// The callback answered with a non-2xx status.
    #[error("callback answered {0}")]
    Status(u16),
}

/// Retries of one event's delivery: 200 ms doubling up to 10 s, six retries, with jitter.
pub fn retry_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_factor(2.0)
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(6)
        .with_jitter()
}

/// The store key of `callback_url`.
pub fn subscription_key(callback_url: &str) -> String {
    let mut key = String::with_capacity(SUBSCRIPTIONS_PREFIX.len() + callback_url.len() * 2);
    key.push_str(SUBSCRIPTIONS_PREFIX);
    for byte in callback_url.as_bytes() {
        key.push_str(&format!("{byte:02x}"));
    }
    key
}

/// Every stored callback URL, in key order.
pub async fn callback_urls(store: &dyn Store) -> Result<Vec<String>, StoreError> {
    let mut options = ListOptions::default();
    let mut urls = Vec::new();
    loop {
        let page = store.list(SUBSCRIPTIONS_PREFIX, &options).await?;
        for kv in &page.items {
            match serde_json::from_slice::<Value>(&kv.value) {
                Ok(value) => {
                    if let Some(url) = value["callbackUrl"].as_str() {
                        urls.push(url.to_owned());
                    }
                }
                Err(error) => {
                    tracing::warn!(key = %kv.key, %error, "skipping an event subscription that is not JSON");
                }
            }
        }
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => return Ok(urls),
        }
    }
}

/// The `callbackUrl` of a request: present, and an absolute `http`/`https` URL.
fn callback_url(query: &MarathonQuery) -> Result<String, MarathonError> {
    let url = query
        .one("callbackUrl")
        .filter(|url| !url.is_empty())
        .ok_or_else(|| MarathonError::BadRequest("callbackUrl is required".to_owned()))?;
    let parsed = reqwest::Url::parse(url)
        .map_err(|error| MarathonError::BadRequest(format!("callbackUrl {url:?}: {error}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(MarathonError::BadRequest(format!(
            "callbackUrl {url:?}: only http and https callbacks are supported"
        )));
    }
    Ok(url.to_owned())
}

/// `GET /v2/eventSubscriptions`: `{"callbackUrls": [...]}`.
pub async fn list(State(state): State<ApiState>) -> Result<Response, MarathonError> {
    let urls = callback_urls(state.store.as_ref()).await?;
    Ok(crate::marathon::json(
        StatusCode::OK,
        &json!({"callbackUrls": urls}),
    ))
}

/// `POST /v2/eventSubscriptions?callbackUrl=`: subscribes (idempotently) and answers the
/// `subscribe_event`.
pub async fn create(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(request.uri())?;
    let url = callback_url(&query)?;
    let client_ip = client_address(request.headers(), Some(&request));
    let now = Time::new(jiff::Timestamp::now());
    let record = json!({"callbackUrl": url, "clientIp": client_ip, "createdAt": event_time(now)});
    let key = subscription_key(&url);
    match state
        .store
        .create(&key, serde_json::to_vec(&record).unwrap_or_default(), None)
        .await
    {
        Ok(_) => tracing::info!(callback_url = %url, "event subscription added"),
        Err(StoreError::AlreadyExists { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    state.events.subscriptions_changed.notify_one();
    let event = subscription_event("subscribe_event", client_ip.as_deref(), &url, now);
    state.events.publish(&event);
    Ok(crate::marathon::json(StatusCode::OK, &event.payload))
}

/// `DELETE /v2/eventSubscriptions?callbackUrl=`: unsubscribes and answers the
/// `unsubscribe_event` (also when it was not subscribed, as Marathon does).
pub async fn delete(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Response, MarathonError> {
    let query = MarathonQuery::parse(request.uri())?;
    let url = callback_url(&query)?;
    let client_ip = client_address(request.headers(), Some(&request));
    let key = subscription_key(&url);
    if let Some(kv) = state.store.get(&key).await? {
        match state.store.delete(&key, kv.mod_revision).await {
            Ok(_) => tracing::info!(callback_url = %url, "event subscription removed"),
            Err(StoreError::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    state.events.subscriptions_changed.notify_one();
    let now = Time::new(jiff::Timestamp::now());
    let event = subscription_event("unsubscribe_event", client_ip.as_deref(), &url, now);
    state.events.publish(&event);
    Ok(crate::marathon::json(StatusCode::OK, &event.payload))
}

/// One callback URL's worker: its queue and the token that stops it.
struct Worker {
    queue: mpsc::Sender<Arc<BusEvent>>,
    stop: CancellationToken,
}

/// Where API servers elect the one that delivers callbacks.
pub const ELECTION: &str = "/elections/event-subscriptions/";

/// TTL of the delivering server's election lease, in seconds (as the controllers').
const ELECTION_TTL_SECONDS: i64 = 5;

/// Waits until `shutdown`, a change through this server, or the next reload; `false` on
/// shutdown.
async fn pause(state: &ApiState) -> bool {
    tokio::select! {
        () = state.shutdown.cancelled() => false,
        () = state.events.subscriptions_changed.notified() => true,
        () = tokio::time::sleep(RELOAD_INTERVAL) => true,
    }
}

/// Callback delivery of one API server, until it shuts down: once a subscription exists, the
/// server campaigns in [`ELECTION`] and, while it leads, delivers ([`deliver_all`]) — so with
/// several API servers each event is POSTed once (Marathon delivers from its leader only).
/// Without subscriptions it holds no lease and only re-reads them every [`RELOAD_INTERVAL`].
pub async fn dispatch(state: ApiState) {
    let store = Arc::clone(&state.store);
    let election = match Election::new(Arc::clone(&store), ELECTION) {
        Ok(election) => election,
        Err(error) => {
            tracing::error!(%error, "event subscriptions: invalid election; callbacks are off");
            return;
        }
    };
    let identity = format!("apiserver-{}", std::process::id());
    loop {
        match callback_urls(store.as_ref()).await {
            Ok(urls) if !urls.is_empty() => {}
            Ok(_) => {
                if pause(&state).await {
                    continue;
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "event subscriptions: cannot read them");
                if pause(&state).await {
                    continue;
                }
                return;
            }
        }
        let lease = match store.lease_grant(ELECTION_TTL_SECONDS).await {
            Ok(lease) => lease,
            Err(error) => {
                tracing::warn!(%error, "event subscriptions: cannot grant an election lease");
                if pause(&state).await {
                    continue;
                }
                return;
            }
        };
        let keeper = LeaseKeeper::start(Arc::clone(&store), lease, ELECTION_TTL_SECONDS);
        let won = tokio::select! {
            () = state.shutdown.cancelled() => false,
            () = keeper.lost() => false,
            won = election.campaign(lease, identity.clone().into_bytes()) => match won {
                Ok(_leadership) => true,
                Err(error) => {
                    tracing::warn!(%error, "event subscriptions: campaign failed");
                    false
                }
            },
        };
        if won {
            tracing::info!(identity, "delivering event callbacks from this server");
            let stop = state.shutdown.child_token();
            tokio::select! {
                () = deliver_all(state.clone(), stop.clone()) => {}
                () = keeper.lost() => {
                    tracing::warn!("event callbacks: election lease lost; another server delivers");
                }
            }
            stop.cancel();
        }
        keeper.stop();
        if let Err(error) = store.lease_revoke(lease).await {
            tracing::debug!(%error, "event subscriptions: revoking the election lease failed");
        }
        if state.shutdown.is_cancelled() {
            return;
        }
        if !won {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The delivering server's dispatcher (see the module docs); runs until `shutdown`.
async fn deliver_all(state: ApiState, shutdown: CancellationToken) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder().timeout(POST_TIMEOUT).build() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "event subscriptions: cannot build the HTTP client; callbacks are off");
            return;
        }
    };
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut events: Option<broadcast::Receiver<Arc<BusEvent>>> = None;
    let mut reload = tokio::time::interval(RELOAD_INTERVAL);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = reload.tick() => {}
            () = state.events.subscriptions_changed.notified() => {}
            event = next_event(&mut events) => {
                match event {
                    Ok(event) => {
                        for (url, worker) in &workers {
                            if worker.queue.try_send(Arc::clone(&event)).is_err() {
                                tracing::warn!(callback_url = %url, event_type = event.event_type, "event callback queue full; dropping the event");
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "event subscriptions fell behind the bus; events dropped");
                    }
                    Err(broadcast::error::RecvError::Closed) => events = None,
                }
                continue;
            }
        }
        let urls = match callback_urls(state.store.as_ref()).await {
            Ok(urls) => urls,
            Err(error) => {
                tracing::warn!(%error, "event subscriptions: cannot read them; keeping the last ones");
                continue;
            }
        };
        workers.retain(|url, worker| {
            let keep = urls.contains(url);
            if !keep {
                worker.stop.cancel();
            }
            keep
        });
        for url in urls {
            if workers.contains_key(&url) {
                continue;
            }
            let (queue, received) = mpsc::channel(QUEUE);
            let stop = shutdown.child_token();
            tokio::spawn(deliver(client.clone(), url.clone(), received, stop.clone()));
            workers.insert(url, Worker { queue, stop });
        }
        if workers.is_empty() {
            events = None;
        } else if events.is_none() {
            match state.events.ensure_started(&state).await {
                Ok(()) => events = Some(state.events.subscribe()),
                Err(error) => {
                    tracing::warn!(%error, "event subscriptions: the event bus did not start")
                }
            }
        }
    }
    for worker in workers.values() {
        worker.stop.cancel();
    }
}

/// The next bus event, or never without a receiver.
async fn next_event(
    events: &mut Option<broadcast::Receiver<Arc<BusEvent>>>,
) -> Result<Arc<BusEvent>, broadcast::error::RecvError> {
    match events {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// POSTs every event of `queue` to `url`, in order, each with retries.
async fn deliver(
    client: reqwest::Client,
    url: String,
    mut queue: mpsc::Receiver<Arc<BusEvent>>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = queue.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        let post = || async {
            let response = client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(event.full.clone())
                .send()
                .await?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(DeliveryError::Status(response.status().as_u16()))
            }
        };
        let delivered = post
            .retry(retry_policy())
            .notify(|error: &DeliveryError, after: Duration| {
                tracing::debug!(callback_url = %url, event_type = event.event_type, %error, ?after, "event callback failed; retrying");
            });
        tokio::select! {
            () = stop.cancelled() => return,
            result = delivered => {
                if let Err(error) = result {
                    tracing::warn!(callback_url = %url, event_type = event.event_type, %error, "event callback failed; giving up on this event");
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_and_distinct_per_url() {
        let a = subscription_key("http://127.0.0.1:9000/callback?x=1");
        let b = subscription_key("http://127.0.0.1:9000/callback?x=2");
        assert_ne!(a, b);
        assert!(a.starts_with(SUBSCRIPTIONS_PREFIX));
        pacer_store::key::validate_key(&a).unwrap();
        assert!(
            a[SUBSCRIPTIONS_PREFIX.len()..]
                .chars()
                .all(|c| c.is_ascii_hexdigit())
        );
    }
}
