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

    /// True when every token of `inner` is in this range.
    pub fn encloses(&self, inner: &TokenRange) -> bool {
        if self.width() == RING_SIZE {
            return true;
        }
        // `inner` ends inside this range and starts no earlier than it.
        self.contains(inner.end) && inner.width() <= TokenRange::new(self.start, inner.end).width()
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

    #[test]
    fn encloses() {
        let r = TokenRange::new(Token(10), Token(20));
        assert!(r.encloses(&r));
        assert!(r.encloses(&TokenRange::new(Token(12), Token(20))));
        assert!(r.encloses(&TokenRange::new(Token(10), Token(11))));
        assert!(
            !r.encloses(&TokenRange::new(Token(9), Token(20))),
            "starts before"
        );
        assert!(
            !r.encloses(&TokenRange::new(Token(12), Token(21))),
            "ends after"
        );
        assert!(
            !r.encloses(&TokenRange::new(Token(20), Token(20))),
            "the whole ring"
        );
        assert!(
            !r.encloses(&TokenRange::new(Token(15), Token(12))),
            "wraps around it"
        );
        let wrap = TokenRange::new(Token(100), Token(-100));
        assert!(wrap.encloses(&TokenRange::new(Token(i64::MAX - 5), Token(-200))));
        assert!(!wrap.encloses(&TokenRange::new(Token(0), Token(-200))));
        let whole = TokenRange::new(Token(5), Token(5));
        assert!(whole.encloses(&TokenRange::new(Token(-3), Token(-3))));
    }

    proptest! {
        #[test]
        fn a_range_encloses_exactly_the_ranges_inside_it(start: i64, end: i64, a: u64, b: u64) {
            let outer = TokenRange::new(Token(start), Token(end));
            let w = outer.width();
            let (a, b) = (u128::from(a) % w, u128::from(b) % w);
            let (lo, hi) = (a.min(b), a.max(b).max(1));
            // Pieces of the range are enclosed by it.
            let inner = TokenRange::new(outer.token_after_start(lo), outer.token_after_start(hi));
            if lo < hi {
                prop_assert!(outer.encloses(&inner));
            }
            // A range that starts one token earlier sticks out.
            if w < RING_SIZE {
                let early = TokenRange::new(outer.token_after_start(RING_SIZE - 1), inner.end);
                prop_assert!(!outer.encloses(&early));
            }
        }

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
