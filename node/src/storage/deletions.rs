//! A partition's deletions: a partition deletion and row-range deletions.
//!
//! A partition deletion shadows every row of the partition written at or
//! before its timestamp (Cassandra's partition deletion); a range deletion
//! shadows the rows whose sort key lies in `[start, end)` (`end`: `None`
//! for "to the end of the partition"). A partition keeps them all in one
//! entry, under its deletions key (see [`super::key`]), stored as a
//! [`Cell`] so that everything that carries cells (hints, streams, Merkle
//! trees, repair) carries deletions unchanged:
//!
//! - `timestamp`: the newest deletion's, `local_deletion_time`: the latest
//!   deletion time (the entry is purgeable once every deletion in it is),
//!   `tombstone`: false, `value`: the encoding below.
//!
//! Two versions of the entry merge by union ([`Deletions::merge`]), not by
//! last-write-wins: each deletion holds on its own. The union is kept in a
//! canonical form (for each distinct range only its newest deletion, and
//! no range deletion a newer partition deletion already covers), so that
//! replicas holding the same deletions hold the same bytes and their
//! Merkle trees agree. Merge is commutative, associative and idempotent.
//!
//! Engines keep one more rule, so that a deletions entry may be dropped
//! after `gc_grace` without anything coming back: no row a deletion
//! shadows is ever stored beside it. Applying a deletion removes the rows
//! it shadows; a row write it shadows is dropped.
//!
//! ```text
//! byte 0       format (1)
//! byte 1       flags: bit 0 has a partition deletion
//! [16 bytes]   partition deletion: timestamp, deletion time (i64 BE each)
//! varint       number of range deletions, then each:
//!   varint + bytes  start
//!   byte            1 if it has an end, then varint + bytes  end
//!   16 bytes        timestamp, deletion time
//! ```

use bytes::{Buf, Bytes};

use super::cell::{Cell, CellOf};
use super::codec::{get_bytes, get_varint, put_bytes, take};
use crate::clock::Timestamp;

const FORMAT_V1: u8 = 1;
const FLAG_PARTITION: u8 = 0b01;

/// Most range deletions a partition holds at once; a write past it is
/// refused (delete the partition, or let gc_grace pass).
pub const MAX_RANGE_DELETIONS: usize = 10_000;
/// Most bytes a partition's deletions entry takes (its range bounds
/// mostly); a write past it is refused the same way. Well under the
/// internode message limit, so that repair and read repair can always
/// send the entry.
pub const MAX_DELETIONS_BYTES: usize = 1 << 20;

/// When and what time a deletion was made; the greater one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deletion {
    /// The delete's write timestamp (microseconds).
    pub timestamp: Timestamp,
    /// When it was made, for gc (Unix seconds).
    pub deleted_at: i64,
}

impl Deletion {
    /// The tombstone a row it shadows reads as.
    pub fn tombstone(self) -> Cell {
        Cell::tombstone(self.timestamp, self.deleted_at)
    }

    /// Whether it shadows `cell`: the tombstone it stands for wins over it
    /// by last-write-wins.
    pub fn shadows<V: AsRef<[u8]>>(self, cell: &CellOf<V>) -> bool {
        super::lww::supersedes(&self.tombstone(), cell)
    }
}

/// Rows `[start, end)` of a partition deleted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RangeDeletion {
    pub start: Bytes,
    /// `None`: to the end of the partition.
    pub end: Option<Bytes>,
    pub deletion: Deletion,
}

impl RangeDeletion {
    /// Whether `sort` lies in the range.
    pub fn contains(&self, sort: &[u8]) -> bool {
        self.start.as_ref() <= sort && self.end.as_ref().is_none_or(|end| sort < end.as_ref())
    }

    /// Whether the range meets `[start, end)`.
    pub fn overlaps(&self, start: &[u8], end: Option<&[u8]>) -> bool {
        let starts_before_their_end = end.is_none_or(|end| self.start.as_ref() < end);
        let ends_after_their_start = self.end.as_ref().is_none_or(|own| start < own.as_ref());
        starts_before_their_end && ends_after_their_start
    }
}

/// The deletions of one partition, in canonical form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deletions {
    pub partition: Option<Deletion>,
    /// Sorted by (start, end); one per distinct range.
    pub ranges: Vec<RangeDeletion>,
}

