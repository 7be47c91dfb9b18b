//! The round-based controllers' time source. Their decisions compare wall-clock instants (a
//! lease's `renewTime`, an instance's `unreachableSince`, the end of a grace period) with
//! *now*, and [`Rounds`](super::Rounds) sleeps until the next such instant; both go through a
//! [`Clock`] so that tests drive time with a [`ManualClock`] instead of sleeping through lease
//! durations.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use pacer_schemas::Time;
use tokio::sync::watch;

/// Where a controller reads the time and how it waits for an instant.
#[async_trait]
pub trait Clock: Debug + Send + Sync {
    /// The current instant.
    fn now(&self) -> Time;

    /// Returns once [`Clock::now`] has reached `deadline` (at once if it already has).
    async fn sleep_until(&self, deadline: Time);
}

/// The system's wall clock; waits with tokio's timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Time {
        Time::new(jiff::Timestamp::now())
    }

    async fn sleep_until(&self, deadline: Time) {
        loop {
            let left = deadline.timestamp().duration_since(jiff::Timestamp::now());
            match Duration::try_from(left) {
                Ok(left) if !left.is_zero() => tokio::time::sleep(left).await,
                // Reached (or negative: passed).
                _ => return,
            }
        }
    }
}

/// A clock that only moves when told to ([`ManualClock::advance`], [`ManualClock::set`]);
/// sleepers wake as soon as it reaches their deadline. For tests.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<Time>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Time) -> Self {
        Self {
            now: watch::Sender::new(start),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| {
            let by = jiff::SignedDuration::try_from(by).unwrap_or(jiff::SignedDuration::MAX);
            *now = Time::new(
                now.timestamp()
                    .checked_add(by)
                    .unwrap_or(jiff::Timestamp::MAX),
            );
        });
    }

    /// Sets the clock to `to` (it may go back, as wall clocks do).
    pub fn set(&self, to: Time) {
        self.now.send_replace(to);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Time {
        *self.now.borrow()
    }

    async fn sleep_until(&self, deadline: Time) {
        let mut now = self.now.subscribe();
        // The sender lives as long as `self`, which outlives this borrow.
        let _ = now.wait_for(|now| *now >= deadline).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_it_reaches_their_deadline() {
        let start: Time = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = Arc::new(ManualClock::new(start));
        let deadline: Time = "2026-01-01T00:00:10Z".parse().unwrap();
        let sleeper = {
            let clock = Arc::clone(&clock);
            tokio::spawn(async move { clock.sleep_until(deadline).await })
        };
        clock.advance(Duration::from_secs(9));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke before the deadline");
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .expect("woken at the deadline")
            .unwrap();
        assert_eq!(clock.now(), deadline);
        // A deadline in the past returns at once.
        clock.sleep_until(start).await;
    }

    #[tokio::test]
    async fn the_system_clock_returns_for_a_past_deadline() {
        let clock = SystemClock;
        let past = Time::from_unix_seconds(0).unwrap();
        tokio::time::timeout(Duration::from_secs(5), clock.sleep_until(past))
            .await
            .expect("at once");
        let soon = Time::new(
            clock
                .now()
                .timestamp()
                .checked_add(jiff::SignedDuration::from_millis(20))
                .unwrap(),
        );
        clock.sleep_until(soon).await;
        assert!(clock.now() >= soon);
    }
}
