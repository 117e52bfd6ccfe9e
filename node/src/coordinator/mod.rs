//! The coordinator: any node runs a client request against the key's
//! replicas and answers once the consistency level is met.
//!
//! A single node is its own and only replica, so a key has one replica
//! whatever the configured replication factor. A level that needs more
//! replicas than are alive is refused with `Unavailable` before anything is
//! written, as Cassandra does.
//!
//! CAVEATS: replication across nodes (the ring, fan-out, read repair) is not
//! here yet; this coordinator writes and reads the local store only.

mod consistency;
mod error;
mod request;

use std::sync::Arc;
use std::time::Duration;

pub use consistency::ConsistencyLevel;
pub use error::CoordinatorError;
pub use request::{Limits, MAX_TTL_SECONDS, ReadRequest, ReadResult, WriteRequest, validate_key};

use crate::clock::{HybridClock, Timestamp, wall_clock_seconds};
use crate::ring::Token;
use crate::storage::{Cell, LocalStore};

/// Settings of the request paths.
#[derive(Debug, Clone)]
pub struct CoordinatorSettings {
    /// N, replicas per key.
    pub replication_factor: usize,
    pub write_timeout: Duration,
    pub read_timeout: Duration,
    pub limits: Limits,
}

/// Runs reads and writes.
pub struct Coordinator {
    store: LocalStore,
    clock: Arc<HybridClock>,
    settings: CoordinatorSettings,
}

impl Coordinator {
    pub fn new(store: LocalStore, clock: Arc<HybridClock>, settings: CoordinatorSettings) -> Self {
        Self {
            store,
            clock,
            settings,
        }
    }

    /// Replicas of a key that are alive: on a single node, this node.
    fn live_replicas(&self) -> usize {
        self.settings.replication_factor.min(1)
    }

    fn check_available(&self, level: ConsistencyLevel) -> Result<usize, CoordinatorError> {
        let required = level.required(self.settings.replication_factor);
        let alive = self.live_replicas();
        if required > alive {
            return Err(CoordinatorError::Unavailable { required, alive });
        }
        Ok(required)
    }

    /// Writes a value or tombstone; returns its timestamp.
    pub async fn write(&self, request: WriteRequest) -> Result<Timestamp, CoordinatorError> {
        request.validate(&self.settings.limits)?;
        let required = self.check_available(request.level)?;
        let timestamp = request.timestamp.unwrap_or_else(|| self.clock.now());
        let now = wall_clock_seconds();
        let cell = match request.value {
            Some(value) => {
                let expires_at = request
                    .ttl_seconds
                    .filter(|&ttl| ttl > 0)
                    .map(|ttl| now + i64::from(ttl));
                Cell::live(timestamp, value, expires_at)
            }
            None => Cell::tombstone(timestamp, now),
        };
        let token = Token::of(&request.key);
        let timeout = request.timeout.unwrap_or(self.settings.write_timeout);
        match tokio::time::timeout(timeout, self.store.apply(token, &request.key, &cell)).await {
            Ok(Ok(())) => Ok(timestamp),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err(CoordinatorError::Timeout {
                required,
                received: 0,
            }),
        }
    }

    /// Reads a key; `None` when it has no live value.
    pub async fn read(&self, request: ReadRequest) -> Result<Option<ReadResult>, CoordinatorError> {
        request.validate()?;
        self.check_available(request.level)?;
        let token = Token::of(&request.key);
        let cell = self.store.read(token, &request.key)?;
        Ok(cell
            .filter(|cell| cell.is_live(wall_clock_seconds()))
            .map(|cell| ReadResult {
                timestamp: cell.timestamp,
                expires_at: cell.local_deletion_time,
                value: cell.value,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemoryStorage, SyncMode};
    use bytes::Bytes;

    fn coordinator(n: usize) -> Coordinator {
        let store = LocalStore::new(Arc::new(MemoryStorage::default()), SyncMode::Periodic, None);
        Coordinator::new(
            store,
            Arc::new(HybridClock::default()),
            CoordinatorSettings {
                replication_factor: n,
                write_timeout: Duration::from_secs(2),
                read_timeout: Duration::from_secs(5),
                limits: Limits {
                    max_value_size: 1024,
                },
            },
        )
    }

    fn put(key: &str, value: &str, level: ConsistencyLevel) -> WriteRequest {
        WriteRequest {
            key: Bytes::from(key.to_owned()),
            value: Some(Bytes::from(value.to_owned())),
            level,
            ttl_seconds: None,
            timestamp: None,
            timeout: None,
        }
    }

    fn get(key: &str, level: ConsistencyLevel) -> ReadRequest {
        ReadRequest {
            key: Bytes::from(key.to_owned()),
            level,
            timeout: None,
        }
    }

    #[tokio::test]
    async fn put_get_delete() {
        let c = coordinator(1);
        let ts = c
            .write(put("k", "v", ConsistencyLevel::One))
            .await
            .expect("put");
        let found = c.read(get("k", ConsistencyLevel::One)).await.expect("get");
        assert_eq!(
            found.map(|r| (r.value, r.timestamp)),
            Some((Bytes::from("v"), ts))
        );
        let mut delete = put("k", "", ConsistencyLevel::All);
        delete.value = None;
        let del_ts = c.write(delete).await.expect("delete");
        assert!(del_ts > ts);
        assert_eq!(
            c.read(get("k", ConsistencyLevel::All)).await.expect("get"),
            None
        );
    }

    #[tokio::test]
    async fn client_timestamps_decide_lww() {
        let c = coordinator(1);
        let mut newer = put("k", "newer", ConsistencyLevel::One);
        newer.timestamp = Some(2_000);
        let mut older = put("k", "older", ConsistencyLevel::One);
        older.timestamp = Some(1_000);
        c.write(newer).await.expect("put");
        c.write(older).await.expect("put");
        let found = c.read(get("k", ConsistencyLevel::One)).await.expect("get");
        assert_eq!(found.map(|r| r.value), Some(Bytes::from("newer")));
    }

    #[tokio::test]
    async fn levels_beyond_live_replicas_are_unavailable() {
        let c = coordinator(3);
        // With N=3 on one node, QUORUM needs 2 replicas but 1 is alive.
        let err = c
            .write(put("k", "v", ConsistencyLevel::Quorum))
            .await
            .expect_err("quorum");
        assert!(matches!(
            err,
            CoordinatorError::Unavailable {
                required: 2,
                alive: 1
            }
        ));
        assert!(c.write(put("k", "v", ConsistencyLevel::One)).await.is_ok());
        assert!(c.write(put("k", "v", ConsistencyLevel::Any)).await.is_ok());
        let c = coordinator(1);
        let err = c
            .read(get("k", ConsistencyLevel::Two))
            .await
            .expect_err("two");
        assert!(matches!(
            err,
            CoordinatorError::Unavailable {
                required: 2,
                alive: 1
            }
        ));
    }

    #[tokio::test]
    async fn invalid_requests_touch_nothing() {
        let c = coordinator(1);
        c.write(put("k", "v", ConsistencyLevel::One))
            .await
            .expect("put");
        let too_big = put("k", &"x".repeat(1025), ConsistencyLevel::One);
        assert!(matches!(
            c.write(too_big).await,
            Err(CoordinatorError::InvalidArgument(_))
        ));
        let found = c.read(get("k", ConsistencyLevel::One)).await.expect("get");
        assert_eq!(found.map(|r| r.value), Some(Bytes::from("v")));
    }
}
