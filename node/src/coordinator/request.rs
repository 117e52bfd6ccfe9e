//! Requests as the coordinator sees them, and their validation.
//!
//! Every limit is checked before anything is written, and each error says
//! which limit was broken, so a bad request never touches stored data.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::consistency::ConsistencyLevel;
use super::error::CoordinatorError;
use super::trace::Trace;
use crate::clock::{SkewLimit, Timestamp};
use crate::ring::Token;

/// Longest TTL accepted: 20 years, as Cassandra.
pub const MAX_TTL_SECONDS: u32 = 20 * 365 * 24 * 3600;

/// A read of one row.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    /// The partition key.
    pub key: Bytes,
    /// The row; empty: the plain key.
    pub sort_key: Bytes,
    pub level: ConsistencyLevel,
    /// `None`: the node's read timeout.
    pub timeout: Option<Duration>,
    /// Records what the coordinator does, when the client asked.
    pub trace: Option<Arc<Trace>>,
}

/// A put (`value: Some`) or delete (`value: None`) of what `target` names
/// in the partition `key`.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    /// The partition key.
    pub key: Bytes,
    pub target: Target,
    pub value: Option<Bytes>,
    pub level: ConsistencyLevel,
    /// Milliseconds to live; `None` or 0 never expires.
    pub ttl_ms: Option<u64>,
    /// Client-chosen timestamp; `None`: the coordinator's clock.
    pub timestamp: Option<Timestamp>,
    /// `None`: the node's write timeout.
    pub timeout: Option<Duration>,
    /// Records what the coordinator does, when the client asked.
    pub trace: Option<Arc<Trace>>,
}

/// What a write puts or deletes within its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One row, by sort key (empty: the plain key).
    Row(Bytes),
    /// Deletes: the rows whose sort keys lie in `[start, end)` (`end`:
    /// `None` for the end of the partition).
    Rows { start: Bytes, end: Option<Bytes> },
    /// Deletes: every row of the partition.
    Partition,
}

impl Default for Target {
    /// The plain key.
    fn default() -> Self {
        Target::Row(Bytes::new())
    }
}

impl Target {
    /// The row key the write goes to: the row's, or for a deletion of
    /// many rows the partition's deletions entry (see `storage::deletions`).
    pub fn row_key(&self, partition: &[u8]) -> Vec<u8> {
        match self {
            Target::Row(sort) => crate::storage::key::row_key(partition, sort),
            Target::Rows { .. } | Target::Partition => {
                crate::storage::key::deletions_key(partition)
            }
        }
    }
}

/// What a successful read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    pub value: Bytes,
    pub timestamp: Timestamp,
    /// When the value expires (Unix milliseconds).
    pub expires_at_ms: Option<i64>,
}

/// Limits of requests: sizes, and how far ahead of this node's clock a
/// client's timestamp may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_value_size: usize,
    pub max_clock_skew: SkewLimit,
}

fn invalid(message: String) -> CoordinatorError {
    CoordinatorError::InvalidArgument(message)
}

/// Largest key accepted, in bytes (64 KiB).
pub const MAX_KEY_SIZE: usize = 64 * 1024;

/// Checks a key: not empty, at most [`MAX_KEY_SIZE`] bytes.
pub fn validate_key(key: &[u8]) -> Result<(), CoordinatorError> {
    if key.is_empty() {
        return Err(invalid("key is empty".into()));
    }
    if key.len() > MAX_KEY_SIZE {
        return Err(invalid(format!(
            "key is {} bytes; the limit is {MAX_KEY_SIZE} bytes (64 KiB)",
            key.len()
        )));
    }
    Ok(())
}

/// Largest sort key accepted, in bytes (64 KiB, as a partition key).
pub const MAX_SORT_KEY_SIZE: usize = 64 * 1024;

