//! Reads the Prometheus text format (0.0.4) back into [`Sample`]s, each with the type its
//! family declared, so that [`crate::push`] can send the very samples `/metrics` serves.
//! `prometheus-client` encodes but offers no other way to walk a registry's values.
//!
//! Only what the encoder writes is understood: `# TYPE` lines (other comments are skipped) and
//! `name{label="value",…} value` lines with `\\`, `\"` and `\n` escapes in label values.

/// What a sample is, from its family's `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleKind {
    /// A counter's value (`…_total`).
    Counter,
    /// A gauge's value.
    Gauge,
    /// A histogram's `…_bucket` series.
    HistogramBucket,
    /// A histogram's `…_sum` (a counter of the observed total).
    HistogramSum,
    /// A histogram's `…_count` (a counter of observations).
    HistogramCount,
    /// Anything else (an untyped family).
    Untyped,
}

impl SampleKind {
    /// Whether the value only grows (a counter, or a histogram's sum or count).
    pub fn is_cumulative(self) -> bool {
        matches!(
            self,
            Self::Counter | Self::HistogramSum | Self::HistogramCount
        )
    }
}

/// One sample: a series and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's name (`pacer_apiserver_requests_total`, `…_seconds_count`, …).
    pub name: String,
    /// Its labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
    /// What it is.
    pub kind: SampleKind,
}

/// A line that is not the text format.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}: {text:?}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: &'static str,
    /// The line.
    pub text: String,
}

/// The samples of `text`, in order.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut types: Vec<(String, SampleKind)> = Vec::new();
    let mut samples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let error = |reason| ParseError {
            line: index + 1,
            reason,
            text: line.to_owned(),
        };
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE") {
                let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                    return Err(error("a TYPE line without name and type"));
                };
                let kind = match kind {
                    "counter" => SampleKind::Counter,
                    "gauge" => SampleKind::Gauge,
                    "histogram" => SampleKind::HistogramBucket,
                    _ => SampleKind::Untyped,
                };
                types.push((name.to_owned(), kind));
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| error("no value after the series"))?;
        let value = parse_value(value).ok_or_else(|| error("the value is not a number"))?;
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let labels = rest
                    .strip_suffix('}')
                    .ok_or_else(|| error("labels do not end with }"))?;
                (
                    name,
                    parse_labels(labels).ok_or_else(|| error("malformed labels"))?,
                )
            }
            None => (series, Vec::new()),
        };
        let kind = kind_of(name, &types);
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
            kind,
        });
    }
    Ok(samples)
}

/// The kind of sample `name` under the families declared so far.
fn kind_of(name: &str, types: &[(String, SampleKind)]) -> SampleKind {
    for (family, kind) in types.iter().rev() {
        if name == family {
            return *kind;
        }
        if *kind == SampleKind::HistogramBucket
            && let Some(suffix) = name.strip_prefix(family.as_str())
        {
            match suffix {
                "_bucket" => return SampleKind::HistogramBucket,
                "_sum" => return SampleKind::HistogramSum,
                "_count" => return SampleKind::HistogramCount,
                _ => {}
            }
        }
    }
    SampleKind::Untyped
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// `key="value",key="value"` (a trailing comma allowed).
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (at, c) = chars.next()?;
            match c {
                '"' => break at,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        };
        labels.push((key.trim().to_owned(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Some(labels)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_encoder_writes() {
        let text = "\
# HELP pacer_requests_total Requests.
# TYPE pacer_requests_total counter
pacer_requests_total{verb=\"GET\",path=\"a \\\"b\\\" \\\\ c\\nd\"} 3
# TYPE pacer_up gauge
pacer_up -1
# TYPE pacer_latency_seconds histogram
pacer_latency_seconds_sum{op=\"get\"} 0.25
pacer_latency_seconds_count{op=\"get\"} 2
pacer_latency_seconds_bucket{le=\"+Inf\",op=\"get\"} 2
";
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 5);
        assert_eq!(samples[0].kind, SampleKind::Counter);
        assert_eq!(
            samples[0].labels,
            vec![
                ("verb".to_owned(), "GET".to_owned()),
                ("path".to_owned(), "a \"b\" \\ c\nd".to_owned())
            ]
        );
        assert_eq!(samples[0].value, 3.0);
        assert_eq!(
            (samples[1].kind, samples[1].value),
            (SampleKind::Gauge, -1.0)
        );
        assert_eq!(samples[2].kind, SampleKind::HistogramSum);
        assert_eq!(samples[3].kind, SampleKind::HistogramCount);
        assert_eq!(samples[4].kind, SampleKind::HistogramBucket);
        assert!(parse("pacer_x{a=\"b\" 1\n").is_err());
        assert!(parse("pacer_x one\n").is_err());
    }

    #[test]
    fn reads_the_registry() {
        let metrics = crate::Metrics::new();
        metrics.cluster.instances("Running").set(4);
        let samples = parse(&metrics.encode_prometheus().unwrap()).unwrap();
        let running = samples
            .iter()
            .find(|sample| {
                sample.name == "pacer_instances"
                    && sample.labels == [("phase".to_owned(), "Running".to_owned())]
            })
            .unwrap();
        assert_eq!((running.kind, running.value), (SampleKind::Gauge, 4.0));
    }
}