/// Why bytes are not a deletions entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeletionsDecodeError {
    #[error("deletions entry is truncated")]
    Truncated,
    #[error("unknown deletions format {0}")]
    UnknownFormat(u8),
    #[error("unknown deletions flags {0:#04x}")]
    UnknownFlags(u8),
    #[error("a deletions entry lists {0} range deletions, more than it can hold")]
    TooMany(u64),
}

impl From<super::codec::Truncated> for DeletionsDecodeError {
    fn from(_: super::codec::Truncated) -> Self {
        DeletionsDecodeError::Truncated
    }
}

impl Deletions {
    /// A partition deletion.
    pub fn of_partition(deletion: Deletion) -> Self {
        Self {
            partition: Some(deletion),
            ranges: Vec::new(),
        }
    }

    /// A range deletion.
    pub fn of_range(start: Bytes, end: Option<Bytes>, deletion: Deletion) -> Self {
        let mut out = Self {
            partition: None,
            ranges: vec![RangeDeletion {
                start,
                end,
                deletion,
            }],
        };
        out.normalize();
        out
    }

    pub fn is_empty(&self) -> bool {
        self.partition.is_none() && self.ranges.is_empty()
    }

    /// The newest deletion that covers the row `sort`.
    pub fn covering(&self, sort: &[u8]) -> Option<Deletion> {
        self.ranges
            .iter()
            .filter(|range| range.contains(sort))
            .map(|range| range.deletion)
            .chain(self.partition)
            .max()
    }

    /// Whether the row `(sort, cell)` is shadowed.
    pub fn shadows<V: AsRef<[u8]>>(&self, sort: &[u8], cell: &CellOf<V>) -> bool {
        self.covering(sort).is_some_and(|d| d.shadows(cell))
    }

    /// The deletions that matter to rows in `[start, end)`.
    pub fn overlapping(&self, start: &[u8], end: Option<&[u8]>) -> Deletions {
        Deletions {
            partition: self.partition,
            ranges: self
                .ranges
                .iter()
                .filter(|range| range.overlaps(start, end))
                .cloned()
                .collect(),
        }
    }

    /// Adds `other`'s deletions (union, then canonical form).
    pub fn merge(&mut self, other: &Deletions) {
        self.partition = self.partition.max(other.partition);
        self.ranges.extend(other.ranges.iter().cloned());
        self.normalize();
    }

    /// For each distinct range its newest deletion; none that the
    /// partition deletion covers, and no empty range.
    fn normalize(&mut self) {
        let partition = self.partition;
        self.ranges.retain(|range| {
            partition.is_none_or(|p| range.deletion > p)
                && range.end.as_ref().is_none_or(|end| range.start < *end)
        });
        // Newest first within a range, so dedup keeps it.
        self.ranges.sort_by(|a, b| {
            (&a.start, &a.end)
                .cmp(&(&b.start, &b.end))
                .then(b.deletion.cmp(&a.deletion))
        });
        self.ranges
            .dedup_by(|later, kept| (&later.start, &later.end) == (&kept.start, &kept.end));
    }

    /// The newest deletion of all.
    fn newest(&self) -> Option<Deletion> {
        self.ranges
            .iter()
            .map(|r| r.deletion)
            .chain(self.partition)
            .max()
    }

    /// The cell the entry is stored as (see the module docs); `None` when
    /// there is nothing to store.
    pub fn to_cell(&self) -> Option<Cell> {
        let newest = self.newest()?;
        let latest = self
            .ranges
            .iter()
            .map(|r| r.deletion.deleted_at)
            .chain(self.partition.map(|p| p.deleted_at))
            .max()?;
        Some(CellOf {
            timestamp: newest.timestamp,
            tombstone: false,
            local_deletion_time: Some(latest),
            expiry_ms_early: 0,
            value: Bytes::from(self.encode()),
        })
    }

    /// The deletions a stored entry holds.
    pub fn from_cell<V: AsRef<[u8]>>(cell: &CellOf<V>) -> Result<Self, DeletionsDecodeError> {
        Self::decode(cell.value.as_ref())
    }

