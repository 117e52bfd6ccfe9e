//! Two live nodes with one node id.
//!
//! A node id is meant to be unique: it is generated on a first start and
//! kept in the data directory. A copied data directory (a cloned VM or
//! volume, a backup restored while the original still runs) makes two
//! nodes with the same id; both would claim the same tokens, and writes
//! acknowledged by one could be missing from the other.
//!
//! chitchat tells incarnations apart by (id, generation, gossip address).
//! [`TwinWatch`] looks, on every gossip round, for another incarnation of
//! this node's id that is live *and whose heartbeat keeps growing* after
//! this node first saw it: a previous incarnation of a restarted node
//! (possibly on a new address) may look live for a few seconds, but its
//! heartbeat has stopped. A twin that keeps beating is logged loudly on
//! both; the newer of the two (the higher generation, i.e. started later)
//! refuses to serve and stops.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::view::GossipEntry;
use crate::identity::NodeId;

/// Heartbeats a twin must gain, after it was first seen, to count as
/// running.
const BEATS_TO_CONFIRM: u64 = 3;

/// Another running node with this node's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Twin {
    pub gossip_addr: SocketAddr,
    pub generation: u64,
    /// This node started after the twin: it must stop.
    pub this_is_newer: bool,
}

/// Watches gossip for twins of this node (see the module docs).
#[derive(Debug)]
pub struct TwinWatch {
    local: String,
    generation: u64,
    gossip_addr: SocketAddr,
    /// First heartbeat seen of each other incarnation.
    first_beat: HashMap<(u64, SocketAddr), u64>,
}

impl TwinWatch {
    /// Watches for twins of `local`, whose own incarnation is
    /// (`generation`, `gossip_addr`).
    pub fn new(local: NodeId, generation: u64, gossip_addr: SocketAddr) -> Self {
        Self {
            local: local.to_string(),
            generation,
            gossip_addr,
            first_beat: HashMap::new(),
        }
    }

    /// A twin confirmed by these entries (one gossip round), if any.
    pub fn observe(&mut self, entries: &[GossipEntry]) -> Option<Twin> {
        let mut found = None;
        for entry in entries {
            let incarnation = (entry.generation, entry.gossip_addr);
            if entry.node_id != self.local || incarnation == (self.generation, self.gossip_addr) {
                continue;
            }
            let first = *self
                .first_beat
                .entry(incarnation)
                .or_insert(entry.heartbeat);
            if entry.alive && entry.heartbeat >= first.saturating_add(BEATS_TO_CONFIRM) {
                found = Some(Twin {
                    gossip_addr: entry.gossip_addr,
                    generation: entry.generation,
                    this_is_newer: self.generation > entry.generation,
                });
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: NodeId, generation: u64, port: u16, alive: bool, heartbeat: u64) -> GossipEntry {
        GossipEntry {
            node_id: id.to_string(),
            generation,
            gossip_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            alive,
            heartbeat,
            values: Default::default(),
        }
    }

    #[test]
    fn only_a_twin_that_keeps_beating_counts_and_the_newer_one_must_stop() {
        let me = NodeId(uuid::Uuid::from_u128(7));
        let other = NodeId(uuid::Uuid::from_u128(8));
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let mut watch = TwinWatch::new(me, 100, addr);
        // Ourselves, other nodes, and a previous incarnation that stopped
        // beating (a restart on another address) are not twins.
        let quiet = |beat| {
            vec![
                entry(me, 100, 1, true, beat),
                entry(other, 50, 2, true, beat),
                entry(me, 90, 3, true, 40),
            ]
        };
        for beat in 1..10 {
            assert_eq!(watch.observe(&quiet(beat)), None);
        }
        // An older twin that keeps running: this node is the newer one.
        assert_eq!(watch.observe(&[entry(me, 90, 4, true, 10)]), None);
        assert_eq!(watch.observe(&[entry(me, 90, 4, true, 12)]), None);
        let twin = watch.observe(&[entry(me, 90, 4, true, 13)]).expect("twin");
        assert!(twin.this_is_newer);
        assert_eq!(twin.generation, 90);
        // A dead twin is not reported, however its heartbeat reads.
        assert_eq!(watch.observe(&[entry(me, 90, 4, false, 99)]), None);
        // A newer twin: this node keeps serving and the other must stop.
        let mut older = TwinWatch::new(me, 80, addr);
        older.observe(&[entry(me, 90, 4, true, 1)]);
        let twin = older.observe(&[entry(me, 90, 4, true, 9)]).expect("twin");
        assert!(!twin.this_is_newer);
    }
}
