//! What a node gossips about itself: key names and value formats.
//!
//! Each node owns a small map of string keys in the gossip state; chitchat
//! spreads it. Values are plain text so they can be read in a packet dump.

use std::fmt;
use std::str::FromStr;

use crate::ring::Token;

/// Lifecycle state: JOINING → NORMAL → LEAVING → LEFT.
pub const STATUS: &str = "status";
/// The node's tokens, comma-separated decimal.
pub const TOKENS: &str = "tokens";
/// Client API address (`ip:port`).
pub const CLIENT_ADDR: &str = "client_addr";
/// Internode API address (`ip:port`).
pub const PEER_ADDR: &str = "peer_addr";
/// The versions of the framed internode protocol the node serves on its
/// internode port, comma-separated (absent: gRPC only).
pub const PEER_FRAMED: &str = "peer_framed";
/// The node's rack.
pub const RACK: &str = "rack";
/// The node's configured replication factor.
pub const REPLICATION_FACTOR: &str = "replication_factor";
/// The node's display name.
pub const NAME: &str = "name";
/// The node's ringkv version.
pub const VERSION: &str = "version";
/// The settings every node of a cluster should share, as
/// `name=value;...` (see `describecluster`).
pub const SETTINGS: &str = "settings";
/// Bytes of data the node stores (approximate).
pub const LOAD: &str = "load";
/// When the node last completed an anti-entropy repair (Unix seconds).
pub const LAST_REPAIR: &str = "last_repair";
/// Ranges the node's last repair run could not sync: `start:end` pairs,
/// comma-separated, at most [`MAX_GOSSIPED_FAILED_RANGES`]; empty after a
/// clean run.
pub const REPAIR_FAILED: &str = "repair_failed";
/// Most failed ranges one node gossips.
pub const MAX_GOSSIPED_FAILED_RANGES: usize = 32;
/// Empty, or why the node's disk refuses writes.
pub const DISK: &str = "disk";
/// Which replicas reads use during the topology change this node drives
/// (joining, leaving, replacing): [`Phase`]; absent means `pending`.
pub const PHASE: &str = "phase";
/// The id of the dead node this node replaces (`--replace`).
pub const REPLACES: &str = "replaces";
/// A removal this node drives: `NODE_ID:phase` (see [`Phase`]).
pub const REMOVING: &str = "removing";
/// Ids of nodes removed from the cluster (removenode, or replaced), as this
/// node knows them: comma-separated, at most [`MAX_REMOVED`] per key, in as
/// many keys as they need: `removed`, `removed.1`, `removed.2`, ... (see
/// [`encode_removed`]).
pub const REMOVED: &str = "removed";
/// Most removed ids one key holds (about 9.5 KB).
pub const MAX_REMOVED: usize = 256;
/// Most keys the removed ids are spread over: 16,384 removals.
pub const MAX_REMOVED_SHARDS: usize = 64;
/// A hash of this node's view of the topology (members' states, tokens,
/// phases, removals), hexadecimal: when every live node gossips the same
/// one, all have seen a topology change.
pub const TOPOLOGY: &str = "topology";
/// Ring members this node remembers and gossip has forgotten (down for
/// more than half of `gossip_dead_node_grace_ms`), so that a node that
/// never heard of them learns them: one per key, `carried.0` to
/// `carried.63` (see [`carried_key`]), each the member as it is remembered
/// on disk (JSON), or empty.
pub const CARRIED: &str = "carried";
/// Most members one node carries.
pub const MAX_CARRIED: usize = 64;

/// The key of carried member slot `i`.
pub fn carried_key(i: usize) -> String {
    format!("{CARRIED}.{i}")
}

/// Every key a node gossips about itself. A start gossips each (empty
/// when it has no value), so that none keeps the value a previous start
/// of the same gossip identity gave it.
pub const ALL: [&str; 19] = [
    STATUS,
    TOKENS,
    CLIENT_ADDR,
    PEER_ADDR,
    PEER_FRAMED,
    RACK,
    REPLICATION_FACTOR,
    NAME,
    VERSION,
    SETTINGS,
    LOAD,
    LAST_REPAIR,
    REPAIR_FAILED,
    DISK,
    PHASE,
    REPLACES,
    REMOVING,
    REMOVED,
    TOPOLOGY,
];

/// `initial` with every other key of [`ALL`] and every [`CARRIED`] slot
/// added, empty.
pub fn every_key(initial: &[(String, String)]) -> Vec<(String, String)> {
    let mut all = initial.to_vec();
    let slots = (0..MAX_CARRIED).map(carried_key);
    for key in ALL.into_iter().map(str::to_owned).chain(slots) {
        if !initial.iter().any(|(k, _)| *k == key) {
            all.push((key, String::new()));
        }
    }
    all
}

