//! The watch fan-out: ONE store watch per resource prefix (`/registry/<plural>/`), each event
//! framed once (see `event`) and broadcast in memory to every HTTP watcher of that resource,
//! with a short history so watchers that start slightly in the past are served from memory too.
//!
//! A feed starts lazily, at the revision its first watcher asks for, and runs until the server
//! shuts down or its store watch fails (then its watchers' streams end cleanly and they
//! re-watch, which starts a new feed). A watcher asking for a revision the feed no longer
//! covers, or one that falls more than the broadcast buffer behind, is served by its own store
//! watch instead (see `watch::Source`), so nothing is ever skipped.
//!
//! Invariant: the feed's history plus its broadcast hold every event with a revision above
//! `covered_after`, in order. History and broadcast are updated under one lock, and a
//! subscriber copies the history and subscribes under that same lock, so it sees no gap and no
//! duplicate between the replay and the live events.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use pacer_store::{Revision, Store, WatchStream};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::state::ApiConfig;
use crate::watch::event::FeedEvent;

/// The per-prefix feeds of one server.
#[derive(Debug)]
pub struct WatchHub {
    store: Arc<dyn Store>,
    config: Arc<ApiConfig>,
    shutdown: CancellationToken,
    feeds: tokio::sync::Mutex<HashMap<String, Arc<Feed>>>,
}

/// What a watcher gets from [`WatchHub::subscribe`].
#[derive(Debug)]
pub enum Subscription {
    /// Served from memory: first `replay` (events after the asked revision still in the
    /// history), then `live`.
    Live {
        /// Past events after the asked revision, in order.
        replay: Vec<Arc<FeedEvent>>,
        /// Every later event.
        live: broadcast::Receiver<Arc<FeedEvent>>,
    },
    /// The feed no longer holds every event after the asked revision: watch the store.
    Behind,
}

#[derive(Debug)]
struct Feed {
    state: Mutex<FeedState>,
}

#[derive(Debug)]
struct FeedState {
    history: VecDeque<Arc<FeedEvent>>,
    /// Every event with a revision above this is in `history` or still to come.
    covered_after: Revision,
    /// `None` once the feed has stopped.
    sender: Option<broadcast::Sender<Arc<FeedEvent>>>,
}

impl WatchHub {
    /// A hub over `store`; its feeds stop when `shutdown` is cancelled.
    pub fn new(store: Arc<dyn Store>, config: Arc<ApiConfig>, shutdown: CancellationToken) -> Self {
        Self {
            store,
            config,
            shutdown,
            feeds: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Subscribes to every change under `prefix` after revision `after`, starting the
    /// prefix's feed at `after` if none runs. Fails (e.g. `Expired`) only when starting the
    /// feed's store watch fails.
    pub async fn subscribe(&self, prefix: &str, after: Revision) -> Result<Subscription, ApiError> {
        let mut feeds = self.feeds.lock().await;
        if let Some(feed) = feeds.get(prefix)
            && let Some(subscription) = feed.subscribe(after)
        {
            return Ok(subscription);
        }
        let stream = self.store.watch(prefix, after).await?;
        let feed = Arc::new(Feed {
            state: Mutex::new(FeedState {
                history: VecDeque::new(),
                covered_after: after,
                sender: Some(broadcast::channel(self.config.watch_buffer).0),
            }),
        });
        let subscription = feed.subscribe(after).unwrap_or(Subscription::Behind);
        feeds.insert(prefix.to_owned(), Arc::clone(&feed));
        tokio::spawn(run_feed(
            prefix.to_owned(),
            feed,
            stream,
            self.config.watch_history,
            self.shutdown.clone(),
        ));
        tracing::debug!(prefix, after, "watch feed started");
        Ok(subscription)
    }
}

impl Feed {
    /// `None` when the feed has stopped (start a new one).
    fn subscribe(&self, after: Revision) -> Option<Subscription> {
        let state = self.state.lock().ok()?;
        let sender = state.sender.as_ref()?;
        if after < state.covered_after {
            return Some(Subscription::Behind);
        }
        let replay = state
            .history
            .iter()
            .filter(|event| event.revision > after)
            .cloned()
            .collect();
        Some(Subscription::Live {
            replay,
            live: sender.subscribe(),
        })
    }
}

async fn run_feed(
    prefix: String,
    feed: Arc<Feed>,
    mut stream: WatchStream,
    history: usize,
    shutdown: CancellationToken,
) {
    loop {
        let item = tokio::select! {
            () = shutdown.cancelled() => break,
            item = stream.next() => item,
        };
        match item {
            Some(Ok(change)) => {
                let event = Arc::new(FeedEvent::from_store(change));
                let Ok(mut state) = feed.state.lock() else {
                    break;
                };
                state.history.push_back(Arc::clone(&event));
                while state.history.len() > history {
                    if let Some(evicted) = state.history.pop_front() {
                        state.covered_after = state.covered_after.max(evicted.revision);
                    }
                }
                if let Some(sender) = &state.sender {
                    // No receiver is fine: the history still serves later watchers.
                    let _ = sender.send(event);
                }
            }
            Some(Err(error)) => {
                tracing::warn!(prefix, %error, "watch feed: store watch failed; watchers will re-watch");
                break;
            }
            None => {
                tracing::warn!(
                    prefix,
                    "watch feed: store watch ended; watchers will re-watch"
                );
                break;
            }
        }
    }
    if let Ok(mut state) = feed.state.lock() {
        // Dropping the sender ends every subscriber's stream.
        state.sender = None;
        state.history.clear();
    }
    tracing::debug!(prefix, "watch feed stopped");
}
