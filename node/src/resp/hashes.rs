//! Redis hashes on partitions: the hash `key` is the partition `key`, and
//! each field is a row whose sort key is the field's name. So a hash is
//! also a partition any client can query (the gRPC `Query` of `key` lists
//! its fields in order), and `HSCAN` walks the fields in that order.
//!
//! - `HSET` (and `HMSET`) of several fields is one partition batch,
//!   atomic on each replica, for up to [`MAX_BATCH_OPS`] fields and 1 MiB
//!   of them; a larger one is written as several such batches, in order.
//! - The row with the empty sort key is the key's string value (see
//!   `keys`), so a field name is never empty.
//! - Types: writes do not check them (that would take a read before every
//!   write, and without compare-and-set it could not be atomic), so a key
//!   can hold a string value and fields at once: string commands see the
//!   string, hash commands the fields. A read that finds nothing of its
//!   own type answers `WRONGTYPE` if the key holds the other (one more
//!   read, only on a miss). `DEL` removes both.
//! - `HSET` answers the number of distinct fields it wrote and `HDEL` the
//!   number it deleted, whether or not they existed before: both are
//!   blind writes, as `DEL` is.
//! - `HINCRBY`, `HINCRBYFLOAT` and `HSETNX` need an atomic
//!   read-modify-write and are refused until ringkv has compare-and-set.

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, stream};
use tokio::time::Instant;

use super::Shared;
use super::command::{integer, lower};
use super::glob;
use super::reply::{Reply, not_an_integer, syntax_error};
use super::requests::{
    FAN_OUT, error_reply, fields_page, fields_query, read, read_row, reserved, wrong_type,
};
use crate::coordinator::{
    BatchOp, BatchRequest, ConsistencyLevel, MAX_BATCH_BYTES, MAX_BATCH_OPS, MAX_QUERY_LIMIT, Row,
    Target,
};

/// Fields an `HSCAN` page holds when `COUNT` is not given (Redis's 10).
const DEFAULT_SCAN_COUNT: usize = 10;

fn empty_field() -> Reply {
    Reply::error(
        "ERR a hash field name cannot be empty in ringkv: the empty name is the key's string value",
    )
}

/// What a hash read answers when it found no field: `WRONGTYPE` if the
/// key holds a string value, otherwise `empty`.
async fn none_found(shared: &Shared, level: ConsistencyLevel, key: Bytes, empty: Reply) -> Reply {
    match read(shared, level, key).await {
        Ok(Some(_)) => wrong_type(),
        Ok(None) => empty,
        Err(reply) => reply,
    }
}

/// The field names of `args`, checked: never empty.
fn field_names(args: &[Bytes]) -> Result<(), Reply> {
    if args.iter().any(Bytes::is_empty) {
        return Err(empty_field());
    }
    Ok(())
}

/// Writes `ops` on the hash `key` as partition batches of at most
/// [`MAX_BATCH_OPS`] operations and [`MAX_BATCH_BYTES`] bytes, in order.
async fn write_batches(
    shared: &Shared,
    level: ConsistencyLevel,
    key: Bytes,
    ops: Vec<BatchOp>,
) -> Result<(), Reply> {
    if crate::auth::is_reserved(&key) {
        shared.metrics.batch.rejected(Some(level));
        return Err(reserved());
    }
    // Each op's share of a batch's byte bound: its row key and value.
    let bytes = |op: &BatchOp| {
        let sort = match &op.target {
            Target::Row(sort) => sort.len(),
            _ => 0,
        };
        key.len() + sort + 4 + op.value.as_ref().map_or(0, Bytes::len)
    };
    let mut rest = ops.as_slice();
    while !rest.is_empty() {
        let mut size = 0;
        let take = rest
            .iter()
            .take(MAX_BATCH_OPS)
            .take_while(|op| {
                size += bytes(op);
                size <= MAX_BATCH_BYTES
            })
            .count()
            .max(1);
        let (batch, after) = rest.split_at(take);
        let request = BatchRequest {
            key: key.clone(),
            ops: batch.to_vec(),
            level,
            timestamp: None,
            timeout: None,
            trace: None,
        };
        let started = Instant::now();
        let result = shared.coordinator.batch(request).await;
        shared.metrics.batch.record(level, started, &result);
        result.map_err(|error| error_reply(&error))?;
        rest = after;
    }
    Ok(())
}

