//! Users, stored in the cluster itself.
//!
//! Each user is two keys of the keyspace: `\0ringkv/user/NAME` holds
//! `{"role": ...}` (the user exists while it does) and
//! `\0ringkv/pass/NAME` holds `{"hash": ...}`, the password's Argon2id
//! hash in PHC form (salted; the password itself is never stored). Two
//! keys, so that a password change never rewrites the role: with last
//! write wins and no compare-and-set, a user changing its own password at
//! the moment an admin deletes or demotes it cannot bring the old role
//! back. The keys replicate, repair and stream like any other, so a user
//! added on one node authenticates on all of them, as Cassandra's
//! `system_auth`. Users are written at QUORUM and read at QUORUM (at ONE
//! when a quorum is not up, so a partition does not lock everyone out).
//! `\0ringkv/users` lists the names, for `user list`.
//!
//! Keys starting with `\0ringkv/` are reserved: the client APIs refuse
//! them.
//!
//! CAVEATS: the name list is read, changed and written back; two `user
//! add` on different nodes within the same moment may leave one name out
//! of `user list` (the user still authenticates; adding it again lists
//! it).

use std::collections::BTreeSet;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use bytes::Bytes;

use super::Role;
use crate::coordinator::{
    ConsistencyLevel, Coordinator, CoordinatorError, ReadRequest, Target, WriteRequest,
};

