//! A hybrid logical clock that hands out write timestamps.
//!
//! Timestamps are microseconds since the Unix epoch, the unit LWW compares.
//! A pure wall clock can step backwards (NTP) and two writes in the same
//! microsecond would tie; a pure logical clock would drift from real time.
//! The hybrid takes the best of both: every timestamp is
//! `max(physical now, last timestamp + 1)`, so one node never issues the
//! same timestamp twice nor goes backwards, and while clocks are in sync the
//! timestamps are the wall time.
//!
//! [`HybridClock::observe`] folds in a timestamp seen from another node (a
//! replicated write), so a node whose wall clock lags still orders its next
//! write after what it has already seen. Timestamps more than
//! [`MAX_FORWARD_DRIFT_MICROS`] ahead of the local wall clock are not
//! followed: one node with a wild clock must not drag every other node's
//! clock into the future with it.
//!
//! CAVEATS: this is the "µs-packed" variant of HLC (the logical counter lives
//! in the low bits of the physical time rather than in a separate field).
//! Under a sustained rate above one write per microsecond on one node the
//! clock runs ahead of wall time until the rate drops.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How far ahead of local wall time an observed timestamp may pull the clock.
pub const MAX_FORWARD_DRIFT_MICROS: i64 = 60 * 1_000_000;

/// Microseconds since the Unix epoch.
pub type Timestamp = i64;

/// Reads the physical clock, in microseconds since the Unix epoch.
pub type PhysicalClock = fn() -> Timestamp;

/// The wall clock.
pub fn wall_clock_micros() -> Timestamp {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Wall clock in whole seconds since the Unix epoch.
pub fn wall_clock_seconds() -> i64 {
    wall_clock_micros() / 1_000_000
}

/// Monotonic, unique-per-node timestamps close to wall time. Lock-free.
#[derive(Debug)]
pub struct HybridClock {
    last: AtomicI64,
    physical: PhysicalClock,
}

impl Default for HybridClock {
    fn default() -> Self {
        Self::new(wall_clock_micros)
    }
}

impl HybridClock {
    /// A clock over the given physical clock (tests inject a fake one).
    pub fn new(physical: PhysicalClock) -> Self {
        Self {
            last: AtomicI64::new(i64::MIN),
            physical,
        }
    }

    /// A new timestamp, greater than every one issued or observed before.
    pub fn now(&self) -> Timestamp {
        let physical = (self.physical)();
        let previous = self
            .last
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(physical.max(last.saturating_add(1)))
            })
            // The closure never returns None.
            .unwrap_or_else(|last| last);
        physical.max(previous.saturating_add(1))
    }

    /// Folds in a timestamp seen from elsewhere, so later `now()` calls are
    /// greater. Timestamps implausibly far in the future are ignored.
    pub fn observe(&self, seen: Timestamp) {
        let limit = (self.physical)().saturating_add(MAX_FORWARD_DRIFT_MICROS);
        if seen <= limit {
            self.last.fetch_max(seen, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    static FAKE_NOW: AtomicI64 = AtomicI64::new(1_000);

    fn fake() -> Timestamp {
        FAKE_NOW.load(Ordering::SeqCst)
    }

    #[test]
    fn never_goes_backwards_even_when_the_wall_clock_does() {
        let clock = HybridClock::new(fake);
        FAKE_NOW.store(1_000, Ordering::SeqCst);
        let a = clock.now();
        assert_eq!(a, 1_000);
        let b = clock.now();
        assert_eq!(b, 1_001, "same microsecond: logical step");
        FAKE_NOW.store(500, Ordering::SeqCst); // wall clock steps back
        let c = clock.now();
        assert_eq!(c, 1_002);
        FAKE_NOW.store(5_000, Ordering::SeqCst);
        assert_eq!(clock.now(), 5_000, "follows wall time again");
    }

    #[test]
    fn observed_timestamps_order_later_writes() {
        let clock = HybridClock::new(wall_clock_micros);
        let ahead = wall_clock_micros() + 1_000_000;
        clock.observe(ahead);
        assert!(clock.now() > ahead);
    }

    #[test]
    fn wild_timestamps_are_not_followed() {
        let clock = HybridClock::new(wall_clock_micros);
        clock.observe(i64::MAX - 5);
        let t = clock.now();
        assert!(t < wall_clock_micros() + MAX_FORWARD_DRIFT_MICROS);
    }

    #[test]
    fn unique_across_threads() {
        let clock = std::sync::Arc::new(HybridClock::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || (0..10_000).map(|_| clock.now()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        assert_eq!(n, 40_000);
    }
}
