//! How far other nodes' clocks are from this one's, and whether this node's
//! clock is so far from the majority's that it must not stamp writes.
//!
//! Last write wins by timestamp, so a coordinator whose clock runs ahead
//! stamps writes that later writes through other coordinators cannot
//! overwrite (until their clocks catch up), and one that runs behind
//! stamps writes that lose at once. The write path's push (a replica that
//! holds a newer cell says so, and the write is stamped again above it)
//! keeps one client's sequential updates in order; this module makes the
//! offset visible and stops the node that causes it, as CockroachDB does:
//!
//! 1. every [`PROBE_INTERVAL`] the node asks each live peer for its wall
//!    clock (`Peer/Clock`) and records `offset = remote - (sent + received)
//!    / 2`, uncertain by half the round trip ([`ClockOffsets::record`]);
//! 2. a peer's offset is the sample with the shortest round trip among its
//!    last [`WINDOW`] samples younger than [`STALE_AFTER`];
//! 3. the median of the clocks this node measured, its own included, is
//!    the cluster's time as the majority keeps it; when this node is
//!    further than `max_clock_offset_ms` from it (each offset shrunk by
//!    its uncertainty), this node is the odd one out: it refuses to stamp
//!    writes, saying why ([`ClockOffsets::refusal`]), until its clock
//!    comes back. Clocks spread wider than the limit stop only the nodes
//!    beyond it from the median, never all of them.
//!
//! CAVEATS: with fewer than three clocks measured a node cannot tell
//! whose clock is wrong, so it never refuses (offsets are still
//! exported). The probe measures wall
//! clocks, not HLCs: a node whose HLC was pulled ahead by a timestamp it
//! observed is not reported. Offsets are measured, not corrected: ringkv
//! never adjusts a clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::identity::NodeId;

/// How often each live peer's clock is read.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Samples kept per peer.
pub const WINDOW: usize = 5;
/// A sample older than this no longer counts.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// One reading of a peer's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    /// The peer's clock minus this node's (microseconds).
    offset: i64,
    /// Half the round trip: how far off `offset` may be.
    uncertainty: i64,
    at: Instant,
}

/// A peer's offset as last estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerOffset {
    pub peer: NodeId,
    /// The peer's clock minus this node's (microseconds).
    pub offset_micros: i64,
    /// Half the round trip of the sample it comes from.
    pub uncertainty_micros: i64,
}

/// The measured offsets of this node's peers.
#[derive(Debug)]
pub struct ClockOffsets {
    max_offset_micros: i64,
    peers: Mutex<HashMap<NodeId, VecDeque<Sample>>>,
}

