//! Where wall time comes from: the system clock on a real node, the
//! simulation's clock (with its offsets and jumps) in the simulation.
//!
//! Every read of wall time a node makes goes through its [`WallClock`]:
//! the hybrid clock's physical time, tombstone deletion times, TTL expiry,
//! hint ids and the hint window, the gossip generation, the time of the
//! last repair. Durations and deadlines use tokio's clock instead, which
//! the simulation drives too.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Timestamp;

/// A handle that reads wall time, in microseconds since the Unix epoch.
#[derive(Clone, Default)]
pub struct WallClock {
    source: Source,
}

#[derive(Clone, Default)]
enum Source {
    #[default]
    System,
    Custom(Arc<dyn Fn() -> Timestamp + Send + Sync>),
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.source {
            Source::System => f.write_str("WallClock(system)"),
            Source::Custom(_) => f.write_str("WallClock(custom)"),
        }
    }
}

impl WallClock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that reads `now` (tests and the simulation).
    pub fn from_fn(now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Self {
            source: Source::Custom(Arc::new(now)),
        }
    }

    /// Microseconds since the Unix epoch.
    pub fn micros(&self) -> Timestamp {
        match &self.source {
            Source::System => wall_clock_micros(),
            Source::Custom(now) => now(),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(&self) -> i64 {
        self.micros().div_euclid(1_000)
    }

    /// Whole seconds since the Unix epoch.
    pub fn seconds(&self) -> i64 {
        self.micros().div_euclid(1_000_000)
    }
}

/// The system's wall clock.
pub fn wall_clock_micros() -> Timestamp {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// The system's wall clock in whole seconds since the Unix epoch.
pub fn wall_clock_seconds() -> i64 {
    wall_clock_micros() / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_custom_clock_is_read_and_seconds_round_down() {
        let clock = WallClock::from_fn(|| -1_500_000);
        assert_eq!(clock.micros(), -1_500_000);
        assert_eq!(clock.seconds(), -2);
        let system = WallClock::system();
        assert!(system.seconds() > 1_700_000_000);
    }
}
