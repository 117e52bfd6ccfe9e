//! When a stored cell may be forgotten.
//!
//! A tombstone must outlive every replica that might still hold the value it
//! deletes; otherwise repair would copy the old value back ("resurrection").
//! Like Cassandra, ringkv keeps tombstones for `gc_grace` after their
//! deletion time and expects every replica to be repaired within that window.
//!
//! An expired TTL value is treated the same way, from its expiry: dropping it
//! at once could let an older, non-expiring value of the same key on another
//! replica win again. (This is stricter than "drop expired cells", and it is
//! what Cassandra does: an expired cell turns into a tombstone.)

use super::cell::CellOf;

/// The default `gc_grace`: ten days, in seconds.
pub const DEFAULT_GC_GRACE_SECONDS: u64 = 10 * 24 * 3600;

/// True when the cell is a tombstone or an expired value whose deletion time
/// is at least `gc_grace_seconds` before `now_seconds`.
pub fn is_purgeable<V>(cell: &CellOf<V>, now_seconds: i64, gc_grace_seconds: u64) -> bool {
    let grace = i64::try_from(gc_grace_seconds).unwrap_or(i64::MAX);
    cell.local_deletion_time
        .is_some_and(|deleted| deleted.saturating_add(grace) <= now_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Cell;
    use bytes::Bytes;

    #[test]
    fn purge_rule() {
        let tomb = Cell::tombstone(0, 1_000);
        assert!(!is_purgeable(&tomb, 1_009, 10));
        assert!(is_purgeable(&tomb, 1_010, 10));

        let expiring = Cell::live(0, Bytes::from_static(b"v"), Some(1_000));
        assert!(
            !is_purgeable(&expiring, 1_009, 10),
            "expired but within gc_grace"
        );
        assert!(is_purgeable(&expiring, 1_010, 10));

        let forever = Cell::live(0, Bytes::from_static(b"v"), None);
        assert!(!is_purgeable(&forever, i64::MAX, 0));
        assert!(!is_purgeable(&tomb, i64::MIN, u64::MAX));
    }
}
