//! Samples of what a node served, for the console's charts: every
//! [`SAMPLE_INTERVAL`] the node reads its own counters (the text `/metrics`
//! renders, so the charts count what Prometheus counts) and keeps the difference
//! from the last reading as one [`Sample`]: requests/s, p50 and p99
//! latency and errors/s by operation, read repairs/s, hints pending by
//! target.
//!
//! Everything here is plain data: [`Reading::parse`] reads the exposition
//! text, [`Sample::between`] turns two readings into a sample.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use strum::IntoEnumIterator;

use crate::coordinator::{Op, Outcome};
use crate::metrics::{HINTS_PENDING_BYTES, READ_REPAIRS, REQUEST_SECONDS, REQUESTS};

/// How often a node samples itself.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);

/// The operations charted, in chart order: every operation the front
/// doors count.
pub static OPS: LazyLock<Vec<&'static str>> = LazyLock::new(|| Op::iter().map(Op::label).collect());

/// Outcomes that count as errors, in chart order.
pub static ERROR_KINDS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| Outcome::errors().map(Outcome::label).collect());

/// The counters of one reading of `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Requests by (op, outcome), summed over levels.
    pub requests: BTreeMap<(String, String), f64>,
    /// Latency histogram by op: cumulative count per upper bound (seconds),
    /// summed over levels.
    pub latency: BTreeMap<String, BTreeMap<Bound, f64>>,
    pub read_repairs: f64,
    /// Hint bytes held, by target.
    pub hints_pending: BTreeMap<String, f64>,
}

/// A histogram bucket's upper bound, ordered (`+Inf` last).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound(pub f64);

impl Eq for Bound {}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// One sample: what the node did between two readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Unix milliseconds at the end of the interval.
    pub at_ms: i64,
    pub ops: Vec<OpSample>,
    /// Errors/s by kind, over every op.
    pub errors: BTreeMap<String, f64>,
    pub read_repairs_per_second: f64,
    /// Hint bytes held at the end of the interval, by target.
    pub hints_pending: BTreeMap<String, f64>,
}

/// One operation within a sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpSample {
    pub op: String,
    pub per_second: f64,
    /// Latency quantiles of the interval's requests, in milliseconds
    /// (0 without requests): the upper bound of the bucket that holds
    /// them (Prometheus's `histogram_quantile` interpolates within the
    /// bucket, so it reads lower).
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// `name{a="x",b="y"} value` as (name, labels, value).
fn parse_line(line: &str) -> Option<(&str, BTreeMap<&str, &str>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => {
            let labels = rest
                .strip_suffix('}')?
                .split(',')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k, v.trim_matches('"')))
                })
                .collect();
            (name, labels)
        }
        None => (series, BTreeMap::new()),
    };
    Some((name, labels, value))
}

impl Reading {
    /// Reads the series the console charts from exposition `text`.
    pub fn parse(text: &str, at_ms: i64) -> Reading {
        let mut reading = Reading {
            at_ms,
            ..Reading::default()
        };
        let bucket = format!("{REQUEST_SECONDS}_bucket");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, labels, value)) = parse_line(line) else {
                continue;
            };
            let label = |key: &str| labels.get(key).copied().unwrap_or_default().to_owned();
            if name == REQUESTS {
                *reading
                    .requests
                    .entry((label("op"), label("outcome")))
                    .or_default() += value;
            } else if name == bucket {
                let le = match labels.get("le").copied() {
                    Some("+Inf") => f64::INFINITY,
                    Some(le) => le.parse().unwrap_or(f64::INFINITY),
                    None => continue,
                };
                *reading
                    .latency
                    .entry(label("op"))
                    .or_default()
                    .entry(Bound(le))
                    .or_default() += value;
            } else if name == READ_REPAIRS {
                reading.read_repairs += value;
            } else if name == HINTS_PENDING_BYTES && value > 0.0 {
                // Targets with nothing held are left out: every sample
                // would otherwise carry every peer.
                *reading.hints_pending.entry(label("target")).or_default() += value;
            }
        }
        reading
    }
}

/// The upper bound (ms) of the bucket holding quantile `q` of the requests
/// counted between `before` and `after` (cumulative bucket counts).
fn quantile_ms(before: Option<&BTreeMap<Bound, f64>>, after: &BTreeMap<Bound, f64>, q: f64) -> f64 {
    let delta = |bound: &Bound, count: f64| {
        count - before.and_then(|b| b.get(bound)).copied().unwrap_or(0.0)
    };
    let total = after
        .iter()
        .next_back()
        .map_or(0.0, |(bound, count)| delta(bound, *count));
    if total <= 0.0 {
        return 0.0;
    }
    let rank = q * total;
    let mut last_finite = 0.0;
    for (bound, count) in after {
        if bound.0.is_finite() {
            last_finite = bound.0;
        }
        if delta(bound, *count) >= rank {
            // Past the largest bucket: the largest finite bound.
            return if bound.0.is_finite() {
                bound.0
            } else {
                last_finite
            } * 1000.0;
        }
    }
    last_finite * 1000.0
}

