//! Per-request options.

use std::time::Duration;

use crate::trace::TraceCollector;

use crate::Consistency;

/// Options of a read. Unset fields take the client's defaults.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Consistency level of this read.
    pub consistency: Option<Consistency>,
    /// How long to wait for the answer.
    pub timeout: Option<Duration>,
    /// Trace the request; the coordinator's account goes here.
    pub trace: Option<TraceCollector>,
}

/// Options of a put or delete. Unset fields take the client's defaults.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Consistency level of this write.
    pub consistency: Option<Consistency>,
    /// How long to wait for the answer.
    pub timeout: Option<Duration>,
    /// The value expires this long after the write (puts only; to the
    /// millisecond, at least one).
    pub ttl: Option<Duration>,
    /// Write timestamp in microseconds since the Unix epoch. When set, the
    /// write is idempotent: retrying it cannot reorder it after a later one.
    pub timestamp_micros: Option<i64>,
    /// Trace the request; the coordinator's account goes here.
    pub trace: Option<TraceCollector>,
}

impl ReadOptions {
    /// Sets the consistency level.
    pub fn consistency(mut self, level: Consistency) -> Self {
        self.consistency = Some(level);
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Traces the request into `collector`.
    pub fn traced(mut self, collector: &TraceCollector) -> Self {
        self.trace = Some(collector.clone());
        self
    }
}

impl WriteOptions {
    /// Sets the consistency level.
    pub fn consistency(mut self, level: Consistency) -> Self {
        self.consistency = Some(level);
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the time to live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the write timestamp.
    pub fn timestamp_micros(mut self, timestamp: i64) -> Self {
        self.timestamp_micros = Some(timestamp);
        self
    }

    /// Traces the request into `collector`.
    pub fn traced(mut self, collector: &TraceCollector) -> Self {
        self.trace = Some(collector.clone());
        self
    }
}