    /// Bytes of [`encode`](Self::encode)'s output.
    pub fn encoded_len(&self) -> usize {
        let varint = |n: usize| prost::encoding::encoded_len_varint(n as u64);
        2 + if self.partition.is_some() { 16 } else { 0 }
            + varint(self.ranges.len())
            + self
                .ranges
                .iter()
                .map(|r| {
                    varint(r.start.len())
                        + r.start.len()
                        + 1
                        + r.end.as_ref().map_or(0, |e| varint(e.len()) + e.len())
                        + 16
                })
                .sum::<usize>()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 16 + 4 + self.ranges.len() * 32);
        out.push(FORMAT_V1);
        match self.partition {
            Some(deletion) => {
                out.push(FLAG_PARTITION);
                put_deletion(deletion, &mut out);
            }
            None => out.push(0),
        }
        prost::encoding::encode_varint(self.ranges.len() as u64, &mut out);
        for range in &self.ranges {
            put_bytes(&range.start, &mut out);
            match &range.end {
                Some(end) => {
                    out.push(1);
                    put_bytes(end, &mut out);
                }
                None => out.push(0),
            }
            put_deletion(range.deletion, &mut out);
        }
        out
    }

    pub fn decode(mut bytes: &[u8]) -> Result<Self, DeletionsDecodeError> {
        use DeletionsDecodeError::*;
        let buf = &mut bytes;
        let [format, flags] = take::<2>(buf)?;
        if format != FORMAT_V1 {
            return Err(UnknownFormat(format));
        }
        if flags & !FLAG_PARTITION != 0 {
            return Err(UnknownFlags(flags));
        }
        let partition = if flags & FLAG_PARTITION != 0 {
            Some(get_deletion(buf)?)
        } else {
            None
        };
        let count = get_varint(buf)?;
        // Each range takes at least 18 bytes: never allocate for more
        // than the input could hold.
        if count > (buf.remaining() / 18) as u64 {
            return Err(TooMany(count));
        }
        let mut ranges = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let start = get_bytes(buf)?;
            let [has_end] = take::<1>(buf)?;
            let end = if has_end != 0 {
                Some(get_bytes(buf)?)
            } else {
                None
            };
            let deletion = get_deletion(buf)?;
            ranges.push(RangeDeletion {
                start,
                end,
                deletion,
            });
        }
        let mut out = Deletions { partition, ranges };
        out.normalize();
        Ok(out)
    }
}

/// The entry that results from storing `a` and `b` under the row key
/// `key`: the union of deletions for a deletions entry, the LWW winner
/// otherwise. Every place that meets two versions of an entry (the
/// engines' merges, repair, a batch naming a key twice) calls this.
pub fn merge_entry(key: &[u8], a: Cell, b: Cell) -> Cell {
    if is_deletions_key(key)
        && let (Ok(mut union), Ok(other)) = (Deletions::from_cell(&a), Deletions::from_cell(&b))
    {
        union.merge(&other);
        if let Some(cell) = union.to_cell() {
            return cell;
        }
    }
    super::lww::merge(a, b)
}

/// Whether the row key `key` is a partition's deletions entry.
pub fn is_deletions_key(key: &[u8]) -> bool {
    super::key::split_row_key(key).is_some_and(|row| row.kind == super::key::KIND_DELETIONS)
}

/// What a write of cells of one partition must do to a store that holds
/// `current` as the partition's deletions (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The deletions the write brings (the union of its deletions
    /// entries): stored, and the stored rows they shadow removed.
    pub incoming: Option<Deletions>,
    /// For each entry, whether it is stored: every entry but a row that
    /// the stored deletions or the incoming ones shadow.
    pub keep: Vec<bool>,
}

impl Plan {
    /// Whether nothing is to be done: every entry is a shadowed row.
    pub fn is_noop(&self) -> bool {
        self.incoming.is_none() && !self.keep.contains(&true)
    }
}

fn refused(why: String) -> super::StorageError {
    super::StorageError::Refused(why)
}

