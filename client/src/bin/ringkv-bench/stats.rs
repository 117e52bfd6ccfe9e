//! Latency and error accounting.
//!
//! Each worker keeps its own HdrHistograms (one per operation kind, in
//! microseconds) and merges them at the end; a shared set of interval
//! histograms feeds the once-a-second progress line and the HDR log.
//! Failed operations are never recorded as latencies: they are counted
//! by kind (unavailable, timeout, overloaded, other) and reported beside
//! them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

use crate::error::ErrorKind;
use crate::workload::OpKind;

/// Highest latency tracked: one minute, in microseconds.
const MAX_LATENCY_US: u64 = 60_000_000;

/// A histogram of microsecond latencies.
pub fn histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap_or_else(|_| unreachable!())
}

/// One latency per operation kind.
#[derive(Debug, Clone)]
pub struct PerOp {
    pub histograms: Vec<Histogram<u64>>,
}

impl Default for PerOp {
    fn default() -> Self {
        PerOp {
            histograms: OpKind::ALL.iter().map(|_| histogram()).collect(),
        }
    }
}

impl PerOp {
    pub fn record(&mut self, kind: OpKind, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        // In range by construction.
        let _ = self.histograms[kind.index()].record(micros);
    }

    pub fn merge(&mut self, other: &PerOp) {
        for (mine, theirs) in self.histograms.iter_mut().zip(&other.histograms) {
            let _ = mine.add(theirs);
        }
    }

    pub fn count(&self) -> u64 {
        self.histograms.iter().map(Histogram::len).sum()
    }

    /// Every operation kind merged.
    pub fn all(&self) -> Histogram<u64> {
        let mut all = histogram();
        for h in &self.histograms {
            let _ = all.add(h);
        }
        all
    }

    pub fn reset(&mut self) {
        self.histograms.iter_mut().for_each(Histogram::reset);
    }
}

/// Errors by kind.
#[derive(Debug, Default)]
pub struct Errors {
    counts: [AtomicU64; 4],
    first: Mutex<Option<String>>,
    /// The first message of each kind.
    first_of: Mutex<[Option<String>; 4]>,
}

/// Error kinds in report order, with their names.
pub const KINDS: [(ErrorKind, &str); 4] = [
    (ErrorKind::Unavailable, "unavailable"),
    (ErrorKind::Timeout, "timeout"),
    (ErrorKind::Overloaded, "overloaded"),
    (ErrorKind::Other, "other"),
];

fn slot(kind: ErrorKind) -> usize {
    match kind {
        ErrorKind::Unavailable => 0,
        ErrorKind::Timeout => 1,
        ErrorKind::Other => 2,
        ErrorKind::Overloaded => 3,
    }
}

impl Errors {
    pub fn record(&self, kind: ErrorKind, message: &str) {
        self.counts[slot(kind)].fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first.lock() {
            first.get_or_insert_with(|| message.to_owned());
        }
        if let Ok(mut first_of) = self.first_of.lock() {
            first_of[slot(kind)].get_or_insert_with(|| message.to_owned());
        }
    }

    /// The first message of each kind seen, by kind name.
    pub fn first_of_each(&self) -> Vec<(&'static str, String)> {
        let Ok(first_of) = self.first_of.lock() else {
            return Vec::new();
        };
        KINDS
            .iter()
            .filter_map(|(kind, name)| first_of[slot(*kind)].clone().map(|m| (*name, m)))
            .collect()
    }

    pub fn count(&self, kind: ErrorKind) -> u64 {
        self.counts[slot(kind)].load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The first error message seen, to show what went wrong.
    pub fn first(&self) -> Option<String> {
        self.first.lock().ok().and_then(|f| f.clone())
    }
}

/// What a phase measured.
#[derive(Debug)]
pub struct Report {
    pub phase: &'static str,
    pub elapsed: Duration,
    pub latencies: PerOp,
    pub unavailable: u64,
    pub timeouts: u64,
    pub overloaded: u64,
    pub other_errors: u64,
    pub first_error: Option<String>,
    /// The first message of each kind of error seen.
    pub first_of_each: Vec<(&'static str, String)>,
    /// Interval histograms for the HDR log: (start offset, length, op, histogram).
    pub intervals: Vec<(Duration, Duration, OpKind, Histogram<u64>)>,
    /// Rows the operations read (scans, latest) and wrote (every write,
    /// a batch's rows each), for the cost per row.
    pub rows_read: u64,
    pub rows_written: u64,
}

impl Report {
    pub fn successes(&self) -> u64 {
        self.latencies.count()
    }

    pub fn errors(&self) -> u64 {
        self.unavailable + self.timeouts + self.overloaded + self.other_errors
    }

