//! Last-write-wins: the one rule that decides between two versions of a key.
//!
//! Every place that meets two cells for the same key (the RocksDB merge
//! operator on a replica, read repair, hint replay, anti-entropy) calls
//! [`compare`] or [`merge`], so every replica picks the same winner no matter
//! in which order versions arrive.
//!
//! The winner is the greatest cell under a total order on
//! `(timestamp, tombstone, value bytes, local_deletion_time)`:
//!
//! 1. the later timestamp wins;
//! 2. on a timestamp tie a tombstone beats a value (a delete that raced a
//!    write at the same microsecond wins, as in Cassandra);
//! 3. then the greater value bytes win;
//! 4. then the later `local_deletion_time` wins, "never" being the latest
//!    (it keeps a value alive, or a tombstone around, the longest).
//!
//! Because merge is `max` under a total order it is commutative
//! (`merge(a, b) = merge(b, a)`), associative
//! (`merge(a, merge(b, c)) = merge(merge(a, b), c)`) and idempotent
//! (`merge(a, a) = a`): replicas converge whatever the delivery order,
//! duplication or batching. A winner is always one of the inputs, never a
//! mix of two writers' data. The property tests below check each law.

use std::cmp::Ordering;

use super::cell::{Cell, CellOf};

/// Orders two versions of a key; the greater one wins.
pub fn compare<A: AsRef<[u8]>, B: AsRef<[u8]>>(a: &CellOf<A>, b: &CellOf<B>) -> Ordering {
    a.timestamp
        .cmp(&b.timestamp)
        .then(a.tombstone.cmp(&b.tombstone))
        .then_with(|| a.value.as_ref().cmp(b.value.as_ref()))
        .then(
            a.local_deletion_time
                .unwrap_or(i64::MAX)
                .cmp(&b.local_deletion_time.unwrap_or(i64::MAX)),
        )
        // Then the later millisecond of expiry.
        .then(b.expiry_ms_early.cmp(&a.expiry_ms_early))
}

/// True when `candidate` wins over `current`.
pub fn supersedes<A: AsRef<[u8]>, B: AsRef<[u8]>>(
    candidate: &CellOf<A>,
    current: &CellOf<B>,
) -> bool {
    compare(candidate, current) == Ordering::Greater
}

/// The winner of two versions.
pub fn merge(a: Cell, b: Cell) -> Cell {
    if supersedes(&b, &a) { b } else { a }
}

/// The winner of any number of versions; `None` for none.
pub fn merge_all(cells: impl IntoIterator<Item = Cell>) -> Option<Cell> {
    cells.into_iter().reduce(merge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::cell::tests::any_cell;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn live(ts: i64, v: &'static [u8]) -> Cell {
        Cell::live(ts, Bytes::from_static(v), None)
    }

    #[test]
    fn newer_timestamp_wins() {
        assert_eq!(merge(live(1, b"zzz"), live(2, b"a")), live(2, b"a"));
        assert_eq!(merge(live(2, b"a"), live(1, b"zzz")), live(2, b"a"));
    }

    #[test]
    fn tombstone_wins_a_timestamp_tie() {
        let tomb = Cell::tombstone(5, 0);
        assert_eq!(merge(live(5, b"v"), tomb.clone()), tomb);
        assert_eq!(merge(tomb.clone(), live(5, b"v")), tomb);
        // ...but not against a later value.
        assert_eq!(merge(tomb, live(6, b"v")), live(6, b"v"));
    }

    #[test]
    fn greater_bytes_win_a_tie_between_values() {
        assert_eq!(merge(live(5, b"abc"), live(5, b"abd")), live(5, b"abd"));
        assert_eq!(merge(live(5, b"abd"), live(5, b"abc")), live(5, b"abd"));
    }

    #[test]
    fn non_expiring_value_wins_a_full_tie() {
        let expiring = Cell::live(5, Bytes::from_static(b"v"), Some(100));
        assert_eq!(merge(expiring.clone(), live(5, b"v")), live(5, b"v"));
        assert_eq!(merge(live(5, b"v"), expiring), live(5, b"v"));
    }

    proptest! {
        #[test]
        fn commutative(a in any_cell(), b in any_cell()) {
            prop_assert_eq!(merge(a.clone(), b.clone()), merge(b, a));
        }

        #[test]
        fn associative(a in any_cell(), b in any_cell(), c in any_cell()) {
            prop_assert_eq!(
                merge(a.clone(), merge(b.clone(), c.clone())),
                merge(merge(a, b), c)
            );
        }

        #[test]
        fn idempotent(a in any_cell(), b in any_cell()) {
            prop_assert_eq!(merge(a.clone(), a.clone()), a.clone());
            let ab = merge(a.clone(), b.clone());
            prop_assert_eq!(merge(ab.clone(), b), ab);
        }

        #[test]
        fn winner_is_one_of_the_inputs(a in any_cell(), b in any_cell()) {
            let w = merge(a.clone(), b.clone());
            prop_assert!(w == a || w == b);
        }

        #[test]
        fn order_is_total_and_consistent(a in any_cell(), b in any_cell()) {
            // Equal under the order means equal cells: no two different
            // versions can tie, so the winner never depends on arrival order.
            prop_assert_eq!(compare(&a, &b) == Ordering::Equal, a == b);
            prop_assert_eq!(compare(&a, &b), compare(&b, &a).reverse());
        }

        #[test]
        fn views_and_owned_cells_agree(a in any_cell(), b in any_cell()) {
            let (ea, eb) = (a.encode(), b.encode());
            let va = crate::storage::CellView::decode(&ea).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let vb = crate::storage::CellView::decode(&eb).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(compare(&va, &vb), compare(&a, &b));
        }

        #[test]
        fn merge_all_ignores_order(mut cells in proptest::collection::vec(any_cell(), 1..8)) {
            let forward = merge_all(cells.clone());
            cells.reverse();
            prop_assert_eq!(forward, merge_all(cells));
        }
    }
}
