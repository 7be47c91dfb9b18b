//! `ApiState`: what every handler shares — the store, the configuration, the watch fan-out and
//! the shutdown signal that ends long-running watches.

use std::sync::Arc;
use std::time::Duration;

use pacer_store::Store;
use tokio_util::sync::CancellationToken;

use crate::params::FieldValidation;
use crate::watch::hub::WatchHub;

/// Largest request body accepted (Kubernetes' default is 3 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Tunables of the API server. `Default` gives production values.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ApiConfig {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Longest a watch stays open (also the cap on `timeoutSeconds`).
    pub max_watch_timeout: Duration,
    /// `fieldValidation` when the client sends none. Kubernetes defaults to `Warn`; Pacer
    /// defaults to `Strict` so a typo in a manifest is an error, not a silent no-op.
    pub default_field_validation: FieldValidation,
    /// How many recent events each per-resource watch feed keeps for watchers that start
    /// slightly in the past (and to catch up after a short lag).
    pub watch_history: usize,
    /// Per-feed buffer of live events; a watcher further behind than this is resumed from
    /// the store.
    pub watch_buffer: usize,
    /// Page size used when the server itself lists (initial watch state, cascades).
    pub internal_page_size: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            bookmark_interval: Duration::from_secs(60),
            max_watch_timeout: Duration::from_secs(30 * 60),
            default_field_validation: FieldValidation::Strict,
            watch_history: 1024,
            watch_buffer: 1024,
            internal_page_size: 500,
        }
    }
}

impl ApiConfig {
    /// Sets the bookmark interval (tests use a short one).
    #[must_use]
    pub fn with_bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval = interval;
        self
    }

    /// Sets the request body limit.
    #[must_use]
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets the watch feed's history and buffer sizes.
    #[must_use]
    pub fn with_watch_buffers(mut self, history: usize, buffer: usize) -> Self {
        self.watch_history = history.max(1);
        self.watch_buffer = buffer.max(1);
        self
    }
}

/// Shared state of the API server; cheap to clone.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// The store holding every object.
    pub store: Arc<dyn Store>,
    /// Tunables.
    pub config: Arc<ApiConfig>,
    /// Fan-out of store watches to HTTP watchers.
    pub(crate) hub: Arc<WatchHub>,
    /// Cancelled when the server shuts down: open watches end cleanly.
    pub(crate) shutdown: CancellationToken,
    /// Marathon's event bus (`/v2/events`, `/v2/eventSubscriptions`).
    pub(crate) events: Arc<crate::marathon::events::EventBus>,
}

impl ApiState {
    /// State over `store` with `config`.
    pub fn new(store: Arc<dyn Store>, config: ApiConfig) -> Self {
        let shutdown = CancellationToken::new();
        let config = Arc::new(config);
        let hub = Arc::new(WatchHub::new(
            Arc::clone(&store),
            Arc::clone(&config),
            shutdown.clone(),
        ));
        let state = Self {
            store,
            config,
            hub,
            shutdown,
            events: Arc::default(),
        };
        // Callback subscriptions are durable: deliver them from the start (inside a runtime).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(crate::marathon::events::subscriptions::dispatch(
                state.clone(),
            ));
        }
        state
    }

    /// Ends every open watch and stops the watch feeds (called by [`crate::serve`] on
    /// shutdown; call it yourself when driving [`crate::router`] directly).
    pub fn shut_down(&self) {
        self.shutdown.cancel();
    }
}
