//! The replica side of repair and hint replay: what a node answers when a
//! peer compares or streams. The gRPC service calls these; so do the
//! in-memory peers of the tests.

use bytes::Bytes;

use super::cache::TreeCache;
use super::tree::Hash;
use crate::ring::TokenRange;
use crate::storage::{BatchLimit, Cell, CellView, LocalStore, StorageError, digest};

/// Hashes of nodes of this node's tree for `range`; `leaves` must match
/// the cache's leaf count.
pub async fn merkle_nodes(
    cache: std::sync::Arc<TreeCache>,
    range: TokenRange,
    leaves: usize,
    nodes: Vec<usize>,
) -> Result<Vec<Hash>, StorageError> {
    merkle_nodes_of(cache, range, leaves, nodes, true).await
}

/// As [`merkle_nodes`]; `cached`: keep the tree (a ring range of this
/// node) or build it for this answer only (any other range).
pub async fn merkle_nodes_of(
    cache: std::sync::Arc<TreeCache>,
    range: TokenRange,
    leaves: usize,
    nodes: Vec<usize>,
    cached: bool,
) -> Result<Vec<Hash>, StorageError> {
    crate::storage::blocking(move || {
        let tree = if cached {
            cache.refresh(range)?.0
        } else {
            cache.build_uncached(range)?
        };
        let expected = super::tree::MerkleTree::leaf_count_for(range, leaves);
        if tree.leaf_count() != expected {
            return Err(StorageError::Task(format!(
                "merkle tree shape mismatch: asked for {expected} leaves, this node uses {}",
                tree.leaf_count()
            )));
        }
        Ok(nodes
            .iter()
            .map(|&i| tree.node(i).unwrap_or_default())
            .collect())
    })
    .await?
}

/// Every (key, cell) this node holds in `range`, in key order, read on a
/// blocking thread.
pub async fn cells(
    store: LocalStore,
    range: TokenRange,
) -> Result<Vec<(Bytes, Cell)>, StorageError> {
    crate::storage::blocking(move || {
        let mut out = Vec::new();
        let mut bad = None;
        store
            .engine()
            .scan(range, &mut |_, key, cell| match CellView::decode(cell) {
                Ok(view) => out.push((Bytes::copy_from_slice(key), view.to_owned_cell())),
                Err(error) => bad = Some(error),
            })?;
        match bad {
            Some(error) => Err(StorageError::Corrupt(error)),
            None => Ok(out),
        }
    })
    .await?
}

/// (key, digest) of every key in `range`.
pub async fn leaf_digests(
    store: LocalStore,
    range: TokenRange,
) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
    let cells = cells(store, range).await?;
    Ok(cells
        .into_iter()
        .map(|(key, cell)| (key, digest(Some(&cell))))
        .collect())
}

/// The cells this node holds for a prefix of `keys`, and the length of
/// that prefix: the answer holds at most `limit` (the first cell always).
pub fn read_batch(
    store: &LocalStore,
    keys: &[Bytes],
    limit: BatchLimit,
) -> Result<(Vec<(Bytes, Cell)>, usize), StorageError> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for (looked_up, key) in keys.iter().enumerate() {
        if looked_up >= limit.entries {
            return Ok((out, looked_up));
        }
        let Some(token) = crate::storage::key::partition_token(key) else {
            continue;
        };
        if let Some(cell) = store.read(token, key)? {
            let len = key.len() + cell.encoded_len();
            if !limit.admits(out.len(), bytes, len) {
                return Ok((out, looked_up));
            }
            bytes += len;
            out.push((key.clone(), cell));
        }
    }
    Ok((out, keys.len()))
}

/// One page of this node's cells of `range` after the key `after`
/// (exclusive), at most one default batch, read on a blocking thread.
pub async fn stream_page(
    store: LocalStore,
    range: TokenRange,
    after: Option<Bytes>,
) -> Result<(Vec<(Bytes, Cell)>, bool), StorageError> {
    crate::storage::blocking(move || {
        let page = store
            .engine()
            .scan_page(range, after.as_deref(), BatchLimit::default())?;
        let mut out = Vec::with_capacity(page.entries.len());
        for (key, cell) in page.entries {
            let cell = CellView::decode(&cell)?.to_owned_cell();
            out.push((Bytes::from(key), cell));
        }
        Ok((out, page.more))
    })
    .await?
}

/// Merges cells into this node's store (LWW), as durable as any write,
/// with one fsync wait for the whole batch.
pub async fn write_batch(
    store: &LocalStore,
    entries: &[(Bytes, Cell)],
) -> Result<(), StorageError> {
    store.apply_all(entries).await
}
