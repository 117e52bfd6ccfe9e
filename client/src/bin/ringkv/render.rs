//! How results look: text for people, JSON for scripts.

use bytes::Bytes;
use ringkv_client::{
    ChangeSummary, CleanupSummary, ClusterStatus, Endpoints, MemberInfo, NodeInfo, NodeStats,
    RepairProgress, RingInfo, Row, RowCount, Streams, Value,
};
use serde_json::json;

use crate::format::{ago, bytes_for_display, human_bytes, table};
use crate::nodetool::StatsView;

/// What a delete removed from its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A row (`None`: the plain key).
    Row(Option<String>),
    /// The rows in `[from, to)`.
    Rows {
        from: String,
        to: Option<String>,
    },
    Partition,
}

/// What a command produced.
#[derive(Debug)]
pub enum Outcome {
    Read {
        key: String,
        /// The row's sort key; `None`: the plain key.
        row: Option<String>,
        found: Option<Value>,
    },
    Written {
        key: String,
        row: Option<String>,
        timestamp_micros: i64,
    },
    Deleted {
        key: String,
        what: Removed,
        timestamp_micros: i64,
    },
    Info {
        info: NodeInfo,
        /// `None` from a node that keeps no statistics.
        stats: Option<NodeStats>,
    },
    /// `tpstats`, `hints`, `compactionstats`.
    Stats(StatsView, NodeStats),
    /// `describecluster`.
    Described(ClusterStatus),
    Status(ClusterStatus),
    Ring(RingInfo),
    Endpoints {
        key: String,
        endpoints: Endpoints,
    },
    Repaired(RepairProgress),
    Changed {
        what: &'static str,
        summary: ChangeSummary,
    },
    Cleaned(CleanupSummary),
    Streams(Streams),
    /// A command that only succeeded, with what it did.
    Done(String),
    /// A page of a query (or all of them): the rows, and the token of the
    /// next page when there is one.
    Rows {
        key: String,
        rows: Vec<Row>,
        next: Option<Bytes>,
    },
    Counted {
        key: String,
        count: RowCount,
    },
    /// `user list`: names and roles.
    Users(Vec<(String, String)>),
    /// `batch`: each partition's outcome.
    Batched(Vec<BatchLine>),
}

/// What one partition of a batch did.
#[derive(Debug)]
pub struct BatchLine {
    pub key: String,
    pub operations: usize,
    /// The timestamp it was written at, or why not.
    pub result: Result<i64, String>,
}

impl Outcome {
    /// Partitions of a batch that failed, and of how many; `None` for
    /// anything else.
    pub fn failures(&self) -> Option<(usize, usize)> {
        match self {
            Outcome::Batched(lines) => Some((
                lines.iter().filter(|line| line.result.is_err()).count(),
                lines.len(),
            )),
            _ => None,
        }
    }
}

fn up_down(up: bool) -> String {
    if up { "UP".into() } else { "DOWN".into() }
}

fn member_json(m: &MemberInfo) -> serde_json::Value {
    json!({
        "node_id": m.id,
        "name": m.name,
        "address": m.client_addr,
        "rack": m.rack,
        "up": m.up,
        "state": m.state,
        "load_bytes": m.load_bytes,
        "owns": m.owns,
        "tokens": m.tokens,
        "last_repair": m.last_repair,
        "clock_offset_micros": m.clock_offset_micros,
        "disk_problem": m.disk_problem,
        "last_repair_failed_ranges": m.last_repair_failed_ranges.iter().map(|f| json!([f.start_token, f.end_token])).collect::<Vec<_>>(),
    })
}

/// A peer's clock offset as `status` shows it: `+0.3ms`, `-30.0s`, `?`
/// when not measured.
fn clock_offset(micros: Option<i64>) -> String {
    match micros {
        None => "?".into(),
        Some(0) => "0".into(),
        Some(m) if m.abs() >= 1_000_000 => format!("{:+.1}s", m as f64 / 1e6),
        Some(m) => format!("{:+.1}ms", m as f64 / 1e3),
    }
}