/// Checks a sort key: at most [`MAX_SORT_KEY_SIZE`] bytes.
pub fn validate_sort_key(sort: &[u8]) -> Result<(), CoordinatorError> {
    if sort.len() > MAX_SORT_KEY_SIZE {
        return Err(invalid(format!(
            "sort key is {} bytes; the limit is {MAX_SORT_KEY_SIZE} bytes (64 KiB)",
            sort.len()
        )));
    }
    Ok(())
}

/// Checks a row key from a peer (see `storage::key`): a partition key
/// that [`validate_key`] accepts and a sort key of at most
/// [`MAX_SORT_KEY_SIZE`] bytes; its partition's token.
pub fn validate_row_key(row: &[u8]) -> Result<Token, CoordinatorError> {
    let Some(split) = crate::storage::key::split_row_key(row) else {
        return Err(invalid(format!(
            "{} bytes that are not a row key (partition key length, partition key, kind, sort key)",
            row.len()
        )));
    };
    validate_key(split.partition)?;
    validate_sort_key(split.sort)?;
    Ok(Token::of(split.partition))
}

impl ReadRequest {
    /// Checks the request before any replica is asked.
    pub fn validate(&self) -> Result<(), CoordinatorError> {
        validate_key(&self.key)?;
        validate_sort_key(&self.sort_key)?;
        if self.level == ConsistencyLevel::Any {
            return Err(invalid(
                "consistency level ANY is for writes only; reads need at least ONE".into(),
            ));
        }
        Ok(())
    }
}

impl WriteRequest {
    /// Checks the request before anything is written; `now` is this
    /// node's wall clock (microseconds), which a client's timestamp may lead
    /// by at most `max_clock_skew`.
    pub fn validate(&self, limits: &Limits, now: Timestamp) -> Result<(), CoordinatorError> {
        BatchRequest::from(self.clone()).validate(limits, now)
    }
}

/// Most operations in one partition batch.
pub const MAX_BATCH_OPS: usize = 100;

/// One operation of a [`BatchRequest`]: a put (`value: Some`) or delete
/// (`value: None`) of what `target` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOp {
    pub target: Target,
    pub value: Option<Bytes>,
    /// Milliseconds to live; `None` or 0 never expires.
    pub ttl_ms: Option<u64>,
}

impl BatchOp {
    /// A put of the row `sort`.
    pub fn put(sort: Bytes, value: Bytes, ttl_ms: Option<u64>) -> Self {
        Self {
            target: Target::Row(sort),
            value: Some(value),
            ttl_ms,
        }
    }

    /// A delete of what `target` names.
    pub fn delete(target: Target) -> Self {
        Self {
            target,
            value: None,
            ttl_ms: None,
        }
    }

    fn validate(&self, limits: &Limits) -> Result<(), CoordinatorError> {
        match &self.target {
            Target::Row(sort) => validate_sort_key(sort)?,
            Target::Rows { start, end } => {
                validate_sort_key(start)?;
                if let Some(end) = end {
                    validate_sort_key(end)?;
                    if end <= start {
                        return Err(invalid(
                            "a range of rows ends after it starts: [start, end) with end > start"
                                .into(),
                        ));
                    }
                }
            }
            Target::Partition => {}
        }
        if self.value.is_some() && !matches!(self.target, Target::Row(_)) {
            return Err(invalid(
                "only a row can be put; ranges and partitions are deleted".into(),
            ));
        }
        if let Some(value) = &self.value
            && value.len() > limits.max_value_size
        {
            return Err(invalid(format!(
                "value is {} bytes; the limit is max_value_size = {} bytes",
                value.len(),
                limits.max_value_size
            )));
        }
        if let Some(ttl) = self.ttl_ms
            && ttl > u64::from(MAX_TTL_SECONDS) * 1000
        {
            return Err(invalid(format!(
                "ttl is {} seconds; the limit is {MAX_TTL_SECONDS} (20 years)",
                ttl.div_ceil(1000)
            )));
        }
        if self.value.is_none() && self.ttl_ms.is_some_and(|t| t > 0) {
            return Err(invalid("a delete cannot carry a ttl".into()));
        }
        Ok(())
    }
}

