//! Merkle trees over token ranges.
//!
//! A tree covers one token range split into `L` leaves (a power of two) of
//! near-equal width. A leaf's hash summarises every (key, cell) in its
//! sub-range; an inner node hashes its two children. Two replicas whose
//! trees have equal roots hold identical data for the range; otherwise they
//! compare children level by level and descend only where hashes differ
//! ([`descend_step`]), so finding d differing leaves costs about
//! `d · log2(L)` hash comparisons rather than L.
//!
//! Nodes are numbered as a binary heap: 1 is the root, node i has children
//! 2i and 2i + 1, and leaf j is node `L + j`.

use crate::ring::{RING_SIZE, Token, TokenRange};

/// Bytes of a node hash.
pub const HASH_LEN: usize = 16;
/// Leaves of every Merkle tree; both sides of a comparison must agree.
pub const LEAVES_PER_RANGE: usize = 256;

/// A node hash.
pub type Hash = [u8; HASH_LEN];

fn murmur(bytes: &[u8]) -> Hash {
    let mut cursor = std::io::Cursor::new(bytes);
    // Hashing an in-memory buffer cannot fail.
    murmur3::murmur3_x64_128(&mut cursor, 0)
        .unwrap_or_default()
        .to_le_bytes()
}

/// Accumulates the entries of one leaf, in key order.
#[derive(Debug, Default)]
pub struct LeafHasher {
    buffer: Vec<u8>,
    entries: usize,
}

impl LeafHasher {
    /// Adds a stored key and its encoded cell.
    pub fn add(&mut self, key: &[u8], cell: &[u8]) {
        self.buffer
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buffer.extend_from_slice(key);
        self.buffer
            .extend_from_slice(&(cell.len() as u32).to_le_bytes());
        self.buffer.extend_from_slice(cell);
        self.entries += 1;
    }

    /// The leaf's hash: all zeroes for an empty leaf.
    pub fn finish(&self) -> Hash {
        if self.entries == 0 {
            [0; HASH_LEN]
        } else {
            murmur(&self.buffer)
        }
    }
}

/// A Merkle tree over a token range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    range: TokenRange,
    leaves: usize,
    /// Heap of node hashes; index 0 unused.
    nodes: Vec<Hash>,
}

impl MerkleTree {
    /// A tree of empty leaves; `leaves` is rounded up to a power of two,
    /// and capped so that no leaf is empty of tokens.
    pub fn new(range: TokenRange, leaves: usize) -> MerkleTree {
        let leaves = Self::leaf_count_for(range, leaves);
        let mut tree = MerkleTree {
            range,
            leaves,
            nodes: vec![[0; HASH_LEN]; 2 * leaves],
        };
        for i in (1..leaves).rev() {
            tree.nodes[i] = tree.combine(i);
        }
        tree
    }

    /// The leaves a tree of `range` asked for `leaves` gets: rounded up
    /// to a power of two (at most [`LEAVES_PER_RANGE`] × 2^8, a bound a
    /// request cannot push past), and capped so no leaf is empty of tokens.
    pub fn leaf_count_for(range: TokenRange, leaves: usize) -> usize {
        let widest = 1u128 << (127 - range.width().leading_zeros());
        let asked = leaves.clamp(1, LEAVES_PER_RANGE << 8).next_power_of_two();
        (asked as u128).min(widest) as usize
    }

    /// The widest leaf of a tree of `range` with the usual shape.
    pub fn widest_leaf(range: TokenRange) -> u128 {
        range
            .width()
            .div_ceil(Self::leaf_count_for(range, LEAVES_PER_RANGE) as u128)
    }

    pub fn range(&self) -> TokenRange {
        self.range
    }

    pub fn leaf_count(&self) -> usize {
        self.leaves
    }

    fn boundary(&self, i: usize) -> Token {
        if i >= self.leaves {
            return self.range.end;
        }
        self.range
            .token_after_start(self.range.width() * i as u128 / self.leaves as u128)
    }