    /// Successful operations per second.
    pub fn throughput(&self) -> f64 {
        self.successes() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The final table.
    pub fn table(&self) -> String {
        let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
        let mut out = format!(
            "{:<7} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}   (latencies in ms)\n",
            "op", "count", "ops/s", "mean", "p50", "p90", "p99", "p99.9", "p99.99", "max"
        );
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        for kind in OpKind::ALL {
            let h = &self.latencies.histograms[kind.index()];
            if h.is_empty() {
                continue;
            }
            out.push_str(&format!(
                "{:<7} {:>9} {:>10.0} {:>8.3} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
                kind.name(),
                h.len(),
                h.len() as f64 / secs,
                h.mean() / 1000.0,
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.9)),
                ms(h.value_at_quantile(0.99)),
                ms(h.value_at_quantile(0.999)),
                ms(h.value_at_quantile(0.9999)),
                ms(h.max()),
            ));
        }
        out.push_str(&format!(
            "{} {}: {:.0} ops/s over {:.1} s; errors: {} ({} unavailable, {} timeout, {} overloaded, {} other)",
            self.phase,
            self.successes(),
            self.throughput(),
            secs,
            self.errors(),
            self.unavailable,
            self.timeouts,
            self.overloaded,
            self.other_errors
        ));
        if self.rows_read > 0 {
            out.push_str(&format!(
                "\nrows read: {} ({:.0} rows/s)",
                self.rows_read,
                self.rows_read as f64 / secs
            ));
        }
        if let Some(first) = &self.first_error {
            out.push_str(&format!("\nfirst error: {first}"));
        }
        for (kind, message) in &self.first_of_each {
            if Some(message) != self.first_error.as_ref() {
                out.push_str(&format!("\nfirst {kind} error: {message}"));
            }
        }
        out
    }

    /// Everything, as JSON.
    pub fn json(&self) -> serde_json::Value {
        let ops: serde_json::Map<String, serde_json::Value> = OpKind::ALL
            .iter()
            .filter(|k| !self.latencies.histograms[k.index()].is_empty())
            .map(|k| {
                let h = &self.latencies.histograms[k.index()];
                let q = |q: f64| h.value_at_quantile(q);
                (
                    k.name().to_owned(),
                    json!({
                        "count": h.len(),
                        "ops_per_second": h.len() as f64 / self.elapsed.as_secs_f64().max(1e-9),
                        "mean_us": h.mean(),
                        "p50_us": q(0.5),
                        "p90_us": q(0.9),
                        "p99_us": q(0.99),
                        "p999_us": q(0.999),
                        "p9999_us": q(0.9999),
                        "max_us": h.max(),
                    }),
                )
            })
            .collect();
        json!({
            "phase": self.phase,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "operations": self.successes(),
            "throughput_ops_per_second": self.throughput(),
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "ops": ops,
            "errors": {
                "unavailable": self.unavailable,
                "timeout": self.timeouts,
                "overloaded": self.overloaded,
                "other": self.other_errors,
                "first": self.first_error,
                "first_by_kind": self
                    .first_of_each
                    .iter()
                    .map(|(kind, message)| ((*kind).to_owned(), json!(message)))
                    .collect::<serde_json::Map<_, _>>(),
            },
        })
    }

    /// The interval histograms in HdrHistogram's interval-log format.
    pub fn write_hdr_log(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        use hdrhistogram::serialization::V2DeflateSerializer;
        use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
        let mut serializer = V2DeflateSerializer::new();
        let mut writer = IntervalLogWriterBuilder::new()
            .add_comment("ringkv-bench latencies, microseconds")
            .with_max_value_divisor(1000.0)
            .begin_log_with(out, &mut serializer)?;
        for (start, length, kind, h) in &self.intervals {
            writer
                .write_histogram(h, *start, *length, Tag::new(kind.name()))
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_op_recording_and_merging() {
        let mut a = PerOp::default();
        let mut b = PerOp::default();
        a.record(OpKind::Read, Duration::from_micros(100));
        a.record(OpKind::Read, Duration::from_micros(300));
        b.record(OpKind::Update, Duration::from_millis(2));
        b.record(OpKind::Read, Duration::ZERO);
        a.merge(&b);
        assert_eq!(a.histograms[OpKind::Read.index()].len(), 3);
        assert_eq!(a.histograms[OpKind::Update.index()].len(), 1);
        assert_eq!(a.count(), 4);
        assert_eq!(a.all().len(), 4);
        assert!(a.histograms[OpKind::Update.index()].max() >= 2_000);
    }

    #[test]
    fn errors_are_counted_by_kind() {
        let errors = Errors::default();
        errors.record(ErrorKind::Timeout, "slow");
        errors.record(ErrorKind::Timeout, "slower");
        errors.record(ErrorKind::Unavailable, "down");
        assert_eq!(errors.count(ErrorKind::Timeout), 2);
        assert_eq!(errors.count(ErrorKind::Unavailable), 1);
        assert_eq!(errors.count(ErrorKind::Other), 0);
        assert_eq!(errors.total(), 3);
        assert_eq!(errors.first().as_deref(), Some("slow"));
    }
}
