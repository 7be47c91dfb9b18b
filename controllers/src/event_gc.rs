//! The Event garbage collector: Events older than a TTL (default one hour, Kubernetes'
//! `--event-ttl`) are deleted, so the store does not grow with every placement failure, node
//! transition or health kill ever recorded.
//!
//! [`expiry`] is the pure decision: an Event expires `ttl` after its last occurrence
//! (`lastTimestamp`, else `firstTimestamp`, else its creation), so a repeated Event (count + 1)
//! lives on. [`EventGcController::collect`] is one pass over the stored Events (paged), deleting
//! the expired ones with a compare on their revision (a repeat written meanwhile survives) in
//! fenced batches; [`EventGcController::run`] repeats it every `interval`, and sooner when the
//! earliest remaining Event expires before that — on the injected [`Clock`].

use std::sync::Arc;
use std::time::Duration;

use pacer_schemas::{Event, Time};
use pacer_store::{Expect, Leadership, ListOptions, Revision, Store, Txn, TxnOutcome};
use tokio_util::sync::CancellationToken;

use crate::rounds::{Clock, ControllerError, batch_limit, commit};
use crate::store_source::{decode_stored, registry_prefix};

/// The election name (`/elections/event-gc/`).
pub const CONTROLLER_NAME: &str = "event-gc";

/// Why the Event GC stopped.
pub type EventGcError = ControllerError;

/// Tunables of the Event GC.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EventGcConfig {
    /// How long an Event lives after its last occurrence (Kubernetes' default: one hour).
    pub ttl: Duration,
    /// Longest time between passes.
    pub interval: Duration,
    /// Most deletes per transaction.
    pub batch_size: usize,
    /// Page size of the Event list.
    pub page_size: usize,
}

impl Default for EventGcConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            interval: Duration::from_secs(60),
            batch_size: 127,
            page_size: 500,
        }
    }
}

impl EventGcConfig {
    /// With Events living `ttl` after their last occurrence.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// With at most `interval` between passes.
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

/// When `event` expires under `ttl`: its last occurrence (`lastTimestamp`, else
/// `firstTimestamp`, else `metadata.creationTimestamp`) plus `ttl`. `None` when it carries no
/// time at all (kept: nothing says how old it is).
pub fn expiry(event: &Event, ttl: Duration) -> Option<Time> {
    let last = event
        .last_timestamp
        .or(event.first_timestamp)
        .or(event.metadata.creation_timestamp)?;
    let ttl = jiff::SignedDuration::try_from(ttl).ok()?;
    last.timestamp().checked_add(ttl).ok().map(Time::new)
}

/// Whether `event` has expired at `now`.
pub fn is_expired(event: &Event, ttl: Duration, now: Time) -> bool {
    expiry(event, ttl).is_some_and(|at| at <= now)
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Events deleted.
    pub deleted: usize,
    /// Events kept.
    pub kept: usize,
    /// When the earliest kept Event expires.
    pub next_expiry: Option<Time>,
}

/// Deletes expired Events (see the module docs).
#[derive(Debug)]
pub struct EventGcController {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: EventGcConfig,
}

impl EventGcController {
    /// A collector over `store`, judging time on `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: EventGcConfig) -> Self {
        Self {
            store,
            clock,
            config,
        }
    }

    /// Runs passes until `shutdown` is cancelled; with `leadership`, every delete carries its
    /// fencing compare and a refused fence ends the run.
    pub async fn run(
        self,
        leadership: Option<Arc<Leadership>>,
        shutdown: CancellationToken,
    ) -> Result<(), EventGcError> {
        loop {
            let collected = self.collect(leadership.as_deref()).await?;
            if collected.deleted > 0 {
                tracing::info!(
                    deleted = collected.deleted,
                    kept = collected.kept,
                    "event gc: deleted expired Events"
                );
            }
            let mut wake_at = Time::new(
                self.clock
                    .now()
                    .timestamp()
                    .checked_add(
                        jiff::SignedDuration::try_from(self.config.interval)
                            .unwrap_or(jiff::SignedDuration::from_secs(60)),
                    )
                    .unwrap_or(self.clock.now().timestamp()),
            );
            if let Some(next) = collected.next_expiry {
                wake_at = wake_at.min(next);
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = self.clock.sleep_until(wake_at) => {}
            }
        }
    }

