//! The partition-size guardrail, as Cassandra's large-partition warning:
//! a partition past `partition_size_warn_mb` is counted and logged, and
//! with `partition_size_max_mb` set, a write that puts rows into a
//! partition past it is refused (deletes are not: they shrink it).
//!
//! A partition's size is the engine's estimate
//! ([`Storage::partition_size`]): for RocksDB, what its table files hold
//! of the partition's key range (the memtables' share is not counted; it
//! is at most `memtable_mb`). Only client writes are checked, on the
//! replica: hints, repair and streaming carry what was already accepted.
//! Against the hard limit every write that puts a row is measured (an
//! index lookup in each table file holding the partition); for the warning
//! alone, one write in [`WARN_SAMPLE`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::Storage;
use super::error::{Result, StorageError};
use crate::metrics::{LARGE_PARTITION_WRITES, PARTITION_WRITES_REFUSED};
use crate::ring::Token;

/// One write in this many is measured for the warning alone.
pub const WARN_SAMPLE: u64 = 64;
/// How often a large partition is logged, at most (one line for all).
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The limits, and what the guard remembers between writes.
#[derive(Debug)]
pub struct PartitionGuard {
    /// Bytes past which a partition is large (0: never).
    warn_bytes: u64,
    /// Bytes past which row writes are refused (0: never).
    max_bytes: u64,
    writes: AtomicU64,
    logged: Mutex<Option<Instant>>,
}

impl PartitionGuard {
    pub fn new(warn_bytes: u64, max_bytes: u64) -> Self {
        Self {
            warn_bytes,
            max_bytes,
            writes: AtomicU64::new(0),
            logged: Mutex::new(None),
        }
    }

    /// Checks a write that puts rows into `partition` (token `token`):
    /// refused past the hard limit; counted and logged past the warning.
    pub fn check(&self, engine: &dyn Storage, token: Token, partition: &[u8]) -> Result<()> {
        let sampled = self
            .writes
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(WARN_SAMPLE);
        let warn = self.warn_bytes > 0 && sampled;
        if self.max_bytes == 0 && !warn {
            return Ok(());
        }
        let size = engine.partition_size(token, partition)?;
        let name = || {
            let mut name = String::from_utf8_lossy(partition).into_owned();
            if name.len() > 100 {
                let mut end = 100;
                while !name.is_char_boundary(end) {
                    end -= 1;
                }
                name.truncate(end);
                name.push('…');
            }
            name
        };
        if self.max_bytes > 0 && size > self.max_bytes {
            metrics::counter!(PARTITION_WRITES_REFUSED).increment(1);
            return Err(StorageError::Refused(format!(
                "partition {:?} holds about {} MiB, over partition_size_max_mb = {} MiB; delete rows of it, or spread its rows over more partitions",
                name(),
                size >> 20,
                self.max_bytes >> 20
            )));
        }
        if warn && size > self.warn_bytes {
            metrics::counter!(LARGE_PARTITION_WRITES).increment(1);
            let due = self.logged.lock().is_ok_and(|mut last| {
                let due = last.is_none_or(|at| at.elapsed() >= LOG_INTERVAL);
                if due {
                    *last = Some(Instant::now());
                }
                due
            });
            if due {
                tracing::warn!(
                    partition = %name(),
                    mib = size >> 20,
                    warn_mb = self.warn_bytes >> 20,
                    "writing to a large partition (past partition_size_warn_mb): its replicas' reads, repairs and streams of it grow with it"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Cell, MemoryStorage, key};
    use bytes::Bytes;

    fn fill(engine: &MemoryStorage, partition: &[u8], rows: usize) {
        for i in 0..rows {
            let row = key::row_key(partition, format!("r{i:04}").as_bytes());
            let cell = Cell::live(1, Bytes::from(vec![0u8; 1000]), None);
            engine
                .write(Token::of(partition), &row, &cell, false)
                .expect("write");
        }
    }

    #[test]
    fn past_the_hard_limit_row_writes_are_refused_naming_it() {
        let engine = MemoryStorage::default();
        fill(&engine, b"big", 50);
        fill(&engine, b"small", 5);
        let guard = PartitionGuard::new(0, 20_000);
        let refused = guard
            .check(&engine, Token::of(b"big"), b"big")
            .expect_err("over the limit");
        assert!(
            refused.to_string().contains("partition_size_max_mb"),
            "{refused}"
        );
        assert!(matches!(refused, StorageError::Refused(_)));
        assert!(guard.check(&engine, Token::of(b"small"), b"small").is_ok());
        assert!(
            PartitionGuard::new(0, 0)
                .check(&engine, Token::of(b"big"), b"big")
                .is_ok(),
            "no limit set"
        );
    }

    #[test]
    fn the_warning_only_counts() {
        let engine = MemoryStorage::default();
        fill(&engine, b"big", 50);
        let guard = PartitionGuard::new(1_000, 0);
        for _ in 0..WARN_SAMPLE * 2 {
            assert!(guard.check(&engine, Token::of(b"big"), b"big").is_ok());
        }
    }
}
