//! Exponential backoff with jitter, shared by the watcher's retries and the controller's
//! per-key error requeues.
//!
//! Attempt `n` (0-based) waits `min(max, initial × factor^n)`, shortened by a random fraction
//! of at most `jitter` so that many clients failing together do not retry in lock-step.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Shape of an exponential backoff: first delay, growth factor, ceiling and jitter.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use]
pub struct BackoffConfig {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
    /// Growth per attempt (2.0 doubles); values below 1.0 are treated as 1.0.
    pub factor: f64,
    /// Fraction in `[0, 1]` by which a delay may randomly be shortened; 0 disables jitter
    /// (deterministic delays, useful in tests).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    /// 500 ms doubling up to 30 s, with 50 % jitter.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.5,
        }
    }
}

impl BackoffConfig {
    /// A backoff from `initial` up to `max`, doubling, with 50 % jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            ..Self::default()
        }
    }

    /// Sets the growth factor.
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Sets the jitter fraction (clamped to `[0, 1]` when used).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay before retry number `attempt` (0 for the first retry), jitter included.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.base_delay(attempt);
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        if jitter == 0.0 {
            return base;
        }
        // `try_from`: `Duration::MAX` as f64 rounds up past the largest Duration.
        Duration::try_from_secs_f64(base.as_secs_f64() * (1.0 - jitter * random_unit()))
            .map_or(base, |delay| delay.min(base))
    }

    /// The delay before retry number `attempt` without jitter: the upper bound of
    /// [`BackoffConfig::delay`].
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let factor = if self.factor.is_finite() {
            self.factor.max(1.0)
        } else {
            1.0
        };
        let exponent = i32::try_from(attempt.min(1024)).unwrap_or(1024);
        let seconds = self.initial.as_secs_f64() * factor.powi(exponent);
        if !seconds.is_finite() || seconds >= self.max.as_secs_f64() {
            return self.max;
        }
        Duration::try_from_secs_f64(seconds).map_or(self.max, |delay| delay.min(self.max))
    }
}

/// A running backoff: counts consecutive failures and hands out growing delays until
/// [`Backoff::reset`].
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// A backoff with no failures yet.
    pub fn new(config: BackoffConfig) -> Self {
        Self { config, attempt: 0 }
    }

    /// Records a failure and returns how long to wait before retrying.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.config.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Forgets past failures: the next delay is the initial one again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Consecutive failures recorded since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// A random number in `[0, 1)`. `RandomState` is seeded randomly per process and per instance,
/// which is plenty for jitter and needs no extra crate.
fn random_unit() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    // 53 random bits make an exactly representable f64 in [0, 1).
    (hasher.finish() >> 11) as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_ceiling_and_reset() {
        let config =
            BackoffConfig::new(Duration::from_secs(1), Duration::from_secs(10)).jitter(0.0);
        let mut backoff = Backoff::new(config);
        let delays: Vec<u64> = (0..6).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let config =
            BackoffConfig::new(Duration::from_secs(4), Duration::from_secs(60)).jitter(0.5);
        for attempt in 0..4 {
            let base = config.base_delay(attempt);
            for _ in 0..100 {
                let delay = config.delay(attempt);
                assert!(delay <= base && delay >= base / 2, "{delay:?} vs {base:?}");
            }
        }
    }

    #[test]
    fn absurd_settings_do_not_panic() {
        let cases = [
            BackoffConfig::new(Duration::MAX, Duration::MAX).factor(f64::INFINITY),
            BackoffConfig::new(Duration::from_secs(1), Duration::ZERO).factor(f64::NAN),
            BackoffConfig::new(Duration::ZERO, Duration::from_secs(1)).jitter(f64::NAN),
            BackoffConfig::new(Duration::from_secs(1), Duration::from_secs(5)).jitter(7.0),
        ];
        for config in cases {
            for attempt in [0, 1, 63, 64, 1000, u32::MAX] {
                assert!(config.delay(attempt) <= config.max.max(config.initial));
            }
        }
    }
}
