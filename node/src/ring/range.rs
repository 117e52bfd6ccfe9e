//! Token ranges: the unit of ownership, streaming and repair.

use std::fmt;

use super::Token;

/// Number of distinct token positions on the ring (2^64).
pub const RING_SIZE: u128 = 1 << 64;

/// The tokens in `(start, end]`. When `start >= end` the range wraps past
/// the largest token; `start == end` is the whole ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenRange {
    pub start: Token,
    pub end: Token,
}

impl TokenRange {
    pub fn new(start: Token, end: Token) -> Self {
        Self { start, end }
    }

    /// True when `token` is in the range.
    pub fn contains(&self, token: Token) -> bool {
        if self.start < self.end {
            self.start < token && token <= self.end
        } else {
            token > self.start || token <= self.end
        }
    }

    /// How many token positions the range spans (1 ..= 2^64).
    pub fn width(&self) -> u128 {
        let width = (i128::from(self.end.0) - i128::from(self.start.0))
            .rem_euclid(RING_SIZE as i128) as u128;
        if width == 0 { RING_SIZE } else { width }
    }

    /// The range's share of the ring, in (0, 1].
    pub fn fraction(&self) -> f64 {
        self.width() as f64 / RING_SIZE as f64
    }

    /// The token `offset` positions after `start` (wrapping).
    pub fn token_after_start(&self, offset: u128) -> Token {
        Token((self.start.0 as i128 + offset as i128).rem_euclid(RING_SIZE as i128) as u64 as i64)
    }

    /// Splits the range into `parts` consecutive sub-ranges of near-equal
    /// width (fewer if the range is narrower than `parts`).
    pub fn split(&self, parts: usize) -> Vec<TokenRange> {
        let width = self.width();
        let parts = (parts.max(1) as u128).min(width);
        let mut out = Vec::with_capacity(parts as usize);
        let mut start = self.start;
        for i in 1..=parts {
            let end = if i == parts {
                self.end
            } else {
                self.token_after_start(width * i / parts)
            };
            out.push(TokenRange::new(start, end));
            start = end;
        }
        out
    }
}

impl fmt::Display for TokenRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}]", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn contains_and_wraps() {
        let r = TokenRange::new(Token(10), Token(20));
        assert!(!r.contains(Token(10)));
        assert!(r.contains(Token(11)) && r.contains(Token(20)));
        assert!(!r.contains(Token(21)));
        let wrap = TokenRange::new(Token(100), Token(-100));
        assert!(wrap.contains(Token(i64::MAX)) && wrap.contains(Token(-100)));
        assert!(!wrap.contains(Token(0)));
        let whole = TokenRange::new(Token(5), Token(5));
        assert!(whole.contains(Token(5)) && whole.contains(Token(-7)));
        assert_eq!(whole.width(), RING_SIZE);
        assert_eq!(r.width(), 10);
        assert_eq!(wrap.width(), RING_SIZE - 200);
    }

    proptest! {
        #[test]
        fn split_covers_the_range_exactly(start: i64, end: i64, parts in 1usize..64, probe: i64) {
            let range = TokenRange::new(Token(start), Token(end));
            let pieces = range.split(parts);
            prop_assert_eq!(pieces.first().map(|p| p.start), Some(range.start));
            prop_assert_eq!(pieces.last().map(|p| p.end), Some(range.end));
            prop_assert_eq!(pieces.iter().map(|p| p.width()).sum::<u128>(), range.width());
            let holders = pieces.iter().filter(|p| p.contains(Token(probe))).count();
            prop_assert_eq!(holders, usize::from(range.contains(Token(probe))));
        }
    }
}