    /// The sub-range of leaf `i`.
    pub fn leaf_range(&self, i: usize) -> TokenRange {
        TokenRange::new(self.boundary(i), self.boundary(i + 1))
    }

    /// The leaf holding `token`, if the range does.
    pub fn leaf_of(&self, token: Token) -> Option<usize> {
        if !self.range.contains(token) {
            return None;
        }
        let offset = (i128::from(token.0) - i128::from(self.range.start.0))
            .rem_euclid(RING_SIZE as i128) as u128;
        let offset = if offset == 0 { RING_SIZE } else { offset };
        let width = self.range.width();
        let index = (offset * self.leaves as u128).div_ceil(width) - 1;
        Some(index as usize)
    }

    fn combine(&self, i: usize) -> Hash {
        let mut both = [0u8; 2 * HASH_LEN];
        both[..HASH_LEN].copy_from_slice(&self.nodes[2 * i]);
        both[HASH_LEN..].copy_from_slice(&self.nodes[2 * i + 1]);
        murmur(&both)
    }

    /// Sets leaf `i`'s hash and updates its ancestors.
    pub fn set_leaf(&mut self, i: usize, hash: Hash) {
        if i >= self.leaves {
            return;
        }
        let mut node = self.leaves + i;
        self.nodes[node] = hash;
        while node > 1 {
            node /= 2;
            self.nodes[node] = self.combine(node);
        }
    }

    /// The hash of node `index` (1 = root).
    pub fn node(&self, index: usize) -> Option<Hash> {
        (index >= 1)
            .then(|| self.nodes.get(index).copied())
            .flatten()
    }

    pub fn root(&self) -> Hash {
        self.nodes[1]
    }

    /// True when node `index` is a leaf.
    pub fn is_leaf(&self, index: usize) -> bool {
        index >= self.leaves
    }
}

/// One level of the comparison with a remote tree of the same shape. Given
/// the nodes just asked about and the remote hashes for them, returns the
/// children to ask about next and the leaves (as leaf numbers) found to
/// differ. Start with `asked = [1]` (the root); stop when nothing is left
/// to ask.
///
/// A reply with fewer (or more) hashes than nodes asked is an error: a
/// missing hash must not read as "equal".
pub fn descend_step(
    tree: &MerkleTree,
    asked: &[usize],
    remote: &[Hash],
) -> Result<(Vec<usize>, Vec<usize>), ShortReply> {
    if remote.len() != asked.len() {
        return Err(ShortReply {
            asked: asked.len(),
            answered: remote.len(),
        });
    }
    let mut next = Vec::new();
    let mut leaves = Vec::new();
    for (&index, theirs) in asked.iter().zip(remote) {
        if tree.node(index).as_ref() == Some(theirs) {
            continue;
        }
        if tree.is_leaf(index) {
            leaves.push(index - tree.leaf_count());
        } else {
            next.extend([2 * index, 2 * index + 1]);
        }
    }
    Ok((next, leaves))
}

/// A peer answered a different number of hashes than tree nodes asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("peer answered {answered} Merkle hashes for {asked} tree nodes")]
pub struct ShortReply {
    pub asked: usize,
    pub answered: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn build(
        range: TokenRange,
        leaves: usize,
        data: &BTreeMap<(Token, Vec<u8>), Vec<u8>>,
    ) -> MerkleTree {
        let mut tree = MerkleTree::new(range, leaves);
        let mut hashers: Vec<LeafHasher> = (0..tree.leaf_count())
            .map(|_| LeafHasher::default())
            .collect();
        for ((token, key), cell) in data {
            if let Some(i) = tree.leaf_of(*token) {
                hashers[i].add(key, cell);
            }
        }
        for (i, hasher) in hashers.iter().enumerate() {
            tree.set_leaf(i, hasher.finish());
        }
        tree
    }

