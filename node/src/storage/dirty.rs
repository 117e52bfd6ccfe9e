//! Which parts of the token space changed since a Merkle leaf was hashed.
//!
//! The token space is cut into 2^18 equal buckets, each with a version
//! counter. Every local write bumps its token's bucket: one atomic add, no
//! lock, no lookup of which tree the token belongs to. A leaf remembers the
//! sum of its buckets' versions when it was hashed; it is dirty when that
//! sum has grown since. Versions only grow, so a changed sum always means a
//! write happened.
//!
//! The write is applied before its bucket is bumped, and a leaf reads its
//! sum before scanning, so a write is either seen by the scan or leaves the
//! leaf dirty for next time: never lost.
//!
//! CAVEATS: buckets are coarse (2^46 tokens). A write dirties every leaf
//! overlapping its bucket: about one leaf with tens of vnodes per node, a
//! few in clusters of hundreds of nodes, where leaves are narrower than a
//! bucket. Compaction dropping expired data does not bump buckets.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ring::{Token, TokenRange};

const BUCKET_BITS: u32 = 18;

/// Version counters over the token space.
pub struct DirtyMap {
    buckets: Box<[AtomicU64]>,
}

impl Default for DirtyMap {
    fn default() -> Self {
        Self {
            buckets: (0..1usize << BUCKET_BITS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl std::fmt::Debug for DirtyMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirtyMap")
            .field("buckets", &self.buckets.len())
            .finish()
    }
}

fn bucket(token: Token) -> usize {
    (u64::from_be_bytes(token.to_ordered_bytes()) >> (64 - BUCKET_BITS)) as usize
}

impl DirtyMap {
    /// Records a write to `token`.
    pub fn mark(&self, token: Token) {
        self.buckets[bucket(token)].fetch_add(1, Ordering::Release);
    }

    /// Sum of the versions of every bucket overlapping `range`.
    pub fn version(&self, range: TokenRange) -> u64 {
        let sum = |from: usize, to: usize| -> u64 {
            self.buckets[from..=to]
                .iter()
                .map(|b| b.load(Ordering::Acquire))
                .fold(0u64, u64::wrapping_add)
        };
        let first = bucket(Token(range.start.0.saturating_add(1)));
        let last = bucket(range.end);
        if range.start < range.end && first <= last {
            sum(first, last)
        } else {
            sum(first, self.buckets.len() - 1).wrapping_add(sum(0, last))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_change_only_the_versions_of_ranges_holding_them() {
        let dirty = DirtyMap::default();
        let left = TokenRange::new(Token(-1_000_000_000_000_000_000), Token(-1));
        let right = TokenRange::new(
            Token(1_000_000_000_000_000),
            Token(2_000_000_000_000_000_000),
        );
        let wrap = TokenRange::new(
            Token(3_000_000_000_000_000_000),
            Token(-3_000_000_000_000_000_000),
        );
        let before = (
            dirty.version(left),
            dirty.version(right),
            dirty.version(wrap),
        );
        dirty.mark(Token(-500_000_000_000_000_000));
        assert!(dirty.version(left) > before.0);
        assert_eq!(dirty.version(right), before.1);
        assert_eq!(dirty.version(wrap), before.2);
        dirty.mark(Token(i64::MAX));
        dirty.mark(Token(i64::MIN + 1));
        assert_eq!(dirty.version(wrap), before.2 + 2);
    }
}
