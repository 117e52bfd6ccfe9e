//! The key commands: each is one or more coordinator reads or writes at the
//! connection's consistency levels, exactly as the gRPC API runs them.
//!
//! Multi-key commands (`MGET`, `MSET`, `DEL`, `EXISTS`) run one request
//! per key, at most [`FAN_OUT`] at once. There is no atomicity across
//! keys: `MSET` and `DEL` answer success only when every key met the
//! level, and otherwise an error saying for how many keys it did; the keys
//! that were written stay written.
//!
//! Expiry is kept to the millisecond, so `PX`, `PXAT`, `PSETEX` and
//! `PTTL` mean what they mean in Redis. An expiry time already past deletes
//! the key, as in Redis.
//!
//! A key's string value is the row with the empty sort key of the
//! partition named by the key; its hash fields are the partition's other
//! rows (see `hashes`). `DEL` deletes the partition (both), `EXISTS` and
//! `TYPE` look at both, and a read that finds no string value answers
//! `WRONGTYPE` when the key holds a hash.
//!
//! CAVEATS: `DEL` answers the number of distinct keys it deleted, whether
//! or not they existed: a delete is a blind write (a partition deletion),
//! and reading first would double its cost without making the count
//! exact.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, stream};
use tokio::time::Instant;

use super::Shared;
use super::reply::Reply;
use super::requests::{FAN_OUT, error_reply, read, reserved};
use crate::coordinator::{
    BatchOp, BatchRequest, ConsistencyLevel, ReadResult, Target, WriteRequest,
};

/// How long a written value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Never,
    Millis(u64),
    /// An expiry time already past: the write is a delete.
    Past,
}

/// In `n` seconds, or `n` milliseconds (`n` > 0).
pub fn expiry_in(n: i64, millis: bool) -> Expiry {
    let n = u64::try_from(n.max(1)).unwrap_or(1);
    // Past the TTL limit, which the coordinator names, when too large.
    Expiry::Millis(if millis { n } else { n.saturating_mul(1000) })
}

/// At Unix time `at_ms`, seen from `now_ms`.
pub fn expiry_at(at_ms: i64, now_ms: i64) -> Expiry {
    if at_ms <= now_ms {
        return Expiry::Past;
    }
    expiry_in(at_ms - now_ms, true)
}

/// Writes (or with `value: None` deletes) the string value of `key`.
async fn write(
    shared: &Shared,
    level: ConsistencyLevel,
    key: Bytes,
    value: Option<Bytes>,
    expiry: Expiry,
) -> Result<(), Reply> {
    let (value, ttl_ms) = match expiry {
        Expiry::Past => (None, None),
        Expiry::Never => (value, None),
        Expiry::Millis(ms) => (value, Some(ms)),
    };
    let metrics = if value.is_some() {
        &shared.metrics.put
    } else {
        &shared.metrics.delete
    };
    if crate::auth::is_reserved(&key) {
        metrics.rejected(Some(level));
        return Err(reserved());
    }
    let started = Instant::now();
    let request = WriteRequest {
        target: Target::default(),
        key,
        value,
        level,
        ttl_ms,
        timestamp: None,
        timeout: None,
        trace: None,
    };
    let result = shared.coordinator.write(request).await;
    metrics.record(level, started, &result);
    result.map(|_| ()).map_err(|error| error_reply(&error))
}

/// Deletes the key, whatever it holds: a key's string value and its hash
/// fields are one partition, deleted in one batch. The batch also deletes
/// the string value's row itself, so that the coordinator writes it again
/// above a newer value a replica holds (the "write too old" push, which
/// partition deletions alone do not get): a `DEL` after a `SET` deletes
/// it whatever the two coordinators' clocks say.
async fn delete_key(shared: &Shared, level: ConsistencyLevel, key: Bytes) -> Result<(), Reply> {
    if crate::auth::is_reserved(&key) {
        shared.metrics.delete.rejected(Some(level));
        return Err(reserved());
    }
    let started = Instant::now();
    let request = BatchRequest {
        key,
        ops: vec![
            BatchOp::delete(Target::Row(Bytes::new())),
            BatchOp::delete(Target::Partition),
        ],
        level,
        timestamp: None,
        timeout: None,
        trace: None,
    };
    let result = shared.coordinator.batch(request).await;
    shared.metrics.delete.record(level, started, &result);
    result.map(|_| ()).map_err(|error| error_reply(&error))
}