/// `HSET key field value [field value ...]`: the number of distinct fields
/// written; `HMSET` answers `OK`.
pub async fn hset(
    shared: Arc<Shared>,
    level: ConsistencyLevel,
    key: Bytes,
    pairs: Vec<(Bytes, Bytes)>,
    answer_ok: bool,
) -> Reply {
    let names: Vec<Bytes> = pairs.iter().map(|(field, _)| field.clone()).collect();
    if let Err(reply) = field_names(&names) {
        return reply;
    }
    // A field named twice takes its last value, as in Redis.
    let mut ops: Vec<BatchOp> = Vec::with_capacity(pairs.len());
    let mut seen = std::collections::HashMap::with_capacity(pairs.len());
    for (field, value) in pairs {
        match seen.get(&field) {
            Some(&at) => ops[at] = BatchOp::put(field, value, None),
            None => {
                seen.insert(field.clone(), ops.len());
                ops.push(BatchOp::put(field, value, None));
            }
        }
    }
    let written = ops.len();
    match write_batches(&shared, level, key, ops).await {
        Ok(()) if answer_ok => Reply::OK,
        Ok(()) => Reply::Integer(written as i64),
        Err(reply) => reply,
    }
}

/// `HDEL key field [field ...]`: the number of distinct fields named.
pub async fn hdel(
    shared: Arc<Shared>,
    level: ConsistencyLevel,
    key: Bytes,
    mut fields: Vec<Bytes>,
) -> Reply {
    if let Err(reply) = field_names(&fields) {
        return reply;
    }
    fields.sort_unstable();
    fields.dedup();
    let deleted = fields.len();
    let ops = fields
        .into_iter()
        .map(|field| BatchOp::delete(Target::Row(field)))
        .collect();
    match write_batches(&shared, level, key, ops).await {
        Ok(()) => Reply::Integer(deleted as i64),
        Err(reply) => reply,
    }
}

/// `HGET key field`.
pub async fn hget(shared: Arc<Shared>, level: ConsistencyLevel, key: Bytes, field: Bytes) -> Reply {
    if field.is_empty() {
        return empty_field();
    }
    match read_row(&shared, level, key.clone(), field).await {
        Ok(Some(found)) => Reply::Bulk(found.value),
        Ok(None) => none_found(&shared, level, key, Reply::Null).await,
        Err(reply) => reply,
    }
}

/// `HEXISTS key field` (`strlen: false`) or `HSTRLEN key field`.
pub async fn hexists(
    shared: Arc<Shared>,
    level: ConsistencyLevel,
    key: Bytes,
    field: Bytes,
    strlen: bool,
) -> Reply {
    if field.is_empty() {
        return empty_field();
    }
    match read_row(&shared, level, key.clone(), field).await {
        Ok(Some(found)) if strlen => Reply::Integer(found.value.len() as i64),
        Ok(Some(_)) => Reply::Integer(1),
        Ok(None) => none_found(&shared, level, key, Reply::Integer(0)).await,
        Err(reply) => reply,
    }
}

/// `HMGET key field [field ...]`: the values in order. Its answer is held
/// to the largest command the port takes, as `MGET`'s.
pub async fn hmget(
    shared: Arc<Shared>,
    level: ConsistencyLevel,
    key: Bytes,
    fields: Vec<Bytes>,
) -> Reply {
    if let Err(reply) = field_names(&fields) {
        return reply;
    }
    let limit = shared.settings.limits.max_command;
    let (mut values, mut bytes, mut found) = (Vec::new(), 0usize, false);
    let shared_ref = &shared;
    let key_ref = &key;
    let mut results = stream::iter(fields)
        .map(|field| read_row(shared_ref, level, key_ref.clone(), field))
        .buffered(FAN_OUT);
    while let Some(result) = results.next().await {
        match result {
            Ok(Some(row)) => {
                found = true;
                bytes += row.value.len();
                if bytes > limit {
                    return Reply::error(format!(
                        "ERR HMGET's answer would be over {limit} bytes; ask for fewer fields at once"
                    ));
                }
                values.push(Reply::Bulk(row.value));
            }
            Ok(None) => values.push(Reply::Null),
            Err(reply) => return reply,
        }
    }
    drop(results);
    if found {
        return Reply::Array(values);
    }
    none_found(&shared, level, key, Reply::Array(values)).await
}

/// What `HGETALL`, `HKEYS` and `HVALS` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whole {
    All,
    Keys,
    Values,
}

