//! WATCH (`GET …/{plural}?watch=true`): a 200 response streaming newline-delimited
//! `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":…}` frames.
//!
//! - `resourceVersion` unset or `"0"`: the current state as synthetic ADDED events (one
//!   consistent list), then every change after it; `sendInitialEvents=true` with bookmarks
//!   allowed ends the initial state with a BOOKMARK annotated `k8s.io/initial-events-end`.
//! - `resourceVersion=X`: every change after X.
//! - Label and field selectors apply: an object that starts matching is ADDED, one that stops
//!   matching is DELETED.
//! - `allowWatchBookmarks=true`: a BOOKMARK every `bookmark_interval` with the revision the
//!   watcher has seen up to (events filtered out included).
//! - The stream ends cleanly after `timeoutSeconds` (capped by `max_watch_timeout`), at server
//!   shutdown, and when the resource's feed stops (the client re-watches from its last RV).
//! - `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` (`kubectl get -w`): each event's
//!   object is a one-row `Table` (see `table`), the first one with the column definitions.
//! - A compacted `resourceVersion`: 200 with one ERROR frame holding a 410 `Expired` Status
//!   (as Kubernetes does, so kube-rs and client-go relist), then the end.
//!
//! Watchers are served from the resource's shared feed (`hub`): one store watch per resource,
//! fanned out in memory. A watcher the feed cannot serve (too far in the past, or lagging more
//! than the broadcast buffer) gets its own store watch, resumed exactly where it was.

pub mod event;
pub mod hub;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use pacer_store::{ListOptions, Revision, StoreError, WatchStream};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ApiError;
use crate::kinds::KindDef;
use crate::object;
use crate::raw_json;
use crate::rest::ResourceRequest;
use crate::selector::Selectors;
use crate::state::ApiState;
use crate::table;
use crate::watch::event::{EventType, FeedEvent};
use crate::watch::hub::Subscription;

/// Frames buffered between a watcher's task and its HTTP response.
const FRAME_BUFFER: usize = 64;