/// Decides the [`Plan`] of a write of `entries` (row key, cell), applied
/// together; `current` reads the partition's stored deletions, at most
/// once. The entries must be rows or deletions entries of one partition,
/// or a single key that is not a row key (stored as it is). Refuses
/// deletions past [`MAX_RANGE_DELETIONS`], a deletions entry that deletes
/// nothing or does not decode, and entries of several partitions.
pub fn plan<C: AsRef<[u8]>>(
    entries: &[(&[u8], &CellOf<C>)],
    current: impl FnOnce(&[u8]) -> super::Result<Option<Deletions>>,
) -> super::Result<Plan> {
    let mut rows = Vec::with_capacity(entries.len());
    for (key, _) in entries {
        match super::key::split_row_key(key) {
            Some(row) => rows.push(row),
            None if entries.len() == 1 => {
                return Ok(Plan {
                    incoming: None,
                    keep: vec![true],
                });
            }
            None => {
                return Err(refused(format!(
                    "{} bytes that are not a row key in a write of several cells",
                    key.len()
                )));
            }
        }
    }
    let Some(partition) = rows.first().map(|row| row.partition) else {
        return Ok(Plan {
            incoming: None,
            keep: Vec::new(),
        });
    };
    if rows.iter().any(|row| row.partition != partition) {
        return Err(refused(
            "the cells of one write belong to one partition".into(),
        ));
    }
    let mut incoming: Option<Deletions> = None;
    for (row, (_, cell)) in rows.iter().zip(entries) {
        if row.kind != super::key::KIND_DELETIONS {
            continue;
        }
        let deletions = Deletions::from_cell(*cell)?;
        if deletions.is_empty() {
            return Err(refused("a deletions entry that deletes nothing".into()));
        }
        match &mut incoming {
            Some(union) => union.merge(&deletions),
            None => incoming = Some(deletions),
        }
    }
    let current = current(partition)?;
    if let Some(incoming) = &incoming {
        let mut union = current.clone().unwrap_or_default();
        union.merge(incoming);
        if union.ranges.len() > MAX_RANGE_DELETIONS || union.encoded_len() > MAX_DELETIONS_BYTES {
            return Err(refused(format!(
                "a partition holds at most {MAX_RANGE_DELETIONS} range deletions and {MAX_DELETIONS_BYTES} bytes of them; delete the whole partition instead"
            )));
        }
    }
    let shadowed = |sort: &[u8], cell: &CellOf<C>| {
        current.as_ref().is_some_and(|d| d.shadows(sort, cell))
            || incoming.as_ref().is_some_and(|d| d.shadows(sort, cell))
    };
    let keep = rows
        .iter()
        .zip(entries)
        .map(|(row, (_, cell))| row.kind != super::key::KIND_ROW || !shadowed(row.sort, cell))
        .collect();
    Ok(Plan { incoming, keep })
}

/// The spans of stored keys holding rows that `incoming` may shadow.
pub fn shadowed_spans(
    token: crate::ring::Token,
    partition: &[u8],
    incoming: &Deletions,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    if incoming.partition.is_some() {
        return vec![super::key::row_bounds(token, partition, b"", None)];
    }
    incoming
        .ranges
        .iter()
        .map(|range| super::key::row_bounds(token, partition, &range.start, range.end.as_deref()))
        .collect()
}

/// Whether the stored row `(stored, value)` is one `incoming` shadows.
pub fn shadowed_row(incoming: &Deletions, stored: &[u8], value: &[u8]) -> super::Result<bool> {
    let Some(row) =
        super::key::decode_data_key(stored).and_then(|(_, k)| super::key::split_row_key(k))
    else {
        return Ok(false);
    };
    Ok(incoming.shadows(row.sort, &super::CellView::decode(value)?))
}

/// Reads a stored deletions entry.
pub fn decode_stored(bytes: &[u8]) -> super::Result<Deletions> {
    let cell = super::CellView::decode(bytes)?;
    Ok(Deletions::from_cell(&cell)?)
}

fn put_deletion(deletion: Deletion, out: &mut Vec<u8>) {
    out.extend_from_slice(&deletion.timestamp.to_be_bytes());
    out.extend_from_slice(&deletion.deleted_at.to_be_bytes());
}