/// The string value of `key`; when it has none, `WRONGTYPE` if the key
/// holds a hash (see `hashes`).
async fn string_value(
    shared: &Shared,
    level: ConsistencyLevel,
    key: Bytes,
) -> Result<Option<ReadResult>, Reply> {
    match read(shared, level, key.clone()).await? {
        Some(found) => Ok(Some(found)),
        None if super::requests::holds_hash(shared, level, key).await? => {
            Err(super::requests::wrong_type())
        }
        None => Ok(None),
    }
}

pub async fn get(shared: Arc<Shared>, level: ConsistencyLevel, key: Bytes) -> Reply {
    match string_value(&shared, level, key).await {
        Ok(Some(found)) => Reply::Bulk(found.value),
        Ok(None) => Reply::Null,
        Err(reply) => reply,
    }
}

pub async fn set(
    shared: Arc<Shared>,
    level: ConsistencyLevel,
    key: Bytes,
    value: Bytes,
    expiry: Expiry,
) -> Reply {
    match write(&shared, level, key, Some(value), expiry).await {
        Ok(()) => Reply::OK,
        Err(reply) => reply,
    }
}

pub async fn strlen(shared: Arc<Shared>, level: ConsistencyLevel, key: Bytes) -> Reply {
    match string_value(&shared, level, key).await {
        Ok(found) => Reply::Integer(found.map_or(0, |f| f.value.len() as i64)),
        Err(reply) => reply,
    }
}

/// `TTL` / `PTTL`: -2 missing, -1 no expiry (a hash never has one), else
/// the time left.
pub async fn ttl(shared: Arc<Shared>, level: ConsistencyLevel, key: Bytes, millis: bool) -> Reply {
    match read(&shared, level, key.clone()).await {
        Ok(None) => match super::requests::holds_hash(&shared, level, key).await {
            Ok(true) => Reply::Integer(-1),
            Ok(false) => Reply::Integer(-2),
            Err(reply) => reply,
        },
        Ok(Some(ReadResult {
            expires_at_ms: None,
            ..
        })) => Reply::Integer(-1),
        Ok(Some(ReadResult {
            expires_at_ms: Some(at),
            ..
        })) => {
            let now_ms = shared.coordinator.wall().millis();
            let left_ms = at.saturating_sub(now_ms).max(0);
            Reply::Integer(if millis {
                left_ms
            } else {
                (left_ms + 500) / 1000
            })
        }
        Err(reply) => reply,
    }
}

/// `MGET`: the values in order. Its answer is held to the largest
/// command the port takes (`max_command`), so a few keys of large values
/// cannot make one reply of gigabytes.
pub async fn mget(shared: Arc<Shared>, level: ConsistencyLevel, keys: Vec<Bytes>) -> Reply {
    let limit = shared.settings.limits.max_command;
    let shared = &shared;
    let mut results = stream::iter(keys)
        .map(|key| read(shared, level, key))
        .buffered(FAN_OUT);
    let mut values = Vec::new();
    let mut bytes = 0usize;
    while let Some(result) = results.next().await {
        match result {
            Ok(Some(found)) => {
                bytes += found.value.len();
                if bytes > limit {
                    return Reply::error(format!(
                        "ERR MGET's answer would be over {limit} bytes; ask for fewer keys at once"
                    ));
                }
                values.push(Reply::Bulk(found.value));
            }
            Ok(None) => values.push(Reply::Null),
            Err(reply) => return reply,
        }
    }
    Reply::Array(values)
}

/// Whether `key` holds a string value or a hash.
async fn key_exists(shared: &Shared, level: ConsistencyLevel, key: Bytes) -> Result<bool, Reply> {
    if read(shared, level, key.clone()).await?.is_some() {
        return Ok(true);
    }
    super::requests::holds_hash(shared, level, key).await
}

/// `EXISTS`: how many of the keys (a key named twice counts twice, as in
/// Redis) hold a string value or a hash.
pub async fn exists(shared: Arc<Shared>, level: ConsistencyLevel, keys: Vec<Bytes>) -> Reply {
    let shared = &shared;
    let results: Vec<_> = stream::iter(keys)
        .map(|key| key_exists(shared, level, key))
        .buffer_unordered(FAN_OUT)
        .collect()
        .await;
    let mut count = 0;
    for result in results {
        match result {
            Ok(found) => count += i64::from(found),
            Err(reply) => return reply,
        }
    }
    Reply::Integer(count)
}

/// `TYPE`: `string`, `hash` or `none`. A key whose string value and hash
/// fields were both written (writes do not check types) is a string.
pub async fn type_of(shared: Arc<Shared>, level: ConsistencyLevel, key: Bytes) -> Reply {
    let kind = match read(&shared, level, key.clone()).await {
        Ok(Some(_)) => "string",
        Ok(None) => match super::requests::holds_hash(&shared, level, key).await {
            Ok(true) => "hash",
            Ok(false) => "none",
            Err(reply) => return reply,
        },
        Err(reply) => return reply,
    };
    Reply::Simple(kind.into())
}

