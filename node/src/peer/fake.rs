//! An in-memory cluster for the unit tests of the layers above `peer`
//! (coordinator, hint replay, repair): one replica per node, each a
//! `MemoryStorage` behind the same replica-side handlers the gRPC service
//! runs, reached through both replica transports, with nodes that can be
//! made unreachable, silent or slow.
//!
//! Whole-cluster behaviour under real gossip, real networking and faults
//! is the simulation's (`crate::sim`); this is the one fake the unit tests
//! share.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures::future::BoxFuture;

use super::tree::LEAVES_PER_RANGE;
use super::{
    BatchRead, Hash, LocalReplica, ReadReply, RepairTransport, ReplicaError, ReplicaTransport,
    StreamPage, TreeCache, WriteAck, serve,
};
use crate::identity::NodeId;
use crate::membership::{ClusterView, Member, ViewHandle};
use crate::ring::{Ring, RingMember, Token, TokenRange, allocate_tokens};
use crate::storage::{
    BatchLimit, Cell, DirtyMap, LocalStore, MemoryStorage, Mutation, RowsPage, RowsQuery, SyncMode,
    WriteMode,
};

/// How a fake node behaves.
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

/// Node `n` of a fake cluster.
pub fn node(n: usize) -> NodeId {
    NodeId(uuid::Uuid::from_u128(n as u128 + 1))
}

/// A fresh in-memory replica.
pub fn replica() -> LocalReplica {
    let engine = Arc::new(MemoryStorage::default());
    let dirty = Arc::new(DirtyMap::default());
    let store = LocalStore::new(engine.clone(), SyncMode::Periodic, None).tracking(dirty.clone());
    LocalReplica {
        cache: Arc::new(TreeCache::new(engine, dirty, LEAVES_PER_RANGE)),
        store,
    }
}

pub struct FakeCluster {
    pub nodes: Vec<NodeId>,
    replicas: BTreeMap<NodeId, LocalReplica>,
    behaviour: Mutex<BTreeMap<NodeId, Behaviour>>,
    members: Vec<Member>,
    /// (entries, bytes) of every batch read or written, to check bounds.
    batches: Mutex<Vec<(usize, usize)>>,
    /// (target, key) of every cell written in a batch.
    written: Mutex<Vec<(NodeId, Bytes)>>,
}

impl FakeCluster {
    /// `count` healthy nodes with balanced tokens (RF 3).
    pub fn balanced(count: usize) -> Arc<FakeCluster> {
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
        Self::build(nodes.iter().map(|n| (*n, replica())), members)
    }

    /// The given replicas, with no ring (repair and hint tests bring their
    /// own view); any other node is unreachable.
    pub fn of(replicas: impl IntoIterator<Item = (NodeId, LocalReplica)>) -> Arc<FakeCluster> {
        Self::build(replicas, Vec::new())
    }

