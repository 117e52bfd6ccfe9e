//! [`Ring`]: every node's tokens, and the replicas of every range.
//!
//! Built once per topology change from the members' tokens and racks. The
//! replicas of each range are computed then (`placement`), so a request's
//! replica lookup is one binary search.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::placement::{Scratch, place};
use super::{Token, TokenRange};
use crate::identity::NodeId;

/// A node as the ring sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingMember {
    pub id: NodeId,
    pub rack: String,
    pub tokens: Vec<Token>,
}

/// Token ownership and replica placement for a replication factor.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    /// Every token with its owner, sorted by token.
    tokens: Vec<(Token, NodeId)>,
    /// `replicas[i]`: replicas of the range ending at `tokens[i]`.
    replicas: Vec<Arc<[NodeId]>>,
    racks: BTreeMap<NodeId, String>,
    replication_factor: usize,
}

impl Ring {
    /// The ring of these members with `replication_factor` replicas per
    /// range. A token claimed twice goes to the smaller node id, so every
    /// node builds the same ring from the same members.
    pub fn new(members: impl IntoIterator<Item = RingMember>, replication_factor: usize) -> Ring {
        let mut racks = BTreeMap::new();
        let mut claimed: BTreeMap<Token, NodeId> = BTreeMap::new();
        for member in members {
            for token in &member.tokens {
                claimed
                    .entry(*token)
                    .and_modify(|owner| *owner = (*owner).min(member.id))
                    .or_insert(member.id);
            }
            racks.insert(member.id, member.rack);
        }
        let tokens: Vec<(Token, NodeId)> = claimed.into_iter().collect();
        // Racks of nodes that own no token must not count as racks to fill.
        let owners: BTreeSet<NodeId> = tokens.iter().map(|(_, n)| *n).collect();
        racks.retain(|node, _| owners.contains(node));
        let replicas = compute_replicas(&tokens, &racks, replication_factor);
        Ring {
            tokens,
            replicas,
            racks,
            replication_factor,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// Every token and its owner, in token order.
    pub fn tokens(&self) -> &[(Token, NodeId)] {
        &self.tokens
    }

    /// Nodes that own tokens.
    pub fn nodes(&self) -> BTreeSet<NodeId> {
        self.tokens.iter().map(|(_, n)| *n).collect()
    }

    /// The rack of a node on the ring.
    pub fn rack_of(&self, node: &NodeId) -> Option<&str> {
        self.racks.get(node).map(String::as_str)
    }

    /// Index of the range holding `token`: the first token ≥ it, wrapping.
    fn range_index(&self, token: Token) -> usize {
        let i = self.tokens.partition_point(|(t, _)| *t < token);
        if i == self.tokens.len() { 0 } else { i }
    }

    /// The natural replicas of a token, in preference order (empty ring:
    /// none).
    pub fn replicas(&self, token: Token) -> &[NodeId] {
        if self.tokens.is_empty() {
            return &[];
        }
        &self.replicas[self.range_index(token)]
    }

    /// The replicas of a range's end token as a shared slice.
    pub fn replica_set(&self, token: Token) -> Arc<[NodeId]> {
        if self.tokens.is_empty() {
            return Arc::from(Vec::new());
        }
        self.replicas[self.range_index(token)].clone()
    }

    /// The range of the ring holding `token` (empty ring: none).
    pub fn range_holding(&self, token: Token) -> Option<TokenRange> {
        if self.tokens.is_empty() {
            return None;
        }
        let i = self.range_index(token);
        let len = self.tokens.len();
        let start = self.tokens[(i + len - 1) % len].0;
        Some(TokenRange::new(start, self.tokens[i].0))
    }

    /// Every range with its replicas.
    pub fn ranges(&self) -> impl Iterator<Item = (TokenRange, &[NodeId])> + '_ {
        let len = self.tokens.len();
        (0..len).map(move |i| {
            let start = self.tokens[(i + len - 1) % len].0;
            (TokenRange::new(start, self.tokens[i].0), &*self.replicas[i])
        })
    }

    /// The ranges `node` holds a replica of.
    pub fn ranges_of(&self, node: &NodeId) -> Vec<TokenRange> {
        self.ranges()
            .filter(|(_, replicas)| replicas.contains(node))
            .map(|(range, _)| range)
            .collect()
    }

    /// Each node's share of the ring as primary owner (sums to 1).
    pub fn primary_ownership(&self) -> BTreeMap<NodeId, f64> {
        let mut own = BTreeMap::new();
        let len = self.tokens.len();
        for i in 0..len {
            let start = self.tokens[(i + len - 1) % len].0;
            let (end, node) = self.tokens[i];
            *own.entry(node).or_insert(0.0) += TokenRange::new(start, end).fraction();
        }
        own
    }

    /// Each node's share of the data as a replica (sums to N, or to the
    /// node count when there are fewer nodes than N): what `status` shows
    /// as "owns".
    pub fn effective_ownership(&self) -> BTreeMap<NodeId, f64> {
        let mut own: BTreeMap<NodeId, f64> = self.nodes().into_iter().map(|n| (n, 0.0)).collect();
        for (range, replicas) in self.ranges() {
            for node in replicas {
                *own.entry(*node).or_insert(0.0) += range.fraction();
            }
        }
        own
    }
}

/// The replicas of every range of a sorted token list.
fn compute_replicas(
    tokens: &[(Token, NodeId)],
    racks: &BTreeMap<NodeId, String>,
    n: usize,
) -> Vec<Arc<[NodeId]>> {
    let total_racks = racks.values().collect::<BTreeSet<_>>().len().max(1);
    let rack_of = |node: NodeId| racks.get(&node).map_or("", String::as_str);
    let mut scratch = Scratch::default();
    (0..tokens.len())
        .map(|i| {
            Arc::from(place(
                tokens.len(),
                i,
                n,
                |j| tokens[j].1,
                rack_of,
                total_racks,
                &mut scratch,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u128) -> NodeId {
        NodeId(uuid::Uuid::from_u128(n))
    }

    fn member(n: u128, rack: &str, tokens: &[i64]) -> RingMember {
        RingMember {
            id: id(n),
            rack: rack.into(),
            tokens: tokens.iter().map(|&t| Token(t)).collect(),
        }
    }

    #[test]
    fn lookup_walks_clockwise_and_wraps() {
        let ring = Ring::new(
            [
                member(1, "r", &[-100, 300]),
                member(2, "r", &[0]),
                member(3, "r", &[200]),
            ],
            2,
        );
        assert_eq!(ring.replicas(Token(-500)), [id(1), id(2)]); // up to -100
        assert_eq!(ring.replicas(Token(-100)), [id(1), id(2)]);
        assert_eq!(ring.replicas(Token(-99)), [id(2), id(3)]);
        assert_eq!(ring.replicas(Token(250)), [id(1), id(2)]); // (200, 300] -> 1, wraps to -100 (1), 0 (2)
        assert_eq!(ring.replicas(Token(301)), [id(1), id(2)]); // wraps to -100
        assert!(Ring::new([], 3).replicas(Token(0)).is_empty());
    }

    #[test]
    fn duplicate_tokens_go_to_the_smaller_id() {
        let a = Ring::new([member(2, "r", &[5]), member(1, "r", &[5, 9])], 1);
        let b = Ring::new([member(1, "r", &[5, 9]), member(2, "r", &[5])], 1);
        assert_eq!(a.tokens(), b.tokens());
        assert_eq!(a.tokens()[0], (Token(5), id(1)));
    }

    fn arbitrary_ring() -> impl Strategy<Value = (Vec<RingMember>, usize)> {
        (1usize..8, 1usize..5, 1usize..4).prop_flat_map(|(nodes, tokens, n)| {
            proptest::collection::vec(proptest::collection::vec(any::<i64>(), tokens), nodes)
                .prop_map(move |per_node| {
                    let members = per_node
                        .into_iter()
                        .enumerate()
                        .map(|(i, tokens)| RingMember {
                            id: id(i as u128 + 1),
                            rack: format!("r{}", i % 2),
                            tokens: tokens
                                .into_iter()
                                .filter(|t| *t != i64::MIN)
                                .map(Token)
                                .collect(),
                        })
                        .collect();
                    (members, n)
                })
        })
    }

    proptest! {
        #[test]
        fn ring_invariants((members, n) in arbitrary_ring(), probe: i64) {
            let ring = Ring::new(members.clone(), n);
            let node_count = ring.nodes().len();
            // Every token has min(N, nodes) distinct replicas, its owner first.
            for (range, replicas) in ring.ranges() {
                prop_assert_eq!(replicas.len(), n.min(node_count));
                let distinct: BTreeSet<_> = replicas.iter().collect();
                prop_assert_eq!(distinct.len(), replicas.len());
                let owner = ring.tokens().iter().find(|(t, _)| *t == range.end).map(|(_, o)| *o);
                prop_assert_eq!(replicas.first().copied(), owner);
            }
            // Exactly one range holds any token, and lookup agrees with it.
            let holders: Vec<_> = ring.ranges().filter(|(r, _)| r.contains(Token(probe))).collect();
            prop_assert_eq!(holders.len(), 1);
            prop_assert_eq!(holders[0].1, ring.replicas(Token(probe)));
            // Ownership shares add up.
            let primary: f64 = ring.primary_ownership().values().sum();
            prop_assert!((primary - 1.0).abs() < 1e-9);
            let effective: f64 = ring.effective_ownership().values().sum();
            prop_assert!((effective - n.min(node_count) as f64).abs() < 1e-6);
            // Racks are spread: with 2 racks and N >= 2, both racks hold a replica.
            let racks: BTreeSet<_> = ring.nodes().iter().filter_map(|n| ring.rack_of(n)).collect();
            if racks.len() == 2 && n >= 2 {
                for (_, replicas) in ring.ranges() {
                    let used: BTreeSet<_> = replicas.iter().filter_map(|r| ring.rack_of(r)).collect();
                    prop_assert_eq!(used.len(), 2);
                }
            }
        }
    }
}
