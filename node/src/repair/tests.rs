//! Repair between in-memory replicas, through the same replica-side code
//! the gRPC service runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::cache::TreeCache;
use super::serve;
use super::session::{LEAVES_PER_RANGE, LocalReplica};
use super::transport::RepairTransport;
use super::tree::Hash;
use crate::coordinator::ReplicaError;
use crate::identity::NodeId;
use crate::ring::{Token, TokenRange};
use crate::storage::{Cell, CellView, DirtyMap, LocalStore, MemoryStorage, SyncMode};

struct Peers {
    replicas: BTreeMap<NodeId, LocalReplica>,
}

fn failed(e: impl std::fmt::Display) -> ReplicaError {
    ReplicaError::Failed(e.to_string())
}

impl Peers {
    fn of(&self, node: NodeId) -> Result<LocalReplica, ReplicaError> {
        self.replicas
            .get(&node)
            .cloned()
            .ok_or_else(|| ReplicaError::Unreachable("unknown".into()))
    }
}

impl RepairTransport for Arc<Peers> {
    fn merkle_nodes(
        &self,
        to: NodeId,
        range: TokenRange,
        leaves: u32,
        nodes: Vec<u32>,
    ) -> BoxFuture<'static, Result<Vec<Hash>, ReplicaError>> {
        let peer = self.of(to);
        Box::pin(async move {
            let nodes = nodes.into_iter().map(|n| n as usize).collect();
            serve::merkle_nodes(peer?.cache, range, leaves as usize, nodes)
                .await
                .map_err(failed)
        })
    }

    fn leaf_digests(
        &self,
        to: NodeId,
        range: TokenRange,
    ) -> BoxFuture<'static, Result<Vec<(Bytes, Bytes)>, ReplicaError>> {
        let peer = self.of(to);
        Box::pin(async move {
            serve::leaf_digests(peer?.store, range)
                .await
                .map_err(failed)
        })
    }

    fn read_batch(
        &self,
        to: NodeId,
        keys: Vec<Bytes>,
    ) -> BoxFuture<'static, Result<Vec<(Bytes, Cell)>, ReplicaError>> {
        let peer = self.of(to);
        Box::pin(async move { serve::read_batch(&peer?.store, &keys).map_err(failed) })
    }

    fn write_batch(
        &self,
        to: NodeId,
        entries: Vec<(Bytes, Cell)>,
    ) -> BoxFuture<'static, Result<(), ReplicaError>> {
        let peer = self.of(to);
        Box::pin(async move {
            serve::write_batch(&peer?.store, &entries)
                .await
                .map_err(failed)
        })
    }
}

fn node(n: u128) -> NodeId {
    NodeId(uuid::Uuid::from_u128(n))
}

fn replica() -> LocalReplica {
    let engine = Arc::new(MemoryStorage::default());
    let dirty = Arc::new(DirtyMap::default());
    let store = LocalStore::new(engine.clone(), SyncMode::Periodic, None).tracking(dirty.clone());
    LocalReplica {
        cache: Arc::new(TreeCache::new(engine, dirty, LEAVES_PER_RANGE)),
        store,
    }
}

async fn put(r: &LocalReplica, key: &str, cell: Cell) {
    r.store
        .apply(Token::of(key.as_bytes()), key.as_bytes(), &cell)
        .await
        .expect("write");
}

fn contents(r: &LocalReplica) -> BTreeMap<Vec<u8>, Cell> {
    let mut out = BTreeMap::new();
    let whole = TokenRange::new(Token(0), Token(0));
    r.store
        .engine()
        .scan(whole, &mut |_, key, cell| {
            out.insert(
                key.to_vec(),
                CellView::decode(cell).expect("cell").to_owned_cell(),
            );
        })
        .expect("scan");
    out
}

fn value(ts: i64) -> Cell {
    Cell::live(ts, Bytes::from(format!("v{ts}")), None)
}

#[tokio::test]
async fn three_replicas_converge_and_only_differences_move() {
    let (me, b, c) = (replica(), replica(), replica());
    // 2,000 keys everywhere, then a few differences on each replica.
    for i in 0..2_000 {
        for r in [&me, &b, &c] {
            put(r, &format!("k{i}"), value(1)).await;
        }
    }
    put(&me, "k1", value(5)).await; // newer here
    put(&b, "k2", value(6)).await; // newer on b
    put(&c, "k3", Cell::tombstone(7, 0)).await; // deleted on c only
    put(&c, "only-on-c", value(8)).await;
    put(&b, "only-on-b", value(9)).await;

    let peers = Arc::new(Peers {
        replicas: BTreeMap::from([(node(2), b.clone()), (node(3), c.clone())]),
    });
    let whole = TokenRange::new(Token(0), Token(0));
    let mut moved = 0;
    // The runner's order: me↔b, me↔c, me↔b.
    for peer in [node(2), node(3), node(2)] {
        let stats = me.sync(&peers, peer, whole).await.expect("sync");
        moved += stats.keys_sent + stats.keys_received;
        assert!(stats.leaves_differing <= 5, "{stats:?}");
    }
    let expected = contents(&me);
    assert_eq!(contents(&b), expected);
    assert_eq!(contents(&c), expected);
    assert_eq!(
        expected.get(b"k3".as_slice()).map(|c| c.tombstone),
        Some(true),
        "the delete won"
    );
    assert_eq!(expected.get(b"k2".as_slice()).map(|c| c.timestamp), Some(6));
    assert!(
        moved <= 20,
        "{moved} cells moved for 5 differing keys out of 2,002"
    );

    // Trees now agree, and another round moves nothing.
    let again = me.sync(&peers, node(3), whole).await.expect("sync");
    assert_eq!(
        again.leaves_differing + again.keys_sent + again.keys_received,
        0
    );
    let roots: Vec<Hash> = [&me, &b, &c]
        .iter()
        .map(|r| r.cache.refresh(whole).expect("tree").0.root())
        .collect();
    assert!(roots.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn an_unreachable_peer_fails_the_sync() {
    let me = replica();
    let peers = Arc::new(Peers {
        replicas: BTreeMap::new(),
    });
    let whole = TokenRange::new(Token(0), Token(0));
    assert!(me.sync(&peers, node(9), whole).await.is_err());
}
