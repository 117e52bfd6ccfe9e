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
//! Across restarts: a node whose wall clock went backwards while it was
//! down must not issue timestamps below ones it already acknowledged. The
//! clock keeps a *ceiling* on disk, an upper bound of every timestamp it
//! has issued. A background worker keeps the stored ceiling about
//! [`CEILING_LEAD_MICROS`] ahead ([`HybridClock::renew`]: one small synced
//! write per lead, not per timestamp), and a timestamp above it (the worker
//! lagged, or an observed timestamp jumped ahead) is covered before it is
//! handed out. A restarted clock starts at the stored ceiling; the node
//! waits for its wall clock to pass it when that is a short wait, so a
//! quick restart does not run ahead of real time. CockroachDB persists an
//! upper bound of its HLC for the same reason.
//!
//! CAVEATS: this is the "µs-packed" variant of HLC (the logical counter lives
//! in the low bits of the physical time rather than in a separate field).
//! Under a sustained rate above one write per microsecond on one node the
//! clock runs ahead of wall time until the rate drops.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use super::WallClock;

/// How far ahead of local wall time an observed timestamp may pull the clock.
pub const MAX_FORWARD_DRIFT_MICROS: i64 = 60 * 1_000_000;
/// How far above the latest timestamp a stored ceiling is set.
pub const CEILING_LEAD_MICROS: i64 = 1_000_000;
/// After a failed save, how long timestamps are handed out without trying
/// again (a full disk must not cost every write an fsync attempt).
const CEILING_RETRY_MICROS: i64 = 1_000_000;

/// Stores the clock's ceiling durably (the node's `meta` column family).
pub type SaveCeiling = Box<dyn Fn(Timestamp) -> Result<(), String> + Send + Sync>;

/// The persisted upper bound of issued timestamps.
struct Ceiling {
    bound: AtomicI64,
    /// Physical time before which a failed save is not retried inline.
    retry_at: AtomicI64,
    save: SaveCeiling,
    /// One writer raises the bound at a time.
    raising: Mutex<()>,
}

impl std::fmt::Debug for Ceiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ceiling")
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

/// Microseconds since the Unix epoch.
pub type Timestamp = i64;

/// Monotonic, unique-per-node timestamps close to wall time. Lock-free.
#[derive(Debug)]
pub struct HybridClock {
    last: AtomicI64,
    physical: WallClock,
    ceiling: Option<Ceiling>,
}

impl Default for HybridClock {
    fn default() -> Self {
        Self::new(WallClock::system())
    }
}

impl HybridClock {
    /// A clock over the given physical clock (tests inject a fake one).
    pub fn new(physical: WallClock) -> Self {
        Self {
            last: AtomicI64::new(i64::MIN),
            physical,
            ceiling: None,
        }
    }

    /// A clock that starts above `stored` (the ceiling a previous run
    /// saved; `None` for a first start) and keeps its ceiling with `save`.
    pub fn with_ceiling(physical: WallClock, stored: Option<Timestamp>, save: SaveCeiling) -> Self {
        let start = stored.unwrap_or(i64::MIN);
        Self {
            last: AtomicI64::new(start),
            physical,
            ceiling: Some(Ceiling {
                bound: AtomicI64::new(start),
                retry_at: AtomicI64::new(i64::MIN),
                save,
                raising: Mutex::new(()),
            }),
        }
    }

    /// Makes sure the stored ceiling covers `timestamp` before it is used.
    fn cover(&self, timestamp: Timestamp) {
        let Some(ceiling) = &self.ceiling else {
            return;
        };
        if timestamp <= ceiling.bound.load(Ordering::Acquire) {
            return;
        }
        let physical = self.physical.micros();
        if physical < ceiling.retry_at.load(Ordering::Acquire) {
            return; // failed a moment ago; not again on every timestamp
        }
        let _one_writer = ceiling.raising.lock();
        if timestamp <= ceiling.bound.load(Ordering::Acquire) {
            return; // raised meanwhile
        }
        let bound = timestamp.saturating_add(CEILING_LEAD_MICROS);
        match (ceiling.save)(bound) {
            Ok(()) => ceiling.bound.store(bound, Ordering::Release),
            Err(error) => {
                ceiling.retry_at.store(
                    physical.saturating_add(CEILING_RETRY_MICROS),
                    Ordering::Release,
                );
                tracing::error!(
                    %error,
                    "cannot store the clock ceiling; timestamps may go backwards if this node restarts with its wall clock behind"
                );
            }
        }
    }

    /// Keeps the stored ceiling ahead of the clock, so `now()` rarely has
    /// to store it itself. Blocking (a synced write): call it from a
    /// blocking thread, about four times per [`CEILING_LEAD_MICROS`].
    pub fn renew(&self) {
        let current = self
            .physical
            .micros()
            .max(self.last.load(Ordering::Acquire));
        self.cover(current.saturating_add(CEILING_LEAD_MICROS / 2));
    }

