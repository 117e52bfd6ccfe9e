//! Micro-benchmarks of the per-request hot paths: token computation, cell
//! encoding and the LWW merge, and local RocksDB writes and reads.
//!
//! Run: `cargo bench --bench hot_paths` (results in BENCHMARKS.md).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringkv_node::ring::Token;
use ringkv_node::storage::{Cell, CellView, RocksConfig, RocksStorage, Storage, lww};

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

criterion_group!(benches, tokens, cells, rocksdb);
criterion_main!(benches);