impl ClockOffsets {
    /// `max_clock_offset_ms`; 0 turns the refusal off (offsets are still
    /// measured).
    pub fn new(max_offset_ms: u64) -> Self {
        Self {
            max_offset_micros: i64::try_from(max_offset_ms.saturating_mul(1_000))
                .unwrap_or(i64::MAX),
            peers: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, VecDeque<Sample>>> {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Step 1: `peer` answered `remote` (its wall clock, microseconds) to a
    /// probe sent at `sent` and answered at `received` (this node's wall
    /// clock, microseconds).
    pub fn record(&self, peer: NodeId, sent: i64, remote: i64, received: i64) {
        if received < sent {
            return; // this node's clock stepped back meanwhile: no reading
        }
        let midpoint = sent + (received - sent) / 2;
        let sample = Sample {
            offset: remote.saturating_sub(midpoint),
            uncertainty: (received - sent) / 2 + 1,
            at: Instant::now(),
        };
        let mut peers = self.lock();
        let samples = peers.entry(peer).or_default();
        if samples.len() == WINDOW {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Forgets every peer not in `members` (peers that left).
    pub fn retain(&self, members: impl Fn(&NodeId) -> bool) {
        self.lock().retain(|peer, _| members(peer));
    }

    /// Step 2: every peer's current offset, by peer id.
    pub fn offsets(&self) -> Vec<PeerOffset> {
        let now = Instant::now();
        let mut offsets: Vec<PeerOffset> = self
            .lock()
            .iter()
            .filter_map(|(peer, samples)| {
                let best = samples
                    .iter()
                    .filter(|s| now.duration_since(s.at) < STALE_AFTER)
                    .min_by_key(|s| s.uncertainty)?;
                Some(PeerOffset {
                    peer: *peer,
                    offset_micros: best.offset,
                    uncertainty_micros: best.uncertainty,
                })
            })
            .collect();
        offsets.sort_by_key(|o| o.peer);
        offsets
    }

    /// The offset of `peer`, if measured lately.
    pub fn offset_of(&self, peer: NodeId) -> Option<PeerOffset> {
        self.offsets().into_iter().find(|o| o.peer == peer)
    }

    /// Step 3: why this node must not coordinate writes, or `None`.
    pub fn refusal(&self) -> Option<String> {
        verdict(&self.offsets(), self.max_offset_micros)
    }
}

/// Step 3 over `offsets`, as plain data.
fn verdict(offsets: &[PeerOffset], max_offset_micros: i64) -> Option<String> {
    if max_offset_micros == 0 || offsets.len() < 2 {
        return None;
    }
    // Each offset as small as its uncertainty allows; this node's own is 0.
    let shrunk = |o: &PeerOffset| {
        let magnitude = o
            .offset_micros
            .abs()
            .saturating_sub(o.uncertainty_micros)
            .max(0);
        magnitude * o.offset_micros.signum()
    };
    let mut clocks: Vec<i64> = offsets.iter().map(shrunk).chain([0]).collect();
    clocks.sort_unstable();
    // The lower median with an even count: the one nearer this node's
    // clock is the one that must be beyond the limit.
    let (low, high) = (clocks[(clocks.len() - 1) / 2], clocks[clocks.len() / 2]);
    let median = if low.abs() <= high.abs() { low } else { high };
    if median.abs() <= max_offset_micros {
        return None;
    }
    let far = offsets
        .iter()
        .filter(|o| shrunk(o).abs() > max_offset_micros)
        .count();
    let direction = if median < 0 { "ahead of" } else { "behind" };
    Some(format!(
        "clock offset: this node's clock is {:.3} s {direction} the median of its {} peers' (more than max_clock_offset_ms = {}; {far} of them are that far); it coordinates no writes until its clock is corrected (check its time synchronisation)",
        median.unsigned_abs() as f64 / 1e6,
        offsets.len(),
        max_offset_micros / 1_000,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(n: u128, offset_ms: i64, uncertainty_ms: i64) -> PeerOffset {
        PeerOffset {
            peer: NodeId(uuid::Uuid::from_u128(n)),
            offset_micros: offset_ms * 1_000,
            uncertainty_micros: uncertainty_ms * 1_000,
        }
    }

    #[test]
    fn the_odd_clock_out_refuses_and_the_others_do_not() {
        let max = 500_000;
        // (peers' offsets in ms, uncertainty in ms) → refuses?
        let cases: &[(&[(i64, i64)], bool)] = &[
            // Nothing measured: no evidence.
            (&[], false),
            // Two nodes: neither can tell whose clock is wrong.
            (&[(-30_000, 1)], false),
            // This node 30 s fast among 3: both peers far behind.
            (&[(-30_000, 1), (-30_000, 1)], true),
            // A correct node among 3 with one fast peer.
            (&[(30_000, 1), (0, 1)], false),
            // 5 nodes, this one fast: all four far.
            (
                &[(-30_000, 1), (-30_001, 1), (-29_999, 1), (-30_000, 1)],
                true,
            ),
            // 5 nodes, two fast peers: this node agrees with the majority.
            (&[(30_000, 1), (30_000, 1), (0, 1), (0, 1)], false),
            // Within the limit once the round trip is allowed for.
            (&[(-700, 300), (-700, 300)], false),
            (&[(-700, 100), (-700, 100)], true),
            // Within the limit.
            (&[(-400, 1), (-400, 1)], false),
            // Clocks at -0.6 s, 0 and +0.6 s: the middle node keeps
            // coordinating (the others, beyond it, stop).
            (&[(-600, 1), (600, 1)], false),
            (&[(600, 1), (1_200, 1)], true),
            // 4 nodes, two of them 30 s fast: a tie, which nobody can
            // settle; nobody stops.
            (&[(0, 1), (30_000, 1), (30_000, 1)], false),
            (&[(0, 1), (-30_000, 1), (-30_000, 1)], false),
            // 5 nodes, two 30 s fast: the fast ones stop.
            (&[(0, 1), (-30_000, 1), (-30_000, 1), (-30_000, 1)], true),
            (&[(0, 1), (0, 1), (30_000, 1), (30_000, 1)], false),
        ];
        for (peers, refuses) in cases {
            let offsets: Vec<PeerOffset> = peers
                .iter()
                .enumerate()
                .map(|(i, (o, u))| offset(i as u128 + 1, *o, *u))
                .collect();
            assert_eq!(
                verdict(&offsets, max).is_some(),
                *refuses,
                "{peers:?}: {:?}",
                verdict(&offsets, max)
            );
        }
        let why = verdict(&[offset(1, -30_000, 1), offset(2, -30_000, 1)], max).expect("refuses");
        assert!(
            why.contains("29.999 s ahead of the median of its 2 peers'"),
            "{why}"
        );
        assert!(why.contains("max_clock_offset_ms = 500"), "{why}");
        let off = [offset(1, -30_000, 1), offset(2, -30_000, 1)];
        assert_eq!(verdict(&off, 0), None, "0 turns the refusal off");
    }

    #[tokio::test(start_paused = true)]
    async fn the_shortest_round_trip_wins_and_old_samples_expire() {
        let offsets = ClockOffsets::new(500);
        let peer = NodeId(uuid::Uuid::from_u128(7));
        // Sent at 1000, answered 2000 at 1500: offset 750, ±250.
        offsets.record(peer, 1_000, 2_000, 1_500);
        // A slower round trip with another reading does not win.
        offsets.record(peer, 1_000, 9_000, 5_000);
        let got = offsets.offset_of(peer).expect("measured");
        assert_eq!((got.offset_micros, got.uncertainty_micros), (750, 251));
        // A clock that stepped back gives no reading.
        offsets.record(peer, 5_000, 0, 4_000);
        tokio::time::advance(STALE_AFTER + Duration::from_secs(1)).await;
        assert_eq!(offsets.offset_of(peer), None, "stale");
        offsets.retain(|_| false);
        assert!(offsets.offsets().is_empty());
    }
}
