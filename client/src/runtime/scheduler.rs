//! Delays and deduplicates work items: a [`Scheduler`] holds each item at most once, at the
//! earliest time it was asked for.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::poll_fn;
use std::hash::Hash;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tokio_util::time::DelayQueue;
use tokio_util::time::delay_queue::Key;

/// A deduplicating delay queue. Scheduling an item that is already queued keeps one entry, due
/// at the earlier of the two times, so a burst of triggers for one object becomes one run, and
/// a trigger pulls a later requeue forward.
pub struct Scheduler<T> {
    queue: DelayQueue<T>,
    scheduled: HashMap<T, (Key, Instant)>,
}

impl<T: Clone + Eq + Hash> Default for Scheduler<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Eq + Hash> Scheduler<T> {
    /// An empty scheduler.
    pub fn new() -> Self {
        Self {
            queue: DelayQueue::new(),
            scheduled: HashMap::new(),
        }
    }

    /// Queues `item` to come out at `at` (at once when `at` is past). Returns whether this
    /// changed anything: `false` when the item was already due no later than `at`.
    pub fn schedule(&mut self, item: T, at: Instant) -> bool {
        match self.scheduled.entry(item) {
            Entry::Occupied(mut entry) => {
                let (key, due) = entry.get_mut();
                if at < *due {
                    self.queue.reset_at(key, at);
                    *due = at;
                    true
                } else {
                    false
                }
            }
            Entry::Vacant(entry) => {
                let key = self.queue.insert_at(entry.key().clone(), at);
                entry.insert((key, at));
                true
            }
        }
    }

    /// When `item` is due, if it is queued.
    pub fn due(&self, item: &T) -> Option<Instant> {
        self.scheduled.get(item).map(|(_, due)| *due)
    }

    /// Takes `item` out of the queue; returns whether it was queued.
    pub fn remove(&mut self, item: &T) -> bool {
        match self.scheduled.remove(item) {
            Some((key, _)) => self.queue.try_remove(&key).is_some(),
            None => false,
        }
    }

    /// How many items are queued (due or not).
    pub fn len(&self) -> usize {
        self.scheduled.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.scheduled.is_empty()
    }

    /// Polls for the next due item; `Ready(None)` when the scheduler is empty.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.queue.poll_expired(cx) {
            Poll::Ready(Some(expired)) => {
                let item = expired.into_inner();
                self.scheduled.remove(&item);
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Waits for the next due item; `None` at once when the scheduler is empty (so guard a
    /// `select!` branch with [`Scheduler::is_empty`]).
    pub async fn next(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_next(cx)).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn earliest_time_wins_and_items_come_out_once() {
        let start = Instant::now();
        let mut scheduler = Scheduler::new();
        assert!(scheduler.schedule("a", start + Duration::from_secs(10)));
        assert!(scheduler.schedule("a", start + Duration::from_secs(5)));
        assert!(!scheduler.schedule("a", start + Duration::from_secs(7)));
        assert!(scheduler.schedule("b", start + Duration::from_secs(1)));
        for _ in 0..100 {
            scheduler.schedule("b", start + Duration::from_secs(2));
        }
        assert_eq!(scheduler.len(), 2);
        assert_eq!(scheduler.next().await, Some("b"));
        assert_eq!(start.elapsed().as_secs(), 1);
        assert_eq!(scheduler.next().await, Some("a"));
        assert_eq!(start.elapsed().as_secs(), 5);
        assert!(scheduler.is_empty());
        assert_eq!(scheduler.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn removed_items_do_not_come_out() {
        let start = Instant::now();
        let mut scheduler = Scheduler::new();
        scheduler.schedule(1, start + Duration::from_secs(1));
        scheduler.schedule(2, start + Duration::from_secs(2));
        assert!(scheduler.remove(&1));
        assert!(!scheduler.remove(&1));
        assert_eq!(scheduler.due(&2), Some(start + Duration::from_secs(2)));
        assert_eq!(scheduler.next().await, Some(2));
        assert_eq!(scheduler.next().await, None);
    }
}
