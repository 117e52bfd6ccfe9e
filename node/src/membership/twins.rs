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
//! this node's id that is live *and whose heartbeat keeps growing* long
//! after this node first saw it. A previous incarnation of a restarted node
//! (possibly on a new address) may look live for a few seconds, and its
//! heartbeat may still rise for a while as peers with fresher copies of its
//! state report them; so the heartbeat is only tracked during a settling
//! window (`settle`, 20 gossip rounds), and the incarnation counts as
//! running when it gains [`BEATS_TO_CONFIRM`] more after that. A node that
//! finds a twin logs it loudly; the newer of the two (the higher
//! generation, i.e. started later) refuses to serve and stops. (Both wait
//! out the same window, so the older one logs it only if it gets there
//! before the newer one has stopped.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::view::GossipEntry;
use crate::identity::NodeId;

/// Heartbeats a twin must gain, after the settling window, to count as
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
    /// How long an incarnation's heartbeat may still rise from stale
    /// copies after it is first seen.
    settle: Duration,
    /// Each other incarnation: when first seen, and the highest heartbeat
    /// seen by the end of the settling window.
    seen: HashMap<(u64, SocketAddr), (Instant, u64)>,
}

impl TwinWatch {
    /// Watches for twins of `local`, whose own incarnation is
    /// (`generation`, `gossip_addr`).
    pub fn new(local: NodeId, generation: u64, gossip_addr: SocketAddr, settle: Duration) -> Self {
        Self {
            local: local.to_string(),
            generation,
            gossip_addr,
            settle,
            seen: HashMap::new(),
        }
    }

    /// A twin confirmed by these entries (one gossip round at `now`), if
    /// any.
    pub fn observe(&mut self, entries: &[GossipEntry], now: Instant) -> Option<Twin> {
        let mut found = None;
        for entry in entries {
            let incarnation = (entry.generation, entry.gossip_addr);
            if entry.node_id != self.local || incarnation == (self.generation, self.gossip_addr) {
                continue;
            }
            let (first_seen, baseline) = self
                .seen
                .entry(incarnation)
                .or_insert((now, entry.heartbeat));
            if now.duration_since(*first_seen) < self.settle {
                *baseline = (*baseline).max(entry.heartbeat);
                continue;
            }
            if entry.alive && entry.heartbeat >= baseline.saturating_add(BEATS_TO_CONFIRM) {
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
            max_version: heartbeat,
            values: Default::default(),
        }
    }

    #[test]
    fn only_a_twin_that_keeps_beating_after_settling_counts_and_the_newer_one_must_stop() {
        let me = NodeId(uuid::Uuid::from_u128(7));
        let other = NodeId(uuid::Uuid::from_u128(8));
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let settle = Duration::from_secs(10);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut watch = TwinWatch::new(me, 100, addr, settle);
        // Ourselves and other nodes are not twins; a previous incarnation
        // whose heartbeat rises from stale copies while settling, then
        // stops, is not one either.
        for (second, beat) in [(0, 40), (2, 45), (5, 52), (9, 60), (11, 60), (30, 60)] {
            let round = [
                entry(me, 100, 1, true, beat + 1000),
                entry(other, 50, 2, true, beat + 1000),
                entry(me, 90, 3, true, beat),
            ];
            assert_eq!(watch.observe(&round, at(second)), None, "at {second}s");
        }
        // An older twin that keeps running: this node is the newer one.
        assert_eq!(watch.observe(&[entry(me, 80, 4, true, 10)], at(40)), None);
        assert_eq!(
            watch.observe(&[entry(me, 80, 4, true, 20)], at(45)),
            None,
            "settling"
        );
        assert_eq!(watch.observe(&[entry(me, 80, 4, true, 22)], at(51)), None);
        let twin = watch
            .observe(&[entry(me, 80, 4, true, 23)], at(52))
            .expect("twin");
        assert!(twin.this_is_newer);
        assert_eq!(twin.generation, 80);
        // A dead twin is not reported, however its heartbeat reads.
        assert_eq!(watch.observe(&[entry(me, 80, 4, false, 99)], at(60)), None);
        // A newer twin: this node keeps serving and the other must stop.
        let mut older = TwinWatch::new(me, 80, addr, settle);
        older.observe(&[entry(me, 90, 4, true, 1)], at(0));
        older.observe(&[entry(me, 90, 4, true, 5)], at(10));
        let twin = older
            .observe(&[entry(me, 90, 4, true, 9)], at(12))
            .expect("twin");
        assert!(!twin.this_is_newer);
    }
}