/// A partition batch: puts and deletes of rows of the partition `key`,
/// written with one timestamp and applied on each replica in one atomic
/// write (Cassandra's single-partition batch). Its range and partition
/// deletes apply before its puts: they are stamped one microsecond
/// earlier, so a batch may clear a partition and refill it. A row is
/// named at most once.
#[derive(Debug, Clone)]
pub struct BatchRequest {
    /// The partition key.
    pub key: Bytes,
    pub ops: Vec<BatchOp>,
    pub level: ConsistencyLevel,
    /// Client-chosen timestamp; `None`: the coordinator's clock.
    pub timestamp: Option<Timestamp>,
    /// `None`: the node's write timeout.
    pub timeout: Option<Duration>,
    /// Records what the coordinator does, when the client asked.
    pub trace: Option<Arc<Trace>>,
}

impl From<WriteRequest> for BatchRequest {
    /// A single write as a batch of one operation.
    fn from(write: WriteRequest) -> Self {
        BatchRequest {
            key: write.key,
            ops: vec![BatchOp {
                target: write.target,
                value: write.value,
                ttl_ms: write.ttl_ms,
            }],
            level: write.level,
            timestamp: write.timestamp,
            timeout: write.timeout,
            trace: write.trace,
        }
    }
}

/// Bytes a batch of several operations may hold: its row keys (each
/// carries the partition key) and values, as replicas bound a batch.
pub const MAX_BATCH_BYTES: usize = crate::storage::batch::MAX_BATCH_BYTES;

impl BatchRequest {
    /// Checks the request before anything is written, as
    /// [`WriteRequest::validate`] does, and the batch's own bounds: at
    /// least one and at most [`MAX_BATCH_OPS`] operations, each row named
    /// once. Its bytes ([`MAX_BATCH_BYTES`], deletions included) are
    /// checked on the mutation it makes, before any replica is asked
    /// (`write::mutation`).
    pub fn validate(&self, limits: &Limits, now: Timestamp) -> Result<(), CoordinatorError> {
        validate_key(&self.key)?;
        if self.ops.is_empty() {
            return Err(invalid("a batch needs at least one operation".into()));
        }
        if self.ops.len() > MAX_BATCH_OPS {
            return Err(invalid(format!(
                "a batch has {} operations; the limit is {MAX_BATCH_OPS}",
                self.ops.len()
            )));
        }
        let mut rows = std::collections::HashSet::new();
        for op in &self.ops {
            op.validate(limits)?;
            if let Target::Row(sort) = &op.target
                && !rows.insert(sort)
            {
                return Err(invalid(format!(
                    "a batch names the row {:?} twice; name each row once",
                    String::from_utf8_lossy(sort)
                )));
            }
        }
        if let Some(ts) = self.timestamp {
            if ts < 0 {
                return Err(invalid(format!("timestamp {ts} is negative")));
            }
            if ts == 0 && self.has_rows() && self.has_deletions() {
                return Err(invalid(
                    "a batch that deletes and puts is stamped above 0 (its deletes go at timestamp - 1)".into(),
                ));
            }
            limits.max_clock_skew.check(ts, now).map_err(invalid)?;
        }
        Ok(())
    }

    /// Whether it puts or deletes single rows.
    pub fn has_rows(&self) -> bool {
        self.ops
            .iter()
            .any(|op| matches!(op.target, Target::Row(_)))
    }

