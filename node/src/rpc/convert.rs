//! Protobuf fields → domain values, with the argument checks that belong to
//! the wire format (unknown enum numbers).

use std::time::Duration;

use ringkv_proto::internal::v2 as pbi;
use ringkv_proto::v1 as pb;
use tonic::Status;

use crate::console::sample::{OpSample, Sample};
use crate::coordinator::ConsistencyLevel;
use crate::storage::deletions::Deletions;
use crate::storage::{Cell, CellOf, Mutation, RowsPage, WriteMode};

/// The level a client asked for; unspecified means QUORUM.
pub fn consistency(raw: i32) -> Result<ConsistencyLevel, Status> {
    use pb::ConsistencyLevel as P;
    match P::try_from(raw) {
        Ok(P::Unspecified) | Ok(P::Quorum) => Ok(ConsistencyLevel::Quorum),
        Ok(P::One) => Ok(ConsistencyLevel::One),
        Ok(P::Two) => Ok(ConsistencyLevel::Two),
        Ok(P::Three) => Ok(ConsistencyLevel::Three),
        Ok(P::All) => Ok(ConsistencyLevel::All),
        Ok(P::Any) => Ok(ConsistencyLevel::Any),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown consistency level {raw} (expected ONE, TWO, THREE, QUORUM, ALL or ANY)"
        ))),
    }
}

/// Refuses keys the node keeps for itself (users: see `auth::users`).
pub fn client_key(key: &[u8]) -> Result<(), Status> {
    if crate::auth::is_reserved(key) {
        return Err(Status::invalid_argument(
            "keys starting with \\x00ringkv/ are reserved for the cluster's own use",
        ));
    }
    Ok(())
}

/// A request's timeout; 0 means the node's default.
pub fn timeout(ms: u32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
}

/// A domain cell as its internode message.
pub fn cell_to_proto(cell: &Cell) -> pbi::Cell {
    pbi::Cell {
        timestamp_micros: cell.timestamp,
        tombstone: cell.tombstone,
        local_deletion_time: cell.local_deletion_time,
        expiry_ms_early: u32::from(cell.expiry_ms_early),
        value: cell.value.clone(),
    }
}

/// A replica write of `mutation`: its first cell in `key` and `cell`,
/// the others in `more`.
pub fn mutation_to_proto(mutation: &Mutation, mode: WriteMode) -> pbi::ReplicaWriteRequest {
    let mut entries = mutation.entries().iter();
    let (key, cell) = entries
        .next()
        .map(|(key, cell)| (key.clone(), Some(cell_to_proto(cell))))
        .unwrap_or_default();
    pbi::ReplicaWriteRequest {
        key,
        cell,
        report_newer: mode.report_newer,
        repair: mode.repair,
        more: entries
            .map(|(key, cell)| pbi::KeyCell {
                key: key.clone(),
                cell: Some(cell_to_proto(cell)),
            })
            .collect(),
    }
}

/// An internode cell as a domain cell.
pub fn cell_from_proto(cell: pbi::Cell) -> Cell {
    CellOf {
        timestamp: cell.timestamp_micros,
        tombstone: cell.tombstone,
        local_deletion_time: cell.local_deletion_time,
        // Out of its range (never sent by a node), it counts as none: the
        // value expires at the whole second, and every stored encoding
        // decodes.
        expiry_ms_early: u16::try_from(cell.expiry_ms_early)
            .ok()
            .filter(|early| *early < 1000 && !cell.tombstone && cell.local_deletion_time.is_some())
            .unwrap_or(0),
        value: if cell.tombstone {
            bytes::Bytes::new()
        } else {
            cell.value
        },
    }
}

/// A replica query's page as its internode message.
pub fn rows_page_to_proto(page: RowsPage) -> pbi::ReplicaQueryResponse {
    pbi::ReplicaQueryResponse {
        deletions: page
            .deletions
            .and_then(|d| d.to_cell())
            .map(|cell| cell_to_proto(&cell)),
        rows: page
            .rows
            .into_iter()
            .map(|(key, cell)| pbi::KeyCell {
                key,
                cell: Some(cell_to_proto(&cell)),
            })
            .collect(),
        more: page.more,
    }
}

/// A replica query's page from its internode message; a row without a
/// cell or deletions that do not decode are a bad answer.
pub fn rows_page_from_proto(page: pbi::ReplicaQueryResponse) -> Result<RowsPage, String> {
    let deletions = match page.deletions {
        None => None,
        Some(cell) => Some(
            Deletions::from_cell(&cell_from_proto(cell))
                .map_err(|e| format!("a replica's query answer: {e}"))?,
        ),
    };
    let rows = page
        .rows
        .into_iter()
        .map(|row| match row.cell {
            Some(cell) => Ok((row.key, cell_from_proto(cell))),
            None => Err("a replica's query answer holds a row without a cell".to_owned()),
        })
        .collect::<Result<_, _>>()?;
    Ok(RowsPage {
        deletions,
        rows,
        more: page.more,
    })
}

/// A console sample on the wire.
pub fn sample_to_proto(sample: &Sample) -> pbi::Sample {
    pbi::Sample {
        at_ms: sample.at_ms,
        ops: sample
            .ops
            .iter()
            .map(|op| pbi::OpSample {
                op: op.op.clone(),
                per_second: op.per_second,
                p50_ms: op.p50_ms,
                p99_ms: op.p99_ms,
            })
            .collect(),
        errors: sample.errors.clone().into_iter().collect(),
        read_repairs_per_second: sample.read_repairs_per_second,
        hints_pending: sample.hints_pending.clone().into_iter().collect(),
    }
}

/// A console sample from the wire: at most the operations and error kinds
/// the console charts, and a bounded number of hint targets.
pub fn sample_from_proto(sample: pbi::Sample) -> Sample {
    use crate::console::sample::{ERROR_KINDS, OPS};
    // A rate, latency or size: finite and not negative, or 0.
    let figure = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
    Sample {
        at_ms: sample.at_ms,
        ops: sample
            .ops
            .into_iter()
            .filter(|op| OPS.contains(&op.op.as_str()))
            .take(OPS.len())
            .map(|op| OpSample {
                op: op.op,
                per_second: figure(op.per_second),
                p50_ms: figure(op.p50_ms),
                p99_ms: figure(op.p99_ms),
            })
            .collect(),
        errors: sample
            .errors
            .into_iter()
            .filter(|(kind, _)| ERROR_KINDS.contains(&kind.as_str()))
            .map(|(kind, rate)| (kind, figure(rate)))
            .collect(),
        read_repairs_per_second: figure(sample.read_repairs_per_second),
        hints_pending: sample
            .hints_pending
            .into_iter()
            .take(MAX_HINT_TARGETS)
            .map(|(target, bytes)| (target, figure(bytes)))
            .collect(),
    }
}

/// Most hint targets one sample from a peer may carry.
const MAX_HINT_TARGETS: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(consistency(0).ok(), Some(ConsistencyLevel::Quorum));
        assert_eq!(consistency(5).ok(), Some(ConsistencyLevel::All));
        let err = consistency(42).expect_err("unknown");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("42"));
        assert_eq!(timeout(0), None);
        assert_eq!(timeout(250), Some(Duration::from_millis(250)));
    }

    #[test]
    fn cells_round_trip() {
        for cell in [
            Cell::live(5, bytes::Bytes::from_static(b"v"), Some(9)),
            Cell::tombstone(6, 7),
        ] {
            assert_eq!(cell_from_proto(cell_to_proto(&cell)), cell);
        }
    }
}
