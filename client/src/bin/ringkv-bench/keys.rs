//! Which key each operation touches.
//!
//! - uniform: every record equally likely;
//! - zipfian: popularity follows Zipf's law with exponent 0.99 (YCSB's
//!   constant), and item ranks are scrambled by a hash so the popular keys
//!   are spread over the key space (YCSB's "scrambled zipfian") rather than
//!   packed at its start;
//! - latest: Zipfian over recency — the most recently inserted records are
//!   the most popular (YCSB workload d).
//!
//! Keys are `prefix` + the record number, zero-padded to 12 digits.

use rand::Rng;
use rand_distr::{Distribution as _, Zipf};

/// YCSB's Zipfian constant.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

/// How keys are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Distribution {
    Uniform,
    Zipfian,
    Latest,
}

/// The key of record `index`.
pub fn key(prefix: &str, index: u64) -> String {
    format!("{prefix}{index:012}")
}

/// A 64-bit mix (SplitMix64's finaliser): spreads ranks over the key space.
fn scramble(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Picks record numbers among `0..records`.
#[derive(Debug, Clone)]
pub struct KeyChooser {
    distribution: Distribution,
    records: u64,
    zipf: Option<Zipf<f64>>,
}

impl KeyChooser {
    pub fn new(distribution: Distribution, records: u64) -> Result<KeyChooser, String> {
        let records = records.max(1);
        let zipf = match distribution {
            Distribution::Uniform => None,
            _ => Some(Zipf::new(records as f64, ZIPFIAN_CONSTANT).map_err(|e| e.to_string())?),
        };
        Ok(KeyChooser {
            distribution,
            records,
            zipf,
        })
    }

    /// A record number below `existing` (the records inserted so far).
    pub fn next(&self, existing: u64, rng: &mut impl Rng) -> u64 {
        let existing = existing.max(1);
        // Zipf samples ranks 1..=records.
        let rank =
            |rng: &mut dyn rand::RngCore| self.zipf.map_or(1, |z| z.sample(rng) as u64).max(1) - 1;
        match self.distribution {
            Distribution::Uniform => rng.random_range(0..existing),
            Distribution::Zipfian => scramble(rank(rng)) % existing.min(self.records),
            Distribution::Latest => existing - 1 - (rank(rng) % existing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::HashMap;

    /// Share of accesses that went to the most popular 1% of records.
    fn top_one_percent_share(chooser: &KeyChooser, records: u64) -> f64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let n = 200_000;
        let mut counts: HashMap<u64, u64> = HashMap::new();
        for _ in 0..n {
            *counts.entry(chooser.next(records, &mut rng)).or_insert(0) += 1;
        }
        let mut sorted: Vec<u64> = counts.into_values().collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let top = (records / 100) as usize;
        sorted.iter().take(top).sum::<u64>() as f64 / n as f64
    }

    #[test]
    fn zipfian_is_skewed_and_uniform_is_not() {
        let records = 10_000;
        let zipf = top_one_percent_share(
            &KeyChooser::new(Distribution::Zipfian, records).expect("zipf"),
            records,
        );
        let uniform = top_one_percent_share(
            &KeyChooser::new(Distribution::Uniform, records).expect("uniform"),
            records,
        );
        // Zipf(0.99) over 10,000 records: the top 100 take roughly half.
        assert!(zipf > 0.4, "zipfian top 1% share {zipf}");
        assert!(uniform < 0.03, "uniform top 1% share {uniform}");
    }

    #[test]
    fn zipfian_spreads_popular_keys() {
        // Scrambling: the most popular record is not record 0.
        let chooser = KeyChooser::new(Distribution::Zipfian, 1_000_000).expect("zipf");
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let picks: Vec<u64> = (0..1000)
            .map(|_| chooser.next(1_000_000, &mut rng))
            .collect();
        let low = picks.iter().filter(|p| **p < 1000).count();
        assert!(low < 100, "{low} of 1000 picks in the first 0.1% of keys");
    }

    #[test]
    fn latest_favours_recent_inserts_and_stays_in_range() {
        let chooser = KeyChooser::new(Distribution::Latest, 10_000).expect("latest");
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let picks: Vec<u64> = (0..10_000).map(|_| chooser.next(5_000, &mut rng)).collect();
        assert!(picks.iter().all(|p| *p < 5_000));
        let recent = picks.iter().filter(|p| **p >= 4_950).count();
        assert!(
            recent > 4_000,
            "{recent} of 10,000 picks among the 50 newest records"
        );
    }

    #[test]
    fn keys_are_fixed_width() {
        assert_eq!(key("user", 42), "user000000000042");
    }
}
