//! Watches a [`Source`] for changes, with error recovery: see [`watcher`].

use std::collections::VecDeque;
use std::time::Duration;

use futures::{Stream, StreamExt};
use pacer_schemas::Resource;

use crate::runtime::backoff::{Backoff, BackoffConfig};
use crate::runtime::source::{EventStream, Source, SourceError, SourceEvent};

/// What a [`watcher`] reports, in kube-runtime's shape.
///
/// A (re)list is framed as `Init`, one `InitApply` per listed object, then `InitDone`: a cache
/// buffers the `InitApply`s and swaps them in at `InitDone`, which drops objects that vanished
/// while the watch was down. After that, each change is an `Apply` or a `Delete`.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<K> {
    /// A list starts; the objects that follow replace everything known before.
    Init,
    /// An object of the list.
    InitApply(K),
    /// The list is complete.
    InitDone,
    /// An object was created or changed.
    Apply(K),
    /// An object was deleted; its last state.
    Delete(K),
}

impl<K> Event<K> {
    /// The object of an `InitApply`, `Apply` or `Delete`.
    pub fn object(&self) -> Option<&K> {
        match self {
            Self::InitApply(object) | Self::Apply(object) | Self::Delete(object) => Some(object),
            Self::Init | Self::InitDone => None,
        }
    }
}

/// Errors a [`watcher`] reports. Every one is retried by the watcher itself after a backoff
/// (and was logged there); they are passed on so that callers can count or surface them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Listing failed; the list is retried.
    #[error("list objects: {0}")]
    InitialListFailed(#[source] SourceError),
    /// Starting a watch failed; the watch is retried from the same revision.
    #[error("start a watch from resource version {resource_version:?}: {source}")]
    WatchStartFailed {
        /// The revision the watch was started from.
        resource_version: String,
        /// The source's error.
        #[source]
        source: SourceError,
    },
    /// A running watch failed; it is resumed from the last revision seen.
    #[error("watch: {0}")]
    WatchFailed(#[source] SourceError),
}

/// Result with a watcher [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a [`watcher`] retries.
#[derive(Clone, Debug, Default, PartialEq)]
#[must_use]
pub struct Config {
    /// Backoff after failed lists and watches; reset once a watch delivers an event.
    pub backoff: BackoffConfig,
}

impl Config {
    /// Sets the retry backoff.
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = backoff;
        self
    }
}

/// Lists `source`, then watches it from the list's revision, forever.
///
/// - A watch that ends (connection closed, server timeout) is resumed from the last revision
///   seen, from objects and bookmarks alike, so no change is missed or repeated.
/// - [`SourceError::Expired`] (the revision was compacted away, HTTP 410) leads to a fresh
///   list, reported as `Init` … `InitDone`.
/// - Any other failure is reported as an [`Error`] item and retried after an exponential,
///   jittered backoff ([`Config::backoff`]). Repeated expiries and watches that end without
///   delivering anything are backed off too, so a misbehaving source cannot cause a hot loop.
///
/// The stream never ends by itself and never panics; drop it to stop watching. It spawns no
/// task: all work happens while it is polled.
pub fn watcher<K, S>(source: S, config: Config) -> impl Stream<Item = Result<Event<K>>> + Send
where
    K: Resource,
    S: Source<K> + 'static,
{
    let state = State {
        source,
        phase: Phase::List,
        pending: VecDeque::new(),
        backoff: Backoff::new(config.backoff),
        wait: None,
    };
    futures::stream::unfold(state, step)
}

enum Phase<K> {
    /// (Re)list next.
    List,
    /// Start a watch from this revision next.
    Watch { resource_version: String },
    /// A watch is running.
    Watching {
        resource_version: String,
        stream: EventStream<K>,
        /// Whether this watch delivered anything (event or bookmark).
        delivered: bool,
    },
}

struct State<K, S> {
    source: S,
    phase: Phase<K>,
    /// Events of a list, handed out one per poll.
    pending: VecDeque<Event<K>>,
    backoff: Backoff,
    /// Delay before the next call to the source.
    wait: Option<Duration>,
}