    /// How far the clock starts ahead of the wall clock (a restart shortly
    /// after the last timestamp, or a wall clock that went back).
    pub fn ahead_of_wall(&self) -> std::time::Duration {
        let ahead = self
            .last
            .load(Ordering::Acquire)
            .saturating_sub(self.physical.micros());
        std::time::Duration::from_micros(u64::try_from(ahead).unwrap_or(0))
    }

    /// The wall clock under this one.
    pub fn wall(&self) -> &WallClock {
        &self.physical
    }

    /// A new timestamp, greater than every one issued or observed before.
    pub fn now(&self) -> Timestamp {
        let physical = self.physical.micros();
        let previous = self
            .last
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(physical.max(last.saturating_add(1)))
            })
            // The closure never returns None.
            .unwrap_or_else(|last| last);
        let timestamp = physical.max(previous.saturating_add(1));
        self.cover(timestamp);
        timestamp
    }

    /// Folds in a timestamp seen from elsewhere, so later `now()` calls are
    /// greater. Timestamps implausibly far in the future are ignored.
    pub fn observe(&self, seen: Timestamp) {
        let limit = self
            .physical
            .micros()
            .saturating_add(MAX_FORWARD_DRIFT_MICROS);
        if seen <= limit {
            self.last.fetch_max(seen, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::wall_clock_micros;
    use std::sync::atomic::AtomicI64;

    static FAKE_NOW: AtomicI64 = AtomicI64::new(1_000);

    fn fake() -> Timestamp {
        FAKE_NOW.load(Ordering::SeqCst)
    }

    #[test]
    fn never_goes_backwards_even_when_the_wall_clock_does() {
        let clock = HybridClock::new(WallClock::from_fn(fake));
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
        let clock = HybridClock::new(WallClock::system());
        let ahead = wall_clock_micros() + 1_000_000;
        clock.observe(ahead);
        assert!(clock.now() > ahead);
    }

    #[test]
    fn wild_timestamps_are_not_followed() {
        let clock = HybridClock::new(WallClock::system());
        clock.observe(i64::MAX - 5);
        let t = clock.now();
        assert!(t < wall_clock_micros() + MAX_FORWARD_DRIFT_MICROS);
    }

    static RESTART_NOW: AtomicI64 = AtomicI64::new(0);

    fn restart_clock() -> Timestamp {
        RESTART_NOW.load(Ordering::SeqCst)
    }

    /// Regression: the clock started from nothing after a restart, so a
    /// node whose wall clock had gone backwards issued timestamps below
    /// ones it had already acknowledged, and its new writes lost to old.
    #[test]
    fn a_restarted_clock_never_goes_below_what_it_issued() {
        let stored = std::sync::Arc::new(std::sync::Mutex::new(None::<Timestamp>));
        let saves = std::sync::Arc::new(AtomicI64::new(0));
        let saver = |stored: &std::sync::Arc<std::sync::Mutex<Option<Timestamp>>>| -> SaveCeiling {
            let (stored, saves) = (stored.clone(), saves.clone());
            Box::new(move |bound| {
                saves.fetch_add(1, Ordering::SeqCst);
                *stored.lock().map_err(|e| e.to_string())? = Some(bound);
                Ok(())
            })
        };
        RESTART_NOW.store(50_000_000, Ordering::SeqCst);
        let clock =
            HybridClock::with_ceiling(WallClock::from_fn(restart_clock), None, saver(&stored));
        let mut issued = 0;
        for step in 0..500 {
            RESTART_NOW.store(50_000_000 + step * 1_000, Ordering::SeqCst);
            issued = clock.now();
        }
        assert_eq!(
            saves.load(Ordering::SeqCst),
            1,
            "one save per lead, not per timestamp"
        );
        let ceiling = stored.lock().map(|s| *s).unwrap_or(None);
        assert!(
            ceiling.is_some_and(|c| c >= issued),
            "{ceiling:?} covers {issued}"
        );

        // The machine restarts with its wall clock a minute behind.
        RESTART_NOW.store(50_000_000 - 60_000_000, Ordering::SeqCst);
        let restarted =
            HybridClock::with_ceiling(WallClock::from_fn(restart_clock), ceiling, saver(&stored));
        assert!(restarted.ahead_of_wall() >= std::time::Duration::from_secs(60));
        assert!(restarted.now() > issued);
        // Observed timestamps past the ceiling are covered before use.
        restarted.observe(issued + 2 * CEILING_LEAD_MICROS);
        let next = restarted.now();
        let ceiling = stored.lock().map(|s| *s).unwrap_or(None);
        assert!(ceiling.is_some_and(|c| c >= next));
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
