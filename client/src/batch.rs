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

use crate::client::{Client, ttl_seconds};
use crate::options::WriteOptions;
use crate::trace::capture;
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

    /// Puts a row that expires `ttl` after the write (whole seconds, at
    /// least one); `None` never expires.
    pub fn put_expiring(
        &mut self,
        key: impl Into<Bytes>,
        sort_key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> &mut Self {
        let ttl_seconds = match ttl_seconds(ttl) {
            Ok(ttl) => ttl,
            Err(error) => {
                self.error.get_or_insert(error.to_string());
                0
            }
        };
        let put = pb::RowPut {
            sort_key: sort_key.into(),
            value: value.into(),
            ttl_seconds,
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
        let writes = batch.partitions.iter().map(|(key, ops)| async move {
            PartitionWrite {
                key: key.clone(),
                operations: ops.len(),
                result: self
                    .partition_batch(key.clone(), ops.clone(), options)
                    .await,
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
        let collector = options.trace.as_ref();
        let response = self
            .execute(Some(&key), timestamp.is_some(), |mut kv| {
                let request = self.request(message.clone(), timeout);
                async move {
                    let outcome = kv.batch(request).await;
                    capture(collector, &outcome);
                    outcome
                }
            })
            .await?;
        Ok(response.into_inner().timestamp_micros)
    }
}
