//! Cached Merkle trees, rehashed leaf by leaf as data changes.
//!
//! One tree per token range this node is asked about (its own replicated
//! ranges, or a range a peer compares). [`TreeCache::refresh`] rehashes only
//! the leaves whose `DirtyMap` version moved since they were hashed, each
//! with one RocksDB range scan, so keeping a tree current costs in
//! proportion to what was written, not to how much is stored.
//!
//! The cache holds at most [`MAX_CACHED_TREES`] trees (about 12 KiB each);
//! past that the least recently used one is dropped (and rebuilt by one
//! range scan if it is asked for again), so peers comparing many ranges
//! cannot grow it without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::tree::{Hash, LeafHasher, MerkleTree};
use crate::ring::TokenRange;
use crate::storage::{DirtyMap, Storage, StorageError};

/// Past one dirty leaf in this many, a refresh scans the whole range once.
const WHOLE_RANGE_SCAN_RATIO: usize = 8;
/// Most trees kept: far more than the ranges a node holds (`num_tokens` ×
/// replication factor, 48 by default, twice that during a change).
pub const MAX_CACHED_TREES: usize = 1024;

/// A tree and the versions its leaves were hashed at.
struct Cached {
    tree: MerkleTree,
    /// `None`: never hashed.
    hashed_at: Vec<Option<u64>>,
}

/// Merkle trees by range.
pub struct TreeCache {
    storage: Arc<dyn Storage>,
    dirty: Arc<DirtyMap>,
    leaves_per_range: usize,
    trees: Mutex<Trees>,
}

/// The cached trees, each with the tick of its last use.
#[derive(Default)]
struct Trees {
    by_range: HashMap<TokenRange, (Arc<Mutex<Cached>>, u64)>,
    tick: u64,
}

/// What a refresh did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RefreshStats {
    pub leaves_rehashed: usize,
    pub keys_scanned: usize,
}

fn poisoned<T>(_: T) -> StorageError {
    StorageError::Task("merkle tree cache lock poisoned".into())
}

impl TreeCache {
    pub fn new(storage: Arc<dyn Storage>, dirty: Arc<DirtyMap>, leaves_per_range: usize) -> Self {
        Self {
            storage,
            dirty,
            leaves_per_range,
            trees: Mutex::new(Trees::default()),
        }
    }

    pub fn dirty(&self) -> &Arc<DirtyMap> {
        &self.dirty
    }

