//! Replica placement: which nodes hold the range ending at a given token.
//!
//! Walk the ring clockwise from the range's end token and take distinct
//! nodes until N are chosen. When nodes are spread over racks, the walk
//! first takes nodes from racks that hold no replica yet and passes over
//! nodes of racks already used; once every rack holds a replica, the nodes
//! passed over come first, then the walk continues in ring order. This is
//! Cassandra's `NetworkTopologyStrategy` within one data centre; with a
//! single rack it is plain "next N distinct nodes" (`SimpleStrategy`).
//!
//! The walk is generic over how nodes and racks are named so that the ring
//! (node ids, rack names) and the token allocator (dense indices, in a hot
//! loop) share one implementation.

/// Reusable buffers of [`place`], so hot loops do not allocate.
#[derive(Debug, Clone)]
pub struct Scratch<N, R> {
    replicas: Vec<N>,
    skipped: Vec<N>,
    racks_used: Vec<R>,
}

impl<N, R> Default for Scratch<N, R> {
    fn default() -> Self {
        Self {
            replicas: Vec::new(),
            skipped: Vec::new(),
            racks_used: Vec::new(),
        }
    }
}

/// The replicas of the range ending at position `start` of a ring of `len`
/// token positions, in preference order. `owner_at(i)` is the node owning
/// position `i`; `total_racks` the number of distinct racks among owners.
pub fn place<N: Copy + Eq, R: Copy + Eq>(
    len: usize,
    start: usize,
    n: usize,
    owner_at: impl Fn(usize) -> N,
    rack_of: impl Fn(N) -> R,
    total_racks: usize,
    scratch: &mut Scratch<N, R>,
) -> &[N] {
    let Scratch {
        replicas,
        skipped,
        racks_used,
    } = scratch;
    replicas.clear();
    skipped.clear();
    racks_used.clear();
    for step in 0..len {
        if replicas.len() >= n {
            break;
        }
        let node = owner_at((start + step) % len);
        if replicas.contains(&node) || skipped.contains(&node) {
            continue;
        }
        let rack = rack_of(node);
        if racks_used.len() >= total_racks {
            replicas.push(node);
        } else if !racks_used.contains(&rack) {
            racks_used.push(rack);
            replicas.push(node);
            if racks_used.len() >= total_racks {
                let room = n.saturating_sub(replicas.len()).min(skipped.len());
                replicas.extend(skipped.drain(..room));
            }
        } else {
            skipped.push(node);
        }
    }
    let room = n.saturating_sub(replicas.len()).min(skipped.len());
    replicas.extend(skipped.drain(..room));
    replicas
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owners of consecutive positions.
    fn walk(
        owners: &[u32],
        start: usize,
        n: usize,
        rack: impl Fn(u32) -> char,
        racks: usize,
    ) -> Vec<u32> {
        let mut scratch = Scratch::default();
        place(
            owners.len(),
            start,
            n,
            |i| owners[i],
            rack,
            racks,
            &mut scratch,
        )
        .to_vec()
    }

    #[test]
    fn next_distinct_nodes_clockwise() {
        let one_rack = |_| 'r';
        assert_eq!(walk(&[1, 2, 1, 3, 4], 0, 3, one_rack, 1), vec![1, 2, 3]);
        assert_eq!(walk(&[1, 2, 1, 3, 4], 3, 3, one_rack, 1), vec![3, 4, 1]);
        // Fewer nodes than N: every node once.
        assert_eq!(walk(&[1, 2, 1], 0, 3, one_rack, 1), vec![1, 2]);
    }

    #[test]
    fn racks_are_spread_first() {
        // Nodes 1 and 2 in rack a, 3 and 4 in rack b.
        let rack = |n| if n <= 2 { 'a' } else { 'b' };
        // From node 1: takes 1 (a), skips 2 (a), takes 3 (b); racks done, so
        // the skipped 2 comes before 4.
        assert_eq!(walk(&[1, 2, 3, 4], 0, 2, rack, 2), vec![1, 3]);
        assert_eq!(walk(&[1, 2, 3, 4], 0, 3, rack, 2), vec![1, 3, 2]);
        assert_eq!(walk(&[1, 2, 3, 4], 0, 4, rack, 2), vec![1, 3, 2, 4]);
    }
}
