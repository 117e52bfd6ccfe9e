//! Layout of keys in the `rows` column family.
//!
//! A stored key is the partition's token as 8 order-preserving bytes
//! followed by the *row key*:
//!
//! ```text
//! token (8 bytes) ++ varint(len(partition key)) ++ partition key ++ kind ++ sort key
//! ```
//!
//! `kind` is [`KIND_DELETIONS`] for the entry that holds a partition's
//! partition and range deletions (it has no sort key and sorts before the
//! partition's rows) or [`KIND_ROW`] for a row. A plain key is the row
//! with the empty sort key.
//!
//! RocksDB sorts keys bytewise, so
//! - all keys of one token range form one contiguous RocksDB range:
//!   streaming a range to a new node, building its Merkle tree and dropping
//!   it after a move are range scans;
//! - the entries of one partition are contiguous (the length prefix makes
//!   no partition's prefix a prefix of another's, even when two partition
//!   keys share a token) and its rows are sorted by sort key.
//!
//! Every layer below the coordinator carries row keys: replica requests,
//! hints, streams and Merkle trees. The token of a row key is its
//! partition's ([`partition_token`]).

use crate::ring::{Token, TokenRange};

/// Bytes of the token prefix.
pub const TOKEN_PREFIX_LEN: usize = 8;

/// The kind byte of a partition's deletions entry.
pub const KIND_DELETIONS: u8 = 0;
/// The kind byte of a row.
pub const KIND_ROW: u8 = 1;

/// A row key split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowKeyRef<'a> {
    pub partition: &'a [u8],
    /// [`KIND_DELETIONS`] or [`KIND_ROW`].
    pub kind: u8,
    /// Empty for a deletions entry and for a plain key.
    pub sort: &'a [u8],
}

/// Appends the row key of `(partition, sort)` to `out`.
pub fn encode_row_key(partition: &[u8], sort: &[u8], out: &mut Vec<u8>) {
    encode_entry_key(partition, KIND_ROW, sort, out);
}

fn encode_entry_key(partition: &[u8], kind: u8, sort: &[u8], out: &mut Vec<u8>) {
    out.reserve(
        prost::encoding::encoded_len_varint(partition.len() as u64)
            + partition.len()
            + 1
            + sort.len(),
    );
    prost::encoding::encode_varint(partition.len() as u64, out);
    out.extend_from_slice(partition);
    out.push(kind);
    out.extend_from_slice(sort);
}

/// The row key of `(partition, sort)`.
pub fn row_key(partition: &[u8], sort: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_row_key(partition, sort, &mut out);
    out
}

/// The row key of the plain key `key` (the row with the empty sort key).
pub fn plain_key(key: &[u8]) -> Vec<u8> {
    row_key(key, b"")
}

/// The key of `partition`'s deletions entry.
pub fn deletions_key(partition: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_entry_key(partition, KIND_DELETIONS, b"", &mut out);
    out
}

/// Splits a row key; `None` if it is not one.
pub fn split_row_key(key: &[u8]) -> Option<RowKeyRef<'_>> {
    let mut rest = key;
    let len = prost::encoding::decode_varint(&mut rest).ok()?;
    let len = usize::try_from(len).ok()?;
    let partition = rest.get(..len)?;
    let (&kind, sort) = rest.get(len..)?.split_first()?;
    match kind {
        KIND_ROW => {}
        KIND_DELETIONS if sort.is_empty() => {}
        _ => return None,
    }
    // A varint has one shortest encoding; any other is not a row key.
    if key.len() - rest.len() != prost::encoding::encoded_len_varint(len as u64) {
        return None;
    }
    Some(RowKeyRef {
        partition,
        kind,
        sort,
    })
}

/// The token of the partition a row key belongs to; `None` if `key` is
/// not a row key.
pub fn partition_token(key: &[u8]) -> Option<Token> {
    split_row_key(key).map(|row| Token::of(row.partition))
}

