//! Consistency levels as the client names them.

use std::fmt;
use std::str::FromStr;

use ringkv_proto::v1 as pb;

/// How many replicas must answer a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Consistency {
    /// One replica.
    One,
    /// Two replicas.
    Two,
    /// Three replicas.
    Three,
    /// ⌊N/2⌋ + 1 replicas: QUORUM reads see QUORUM writes. The default.
    #[default]
    Quorum,
    /// Every replica of the key.
    All,
    /// Writes only: any node holding the write (a stored hint counts).
    Any,
}

impl Consistency {
    /// Every level.
    pub const LEVELS: [Consistency; 6] = [
        Self::One,
        Self::Two,
        Self::Three,
        Self::Quorum,
        Self::All,
        Self::Any,
    ];

    /// The level's name in capitals, as shells print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::One => "ONE",
            Self::Two => "TWO",
            Self::Three => "THREE",
            Self::Quorum => "QUORUM",
            Self::All => "ALL",
            Self::Any => "ANY",
        }
    }

    pub(crate) fn to_proto(self) -> i32 {
        let level = match self {
            Self::One => pb::ConsistencyLevel::One,
            Self::Two => pb::ConsistencyLevel::Two,
            Self::Three => pb::ConsistencyLevel::Three,
            Self::Quorum => pb::ConsistencyLevel::Quorum,
            Self::All => pb::ConsistencyLevel::All,
            Self::Any => pb::ConsistencyLevel::Any,
        };
        level as i32
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a consistency level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown consistency level {0:?} (expected ONE, TWO, THREE, QUORUM, ALL or ANY)")]
pub struct UnknownConsistency(pub String);

impl FromStr for Consistency {
    type Err = UnknownConsistency;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::LEVELS
            .into_iter()
            .find(|level| level.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownConsistency(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for level in Consistency::LEVELS {
            assert_eq!(level.name().parse(), Ok(level));
            assert_eq!(level.name().to_lowercase().parse(), Ok(level));
        }
        assert!("SOME".parse::<Consistency>().is_err());
    }
}