fn status_text(status: &ClusterStatus) -> String {
    let local = status
        .members
        .iter()
        .find(|m| m.id == status.local_node_id)
        .map_or(status.local_node_id.as_str(), |m| m.name.as_str());
    let mut members: Vec<&MemberInfo> = status.members.iter().collect();
    members.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let mut rows = vec![vec![
        "Status".to_owned(),
        "State".into(),
        "Name".into(),
        "Address".into(),
        "Rack".into(),
        "Load".into(),
        "Owns".into(),
        "Tokens".into(),
        "Last repair".into(),
        "Clock".into(),
        "Node id".into(),
    ]];
    for m in members {
        rows.push(vec![
            up_down(m.up),
            match &m.disk_problem {
                Some(_) => format!("{} (CANNOT WRITE)", m.state),
                None => m.state.clone(),
            },
            m.name.clone(),
            m.client_addr.clone(),
            m.rack.clone(),
            human_bytes(m.load_bytes),
            format!("{:.1}%", m.owns * 100.0),
            m.tokens.to_string(),
            ago(m.last_repair),
            clock_offset(m.clock_offset_micros),
            m.id.clone(),
        ]);
    }
    let mut text = format!(
        "Cluster {}, replication factor {}, as seen by {}\n{}",
        status.cluster_name,
        status.replication_factor,
        local,
        table(&rows)
    );
    for m in status.members.iter() {
        if let Some(problem) = &m.disk_problem {
            text.push_str(&format!("\n{} cannot write: {problem}", m.name));
        }
        if !m.last_repair_failed_ranges.is_empty() {
            let ranges: Vec<String> = m
                .last_repair_failed_ranges
                .iter()
                .map(|f| format!("({}, {}]", f.start_token, f.end_token))
                .collect();
            text.push_str(&format!(
                "\n{}: its last repair could not sync {} ranges: {}",
                m.name,
                ranges.len(),
                ranges.join(" ")
            ));
        }
    }
    if let Some(change) = &status.change_in_progress {
        text.push_str(&format!(
            "\nTopology change in progress: {change} (`ringkv streams` on the streaming nodes shows progress)"
        ));
    }
    text
}

fn ring_text(ring: &RingInfo) -> String {
    let mut rows = vec![vec![
        "Token".to_owned(),
        "Name".into(),
        "Address".into(),
        "Rack".into(),
        "Status".into(),
    ]];
    for range in &ring.ranges {
        if let Some(owner) = range.replicas.first().and_then(|&i| ring.members.get(i)) {
            rows.push(vec![
                range.end_token.to_string(),
                owner.name.clone(),
                owner.client_addr.clone(),
                owner.rack.clone(),
                up_down(owner.up),
            ]);
        }
    }
    table(&rows)
}

