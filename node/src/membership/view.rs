//! [`ClusterView`]: what this node currently believes about the cluster —
//! every known member, who is alive, and the ring their tokens make.
//!
//! Built from gossip state (plus members remembered from disk) by a pure
//! function, so it is tested without sockets. A view is immutable; the
//! membership worker publishes a new one when anything changes and request
//! paths read the current one without locking.
//!
//! A member that stops gossiping stays in the view, marked down, with its
//! tokens still in the ring: a dead node is a replica that misses writes
//! (which hints and repair make up for), not a reason to move data. Only a
//! node that has LEFT gives its tokens up. Chitchat forgets a dead node's
//! state after its grace period; [`ClusterView::next`] keeps every member
//! the previous view knew, so forgetting in gossip never changes the ring,
//! and live nodes gossip the members chitchat forgot ([`carried`]) for nodes
//! that never heard of them. A node that left is remembered as removed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use super::keys::{self, NodeStatus, Phase};
use crate::identity::NodeId;
use crate::ring::{Ring, RingMember, Token};

/// A node's gossiped state, as read from chitchat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipEntry {
    pub node_id: String,
    /// Incremented each time the node restarts; the highest wins.
    pub generation: u64,
    pub gossip_addr: SocketAddr,
    pub alive: bool,
    /// The node's heartbeat counter: grows while the node runs.
    pub heartbeat: u64,
    /// The version of the newest key-value of this state: orders two
    /// copies of one identity's state.
    pub max_version: u64,
    pub values: BTreeMap<String, String>,
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub name: String,
    pub status: NodeStatus,
    pub tokens: Vec<Token>,
    pub rack: String,
    pub gossip_addr: SocketAddr,
    pub client_addr: Option<SocketAddr>,
    pub peer_addr: Option<SocketAddr>,
    /// Versions of the framed internode protocol the node serves (empty:
    /// gRPC only).
    pub peer_framed: Vec<u8>,
    pub replication_factor: Option<u32>,
    #[serde(skip)]
    pub load_bytes: Option<u64>,
    /// Unix seconds of the node's last completed repair.
    #[serde(skip)]
    pub last_repair: Option<i64>,
    /// Why the node's disk refuses writes, while it does.
    #[serde(skip)]
    pub disk_problem: Option<String>,
    /// Ranges (start, end] the node's last repair run could not sync.
    #[serde(skip)]
    pub repair_failed: Vec<(i64, i64)>,
    /// The phase of the topology change this node drives (joining,
    /// leaving, replacing); `None` reads as `pending`. Remembered across
    /// restarts with the rest, so a restarted node routes by the phase it
    /// last saw until gossip tells it more.
    #[serde(default)]
    pub phase: Option<Phase>,
    /// The dead node this one replaces.
    #[serde(default)]
    pub replaces: Option<NodeId>,
    /// A removal this node drives, and its phase.
    #[serde(default)]
    pub removing: Option<(NodeId, Phase)>,
    /// Nodes this node knows were removed.
    #[serde(skip)]
    pub removed: Vec<NodeId>,
    /// The node's topology hash (see `keys::TOPOLOGY`).
    #[serde(skip)]
    pub topology: Option<u64>,
    /// Up according to the failure detector.
    #[serde(skip)]
    pub alive: bool,
    /// The node's ringkv version (empty until gossiped).
    #[serde(skip)]
    pub version: String,
    /// The settings every node should share (`keys::SETTINGS`).
    #[serde(skip)]
    pub settings: String,
    /// The gossip identity's generation (see `GossipEntry`); with
    /// `state_version`, orders two copies of a member that gossip no
    /// longer describes (remembered, carried).
    #[serde(default)]
    pub generation: u64,
    /// `GossipEntry::max_version` of the state this member was read from.
    #[serde(default)]
    pub state_version: u64,
}

impl Member {
    /// The member an entry describes; `None` when its id is not a node id
    /// or it has not yet gossiped its status.
    pub fn from_entry(entry: &GossipEntry) -> Option<Member> {
        let id = entry.node_id.parse().ok()?;
        let get = |key: &str| entry.values.get(key).map(String::as_str);
        let status = get(keys::STATUS)?.parse().ok()?;
        let tokens = get(keys::TOKENS)
            .map_or(Ok(Vec::new()), keys::decode_tokens)
            .ok()?;
        Some(Member {
            id,
            name: get(keys::NAME).unwrap_or_default().to_owned(),
            status,
            tokens,
            rack: get(keys::RACK).unwrap_or_default().to_owned(),
            gossip_addr: entry.gossip_addr,
            client_addr: get(keys::CLIENT_ADDR).and_then(|a| a.parse().ok()),
            peer_addr: get(keys::PEER_ADDR).and_then(|a| a.parse().ok()),
            peer_framed: get(keys::PEER_FRAMED)
                .map(keys::decode_versions)
                .unwrap_or_default(),
            replication_factor: get(keys::REPLICATION_FACTOR).and_then(|v| v.parse().ok()),
            load_bytes: get(keys::LOAD).and_then(|v| v.parse().ok()),
            last_repair: get(keys::LAST_REPAIR).and_then(|v| v.parse().ok()),
            repair_failed: get(keys::REPAIR_FAILED)
                .map(keys::decode_ranges)
                .unwrap_or_default(),
            disk_problem: get(keys::DISK).filter(|p| !p.is_empty()).map(str::to_owned),
            phase: get(keys::PHASE).and_then(|p| p.parse().ok()),
            replaces: get(keys::REPLACES).and_then(|id| id.parse().ok()),
            removing: get(keys::REMOVING).and_then(keys::decode_removing),
            removed: keys::decode_removed_shards(get),
            topology: get(keys::TOPOLOGY).and_then(|t| u64::from_str_radix(t, 16).ok()),
            alive: entry.alive,
            generation: entry.generation,
            state_version: entry.max_version,
            version: get(keys::VERSION).unwrap_or_default().to_owned(),
            settings: get(keys::SETTINGS).unwrap_or_default().to_owned(),
        })
    }