    /// Whether it deletes ranges or the partition.
    pub fn has_deletions(&self) -> bool {
        self.ops
            .iter()
            .any(|op| !matches!(op.target, Target::Row(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &[u8], value: usize) -> WriteRequest {
        WriteRequest {
            target: Target::default(),
            key: Bytes::copy_from_slice(key),
            value: Some(Bytes::from(vec![0; value])),
            level: ConsistencyLevel::Quorum,
            ttl_ms: None,
            timestamp: None,
            timeout: None,
            trace: None,
        }
    }

    const NOW: Timestamp = 1_700_000_000_000_000;

    fn limits() -> Limits {
        Limits {
            max_value_size: 100,
            max_clock_skew: SkewLimit::from_millis(60_000),
        }
    }

    #[test]
    fn row_key_limits() {
        use crate::storage::key::{deletions_key, row_key};
        assert_eq!(
            validate_row_key(&row_key(b"p", b"s")).ok(),
            Some(Token::of(b"p"))
        );
        assert!(validate_row_key(&deletions_key(b"p")).is_ok());
        assert!(validate_row_key(&row_key(b"p", &vec![1; MAX_SORT_KEY_SIZE])).is_ok());
        let err = validate_row_key(&row_key(b"p", &vec![1; MAX_SORT_KEY_SIZE + 1]))
            .expect_err("sort key too long");
        assert!(err.to_string().contains("sort key is 65537 bytes"), "{err}");
        let err =
            validate_row_key(&row_key(&vec![1; MAX_KEY_SIZE + 1], b"")).expect_err("too long");
        assert!(err.to_string().contains("key is 65537 bytes"), "{err}");
        assert!(
            validate_row_key(&row_key(b"", b"s")).is_err(),
            "empty partition key"
        );
        let err = validate_row_key(b"plain").expect_err("not a row key");
        assert!(err.to_string().contains("not a row key"), "{err}");
    }

    #[test]
    fn key_limits() {
        assert!(validate_key(b"k").is_ok());
        assert!(validate_key(&vec![1; MAX_KEY_SIZE]).is_ok());
        let err = validate_key(&vec![1; MAX_KEY_SIZE + 1]).expect_err("too long");
        assert!(err.to_string().contains("65537 bytes"), "{err}");
        assert!(
            validate_key(b"")
                .expect_err("empty")
                .to_string()
                .contains("empty")
        );
    }

    #[test]
    fn value_limit_names_the_setting() {
        assert!(put(b"k", 100).validate(&limits(), NOW).is_ok());
        let err = put(b"k", 101)
            .validate(&limits(), NOW)
            .expect_err("too big");
        assert!(err.to_string().contains("max_value_size = 100"), "{err}");
    }

    #[test]
    fn ttl_and_timestamp_limits() {
        let mut req = put(b"k", 1);
        req.ttl_ms = Some(u64::from(MAX_TTL_SECONDS) * 1000 + 1);
        assert!(req.validate(&limits(), NOW).is_err());
        req.ttl_ms = Some(u64::from(MAX_TTL_SECONDS) * 1000);
        assert!(req.validate(&limits(), NOW).is_ok());
        req.ttl_ms = None;
        req.timestamp = Some(-1);
        assert!(req.validate(&limits(), NOW).is_err());
        req.timestamp = Some(NOW + 59_000_000);
        assert!(req.validate(&limits(), NOW).is_ok());
        req.timestamp = Some(i64::MAX);
        let err = req.validate(&limits(), NOW).expect_err("far future");
        assert!(
            err.to_string().contains("max_clock_skew_ms = 60000"),
            "{err}"
        );
    }

    #[test]
    fn any_is_for_writes_only() {
        let read = ReadRequest {
            sort_key: Bytes::new(),
            key: Bytes::from_static(b"k"),
            level: ConsistencyLevel::Any,
            timeout: None,
            trace: None,
        };
        assert!(
            read.validate()
                .expect_err("ANY read")
                .to_string()
                .contains("ANY")
        );
        let mut write = put(b"k", 1);
        write.level = ConsistencyLevel::Any;
        assert!(write.validate(&limits(), NOW).is_ok());
    }
}
