//! Checking a request's credentials and role (`rpc::require_auth` runs
//! the check around the client API's gRPC services).
//!
//! A client sends `authorization: Basic base64(user:password)` with every
//! request (over TLS, or anyone on the path reads the password). Argon2 is
//! slow on purpose, so a verified password is remembered, as a salted
//! SHA-256 digest of it, for `auth_cache_ms`: the next requests of that
//! user cost one hash, and a changed password or role takes effect within
//! that time. Verifications run on blocking threads, at most as many at
//! once as there are cores, so guessing passwords cannot take every
//! thread.
//!
//! Failed checks are rate-limited per source address and per user
//! ([`Throttle`]); a password this node verified before skips the
//! throttle and re-verifies on its own queue, so guessers cannot make an
//! honest user wait behind them.
//!
//! No credentials, an unknown user or a wrong password: `UNAUTHENTICATED`
//! (the same message and the same Argon2 work for both, so names cannot be
//! probed). A role that does not allow the method: `PERMISSION_DENIED`.
//!
//! CAVEATS: when a user's remembered password expires, each of that user's
//! requests in flight verifies it again (no single flight), a stall of a
//! few tens of milliseconds every `auth_cache_ms` under heavy load.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::Role;
use super::throttle::Throttle;
use super::users::{MAX_NAME_LEN, MAX_PASSWORD_LEN, UserError, UserStore, verify_password};
use crate::metrics::AUTH_FAILURES;

/// Users remembered at most; past it the cache starts over.
const MAX_CACHED: usize = 4096;

/// Who sent a request (in the request's extensions once authenticated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// Why credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Missing or wrong.
    Unauthenticated(String),
    /// The users could not be read.
    Unavailable(String),
}

struct Remembered {
    digest: [u8; 32],
    role: Role,
    at: Instant,
}

/// Verifies credentials against the cluster's users.
pub struct Authenticator {
    users: UserStore,
    validity: Duration,
    salt: [u8; 16],
    cache: Mutex<HashMap<String, Remembered>>,
    /// Verifications of passwords not known to be right.
    verifying: Semaphore,
    /// Re-verifications of passwords this node verified before (their
    /// remembered digest matches): they never queue behind guesses.
    reverifying: Semaphore,
    throttle: Throttle,
    failures: metrics::Counter,
    throttled: metrics::Counter,
}

impl Authenticator {
    /// With the default bound on failed logins (see [`Throttle`]).
    pub fn new(users: UserStore, validity: Duration) -> Self {
        Self::with_throttle(users, validity, Throttle::new(10, Duration::from_secs(1)))
    }

    pub fn with_throttle(users: UserStore, validity: Duration, throttle: Throttle) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            users,
            validity,
            salt: rand::random(),
            cache: Mutex::new(HashMap::new()),
            verifying: Semaphore::new(cores),
            reverifying: Semaphore::new(cores),
            throttle,
            failures: metrics::counter!(AUTH_FAILURES, "reason" => "wrong"),
            throttled: metrics::counter!(AUTH_FAILURES, "reason" => "throttled"),
        }
    }

    fn digest(&self, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    /// What the cache says of `user` with a password of `digest`: its role
    /// while fresh, `Err(())` when remembered but stale, `None` when not
    /// remembered with that password.
    fn remembered(&self, user: &str, digest: &[u8; 32]) -> Option<Result<Role, ()>> {
        let cache = self.cache.lock().ok()?;
        let remembered = cache.get(user).filter(|r| r.digest == *digest)?;
        Some(if remembered.at.elapsed() < self.validity {
            Ok(remembered.role)
        } else {
            Err(())
        })
    }

    /// The role of `user` if `password` is theirs; `source`: the address
    /// the attempt came from, for the failure throttle.
    pub async fn authenticate(
        &self,
        user: &str,
        password: &str,
        source: Option<IpAddr>,
    ) -> Result<Role, Refusal> {
        let wrong = || Refusal::Unauthenticated("wrong user name or password".into());
        if user.is_empty() || user.len() > MAX_NAME_LEN || password.len() > MAX_PASSWORD_LEN {
            self.failures.increment(1);
            return Err(wrong());
        }
        let digest = self.digest(password);
        // A password this node verified before: fresh, it passes; stale,
        // it is verified again (a role or password may have changed) but
        // without a throttle token and apart from guesses.
        let known = match self.remembered(user, &digest) {
            Some(Ok(role)) => return Ok(role),
            Some(Err(())) => true,
            None => false,
        };
        if !known && let Err(why) = self.throttle.take(source, user, Instant::now()) {
            self.throttled.increment(1);
            return Err(Refusal::Unauthenticated(why));
        }
        let record = match self.users.get(user).await {
            Ok(found) => found,
            Err(UserError::Invalid(_)) => None,
            Err(error) => {
                if !known {
                    self.throttle.give_back(source, user, Instant::now());
                }
                return Err(Refusal::Unavailable(error.to_string()));
            }
        };
        let queue = if known {
            &self.reverifying
        } else {
            &self.verifying
        };
        let _turn = queue
            .acquire()
            .await
            .map_err(|_| Refusal::Unavailable("shutting down".into()))?;
        // Another request of the same user may have verified it meanwhile.
        if known && let Some(Ok(role)) = self.remembered(user, &digest) {
            return Ok(role);
        }
        // An unknown user costs the same Argon2 verification as a wrong
        // password, so timing does not tell which names exist.
        let hash = match &record {
            Some(record) => record.hash.clone(),
            None => decoy_hash().to_owned(),
        };
        let password = password.to_owned();
        let matches = crate::storage::blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|error| Refusal::Unavailable(error.to_string()))?;
        let record = match record {
            Some(record) if matches => record,
            _ => {
                self.failures.increment(1);
                if known {
                    // No longer right (changed, or the user deleted): from
                    // now on it is a guess like any other.
                    if let Ok(mut cache) = self.cache.lock() {
                        cache.remove(user);
                    }
                }
                return Err(wrong());
            }
        };
        if !known {
            self.throttle.give_back(source, user, Instant::now());
        }
        if !record.confirmed {
            // Cut off from a quorum of the user's replicas: this node's
            // copy may miss a `user del` or a demotion, so it grants reads
            // only, and is not remembered.
            return Ok(Role::ReadOnly);
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(
                user.to_owned(),
                Remembered {
                    digest,
                    role: record.role,
                    at: Instant::now(),
                },
            );
        }
        Ok(record.role)
    }
}

/// A hash no password is known for, verified against for unknown users.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let secret: [u8; 32] = rand::random();
        super::users::hash_password(&hex_of(&secret)).unwrap_or_default()
    })
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The user and password of an `authorization: Basic ...` header.
pub fn basic_credentials(header: Option<&http::HeaderValue>) -> Option<(String, String)> {
    let value = header?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The `authorization` header value for `user` and `password`.
pub fn basic_header(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_round_trip_and_junk_is_none() {
        let header =
            http::HeaderValue::from_str(&basic_header("alice", "p:ss w0rd")).expect("header");
        assert_eq!(
            basic_credentials(Some(&header)),
            Some(("alice".into(), "p:ss w0rd".into()))
        );
        for junk in ["", "Basic", "Basic !!!", "Bearer abc", "Basic YWxpY2U="] {
            let value = http::HeaderValue::from_str(junk).expect("header");
            assert_eq!(basic_credentials(Some(&value)), None, "{junk:?}");
        }
        assert_eq!(basic_credentials(None), None);
    }
}