impl Sample {
    /// What happened between readings `before` and `after`. Counters that
    /// went down (the node restarted) count from zero.
    pub fn between(before: &Reading, after: &Reading) -> Sample {
        let seconds = ((after.at_ms - before.at_ms) as f64 / 1000.0).max(0.001);
        let rate = |now: f64, then: f64| {
            let delta = if now >= then { now - then } else { now };
            delta / seconds
        };
        let requests_of = |reading: &Reading, op: &str| -> f64 {
            reading
                .requests
                .iter()
                .filter(|((o, _), _)| o == op)
                .map(|(_, v)| v)
                .sum()
        };
        let ops = OPS
            .iter()
            .map(|op| {
                let latency = after.latency.get(*op);
                let previous = before.latency.get(*op);
                OpSample {
                    op: (*op).to_owned(),
                    per_second: rate(requests_of(after, op), requests_of(before, op)),
                    p50_ms: latency.map_or(0.0, |l| quantile_ms(previous, l, 0.5)),
                    p99_ms: latency.map_or(0.0, |l| quantile_ms(previous, l, 0.99)),
                }
            })
            .collect();
        let errors = ERROR_KINDS
            .iter()
            .map(|kind| {
                let of = |reading: &Reading| -> f64 {
                    reading
                        .requests
                        .iter()
                        .filter(|((_, outcome), _)| outcome == kind)
                        .map(|(_, v)| v)
                        .sum()
                };
                ((*kind).to_owned(), rate(of(after), of(before)))
            })
            .collect();
        Sample {
            at_ms: after.at_ms,
            ops,
            errors,
            read_repairs_per_second: rate(after.read_repairs, before.read_repairs),
            hints_pending: after.hints_pending.clone(),
        }
    }

    /// The operation's part of the sample.
    pub fn op(&self, op: &str) -> Option<&OpSample> {
        self.ops.iter().find(|o| o.op == op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# HELP ringkv_requests_total Client requests served
# TYPE ringkv_requests_total counter
ringkv_requests_total{op="get",level="quorum",outcome="ok"} 10
ringkv_requests_total{op="get",level="one",outcome="ok"} 0
ringkv_requests_total{op="put",level="quorum",outcome="timeout"} 1
ringkv_request_duration_seconds_bucket{op="get",level="quorum",le="0.001"} 10
ringkv_request_duration_seconds_bucket{op="get",level="quorum",le="0.01"} 10
ringkv_request_duration_seconds_bucket{op="get",level="quorum",le="+Inf"} 10
ringkv_read_repairs_total{kind="blocking"} 2
"#;

    const AFTER: &str = r#"ringkv_requests_total{op="get",level="quorum",outcome="ok"} 110
ringkv_requests_total{op="get",level="one",outcome="ok"} 100
ringkv_requests_total{op="put",level="quorum",outcome="timeout"} 5
ringkv_request_duration_seconds_bucket{op="get",level="quorum",le="0.001"} 100
ringkv_request_duration_seconds_bucket{op="get",level="quorum",le="0.01"} 108
ringkv_request_duration_seconds_bucket{op="get",level="quorum",le="+Inf"} 110
ringkv_request_duration_seconds_bucket{op="get",level="one",le="0.001"} 100
ringkv_request_duration_seconds_bucket{op="get",level="one",le="0.01"} 100
ringkv_request_duration_seconds_bucket{op="get",level="one",le="+Inf"} 100
ringkv_read_repairs_total{kind="blocking"} 4
ringkv_read_repairs_total{kind="background"} 2
ringkv_hints_pending_bytes{target="n3"} 850
"#;

    #[test]
    fn a_sample_is_the_rate_and_latency_between_two_readings() {
        let before = Reading::parse(BEFORE, 1_000);
        let after = Reading::parse(AFTER, 3_000);
        let sample = Sample::between(&before, &after);
        let get = sample.op("get").expect("get");
        // 200 more gets in 2 s.
        assert_eq!(get.per_second, 100.0);
        // Of the 200, 190 took under 1 ms, 8 under 10 ms, 2 longer.
        assert_eq!(get.p50_ms, 1.0);
        assert_eq!(get.p99_ms, 10.0);
        assert_eq!(sample.op("put").map(|p| p.per_second), Some(2.0));
        assert_eq!(sample.errors["timeout"], 2.0);
        assert_eq!(sample.errors["invalid"], 0.0);
        assert_eq!(sample.read_repairs_per_second, 2.0);
        assert_eq!(sample.hints_pending["n3"], 850.0);
        assert_eq!(sample.at_ms, 3_000);
    }

    #[test]
    fn an_idle_interval_is_zero_and_a_restart_counts_from_zero() {
        let reading = Reading::parse(BEFORE, 1_000);
        let idle = Sample::between(
            &reading,
            &Reading {
                at_ms: 3_000,
                ..reading.clone()
            },
        );
        assert!(
            idle.ops
                .iter()
                .all(|o| o.per_second == 0.0 && o.p99_ms == 0.0)
        );
        let restarted = Reading::parse(
            "ringkv_requests_total{op=\"get\",level=\"one\",outcome=\"ok\"} 4\n",
            3_000,
        );
        let after = Sample::between(&reading, &restarted);
        assert_eq!(after.op("get").map(|g| g.per_second), Some(2.0));
    }

    #[test]
    fn past_the_largest_bucket_is_the_largest_finite_bound() {
        let after = Reading::parse(
            "ringkv_request_duration_seconds_bucket{op=\"put\",level=\"all\",le=\"0.5\"} 0\n\
             ringkv_request_duration_seconds_bucket{op=\"put\",level=\"all\",le=\"+Inf\"} 3\n",
            2_000,
        );
        let sample = Sample::between(&Reading::default(), &after);
        assert_eq!(sample.op("put").map(|p| p.p99_ms), Some(500.0));
    }

    #[test]
    fn junk_lines_are_skipped() {
        let reading = Reading::parse("garbage\nringkv_requests_total{op=\"get\" 3\n{}\n 1\n", 0);
        assert!(reading.requests.is_empty());
    }
}