/// The stored keys of `partition`'s rows whose sort keys lie in
/// `[start, end)` (`end`: `None` for the end of the partition), as a
/// half-open range of stored keys.
pub fn row_bounds(
    token: Token,
    partition: &[u8],
    start: &[u8],
    end: Option<&[u8]>,
) -> (Vec<u8>, Vec<u8>) {
    let stored = |kind: u8, sort: &[u8]| {
        let mut out = token.to_ordered_bytes().to_vec();
        encode_entry_key(partition, kind, sort, &mut out);
        out
    };
    let to = match end {
        Some(end) => stored(KIND_ROW, end),
        // Past every row: the kind after rows.
        None => stored(KIND_ROW + 1, b""),
    };
    (stored(KIND_ROW, start), to)
}

/// Writes the stored form of `(token, key)` into `out` (cleared first).
pub fn encode_data_key(token: Token, key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(TOKEN_PREFIX_LEN + key.len());
    out.extend_from_slice(&token.to_ordered_bytes());
    out.extend_from_slice(key);
}

/// The stored form of `(token, key)`.
pub fn data_key(token: Token, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_data_key(token, key, &mut out);
    out
}

/// Splits a stored key into its token and row key; `None` if it is too
/// short to hold a token.
pub fn decode_data_key(stored: &[u8]) -> Option<(Token, &[u8])> {
    let (prefix, key) = stored.split_first_chunk::<TOKEN_PREFIX_LEN>()?;
    Some((Token::from_ordered_bytes(*prefix), key))
}

/// The non-wrapping pieces of a range: `(start, end]` with `start < end`,
/// as (first token, last token) pairs.
pub fn pieces(range: TokenRange) -> Vec<(Token, Token)> {
    let after = |t: Token| Token(t.0.saturating_add(1));
    if range.start < range.end {
        vec![(after(range.start), range.end)]
    } else {
        // Wraps (or is the whole ring): past the start to the top, then
        // from the bottom to the end. The minimum token holds no keys.
        let mut out = Vec::with_capacity(2);
        if range.start < Token::MAX {
            out.push((after(range.start), Token::MAX));
        }
        out.push((Token(i64::MIN + 1), range.end));
        out
    }
}