fn get_deletion(buf: &mut &[u8]) -> Result<Deletion, DeletionsDecodeError> {
    let timestamp = i64::from_be_bytes(take::<8>(buf)?);
    let deleted_at = i64::from_be_bytes(take::<8>(buf)?);
    Ok(Deletion {
        timestamp,
        deleted_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(timestamp: i64) -> Deletion {
        Deletion {
            timestamp,
            deleted_at: 100 + timestamp,
        }
    }

    fn range(start: &'static str, end: Option<&'static str>, ts: i64) -> Deletions {
        Deletions::of_range(
            Bytes::from_static(start.as_bytes()),
            end.map(|e| Bytes::from_static(e.as_bytes())),
            d(ts),
        )
    }

    fn any_deletions() -> impl Strategy<Value = Deletions> {
        let key = || proptest::collection::vec(0u8..4, 0..3).prop_map(Bytes::from);
        let deletion = (0i64..6, 0i64..3).prop_map(|(timestamp, deleted_at)| Deletion {
            timestamp,
            deleted_at,
        });
        (
            proptest::option::of(deletion.clone()),
            proptest::collection::vec((key(), proptest::option::of(key()), deletion), 0..5),
        )
            .prop_map(|(partition, ranges)| {
                let mut out = Deletions {
                    partition,
                    ranges: ranges
                        .into_iter()
                        .map(|(start, end, deletion)| RangeDeletion {
                            start,
                            end,
                            deletion,
                        })
                        .collect(),
                };
                out.normalize();
                out
            })
    }

    fn merged(a: &Deletions, b: &Deletions) -> Deletions {
        let mut out = a.clone();
        out.merge(b);
        out
    }

    #[test]
    fn what_a_deletion_covers() {
        let mut all = range("b", Some("d"), 5);
        all.merge(&range("x", None, 7));
        assert_eq!(all.covering(b"a"), None);
        assert_eq!(all.covering(b"b"), Some(d(5)));
        assert_eq!(all.covering(b"c\xff"), Some(d(5)));
        assert_eq!(all.covering(b"d"), None, "the end is exclusive");
        assert_eq!(all.covering(b"zzz"), Some(d(7)));
        all.merge(&Deletions::of_partition(d(6)));
        // The partition deletion covers the older range: it goes.
        assert_eq!(all.ranges.len(), 1);
        assert_eq!(all.covering(b"a"), Some(d(6)));
        assert_eq!(all.covering(b"y"), Some(d(7)));

        let row = |ts| Cell::live(ts, Bytes::from_static(b"v"), None);
        assert!(all.shadows(b"a", &row(6)), "a tie goes to the delete");
        assert!(!all.shadows(b"a", &row(7)));
        assert!(all.shadows(b"y", &row(7)));
    }

    #[test]
    fn overlapping_ranges() {
        let r = RangeDeletion {
            start: Bytes::from_static(b"b"),
            end: Some(Bytes::from_static(b"d")),
            deletion: d(1),
        };
        assert!(r.overlaps(b"a", Some(b"c")));
        assert!(r.overlaps(b"c", None));
        assert!(!r.overlaps(b"d", None));
        assert!(!r.overlaps(b"a", Some(b"b")));
        let open = range("m", None, 1);
        assert_eq!(open.overlapping(b"a", Some(b"c")).ranges.len(), 0);
        assert_eq!(open.overlapping(b"a", None).ranges.len(), 1);
    }

    #[test]
    fn decoding_refuses_what_it_cannot_hold() {
        assert_eq!(Deletions::decode(&[]), Err(DeletionsDecodeError::Truncated));
        assert_eq!(
            Deletions::decode(&[9, 0, 0]),
            Err(DeletionsDecodeError::UnknownFormat(9))
        );
        assert_eq!(
            Deletions::decode(&[1, 4, 0]),
            Err(DeletionsDecodeError::UnknownFlags(4))
        );
        // A count far past what the bytes hold allocates nothing.
        let mut huge = vec![1, 0];
        prost::encoding::encode_varint(u64::MAX, &mut huge);
        assert!(matches!(
            Deletions::decode(&huge),
            Err(DeletionsDecodeError::TooMany(_))
        ));
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(a in any_deletions()) {
            prop_assert_eq!(a.encoded_len(), a.encode().len());
            prop_assert_eq!(Deletions::decode(&a.encode()), Ok(a.clone()));
            if let Some(cell) = a.to_cell() {
                prop_assert_eq!(Deletions::from_cell(&cell), Ok(a));
            } else {
                prop_assert!(a.is_empty());
            }
        }

        #[test]
        fn merge_is_commutative_associative_idempotent(
            a in any_deletions(), b in any_deletions(), c in any_deletions()
        ) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(merged(&a, &merged(&b, &c)), merged(&merged(&a, &b), &c));
            prop_assert_eq!(merged(&a, &a), a.clone());
            // Equal deletions, equal bytes: Merkle trees agree.
            prop_assert_eq!(merged(&a, &b).encode(), merged(&b, &a).encode());
        }

        /// The union covers each row with the newest deletion either side
        /// covers it with: nothing is lost by merging.
        #[test]
        fn merge_keeps_every_deletion(
            a in any_deletions(), b in any_deletions(),
            sort in proptest::collection::vec(0u8..4, 0..3)
        ) {
            prop_assert_eq!(
                merged(&a, &b).covering(&sort),
                a.covering(&sort).max(b.covering(&sort))
            );
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Deletions::decode(&bytes);
        }
    }
}