    /// Differing leaves found by descending, as a remote comparison would.
    fn differing_leaves(a: &MerkleTree, b: &MerkleTree) -> BTreeSet<usize> {
        let mut asked = vec![1];
        let mut found = BTreeSet::new();
        while !asked.is_empty() {
            let remote: Vec<Hash> = asked.iter().filter_map(|&i| b.node(i)).collect();
            let (next, leaves) = descend_step(a, &asked, &remote).expect("same shape");
            found.extend(leaves);
            asked = next;
        }
        found
    }

    fn dataset() -> impl Strategy<Value = BTreeMap<(Token, Vec<u8>), Vec<u8>>> {
        proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 1..6),
            proptest::collection::vec(any::<u8>(), 0..4),
            0..60,
        )
        .prop_map(|m| {
            m.into_iter()
                .map(|(k, v)| ((Token::of(&k), k), v))
                .collect()
        })
    }

    proptest! {
        /// The descent finds exactly the leaves that hold a key whose cell
        /// differs (or exists on one side only), as a naive key-by-key diff.
        #[test]
        fn descent_agrees_with_a_naive_diff(
            a in dataset(),
            b in dataset(),
            start: i64,
            end: i64,
            leaves in 1usize..64,
        ) {
            let range = TokenRange::new(Token(start), Token(end));
            let keep = |d: &BTreeMap<(Token, Vec<u8>), Vec<u8>>| -> BTreeMap<(Token, Vec<u8>), Vec<u8>> {
                d.iter().filter(|((t, _), _)| range.contains(*t)).map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            let (a, b) = (keep(&a), keep(&b));
            let ta = build(range, leaves, &a);
            let tb = build(range, leaves, &b);
            let naive: BTreeSet<usize> = a.keys().chain(b.keys())
                .filter(|k| a.get(*k) != b.get(*k))
                .filter_map(|(t, _)| ta.leaf_of(*t))
                .collect();
            prop_assert_eq!(differing_leaves(&ta, &tb), naive.clone());
            prop_assert_eq!(ta.root() == tb.root(), naive.is_empty());
        }

        /// Leaves tile the range: every token of the range is in exactly
        /// the leaf `leaf_of` names.
        #[test]
        fn leaves_tile_the_range(start: i64, end: i64, leaves in 1usize..300, probe: i64) {
            let tree = MerkleTree::new(TokenRange::new(Token(start), Token(end)), leaves);
            let holders: Vec<usize> = (0..tree.leaf_count()).filter(|&i| tree.leaf_range(i).contains(Token(probe))).collect();
            match tree.leaf_of(Token(probe)) {
                Some(i) => prop_assert_eq!(holders, vec![i]),
                None => prop_assert!(holders.is_empty()),
            }
        }
    }

    /// Regression: `zip` stopped at the shorter side, so a reply missing
    /// hashes made the missing nodes count as equal and hid differences.
    #[test]
    fn a_short_reply_is_an_error_not_equality() {
        let range = TokenRange::new(Token(0), Token(0));
        let tree = MerkleTree::new(range, 16);
        let root = tree.root();
        assert_eq!(
            descend_step(&tree, &[2, 3], &[root]),
            Err(ShortReply {
                asked: 2,
                answered: 1
            })
        );
        assert!(descend_step(&tree, &[1], &[]).is_err());
        assert_eq!(descend_step(&tree, &[1], &[root]), Ok((vec![], vec![])));
    }

    #[test]
    fn identical_data_identical_roots() {
        let range = TokenRange::new(Token(0), Token(0));
        let mut data = BTreeMap::new();
        data.insert((Token::of(b"k"), b"k".to_vec()), b"cell".to_vec());
        assert_eq!(
            build(range, 16, &data).root(),
            build(range, 16, &data).root()
        );
        assert_ne!(
            build(range, 16, &data).root(),
            MerkleTree::new(range, 16).root()
        );
    }
}
