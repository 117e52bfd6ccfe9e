//! Layout of keys in the `data` column family.
//!
//! A stored key is the key's token as 8 order-preserving bytes followed by
//! the user key. RocksDB sorts keys bytewise, so all keys of one token range
//! form one contiguous RocksDB range: streaming a range to a new node,
//! building its Merkle tree and dropping it after a move are range scans.

use crate::ring::{Token, TokenRange};

/// Bytes of the token prefix.
pub const TOKEN_PREFIX_LEN: usize = 8;

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

/// Splits a stored key into its token and user key; `None` if it is too
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
/// the user key `after`: (first stored key to read, last token of the
/// piece), in scan order. `None` when `after` is not in `range`.
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
    let token = Token::of(after);
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

    proptest! {
        #[test]
        fn round_trip(key in proptest::collection::vec(any::<u8>(), 0..32)) {
            let token = Token::of(&key);
            let stored = data_key(token, &key);
            prop_assert_eq!(decode_data_key(&stored), Some((token, key.as_slice())));
        }

        #[test]
        fn stored_order_follows_token_order(a: Vec<u8>, b: Vec<u8>) {
            let (ta, tb) = (Token::of(&a), Token::of(&b));
            if ta != tb {
                prop_assert_eq!(ta.cmp(&tb), data_key(ta, &a).cmp(&data_key(tb, &b)));
            }
        }
    }
}