/// Decodes [`PEER_FRAMED`]; unreadable entries are skipped.
pub fn decode_versions(text: &str) -> Vec<u8> {
    text.split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// Encodes failed repair ranges for gossip (the first
/// [`MAX_GOSSIPED_FAILED_RANGES`]).
pub fn encode_ranges(ranges: &[(i64, i64)]) -> String {
    ranges
        .iter()
        .take(MAX_GOSSIPED_FAILED_RANGES)
        .map(|(start, end)| format!("{start}:{end}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Decodes failed repair ranges; unreadable entries are skipped.
pub fn decode_ranges(text: &str) -> Vec<(i64, i64)> {
    text.split(',')
        .filter_map(|pair| {
            let (start, end) = pair.split_once(':')?;
            Some((start.parse().ok()?, end.parse().ok()?))
        })
        .take(MAX_GOSSIPED_FAILED_RANGES)
        .collect()
}

/// Which replica set reads use while a topology change moves ranges.
/// Writes go to both the old and the new replicas throughout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    /// Announced, not yet seen by every node: routes as `ReadOld`. Two
    /// changes announced at once both see each other here, and the one
    /// whose driving node has the larger id withdraws.
    Pending,
    /// Streaming: reads still use the replicas from before the change.
    ReadOld,
    /// Streamed: reads use the replicas after the change.
    ReadNew,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::ReadOld => "read_old",
            Phase::ReadNew => "read_new",
        }
    }
}

impl FromStr for Phase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Phase::Pending),
            "read_old" => Ok(Phase::ReadOld),
            "read_new" => Ok(Phase::ReadNew),
            other => Err(format!("unknown phase {other:?}")),
        }
    }
}

/// Encodes a removal in progress: `NODE_ID:phase`.
pub fn encode_removing(node: &crate::identity::NodeId, phase: Phase) -> String {
    format!("{node}:{}", phase.as_str())
}

/// Decodes a removal in progress; `None` when empty or unreadable.
pub fn decode_removing(text: &str) -> Option<(crate::identity::NodeId, Phase)> {
    let (node, phase) = text.split_once(':')?;
    Some((node.parse().ok()?, phase.parse().ok()?))
}

/// The key of shard `i` of the removed ids.
fn removed_key(i: usize) -> String {
    if i == 0 {
        REMOVED.to_owned()
    } else {
        format!("{REMOVED}.{i}")
    }
}

/// Encodes removed node ids as key-values: [`MAX_REMOVED`] per key, over
/// at most [`MAX_REMOVED_SHARDS`] keys (the first is the key releases
/// before the shards read). Past that many removals the rest are left out.
pub fn encode_removed<'a>(
    ids: impl IntoIterator<Item = &'a crate::identity::NodeId>,
) -> Vec<(String, String)> {
    let ids: Vec<String> = ids.into_iter().map(ToString::to_string).collect();
    if ids.is_empty() {
        return vec![(REMOVED.to_owned(), String::new())];
    }
    ids.chunks(MAX_REMOVED)
        .take(MAX_REMOVED_SHARDS)
        .enumerate()
        .map(|(i, chunk)| (removed_key(i), chunk.join(",")))
        .collect()
}

/// The removed node ids a node gossips, from all its shards (`get` reads
/// one of its keys).
pub fn decode_removed_shards<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
) -> Vec<crate::identity::NodeId> {
    (0..MAX_REMOVED_SHARDS)
        .map_while(|i| get(&removed_key(i)))
        .flat_map(decode_removed)
        .collect()
}

/// Decodes removed node ids; unreadable entries are skipped.
pub fn decode_removed(text: &str) -> Vec<crate::identity::NodeId> {
    text.split(',')
        .filter_map(|id| id.parse().ok())
        .take(MAX_REMOVED)
        .collect()
}

/// Where a node is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum NodeStatus {
    /// Choosing tokens (none gossiped yet), or, with tokens, bootstrapping:
    /// it receives writes for the ranges it will own and streams them.
    Joining,
    /// Owns its tokens and serves.
    Normal,
    /// Handing its ranges to others before leaving.
    Leaving,
    /// Gone; its tokens belong to others.
    Left,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Joining => "JOINING",
            NodeStatus::Normal => "NORMAL",
            NodeStatus::Leaving => "LEAVING",
            NodeStatus::Left => "LEFT",
        }
    }

    /// True when the node's tokens are part of the ring.
    pub fn owns_tokens(self) -> bool {
        matches!(self, NodeStatus::Normal | NodeStatus::Leaving)
    }
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "JOINING" => Ok(NodeStatus::Joining),
            "NORMAL" => Ok(NodeStatus::Normal),
            "LEAVING" => Ok(NodeStatus::Leaving),
            "LEFT" => Ok(NodeStatus::Left),
            other => Err(format!("unknown node status {other:?}")),
        }
    }
}