pub async fn mset(
    shared: Arc<Shared>,
    level: ConsistencyLevel,
    pairs: Vec<(Bytes, Bytes)>,
) -> Reply {
    let shared = &shared;
    let writes = pairs
        .into_iter()
        .map(|(key, value)| write(shared, level, key, Some(value), Expiry::Never));
    match independent("MSET", level, writes).await {
        Ok(_) => Reply::OK,
        Err(reply) => reply,
    }
}

pub async fn del(shared: Arc<Shared>, level: ConsistencyLevel, mut keys: Vec<Bytes>) -> Reply {
    keys.sort_unstable();
    keys.dedup();
    let shared = &shared;
    let writes = keys.into_iter().map(|key| delete_key(shared, level, key));
    match independent("DEL", level, writes).await {
        Ok(count) => Reply::Integer(count as i64),
        Err(reply) => reply,
    }
}

/// Runs writes of separate keys, [`FAN_OUT`] at once: the count when all
/// met the level, otherwise an error naming how many did and the first
/// failure.
async fn independent(
    command: &str,
    level: ConsistencyLevel,
    writes: impl Iterator<Item = impl Future<Output = Result<(), Reply>>>,
) -> Result<usize, Reply> {
    let results: Vec<_> = stream::iter(writes)
        .buffer_unordered(FAN_OUT)
        .collect()
        .await;
    let total = results.len();
    let mut done = 0;
    let mut first_failure: Option<Cow<'static, str>> = None;
    for result in results {
        match result {
            Ok(()) => done += 1,
            Err(Reply::Error(text)) => {
                first_failure.get_or_insert(text);
            }
            Err(_) => {}
        }
    }
    match first_failure {
        None => Ok(done),
        Some(failure) => {
            let (code, why) = failure.split_once(' ').unwrap_or(("ERR", failure.as_ref()));
            Err(Reply::error(format!(
                "{code} {command} met {level} for {done} of {total} keys (each key is written on its own; those written stay written); first failure: {why}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::CoordinatorError;

    #[test]
    fn expiries_keep_milliseconds_and_past_times_delete() {
        assert_eq!(expiry_in(10, false), Expiry::Millis(10_000));
        assert_eq!(expiry_in(1, true), Expiry::Millis(1));
        assert_eq!(expiry_in(1500, true), Expiry::Millis(1500));
        assert_eq!(expiry_in(i64::MAX, false), Expiry::Millis(u64::MAX));
        assert_eq!(expiry_in(i64::MAX, true), Expiry::Millis(i64::MAX as u64));
        assert_eq!(expiry_at(5_000, 5_000), Expiry::Past);
        assert_eq!(expiry_at(4_000, 5_000), Expiry::Past);
        assert_eq!(expiry_at(6_500, 5_000), Expiry::Millis(1_500));
    }

    #[test]
    fn errors_lead_with_their_kind() {
        let cases = [
            (
                CoordinatorError::Unavailable {
                    required: 2,
                    alive: 1,
                },
                "UNAVAILABLE required 2, alive 1",
            ),
            (
                CoordinatorError::Timeout {
                    required: 2,
                    received: 1,
                },
                "TIMEOUT required 2, received 1",
            ),
            (
                CoordinatorError::InvalidArgument("key is empty".into()),
                "ERR key is empty",
            ),
        ];
        for (error, start) in cases {
            let reply = error_reply(&error);
            let text = reply.as_error().expect("an error");
            assert!(text.starts_with(start), "{text}");
        }
    }

    #[tokio::test]
    async fn multi_key_writes_say_how_many_met_the_level() {
        let writes = (0..5).map(|i| async move {
            if i % 2 == 0 {
                Ok(())
            } else {
                Err(Reply::error("UNAVAILABLE required 2, alive 1"))
            }
        });
        let reply = independent("MSET", ConsistencyLevel::Quorum, writes)
            .await
            .expect_err("two failed");
        let text = reply.as_error().expect("error");
        assert!(
            text.starts_with("UNAVAILABLE MSET met QUORUM for 3 of 5 keys"),
            "{text}"
        );
        let all = independent(
            "DEL",
            ConsistencyLevel::One,
            (0..3).map(|_| async { Ok(()) }),
        )
        .await;
        assert_eq!(all.ok(), Some(3));
    }
}
