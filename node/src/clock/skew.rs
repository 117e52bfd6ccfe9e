//! How far ahead of this node's clock a timestamp that comes from elsewhere
//! (a client's write, a peer's cell) may be.
//!
//! Last write wins by timestamp, so one cell stamped far in the future
//! (`i64::MAX`) can never be overwritten or deleted: it would win against
//! every later write. A timestamp more than `max_clock_skew_ms` ahead of
//! the local wall clock is therefore refused before anything is stored.

use super::Timestamp;

/// The limit; `off()` accepts any timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkewLimit {
    /// `None`: no check.
    micros: Option<i64>,
    /// The setting it comes from (milliseconds), for messages.
    setting_ms: u64,
}

impl SkewLimit {
    /// From the `max_clock_skew_ms` setting; 0 turns the check off.
    pub fn from_millis(ms: u64) -> Self {
        Self {
            micros: (ms > 0).then(|| i64::try_from(ms.saturating_mul(1_000)).unwrap_or(i64::MAX)),
            setting_ms: ms,
        }
    }

    /// Twice the limit, for replicas (see `Config::peer_bounds`).
    pub fn doubled(self) -> Self {
        Self {
            micros: self.micros.map(|m| m.saturating_mul(2)),
            ..self
        }
    }

    /// No check.
    pub fn off() -> Self {
        Self {
            micros: None,
            setting_ms: 0,
        }
    }

    /// The limit in whole seconds, rounded up (for deletion times and
    /// expiries, which are Unix seconds); 0 when off.
    pub fn seconds(&self) -> i64 {
        self.micros.map_or(0, |m| m.div_euclid(1_000_000) + 1)
    }

    /// Refuses `timestamp` when it is more than the limit ahead of `now`
    /// (both microseconds since the Unix epoch); the message names the
    /// setting.
    pub fn check(&self, timestamp: Timestamp, now: Timestamp) -> Result<(), String> {
        let Some(limit) = self.micros else {
            return Ok(());
        };
        let ahead = timestamp.saturating_sub(now);
        if ahead > limit {
            let doubled = if limit / 1_000 == i64::try_from(self.setting_ms).unwrap_or(i64::MAX) {
                ""
            } else {
                ", twice that for a replica"
            };
            return Err(format!(
                "timestamp {timestamp} is {} ms ahead of this node's clock; the limit is max_clock_skew_ms = {}{doubled}",
                ahead / 1_000,
                self.setting_ms
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_past_the_limit_are_refused_and_zero_turns_it_off() {
        let now = 1_000_000_000_000;
        let limit = SkewLimit::from_millis(60_000);
        assert!(limit.check(now, now).is_ok());
        assert!(
            limit.check(now - 5_000_000, now).is_ok(),
            "the past is fine"
        );
        assert!(
            limit.check(now + 60_000_000, now).is_ok(),
            "exactly at the limit"
        );
        let err = limit.check(now + 60_000_001, now).expect_err("past it");
        assert!(err.contains("max_clock_skew_ms = 60000"), "{err}");
        let err = limit.check(i64::MAX, now).expect_err("the far future");
        assert!(err.contains("ahead"), "{err}");
        assert!(SkewLimit::from_millis(0).check(i64::MAX, now).is_ok());
        assert!(SkewLimit::off().check(i64::MAX, i64::MIN).is_ok());
        assert_eq!(limit.seconds(), 61);
        let replica = limit.doubled();
        assert!(replica.check(now + 100_000_000, now).is_ok());
        let err = replica
            .check(now + 120_000_001, now)
            .expect_err("past twice");
        assert!(
            err.contains("max_clock_skew_ms = 60000, twice that"),
            "{err}"
        );
        assert_eq!(
            SkewLimit::from_millis(u64::MAX).seconds(),
            i64::MAX / 1_000_000 + 1
        );
    }
}
