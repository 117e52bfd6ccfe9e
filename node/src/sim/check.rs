//! The invariants a run must keep, checked once it has healed and
//! converged, against the history and every replica's store.
//!
//! - every acknowledged unique-key write is held by every replica of its
//!   key (the clients also read it back at QUORUM);
//! - each hot register converged: every replica holds the same cell, whose
//!   value was actually written and whose timestamp is at least every
//!   acknowledged write's;
//! - every acknowledged delete stays deleted on every replica (gc_grace is
//!   far longer than a run, so no tombstone may be purged);
//! - what the clients saw: read-your-writes across coordinators, sequential
//!   updates through two coordinators (the second wins, whatever their
//!   clocks; in runs without crashes), and the read-back after healing.

use bytes::Bytes;

use super::workload::History;
use super::{REPLICATION_FACTOR, SimNode};
use crate::config::Config;
use crate::membership::persist;
use crate::ring::{Ring, RingMember, Token};
use crate::storage::{Cell, Storage};

/// The ring the nodes chose, from their stores; `None` until every node
/// has chosen tokens.
fn ring(nodes: &[SimNode]) -> Option<Ring> {
    let rack = Config::default().rack;
    let members: Vec<RingMember> = nodes
        .iter()
        .filter_map(|node| {
            let tokens = persist::load_tokens(node.store.as_ref()).ok()??;
            Some(RingMember {
                id: node.id,
                rack: rack.clone(),
                tokens,
            })
        })
        .collect();
    (members.len() == nodes.len()).then(|| Ring::new(members, REPLICATION_FACTOR))
}

/// Whether `cell` is the live value `value`.
fn holds(cell: &Cell, value: &Bytes) -> bool {
    !cell.tombstone && cell.value == value
}

/// Each replica of `key` and the cell it holds.
fn replica_cells(ring: &Ring, nodes: &[SimNode], key: &Bytes) -> Vec<(String, Option<Cell>)> {
    let (token, row) = (Token::of(key), crate::storage::key::plain_key(key));
    ring.replicas(token)
        .iter()
        .filter_map(|id| nodes.iter().find(|n| n.id == *id))
        .map(|node| {
            (
                node.name.clone(),
                node.store.read(token, &row).ok().flatten(),
            )
        })
        .collect()
}

/// Before any repair, once healed: every acknowledged write and delete
/// reached every replica, directly or by a replayed hint (no node
/// crashed, so no hint was lost).
pub fn handoff(history: &History, nodes: &[SimNode]) -> Vec<String> {
    let Some(ring) = ring(nodes) else {
        return vec!["not every node chose tokens".into()];
    };
    let mut missing = Vec::new();
    for (key, value) in &history.unique {
        for (node, cell) in replica_cells(&ring, nodes, key) {
            if !cell.as_ref().is_some_and(|c| holds(c, value)) {
                missing.push(format!(
                    "hinted handoff: {} acknowledged, healed, hints replayed, yet replica {node} holds {cell:?}",
                    String::from_utf8_lossy(key)
                ));
            }
        }
    }
    for key in &history.deleted {
        for (node, cell) in replica_cells(&ring, nodes, key) {
            if !cell.as_ref().is_some_and(|c| c.tombstone) {
                missing.push(format!(
                    "hinted handoff: {} deleted, healed, hints replayed, yet replica {node} holds {cell:?}",
                    String::from_utf8_lossy(key)
                ));
            }
        }
    }
    missing
}

/// Before any repair, once healed, after a topology change: every
/// acknowledged write and delete is on a quorum of its replicas in the
/// final ring. (Not on all of them: a joining node takes over the copy of
/// the replica it displaces, writes that replica missed included, and the
/// hints for those go to the replica that gave the range up; repair fills
/// them in. A quorum is what read-your-writes at QUORUM needs.)
pub fn quorum_held(history: &History, nodes: &[SimNode]) -> Vec<String> {
    let Some(ring) = ring(nodes) else {
        return vec!["not every node chose tokens".into()];
    };
    let quorum = REPLICATION_FACTOR / 2 + 1;
    let mut missing = Vec::new();
    let writes = history
        .unique
        .iter()
        .map(|(key, value)| (key, Some(value)))
        .chain(history.deleted.iter().map(|key| (key, None)));
    for (key, value) in writes {
        let cells = replica_cells(&ring, nodes, key);
        let held = cells
            .iter()
            .filter(|(_, cell)| match (cell, value) {
                (Some(cell), Some(value)) => holds(cell, value),
                (Some(cell), None) => cell.tombstone,
                (None, _) => false,
            })
            .count();
        if held < quorum {
            missing.push(format!(
                "after the topology change, before repair: {} is on {held} of its replicas, fewer than a quorum: {cells:?}",
                String::from_utf8_lossy(key)
            ));
        }
    }
    missing
}

/// Broken invariants, each a sentence.
pub fn check(history: &History, nodes: &[SimNode]) -> Vec<String> {
    let mut violations = history.violations.clone();
    // A crash loses acknowledged writes on the crashed replica, and with
    // them what orders a sequential update's second write after its first.
    if !history.crashed {
        violations.extend(history.sequential_stale.iter().cloned());
    }
    let Some(ring) = ring(nodes) else {
        violations.push("not every node chose tokens".into());
        return violations;
    };
    let cells = |key: &Bytes| replica_cells(&ring, nodes, key);
    let name = |key: &Bytes| String::from_utf8_lossy(key).into_owned();

    for (key, value) in &history.unique {
        for (node, cell) in cells(key) {
            let held = cell.as_ref().is_some_and(|c| holds(c, value));
            if !held {
                violations.push(format!(
                    "lost write: {} acknowledged at QUORUM but replica {node} holds {cell:?}",
                    name(key)
                ));
            }
        }
    }
    for (key, sent) in &history.hot_sent {
        let held = cells(key);
        let first = held.first().and_then(|(_, c)| c.clone());
        if held.iter().any(|(_, c)| *c != first) {
            violations.push(format!(
                "hot register {} did not converge: {held:?}",
                name(key)
            ));
            continue;
        }
        let Some(cell) = first else {
            if history.hot_acked.contains_key(key) {
                violations.push(format!("hot register {} lost every write", name(key)));
            }
            continue;
        };
        if !sent.contains(&cell.value) {
            violations.push(format!(
                "hot register {} holds {:?}, which no client wrote",
                name(key),
                cell.value
            ));
        }
        if let Some(acked) = history.hot_acked.get(key)
            && cell.timestamp < *acked
        {
            violations.push(format!(
                "hot register {} holds timestamp {} below the acknowledged {acked}",
                name(key),
                cell.timestamp
            ));
        }
    }
    for key in &history.deleted {
        for (node, cell) in cells(key) {
            if cell.as_ref().is_some_and(|c| !c.tombstone) {
                violations.push(format!(
                    "resurrected: {} deleted at QUORUM but replica {node} holds {cell:?}",
                    name(key)
                ));
            }
        }
    }
    violations
}