/// Text form.
pub fn text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Read {
            found: Some(value), ..
        } => bytes_for_display(&value.value),
        Outcome::Read { found: None, .. } => "(not found)".to_owned(),
        Outcome::Written { .. } | Outcome::Deleted { .. } => "OK".to_owned(),
        Outcome::Info { info, stats } => {
            let mut text = format!(
                "node id:            {}\nnode name:          {}\ncluster:            {}\nrack:               {}\nversion:            {}\nuptime:             {}s\nreplication factor: {}",
                info.id,
                info.name,
                info.cluster_name,
                info.rack,
                info.version,
                info.uptime_seconds,
                info.replication_factor
            );
            if let Some(stats) = stats {
                // The uptime line is already there.
                let more = crate::nodetool::text(StatsView::Info, stats);
                for line in more.lines().filter(|l| !l.starts_with("uptime:")) {
                    text.push('\n');
                    text.push_str(line);
                }
            }
            text
        }
        Outcome::Stats(view, stats) => crate::nodetool::text(*view, stats),
        Outcome::Described(status) => crate::nodetool::describe_text(status),
        Outcome::Status(status) => status_text(status),
        Outcome::Ring(ring) => ring_text(ring),
        Outcome::Endpoints { endpoints, .. } => {
            let mut rows = Vec::new();
            for m in &endpoints.replicas {
                rows.push(vec![
                    m.name.clone(),
                    m.client_addr.clone(),
                    m.rack.clone(),
                    up_down(m.up),
                ]);
            }
            format!("token {}\n{}", endpoints.token, table(&rows))
        }
        Outcome::Changed { what, summary } => format!(
            "{what}: {} keys streamed ({}) in {:.1}s",
            summary.keys_streamed,
            human_bytes(summary.bytes_streamed),
            summary.elapsed.as_secs_f64()
        ),
        Outcome::Cleaned(c) => format!(
            "cleanup: {} keys deleted, {} freed, from {} ranges this node no longer replicates",
            c.keys_deleted,
            human_bytes(c.bytes_freed),
            c.ranges
        ),
        Outcome::Streams(streams) => streams_text(streams),
        Outcome::Done(what) => what.clone(),
        Outcome::Rows { rows, next, .. } => {
            let body: Vec<Vec<String>> = std::iter::once(vec!["ROW".into(), "VALUE".into()])
                .chain(rows.iter().map(|row| {
                    vec![
                        bytes_for_display(&row.sort_key),
                        bytes_for_display(&row.value),
                    ]
                }))
                .collect();
            let mut text = if rows.is_empty() {
                "(no rows)".to_owned()
            } else {
                format!("{}\n({} rows)", table(&body), rows.len())
            };
            if let Some(next) = next {
                text.push_str(&format!(
                    "\nmore rows: add --page {} (or --all)",
                    hex::encode(next)
                ));
            }
            text
        }
        Outcome::Counted { count, .. } if count.truncated => {
            format!(
                "at least {} rows (counting stopped at the limit)",
                count.count
            )
        }
        Outcome::Counted { count, .. } => format!("{} rows", count.count),
        Outcome::Batched(lines) => lines
            .iter()
            .map(|line| match &line.result {
                Ok(ts) => format!(
                    "partition {}: {} operations written (timestamp {ts})",
                    line.key, line.operations
                ),
                Err(why) => format!(
                    "partition {}: {} operations FAILED: {why}",
                    line.key, line.operations
                ),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Outcome::Users(users) => {
            let mut rows = vec![vec!["User".to_owned(), "Role".to_owned()]];
            rows.extend(users.iter().map(|(n, r)| vec![n.clone(), r.clone()]));
            table(&rows)
        }
        Outcome::Repaired(r) => {
            let mut text = format!(
                "Repair {}: {} of {} ranges compared, {} Merkle leaves differed, {} keys streamed ({}), {} replica pairs skipped (down), {} ranges failed, {:.1}s",
                if r.failed_ranges.is_empty() {
                    "complete"
                } else {
                    "finished with failures"
                },
                r.ranges_done,
                r.ranges_total,
                r.leaves_differing,
                r.keys_streamed,
                human_bytes(r.bytes_streamed),
                r.replicas_skipped,
                r.failed_ranges.len(),
                r.elapsed.as_secs_f64()
            );
            for f in &r.failed_ranges {
                text.push_str(&format!(
                    "\n  failed range ({}, {}]: {}",
                    f.start_token, f.end_token, f.error
                ));
            }
            text
        }
    }
}

fn streams_text(streams: &Streams) -> String {
    let mut rows = vec![vec![
        "Operation".into(),
        "From".into(),
        "To".into(),
        "Ranges".into(),
        "Keys".into(),
        "Bytes".into(),
        "Rate".into(),
        "State".into(),
    ]];
    for s in &streams.streams {
        let state = match (&s.error, s.done) {
            (Some(error), _) => format!("failed: {error}"),
            (None, true) => "done".into(),
            (None, false) => "streaming".into(),
        };
        rows.push(vec![
            s.operation.clone(),
            s.source.clone(),
            s.target.clone(),
            format!("{}/{}", s.ranges_done, s.ranges_total),
            s.keys.to_string(),
            human_bytes(s.bytes),
            format!(
                "{}/s",
                human_bytes((s.bytes as f64 / s.elapsed.as_secs_f64().max(0.001)) as u64)
            ),
            state,
        ]);
    }
    let change = streams
        .change_in_progress
        .as_deref()
        .unwrap_or("no topology change in progress");
    if streams.streams.is_empty() {
        format!("{change}\nno streams")
    } else {
        format!("{change}\n{}", table(&rows))
    }
}

