//! Consistency levels: how many replicas must answer.

use std::fmt;
use std::str::FromStr;

/// How many of a key's N replicas must acknowledge a request.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumCount, strum::EnumIter, strum::IntoStaticStr,
)]
#[strum(serialize_all = "lowercase")]
pub enum ConsistencyLevel {
    One,
    Two,
    Three,
    /// ⌊N/2⌋ + 1: a read and a write at QUORUM always share a replica.
    Quorum,
    All,
    /// Writes only: succeeds once any node holds the write, a stored hint
    /// included.
    Any,
}

impl ConsistencyLevel {
    /// Every level, in the order shells list them.
    pub const ALL_LEVELS: [ConsistencyLevel; 6] = [
        Self::One,
        Self::Two,
        Self::Three,
        Self::Quorum,
        Self::All,
        Self::Any,
    ];

    /// Acknowledgements required with replication factor `n`.
    pub fn required(self, n: usize) -> usize {
        match self {
            Self::One | Self::Any => 1,
            Self::Two => 2,
            Self::Three => 3,
            Self::Quorum => n / 2 + 1,
            Self::All => n,
        }
    }

    /// The level as a metric label: its name in lower case.
    pub fn label(self) -> &'static str {
        self.into()
    }

    /// The level's name as clients write it.
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
}

impl fmt::Display for ConsistencyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ConsistencyLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL_LEVELS
            .into_iter()
            .find(|level| level.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown consistency level {s:?} (expected ONE, TWO, THREE, QUORUM, ALL or ANY)"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::ConsistencyLevel::*;
    use super::*;

    #[test]
    fn required_acknowledgements() {
        let table = [
            (One, 3, 1),
            (Two, 3, 2),
            (Three, 3, 3),
            (Quorum, 1, 1),
            (Quorum, 2, 2),
            (Quorum, 3, 2),
            (Quorum, 4, 3),
            (Quorum, 5, 3),
            (All, 5, 5),
            (Any, 3, 1),
        ];
        for (level, n, required) in table {
            assert_eq!(level.required(n), required, "{level} with N={n}");
        }
    }

    #[test]
    fn parses_names_case_insensitively() {
        assert_eq!("quorum".parse(), Ok(Quorum));
        assert_eq!("ALL".parse(), Ok(All));
        assert!("most".parse::<ConsistencyLevel>().is_err());
    }
}
