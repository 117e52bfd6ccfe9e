//! The requests the RESP commands make of the coordinator, shared by the
//! string commands (`keys`) and the hash commands (`hashes`): reads of a
//! row, queries of a hash's fields, and coordinator errors as replies.

use bytes::Bytes;
use tokio::time::Instant;

use super::Shared;
use super::reply::Reply;
use crate::coordinator::{
    ConsistencyLevel, CoordinatorError, QueryPage, QueryRequest, ReadRequest, ReadResult,
};

/// Requests one multi-key command has in flight at once.
pub const FAN_OUT: usize = 32;

/// The first sort key of a hash field: every non-empty sort key is at
/// least this.
pub const FIRST_FIELD: &[u8] = &[0];

/// A coordinator error as a RESP error: its first word is the kind, so
/// clients can tell a retryable `UNAVAILABLE` or `TIMEOUT` from an `ERR`.
pub fn error_reply(error: &CoordinatorError) -> Reply {
    Reply::error(match error {
        CoordinatorError::InvalidArgument(why) => format!("ERR {why}"),
        CoordinatorError::Unavailable { required, alive } => {
            format!("UNAVAILABLE required {required}, alive {alive}: not enough live replicas")
        }
        CoordinatorError::Timeout { required, received } => format!(
            "TIMEOUT required {required}, received {received}: replicas did not answer in time (a write may still be applied)"
        ),
        CoordinatorError::Failed {
            required,
            received,
            reasons,
        } => format!(
            "FAILED required {required}, received {received}: replicas failed ({})",
            reasons.join("; ")
        ),
        CoordinatorError::NotStored { reason } => {
            format!(
                "UNAVAILABLE no replica is up and no hint could be stored ({reason}); nothing was written"
            )
        }
        CoordinatorError::ClockOffset(why) => format!("UNAVAILABLE {why}"),
        CoordinatorError::Storage(error) => format!("ERR local storage failed: {error}"),
    })
}

pub fn reserved() -> Reply {
    Reply::error("ERR keys starting with \\x00ringkv/ are reserved for the cluster's own use")
}

/// Reads the string value of `key` (its row with the empty sort key).
pub async fn read(
    shared: &Shared,
    level: ConsistencyLevel,
    key: Bytes,
) -> Result<Option<ReadResult>, Reply> {
    read_row(shared, level, key, Bytes::new()).await
}

/// Reads the row `sort_key` of the partition `key`.
pub async fn read_row(
    shared: &Shared,
    level: ConsistencyLevel,
    key: Bytes,
    sort_key: Bytes,
) -> Result<Option<ReadResult>, Reply> {
    if crate::auth::is_reserved(&key) {
        shared.metrics.get.rejected(Some(level));
        return Err(reserved());
    }
    let started = Instant::now();
    let request = ReadRequest {
        sort_key,
        key,
        level,
        timeout: None,
        trace: None,
    };
    let result = shared.coordinator.read(request).await;
    shared.metrics.get.record(level, started, &result);
    result.map_err(|error| error_reply(&error))
}

/// Redis's error for a command against a key of the other type.
pub fn wrong_type() -> Reply {
    Reply::error("WRONGTYPE Operation against a key holding the wrong kind of value")
}

/// A query of the fields of the hash `key`.
pub fn fields_query(
    key: Bytes,
    level: ConsistencyLevel,
    limit: usize,
    page_token: Bytes,
) -> QueryRequest {
    QueryRequest {
        key,
        start: Bytes::from_static(FIRST_FIELD),
        end: None,
        prefix: Bytes::new(),
        limit,
        max_bytes: 0,
        reverse: false,
        page_token,
        level,
        timeout: None,
        trace: None,
    }
}

/// One page of the hash's fields.
pub async fn fields_page(shared: &Shared, query: QueryRequest) -> Result<QueryPage, Reply> {
    if crate::auth::is_reserved(&query.key) {
        shared.metrics.query.rejected(Some(query.level));
        return Err(reserved());
    }
    let (level, started) = (query.level, Instant::now());
    let page = shared.coordinator.query(query).await;
    shared.metrics.query.record(level, started, &page);
    page.map_err(|error| error_reply(&error))
}

/// Whether the partition `key` holds a field (a row with a non-empty sort
/// key).
pub async fn holds_hash(
    shared: &Shared,
    level: ConsistencyLevel,
    key: Bytes,
) -> Result<bool, Reply> {
    // A page may end empty with a token, past many deleted fields: read
    // on, a few pages at most (each is bounded work).
    let mut token = Bytes::new();
    for _ in 0..HOLDS_HASH_PAGES {
        let page = fields_page(shared, fields_query(key.clone(), level, 1, token)).await?;
        if !page.rows.is_empty() {
            return Ok(true);
        }
        match page.page_token {
            Some(next) => token = next,
            None => return Ok(false),
        }
    }
    Ok(false)
}

/// Pages [`holds_hash`] reads at most: past them (thousands of deleted
/// fields in a row, each page a bounded walk), the key counts as holding
/// no hash.
const HOLDS_HASH_PAGES: usize = 8;
