//! An in-memory cluster for coordinator tests: each node a `MemoryStorage`,
//! with replicas that can be made unreachable, silent or slow.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures::future::BoxFuture;

use crate::identity::NodeId;
use crate::membership::{ClusterView, Member, ViewHandle};
use crate::peer::{ReadReply, ReplicaError, ReplicaTransport};
use crate::ring::{Ring, RingMember, Token, allocate_tokens};
use crate::storage::{Cell, MemoryStorage, Storage};

/// How a simulated replica behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Healthy,
    /// Connection refused at once.
    Unreachable,
    /// Never answers.
    Silent,
    /// Answers after a delay.
    Slow(Duration),
}

pub struct SimCluster {
    pub nodes: Vec<NodeId>,
    pub stores: BTreeMap<NodeId, Arc<MemoryStorage>>,
    behaviour: Mutex<BTreeMap<NodeId, Behaviour>>,
    members: Vec<Member>,
}

pub fn node(n: usize) -> NodeId {
    NodeId(uuid::Uuid::from_u128(n as u128 + 1))
}

impl SimCluster {
    /// `count` nodes with balanced tokens.
    pub fn new(count: usize) -> Arc<SimCluster> {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(42);
        let mut ring_members: Vec<RingMember> = Vec::new();
        for i in 0..count {
            let ring = Ring::new(ring_members.clone(), 3);
            let racks = ring_members
                .iter()
                .map(|m| (m.id, m.rack.clone()))
                .collect();
            let tokens = allocate_tokens(ring.tokens(), &racks, node(i), "r", 8, 3, &mut rng);
            ring_members.push(RingMember {
                id: node(i),
                rack: "r".into(),
                tokens,
            });
        }
        let members = ring_members
            .into_iter()
            .map(|m| Member {
                rack: m.rack,
                ..Member::normal(m.id, m.tokens)
            })
            .collect();
        let nodes: Vec<NodeId> = (0..count).map(node).collect();
        Arc::new(SimCluster {
            stores: nodes
                .iter()
                .map(|n| (*n, Arc::new(MemoryStorage::default())))
                .collect(),
            behaviour: Mutex::new(nodes.iter().map(|n| (*n, Behaviour::Healthy)).collect()),
            nodes,
            members,
        })
    }

    /// A view from `local`'s side in which `down` are marked down.
    pub fn view(&self, local: NodeId, down: &BTreeSet<NodeId>) -> ViewHandle {
        let members = self.members.iter().cloned().map(|mut m| {
            m.alive = !down.contains(&m.id);
            m
        });
        Arc::new(ArcSwap::from_pointee(ClusterView::build(
            local, 3, members, None,
        )))
    }

    pub fn set(&self, node: NodeId, behaviour: Behaviour) {
        if let Ok(mut map) = self.behaviour.lock() {
            map.insert(node, behaviour);
        }
    }

    fn behaviour(&self, node: NodeId) -> Behaviour {
        self.behaviour
            .lock()
            .map(|m| m.get(&node).copied().unwrap_or(Behaviour::Unreachable))
            .unwrap_or(Behaviour::Unreachable)
    }

    /// What `node` holds for `key`.
    pub fn stored(&self, node: NodeId, key: &[u8]) -> Option<Cell> {
        self.stores
            .get(&node)
            .and_then(|s| s.read(Token::of(key), key).ok().flatten())
    }

    /// Writes straight into one replica's store.
    pub fn plant(&self, node: NodeId, key: &[u8], cell: &Cell) {
        if let Some(store) = self.stores.get(&node) {
            let _ = store.write(Token::of(key), key, cell, false);
        }
    }

    /// Replicas of a key in ring order.
    pub fn replicas(&self, key: &[u8]) -> Vec<NodeId> {
        let view = self.view(self.nodes[0], &BTreeSet::new());
        view.load().ring().replicas(Token::of(key)).to_vec()
    }

    async fn gate(&self, node: NodeId) -> Result<Arc<MemoryStorage>, ReplicaError> {
        match self.behaviour(node) {
            Behaviour::Healthy => {}
            Behaviour::Unreachable => {
                return Err(ReplicaError::Unreachable("connection refused".into()));
            }
            Behaviour::Silent => std::future::pending::<()>().await,
            Behaviour::Slow(delay) => tokio::time::sleep(delay).await,
        }
        self.stores
            .get(&node)
            .cloned()
            .ok_or_else(|| ReplicaError::Unreachable("unknown node".into()))
    }
}

impl ReplicaTransport for Arc<SimCluster> {
    fn write(
        &self,
        to: NodeId,
        token: Token,
        key: Bytes,
        cell: Cell,
    ) -> BoxFuture<'static, Result<(), ReplicaError>> {
        let sim = self.clone();
        Box::pin(async move {
            let store = sim.gate(to).await?;
            store
                .write(token, &key, &cell, false)
                .map_err(|e| ReplicaError::Failed(e.to_string()))
        })
    }

    fn read(
        &self,
        to: NodeId,
        token: Token,
        key: Bytes,
        digest_only: bool,
    ) -> BoxFuture<'static, Result<ReadReply, ReplicaError>> {
        let sim = self.clone();
        Box::pin(async move {
            let store = sim.gate(to).await?;
            let cell = store
                .read(token, &key)
                .map_err(|e| ReplicaError::Failed(e.to_string()))?;
            Ok(ReadReply::answer(cell, digest_only))
        })
    }
}
