//! Micro-benchmarks of the per-request hot paths: token computation,
//! replica lookup, cell encoding and the LWW merge, Merkle leaf rehashing,
//! and local RocksDB writes and reads.
//!
//! Run: `cargo bench --bench hot_paths` (results in BENCHMARKS.md).

use std::hint::black_box;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use ringkv_node::identity::NodeId;
use ringkv_node::peer::TreeCache;
use ringkv_node::repair::LEAVES_PER_RANGE;
use ringkv_node::ring::{Ring, RingMember, Token, TokenRange, allocate_tokens};
use ringkv_node::storage::{Cell, CellView, DirtyMap, RocksConfig, RocksStorage, Storage, lww};

fn tokens(c: &mut Criterion) {
    let mut group = c.benchmark_group("token");
    for size in [16usize, 64, 1024] {
        let key = vec![b'k'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &key, |b, key| {
            b.iter(|| Token::of(black_box(key)))
        });
    }
    group.finish();
}

/// A ring of `nodes` nodes with 16 balanced tokens each.
fn ring(nodes: u128) -> Ring {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut members: Vec<RingMember> = Vec::new();
    for n in 0..nodes {
        let id = NodeId(uuid::Uuid::from_u128(n + 1));
        let current = Ring::new(members.clone(), 3);
        let racks: BTreeMap<NodeId, String> =
            members.iter().map(|m| (m.id, m.rack.clone())).collect();
        let tokens = allocate_tokens(current.tokens(), &racks, id, "r", 16, 3, &mut rng);
        members.push(RingMember {
            id,
            rack: "r".into(),
            tokens,
        });
    }
    Ring::new(members, 3)
}

fn replicas(c: &mut Criterion) {
    let mut group = c.benchmark_group("replica_lookup");
    for nodes in [3u128, 12, 48] {
        let ring = ring(nodes);
        let tokens: Vec<Token> = (0..1024)
            .map(|i| Token::of(format!("user{i}").as_bytes()))
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &ring, |b, ring| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) % tokens.len();
                black_box(ring.replicas(tokens[i]).len())
            })
        });
    }
    group.finish();
}

fn merkle(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Storage> =
        Arc::new(RocksStorage::open(dir.path(), &RocksConfig::default()).expect("open"));
    let dirty = Arc::new(DirtyMap::default());
    // 20,000 keys in one range the size of a 3-node ring's (1/48 of it).
    let range = TokenRange::new(Token(0), Token(i64::MAX / 24));
    let mut written = 0;
    let mut i = 0u64;
    while written < 20_000 {
        let key = format!("user{i}");
        i += 1;
        let token = Token::of(key.as_bytes());
        if range.contains(token) {
            let cell = Cell::live(1, Bytes::from(vec![7u8; 100]), None);
            store
                .write(token, key.as_bytes(), &cell, false)
                .expect("write");
            written += 1;
        }
    }
    let cache = TreeCache::new(store.clone(), dirty.clone(), LEAVES_PER_RANGE);
    c.bench_function("merkle/build_range_20k_keys", |b| {
        b.iter(|| {
            let fresh = TreeCache::new(
                store.clone(),
                Arc::new(DirtyMap::default()),
                LEAVES_PER_RANGE,
            );
            black_box(fresh.refresh(range).expect("refresh").0.root())
        })
    });
    cache.refresh(range).expect("warm");
    let mut n = 0i64;
    c.bench_function("merkle/rehash_one_dirty_leaf", |b| {
        b.iter(|| {
            // One write dirties one leaf; the refresh rescans only it.
            n += 1;
            let key = b"user0";
            let cell = Cell::live(n, Bytes::from_static(b"v"), None);
            store
                .write(Token::of(key), key, &cell, false)
                .expect("write");
            dirty.mark(Token::of(key));
            black_box(cache.refresh(range).expect("refresh").1.leaves_rehashed)
        })
    });
}

fn cells(c: &mut Criterion) {
    let value = Bytes::from(vec![7u8; 100]);
    let newer = Cell::live(2_000, value.clone(), None);
    let older = Cell::live(1_000, value, Some(1_700_000_000));
    let encoded = newer.encode();
    let mut buffer = Vec::with_capacity(256);
    c.bench_function("cell/encode_100B", |b| {
        b.iter(|| {
            buffer.clear();
            black_box(&newer).encode_into(&mut buffer);
        })
    });
    c.bench_function("cell/decode_100B", |b| {
        b.iter(|| CellView::decode(black_box(&encoded)))
    });
    c.bench_function("cell/lww_compare", |b| {
        b.iter(|| lww::compare(black_box(&newer), black_box(&older)))
    });
}

fn rocksdb(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RocksStorage::open(dir.path(), &RocksConfig::default()).expect("open");
    let value = Bytes::from(vec![7u8; 100]);
    let keys: Vec<Vec<u8>> = (0..10_000)
        .map(|i| format!("user{i:08}").into_bytes())
        .collect();
    let mut ts = 0i64;
    c.bench_function("rocksdb/write_100B_nosync", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let key = &keys[i % keys.len()];
            i += 1;
            ts += 1;
            let cell = Cell::live(ts, value.clone(), None);
            store
                .write(Token::of(key), key, &cell, false)
                .expect("write");
        })
    });
    c.bench_function("rocksdb/read_hit", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let key = &keys[i % keys.len()];
            i += 1;
            black_box(store.read(Token::of(key), key).expect("read"))
        })
    });
}

criterion_group!(benches, tokens, replicas, cells, merkle, rocksdb);
criterion_main!(benches);