/// Tokens as gossiped: `"-123,456,789"`.
pub fn encode_tokens(tokens: &[Token]) -> String {
    let parts: Vec<String> = tokens.iter().map(|t| t.0.to_string()).collect();
    parts.join(",")
}

/// Parses gossiped tokens; empty text is no tokens.
pub fn decode_tokens(text: &str) -> Result<Vec<Token>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|part| {
            part.parse::<i64>()
                .map(Token)
                .map_err(|_| format!("bad token {part:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let tokens = vec![Token(i64::MIN + 1), Token(0), Token(42), Token(i64::MAX)];
        assert_eq!(decode_tokens(&encode_tokens(&tokens)), Ok(tokens));
        assert_eq!(decode_tokens(""), Ok(vec![]));
        assert!(decode_tokens("1,x").is_err());
    }

    #[test]
    fn failed_ranges_round_trip_capped_and_junk_skipped() {
        let ranges = vec![(i64::MIN, -5), (3, i64::MAX)];
        assert_eq!(decode_ranges(&encode_ranges(&ranges)), ranges);
        assert_eq!(decode_ranges(""), vec![]);
        assert_eq!(decode_ranges("1:2,x:3,4"), vec![(1, 2)]);
        let many: Vec<(i64, i64)> = (0..100).map(|i| (i, i + 1)).collect();
        assert_eq!(
            decode_ranges(&encode_ranges(&many)).len(),
            MAX_GOSSIPED_FAILED_RANGES
        );
    }

    #[test]
    fn removals_round_trip() {
        let id = crate::identity::NodeId(uuid::Uuid::from_u128(9));
        assert_eq!(
            decode_removing(&encode_removing(&id, Phase::ReadNew)),
            Some((id, Phase::ReadNew))
        );
        assert_eq!(decode_removing(""), None);
        assert_eq!(decode_removing("x:read_old"), None);
        let other = crate::identity::NodeId(uuid::Uuid::from_u128(10));
        let shards: std::collections::HashMap<String, String> =
            encode_removed([&id, &other]).into_iter().collect();
        assert_eq!(
            decode_removed_shards(|k| shards.get(k).map(String::as_str)),
            vec![id, other]
        );
        assert_eq!(decode_removed(""), vec![]);
        assert_eq!(decode_removed("junk"), vec![]);
        assert_eq!(
            encode_removed([]),
            vec![(REMOVED.to_owned(), String::new())]
        );
    }

    /// Issue 24 item 4: removed ids were gossiped in one value of at most
    /// 256, so past 256 removals a node started afresh never heard of the
    /// oldest and could not agree on the ring. Now they spread over keys.
    #[test]
    fn a_thousand_removals_all_reach_a_new_node() {
        let ids: Vec<crate::identity::NodeId> = (0..1_000u128)
            .map(|n| crate::identity::NodeId(uuid::Uuid::from_u128(n + 1)))
            .collect();
        let shards: std::collections::HashMap<String, String> =
            encode_removed(&ids).into_iter().collect();
        assert_eq!(shards.len(), 4);
        assert!(
            shards.values().all(|v| v.len() < 10_000),
            "each fits a datagram"
        );
        assert_eq!(
            decode_removed_shards(|k| shards.get(k).map(String::as_str)),
            ids
        );
        // Releases before the shards read the first key alone.
        assert_eq!(decode_removed(&shards[REMOVED]).len(), MAX_REMOVED);
    }

    #[test]
    fn status_round_trip() {
        for status in [
            NodeStatus::Joining,
            NodeStatus::Normal,
            NodeStatus::Leaving,
            NodeStatus::Left,
        ] {
            assert_eq!(status.as_str().parse(), Ok(status));
        }
        assert!("UP".parse::<NodeStatus>().is_err());
    }

    // Gossip values come from other nodes: whatever they hold, parsing
    // answers a value or an error, never a panic.
    proptest::proptest! {
        #[test]
        fn gossip_value_parsers_never_panic(text in ".{0,300}", bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let lossy = String::from_utf8_lossy(&bytes);
            for value in [text.as_str(), lossy.as_ref()] {
                let _ = decode_tokens(value);
                let _ = decode_ranges(value);
                let _ = decode_removing(value);
                let _ = decode_removed(value);
                let _ = value.parse::<Phase>();
                let _ = value.parse::<NodeStatus>();
            }
        }

        #[test]
        fn token_lists_round_trip(tokens in proptest::collection::vec(proptest::prelude::any::<i64>(), 0..64)) {
            let tokens: Vec<Token> = tokens.into_iter().map(Token).collect();
            proptest::prop_assert_eq!(decode_tokens(&encode_tokens(&tokens)), Ok(tokens));
        }
    }
}
