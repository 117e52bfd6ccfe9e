//! Batches of puts and deletes of rows.
//!
//! The operations of one partition go to the server as one partition
//! batch: written with one timestamp and applied on each replica in one
//! atomic write, so a reader sees all of them or none. A batch naming
//! several partitions is one such batch per partition, sent side by side:
//! each partition is atomic on its own, not all together (Cassandra's
//! UNLOGGED batch), and each has its own outcome.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use ringkv_proto::v1 as pb;

use crate::client::{Client, ttl_fields};
use crate::options::WriteOptions;
use crate::{Error, Result};

/// Most partitions a batch writes at once.
const PARTITIONS_IN_FLIGHT: usize = 16;

/// Puts and deletes of rows, in order, grouped by partition when sent.
/// A partition's operations apply together; its range and partition
/// deletes apply before its puts, so a batch may clear a partition and
/// fill it again. The server takes at most 100 operations and 1 MiB of a
/// partition in one batch, and each row once.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    partitions: Vec<(Bytes, Vec<pb::BatchOperation>)>,
    error: Option<String>,
}

/// The outcome of one partition of a [`Batch`].
#[derive(Debug)]
pub struct PartitionWrite {
    /// The partition key.
    pub key: Bytes,
    /// How many operations of the batch were in it.
    pub operations: usize,
    /// The timestamp its puts and row deletes were written with, or why
    /// it failed (then none of its operations, or all of them, may have
    /// been applied on some replicas: a failed write's usual ambiguity).
    pub result: Result<i64>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, key: Bytes, operation: pb::batch_operation::Operation) -> &mut Self {
        let operation = pb::BatchOperation {
            operation: Some(operation),
        };
        match self.partitions.iter_mut().find(|(k, _)| *k == key) {
            Some((_, ops)) => ops.push(operation),
            None => self.partitions.push((key, vec![operation])),
        }
        self
    }

    /// Puts the row `sort_key` (empty: the plain key) of the partition
    /// `key`.
    pub fn put(
        &mut self,
        key: impl Into<Bytes>,
        sort_key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> &mut Self {
        self.put_expiring(key, sort_key, value, None)
    }

    /// Puts a row that expires `ttl` after the write (to the millisecond,
    /// at least one); `None` never expires.
    pub fn put_expiring(
        &mut self,
        key: impl Into<Bytes>,
        sort_key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> &mut Self {
        let (ttl_seconds, ttl_ms) = match ttl_fields(ttl) {
            Ok(ttl) => ttl,
            Err(error) => {
                self.error.get_or_insert(error.to_string());
                (0, 0)
            }
        };
        let put = pb::RowPut {
            sort_key: sort_key.into(),
            value: value.into(),
            ttl_seconds,
            ttl_ms,
        };
        self.push(key.into(), pb::batch_operation::Operation::Put(put))
    }

    /// Deletes the row `sort_key` of the partition `key`.
    pub fn delete(&mut self, key: impl Into<Bytes>, sort_key: impl Into<Bytes>) -> &mut Self {
        let delete = pb::RowDelete {
            sort_key: sort_key.into(),
        };
        self.push(key.into(), pb::batch_operation::Operation::Delete(delete))
    }

    /// Deletes the rows of the partition `key` whose sort keys lie in
    /// `[start, end)` (`end`: `None` for the end of the partition).
    pub fn delete_rows(
        &mut self,
        key: impl Into<Bytes>,
        start: impl Into<Bytes>,
        end: Option<Bytes>,
    ) -> &mut Self {
        let rows = pb::RowRange {
            start: start.into(),
            end,
        };
        self.push(key.into(), pb::batch_operation::Operation::DeleteRows(rows))
    }

    /// Deletes every row of the partition `key` written before the batch.
    pub fn delete_partition(&mut self, key: impl Into<Bytes>) -> &mut Self {
        self.push(
            key.into(),
            pb::batch_operation::Operation::DeletePartition(pb::PartitionDelete {}),
        )
    }

    /// Operations in it.
    pub fn len(&self) -> usize {
        self.partitions.iter().map(|(_, ops)| ops.len()).sum()
    }

    /// Whether it holds no operation.
    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// Partitions it writes.
    pub fn partitions(&self) -> usize {
        self.partitions.len()
    }
}

impl Client {
    /// Writes `batch` at the default level: one atomic partition batch per
    /// partition it names (see [`Batch`]), their outcomes in the order the
    /// partitions were first named.
    pub async fn batch(&self, batch: &Batch) -> Result<Vec<PartitionWrite>> {
        self.batch_with(batch, &WriteOptions::default()).await
    }

    /// Writes `batch` with options (`ttl` is set per put, not here). Fails
    /// as a whole only for a batch that is invalid before anything is
    /// sent; each partition's own outcome is in its [`PartitionWrite`].
    pub async fn batch_with(
        &self,
        batch: &Batch,
        options: &WriteOptions,
    ) -> Result<Vec<PartitionWrite>> {
        if let Some(error) = &batch.error {
            return Err(Error::InvalidArgument(error.clone()));
        }
        if options.ttl.is_some() {
            return Err(Error::InvalidArgument(
                "a batch's puts carry their own ttl (Batch::put_expiring)".into(),
            ));
        }
        if batch.is_empty() {
            return Err(Error::InvalidArgument(
                "a batch needs at least one operation".into(),
            ));
        }
        // Each write owns what it needs: a stream of futures borrowing
        // from here would not be `Send` for callers that spawn this.
        let writes = batch.partitions.iter().cloned().map(|(key, ops)| {
            let (client, options) = (self.clone(), options.clone());
            async move {
                PartitionWrite {
                    key: key.clone(),
                    operations: ops.len(),
                    result: client.partition_batch(key, ops, &options).await,
                }
            }
        });
        // In order, at most a few partitions at a time.
        Ok(futures::stream::iter(writes)
            .buffered(PARTITIONS_IN_FLIGHT)
            .collect()
            .await)
    }

    async fn partition_batch(
        &self,
        key: Bytes,
        operations: Vec<pb::BatchOperation>,
        options: &WriteOptions,
    ) -> Result<i64> {
        let timeout = options.timeout.unwrap_or(self.config().request_timeout);
        let timestamp = self.write_timestamp(options);
        let message = pb::BatchRequest {
            key: key.clone(),
            operations,
            consistency: options
                .consistency
                .unwrap_or(self.config().consistency)
                .to_proto(),
            timestamp_micros: timestamp,
            timeout_ms: Self::timeout_ms(timeout),
            trace: options.trace.is_some(),
        };
        let (idempotent, trace) = (timestamp.is_some(), options.trace.as_ref());
        let response = self
            .call(
                &key,
                message,
                (timeout, idempotent),
                trace,
                |mut kv, r| async move { kv.batch(r).await },
            )
            .await?;
        Ok(response.timestamp_micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a batch's futures borrowed from the batch, so a caller
    /// that spawned one (ringkv-bench's workers) did not compile.
    #[test]
    fn a_batch_can_be_spawned() {
        fn send<T: Send + 'static>(_: T) {}
        let _spawnable = |client: Client, batch: Batch| {
            send(async move { client.batch(&batch).await.map(|w| w.len()) })
        };
    }

    #[test]
    fn operations_group_by_partition_in_the_order_first_named() {
        let mut batch = Batch::new();
        batch
            .put("b", "1", "x")
            .delete("a", "2")
            .delete_partition("b")
            .put_expiring("c", "3", "y", Some(std::time::Duration::from_millis(1500)));
        assert_eq!(batch.len(), 4);
        assert_eq!(batch.partitions(), 3);
        let keys: Vec<&[u8]> = batch.partitions.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, [&b"b"[..], b"a", b"c"]);
        let Some(pb::batch_operation::Operation::Put(put)) = &batch.partitions[2].1[0].operation
        else {
            panic!("a put");
        };
        assert_eq!(
            (put.ttl_seconds, put.ttl_ms),
            (2, 1500),
            "seconds rounded up"
        );
        let mut bad = Batch::new();
        bad.put_expiring("a", "b", "c", Some(std::time::Duration::ZERO));
        assert!(bad.error.is_some());
    }
}