/// Starts a watch and answers with its stream.
pub async fn handle(request: ResourceRequest) -> Result<Response, ApiError> {
    let config = &request.state.config;
    let timeout = request
        .params
        .timeout
        .map_or(config.max_watch_timeout, |asked| {
            asked.min(config.max_watch_timeout)
        });
    let watcher = Watcher {
        state: request.state.clone(),
        kind: request.target.kind,
        prefix: request
            .target
            .kind
            .prefix(request.target.namespace.as_deref()),
        selectors: Selectors {
            labels: request.params.label_selector.clone(),
            fields: request.params.field_selector.clone(),
        },
        bookmarks: request.params.allow_watch_bookmarks,
        initial_events_end: request.params.send_initial_events,
        deadline: Instant::now() + timeout,
        table: table::wants_table(&request.headers),
        columns_sent: AtomicBool::new(false),
    };
    let start = request.params.resource_version;
    let (sender, receiver) = mpsc::channel::<Bytes>(FRAME_BUFFER);
    tokio::spawn(async move { watcher.run(start, sender).await }.instrument_current());
    let body = Body::from_stream(ReceiverStream::new(receiver).map(Ok::<_, Infallible>));
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Runs a future in the current tracing span (the request's).
trait InstrumentCurrent: Sized {
    fn instrument_current(self) -> tracing::instrument::Instrumented<Self>;
}

impl<F: std::future::Future> InstrumentCurrent for F {
    fn instrument_current(self) -> tracing::instrument::Instrumented<Self> {
        tracing::Instrument::instrument(self, tracing::Span::current())
    }
}

/// One HTTP watcher.
struct Watcher {
    state: ApiState,
    kind: &'static KindDef,
    /// Only keys under this prefix (the namespace's, or the whole resource's).
    prefix: String,
    selectors: Selectors,
    bookmarks: bool,
    initial_events_end: bool,
    deadline: Instant,
    /// Send each object as a one-row `Table` (`Accept: …;as=Table;…`).
    table: bool,
    /// Whether a table event with `columnDefinitions` went out already.
    columns_sent: AtomicBool,
}

/// Where a watcher's events come from.
enum Source {
    /// The shared feed: replayed history first, then live events.
    Feed {
        replay: std::vec::IntoIter<Arc<FeedEvent>>,
        live: broadcast::Receiver<Arc<FeedEvent>>,
    },
    /// A store watch of its own.
    Store(WatchStream),
}

/// The next thing a source yields.
enum Next {
    Event(Arc<FeedEvent>),
    /// The watcher fell behind the feed's buffer: resume from the store.
    Lagged,
    /// The source ended (feed stopped): end the stream cleanly.
    End,
    /// The store failed (e.g. `Expired`).
    Failed(StoreError),
}

/// How far a watcher has got: every event up to `revision` is handled, except that when
/// `partial` is set only `count` events of `revision` itself are (a transaction can change
/// several keys at one revision).
#[derive(Clone, Copy, Debug)]
struct Position {
    revision: Revision,
    count: usize,
    partial: bool,
    /// Events of `revision` still to skip after resuming from the store mid-revision.
    skip: usize,
}

impl Watcher {
    /// Streams events until the watch ends; a failure (e.g. `Expired`) is sent as a last
    /// ERROR frame.
    async fn run(self, start: Option<Revision>, sender: mpsc::Sender<Bytes>) {
        if let Err(error) = self.stream(start, &sender).await {
            tracing::debug!(%error, "watch ended with an error event");
            let _ = sender.send(event::error(&error.to_status())).await;
        }
    }

    async fn stream(
        &self,
        start: Option<Revision>,
        sender: &mpsc::Sender<Bytes>,
    ) -> Result<(), ApiError> {
        let start = match start {
            Some(revision) => revision,
            None => match self.send_initial_state(sender).await? {
                Some(revision) => revision,
                None => return Ok(()),
            },
        };
        let mut position = Position {
            revision: start,
            count: 0,
            partial: false,
            skip: 0,
        };
        let feed_prefix = self.kind.prefix(None);
        let mut source = match self.state.hub.subscribe(&feed_prefix, start).await? {
            Subscription::Live { replay, live } => Source::Feed {
                replay: replay.into_iter(),
                live,
            },
            Subscription::Behind => {
                Source::Store(self.state.store.watch(&feed_prefix, start).await?)
            }
        };
        let period = self.state.config.bookmark_interval;
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                () = self.state.shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep_until(self.deadline) => return Ok(()),
                () = sender.closed() => return Ok(()),
                _ = ticker.tick(), if self.bookmarks => {
                    let frame = event::bookmark(self.kind.kind, position.revision, false);
                    if sender.send(frame).await.is_err() {
                        return Ok(());
                    }
                    continue;
                }
                next = source.next() => next,
            };
            match next {
                Next::Event(change) => {
                    if !position.accept(change.revision) {
                        continue;
                    }
                    if let Some(event_type) = change.type_for(&self.prefix, &self.selectors)
                        && sender.send(self.encode(&change, event_type)).await.is_err()
                    {
                        return Ok(());
                    }
                }
                Next::Lagged => {
                    let after = position.resume_after();
                    tracing::debug!(
                        after,
                        "watcher lagged behind the feed; resuming from the store"
                    );
                    source = Source::Store(self.state.store.watch(&feed_prefix, after).await?);
                }
                Next::End => return Ok(()),
                Next::Failed(error) => return Err(ApiError::from(error)),
            }
        }
    }

    /// The frame of a feed change: the shared frame, or a one-row table.
    fn encode(&self, change: &FeedEvent, event_type: EventType) -> Bytes {
        // Only a table watcher needs the decoded object; the others share the raw frame.
        match self.table.then(|| change.object()).flatten() {
            Some(object) => self.table_frame(event_type, object),
            None => change.frame(event_type),
        }
    }

    /// The frame of `object` as `event_type` as a one-row table; only the first table carries
    /// `columnDefinitions`.
    fn table_frame(&self, event_type: EventType, object: &Value) -> Bytes {
        let first = !self.columns_sent.swap(true, Ordering::Relaxed);
        let metadata = json!({"resourceVersion": object::resource_version(object).unwrap_or("")});
        let table = table::table(self.kind, std::slice::from_ref(object), metadata, first);
        event::frame(event_type.as_str(), &table)
    }

    /// Sends the current state as ADDED events, read as one consistent list; returns its
    /// revision (`None` when the client went away).
    async fn send_initial_state(
        &self,
        sender: &mpsc::Sender<Bytes>,
    ) -> Result<Option<Revision>, ApiError> {
        let mut options = ListOptions {
            limit: self.state.config.internal_page_size,
            ..ListOptions::default()
        };
        loop {
            let page = self.state.store.list(&self.prefix, &options).await?;
            let filtering = !(self.selectors.labels.is_empty() && self.selectors.fields.is_empty());
            for kv in &page.items {
                if filtering && !self.selectors.matches(&raw_json::selector_view(kv)?) {
                    continue;
                }
                let frame = if self.table {
                    self.table_frame(EventType::Added, &object::from_store(kv)?)
                } else {
                    event::stored_frame(EventType::Added, kv)?
                };
                if sender.send(frame).await.is_err() {
                    return Ok(None);
                }
            }
            match page.continue_token {
                Some(token) => options.continue_token = Some(token),
                None => {
                    if self.initial_events_end && self.bookmarks {
                        let frame = event::bookmark(self.kind.kind, page.revision, true);
                        if sender.send(frame).await.is_err() {
                            return Ok(None);
                        }
                    }
                    return Ok(Some(page.revision));
                }
            }
        }
    }
}