    /// What orders two copies of a member: a live one first, then the
    /// newest generation, then the newest state.
    fn recency(&self) -> (bool, u64, u64) {
        (self.alive, self.generation, self.state_version)
    }

    fn ring_member(&self) -> RingMember {
        RingMember {
            id: self.id,
            rack: self.rack.clone(),
            tokens: self.tokens.clone(),
        }
    }

    /// Bootstrapping or replacing: has tokens but does not own them yet.
    fn is_pending(&self) -> bool {
        self.status == NodeStatus::Joining && !self.tokens.is_empty()
    }
}

#[cfg(test)]
impl Member {
    /// A live NORMAL member named `n<id>` in rack "r" with replication
    /// factor 3 and `tokens`; tests override the rest with `..`.
    pub(crate) fn normal(id: NodeId, tokens: Vec<Token>) -> Member {
        Member {
            id,
            name: format!("n{}", id.0.as_u128()),
            status: NodeStatus::Normal,
            tokens,
            rack: "r".into(),
            gossip_addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            client_addr: None,
            peer_addr: None,
            peer_framed: Vec::new(),
            replication_factor: Some(3),
            load_bytes: None,
            last_repair: None,
            disk_problem: None,
            repair_failed: Vec::new(),
            phase: None,
            replaces: None,
            removing: None,
            removed: Vec::new(),
            topology: None,
            alive: true,
            generation: 1,
            state_version: 0,
            version: String::new(),
            settings: String::new(),
        }
    }
}

/// A topology change in progress, as a view sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new node bootstraps.
    Join(NodeId),
    /// A new node takes a dead node's tokens (`--replace`).
    Replace { node: NodeId, replaces: NodeId },
    /// A node decommissions itself.
    Leave(NodeId),
    /// A live node (`by`) removes a dead one (`removenode`).
    Remove { node: NodeId, by: NodeId },
}

impl Change {
    /// The node whose gossip drives the change.
    pub fn driver(&self) -> NodeId {
        match self {
            Change::Join(node) | Change::Leave(node) => *node,
            Change::Replace { node, .. } => *node,
            Change::Remove { by, .. } => *by,
        }
    }
}

/// Ranges moving between replica sets: the rings before and after the
/// changes in progress. Writes go to both; reads use the one the phase
/// says (see `coordinator`).
#[derive(Debug)]
pub struct Transition {
    pub changes: Vec<(Change, Phase)>,
    pub old: Arc<Ring>,
    pub new: Arc<Ring>,
}

/// An immutable picture of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterView {
    local: NodeId,
    members: BTreeMap<NodeId, Member>,
    /// The ring reads use.
    ring: Arc<Ring>,
    transition: Option<Arc<Transition>>,
    /// Nodes removed from the cluster (they count as LEFT).
    removed: BTreeSet<NodeId>,
    topology: u64,
}

impl ClusterView {
    /// Builds a view from members (remembered ones first, then gossiped
    /// ones: for each node the live entry with the highest generation
    /// wins, or the highest generation when none is live).
    /// `previous` lets an unchanged ring be shared instead of rebuilt, and
    /// carries the nodes known to be removed.
    pub fn build(
        local: NodeId,
        replication_factor: usize,
        members: impl IntoIterator<Item = Member>,
        previous: Option<&ClusterView>,
    ) -> ClusterView {
        let removed = previous.map(|p| p.removed.clone()).unwrap_or_default();
        Self::assemble(local, replication_factor, members, removed, previous)
    }

    /// The first view of a node: remembered members, and the nodes it
    /// remembers were removed.
    pub fn at_start(
        local: NodeId,
        replication_factor: usize,
        members: Vec<Member>,
        removed: BTreeSet<NodeId>,
    ) -> ClusterView {
        Self::assemble(local, replication_factor, members, removed, None)
    }

