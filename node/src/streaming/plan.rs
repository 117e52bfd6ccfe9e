//! Which ranges move, from whom to whom: plain data from the rings before
//! and after a topology change.
//!
//! The tokens of both rings cut the ring into sub-ranges inside which
//! neither ring's replicas change. For each sub-range whose replica set
//! differs, a [`Movement`] says who gives it up (`from`: replicas before,
//! not after), who gains it (`to`: after, not before), and who keeps it.
//! Adjacent sub-ranges that move alike are merged.
//!
//! With one change at a time and N replicas, a join makes exactly one node
//! give each moving range up, the one whose place the new node takes:
//! streaming from it (the strict source) hands the new node the very copy
//! it replaces, so a quorum of the new replica set holds whatever a quorum
//! of the old one did.

use crate::identity::NodeId;
use crate::ring::{Ring, Token, TokenRange};

/// One range whose replicas change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub range: TokenRange,
    /// Replicas before the change that are not replicas after it.
    pub from: Vec<NodeId>,
    /// Replicas after the change that were not replicas before it.
    pub to: Vec<NodeId>,
    /// Replicas both before and after.
    pub kept: Vec<NodeId>,
}

/// Every range whose replicas differ between `old` and `new`, in the
/// order of their end tokens (a range wrapping past the largest token
/// first). Nothing moves out of an empty ring (a cluster's first node).
pub fn movements(old: &Ring, new: &Ring) -> Vec<Movement> {
    if old.is_empty() || new.is_empty() {
        return Vec::new();
    }
    let mut bounds: Vec<Token> = old
        .tokens()
        .iter()
        .chain(new.tokens())
        .map(|(t, _)| *t)
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    let mut out: Vec<Movement> = Vec::new();
    for (i, end) in bounds.iter().enumerate() {
        let start = bounds[(i + bounds.len() - 1) % bounds.len()];
        let (before, after) = (old.replicas(*end), new.replicas(*end));
        let from: Vec<NodeId> = before
            .iter()
            .filter(|n| !after.contains(n))
            .copied()
            .collect();
        let to: Vec<NodeId> = after
            .iter()
            .filter(|n| !before.contains(n))
            .copied()
            .collect();
        if from.is_empty() && to.is_empty() {
            continue;
        }
        let kept: Vec<NodeId> = before
            .iter()
            .filter(|n| after.contains(n))
            .copied()
            .collect();
        match out.last_mut() {
            Some(last)
                if last.range.end == start
                    && last.from == from
                    && last.to == to
                    && last.kept == kept =>
            {
                last.range.end = *end;
            }
            _ => out.push(Movement {
                range: TokenRange::new(start, *end),
                from,
                to,
                kept,
            }),
        }
    }
    // The last range may continue into the first across the wrap.
    if out.len() > 1 {
        let (first, last) = (&out[0], &out[out.len() - 1]);
        if last.range.end == first.range.start
            && last.from == first.from
            && last.to == first.to
            && last.kept == first.kept
            && let Some(last) = out.pop()
        {
            out[0].range.start = last.range.start;
        }
    }
    out
}

/// Why a range has no usable source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error(
        "range {range} must stream from {source_node}, the replica giving it up, which is down; bring it back, or restart this node with --allow-inconsistent-source to stream from another replica (a write acknowledged by a quorum may then be missing)"
    )]
    StrictSourceDown {
        range: TokenRange,
        source_node: NodeId,
    },
    #[error("range {range} has no live replica to stream from")]
    NoLiveReplica { range: TokenRange },
}

