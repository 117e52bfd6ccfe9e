//! Synchronising one token range between this node and one other replica.
//!
//! 1. Bring this node's tree for the range up to date (only dirty leaves
//!    are rescanned) and compare it with the peer's, top down, asking only
//!    for the children of nodes that differ.
//! 2. For each differing leaf, get the peer's per-key digests and compare
//!    them with this node's: keys whose digests match are left alone.
//! 3. Fetch the peer's cells for keys that differ or that only the peer
//!    holds, and merge them here (LWW). Then send this node's cell for
//!    every key where the peer's version is not the winner (or it has
//!    none). Each differing key crosses the wire once per direction that
//!    needs it; tombstones travel like values.
//!
//! After a sync both replicas hold the LWW winner of every key in the
//! range, so their trees for it are equal.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::identity::NodeId;
use crate::peer::tree::{MerkleTree, descend_step};
use crate::peer::{LocalReplica, RepairTransport, ReplicaError};
use crate::ring::TokenRange;
use crate::storage::deletions::merge_entry;
use crate::storage::{BatchLimit, Cell, StorageError, digest};

/// What a sync moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    pub leaves_differing: u64,
    pub keys_received: u64,
    pub keys_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

impl SyncStats {
    pub fn add(&mut self, other: SyncStats) {
        self.leaves_differing += other.leaves_differing;
        self.keys_received += other.keys_received;
        self.keys_sent += other.keys_sent;
        self.bytes_received += other.bytes_received;
        self.bytes_sent += other.bytes_sent;
    }
}

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("peer {node}: {error}")]
    Peer { node: NodeId, error: ReplicaError },
    #[error("local store: {0}")]
    Storage(#[from] StorageError),
    /// A repair runs on this node and another waits for it.
    #[error(
        "a repair is running on this node and another is waiting for it; try again once they are done (`ringkv status` shows the last repair)"
    )]
    Busy,
}

fn bytes_of(key: &[u8], cell: &Cell) -> u64 {
    (key.len() + cell.encoded_len()) as u64
}

impl LocalReplica {
    async fn tree(&self, range: TokenRange) -> Result<MerkleTree, StorageError> {
        let cache = self.cache.clone();
        crate::storage::blocking(move || cache.refresh(range).map(|(tree, _)| tree)).await?
    }

    /// Every (key, cell) this node holds in `range`.
    async fn cells(&self, range: TokenRange) -> Result<BTreeMap<Bytes, Cell>, StorageError> {
        let cells = crate::peer::serve::cells(self.store.clone(), range).await?;
        Ok(cells.into_iter().collect())
    }

    /// Synchronises `range` with `peer`.
    pub async fn sync(
        &self,
        transport: &dyn RepairTransport,
        peer: NodeId,
        range: TokenRange,
    ) -> Result<SyncStats, SyncError> {
        let failed = |error| SyncError::Peer { node: peer, error };
        let tree = self.tree(range).await?;
        let mut stats = SyncStats::default();
        let mut asked = vec![1usize];
        let mut differing = Vec::new();
        while !asked.is_empty() {
            let indices: Vec<u32> = asked.iter().map(|&i| i as u32).collect();
            let theirs = transport
                .merkle_nodes(peer, range, tree.leaf_count() as u32, indices)
                .await
                .map_err(failed)?;
            let (next, leaves) = descend_step(&tree, &asked, &theirs)
                .map_err(|short| failed(ReplicaError::Failed(short.to_string())))?;
            differing.extend(leaves);
            asked = next;
        }
        stats.leaves_differing = differing.len() as u64;
        for leaf in differing {
            let leaf_range = tree.leaf_range(leaf);
            stats.add(self.sync_leaf(transport, peer, leaf_range).await?);
        }
        Ok(stats)
    }

    async fn sync_leaf(
        &self,
        transport: &dyn RepairTransport,
        peer: NodeId,
        range: TokenRange,
    ) -> Result<SyncStats, SyncError> {
        let failed = |error| SyncError::Peer { node: peer, error };
        let theirs: BTreeMap<Bytes, Bytes> = transport
            .leaf_digests(peer, range)
            .await
            .map_err(failed)?
            .into_iter()
            .collect();
        let mut ours = self.cells(range).await?;
        let mut stats = SyncStats::default();

        // Their versions of keys where they differ from ours.
        let wanted: Vec<Bytes> = theirs
            .iter()
            .filter(|(key, d)| ours.get(*key).map(|c| digest(Some(c))).as_ref() != Some(*d))
            .map(|(key, _)| key.clone())
            .collect();
        let mut their_cells: BTreeMap<Bytes, Cell> = BTreeMap::new();
        let limit = BatchLimit::default();
        let mut rest: &[Bytes] = &wanted;
        while !rest.is_empty() {
            // Asked in batches the peer accepts (count and key bytes); it
            // answers a prefix of each, bounded by the bytes of the cells.
            let mut take = 0;
            let mut bytes = 0;
            while take < rest.len() && limit.admits(take, bytes, rest[take].len()) {
                bytes += rest[take].len();
                take += 1;
            }
            let ask = rest[..take].to_vec();
            let (cells, answered) = transport.read_batch(peer, ask).await.map_err(failed)?;
            if answered == 0 {
                return Err(failed(ReplicaError::Failed(
                    "peer answered none of a batch read".into(),
                )));
            }
            rest = &rest[answered.min(rest.len())..];
            for (key, cell) in cells {
                stats.keys_received += 1;
                stats.bytes_received += bytes_of(&key, &cell);
                their_cells.insert(key, cell);
            }
        }
        for (key, cell) in &their_cells {
            // What our store holds once theirs reached it: the LWW winner
            // of a row, the union of a partition's deletions.
            let merged = match ours.get(key) {
                Some(held) => merge_entry(key, held.clone(), cell.clone()),
                None => cell.clone(),
            };
            if ours.get(key) != Some(&merged) {
                let Some(token) = crate::storage::key::partition_token(key) else {
                    continue;
                };
                self.store.apply(token, key, cell).await?;
                ours.insert(key.clone(), merged);
            }
        }

        // Our winners where their version is not the winner.
        let outgoing: Vec<(Bytes, Cell)> = ours
            .iter()
            .filter(|(key, cell)| match theirs.get(*key) {
                None => true,
                Some(their_digest) => *their_digest != digest(Some(cell)),
            })
            .map(|(key, cell)| (key.clone(), cell.clone()))
            .collect();
        for batch in limit.split(outgoing, |(k, c)| bytes_of(k, c) as usize) {
            let keys = batch.len() as u64;
            let bytes = batch.iter().map(|(k, c)| bytes_of(k, c)).sum::<u64>();
            transport.write_batch(peer, batch).await.map_err(failed)?;
            stats.keys_sent += keys;
            stats.bytes_sent += bytes;
        }
        Ok(stats)
    }
}
