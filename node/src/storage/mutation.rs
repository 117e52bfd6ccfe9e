//! A mutation: the cells of one partition that are written together.
//!
//! A row put or delete is a mutation of one cell; a range or partition
//! delete one of the partition's deletions entry; a partition batch one of
//! several rows and at most one deletions entry. Replicas apply a mutation
//! in one atomic write ([`Storage::write_all`](super::Storage::write_all)),
//! and everything that carries a write to a replica later (hints, the
//! coordinator's sends) carries the whole mutation, so no replica ever
//! holds part of one.

use std::sync::Arc;

use bytes::Bytes;

use super::cell::Cell;
use crate::ring::Token;

/// How a replica applies a mutation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteMode {
    /// Say whether a row it holds is newer than the write's (a
    /// coordinator-stamped write asks, to write again above it).
    pub report_newer: bool,
    /// A repair of what the replica missed (read repair): applied whatever
    /// the partition-size guardrail says, as hints and streams are.
    pub repair: bool,
}

impl WriteMode {
    /// A client's write, reporting newer rows or not.
    pub fn client(report_newer: bool) -> Self {
        Self {
            report_newer,
            repair: false,
        }
    }

    /// A read repair.
    pub fn repair() -> Self {
        Self {
            report_newer: false,
            repair: true,
        }
    }
}

/// Cells of one partition, applied together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// The partition's token.
    pub token: Token,
    entries: Arc<[(Bytes, Cell)]>,
}

impl Mutation {
    /// One cell under the row key `key`.
    pub fn one(token: Token, key: Bytes, cell: Cell) -> Self {
        Self {
            token,
            entries: Arc::from([(key, cell)]),
        }
    }

    /// Several cells, each under a row key of the partition whose token
    /// is `token` (a replica refuses a mutation of several partitions).
    pub fn new(token: Token, entries: Vec<(Bytes, Cell)>) -> Self {
        Self {
            token,
            entries: Arc::from(entries),
        }
    }

    /// (row key, cell), in the order written.
    pub fn entries(&self) -> &[(Bytes, Cell)] {
        &self.entries
    }

    /// The entries as [`Storage::write_all`](super::Storage::write_all)
    /// takes them.
    pub fn borrowed(&self) -> Vec<(&[u8], &Cell)> {
        borrowed(&self.entries)
    }

    /// Bytes of its keys and encoded cells.
    pub fn encoded_len(&self) -> usize {
        self.entries
            .iter()
            .map(|(key, cell)| key.len() + cell.encoded_len())
            .sum()
    }
}

/// `entries` as [`Storage::write_all`](super::Storage::write_all) takes
/// them.
pub fn borrowed<K: AsRef<[u8]>>(entries: &[(K, Cell)]) -> Vec<(&[u8], &Cell)> {
    entries
        .iter()
        .map(|(key, cell)| (key.as_ref(), cell))
        .collect()
}
