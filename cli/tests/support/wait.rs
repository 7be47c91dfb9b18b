//! Waiting in end-to-end tests: poll a condition until it holds or a generous deadline passes,
//! then fail with what was awaited and whatever the caller says explains it (usually the
//! server log). One place for the deadline, so no test asserts speed on a loaded machine.

use std::time::{Duration, Instant};

/// How long [`eventually`] waits before it calls a condition stuck.
pub const EVENTUALLY: Duration = Duration::from_secs(90);

/// How long [`eventually`] sleeps between two checks.
const POLL: Duration = Duration::from_millis(200);

/// Polls `check` until it returns `Some` and returns its value; panics with `what` and
/// `context()` after [`EVENTUALLY`].
#[track_caller]
pub fn eventually<T>(
    what: &str,
    context: impl Fn() -> String,
    check: impl FnMut() -> Option<T>,
) -> T {
    eventually_within(EVENTUALLY, what, context, check)
}

/// [`eventually`] with a deadline of `within` (for waits known to take longer).
#[track_caller]
pub fn eventually_within<T>(
    within: Duration,
    what: &str,
    context: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(POLL);
    }
}
