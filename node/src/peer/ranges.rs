//! What anti-entropy and hint replay ask of another replica. Implemented
//! over gRPC by the node, and over in-memory peers in tests.

use bytes::Bytes;
use futures::future::BoxFuture;

use super::replica::ReplicaError;
use super::tree::Hash;
use crate::identity::NodeId;
use crate::ring::TokenRange;
use crate::storage::Cell;

/// A batch read's answer: the cells found for a prefix of the keys asked
/// (only those the peer holds), and the length of that prefix.
pub type BatchRead = (Vec<(Bytes, Cell)>, usize);

/// A page of a range stream: cells in token order, and whether the range
/// holds more after the last.
pub type StreamPage = (Vec<(Bytes, Cell)>, bool);

/// Requests to a peer replica.
pub trait RepairTransport: Send + Sync + 'static {
    /// Hashes of nodes of the peer's tree for `range` with `leaves` leaves.
    fn merkle_nodes(
        &self,
        to: NodeId,
        range: TokenRange,
        leaves: u32,
        nodes: Vec<u32>,
    ) -> BoxFuture<'static, Result<Vec<Hash>, ReplicaError>>;

    /// The peer's digest of every key in `range`.
    fn leaf_digests(
        &self,
        to: NodeId,
        range: TokenRange,
    ) -> BoxFuture<'static, Result<Vec<(Bytes, Bytes)>, ReplicaError>>;

    /// The peer's cells for a prefix of `keys` (only those it holds), and
    /// how long that prefix is: the peer stops once its answer reaches
    /// `MAX_BATCH_BYTES`, and the caller asks again for the rest.
    fn read_batch(
        &self,
        to: NodeId,
        keys: Vec<Bytes>,
    ) -> BoxFuture<'static, Result<BatchRead, ReplicaError>>;

    /// The peer's cells of `range` after key `after` (exclusive; `None`:
    /// from the start), one bounded page.
    fn stream_range(
        &self,
        to: NodeId,
        range: TokenRange,
        after: Option<Bytes>,
    ) -> BoxFuture<'static, Result<StreamPage, ReplicaError>>;

    /// Merges cells into the peer's store.
    fn write_batch(
        &self,
        to: NodeId,
        entries: Vec<(Bytes, Cell)>,
    ) -> BoxFuture<'static, Result<(), ReplicaError>>;
}