/// JSON form, one object.
pub fn json(outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Read {
            key,
            row,
            found: None,
        } => with_row(json!({ "key": key, "found": false }), row),
        Outcome::Read {
            key,
            row,
            found: Some(value),
        } => {
            let mut object = with_row(
                json!({
                    "key": key,
                    "found": true,
                    "timestamp_micros": value.timestamp_micros,
                    "expires_at": value.expires_at,
                    "expires_at_ms": value.expires_at_ms,
                }),
                row,
            );
            match std::str::from_utf8(&value.value) {
                Ok(text) => object["value"] = json!(text),
                Err(_) => object["value_hex"] = json!(hex::encode(&value.value)),
            }
            object
        }
        Outcome::Written {
            key,
            row,
            timestamp_micros,
        } => with_row(
            json!({ "key": key, "written": true, "timestamp_micros": timestamp_micros }),
            row,
        ),
        Outcome::Deleted {
            key,
            what,
            timestamp_micros,
        } => {
            let object =
                json!({ "key": key, "deleted": true, "timestamp_micros": timestamp_micros });
            match what {
                Removed::Row(row) => with_row(object, row),
                Removed::Rows { from, to } => {
                    let mut object = object;
                    object["rows"] = json!({ "from": from, "to": to });
                    object
                }
                Removed::Partition => {
                    let mut object = object;
                    object["partition"] = json!(true);
                    object
                }
            }
        }
        Outcome::Info { info, stats } => {
            let mut object = json!({
                "node_id": info.id,
                "node_name": info.name,
                "cluster_name": info.cluster_name,
                "rack": info.rack,
                "version": info.version,
                "uptime_seconds": info.uptime_seconds,
                "replication_factor": info.replication_factor,
            });
            if let (Some(stats), Some(fields)) = (stats, object.as_object_mut())
                && let serde_json::Value::Object(more) =
                    crate::nodetool::json(StatsView::Info, stats)
            {
                fields.extend(more);
            }
            object
        }
        Outcome::Stats(view, stats) => crate::nodetool::json(*view, stats),
        Outcome::Described(status) => crate::nodetool::describe_json(status),
        Outcome::Changed { what, summary } => json!({
            "done": what,
            "keys_streamed": summary.keys_streamed,
            "bytes_streamed": summary.bytes_streamed,
            "elapsed_ms": summary.elapsed.as_millis() as u64,
        }),
        Outcome::Done(what) => json!({ "done": what }),
        Outcome::Rows { key, rows, next } => {
            // JSON lines: one object a row, then the next page's token.
            let mut lines: Vec<serde_json::Value> = rows
                .iter()
                .map(|row| {
                    let mut object = json!({
                        "key": key,
                        "timestamp_micros": row.timestamp_micros,
                        "expires_at": row.expires_at,
                        "expires_at_ms": row.expires_at_ms,
                    });
                    text_or_hex(&mut object, "row", &row.sort_key);
                    text_or_hex(&mut object, "value", &row.value);
                    object
                })
                .collect();
            if let Some(next) = next {
                lines.push(json!({ "next_page": hex::encode(next) }));
            }
            serde_json::Value::Array(lines)
        }
        Outcome::Batched(lines) => serde_json::Value::Array(
            lines
                .iter()
                .map(|line| match &line.result {
                    Ok(ts) => json!({
                        "key": line.key,
                        "operations": line.operations,
                        "timestamp_micros": ts,
                    }),
                    Err(why) => json!({
                        "key": line.key,
                        "operations": line.operations,
                        "error": why,
                    }),
                })
                .collect(),
        ),
        Outcome::Counted { key, count } => json!({
            "key": key,
            "count": count.count,
            "truncated": count.truncated,
        }),
        Outcome::Users(users) => json!({
            "users": users.iter().map(|(n, r)| json!({ "name": n, "role": r })).collect::<Vec<_>>(),
        }),
        Outcome::Cleaned(c) => json!({
            "ranges": c.ranges,
            "keys_deleted": c.keys_deleted,
            "bytes_freed": c.bytes_freed,
        }),
        Outcome::Streams(streams) => json!({
            "change_in_progress": streams.change_in_progress,
            "streams": streams.streams.iter().map(|s| json!({
                "operation": s.operation,
                "source": s.source,
                "target": s.target,
                "ranges_total": s.ranges_total,
                "ranges_done": s.ranges_done,
                "keys": s.keys,
                "bytes": s.bytes,
                "done": s.done,
                "error": s.error,
                "elapsed_ms": s.elapsed.as_millis() as u64,
            })).collect::<Vec<_>>(),
        }),
        Outcome::Status(status) => json!({
            "cluster_name": status.cluster_name,
            "replication_factor": status.replication_factor,
            "local_node_id": status.local_node_id,
            "change_in_progress": status.change_in_progress,
            "nodes": status.members.iter().map(member_json).collect::<Vec<_>>(),
        }),
        Outcome::Ring(ring) => json!({
            "replication_factor": ring.replication_factor,
            "nodes": ring.members.iter().map(member_json).collect::<Vec<_>>(),
            "ranges": ring.ranges.iter().map(|r| json!({
                "start_token": r.start_token,
                "end_token": r.end_token,
                "replicas": r.replicas.iter().filter_map(|&i| ring.members.get(i)).map(|m| m.id.clone()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
        Outcome::Repaired(r) => json!({
            "ranges_total": r.ranges_total,
            "ranges_compared": r.ranges_done,
            "leaves_differing": r.leaves_differing,
            "keys_streamed": r.keys_streamed,
            "bytes_streamed": r.bytes_streamed,
            "replicas_skipped": r.replicas_skipped,
            "elapsed_ms": r.elapsed.as_millis() as u64,
            "failed_ranges": r.failed_ranges.iter().map(|f| json!({
                "start_token": f.start_token,
                "end_token": f.end_token,
                "error": f.error,
            })).collect::<Vec<_>>(),
        }),
        Outcome::Endpoints { key, endpoints } => json!({
            "key": key,
            "token": endpoints.token,
            "replicas": endpoints.replicas.iter().map(member_json).collect::<Vec<_>>(),
        }),
    }
}

/// Sets `field` to `bytes` as text, or `<field>_hex` when not UTF-8.
fn text_or_hex(object: &mut serde_json::Value, field: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object[field] = json!(text),
        Err(_) => object[format!("{field}_hex")] = json!(hex::encode(bytes)),
    }
}

/// `object` with a `row` field when the command named a row.
fn with_row(mut object: serde_json::Value, row: &Option<String>) -> serde_json::Value {
    if let Some(row) = row {
        object["row"] = json!(row);
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn values_print_as_text_or_hex() {
        assert_eq!(bytes_for_display(b"hello"), "hello");
        assert_eq!(bytes_for_display(&[0xff, 0x00, 0x10]), "0xff0010");
        let outcome = Outcome::Read {
            key: "k".into(),
            row: None,
            found: Some(Value {
                value: Bytes::from_static(&[0xff]),
                timestamp_micros: 7,
                expires_at: None,
                expires_at_ms: None,
            }),
        };
        assert_eq!(text(&outcome), "0xff");
        let object = json(&outcome);
        assert_eq!(object["value_hex"], "ff");
        assert_eq!(object["found"], true);
        assert!(object.get("value").is_none());
    }
}