/// Where a node gaining `movement.range` streams it from.
///
/// - `strict`: the replica giving the range up (a join: the one whose copy
///   the new node takes over); if it is down, another live replica only
///   with `allow_inconsistent`.
/// - not `strict` (a replacement or removal: the node giving the range up
///   is dead and its copy gone): the first live replica that keeps it.
///
/// A range nobody gives up (a cluster still smaller than N) streams from
/// the first live replica.
pub fn source(
    movement: &Movement,
    strict: bool,
    allow_inconsistent: bool,
    alive: impl Fn(&NodeId) -> bool,
) -> Result<(NodeId, bool), SourceError> {
    let live_kept = movement.kept.iter().find(|n| alive(n)).copied();
    match movement.from.first() {
        Some(giver) if strict => {
            if alive(giver) {
                return Ok((*giver, true));
            }
            match live_kept {
                Some(other) if allow_inconsistent => Ok((other, false)),
                _ => Err(SourceError::StrictSourceDown {
                    range: movement.range,
                    source_node: *giver,
                }),
            }
        }
        _ => live_kept
            .map(|n| (n, true))
            .ok_or(SourceError::NoLiveReplica {
                range: movement.range,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::RingMember;

    fn id(n: u128) -> NodeId {
        NodeId(uuid::Uuid::from_u128(n))
    }

    fn ring(members: &[(u128, &[i64])], n: usize) -> Ring {
        Ring::new(
            members.iter().map(|(node, tokens)| RingMember {
                id: id(*node),
                rack: "r".into(),
                tokens: tokens.iter().map(|t| Token(*t)).collect(),
            }),
            n,
        )
    }

    #[test]
    fn a_join_takes_each_range_from_the_replica_it_displaces() {
        // Nodes 1, 2, 3 at 100, 200, 300; node 4 joins at 150, N = 2.
        let old = ring(&[(1, &[100]), (2, &[200]), (3, &[300])], 2);
        let new = ring(&[(1, &[100]), (2, &[200]), (3, &[300]), (4, &[150])], 2);
        let moves = movements(&old, &new);
        // (100, 150]: was {2, 3}, now {4, 2}: 3 gives it to 4.
        // (300, 100]: was {1, 2}, now {1, 4}: 2 gives it to 4.
        assert_eq!(
            moves,
            vec![
                Movement {
                    range: TokenRange::new(Token(300), Token(100)),
                    from: vec![id(2)],
                    to: vec![id(4)],
                    kept: vec![id(1)],
                },
                Movement {
                    range: TokenRange::new(Token(100), Token(150)),
                    from: vec![id(3)],
                    to: vec![id(4)],
                    kept: vec![id(2)],
                },
            ]
        );
        // Node 4 gains exactly the ranges it replicates afterwards.
        let gained: u128 = moves.iter().map(|m| m.range.width()).sum();
        let owned: u128 = new.ranges_of(&id(4)).iter().map(|r| r.width()).sum();
        assert_eq!(gained, owned);
    }

    #[test]
    fn a_leave_hands_each_range_to_one_new_replica_and_merges_neighbours() {
        let old = ring(&[(1, &[100]), (2, &[200]), (3, &[300]), (4, &[400])], 2);
        let new = ring(&[(1, &[100]), (2, &[200]), (4, &[400])], 2);
        let moves = movements(&old, &new);
        for m in &moves {
            assert_eq!(m.from, vec![id(3)], "{m:?}");
            assert_eq!(m.to.len(), 1);
            assert!(!m.kept.contains(&id(3)));
        }
        let given: u128 = moves.iter().map(|m| m.range.width()).sum();
        let held: u128 = old.ranges_of(&id(3)).iter().map(|r| r.width()).sum();
        assert_eq!(given, held);
        assert!(movements(&old, &old).is_empty());
        assert!(movements(&Ring::default(), &new).is_empty(), "first node");
    }

    #[test]
    fn sources_follow_the_strict_rule() {
        let m = Movement {
            range: TokenRange::new(Token(0), Token(10)),
            from: vec![id(3)],
            to: vec![id(4)],
            kept: vec![id(1), id(2)],
        };
        let all = |_: &NodeId| true;
        let not_3 = |n: &NodeId| *n != id(3);
        let none = |_: &NodeId| false;
        assert_eq!(source(&m, true, false, all), Ok((id(3), true)));
        assert!(matches!(
            source(&m, true, false, not_3),
            Err(SourceError::StrictSourceDown { .. })
        ));
        assert_eq!(source(&m, true, true, not_3), Ok((id(1), false)));
        // A replacement: the giver is the dead node; any live keeper will do.
        assert_eq!(source(&m, false, false, not_3), Ok((id(1), true)));
        assert!(matches!(
            source(&m, false, false, none),
            Err(SourceError::NoLiveReplica { .. })
        ));
        let growing = Movement { from: vec![], ..m };
        assert_eq!(source(&growing, true, false, all), Ok((id(1), true)));
    }
}