    fn assemble(
        local: NodeId,
        replication_factor: usize,
        members: impl IntoIterator<Item = Member>,
        mut removed: BTreeSet<NodeId>,
        previous: Option<&ClusterView>,
    ) -> ClusterView {
        let mut by_id: BTreeMap<NodeId, Member> = BTreeMap::new();
        for member in members {
            // A live incarnation beats a dead one: when two nodes ran with
            // one id (see `twins`) and the newer one stopped, the older one
            // is the node again. Otherwise the newest generation wins,
            // and of one generation the newest state.
            match by_id.get(&member.id) {
                Some(known) if known.recency() > member.recency() => {}
                _ => {
                    by_id.insert(member.id, member);
                }
            }
        }
        if let Some(me) = by_id.get_mut(&local) {
            me.alive = true;
        }
        for member in by_id.values() {
            removed.extend(member.removed.iter().copied());
            // A node that left never comes back under its id (its data
            // directory refuses to rejoin), so it is remembered and gossiped
            // as removed: a node away while it left hears of it even after
            // gossip has forgotten the node's own LEFT.
            if member.status == NodeStatus::Left {
                removed.insert(member.id);
            }
        }
        for id in &removed {
            if let Some(member) = by_id.get_mut(id) {
                member.status = NodeStatus::Left;
            }
        }

        let changes = changes(&by_id, &removed);
        let leaving: BTreeSet<NodeId> = changes
            .iter()
            .filter_map(|(change, _)| match change {
                Change::Leave(node) | Change::Remove { node, .. } => Some(*node),
                Change::Replace { replaces, .. } => Some(*replaces),
                Change::Join(_) => None,
            })
            .collect();
        let owns = |m: &&Member| {
            !m.tokens.is_empty() && matches!(m.status, NodeStatus::Normal | NodeStatus::Leaving)
        };
        let old: Vec<RingMember> = by_id
            .values()
            .filter(owns)
            .map(Member::ring_member)
            .collect();
        let new: Vec<RingMember> = by_id
            .values()
            .filter(|m| (owns(m) && !leaving.contains(&m.id)) || m.is_pending())
            .map(Member::ring_member)
            .collect();
        let shared = |members: &[RingMember], ring: Option<&Arc<Ring>>| match ring {
            Some(ring)
                if ring_members_of(ring) == members
                    && ring.replication_factor() == replication_factor =>
            {
                ring.clone()
            }
            _ => Arc::new(Ring::new(members.to_vec(), replication_factor)),
        };
        let previous_old = previous.map(|p| p.old_ring());
        let (ring, transition) = if changes.is_empty() {
            (shared(&old, previous_old), None)
        } else {
            let old = shared(&old, previous_old);
            let previous_new = previous.and_then(|p| p.transition.as_ref().map(|t| &t.new));
            let new = shared(&new, previous_new);
            let read_new = changes.iter().all(|(_, phase)| *phase == Phase::ReadNew);
            let ring = if read_new { new.clone() } else { old.clone() };
            let transition = Transition { changes, old, new };
            (ring, Some(Arc::new(transition)))
        };
        let topology = topology_hash(&by_id);
        ClusterView {
            local,
            members: by_id,
            ring,
            transition,
            removed,
            topology,
        }
    }

    /// The view after a gossip round: `gossiped` members update this view's
    /// ones, and a member gossip no longer reports stays, marked down, with
    /// its tokens. A member leaves the ring only by leaving (LEFT) or being
    /// removed.
    pub fn next(&self, gossiped: impl IntoIterator<Item = Member>) -> ClusterView {
        let carried = self.members.values().cloned().map(|mut member| {
            member.alive = false;
            member
        });
        ClusterView::build(
            self.local,
            self.ring.replication_factor(),
            carried.chain(gossiped),
            Some(self),
        )
    }

    /// The ring before the changes in progress (the only ring when none is).
    fn old_ring(&self) -> &Arc<Ring> {
        self.transition.as_ref().map_or(&self.ring, |t| &t.old)
    }

    /// This node's id.
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// The ring reads use: during a change, the old ring until its phase
    /// turns `read_new`.
    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// The topology change in progress, if any.
    pub fn transition(&self) -> Option<&Arc<Transition>> {
        self.transition.as_ref()
    }

    /// The replicas a write of `token` goes to: the read ring's replicas
    /// first, then those a change in progress adds (the other ring's), and
    /// how many it adds. A write must be acknowledged by that many more
    /// replicas than its level requires, so that it reaches the level on
    /// the replica sets before and after the change alike.
    pub fn write_replicas(&self, token: Token) -> (std::borrow::Cow<'_, [NodeId]>, usize) {
        let read = self.ring.replicas(token);
        let Some(transition) = &self.transition else {
            return (std::borrow::Cow::Borrowed(read), 0);
        };
        let other = if Arc::ptr_eq(&self.ring, &transition.old) {
            &transition.new
        } else {
            &transition.old
        };
        let extra: Vec<NodeId> = other
            .replicas(token)
            .iter()
            .filter(|node| !read.contains(node))
            .copied()
            .collect();
        if extra.is_empty() {
            return (std::borrow::Cow::Borrowed(read), 0);
        }
        let added = extra.len();
        let mut all = read.to_vec();
        all.extend(extra);
        (std::borrow::Cow::Owned(all), added)
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// Up according to the failure detector (this node always is).
    pub fn is_alive(&self, id: &NodeId) -> bool {
        *id == self.local || self.members.get(id).is_some_and(|m| m.alive)
    }

    /// Nodes known to be removed from the cluster.
    pub fn removed(&self) -> &BTreeSet<NodeId> {
        &self.removed
    }

    /// The hash of this view's topology (see `keys::TOPOLOGY`).
    pub fn topology(&self) -> u64 {
        self.topology
    }

    /// Live members (other than this node, and not LEFT) whose gossiped
    /// topology differs from this view's: empty once every live node has
    /// seen what this one has.
    pub fn topology_laggards(&self) -> Vec<&Member> {
        self.members
            .values()
            .filter(|m| m.id != self.local && m.alive && m.status != NodeStatus::Left)
            .filter(|m| m.topology != Some(self.topology))
            .collect()
    }

    /// A member other than this one whose replication factor differs from
    /// `replication_factor`.
    pub fn replication_factor_conflict(&self, replication_factor: u32) -> Option<&Member> {
        self.members.values().find(|m| {
            m.id != self.local
                && m.status != NodeStatus::Left
                && m.replication_factor
                    .is_some_and(|rf| rf != replication_factor)
        })
    }

    /// The members this node carries for others (see [`keys::CARRIED`]):
    /// those that affect the ring and that no gossip state this node
    /// holds describes (`heard`), at most [`keys::MAX_CARRIED`].
    pub fn forgotten(&self, heard: &BTreeSet<NodeId>) -> Vec<Member> {
        self.members
            .values()
            .filter(|m| m.status != NodeStatus::Left && !m.tokens.is_empty())
            .filter(|m| m.id != self.local && !heard.contains(&m.id))
            .take(keys::MAX_CARRIED)
            .cloned()
            .collect()
    }

    /// Of the members others carry, those that may tell this view
    /// something: not this node, not a removed one. They compete with
    /// what the view knows and what gossip says by recency (a live state
    /// first, then generation, then state version), so a carried copy only
    /// wins where it is newer: a member this node never heard of, or an
    /// older state of it (a node away while a dead member last changed).
    pub fn unheard<'a>(
        &'a self,
        carried: impl IntoIterator<Item = Member> + 'a,
    ) -> impl Iterator<Item = Member> + 'a {
        carried
            .into_iter()
            .filter(move |m| m.id != self.local && !self.removed.contains(&m.id))
    }

    /// The members that affect the ring, for remembering across restarts.
    pub fn remembered(&self) -> Vec<Member> {
        self.members
            .values()
            .filter(|m| m.status != NodeStatus::Left && !m.tokens.is_empty())
            .cloned()
            .collect()
    }
}

