//! Which controller a task is running, for the metrics the shared loops record.
//!
//! [`run_elected`](crate::leader::run_elected) runs each term of a controller inside
//! [`scope`] with the controller's election name; [`Rounds`](crate::rounds::Rounds), created
//! inside that term, looks the name up with [`current`] and records its round durations and
//! queue depth under it (`pacer_controller_*{controller="<name>"}` in `pacer-metrics`). A
//! `Rounds` made outside any scope (unit tests driving a controller directly) records nothing.

use std::future::Future;
use std::sync::Arc;

use pacer_metrics::ControllerSeries;

tokio::task_local! {
    static CONTROLLER: Arc<str>;
}

/// Runs `future` as controller `name`.
pub fn scope<F: Future>(name: &str, future: F) -> impl Future<Output = F::Output> {
    CONTROLLER.scope(Arc::from(name), future)
}

/// The controller the current task runs, if inside [`scope`].
pub fn current() -> Option<Arc<str>> {
    CONTROLLER.try_with(Arc::clone).ok()
}

/// The process-wide series of controller `name`.
pub fn series(name: &str) -> ControllerSeries {
    pacer_metrics::global().controllers.series(name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_name_is_visible_inside_the_scope_only() {
        assert!(current().is_none());
        let inside = scope("placement", async { current() }).await;
        assert_eq!(inside.as_deref(), Some("placement"));
        assert!(current().is_none());
    }

    /// `Rounds` made inside a scope records queue depth and round durations.
    #[tokio::test]
    async fn rounds_record_queue_depth_and_round_durations() {
        use std::time::Duration;

        use tokio_util::sync::CancellationToken;

        use crate::rounds::Rounds;

        let name = "metrics-test-rounds";
        let series = series(name);
        scope(name, async {
            let shutdown = CancellationToken::new();
            let rounds = Rounds::new(Duration::from_millis(1), Duration::from_secs(3600));
            assert!(
                rounds.next(&shutdown).await,
                "the first round is due at once"
            );
            let waker = rounds.waker();
            waker.notify_one();
            waker.notify_one();
            assert_eq!(series.queue_depth.get(), 2, "two changes wait");
            assert!(rounds.next(&shutdown).await);
            assert_eq!(series.queue_depth.get(), 0, "the round took them");
            rounds.wake();
            assert!(rounds.next(&shutdown).await);
        })
        .await;
        let text = pacer_metrics::global().encode_prometheus().unwrap();
        let count = format!(
            "pacer_controller_reconcile_duration_seconds_count{{controller=\"{name}\"}} 2\n"
        );
        assert!(text.contains(&count), "{count:?} missing from:\n{text}");
        // Outside a scope nothing is recorded (and nothing breaks).
        let rounds = Rounds::new(Duration::from_millis(1), Duration::from_secs(3600));
        rounds.waker().notify_one();
        assert_eq!(series.queue_depth.get(), 0);
    }
}
