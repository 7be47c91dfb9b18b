//! The metrics flags shared by `pacer dev` and `pacer server`: where to push the `/metrics`
//! samples besides serving them (`--statsd`, `--graphite`) and how often
//! (`--metrics-push-interval`). The pushing itself is `pacer_metrics::push`.

use std::time::Duration;

use pacer_metrics::push::PushConfig;

/// Pushing metrics to StatsD and Graphite (`/metrics` is always served).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MetricsArgs {
    /// Push every metric to StatsD at HOST:PORT (UDP), as gauges and counter increases.
    #[arg(long, value_name = "HOST:PORT")]
    statsd: Option<String>,
    /// Push every metric to Graphite's plaintext listener at HOST:PORT (TCP, usually 2003).
    #[arg(long, value_name = "HOST:PORT")]
    graphite: Option<String>,
    /// Time between pushes (e.g. 10s, 1m, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_interval)]
    metrics_push_interval: Duration,
}

impl MetricsArgs {
    /// The pusher's configuration.
    pub(crate) fn push_config(&self) -> PushConfig {
        PushConfig {
            statsd: self.statsd.clone(),
            graphite: self.graphite.clone(),
            interval: self.metrics_push_interval,
        }
    }
}

/// A positive duration (`crate::node::parse_duration`'s forms).
fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = crate::node::parse_duration(text)?;
    if interval.is_zero() {
        return Err("the push interval must be positive".to_owned());
    }
    Ok(interval)
}