/// The [`keys::CARRIED`] key-values that gossip `members` (the first
/// [`keys::MAX_CARRIED`] of them): every slot, the unused ones empty.
pub fn encode_carried(members: &[Member]) -> Vec<(String, String)> {
    (0..keys::MAX_CARRIED)
        .map(|i| {
            let value = members
                .get(i)
                .and_then(|m| serde_json::to_string(m).ok())
                .unwrap_or_default();
            (keys::carried_key(i), value)
        })
        .collect()
}

/// The members `entry` carries, down (unreadable slots are skipped).
pub fn decode_carried(entry: &GossipEntry) -> impl Iterator<Item = Member> + '_ {
    (0..keys::MAX_CARRIED)
        .filter_map(|i| entry.values.get(&keys::carried_key(i)))
        .filter(|value| !value.is_empty())
        .filter_map(|value| serde_json::from_str::<Member>(value).ok())
        .map(|mut member| {
            member.alive = false;
            member
        })
}

/// The members of a ring, as `Ring::new` was given them (sorted by id).
fn ring_members_of(ring: &Ring) -> Vec<RingMember> {
    let mut by_node: BTreeMap<NodeId, Vec<Token>> = BTreeMap::new();
    for (token, node) in ring.tokens() {
        by_node.entry(*node).or_default().push(*token);
    }
    by_node
        .into_iter()
        .map(|(id, tokens)| RingMember {
            id,
            rack: ring.rack_of(&id).unwrap_or_default().to_owned(),
            tokens,
        })
        .collect()
}

/// The topology changes the members' states describe.
fn changes(members: &BTreeMap<NodeId, Member>, removed: &BTreeSet<NodeId>) -> Vec<(Change, Phase)> {
    let mut out = Vec::new();
    for m in members.values() {
        let phase = m.phase.unwrap_or(Phase::Pending);
        match m.status {
            NodeStatus::Joining if !m.tokens.is_empty() => match m.replaces {
                Some(replaces) => out.push((
                    Change::Replace {
                        node: m.id,
                        replaces,
                    },
                    phase,
                )),
                None => out.push((Change::Join(m.id), phase)),
            },
            NodeStatus::Leaving => out.push((Change::Leave(m.id), phase)),
            _ => {}
        }
        if let Some((node, phase)) = m.removing
            && m.status != NodeStatus::Left
            && !removed.contains(&node)
            && members.contains_key(&node)
        {
            out.push((Change::Remove { node, by: m.id }, phase));
        }
    }
    out
}