    /// One pass: every stored Event expired at the clock's now is deleted (compared on its
    /// revision, so one repeated meanwhile is kept).
    pub async fn collect(
        &self,
        leadership: Option<&Leadership>,
    ) -> Result<Collected, EventGcError> {
        let now = self.clock.now();
        let prefix = registry_prefix::<Event>();
        let mut options = ListOptions {
            limit: self.config.page_size.max(1),
            ..ListOptions::default()
        };
        let mut collected = Collected::default();
        let mut expired: Vec<(String, Revision)> = Vec::new();
        loop {
            let page = self.store.list(&prefix, &options).await?;
            for kv in &page.items {
                let event = match decode_stored::<Event>(&kv.value, kv.mod_revision) {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::warn!(key = %kv.key, %error, "event gc: skipping an Event that does not decode");
                        continue;
                    }
                };
                if is_expired(&event, self.config.ttl, now) {
                    expired.push((kv.key.clone(), kv.mod_revision));
                } else {
                    collected.kept += 1;
                    if let Some(at) = expiry(&event, self.config.ttl) {
                        collected.next_expiry =
                            Some(collected.next_expiry.map_or(at, |next| next.min(at)));
                    }
                }
            }
            match page.continue_token {
                Some(token) => options.continue_token = Some(token),
                None => break,
            }
        }
        let limit = batch_limit(self.config.batch_size, leadership.is_some());
        for batch in expired.chunks(limit) {
            collected.deleted += self.delete_batch(leadership, batch).await?;
        }
        Ok(collected)
    }

    /// Deletes `batch` in one transaction; when a compare fails (an Event was repeated or
    /// deleted meanwhile), deletes the others one by one. Returns how many were deleted.
    async fn delete_batch(
        &self,
        leadership: Option<&Leadership>,
        batch: &[(String, Revision)],
    ) -> Result<usize, EventGcError> {
        let txn = |items: &[(String, Revision)]| {
            items.iter().fold(Txn::new(), |txn, (key, revision)| {
                txn.when(key.clone(), Expect::ModRevision(*revision))
                    .delete(key.clone())
            })
        };
        match commit(self.store.as_ref(), leadership, txn(batch)).await? {
            TxnOutcome::Committed { .. } => Ok(batch.len()),
            TxnOutcome::CompareFailed { .. } => {
                let mut deleted = 0;
                for item in batch {
                    let outcome = commit(
                        self.store.as_ref(),
                        leadership,
                        txn(std::slice::from_ref(item)),
                    )
                    .await?;
                    if outcome.committed() {
                        deleted += 1;
                    }
                }
                Ok(deleted)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use pacer_schemas::event::EventType;
    use pacer_schemas::meta::ObjectReference;
    use pacer_schemas::{ObjectMeta, Resource};

    use super::*;
    use crate::rounds::ManualClock;
    use crate::store_source::encode_stored;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(seconds: i64) -> Time {
        Time::from_unix_seconds(1_700_000_000 + seconds).unwrap()
    }

    fn event(name: &str, first: Option<Time>, last: Option<Time>, created: Option<Time>) -> Event {
        let mut metadata = ObjectMeta::named("default", name);
        metadata.creation_timestamp = created;
        let mut event = Event {
            metadata,
            involved_object: ObjectReference {
                kind: Some("Instance".into()),
                name: Some("web.1".into()),
                ..Default::default()
            },
            reason: Some("Unhealthy".into()),
            type_: Some(EventType::Warning),
            count: Some(1),
            first_timestamp: first,
            last_timestamp: last,
            ..Default::default()
        };
        event.set_type_meta();
        event
    }

    #[test]
    fn an_event_expires_ttl_after_its_last_occurrence() {
        // Last occurrence wins over the first and the creation.
        let repeated = event("a", Some(at(0)), Some(at(1800)), Some(at(0)));
        assert_eq!(expiry(&repeated, HOUR), Some(at(5400)));
        assert!(!is_expired(&repeated, HOUR, at(5399)));
        assert!(is_expired(&repeated, HOUR, at(5400)));
        // Without lastTimestamp: firstTimestamp, then the creation time.
        assert_eq!(
            expiry(&event("b", Some(at(10)), None, Some(at(0))), HOUR),
            Some(at(3610))
        );
        assert_eq!(
            expiry(&event("c", None, None, Some(at(20))), HOUR),
            Some(at(3620))
        );
        // No time at all: kept.
        let timeless = event("d", None, None, None);
        assert_eq!(expiry(&timeless, HOUR), None);
        assert!(!is_expired(&timeless, HOUR, at(1_000_000)));
    }

    async fn put(store: &dyn Store, event: &Event) {
        let key = format!("/registry/events/default/{}", event.metadata.name_str());
        store
            .create(&key, encode_stored(event).unwrap(), None)
            .await
            .unwrap();
    }

    /// On the embedded store: a pass deletes exactly the expired Events, reports when the
    /// next one expires, and the running loop deletes that one once the clock gets there.
    #[tokio::test]
    async fn expired_events_are_deleted_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            pacer_store::embedded::EmbeddedStore::open(&dir.path().join("store.redb")).unwrap(),
        );
        put(
            store.as_ref(),
            &event("old", Some(at(0)), Some(at(0)), None),
        )
        .await;
        put(
            store.as_ref(),
            &event("repeated", Some(at(0)), Some(at(3000)), None),
        )
        .await;
        put(
            store.as_ref(),
            &event("fresh", Some(at(3500)), Some(at(3500)), None),
        )
        .await;
        let clock = Arc::new(ManualClock::new(at(3700)));
        let gc = EventGcController::new(
            Arc::clone(&store),
            clock.clone(),
            EventGcConfig::default().with_interval(Duration::from_secs(3600 * 24)),
        );
        let collected = gc.collect(None).await.unwrap();
        assert_eq!(collected.deleted, 1);
        assert_eq!(collected.kept, 2);
        assert_eq!(collected.next_expiry, Some(at(6600)));
        let names = |store: Arc<dyn Store>| async move {
            store
                .list("/registry/events/", &ListOptions::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|kv| kv.key)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(Arc::clone(&store)).await,
            [
                "/registry/events/default/fresh",
                "/registry/events/default/repeated"
            ]
        );
        // The loop wakes at the next expiry on the clock, not only at its interval.
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(gc.run(None, shutdown.clone()));
        clock.set(at(6600));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while names(Arc::clone(&store)).await.len() != 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "repeated was not collected"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            names(Arc::clone(&store)).await,
            ["/registry/events/default/fresh"]
        );
        shutdown.cancel();
        running.await.unwrap().unwrap();
    }
}
