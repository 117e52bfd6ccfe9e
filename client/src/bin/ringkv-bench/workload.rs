//! Workloads: what mix of operations a run sends, as YCSB defines them.
//!
//! | workload | mix | keys |
//! |---|---|---|
//! | a | 50% read, 50% update | zipfian |
//! | b | 95% read, 5% update | zipfian |
//! | c | 100% read | zipfian |
//! | d | 95% read, 5% insert | latest |
//! | f | 50% read, 50% read-modify-write | zipfian |
//! | e | 95% scan (1 to `--scan-max` rows), 5% insert | zipfian |
//! | ts | 50% append (a row past the partition's last), 50% latest (its last `--latest` rows) | uniform partitions |
//! | batch | 100% partition batches of `--batch-size` rows | uniform partitions |
//! | custom | `--mix read=..,update=..,insert=..,delete=..,rmw=..,scan=..,latest=..,append=..,batch=..` | zipfian |
//!
//! Workloads e, ts and batch work on rows (`--rows-per-partition`): record
//! i is the row `i % N` of the partition `i / N`.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use crate::keys::Distribution;

/// One kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// GET an existing key.
    Read,
    /// PUT a new value for an existing key.
    Update,
    /// PUT a key that did not exist.
    Insert,
    /// DELETE an existing key.
    Delete,
    /// GET then PUT the same key, timed as one operation.
    ReadModifyWrite,
    /// A range read of 1 to `--scan-max` rows from a record on, within its
    /// partition (YCSB's scan).
    Scan,
    /// The last `--latest` rows of a partition, newest first.
    Latest,
    /// A row written past the last one of a partition.
    Append,
    /// A partition batch of `--batch-size` rows.
    Batch,
}

impl OpKind {
    pub const ALL: [OpKind; 9] = [
        OpKind::Read,
        OpKind::Update,
        OpKind::Insert,
        OpKind::Delete,
        OpKind::ReadModifyWrite,
        OpKind::Scan,
        OpKind::Latest,
        OpKind::Append,
        OpKind::Batch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Update => "update",
            OpKind::Insert => "insert",
            OpKind::Delete => "delete",
            OpKind::ReadModifyWrite => "rmw",
            OpKind::Scan => "scan",
            OpKind::Latest => "latest",
            OpKind::Append => "append",
            OpKind::Batch => "batch",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Proportions of each operation; they sum to 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    weights: Vec<(OpKind, f64)>,
}

impl Mix {
    /// A mix from (kind, weight) pairs; weights are normalised.
    pub fn new(weights: &[(OpKind, f64)]) -> Result<Mix, String> {
        if weights.iter().any(|(_, w)| !w.is_finite() || *w < 0.0) {
            return Err("mix weights must be non-negative numbers".into());
        }
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        if total <= 0.0 {
            return Err("the mix has no operations".into());
        }
        Ok(Mix {
            weights: weights
                .iter()
                .filter(|(_, w)| *w > 0.0)
                .map(|(k, w)| (*k, w / total))
                .collect(),
        })
    }

    /// Draws an operation.
    pub fn sample(&self, rng: &mut impl Rng) -> OpKind {
        let mut x: f64 = rng.random();
        for (kind, weight) in &self.weights {
            if x < *weight {
                return *kind;
            }
            x -= weight;
        }
        self.weights.last().map_or(OpKind::Read, |(k, _)| *k)
    }

    /// The share of `kind`.
    #[cfg(test)]
    pub fn share(&self, kind: OpKind) -> f64 {
        self.weights
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0.0, |(_, w)| *w)
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `read=0.5,update=0.5` (weights need not sum to 1).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut weights = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("bad mix entry {part:?}: expected op=weight"))?;
            let kind = OpKind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| {
                    format!(
                        "unknown operation {name:?} (read, update, insert, delete, rmw, scan, latest, append, batch)"
                    )
                })?;
            let weight: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("bad weight {value:?}"))?;
            weights.push((kind, weight));
        }
        Mix::new(&weights)
    }
}

/// A named workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadName {
    A,
    B,
    C,
    D,
    E,
    F,
    Ts,
    Batch,
    Custom,
}

impl WorkloadName {
    /// The workload's mix (custom: `custom`) and default key distribution.
    pub fn mix(self, custom: Option<&Mix>) -> Result<(Mix, Distribution), String> {
        use OpKind::*;
        let fixed = |w: &[(OpKind, f64)], d| Mix::new(w).map(|m| (m, d));
        match self {
            WorkloadName::A => fixed(&[(Read, 0.5), (Update, 0.5)], Distribution::Zipfian),
            WorkloadName::B => fixed(&[(Read, 0.95), (Update, 0.05)], Distribution::Zipfian),
            WorkloadName::C => fixed(&[(Read, 1.0)], Distribution::Zipfian),
            WorkloadName::D => fixed(&[(Read, 0.95), (Insert, 0.05)], Distribution::Latest),
            WorkloadName::E => fixed(&[(Scan, 0.95), (Insert, 0.05)], Distribution::Zipfian),
            WorkloadName::F => fixed(
                &[(Read, 0.5), (ReadModifyWrite, 0.5)],
                Distribution::Zipfian,
            ),
            WorkloadName::Ts => fixed(&[(Append, 0.5), (Latest, 0.5)], Distribution::Uniform),
            WorkloadName::Batch => fixed(&[(Batch, 1.0)], Distribution::Uniform),
            WorkloadName::Custom => custom
                .cloned()
                .map(|m| (m, Distribution::Zipfian))
                .ok_or_else(|| "--workload custom needs --mix".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn observed(mix: &Mix, n: usize) -> std::collections::BTreeMap<OpKind, f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..n {
            *counts.entry(mix.sample(&mut rng)).or_insert(0.0) += 1.0;
        }
        counts.values_mut().for_each(|c| *c /= n as f64);
        counts
    }

    #[test]
    fn sampled_proportions_match_the_mix() {
        for name in [
            WorkloadName::A,
            WorkloadName::B,
            WorkloadName::C,
            WorkloadName::D,
            WorkloadName::E,
            WorkloadName::F,
            WorkloadName::Ts,
            WorkloadName::Batch,
        ] {
            let (mix, _) = name.mix(None).expect("mix");
            let seen = observed(&mix, 200_000);
            for kind in OpKind::ALL {
                let want = mix.share(kind);
                let got = seen.get(&kind).copied().unwrap_or(0.0);
                assert!(
                    (want - got).abs() < 0.005,
                    "{name:?} {kind}: want {want}, got {got}"
                );
            }
        }
    }

    #[test]
    fn custom_mixes_parse_and_normalise() {
        let mix: Mix = "read=3, update=1".parse().expect("mix");
        assert!((mix.share(OpKind::Read) - 0.75).abs() < 1e-9);
        let seen = observed(&mix, 100_000);
        assert!((seen[&OpKind::Read] - 0.75).abs() < 0.01);
        assert!("read=1,scan=1".parse::<Mix>().is_ok());
        assert!("read=1,sweep=1".parse::<Mix>().is_err());
        assert!("read=-1".parse::<Mix>().is_err());
        assert!("read=0".parse::<Mix>().is_err());
        assert!(WorkloadName::Custom.mix(None).is_err());
    }
}