/// A hash of what shapes the ring: the state, tokens and part in a change
/// of every member that has tokens or drives a removal. Murmur3 of a
/// canonical text, so every node computes the same value for the same
/// topology. Members that cannot shape the ring (LEFT or removed, or still
/// choosing tokens) are left out: a node that joined after one left never
/// heard of it.
fn topology_hash(members: &BTreeMap<NodeId, Member>) -> u64 {
    use std::fmt::Write;
    let mut text = String::new();
    let shapes_ring = |m: &&Member| {
        m.status != NodeStatus::Left && (!m.tokens.is_empty() || m.removing.is_some())
    };
    for m in members.values().filter(shapes_ring) {
        let _ = write!(
            text,
            "{} {} {};",
            m.id,
            m.status,
            keys::encode_tokens(&m.tokens)
        );
        if let Some(phase) = m.phase {
            let _ = write!(text, "p{};", phase.as_str());
        }
        if let Some(replaces) = m.replaces {
            let _ = write!(text, "r{replaces};");
        }
        if let Some((node, phase)) = m.removing {
            let _ = write!(text, "x{node}{};", phase.as_str());
        }
    }
    Token::of(text.as_bytes()).0 as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> NodeId {
        NodeId(uuid::Uuid::from_u128(n))
    }

    fn entry(n: u128, generation: u64, alive: bool, status: &str, tokens: &str) -> GossipEntry {
        let values = [
            (keys::STATUS, status),
            (keys::TOKENS, tokens),
            (keys::NAME, "node"),
            (keys::RACK, "r1"),
            (keys::CLIENT_ADDR, "127.0.0.1:7400"),
            (keys::REPLICATION_FACTOR, "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        GossipEntry {
            node_id: id(n).to_string(),
            generation,
            gossip_addr: "127.0.0.1:7402".parse().expect("addr"),
            alive,
            heartbeat: 1,
            max_version: 1,
            values,
        }
    }

    /// Issue 24 item 4: a node started afresh learned at most 256 removed
    /// ids, from one gossip value; the others' states (kept in gossip)
    /// put removed nodes back into its ring.
    #[test]
    fn a_new_node_learns_every_removal_however_many() {
        let removed: Vec<NodeId> = (1_000..1_600).map(id).collect();
        let mut seed = entry(2, 1, true, "NORMAL", "200");
        seed.values.extend(keys::encode_removed(&removed));
        let fresh = view(&[entry(1, 1, true, "NORMAL", "100"), seed]);
        assert_eq!(fresh.removed().len(), removed.len());
        assert!(removed.iter().all(|r| fresh.removed().contains(r)));
    }

    fn view(entries: &[GossipEntry]) -> ClusterView {
        ClusterView::build(
            id(1),
            3,
            entries.iter().filter_map(Member::from_entry),
            None,
        )
    }

    #[test]
    fn dead_members_keep_their_tokens() {
        let v = view(&[
            entry(1, 1, true, "NORMAL", "10"),
            entry(2, 1, false, "NORMAL", "20"),
        ]);
        assert_eq!(v.ring().nodes().len(), 2);
        assert!(v.is_alive(&id(1)));
        assert!(!v.is_alive(&id(2)));
    }

    #[test]
    fn joining_and_left_members_own_nothing() {
        let v = view(&[
            entry(1, 1, true, "NORMAL", "10"),
            entry(2, 1, true, "JOINING", ""),
            entry(3, 1, true, "LEFT", "30"),
        ]);
        assert_eq!(
            v.ring().nodes().into_iter().collect::<Vec<_>>(),
            vec![id(1)]
        );
        assert_eq!(v.remembered().len(), 1);
    }

    #[test]
    fn newest_generation_wins() {
        let v = view(&[
            entry(2, 5, true, "NORMAL", "50"),
            entry(2, 3, false, "NORMAL", "30"),
        ]);
        let member = v.member(&id(2)).expect("known");
        assert_eq!((member.generation, member.alive), (5, true));
        assert_eq!(member.tokens, vec![Token(50)]);
        // A twin that started later and stopped: the live one is the node.
        let v = view(&[
            entry(2, 9, false, "NORMAL", "50"),
            entry(2, 5, true, "NORMAL", "50"),
        ]);
        let member = v.member(&id(2)).expect("known");
        assert_eq!((member.generation, member.alive), (5, true));
    }

    #[test]
    fn unchanged_ring_is_shared() {
        let first = view(&[
            entry(1, 1, true, "NORMAL", "10"),
            entry(2, 1, true, "NORMAL", "20"),
        ]);
        let entries = [
            entry(1, 1, true, "NORMAL", "10"),
            entry(2, 1, false, "NORMAL", "20"),
        ];
        let second = ClusterView::build(
            id(1),
            3,
            entries.iter().filter_map(Member::from_entry),
            Some(&first),
        );
        assert!(
            Arc::ptr_eq(first.ring(), second.ring()),
            "liveness changes keep the ring"
        );
        let entries = [
            entry(1, 1, true, "NORMAL", "10"),
            entry(2, 1, true, "NORMAL", "25"),
        ];
        let third = ClusterView::build(
            id(1),
            3,
            entries.iter().filter_map(Member::from_entry),
            Some(&second),
        );
        assert!(
            !Arc::ptr_eq(second.ring(), third.ring()),
            "token changes rebuild it"
        );
    }

    /// Regression: chitchat forgets a node some time after it died (its
    /// grace period), and the view was rebuilt from gossip plus the members
    /// remembered at start only, so a node dead for days fell out of the
    /// ring of nodes that had not restarted since it joined.
    #[test]
    fn a_member_gossip_forgot_stays_in_the_ring_until_it_leaves() {
        let start = view(&[entry(1, 1, true, "NORMAL", "10")]);
        // Node 3 joins after node 1 started, then dies.
        let joined = start.next(
            [
                entry(1, 1, true, "NORMAL", "10"),
                entry(2, 1, true, "NORMAL", "20"),
                entry(3, 1, true, "NORMAL", "30"),
            ]
            .iter()
            .filter_map(Member::from_entry),
        );
        assert_eq!(joined.ring().nodes().len(), 3);
        let dead = joined.next(
            [
                entry(1, 1, true, "NORMAL", "10"),
                entry(2, 1, true, "NORMAL", "20"),
                entry(3, 1, false, "NORMAL", "30"),
            ]
            .iter()
            .filter_map(Member::from_entry),
        );
        // Past the grace period gossip no longer reports node 3 at all.
        let forgotten_entries = [
            entry(1, 1, true, "NORMAL", "10"),
            entry(2, 1, true, "NORMAL", "20"),
        ];
        let forgotten = dead.next(forgotten_entries.iter().filter_map(Member::from_entry));
        assert!(Arc::ptr_eq(dead.ring(), forgotten.ring()), "same ring");
        let member = forgotten.member(&id(3)).expect("still a member");
        assert!(!member.alive);
        assert_eq!(member.tokens, vec![Token(30)]);
        assert_eq!(forgotten.ring().replicas(Token(25)).first(), Some(&id(3)));
        // It comes back with a new generation: up again, same place.
        let back = forgotten.next(
            [entry(3, 2, true, "NORMAL", "30")]
                .iter()
                .filter_map(Member::from_entry),
        );
        assert!(back.is_alive(&id(3)));
        // Only leaving takes it out of the ring.
        let left = back.next(
            [entry(3, 3, true, "LEFT", "30")]
                .iter()
                .filter_map(Member::from_entry),
        );
        assert_eq!(left.ring().nodes().len(), 2);
    }

    /// Issue 24 item 4: gossip now forgets a dead node within the hour, so
    /// a node away while another left would come back to find the LEFT
    /// forgotten and put the node back in its ring from what it
    /// remembered. A node that left is gossiped as removed instead.
    #[test]
    fn a_node_that_left_is_remembered_and_gossiped_as_removed() {
        let seen = view(&[
            entry(1, 1, true, "NORMAL", "10"),
            entry(2, 1, true, "LEFT", "20"),
        ]);
        assert!(seen.removed().contains(&id(2)));
        // Node 3 was down meanwhile: it remembers node 2 as NORMAL, and
        // hears only node 1, which no longer holds node 2's state.
        let away = ClusterView::at_start(
            id(3),
            3,
            vec![
                Member::normal(id(1), vec![Token(10)]),
                Member::normal(id(2), vec![Token(20)]),
                Member::normal(id(3), vec![Token(30)]),
            ],
            BTreeSet::new(),
        );
        assert_eq!(away.ring().nodes().len(), 3);
        let mut peer = entry(1, 1, true, "NORMAL", "10");
        peer.values.extend(keys::encode_removed(seen.removed()));
        let back = away.next([peer].iter().filter_map(Member::from_entry));
        assert_eq!(
            back.member(&id(2)).map(|m| m.status),
            Some(NodeStatus::Left)
        );
        assert_eq!(back.ring().nodes().len(), 2, "node 2 owns nothing");
        assert!(back.remembered().iter().all(|m| m.id != id(2)));
    }

    /// Issue 24 item 4: what a node carries for others is what gossip
    /// forgot of the ring, and a carried member only fills in a member a
    /// node has never heard of.
    #[test]
    fn forgotten_members_are_carried_and_fill_in_only_the_unknown() {
        let all = view(&[
            entry(1, 1, true, "NORMAL", "10"),
            entry(2, 1, false, "NORMAL", "20"),
            entry(3, 1, true, "JOINING", ""),
            entry(4, 1, false, "LEFT", "40"),
        ]);
        let heard: BTreeSet<NodeId> = [id(1), id(3)].into();
        let forgotten = all.forgotten(&heard);
        assert_eq!(
            forgotten.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![id(2)],
            "a member with tokens that gossip no longer describes; not one that left"
        );
        let mut carrier = entry(1, 1, true, "NORMAL", "10");
        carrier.values.extend(encode_carried(&forgotten));
        assert_eq!(
            carrier
                .values
                .keys()
                .filter(|k| k.starts_with(keys::CARRIED))
                .count(),
            keys::MAX_CARRIED,
            "every slot is written"
        );
        let carried: Vec<Member> = decode_carried(&carrier).collect();
        assert_eq!(carried.len(), 1);
        assert_eq!(carried[0].tokens, vec![Token(20)]);
        assert!(!carried[0].alive);

        let fresh = view(&[entry(5, 1, true, "NORMAL", "50")]);
        let filled = fresh.next(
            fresh
                .unheard(carried.clone())
                .chain([carrier.clone()].iter().filter_map(Member::from_entry)),
        );
        let member = filled
            .member(&id(2))
            .expect("learned from what node 1 carries");
        assert!(!member.alive);
        assert_eq!(filled.ring().nodes().len(), 3, "nodes 1, 2 and 5");

        let mut stale = carried[0].clone();
        (stale.status, stale.state_version) = (NodeStatus::Joining, 0);
        let kept = all.next(all.unheard([stale]).collect::<Vec<_>>());
        assert_eq!(
            kept.member(&id(2)).map(|m| m.status),
            Some(NodeStatus::Normal),
            "an older carried copy changes nothing"
        );
        let live = fresh.next(
            fresh.unheard(carried).chain(
                [entry(2, 1, true, "NORMAL", "20")]
                    .iter()
                    .filter_map(Member::from_entry),
            ),
        );
        assert!(live.is_alive(&id(2)), "live gossip wins");
    }

    /// Issue 24 item 4, found in review: a node away while a dead member
    /// last changed remembered an older state of it, and carried members
    /// only filled in unknown ones, so its topology never agreed with the
    /// others' again. Of two states of one generation the newer wins.
    #[test]
    fn a_newer_carried_state_replaces_an_older_remembered_one() {
        let mut old = Member::normal(id(2), vec![Token(20)]);
        (old.alive, old.generation, old.state_version) = (false, 5, 10);
        let mut newer = old.clone();
        (newer.status, newer.state_version) = (NodeStatus::Leaving, 12);
        let away = ClusterView::at_start(
            id(3),
            3,
            vec![
                Member::normal(id(1), vec![Token(10)]),
                old.clone(),
                Member::normal(id(3), vec![Token(30)]),
            ],
            BTreeSet::new(),
        );
        let carried: Vec<Member> = away.unheard([newer]).collect();
        let caught_up = away.next(carried);
        assert_eq!(
            caught_up.member(&id(2)).map(|m| m.status),
            Some(NodeStatus::Leaving)
        );
        assert_eq!(caught_up.topology(), {
            let mut leaving = old.clone();
            leaving.status = NodeStatus::Leaving;
            ClusterView::at_start(
                id(1),
                3,
                vec![
                    Member::normal(id(1), vec![Token(10)]),
                    leaving,
                    Member::normal(id(3), vec![Token(30)]),
                ],
                BTreeSet::new(),
            )
            .topology()
        });
        let mut stale = old;
        (stale.status, stale.state_version) = (NodeStatus::Joining, 9);
        let kept = caught_up.next(caught_up.unheard([stale]).collect::<Vec<_>>());
        assert_eq!(
            kept.member(&id(2)).map(|m| m.status),
            Some(NodeStatus::Leaving),
            "an older copy changes nothing"
        );
    }

    #[test]
    fn replication_factor_conflicts_are_found() {
        let mut other = entry(2, 1, true, "NORMAL", "20");
        other
            .values
            .insert(keys::REPLICATION_FACTOR.into(), "2".into());
        let v = view(&[entry(1, 1, true, "NORMAL", "10"), other]);
        assert_eq!(v.replication_factor_conflict(3).map(|m| m.id), Some(id(2)));
        assert!(v.replication_factor_conflict(2).is_none());
    }

    fn with(mut e: GossipEntry, key: &str, value: &str) -> GossipEntry {
        e.values.insert(key.to_owned(), value.to_owned());
        e
    }

    #[test]
    fn a_join_adds_pending_write_replicas_and_moves_reads_at_read_new() {
        let normal = [
            entry(1, 1, true, "NORMAL", "100"),
            entry(2, 1, true, "NORMAL", "200"),
            entry(3, 1, true, "NORMAL", "300"),
        ];
        let build = |joiner: GossipEntry| {
            let entries: Vec<GossipEntry> = normal.iter().cloned().chain([joiner]).collect();
            ClusterView::build(
                id(1),
                2,
                entries.iter().filter_map(Member::from_entry),
                None,
            )
        };
        // Choosing tokens: no change yet.
        let choosing = build(entry(4, 1, true, "JOINING", ""));
        assert!(choosing.transition().is_none());
        assert_eq!(choosing.write_replicas(Token(120)).1, 0);

        let pending = build(entry(4, 1, true, "JOINING", "150"));
        let t = pending.transition().expect("a join in progress");
        assert_eq!(t.changes, vec![(Change::Join(id(4)), Phase::Pending)]);
        // Reads stay on the old ring; writes add the joiner and need one
        // more acknowledgement.
        assert_eq!(pending.ring().replicas(Token(120)), [id(2), id(3)]);
        let (targets, added) = pending.write_replicas(Token(120));
        assert_eq!((&*targets, added), (&[id(2), id(3), id(4)][..], 1));
        // A range the join does not touch: no extra replica.
        assert_eq!(pending.write_replicas(Token(250)).1, 0);

        let read_new = build(with(
            entry(4, 1, true, "JOINING", "150"),
            keys::PHASE,
            "read_new",
        ));
        assert_eq!(read_new.ring().replicas(Token(120)), [id(4), id(2)]);
        let (targets, added) = read_new.write_replicas(Token(120));
        assert_eq!((&*targets, added), (&[id(4), id(2), id(3)][..], 1));

        let done = build(entry(4, 1, true, "NORMAL", "150"));
        assert!(done.transition().is_none());
        assert_eq!(done.write_replicas(Token(120)).0.len(), 2);
    }

    #[test]
    fn leaving_removing_and_replacing_nodes_leave_the_new_ring() {
        let base = |extra: Vec<GossipEntry>| {
            let entries: Vec<GossipEntry> = [
                entry(1, 1, true, "NORMAL", "100"),
                entry(2, 1, true, "NORMAL", "200"),
            ]
            .into_iter()
            .chain(extra)
            .collect();
            ClusterView::build(
                id(1),
                2,
                entries.iter().filter_map(Member::from_entry),
                None,
            )
        };
        let leaving = base(vec![entry(3, 1, true, "LEAVING", "300")]);
        let t = leaving.transition().expect("leaving");
        assert!(t.old.nodes().contains(&id(3)) && !t.new.nodes().contains(&id(3)));
        assert!(leaving.ring().nodes().contains(&id(3)), "reads stay old");

        // Node 1 removes dead node 3.
        let removing = {
            let entries = [
                with(
                    entry(1, 1, true, "NORMAL", "100"),
                    keys::REMOVING,
                    &format!("{}:read_old", id(3)),
                ),
                entry(2, 1, true, "NORMAL", "200"),
                entry(3, 1, false, "NORMAL", "300"),
            ];
            ClusterView::build(
                id(1),
                2,
                entries.iter().filter_map(Member::from_entry),
                None,
            )
        };
        let t = removing.transition().expect("removing");
        assert_eq!(
            t.changes[0].0,
            Change::Remove {
                node: id(3),
                by: id(1)
            }
        );
        assert!(!t.new.nodes().contains(&id(3)));
        // Removed: LEFT everywhere, out of both rings, and it stays so.
        let removed = removing.next(
            [
                with(
                    entry(1, 1, true, "NORMAL", "100"),
                    keys::REMOVED,
                    &id(3).to_string(),
                ),
                entry(2, 1, true, "NORMAL", "200"),
                entry(3, 1, false, "NORMAL", "300"),
            ]
            .iter()
            .filter_map(Member::from_entry),
        );
        assert!(removed.transition().is_none());
        assert_eq!(
            removed.member(&id(3)).map(|m| m.status),
            Some(NodeStatus::Left)
        );
        let later = removed.next(
            [entry(3, 2, false, "NORMAL", "300")]
                .iter()
                .filter_map(Member::from_entry),
        );
        assert!(
            !later.ring().nodes().contains(&id(3)),
            "a removal is remembered"
        );

        // Node 4 replaces dead node 3 with its tokens.
        let replacing = base(vec![
            entry(3, 1, false, "NORMAL", "300"),
            with(
                entry(4, 1, true, "JOINING", "300"),
                keys::REPLACES,
                &id(3).to_string(),
            ),
        ]);
        let t = replacing.transition().expect("replacing");
        assert_eq!(
            t.changes[0].0,
            Change::Replace {
                node: id(4),
                replaces: id(3)
            }
        );
        assert!(t.old.nodes().contains(&id(3)) && !t.old.nodes().contains(&id(4)));
        assert!(t.new.nodes().contains(&id(4)) && !t.new.nodes().contains(&id(3)));
    }

    #[test]
    fn views_of_one_topology_hash_alike_and_laggards_are_named() {
        let entries = [
            entry(1, 1, true, "NORMAL", "100"),
            entry(2, 1, true, "NORMAL", "200"),
            entry(3, 1, true, "JOINING", "300"),
        ];
        let a = ClusterView::build(
            id(1),
            3,
            entries.iter().filter_map(Member::from_entry),
            None,
        );
        let reversed: Vec<GossipEntry> = entries.iter().rev().cloned().collect();
        let b = ClusterView::build(
            id(2),
            3,
            reversed.iter().filter_map(Member::from_entry),
            None,
        );
        assert_eq!(a.topology(), b.topology());
        let normal = [entry(3, 1, true, "NORMAL", "300")];
        let c = a.next(normal.iter().filter_map(Member::from_entry));
        assert_ne!(a.topology(), c.topology());
        // Nobody gossiped a topology yet: both others lag.
        assert_eq!(a.topology_laggards().len(), 2);
        let hex = format!("{:x}", a.topology());
        let agreed: Vec<GossipEntry> = entries
            .iter()
            .map(|e| with(e.clone(), keys::TOPOLOGY, &hex))
            .collect();
        let d = ClusterView::build(id(1), 3, agreed.iter().filter_map(Member::from_entry), None);
        assert!(d.topology_laggards().is_empty());
    }

    #[test]
    fn entries_without_status_or_with_bad_ids_are_ignored() {
        let mut no_status = entry(2, 1, true, "NORMAL", "20");
        no_status.values.remove(keys::STATUS);
        let mut bad_id = entry(3, 1, true, "NORMAL", "30");
        bad_id.node_id = "not-a-uuid".into();
        assert!(Member::from_entry(&no_status).is_none());
        assert!(Member::from_entry(&bad_id).is_none());
    }

    proptest::proptest! {
        /// Whatever a gossiped entry holds, reading it as a member answers
        /// a member or nothing, never a panic.
        #[test]
        fn any_gossiped_entry_reads_without_panic(
            id in ".{0,40}",
            values in proptest::collection::btree_map(".{0,12}", ".{0,80}", 0..12),
            known in proptest::collection::vec(".{0,60}", 14),
        ) {
            let names = [
                keys::STATUS, keys::TOKENS, keys::NAME, keys::RACK, keys::CLIENT_ADDR,
                keys::PEER_ADDR, keys::REPLICATION_FACTOR, keys::LOAD, keys::LAST_REPAIR,
                keys::REPAIR_FAILED, keys::PHASE, keys::REMOVING, keys::REMOVED, keys::TOPOLOGY,
            ];
            let mut values = values;
            for (name, value) in names.iter().zip(known) {
                values.insert((*name).to_owned(), value);
            }
            for node_id in [id, self::id(7).to_string()] {
                let entry = GossipEntry {
                    node_id,
                    generation: 1,
                    gossip_addr: "127.0.0.1:7402".parse().expect("addr"),
                    alive: true,
                    heartbeat: 1,
                    max_version: 1,
                    values: values.clone(),
                };
                if let Some(member) = Member::from_entry(&entry) {
                    let _ = ClusterView::build(self::id(1), 3, [member], None);
                }
            }
        }
    }
}