    fn build(
        replicas: impl IntoIterator<Item = (NodeId, LocalReplica)>,
        members: Vec<Member>,
    ) -> Arc<FakeCluster> {
        let replicas: BTreeMap<NodeId, LocalReplica> = replicas.into_iter().collect();
        Arc::new(FakeCluster {
            nodes: replicas.keys().copied().collect(),
            behaviour: Mutex::new(replicas.keys().map(|n| (*n, Behaviour::Healthy)).collect()),
            replicas,
            members,
            batches: Mutex::new(Vec::new()),
            written: Mutex::new(Vec::new()),
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

    /// The replica of `node`.
    pub fn replica_of(&self, node: NodeId) -> Option<&LocalReplica> {
        self.replicas.get(&node)
    }

    /// What `node` holds for the plain key `key`.
    pub fn stored(&self, node: NodeId, key: &[u8]) -> Option<Cell> {
        let row = crate::storage::key::plain_key(key);
        self.replicas
            .get(&node)
            .and_then(|r| r.store.read(Token::of(key), &row).ok().flatten())
    }

    /// Writes the plain key `key` straight into one replica's store.
    pub fn plant(&self, node: NodeId, key: &[u8], cell: &Cell) {
        if let Some(replica) = self.replicas.get(&node) {
            let row = crate::storage::key::plain_key(key);
            let _ = replica
                .store
                .engine()
                .write(Token::of(key), &row, cell, false);
        }
    }

    /// Replicas of a key in ring order.
    pub fn replicas(&self, key: &[u8]) -> Vec<NodeId> {
        let view = self.view(self.nodes[0], &BTreeSet::new());
        view.load().ring().replicas(Token::of(key)).to_vec()
    }

    /// (entries, bytes) of every batch read or written so far.
    pub fn batches(&self) -> Vec<(usize, usize)> {
        self.batches.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// (target, key) of every cell written in a batch so far.
    pub fn written(&self) -> Vec<(NodeId, Bytes)> {
        self.written.lock().map(|w| w.clone()).unwrap_or_default()
    }

    fn record(&self, entries: &[(Bytes, Cell)]) {
        let bytes = entries.iter().map(|(k, c)| k.len() + c.encoded_len()).sum();
        if let Ok(mut batches) = self.batches.lock() {
            batches.push((entries.len(), bytes));
        }
    }

    /// Waits as `node` behaves, then gives its replica.
    fn gate(
        self: &Arc<Self>,
        node: NodeId,
    ) -> BoxFuture<'static, Result<LocalReplica, ReplicaError>> {
        let cluster = self.clone();
        Box::pin(async move {
            match cluster.behaviour(node) {
                Behaviour::Healthy => {}
                Behaviour::Unreachable => {
                    return Err(ReplicaError::Unreachable("connection refused".into()));
                }
                Behaviour::Silent => std::future::pending::<()>().await,
                Behaviour::Slow(delay) => tokio::time::sleep(delay).await,
            }
            cluster
                .replicas
                .get(&node)
                .cloned()
                .ok_or_else(|| ReplicaError::Unreachable("unknown node".into()))
        })
    }
}

fn failed(e: impl std::fmt::Display) -> ReplicaError {
    ReplicaError::Failed(e.to_string())
}

impl ReplicaTransport for Arc<FakeCluster> {
    fn write_reporting(
        &self,
        to: NodeId,
        mutation: Mutation,
        mode: WriteMode,
    ) -> BoxFuture<'static, Result<WriteAck, ReplicaError>> {
        let gate = self.gate(to);
        Box::pin(async move {
            let replica = gate.await?;
            let newer = replica
                .store
                .apply_reporting(&mutation, mode)
                .await
                .map_err(ReplicaError::from)?;
            Ok(WriteAck { newer })
        })
    }

    fn read(
        &self,
        to: NodeId,
        token: Token,
        key: Bytes,
        digest_only: bool,
    ) -> BoxFuture<'static, Result<ReadReply, ReplicaError>> {
        let gate = self.gate(to);
        Box::pin(async move {
            let cell = gate.await?.store.read(token, &key).map_err(failed)?;
            Ok(ReadReply::answer(cell, digest_only))
        })
    }

    fn query(
        &self,
        to: NodeId,
        token: Token,
        query: RowsQuery,
    ) -> BoxFuture<'static, Result<RowsPage, ReplicaError>> {
        let gate = self.gate(to);
        Box::pin(async move { gate.await?.store.query(token, query).await.map_err(failed) })
    }
}

impl RepairTransport for Arc<FakeCluster> {
    fn merkle_nodes(
        &self,
        to: NodeId,
        range: TokenRange,
        leaves: u32,
        nodes: Vec<u32>,
    ) -> BoxFuture<'static, Result<Vec<Hash>, ReplicaError>> {
        let gate = self.gate(to);
        Box::pin(async move {
            let nodes = nodes.into_iter().map(|n| n as usize).collect();
            serve::merkle_nodes(gate.await?.cache, range, leaves as usize, nodes)
                .await
                .map_err(failed)
        })
    }

    fn leaf_digests(
        &self,
        to: NodeId,
        range: TokenRange,
    ) -> BoxFuture<'static, Result<Vec<(Bytes, Bytes)>, ReplicaError>> {
        let gate = self.gate(to);
        Box::pin(async move {
            serve::leaf_digests(gate.await?.store, range)
                .await
                .map_err(failed)
        })
    }

    fn read_batch(
        &self,
        to: NodeId,
        keys: Vec<Bytes>,
    ) -> BoxFuture<'static, Result<BatchRead, ReplicaError>> {
        let (gate, cluster) = (self.gate(to), self.clone());
        Box::pin(async move {
            let replica = gate.await?;
            let answer =
                serve::read_batch(&replica.store, &keys, BatchLimit::default()).map_err(failed)?;
            cluster.record(&answer.0);
            Ok(answer)
        })
    }

    fn stream_range(
        &self,
        to: NodeId,
        range: TokenRange,
        after: Option<Bytes>,
    ) -> BoxFuture<'static, Result<StreamPage, ReplicaError>> {
        let gate = self.gate(to);
        Box::pin(async move {
            serve::stream_page(gate.await?.store, range, after)
                .await
                .map_err(failed)
        })
    }

    fn write_batch(
        &self,
        to: NodeId,
        entries: Vec<(Bytes, Cell)>,
    ) -> BoxFuture<'static, Result<(), ReplicaError>> {
        let (gate, cluster) = (self.gate(to), self.clone());
        Box::pin(async move {
            let replica = gate.await?;
            cluster.record(&entries);
            serve::write_batch(&replica.store, &entries)
                .await
                .map_err(ReplicaError::from)?;
            if let Ok(mut written) = cluster.written.lock() {
                written.extend(entries.into_iter().map(|(k, _)| (to, k)));
            }
            Ok(())
        })
    }
}
