//! Pushes the registry's samples to StatsD (UDP) and Graphite (TCP plaintext) every
//! `interval`, as Marathon's reporters do, for sites without Prometheus. Configured by
//! `pacer dev|server --statsd HOST:PORT --graphite HOST:PORT --metrics-push-interval 10s`.
//!
//! Each push encodes the registry once ([`crate::Metrics::encode_prometheus`]), reads it back
//! ([`crate::exposition`]) and sends every series except histogram buckets under a dotted
//! path: the sample name with its leading `pacer_` as `pacer.`, then each label as
//! `.<name>.<value>` (characters other than letters, digits, `_` and `-` become `_`), e.g.
//! `pacer.apiserver_requests_total.verb.LIST.resource.apps.code.200`.
//!
//! - StatsD: gauges as `path:value|g`; counters and histogram sums and counts as
//!   `path:delta|c`, the increase since the previous push (the whole value the first time);
//!   lines are packed into datagrams of at most [`MAX_DATAGRAM`] bytes.
//! - Graphite: `path value unix-seconds` per line, absolute values, on one TCP connection kept
//!   open between pushes and opened again after a failure.
//!
//! Pushing never blocks the control plane: it runs on its own task, every network step has a
//! timeout shorter than the interval, and a failure is logged (once per streak) and retried at
//! the next interval, never queued.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::exposition::{self, ParseError, Sample, SampleKind};
use crate::{Metrics, MetricsError};

/// Largest StatsD datagram sent (fits a 1500-byte Ethernet MTU with IP and UDP headers).
pub const MAX_DATAGRAM: usize = 1432;

/// Longest one network step (resolve, connect, write) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// Where and how often to push.
#[derive(Clone, Debug)]
pub struct PushConfig {
    /// StatsD's `HOST:PORT` (UDP), if any.
    pub statsd: Option<String>,
    /// Graphite's plaintext `HOST:PORT` (TCP, usually port 2003), if any.
    pub graphite: Option<String>,
    /// Time between pushes.
    pub interval: Duration,
}

impl PushConfig {
    /// Whether there is anywhere to push to.
    pub fn is_enabled(&self) -> bool {
        self.statsd.is_some() || self.graphite.is_some()
    }
}