/// Keys of the keyspace that clients may not use.
pub const RESERVED_PREFIX: &[u8] = b"\0ringkv/";
const USER_PREFIX: &str = "\0ringkv/user/";
const PASSWORD_PREFIX: &str = "\0ringkv/pass/";
const USER_INDEX: &[u8] = b"\0ringkv/users";
/// Longest user name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest password (Argon2 takes any length; this bounds the work).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Whether a client may use `key`.
pub fn is_reserved(key: &[u8]) -> bool {
    key.starts_with(RESERVED_PREFIX)
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserRecord {
    pub role: Role,
    /// Argon2id hash of the password, PHC string.
    pub hash: String,
    /// Read at QUORUM. `false`: no quorum of the user's replicas answered
    /// and this is what one replica (this node's own, first) holds, which
    /// may miss a later `user del` or role change.
    pub confirmed: bool,
}

/// Why a user operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Invalid(String),
    #[error("no user {0:?}")]
    NotFound(String),
    #[error("the users cannot be read or written: {0}")]
    Store(#[from] CoordinatorError),
    #[error("stored user {0:?} is unreadable")]
    Corrupt(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Checks a user name: 1 to 64 letters, digits, `_ - . @`.
pub fn validate_name(name: &str) -> Result<(), UserError> {
    let fine = |c: char| c.is_ascii_alphanumeric() || "_-.@".contains(c);
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(fine) {
        return Err(UserError::Invalid(format!(
            "bad user name {name:?}: 1 to {MAX_NAME_LEN} letters, digits, '_', '-', '.' or '@'"
        )));
    }
    Ok(())
}

/// Checks a new password: 8 to 1024 bytes.
pub fn validate_password(password: &str) -> Result<(), UserError> {
    if password.len() < 8 || password.len() > MAX_PASSWORD_LEN {
        return Err(UserError::Invalid(format!(
            "a password must have 8 to {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(())
}

/// The Argon2id hash of `password` with a fresh salt. Slow on purpose
/// (tens of milliseconds): call from a blocking thread.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    // 16 random bytes from the operating system's generator (rand's
    // default thread RNG is seeded from it and reseeds).
    let salt_bytes: [u8; 16] = rand::random();
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|error| UserError::Hash(error.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| UserError::Hash(error.to_string()))
}

/// Whether `password` matches `hash`. Slow on purpose: call from a
/// blocking thread.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

fn user_key(name: &str) -> Bytes {
    Bytes::from(format!("{USER_PREFIX}{name}"))
}

fn password_key(name: &str) -> Bytes {
    Bytes::from(format!("{PASSWORD_PREFIX}{name}"))
}

/// What the user key holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRole {
    role: Role,
}

/// What the password key holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredHash {
    hash: String,
}

fn json<T: serde::Serialize>(value: &T) -> Result<Bytes, UserError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Users in the cluster's keyspace, through the coordinator.
#[derive(Clone)]
pub struct UserStore {
    coordinator: Arc<Coordinator>,
}

impl UserStore {
    pub fn new(coordinator: Arc<Coordinator>) -> Self {
        Self { coordinator }
    }

    /// Reads a key at QUORUM, or at ONE when a quorum is not up.
    /// `key`'s value at QUORUM, or, with no quorum up, at ONE; the flag
    /// says whether a quorum answered.
    async fn read(&self, key: Bytes) -> Result<(Option<Bytes>, bool), UserError> {
        let request = |level| ReadRequest {
            sort_key: Bytes::new(),
            key: key.clone(),
            level,
            timeout: None,
            trace: None,
        };
        let (found, confirmed) = match self
            .coordinator
            .read(request(ConsistencyLevel::Quorum))
            .await
        {
            Err(CoordinatorError::Unavailable { .. }) => (
                self.coordinator
                    .read(request(ConsistencyLevel::One))
                    .await?,
                false,
            ),
            other => (other?, true),
        };
        Ok((found.map(|r| r.value), confirmed))
    }

    async fn write(&self, key: Bytes, value: Option<Bytes>) -> Result<(), UserError> {
        self.coordinator
            .write(WriteRequest {
                target: Target::default(),
                key,
                value,
                level: ConsistencyLevel::Quorum,
                ttl_ms: None,
                timestamp: None,
                timeout: None,
                trace: None,
            })
            .await?;
        Ok(())
    }

    /// The user `name`, if it exists.
    pub async fn get(&self, name: &str) -> Result<Option<UserRecord>, UserError> {
        validate_name(name)?;
        let corrupt = |_| UserError::Corrupt(name.to_owned());
        let (Some(role), role_confirmed) = self.read(user_key(name)).await? else {
            return Ok(None);
        };
        let role: StoredRole = serde_json::from_slice(&role).map_err(corrupt)?;
        let (hash, hash_confirmed) = self.read(password_key(name)).await?;
        let hash = match hash {
            Some(bytes) => {
                serde_json::from_slice::<StoredHash>(&bytes)
                    .map_err(corrupt)?
                    .hash
            }
            // A user without a password (a write lost between the two
            // keys) cannot log in until an admin sets one.
            None => String::new(),
        };
        Ok(Some(UserRecord {
            role: role.role,
            hash,
            confirmed: role_confirmed && hash_confirmed,
        }))
    }

    async fn write_password(&self, name: &str, password: &str) -> Result<(), UserError> {
        validate_password(password)?;
        let password = password.to_owned();
        let hash = crate::storage::blocking(move || hash_password(&password))
            .await
            .map_err(|e| UserError::Hash(e.to_string()))??;
        self.write(password_key(name), Some(json(&StoredHash { hash })?))
            .await
    }

    async fn names(&self) -> Result<BTreeSet<String>, UserError> {
        Ok(match self.read(Bytes::from_static(USER_INDEX)).await?.0 {
            None => BTreeSet::new(),
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        })
    }

    async fn set_names(&self, names: &BTreeSet<String>) -> Result<(), UserError> {
        let bytes = serde_json::to_vec(names).map_err(|e| UserError::Hash(e.to_string()))?;
        self.write(Bytes::from_static(USER_INDEX), Some(Bytes::from(bytes)))
            .await
    }

    /// Creates or replaces the user `name` with `password` and `role`.
    pub async fn put(&self, name: &str, password: &str, role: Role) -> Result<(), UserError> {
        validate_name(name)?;
        self.write_password(name, password).await?;
        self.write(user_key(name), Some(json(&StoredRole { role })?))
            .await?;
        let mut names = self.names().await?;
        if names.insert(name.to_owned()) {
            self.set_names(&names).await?;
        }
        Ok(())
    }

    /// Changes the password of the existing user `name` (never its role).
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), UserError> {
        if self.get(name).await?.is_none() {
            return Err(UserError::NotFound(name.to_owned()));
        }
        self.write_password(name, password).await
    }

    /// Deletes the user `name`.
    pub async fn delete(&self, name: &str) -> Result<(), UserError> {
        if self.get(name).await?.is_none() {
            return Err(UserError::NotFound(name.to_owned()));
        }
        self.write(user_key(name), None).await?;
        self.write(password_key(name), None).await?;
        let mut names = self.names().await?;
        if names.remove(name) {
            self.set_names(&names).await?;
        }
        Ok(())
    }

    /// Every listed user and its role.
    pub async fn list(&self) -> Result<Vec<(String, Role)>, UserError> {
        let mut users = Vec::new();
        for name in self.names().await? {
            if let Some(user) = self.get(&name).await? {
                users.push((name, user.role));
            }
        }
        Ok(users)
    }
}

impl UserStore {
    /// Creates the user `admin` with `password` when no such user exists,
    /// retrying until the users can be read and written (a quorum is up)
    /// or `stop`.
    pub async fn ensure_admin(self, password: String, stop: tokio_util::sync::CancellationToken) {
        loop {
            let outcome = match self.get("admin").await {
                Ok(Some(_)) => Ok(false),
                Ok(None) => self
                    .put("admin", &password, Role::Admin)
                    .await
                    .map(|()| true),
                Err(error) => Err(error),
            };
            match outcome {
                Ok(created) => {
                    if created {
                        tracing::info!("created the user admin (auth_admin_password)");
                    }
                    return;
                }
                Err(error) => tracing::info!(%error, "cannot check the admin user yet; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_a_salt_and_verify() {
        let a = hash_password("correct horse").expect("hash");
        let b = hash_password("correct horse").expect("hash");
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(!a.contains("correct horse"));
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("wrong horse", &a));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(!verify_password(&"x".repeat(MAX_PASSWORD_LEN + 1), &a));
    }

    #[test]
    fn names_passwords_and_reserved_keys() {
        assert!(validate_name("alice").is_ok());
        assert!(validate_name("svc.app-1@prod").is_ok());
        for bad in ["", "a b", "x/y", &"n".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password("short").is_err());
        assert!(is_reserved(b"\0ringkv/user/alice"));
        assert!(!is_reserved(b"ringkv/user/alice"));
        assert!(!is_reserved(b"\0other"));
    }

    /// A user store coordinated by node `local` of `sim`, with `down`
    /// nodes down for it.
    fn store_on(
        sim: &Arc<crate::peer::fake::FakeCluster>,
        local: crate::identity::NodeId,
        down: &[crate::identity::NodeId],
    ) -> UserStore {
        let settings = crate::config::Config::default().coordinator_settings();
        let down = down.iter().copied().collect();
        UserStore::new(Arc::new(Coordinator::new(
            sim.view(local, &down),
            Arc::new(sim.clone()),
            Arc::new(crate::clock::HybridClock::default()),
            settings,
            None,
        )))
    }

    /// Regression (hardening II, item 6): a node cut off from a quorum
    /// fell back to its own copy of a user and granted the role it held
    /// there, so a user deleted or demoted elsewhere kept writing on the
    /// minority side. Now such a copy grants reads only.
    #[tokio::test]
    async fn cut_off_from_a_quorum_a_user_may_only_read() {
        use crate::auth::{Authenticator, Permission};
        let sim = crate::peer::fake::FakeCluster::balanced(3);
        let [a, b, c] = [sim.nodes[0], sim.nodes[1], sim.nodes[2]];
        store_on(&sim, a, &[])
            .put("writer", "writer password", Role::ReadWrite)
            .await
            .expect("added with every node up");
        let cut_off = store_on(&sim, a, &[b, c]);
        let record = cut_off.get("writer").await.expect("read").expect("found");
        assert!(!record.confirmed);
        let auth = Authenticator::new(cut_off, std::time::Duration::from_secs(60));
        let role = auth
            .authenticate("writer", "writer password", None)
            .await
            .expect("the password is right");
        assert!(role.allows(Permission::Read));
        assert!(!role.allows(Permission::Write), "{role:?}");

        let whole = store_on(&sim, a, &[]);
        assert!(
            whole
                .get("writer")
                .await
                .expect("read")
                .expect("found")
                .confirmed
        );
        let auth = Authenticator::new(whole, std::time::Duration::from_secs(60));
        let role = auth
            .authenticate("writer", "writer password", None)
            .await
            .expect("right");
        assert!(role.allows(Permission::Write));
    }
}