impl Source {
    async fn next(&mut self) -> Next {
        match self {
            Source::Feed { replay, live } => {
                if let Some(change) = replay.next() {
                    return Next::Event(change);
                }
                match live.recv().await {
                    Ok(change) => Next::Event(change),
                    Err(broadcast::error::RecvError::Lagged(_)) => Next::Lagged,
                    Err(broadcast::error::RecvError::Closed) => Next::End,
                }
            }
            Source::Store(stream) => match stream.next().await {
                Some(Ok(change)) => Next::Event(Arc::new(FeedEvent::from_store(change))),
                Some(Err(error)) => Next::Failed(error),
                None => Next::End,
            },
        }
    }
}

impl Position {
    /// Whether an event at `revision` is new to the watcher (and records it).
    fn accept(&mut self, revision: Revision) -> bool {
        if revision < self.revision {
            return false;
        }
        if revision == self.revision {
            if !self.partial {
                return false;
            }
            if self.skip > 0 {
                self.skip -= 1;
                return false;
            }
            self.count += 1;
            return true;
        }
        *self = Self {
            revision,
            count: 1,
            partial: true,
            skip: 0,
        };
        true
    }

    /// The revision to resume a store watch after, arranging to skip what was already seen.
    fn resume_after(&mut self) -> Revision {
        if self.partial {
            self.skip = self.count;
            self.count = 0;
            self.revision - 1
        } else {
            self.revision
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_skip_what_was_seen() {
        let mut position = Position {
            revision: 10,
            count: 0,
            partial: false,
            skip: 0,
        };
        assert!(!position.accept(9));
        assert!(!position.accept(10));
        assert!(position.accept(11));
        assert!(position.accept(11));
        assert!(position.accept(12));
        // Lag in the middle of revision 12 after one of its events: resume after 11 and skip
        // the first event of 12.
        assert_eq!(position.resume_after(), 11);
        assert!(!position.accept(11));
        assert!(!position.accept(12));
        assert!(position.accept(12));
        assert!(position.accept(13));
    }
}
