//! When and how long to wait before trying a request again.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with full jitter: the n-th retry waits a random time
/// in `[0, min(cap, base · 2ⁿ)]`, so clients that failed together do not
/// retry together.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First ceiling.
    pub base: Duration,
    /// Largest ceiling.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(25),
            cap: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// The ceiling before retry `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A random wait before retry `attempt`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        Duration::from_micros(rng.random_range(0..=ceiling.as_micros() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let backoff = Backoff::default();
        let ceilings: Vec<u64> = (0..8)
            .map(|a| backoff.ceiling(a).as_millis() as u64)
            .collect();
        assert_eq!(ceilings, vec![25, 50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn delays_stay_under_the_ceiling_and_vary() {
        let backoff = Backoff::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let delays: Vec<Duration> = (0..50).map(|_| backoff.delay(3, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(200)));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 40, "jitter spreads retries");
    }
}
