//! Tokens: positions on the ring. The key → token function lives in
//! `ringkv_proto::partitioner`, shared with clients that route by token.

use std::fmt;

/// A position on the ring, `i64::MIN` excluded.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Token(pub i64);

impl Token {
    /// The ring's minimum: smaller than every key's token.
    pub const MIN: Token = Token(i64::MIN);
    /// The largest token.
    pub const MAX: Token = Token(i64::MAX);

    /// The token of a key.
    pub fn of(key: &[u8]) -> Token {
        Token(ringkv_proto::partitioner::token_of(key))
    }

    /// The token as 8 bytes whose byte order is the token order
    /// (big-endian with the sign bit flipped).
    pub fn to_ordered_bytes(self) -> [u8; 8] {
        ((self.0 as u64) ^ (1 << 63)).to_be_bytes()
    }

    /// The inverse of [`Token::to_ordered_bytes`].
    pub fn from_ordered_bytes(bytes: [u8; 8]) -> Token {
        Token((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ordered_bytes_keep_token_order(a: i64, b: i64) {
            let (ta, tb) = (Token(a), Token(b));
            prop_assert_eq!(ta.cmp(&tb), ta.to_ordered_bytes().cmp(&tb.to_ordered_bytes()));
            prop_assert_eq!(Token::from_ordered_bytes(ta.to_ordered_bytes()), ta);
        }

        #[test]
        fn no_key_gets_the_minimum_token(key: Vec<u8>) {
            prop_assert_ne!(Token::of(&key), Token::MIN);
        }
    }
}