/// Where each remaining piece of a paged scan of `range` starts, after
/// the row key `after`: (first stored key to read, last token of the
/// piece), in scan order. `None` when `after` is not a row key in `range`.
pub fn page_starts(range: TokenRange, after: Option<&[u8]>) -> Option<Vec<(Vec<u8>, Token)>> {
    let pieces = pieces(range);
    let Some(after) = after else {
        return Some(
            pieces
                .into_iter()
                .map(|(first, last)| (first.to_ordered_bytes().to_vec(), last))
                .collect(),
        );
    };
    let token = partition_token(after)?;
    let at = pieces
        .iter()
        .position(|(first, last)| *first <= token && token <= *last)?;
    let mut starts = Vec::with_capacity(pieces.len() - at);
    // The smallest stored key greater than `after`'s own.
    let mut resume = data_key(token, after);
    resume.push(0);
    starts.push((resume, pieces[at].1));
    starts.extend(
        pieces[at + 1..]
            .iter()
            .map(|(first, last)| (first.to_ordered_bytes().to_vec(), *last)),
    );
    Some(starts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..300)
    }

    proptest! {
        #[test]
        fn round_trip(partition in bytes(), sort in bytes()) {
            let key = row_key(&partition, &sort);
            let token = partition_token(&key).ok_or_else(|| TestCaseError::fail("not a row key"))?;
            prop_assert_eq!(token, Token::of(&partition));
            let stored = data_key(token, &key);
            prop_assert_eq!(decode_data_key(&stored), Some((token, key.as_slice())));
            prop_assert_eq!(
                split_row_key(&key),
                Some(RowKeyRef { partition: &partition, kind: KIND_ROW, sort: &sort })
            );
            let deletions = deletions_key(&partition);
            prop_assert_eq!(
                split_row_key(&deletions),
                Some(RowKeyRef { partition: &partition, kind: KIND_DELETIONS, sort: &[] })
            );
        }

        #[test]
        fn stored_order_follows_token_order(a in bytes(), b in bytes(), sa in bytes(), sb in bytes()) {
            let (ta, tb) = (Token::of(&a), Token::of(&b));
            if ta != tb {
                prop_assert_eq!(
                    ta.cmp(&tb),
                    data_key(ta, &row_key(&a, &sa)).cmp(&data_key(tb, &row_key(&b, &sb)))
                );
            }
        }

        /// Within a partition, rows sort by sort key after its deletions
        /// entry; the entries of two partitions never interleave, even
        /// under one token.
        #[test]
        fn partitions_are_contiguous_and_sorted(
            a in bytes(), b in bytes(), sa in bytes(), sb in bytes(), sc in bytes()
        ) {
            prop_assert_eq!(row_key(&a, &sa).cmp(&row_key(&a, &sb)), sa.cmp(&sb));
            prop_assert!(deletions_key(&a) < row_key(&a, &sa));
            if a != b {
                // Every entry of `b` is on one side of all of `a`'s.
                let side = |k: Vec<u8>| k.cmp(&deletions_key(&a));
                let low = side(row_key(&b, &sb));
                prop_assert_eq!(low, side(deletions_key(&b)));
                prop_assert_eq!(row_key(&b, &sb).cmp(&row_key(&a, &sc)), low);
                prop_assert_eq!(row_key(&b, &sb).cmp(&row_key(&a, &sa)), low);
            }
        }

        #[test]
        fn splitting_garbage_never_panics(key in bytes()) {
            if let Some(row) = split_row_key(&key) {
                // Whatever splits encodes back to itself.
                let mut again = Vec::new();
                encode_entry_key(row.partition, row.kind, row.sort, &mut again);
                prop_assert_eq!(again, key);
            }
        }
    }

    #[test]
    fn a_partition_key_of_64_kib_has_a_three_byte_length() {
        let partition = vec![b'k'; 64 * 1024];
        let key = plain_key(&partition);
        assert_eq!(key.len(), 3 + partition.len() + 1);
        assert_eq!(
            split_row_key(&key).map(|r| r.partition.len()),
            Some(64 * 1024)
        );
    }

    #[test]
    fn row_bounds_hold_exactly_the_rows_of_their_range() {
        let token = Token::of(b"p");
        let stored = |partition: &[u8], sort: &[u8]| data_key(token, &row_key(partition, sort));
        let (from, to) = row_bounds(token, b"p", b"b", Some(b"d"));
        let inside = |key: &Vec<u8>| from <= *key && *key < to;
        assert!(inside(&stored(b"p", b"b")));
        assert!(inside(&stored(b"p", b"c\xff\xff")));
        assert!(!inside(&stored(b"p", b"d")));
        assert!(!inside(&stored(b"p", b"a")));
        let (from, to) = row_bounds(token, b"p", b"", None);
        let inside = |key: &Vec<u8>| from <= *key && *key < to;
        assert!(inside(&stored(b"p", b"")));
        assert!(inside(&stored(b"p", &[0xff; 40])));
        assert!(!inside(&data_key(token, &deletions_key(b"p"))));
        // Another partition under the same token.
        assert!(!inside(&stored(b"pp", b"")));
        assert!(!inside(&stored(b"", b"p")));
    }

    #[test]
    fn what_is_not_a_row_key() {
        assert_eq!(split_row_key(b""), None);
        // Length past the end.
        assert_eq!(split_row_key(b"\x05ab\x01"), None);
        // No kind byte.
        assert_eq!(split_row_key(b"\x02ab"), None);
        // Unknown kind, and a deletions entry with a sort key.
        assert_eq!(split_row_key(b"\x02ab\x07"), None);
        assert_eq!(split_row_key(b"\x02ab\x00x"), None);
        // A length in a longer varint than needed.
        assert_eq!(split_row_key(b"\x82\x00ab\x01"), None);
        assert_eq!(partition_token(b"\x02ab\x01"), Some(Token::of(b"ab")));
    }
}