/// `HGETALL`, `HKEYS`, `HVALS`: every field, in field order, held to the
/// largest command the port takes (past it: use `HSCAN`).
pub async fn whole(shared: Arc<Shared>, level: ConsistencyLevel, key: Bytes, what: Whole) -> Reply {
    let limit = shared.settings.limits.max_command;
    let mut rows: Vec<Row> = Vec::new();
    let mut bytes = 0usize;
    let mut token = Bytes::new();
    loop {
        let query = fields_query(key.clone(), level, MAX_QUERY_LIMIT, token);
        let page = match fields_page(&shared, query).await {
            Ok(page) => page,
            Err(reply) => return reply,
        };
        for row in &page.rows {
            bytes += row.sort_key.len() + row.value.len();
        }
        if bytes > limit {
            return Reply::error(format!(
                "ERR the hash holds over {limit} bytes, more than one answer may; read it with HSCAN"
            ));
        }
        rows.extend(page.rows);
        match page.page_token {
            Some(next) => token = next,
            None => break,
        }
    }
    if rows.is_empty() {
        let empty = match what {
            Whole::All => Reply::Map(Vec::new()),
            Whole::Keys | Whole::Values => Reply::Array(Vec::new()),
        };
        return none_found(&shared, level, key, empty).await;
    }
    match what {
        Whole::All => Reply::Map(
            rows.into_iter()
                .map(|row| (Reply::Bulk(row.sort_key), Reply::Bulk(row.value)))
                .collect(),
        ),
        Whole::Keys => Reply::Array(
            rows.into_iter()
                .map(|row| Reply::Bulk(row.sort_key))
                .collect(),
        ),
        Whole::Values => Reply::Array(rows.into_iter().map(|row| Reply::Bulk(row.value)).collect()),
    }
}

/// `HLEN key`: the number of fields, counted by paging through them.
pub async fn hlen(shared: Arc<Shared>, level: ConsistencyLevel, key: Bytes) -> Reply {
    if crate::auth::is_reserved(&key) {
        shared.metrics.query.rejected(Some(level));
        return reserved();
    }
    let started = Instant::now();
    let query = fields_query(key.clone(), level, 0, Bytes::new());
    let counted = shared.coordinator.count(query, 0).await;
    shared.metrics.query.record(level, started, &counted);
    match counted {
        Ok(count) if count.count > 0 => Reply::Integer(count.count as i64),
        Ok(_) => none_found(&shared, level, key, Reply::Integer(0)).await,
        Err(error) => error_reply(&error),
    }
}

/// The options of `HSCAN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOptions {
    pub pattern: Option<Bytes>,
    pub count: usize,
    pub values: bool,
}

/// Parses `[MATCH pattern] [COUNT n] [NOVALUES]`.
pub fn scan_options(args: &[Bytes]) -> Result<ScanOptions, Reply> {
    let mut options = ScanOptions {
        pattern: None,
        count: DEFAULT_SCAN_COUNT,
        values: true,
    };
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match lower(word).as_str() {
            "match" => options.pattern = Some(words.next().ok_or_else(syntax_error)?.clone()),
            "count" => {
                let n =
                    integer(words.next().ok_or_else(syntax_error)?).ok_or_else(not_an_integer)?;
                if n < 1 {
                    return Err(syntax_error());
                }
                options.count = usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(MAX_QUERY_LIMIT);
            }
            "novalues" => options.values = false,
            _ => return Err(syntax_error()),
        }
    }
    Ok(options)
}

/// `HSCAN key cursor [MATCH pattern] [COUNT n] [NOVALUES]`: a page of
/// about `COUNT` fields in field order (fewer where `MATCH` filters some
/// out), and the cursor of the next page (0: done). Cursors are kept by
/// the node (see `cursors`).
pub async fn hscan(
    shared: Arc<Shared>,
    level: ConsistencyLevel,
    key: Bytes,
    cursor: Bytes,
    options: ScanOptions,
) -> Reply {
    let token = match std::str::from_utf8(&cursor)
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
    {
        Some(0) => Bytes::new(),
        Some(cursor) => match shared.cursors.resume(cursor, &key) {
            Some(token) => token,
            None => return Reply::error("ERR invalid cursor"),
        },
        None => return Reply::error("ERR invalid cursor"),
    };
    let first = token.is_empty();
    let query = fields_query(key.clone(), level, options.count, token);
    let page = match fields_page(&shared, query).await {
        Ok(page) => page,
        Err(reply) => return reply,
    };
    // (A page may end empty with a token past deleted fields: it is not
    // the end, and the next cursor goes on.)
    if first && page.rows.is_empty() && page.page_token.is_none() {
        let empty = Reply::Array(vec![Reply::bulk_static("0"), Reply::Array(Vec::new())]);
        return none_found(&shared, level, key, empty).await;
    }
    let next = match page.page_token {
        Some(token) => shared.cursors.issue(key, token),
        None => 0,
    };
    let mut items = Vec::new();
    for row in page.rows {
        if let Some(pattern) = &options.pattern
            && !glob::matches(pattern, &row.sort_key)
        {
            continue;
        }
        items.push(Reply::Bulk(row.sort_key));
        if options.values {
            items.push(Reply::Bulk(row.value));
        }
    }
    Reply::Array(vec![Reply::bulk(next.to_string()), Reply::Array(items)])
}