    fn entry(&self, range: TokenRange) -> Result<Arc<Mutex<Cached>>, StorageError> {
        let mut trees = self.trees.lock().map_err(poisoned)?;
        let leaves = self.leaves_per_range;
        trees.tick += 1;
        let tick = trees.tick;
        if !trees.by_range.contains_key(&range) && trees.by_range.len() >= MAX_CACHED_TREES {
            let oldest = trees
                .by_range
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(range, _)| *range);
            if let Some(oldest) = oldest {
                trees.by_range.remove(&oldest);
            }
        }
        let (tree, used) = trees.by_range.entry(range).or_insert_with(|| {
            let tree = MerkleTree::new(range, leaves);
            let hashed_at = vec![None; tree.leaf_count()];
            (Arc::new(Mutex::new(Cached { tree, hashed_at })), tick)
        });
        *used = tick;
        Ok(tree.clone())
    }

    /// How many trees are cached.
    pub fn cached_trees(&self) -> usize {
        self.trees.lock().map_or(0, |trees| trees.by_range.len())
    }

    /// The tree of `range` built afresh, without keeping it: for ranges
    /// that are not a ring range of this node (a peer comparing a part of
    /// one), which must not push the node's own trees out of the cache.
    /// Blocking (one range scan).
    pub fn build_uncached(&self, range: TokenRange) -> Result<MerkleTree, StorageError> {
        let mut tree = MerkleTree::new(range, self.leaves_per_range);
        let mut hashers: Vec<LeafHasher> = (0..tree.leaf_count())
            .map(|_| LeafHasher::default())
            .collect();
        self.storage.scan(range, &mut |token, key, cell| {
            if let Some(hasher) = tree.leaf_of(token).and_then(|leaf| hashers.get_mut(leaf)) {
                hasher.add(key, cell);
            }
        })?;
        for (leaf, hasher) in hashers.iter().enumerate() {
            tree.set_leaf(leaf, hasher.finish());
        }
        Ok(tree)
    }

    /// Brings the tree of `range` up to date and returns a copy of it.
    /// Blocking (range scans): call from a blocking thread.
    ///
    /// A few dirty leaves are rescanned one by one; when many are dirty (a
    /// tree built for the first time, after a restart or a bulk load) one
    /// scan of the whole range feeds them all, which is far cheaper than a
    /// RocksDB iterator per leaf.
    pub fn refresh(&self, range: TokenRange) -> Result<(MerkleTree, RefreshStats), StorageError> {
        let entry = self.entry(range)?;
        let mut cached = entry.lock().map_err(poisoned)?;
        let leaves = cached.tree.leaf_count();
        // Versions are read before scanning: a write racing the scan leaves
        // its leaf dirty for the next refresh.
        let dirty: Vec<(usize, u64)> = (0..leaves)
            .filter_map(|leaf| {
                let version = self.dirty.version(cached.tree.leaf_range(leaf));
                (cached.hashed_at[leaf] != Some(version)).then_some((leaf, version))
            })
            .collect();
        let mut stats = RefreshStats::default();
        let mut hashers: Vec<Option<LeafHasher>> = (0..leaves).map(|_| None).collect();
        for (leaf, _) in &dirty {
            hashers[*leaf] = Some(LeafHasher::default());
        }
        if dirty.len() * WHOLE_RANGE_SCAN_RATIO > leaves {
            let tree = &cached.tree;
            self.storage.scan(range, &mut |token, key, cell| {
                if let Some(hasher) = tree.leaf_of(token).and_then(|leaf| hashers[leaf].as_mut()) {
                    hasher.add(key, cell);
                    stats.keys_scanned += 1;
                }
            })?;
        } else {
            for (leaf, _) in &dirty {
                let leaf_range = cached.tree.leaf_range(*leaf);
                let Some(hasher) = hashers[*leaf].as_mut() else {
                    continue;
                };
                self.storage.scan(leaf_range, &mut |_, key, cell| {
                    hasher.add(key, cell);
                    stats.keys_scanned += 1;
                })?;
            }
        }
        for (leaf, version) in dirty {
            if let Some(hasher) = &hashers[leaf] {
                cached.tree.set_leaf(leaf, hasher.finish());
                cached.hashed_at[leaf] = Some(version);
                stats.leaves_rehashed += 1;
            }
        }
        Ok((cached.tree.clone(), stats))
    }

    /// Hashes of nodes of the (refreshed) tree of `range`, in the order
    /// asked; unknown indices get zero hashes.
    pub fn nodes(&self, range: TokenRange, indices: &[usize]) -> Result<Vec<Hash>, StorageError> {
        let (tree, _) = self.refresh(range)?;
        Ok(indices
            .iter()
            .map(|&i| tree.node(i).unwrap_or_default())
            .collect())
    }

    /// Forgets trees of ranges not in `keep`.
    pub fn retain(&self, keep: &[TokenRange]) {
        if let Ok(mut trees) = self.trees.lock() {
            trees.by_range.retain(|range, _| keep.contains(range));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Token;
    use crate::storage::{Cell, MemoryStorage};
    use bytes::Bytes;

    fn write(storage: &MemoryStorage, dirty: &DirtyMap, key: &str, ts: i64) {
        let token = Token::of(key.as_bytes());
        let cell = Cell::live(ts, Bytes::from_static(b"v"), None);
        storage
            .write(token, key.as_bytes(), &cell, false)
            .expect("write");
        dirty.mark(token);
    }

    #[test]
    fn only_dirty_leaves_are_rehashed() {
        let storage = Arc::new(MemoryStorage::default());
        let dirty = Arc::new(DirtyMap::default());
        for i in 0..2_000 {
            write(&storage, &dirty, &format!("k{i}"), 1);
        }
        let cache = TreeCache::new(storage.clone(), dirty.clone(), 256);
        let whole = TokenRange::new(Token(0), Token(0));
        let (first, stats) = cache.refresh(whole).expect("refresh");
        assert_eq!(stats.leaves_rehashed, 256);
        assert_eq!(stats.keys_scanned, 2_000);

        let (same, stats) = cache.refresh(whole).expect("refresh");
        assert_eq!(
            stats,
            RefreshStats::default(),
            "nothing changed, nothing rescanned"
        );
        assert_eq!(same.root(), first.root());

        write(&storage, &dirty, "k7", 2);
        let (changed, stats) = cache.refresh(whole).expect("refresh");
        assert!(
            stats.leaves_rehashed <= 2,
            "one write rehashed {} leaves",
            stats.leaves_rehashed
        );
        assert!(stats.keys_scanned < 50);
        assert_ne!(changed.root(), first.root());

        // A fresh cache over the same data computes the same tree.
        let rebuilt = TreeCache::new(storage, dirty, 256)
            .refresh(whole)
            .expect("refresh")
            .0;
        assert_eq!(rebuilt, changed);
    }

    #[test]
    fn the_cache_keeps_at_most_its_bound_and_drops_the_least_recently_used() {
        let storage = Arc::new(MemoryStorage::default());
        let dirty = Arc::new(DirtyMap::default());
        write(&storage, &dirty, "k", 1);
        let cache = TreeCache::new(storage, dirty, 4);
        let range = |i: i64| TokenRange::new(Token(i * 10), Token(i * 10 + 5));
        let kept = range(0);
        for i in 0..(MAX_CACHED_TREES as i64 + 100) {
            cache.refresh(range(i)).expect("refresh");
            // One range stays in use all along.
            cache.refresh(kept).expect("refresh");
        }
        assert_eq!(cache.cached_trees(), MAX_CACHED_TREES);
        let trees = cache.trees.lock().expect("lock");
        assert!(trees.by_range.contains_key(&kept), "the range in use stays");
        assert!(!trees.by_range.contains_key(&range(1)), "the oldest went");
    }
}
