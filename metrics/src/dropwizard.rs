//! The registry as Marathon's `GET /metrics` answers: Dropwizard's JSON registry
//! (`{version, gauges, counters, histograms, meters, timers}`), for Marathon clients that ask
//! `/metrics` for JSON (the Python client's `get_metrics()` decodes it as a dict). Prometheus
//! scrapers get the text format from the same route; this is only another view of the same
//! samples.
//!
//! Each series is named by its dotted [`path`](crate::push::path) (as pushed to Graphite):
//! gauges as `{"value": v}`, counters as `{"count": n}`, histograms as timers
//! `{"count", "mean", "p50", "p75", "p95", "p99", "duration_units": "seconds"}`, each
//! quantile the upper bound of the first bucket that holds it (as coarse as the buckets).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::exposition::{Sample, SampleKind};
use crate::push::path;

/// Dropwizard's registry format version, as Marathon reports it.
pub const VERSION: &str = "4.0.0";

/// One histogram series being gathered.
#[derive(Debug, Default)]
struct Timer {
    count: f64,
    sum: f64,
    /// `(upper bound, cumulative count)`.
    buckets: Vec<(f64, f64)>,
}

impl Timer {
    fn quantile(&self, q: f64) -> f64 {
        let rank = q * self.count;
        let mut last_finite = 0.0;
        for (bound, cumulative) in &self.buckets {
            if bound.is_finite() {
                last_finite = *bound;
            }
            if *cumulative >= rank {
                return if bound.is_finite() {
                    *bound
                } else {
                    last_finite
                };
            }
        }
        last_finite
    }

    fn to_json(&self) -> Value {
        let mean = if self.count > 0.0 {
            self.sum / self.count
        } else {
            0.0
        };
        json!({
            "count": self.count,
            "mean": mean,
            "p50": self.quantile(0.5),
            "p75": self.quantile(0.75),
            "p95": self.quantile(0.95),
            "p99": self.quantile(0.99),
            "duration_units": "seconds",
        })
    }
}

/// `samples` as Dropwizard's JSON registry.
pub fn registry_json(samples: &[Sample]) -> Value {
    let mut gauges = Map::new();
    let mut counters = Map::new();
    let mut timers: BTreeMap<String, Timer> = BTreeMap::new();
    for sample in samples {
        match sample.kind {
            SampleKind::Gauge | SampleKind::Untyped => {
                gauges.insert(path(sample), json!({ "value": finite(sample.value) }));
            }
            SampleKind::Counter => {
                counters.insert(path(sample), json!({ "count": finite(sample.value) }));
            }
            SampleKind::HistogramSum | SampleKind::HistogramCount | SampleKind::HistogramBucket => {
                let Some(family) = ["_sum", "_count", "_bucket"]
                    .iter()
                    .find_map(|suffix| sample.name.strip_suffix(suffix))
                else {
                    continue;
                };
                let mut series = Sample {
                    name: family.to_owned(),
                    labels: sample.labels.clone(),
                    value: sample.value,
                    kind: sample.kind,
                };
                let bound = series
                    .labels
                    .iter()
                    .position(|(key, _)| key == "le")
                    .map(|at| series.labels.remove(at).1);
                let timer = timers.entry(path(&series)).or_default();
                match (sample.kind, bound) {
                    (SampleKind::HistogramSum, _) => timer.sum = sample.value,
                    (SampleKind::HistogramCount, _) => timer.count = sample.value,
                    (_, Some(bound)) => {
                        let bound = match bound.as_str() {
                            "+Inf" => f64::INFINITY,
                            other => other.parse().unwrap_or(f64::INFINITY),
                        };
                        timer.buckets.push((bound, sample.value));
                    }
                    _ => {}
                }
            }
        }
    }
    let timers: Map<String, Value> = timers
        .into_iter()
        .map(|(name, mut timer)| {
            timer.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            (name, timer.to_json())
        })
        .collect();
    json!({
        "version": VERSION,
        "gauges": gauges,
        "counters": counters,
        "histograms": {},
        "meters": {},
        "timers": timers,
    })
}

/// JSON has no infinities or NaN.
fn finite(value: f64) -> Value {
    if value.is_finite() {
        json!(value)
    } else {
        Value::Null
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Metrics, RequestLabels};

    #[test]
    fn the_registry_as_dropwizard_json() {
        let metrics = Metrics::new();
        for millis in [1, 3, 3, 200] {
            metrics.api.observe_request(
                RequestLabels {
                    verb: "GET",
                    resource: "v2/apps".to_owned(),
                    code: "200".to_owned(),
                },
                Duration::from_millis(millis),
            );
        }
        metrics.cluster.instances("Running").set(7);
        let samples = crate::exposition::parse(&metrics.encode_prometheus().unwrap()).unwrap();
        let json = registry_json(&samples);
        assert_eq!(json["version"], VERSION);
        assert_eq!(
            json["gauges"]["pacer.instances.phase.Running"]["value"],
            7.0
        );
        assert_eq!(
            json["counters"]["pacer.apiserver_requests_total.verb.GET.resource.v2_apps.code.200"]["count"],
            4.0
        );
        let timer = &json["timers"]["pacer.apiserver_request_duration_seconds.verb.GET.resource.v2_apps.code.200"];
        assert_eq!(timer["count"], 4.0);
        let mean = timer["mean"].as_f64().unwrap();
        assert!((mean - 0.05175).abs() < 1e-3, "{timer}");
        // 2 of 4 observations are ≤ 4 ms (bucket bounds 0.5 ms × 2ⁿ), the last ≤ 256 ms.
        assert_eq!(timer["p50"], 0.004);
        assert_eq!(timer["p99"], 0.256);
    }
}