async fn step<K, S>(mut state: State<K, S>) -> Option<(Result<Event<K>>, State<K, S>)>
where
    K: Resource,
    S: Source<K>,
{
    loop {
        if let Some(event) = state.pending.pop_front() {
            return Some((Ok(event), state));
        }
        if let Some(delay) = state.wait.take() {
            tokio::time::sleep(delay).await;
        }
        match std::mem::replace(&mut state.phase, Phase::List) {
            Phase::List => match state.source.list().await {
                Ok(list) => {
                    tracing::debug!(
                        kind = K::KIND,
                        objects = list.items.len(),
                        resource_version = %list.resource_version,
                        "listed"
                    );
                    state.pending.reserve(list.items.len() + 2);
                    state.pending.push_back(Event::Init);
                    state
                        .pending
                        .extend(list.items.into_iter().map(Event::InitApply));
                    state.pending.push_back(Event::InitDone);
                    state.phase = Phase::Watch {
                        resource_version: list.resource_version,
                    };
                }
                Err(error) => {
                    let delay = state.backoff.next_delay();
                    tracing::warn!(kind = K::KIND, error = %error, retry_in = ?delay, "list failed");
                    state.wait = Some(delay);
                    return Some((Err(Error::InitialListFailed(error)), state));
                }
            },
            Phase::Watch { resource_version } => {
                match state.source.watch(&resource_version).await {
                    Ok(stream) => {
                        tracing::debug!(kind = K::KIND, resource_version = %resource_version, "watching");
                        state.phase = Phase::Watching {
                            resource_version,
                            stream,
                            delivered: false,
                        };
                    }
                    Err(error) if error.is_expired() => {
                        // Expired right at the start: the revision (maybe a fresh list's) is
                        // already gone, so relisting at once could loop; back off.
                        state.relist_after_expiry(&error, false);
                    }
                    Err(source) => {
                        let delay = state.backoff.next_delay();
                        tracing::warn!(
                            kind = K::KIND,
                            resource_version = %resource_version,
                            error = %source,
                            retry_in = ?delay,
                            "watch could not start"
                        );
                        state.wait = Some(delay);
                        state.phase = Phase::Watch {
                            resource_version: resource_version.clone(),
                        };
                        let error = Error::WatchStartFailed {
                            resource_version,
                            source,
                        };
                        return Some((Err(error), state));
                    }
                }
            }
            Phase::Watching {
                mut resource_version,
                mut stream,
                delivered,
            } => match stream.next().await {
                Some(Ok(event)) => {
                    state.backoff.reset();
                    let event = match event {
                        SourceEvent::Added(object) | SourceEvent::Modified(object) => {
                            advance(&mut resource_version, &object);
                            Some(Event::Apply(object))
                        }
                        SourceEvent::Deleted(object) => {
                            advance(&mut resource_version, &object);
                            Some(Event::Delete(object))
                        }
                        SourceEvent::Bookmark(version) => {
                            if !version.is_empty() {
                                resource_version = version;
                            }
                            None
                        }
                    };
                    state.phase = Phase::Watching {
                        resource_version,
                        stream,
                        delivered: true,
                    };
                    if let Some(event) = event {
                        return Some((Ok(event), state));
                    }
                }
                Some(Err(error)) if error.is_expired() => {
                    state.relist_after_expiry(&error, delivered);
                }
                Some(Err(error)) => {
                    let delay = state.backoff.next_delay();
                    tracing::warn!(
                        kind = K::KIND,
                        resource_version = %resource_version,
                        error = %error,
                        retry_in = ?delay,
                        "watch failed, resuming"
                    );
                    state.wait = Some(delay);
                    state.phase = Phase::Watch { resource_version };
                    return Some((Err(Error::WatchFailed(error)), state));
                }
                None => {
                    if !delivered {
                        // Closed without delivering anything: do not reconnect in a hot loop.
                        state.wait = Some(state.backoff.next_delay());
                    }
                    tracing::debug!(
                        kind = K::KIND,
                        resource_version = %resource_version,
                        "watch ended, resuming"
                    );
                    state.phase = Phase::Watch { resource_version };
                }
            },
        }
    }
}

impl<K: Resource, S> State<K, S> {
    /// Plans a relist after an expiry: at once when the watch had been making progress,
    /// otherwise after a backoff.
    fn relist_after_expiry(&mut self, error: &SourceError, progressed: bool) {
        let delay = (!progressed).then(|| self.backoff.next_delay());
        tracing::info!(kind = K::KIND, error = %error, relist_in = ?delay, "watch expired, relisting");
        self.wait = delay;
        self.phase = Phase::List;
    }
}

/// Moves the resume point to `object`'s resourceVersion, when it has one.
fn advance<K: Resource>(resource_version: &mut String, object: &K) {
    if let Some(version) = object.meta().resource_version.as_deref()
        && !version.is_empty()
    {
        version.clone_into(resource_version);
    }
}
