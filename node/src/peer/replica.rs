//! The coordinator's view of "send this to that replica".
//!
//! The read and write paths talk to replicas only through
//! [`ReplicaTransport`], so they run the same against real nodes (gRPC, or
//! the local store when the replica is this node) and against the
//! in-memory cluster of the unit tests, where replicas can be cut off or
//! slowed down.

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::clock::Timestamp;
use crate::identity::NodeId;
use crate::ring::Token;
use crate::storage::{Cell, Mutation, RowsPage, RowsQuery, WriteMode};

/// A 16-byte digest of a replica's cell (empty when it holds nothing).
pub type Digest = Bytes;

/// A replica's answer to a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadReply {
    /// The stored cell (tombstones and expired values included).
    Data(Option<Cell>),
    /// Only its digest.
    Digest(Digest),
}

impl ReadReply {
    /// What a replica holding `cell` answers: the cell, or its digest.
    pub fn answer(cell: Option<Cell>, digest_only: bool) -> ReadReply {
        if digest_only {
            ReadReply::Digest(crate::storage::digest(cell.as_ref()))
        } else {
            ReadReply::Data(cell)
        }
    }
}

/// Why a replica did not acknowledge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// Could not be reached (connection refused, no address known).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// Did not answer in time.
    #[error("did not answer in time")]
    Timeout,
    /// Answered with an error (its disk is full, it is shutting down...).
    #[error("failed: {0}")]
    Failed(String),
    /// Refused the request for good: it breaks a bound the replica will
    /// not lift (an invalid request, a partition's deletions past their
    /// bound). Neither hinted nor retried.
    #[error("refused: {0}")]
    Refused(String),
}

impl From<crate::storage::StorageError> for ReplicaError {
    /// A local store's failure as a replica's.
    fn from(error: crate::storage::StorageError) -> Self {
        match error {
            crate::storage::StorageError::Refused(why) => ReplicaError::Refused(why),
            other => ReplicaError::Failed(other.to_string()),
        }
    }
}

/// The kind of a [`ReplicaError`], as the `error` label of the replica
/// metrics.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumCount, strum::EnumIter, strum::IntoStaticStr,
)]
#[strum(serialize_all = "lowercase")]
pub enum ReplicaErrorKind {
    Unreachable,
    Timeout,
    Failed,
    Refused,
}

impl ReplicaErrorKind {
    /// The label value.
    pub fn label(self) -> &'static str {
        self.into()
    }
}

impl ReplicaError {
    /// Its kind.
    pub fn kind(&self) -> ReplicaErrorKind {
        match self {
            ReplicaError::Unreachable(_) => ReplicaErrorKind::Unreachable,
            ReplicaError::Timeout => ReplicaErrorKind::Timeout,
            ReplicaError::Failed(_) => ReplicaErrorKind::Failed,
            ReplicaError::Refused(_) => ReplicaErrorKind::Refused,
        }
    }
}

/// A replica's acknowledgement of a write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteAck {
    /// When asked (`report_newer`): the newest timestamp of a cell the
    /// replica already held for a row of the write that the write does
    /// not supersede.
    pub newer: Option<Timestamp>,
}

/// Requests to replicas. Futures are `'static` so that writes can finish in
/// the background after the coordinator has answered.
pub trait ReplicaTransport: Send + Sync + 'static {
    /// Applies `mutation` to `to`'s store, atomically, as `mode` says
    /// (with `report_newer`, the replica also says whether it held a row
    /// the write loses to).
    fn write_reporting(
        &self,
        to: NodeId,
        mutation: Mutation,
        mode: WriteMode,
    ) -> BoxFuture<'static, Result<WriteAck, ReplicaError>>;

    /// Merges `cell` into `to`'s store: a read repair.
    fn write(
        &self,
        to: NodeId,
        token: Token,
        key: Bytes,
        cell: Cell,
    ) -> BoxFuture<'static, Result<(), ReplicaError>> {
        let ack = self.write_reporting(to, Mutation::one(token, key, cell), WriteMode::repair());
        Box::pin(async move { ack.await.map(drop) })
    }

    /// Reads `key` from `to`, the cell or only its digest.
    fn read(
        &self,
        to: NodeId,
        token: Token,
        key: Bytes,
        digest_only: bool,
    ) -> BoxFuture<'static, Result<ReadReply, ReplicaError>>;

    /// A page of a partition's rows from `to` (see `Storage::query`).
    fn query(
        &self,
        to: NodeId,
        token: Token,
        query: RowsQuery,
    ) -> BoxFuture<'static, Result<RowsPage, ReplicaError>>;
}
