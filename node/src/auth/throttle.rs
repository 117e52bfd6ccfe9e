//! A bound on password guessing: failed credential checks are rate-limited
//! per source address and per user name.
//!
//! Each source address and each user name has a bucket of
//! `auth_max_failures` tokens, refilled at one token per
//! `auth_failure_refill_ms`. A credential check that is not already known
//! to be right (see `check`) takes a token from both buckets before any
//! work (a user lookup at QUORUM, an Argon2 verification); with either
//! empty it is refused at once, saying for how long. A check that
//! succeeds gives its tokens back, so honest logins never drain a bucket.
//! A guesser from one address thus gets `auth_max_failures` verifications
//! and then one per refill period, and guessers from many addresses get as
//! many against any one user.
//!
//! CAVEATS: a guesser can keep a user's bucket empty, delaying that user's
//! first login on a node (logins whose password the node verified before
//! pass without a token); at most [`MAX_TRACKED`] addresses and names are
//! tracked, and past that the buckets start over.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Addresses (and names) tracked at most.
pub const MAX_TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets of one kind (addresses, or names).
#[derive(Debug)]
struct Buckets<K> {
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Bucket>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The failure buckets of a node.
#[derive(Debug)]
pub struct Throttle {
    burst: f64,
    refill: Duration,
    sources: Buckets<IpAddr>,
    users: Buckets<String>,
}

impl Throttle {
    /// `burst` failures at once, then one per `refill`.
    pub fn new(burst: u32, refill: Duration) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            refill: refill.max(Duration::from_millis(1)),
            sources: Buckets::new(),
            users: Buckets::new(),
        }
    }

    /// A bucket's tokens at `now`.
    fn level(&self, bucket: &Bucket, now: Instant) -> f64 {
        let refilled = now.duration_since(bucket.at).as_secs_f64() / self.refill.as_secs_f64();
        (bucket.tokens + refilled).min(self.burst)
    }

    /// Takes a token of `key`'s bucket; `Err(wait)` when it is empty.
    fn take_one<K: Eq + Hash + Clone>(
        &self,
        buckets: &Buckets<K>,
        key: &K,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut map = buckets.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(key) {
            // Forget the buckets that refilled; if none did, start over.
            map.retain(|_, b| self.level(b, now) < self.burst);
            if map.len() >= MAX_TRACKED {
                map.clear();
            }
        }
        let bucket = map.entry(key.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let level = self.level(bucket, now);
        if level < 1.0 {
            return Err(self.refill.mul_f64(1.0 - level));
        }
        *bucket = Bucket {
            tokens: level - 1.0,
            at: now,
        };
        Ok(())
    }

    fn give_back_one<K: Eq + Hash + Clone>(&self, buckets: &Buckets<K>, key: &K, now: Instant) {
        if let Some(bucket) = buckets.lock().get_mut(key) {
            *bucket = Bucket {
                tokens: (self.level(bucket, now) + 1.0).min(self.burst),
                at: now,
            };
        }
    }

    /// Takes a token for a credential check of `user` from `source`, or
    /// says why not (whose bucket is empty, and for how long).
    pub fn take(&self, source: Option<IpAddr>, user: &str, now: Instant) -> Result<(), String> {
        if let Some(source) = source
            && let Err(wait) = self.take_one(&self.sources, &source, now)
        {
            return Err(format!(
                "too many failed logins from {source}; retry in {:.1} s",
                wait.as_secs_f64()
            ));
        }
        let user = user.to_owned();
        if let Err(wait) = self.take_one(&self.users, &user, now) {
            if let Some(source) = source {
                self.give_back_one(&self.sources, &source, now);
            }
            return Err(format!(
                "too many failed logins as {user:?}; retry in {:.1} s",
                wait.as_secs_f64()
            ));
        }
        Ok(())
    }

    /// Gives back the tokens of a check that succeeded.
    pub fn give_back(&self, source: Option<IpAddr>, user: &str, now: Instant) {
        if let Some(source) = source {
            self.give_back_one(&self.sources, &source, now);
        }
        self.give_back_one(&self.users, &user.to_owned(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn failures_are_bounded_per_source_and_per_user_and_refill() {
        let throttle = Throttle::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        for _ in 0..3 {
            throttle.take(ip(2), "admin", t0).expect("within the burst");
        }
        let refused = throttle.take(ip(2), "bob", t0).expect_err("source empty");
        assert!(
            refused.contains("from 127.0.0.2; retry in 1.0 s"),
            "{refused}"
        );
        // The user's bucket is empty too: from another address as well.
        let refused = throttle.take(ip(3), "admin", t0).expect_err("user empty");
        assert!(refused.contains("as \"admin\""), "{refused}");
        // ...but that refusal did not cost the other address a token.
        for _ in 0..3 {
            throttle.take(ip(3), "carol", t0).expect("its own bucket");
        }
        // One token a second comes back.
        let t1 = t0 + Duration::from_millis(1_100);
        throttle.take(ip(2), "dave", t1).expect("refilled");
        assert!(throttle.take(ip(2), "dave", t1).is_err());
    }

    #[test]
    fn a_check_that_succeeds_gives_its_tokens_back() {
        let throttle = Throttle::new(2, Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..10 {
            throttle.take(ip(1), "alice", now).expect("honest");
            throttle.give_back(ip(1), "alice", now);
        }
        throttle
            .take(None, "alice", now)
            .expect("no address: only the user's bucket");
    }

    #[test]
    fn the_tracked_buckets_stay_bounded() {
        let throttle = Throttle::new(1, Duration::from_secs(3600));
        let now = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let source = Some(IpAddr::from(i.to_be_bytes()));
            let _ = throttle.take(source, "x", now);
        }
        assert!(throttle.sources.lock().len() <= MAX_TRACKED);
    }
}
