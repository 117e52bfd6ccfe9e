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
//! the previous view knew, so forgetting in gossip never changes the ring.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::keys::{self, NodeStatus};
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
    /// Up according to the failure detector.
    #[serde(skip)]
    pub alive: bool,
    #[serde(skip)]
    pub generation: u64,
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
            replication_factor: get(keys::REPLICATION_FACTOR).and_then(|v| v.parse().ok()),
            load_bytes: get(keys::LOAD).and_then(|v| v.parse().ok()),
            last_repair: get(keys::LAST_REPAIR).and_then(|v| v.parse().ok()),
            repair_failed: get(keys::REPAIR_FAILED)
                .map(keys::decode_ranges)
                .unwrap_or_default(),
            disk_problem: get(keys::DISK).filter(|p| !p.is_empty()).map(str::to_owned),
            alive: entry.alive,
            generation: entry.generation,
        })
    }

    fn ring_member(&self) -> Option<RingMember> {
        (self.status.owns_tokens() && !self.tokens.is_empty()).then(|| RingMember {
            id: self.id,
            rack: self.rack.clone(),
            tokens: self.tokens.clone(),
        })
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
            replication_factor: Some(3),
            load_bytes: None,
            last_repair: None,
            disk_problem: None,
            repair_failed: Vec::new(),
            alive: true,
            generation: 1,
        }
    }
}

/// An immutable picture of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterView {
    local: NodeId,
    members: BTreeMap<NodeId, Member>,
    ring: Arc<Ring>,
}

impl ClusterView {
    /// Builds a view from members (remembered ones first, then gossiped
    /// ones: for each node the entry with the highest generation wins).
    /// `previous` lets an unchanged ring be shared instead of rebuilt.
    pub fn build(
        local: NodeId,
        replication_factor: usize,
        members: impl IntoIterator<Item = Member>,
        previous: Option<&ClusterView>,
    ) -> ClusterView {
        let mut by_id: BTreeMap<NodeId, Member> = BTreeMap::new();
        for member in members {
            match by_id.get(&member.id) {
                Some(known) if known.generation > member.generation => {}
                _ => {
                    by_id.insert(member.id, member);
                }
            }
        }
        if let Some(me) = by_id.get_mut(&local) {
            me.alive = true;
        }
        let ring_members: Vec<RingMember> =
            by_id.values().filter_map(Member::ring_member).collect();
        let ring = match previous {
            Some(prev)
                if prev.ring_members() == ring_members
                    && prev.ring.replication_factor() == replication_factor =>
            {
                prev.ring.clone()
            }
            _ => Arc::new(Ring::new(ring_members, replication_factor)),
        };
        ClusterView {
            local,
            members: by_id,
            ring,
        }
    }

    /// The view after a gossip round: `gossiped` members update this view's
    /// ones, and a member gossip no longer reports stays, marked down, with
    /// its tokens. A member leaves the ring only by leaving (LEFT).
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

    fn ring_members(&self) -> Vec<RingMember> {
        self.members
            .values()
            .filter_map(Member::ring_member)
            .collect()
    }

    /// This node's id.
    pub fn local(&self) -> NodeId {
        self.local
    }

    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
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

    /// The members that affect the ring, for remembering across restarts.
    pub fn remembered(&self) -> Vec<Member> {
        self.members
            .values()
            .filter(|m| m.status != NodeStatus::Left && !m.tokens.is_empty())
            .cloned()
            .collect()
    }
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
            values,
        }
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

    #[test]
    fn entries_without_status_or_with_bad_ids_are_ignored() {
        let mut no_status = entry(2, 1, true, "NORMAL", "20");
        no_status.values.remove(keys::STATUS);
        let mut bad_id = entry(3, 1, true, "NORMAL", "30");
        bad_id.node_id = "not-a-uuid".into();
        assert!(Member::from_entry(&no_status).is_none());
        assert!(Member::from_entry(&bad_id).is_none());
    }
}
