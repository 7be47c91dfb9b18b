//! Watch streams: replay from the durable event log, then live events from the writer's
//! broadcast, with no gap and no duplicate between the two.
//!
//! Every committed revision is published once, in order, on a `tokio::sync::broadcast`
//! channel, carrying its fully built events: a live watcher only filters by prefix, so a
//! thousand watchers cost a thousand cheap filters per revision and no database reads.
//!
//! Gaps are impossible by construction:
//! - a watcher subscribes to the broadcast *before* it reads the log, so a revision is either in
//!   its snapshot of the log or arrives on the channel (or both: anything at or below the
//!   last revision handled, `seen`, is skipped, so nothing is delivered twice);
//! - every revision that exists has at least one event, so the broadcast carries consecutive
//!   revisions; one that does not follow `seen` (or a `Lagged` error, when a slow consumer let
//!   the bounded channel overflow) sends the watcher back to the log, from `seen` on, in
//!   bounded chunks, before it listens again;
//! - if the log was compacted past `seen` meanwhile, the stream yields
//!   [`StoreError::Expired`] and ends.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use redb::Database;
use tokio::sync::broadcast;

use super::tables::Snapshot;
use super::writer::RevisionEvents;
use crate::error::{Result, StoreError};
use crate::kv::{Revision, WatchEvent, WatchStream};

/// Most revisions read from the log in one go (bounds a replay's memory).
#[cfg(not(test))]
const REPLAY_CHUNK: Revision = 1024;
/// Tiny in unit tests, so that they exercise replays in several chunks.
#[cfg(test)]
const REPLAY_CHUNK: Revision = 5;

/// Starts a watch of `prefix` after `after` (`<= 0`: after the current revision).
pub(super) async fn start(
    db: &Arc<Database>,
    live: &broadcast::Sender<Arc<RevisionEvents>>,
    prefix: &str,
    after: Revision,
) -> Result<WatchStream> {
    // Subscribe first: whatever commits after this point is on the channel.
    let receiver = live.subscribe();
    let reader = Arc::clone(db);
    let owned_prefix = prefix.to_owned();
    let replay = tokio::task::spawn_blocking(move || -> Result<Replay> {
        let snapshot = Snapshot::open(&reader)?;
        let after = if after <= 0 { snapshot.revision } else { after };
        if after < snapshot.compacted {
            return Err(StoreError::Expired {
                requested: after,
                compacted: snapshot.compacted,
            });
        }
        let mut replay = Replay::read(&snapshot, &owned_prefix, after.min(snapshot.revision))?;
        replay.after = after;
        Ok(replay)
    })
    .await
    .map_err(|error| StoreError::Backend(format!("read the watch replay: {error}")))??;

    let mut watcher = Watcher {
        db: Arc::downgrade(db),
        receiver,
        prefix: prefix.to_owned(),
        after: replay.after,
        seen: replay.until,
        behind: replay.behind,
        queue: VecDeque::new(),
        finished: false,
    };
    watcher.enqueue(replay.events);
    tracing::debug!(
        prefix,
        after = watcher.after,
        seen = watcher.seen,
        "watch started"
    );
    Ok(Box::pin(futures::stream::unfold(
        watcher,
        |mut watcher| async move {
            let item = watcher.next().await?;
            Some((item, watcher))
        },
    )))
}

/// One chunk read from the event log.
struct Replay {
    /// Only events after this revision are delivered.
    after: Revision,
    /// The events of revisions `seen + 1 ..= until` under the prefix.
    events: Vec<WatchEvent>,
    /// The last revision read.
    until: Revision,
    /// Whether the log held more revisions than this chunk.
    behind: bool,
}

impl Replay {
    /// Reads up to [`REPLAY_CHUNK`] revisions after `seen` (not below the compacted revision).
    fn read(snapshot: &Snapshot, prefix: &str, seen: Revision) -> Result<Self> {
        if seen < snapshot.compacted {
            return Err(StoreError::Expired {
                requested: seen,
                compacted: snapshot.compacted,
            });
        }
        let until = snapshot
            .revision
            .min(seen.saturating_add(REPLAY_CHUNK))
            .max(seen);
        Ok(Self {
            after: seen,
            events: snapshot.events(prefix, seen, until)?,
            until,
            behind: until < snapshot.revision,
        })
    }
}

/// A watch in progress (the state of its stream).
struct Watcher {
    /// Weak, so that a forgotten watch does not keep the database open.
    db: Weak<Database>,
    receiver: broadcast::Receiver<Arc<RevisionEvents>>,
    prefix: String,
    /// Only events after this revision are delivered.
    after: Revision,
    /// Every revision up to this one has been handled (queued if it matched).
    seen: Revision,
    /// The broadcast skipped revisions after `seen`: read them from the log first.
    behind: bool,
    /// Events ready to hand out.
    queue: VecDeque<WatchEvent>,
    /// The stream has ended (after an error).
    finished: bool,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            if self.behind {
                if let Err(error) = self.catch_up().await {
                    tracing::debug!(prefix = %self.prefix, seen = self.seen, %error, "watch ends");
                    self.finished = true;
                    return Some(Err(error));
                }
                continue;
            }
            match self.receiver.recv().await {
                Ok(revision) => self.accept(&revision),
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(prefix = %self.prefix, seen = self.seen, skipped, "watcher lagged; replaying from the log");
                    self.behind = true;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.finished = true;
                    return Some(Err(StoreError::Closed));
                }
            }
        }
    }

    /// Takes one live revision from the broadcast.
    fn accept(&mut self, revision: &RevisionEvents) {
        if revision.revision <= self.seen {
            return;
        }
        if revision.revision != self.seen + 1 {
            self.behind = true;
            return;
        }
        let matching = revision
            .events
            .iter()
            .filter(|event| event.kv.key.starts_with(&self.prefix))
            .cloned()
            .collect();
        self.enqueue(matching);
        self.seen = revision.revision;
    }

    /// Reads the next chunk of revisions after `seen` from the log.
    async fn catch_up(&mut self) -> Result<()> {
        let db = self.db.upgrade().ok_or(StoreError::Closed)?;
        let prefix = self.prefix.clone();
        let seen = self.seen;
        let replay = tokio::task::spawn_blocking(move || {
            let snapshot = Snapshot::open(&db)?;
            Replay::read(&snapshot, &prefix, seen)
        })
        .await
        .map_err(|error| StoreError::Backend(format!("read the watch replay: {error}")))??;
        self.seen = replay.until;
        self.behind = replay.behind;
        self.enqueue(replay.events);
        Ok(())
    }

    fn enqueue(&mut self, events: Vec<WatchEvent>) {
        let after = self.after;
        self.queue
            .extend(events.into_iter().filter(|event| event.revision() > after));
    }
}