/// Why one push to one destination failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The registry could not be encoded.
    #[error(transparent)]
    Encode(#[from] MetricsError),
    /// The encoded registry could not be read back.
    #[error("read the encoded metrics: {0}")]
    Parse(#[from] ParseError),
    /// The destination's name did not resolve.
    #[error("resolve {target}: {source}")]
    Resolve {
        /// The configured `HOST:PORT`.
        target: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The destination's name resolved to no address.
    #[error("resolve {0}: no address")]
    NoAddress(String),
    /// Sending failed.
    #[error("send to {target}: {source}")]
    Send {
        /// The configured `HOST:PORT`.
        target: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A network step took longer than its timeout.
    #[error("{step} {target}: timed out")]
    Timeout {
        /// What timed out.
        step: &'static str,
        /// The configured `HOST:PORT`.
        target: String,
    },
}

/// Pushes `metrics` per `config` until `shutdown` is cancelled, then once more (so the last
/// counts are not lost). Returns at once when `config` names no destination.
pub async fn run(metrics: &Metrics, config: PushConfig, shutdown: CancellationToken) {
    if !config.is_enabled() {
        return;
    }
    let interval = config.interval.max(Duration::from_millis(10));
    tracing::info!(
        statsd = config.statsd.as_deref().unwrap_or("-"),
        graphite = config.graphite.as_deref().unwrap_or("-"),
        interval_ms = interval.as_millis() as u64,
        "pushing metrics"
    );
    let mut statsd = config.statsd.map(StatsdSink::new);
    let mut graphite = config.graphite.map(GraphiteSink::new);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let budget = interval.min(STEP_TIMEOUT * 2);
    loop {
        let last = tokio::select! {
            () = shutdown.cancelled() => true,
            _ = ticks.tick() => false,
        };
        let samples = match metrics
            .encode_prometheus()
            .map_err(PushError::from)
            .and_then(|text| Ok(exposition::parse(&text)?))
        {
            Ok(samples) => samples,
            Err(error) => {
                tracing::warn!(%error, "cannot read the metrics to push");
                if last {
                    return;
                }
                continue;
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or_default();
        // The last push must not hold up the shutdown.
        let budget = if last {
            budget.min(Duration::from_secs(1))
        } else {
            budget
        };
        if let Some(sink) = statsd.as_mut() {
            let result = tokio::time::timeout(budget, sink.push(&samples)).await;
            sink.health
                .report("statsd", &sink.target, flatten(result, &sink.target));
        }
        if let Some(sink) = graphite.as_mut() {
            let result = tokio::time::timeout(budget, sink.push(&samples, now)).await;
            sink.health
                .report("graphite", &sink.target, flatten(result, &sink.target));
        }
        if last {
            return;
        }
    }
}

fn flatten(
    result: Result<Result<(), PushError>, tokio::time::error::Elapsed>,
    target: &str,
) -> Result<(), PushError> {
    result.unwrap_or_else(|_| {
        Err(PushError::Timeout {
            step: "push to",
            target: target.to_owned(),
        })
    })
}

/// Logs the first failure of a streak as a warning and the recovery after it.
#[derive(Debug, Default)]
struct SinkHealth {
    failing: bool,
}

impl SinkHealth {
    fn report(&mut self, sink: &str, target: &str, result: Result<(), PushError>) {
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(sink, target, "pushing metrics again");
            }
            Ok(()) => {}
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::warn!(sink, target, %error, "cannot push metrics; retrying every interval");
            }
            Err(error) => tracing::debug!(sink, target, %error, "cannot push metrics"),
        }
    }
}

/// The dotted path of `sample` (see the module docs).
pub fn path(sample: &Sample) -> String {
    let name = sample
        .name
        .strip_prefix("pacer_")
        .map_or_else(|| sample.name.clone(), |rest| format!("pacer.{rest}"));
    let mut path = sanitize(&name, true);
    for (key, value) in &sample.labels {
        path.push('.');
        path.push_str(&sanitize(key, false));
        path.push('.');
        path.push_str(&sanitize(value, false));
    }
    path
}

fn sanitize(text: &str, keep_dots: bool) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || (keep_dots && c == '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "_".to_owned()
    } else {
        cleaned
    }
}

/// A value as StatsD and Graphite read it: integers without a fraction.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

async fn resolve(target: &str) -> Result<SocketAddr, PushError> {
    let mut addresses = tokio::time::timeout(STEP_TIMEOUT, tokio::net::lookup_host(target))
        .await
        .map_err(|_| PushError::Timeout {
            step: "resolve",
            target: target.to_owned(),
        })?
        .map_err(|source| PushError::Resolve {
            target: target.to_owned(),
            source,
        })?;
    addresses
        .next()
        .ok_or_else(|| PushError::NoAddress(target.to_owned()))
}

/// StatsD over UDP.
#[derive(Debug)]
struct StatsdSink {
    target: String,
    socket: Option<UdpSocket>,
    /// The last value sent per cumulative series, to send increases.
    sent: HashMap<String, f64>,
    health: SinkHealth,
}

impl StatsdSink {
    fn new(target: String) -> Self {
        Self {
            target,
            socket: None,
            sent: HashMap::new(),
            health: SinkHealth::default(),
        }
    }

    async fn push(&mut self, samples: &[Sample]) -> Result<(), PushError> {
        let address = resolve(&self.target).await?;
        let send_error = |source| PushError::Send {
            target: self.target.clone(),
            source,
        };
        if self.socket.is_none() {
            let local: SocketAddr = if address.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            self.socket = Some(UdpSocket::bind(local).await.map_err(send_error)?);
        }
        let lines = statsd_lines(samples, &mut self.sent);
        let Some(socket) = self.socket.as_ref() else {
            return Ok(());
        };
        for datagram in pack(&lines, MAX_DATAGRAM) {
            if let Err(source) = socket.send_to(datagram.as_bytes(), address).await {
                self.socket = None;
                return Err(send_error(source));
            }
        }
        Ok(())
    }
}

/// StatsD lines for `samples`; `sent` holds the last value of each cumulative series.
pub fn statsd_lines(samples: &[Sample], sent: &mut HashMap<String, f64>) -> Vec<String> {
    let mut lines = Vec::new();
    for sample in samples {
        if sample.kind == SampleKind::HistogramBucket || !sample.value.is_finite() {
            continue;
        }
        let path = path(sample);
        if sample.kind.is_cumulative() {
            let previous = sent.insert(path.clone(), sample.value);
            let delta = sample.value - previous.unwrap_or(0.0);
            if previous.is_none() || delta != 0.0 {
                lines.push(format!("{path}:{}|c", number(delta)));
            }
        } else if sample.value < 0.0 {
            // A signed gauge value is a change in StatsD: set zero first, then subtract.
            lines.push(format!("{path}:0|g"));
            lines.push(format!("{path}:{}|g", number(sample.value)));
        } else {
            lines.push(format!("{path}:{}|g", number(sample.value)));
        }
    }
    lines
}

/// `lines` joined by newlines into packets of at most `limit` bytes (a longer line goes alone).
fn pack(lines: &[String], limit: usize) -> Vec<String> {
    let mut packets = Vec::new();
    let mut packet = String::new();
    for line in lines {
        if !packet.is_empty() && packet.len() + 1 + line.len() > limit {
            packets.push(std::mem::take(&mut packet));
        }
        if !packet.is_empty() {
            packet.push('\n');
        }
        packet.push_str(line);
    }
    if !packet.is_empty() {
        packets.push(packet);
    }
    packets
}

/// Graphite's plaintext protocol over TCP.
#[derive(Debug)]
struct GraphiteSink {
    target: String,
    stream: Option<TcpStream>,
    health: SinkHealth,
}

impl GraphiteSink {
    fn new(target: String) -> Self {
        Self {
            target,
            stream: None,
            health: SinkHealth::default(),
        }
    }

    async fn push(&mut self, samples: &[Sample], now: u64) -> Result<(), PushError> {
        let text = graphite_lines(samples, now);
        if self.stream.is_none() {
            let address = resolve(&self.target).await?;
            let stream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(address))
                .await
                .map_err(|_| PushError::Timeout {
                    step: "connect to",
                    target: self.target.clone(),
                })?
                .map_err(|source| PushError::Send {
                    target: self.target.clone(),
                    source,
                })?;
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let written = tokio::time::timeout(STEP_TIMEOUT, async {
            stream.write_all(text.as_bytes()).await?;
            stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => {
                self.stream = None;
                Err(PushError::Send {
                    target: self.target.clone(),
                    source,
                })
            }
            Err(_) => {
                self.stream = None;
                Err(PushError::Timeout {
                    step: "write to",
                    target: self.target.clone(),
                })
            }
        }
    }
}

/// Graphite plaintext lines for `samples` at `now` (Unix seconds).
pub fn graphite_lines(samples: &[Sample], now: u64) -> String {
    let mut text = String::new();
    for sample in samples {
        if sample.kind == SampleKind::HistogramBucket || !sample.value.is_finite() {
            continue;
        }
        // Writing to a String cannot fail.
        let _ = writeln!(text, "{} {} {now}", path(sample), number(sample.value));
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Instant;

    use tokio::io::AsyncBufReadExt;

    use super::*;
    use crate::RequestLabels;

    fn sample(name: &str, labels: &[(&str, &str)], value: f64, kind: SampleKind) -> Sample {
        Sample {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            value,
            kind,
        }
    }

    #[test]
    fn statsd_sends_gauges_and_counter_increases() {
        let requests = |value| {
            sample(
                "pacer_apiserver_requests_total",
                &[("verb", "LIST"), ("resource", "v2/apps")],
                value,
                SampleKind::Counter,
            )
        };
        let gauge = sample(
            "pacer_instances",
            &[("phase", "Running")],
            3.0,
            SampleKind::Gauge,
        );
        let bucket = sample(
            "pacer_x_bucket",
            &[("le", "0.1")],
            1.0,
            SampleKind::HistogramBucket,
        );
        let mut sent = HashMap::new();
        let first = statsd_lines(&[requests(5.0), gauge.clone(), bucket], &mut sent);
        assert_eq!(
            first,
            [
                "pacer.apiserver_requests_total.verb.LIST.resource.v2_apps:5|c",
                "pacer.instances.phase.Running:3|g"
            ]
        );
        let second = statsd_lines(&[requests(5.0), requests(7.0)], &mut sent);
        assert_eq!(
            second,
            ["pacer.apiserver_requests_total.verb.LIST.resource.v2_apps:2|c"],
            "no line for an unchanged counter"
        );
        let negative = sample("pacer_g", &[], -2.0, SampleKind::Gauge);
        assert_eq!(
            statsd_lines(&[negative], &mut sent),
            ["pacer.g:0|g", "pacer.g:-2|g"]
        );
    }

    #[test]
    fn graphite_lines_carry_the_timestamp() {
        let lines = graphite_lines(
            &[
                sample(
                    "pacer_store_request_duration_seconds_sum",
                    &[("operation", "txn")],
                    0.5,
                    SampleKind::HistogramSum,
                ),
                sample(
                    "pacer_store_request_duration_seconds_bucket",
                    &[("le", "+Inf")],
                    1.0,
                    SampleKind::HistogramBucket,
                ),
            ],
            1_700_000_000,
        );
        assert_eq!(
            lines,
            "pacer.store_request_duration_seconds_sum.operation.txn 0.5 1700000000\n"
        );
    }

    #[test]
    fn datagrams_stay_under_the_limit() {
        let lines: Vec<String> = (0..100).map(|i| format!("pacer.series{i}:1|c")).collect();
        let packets = pack(&lines, 100);
        assert!(packets.iter().all(|packet| packet.len() <= 100));
        assert_eq!(packets.join("\n"), lines.join("\n"));
    }

    /// Both sinks against real local listeners: the samples arrive, and a Graphite listener
    /// that goes away does not stop the StatsD pushes.
    #[tokio::test]
    async fn pushes_to_local_statsd_and_graphite_listeners() {
        let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        metrics.api.observe_request(
            RequestLabels {
                verb: "GET",
                resource: "v2/info".to_owned(),
                code: "200".to_owned(),
            },
            Duration::from_millis(1),
        );
        metrics.controllers.series("placement").leader.set(1);
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = PushConfig {
            statsd: Some(udp.local_addr().unwrap().to_string()),
            graphite: Some(tcp.local_addr().unwrap().to_string()),
            interval: Duration::from_millis(50),
        };
        let shutdown = CancellationToken::new();
        let pusher = tokio::spawn(run(metrics, config, shutdown.clone()));

        let (connection, _) = tcp.accept().await.unwrap();
        let mut lines = tokio::io::BufReader::new(connection).lines();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen_leader = false;
        while !seen_leader {
            assert!(Instant::now() < deadline, "no leader line from graphite");
            let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let words: Vec<&str> = line.split(' ').collect();
            assert_eq!(words.len(), 3, "{line}");
            assert!(words[2].parse::<u64>().unwrap() > 1_600_000_000, "{line}");
            seen_leader =
                words[0] == "pacer.controller_leader.controller.placement" && words[1] == "1";
        }
        drop(lines);
        drop(tcp);

        let mut buffer = vec![0u8; 65536];
        let mut seen = String::new();
        while !seen
            .contains("pacer.apiserver_requests_total.verb.GET.resource.v2_info.code.200:1|c")
        {
            assert!(Instant::now() < deadline, "statsd got only:\n{seen}");
            let (length, _) =
                tokio::time::timeout(Duration::from_secs(10), udp.recv_from(&mut buffer))
                    .await
                    .unwrap()
                    .unwrap();
            assert!(length <= MAX_DATAGRAM);
            seen.push_str(std::str::from_utf8(&buffer[..length]).unwrap());
            seen.push('\n');
        }
        assert!(
            seen.contains("pacer.controller_leader.controller.placement:1|g\n"),
            "{seen}"
        );
        // Counters are sent as increases: the same request is not counted twice.
        metrics.api.observe_request(
            RequestLabels {
                verb: "GET",
                resource: "v2/info".to_owned(),
                code: "200".to_owned(),
            },
            Duration::from_millis(1),
        );
        let mut later = String::new();
        while !later.contains("pacer.apiserver_requests_total.verb.GET.resource.v2_info.code.200:")
        {
            assert!(Instant::now() < deadline, "no second count:\n{later}");
            let (length, _) =
                tokio::time::timeout(Duration::from_secs(10), udp.recv_from(&mut buffer))
                    .await
                    .unwrap()
                    .unwrap();
            later = String::from_utf8_lossy(&buffer[..length]).into_owned();
        }
        assert!(
            later.contains("pacer.apiserver_requests_total.verb.GET.resource.v2_info.code.200:1|c"),
            "{later}"
        );
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), pusher)
            .await
            .unwrap()
            .unwrap();
    }
}
