//! One behaviour suite run against both engines, so the in-memory engine
//! used by unit tests cannot drift from RocksDB.

use bytes::Bytes;

use super::*;
use crate::clock::wall_clock_seconds;
use crate::ring::Token;

fn live(ts: i64, v: &'static str) -> Cell {
    Cell::live(ts, Bytes::from_static(v.as_bytes()), None)
}

fn put(s: &dyn Storage, key: &str, cell: &Cell) {
    let key = key.as_bytes();
    s.write(Token::of(key), key, cell, false).expect("write");
}

fn get(s: &dyn Storage, key: &str) -> Option<Cell> {
    let key = key.as_bytes();
    s.read(Token::of(key), key).expect("read")
}

fn suite(s: &dyn Storage) {
    // Round trip.
    put(s, "a", &live(10, "one"));
    assert_eq!(get(s, "a"), Some(live(10, "one")));
    assert_eq!(get(s, "missing"), None);

    // Overwrite with a newer timestamp.
    put(s, "a", &live(11, "two"));
    assert_eq!(get(s, "a"), Some(live(11, "two")));

    // An older timestamp loses, whatever the arrival order.
    put(s, "a", &live(5, "stale"));
    assert_eq!(get(s, "a"), Some(live(11, "two")));

    // A tombstone wins a timestamp tie; a later value beats the tombstone.
    put(s, "a", &Cell::tombstone(11, wall_clock_seconds()));
    assert!(get(s, "a").is_some_and(|c| c.tombstone));
    put(s, "a", &live(12, "back"));
    assert_eq!(get(s, "a"), Some(live(12, "back")));

    // TTL: an expired value is stored but not live.
    let now = wall_clock_seconds();
    put(
        s,
        "ttl",
        &Cell::live(20, Bytes::from_static(b"x"), Some(now - 1)),
    );
    assert!(get(s, "ttl").is_some_and(|c| !c.is_live(now)));
    put(
        s,
        "ttl-later",
        &Cell::live(20, Bytes::from_static(b"x"), Some(now + 3600)),
    );
    assert!(get(s, "ttl-later").is_some_and(|c| c.is_live(now)));

    assert!(s.approximate_size().expect("size") > 0);

    // Meta.
    assert_eq!(s.meta_get("node_id").expect("meta"), None);
    s.meta_put("node_id", b"n1").expect("meta put");
    assert_eq!(s.meta_get("node_id").expect("meta"), Some(b"n1".to_vec()));
}

/// With `gc_grace` = 0, compaction drops expired values and tombstones and
/// keeps everything else.
fn compaction_suite(s: &dyn Storage) {
    let now = wall_clock_seconds();
    put(s, "keep", &live(1, "v"));
    put(
        s,
        "keep-ttl",
        &Cell::live(1, Bytes::from_static(b"v"), Some(now + 3600)),
    );
    put(
        s,
        "expired",
        &Cell::live(1, Bytes::from_static(b"v"), Some(now - 10)),
    );
    put(s, "deleted", &live(1, "v"));
    put(s, "deleted", &Cell::tombstone(2, now - 10));
    s.compact().expect("compact");
    assert!(get(s, "keep").is_some());
    assert!(get(s, "keep-ttl").is_some());
    assert_eq!(
        get(s, "expired"),
        None,
        "expired cell past gc_grace is purged"
    );
    assert_eq!(get(s, "deleted"), None, "tombstone past gc_grace is purged");
}

/// Within `gc_grace`, compaction keeps tombstones (they still shadow values
/// that other replicas may hold).
fn compaction_keeps_recent_tombstones(s: &dyn Storage) {
    let now = wall_clock_seconds();
    put(s, "deleted", &live(1, "v"));
    put(s, "deleted", &Cell::tombstone(2, now));
    put(
        s,
        "expired",
        &Cell::live(1, Bytes::from_static(b"v"), Some(now - 10)),
    );
    s.compact().expect("compact");
    assert!(get(s, "deleted").is_some_and(|c| c.tombstone));
    assert!(get(s, "expired").is_some_and(|c| !c.is_live(now)));
}

/// Scans return exactly the keys of a range, in token order, wrapping
/// ranges included; hints round-trip.
fn scan_and_hints_suite(s: &dyn Storage) {
    use crate::ring::TokenRange;
    let keys: Vec<String> = (0..300).map(|i| format!("key{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        put(s, key, &live(i as i64, "v"));
    }
    let probes = [
        TokenRange::new(
            Token(-1_000_000_000_000_000_000),
            Token(2_000_000_000_000_000_000),
        ),
        TokenRange::new(
            Token(4_000_000_000_000_000_000),
            Token(-4_000_000_000_000_000_000),
        ),
        TokenRange::new(Token(7), Token(7)),
        TokenRange::new(Token::MAX, Token(0)),
    ];
    for range in probes {
        let mut seen = Vec::new();
        s.scan(range, &mut |token, key, cell| {
            assert!(CellView::decode(cell).is_ok());
            assert_eq!(token, Token::of(key));
            seen.push((token, key.to_vec()));
        })
        .expect("scan");
        let mut expected: Vec<(Token, Vec<u8>)> = keys
            .iter()
            .map(|k| (Token::of(k.as_bytes()), k.as_bytes().to_vec()))
            .filter(|(t, _)| range.contains(*t))
            .collect();
        // A wrapping scan goes top piece first, then bottom piece.
        expected.sort_by_key(|(t, k)| (*t <= range.end && range.start >= range.end, *t, k.clone()));
        assert_eq!(seen, expected, "{range}");
    }

    s.hint_put(b"b/2", b"two").expect("hint");
    s.hint_put(b"a/1", b"one").expect("hint");
    s.hint_put(b"b/1", b"one").expect("hint");
    let b = s
        .hint_scan(b"b/", b"b0", BatchLimit::entries(10))
        .expect("scan");
    assert_eq!(
        b,
        vec![
            (b"b/1".to_vec(), b"one".to_vec()),
            (b"b/2".to_vec(), b"two".to_vec())
        ]
    );
    assert_eq!(
        s.hint_scan(b"b/", b"b0", BatchLimit::entries(1))
            .expect("scan")
            .len(),
        1
    );
    // Bounded by bytes too: 6 bytes admit one entry of 6, and the first
    // entry goes even when it alone is over the bound.
    let bytes = |n| BatchLimit {
        entries: 10,
        bytes: n,
    };
    assert_eq!(s.hint_scan(b"b/", b"b0", bytes(6)).expect("scan").len(), 1);
    assert_eq!(s.hint_scan(b"b/", b"b0", bytes(12)).expect("scan").len(), 2);
    assert_eq!(s.hint_scan(b"b/", b"b0", bytes(1)).expect("scan").len(), 1);
    s.hint_delete(&[b"b/1".to_vec()]).expect("delete");
    assert_eq!(
        s.hint_scan(b"", b"z", BatchLimit::entries(10))
            .expect("scan")
            .len(),
        2
    );
}

/// Paging through a range returns exactly what one scan does, in the same
/// order, in pages the limit bounds; a cursor outside the range is an
/// error. Deleting a range removes its keys and only those.
fn paging_and_range_delete_suite(s: &dyn Storage) {
    use crate::ring::TokenRange;
    let keys: Vec<String> = (0..400).map(|i| format!("key{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        put(s, key, &live(i as i64, "value"));
    }
    let probes = [
        TokenRange::new(
            Token(-3_000_000_000_000_000_000),
            Token(5_000_000_000_000_000_000),
        ),
        TokenRange::new(
            Token(6_000_000_000_000_000_000),
            Token(-6_000_000_000_000_000_000),
        ),
        TokenRange::new(Token(7), Token(7)),
    ];
    for range in probes {
        let mut scanned = Vec::new();
        s.scan(range, &mut |_, key, cell| {
            scanned.push((key.to_vec(), cell.to_vec()))
        })
        .expect("scan");
        let mut paged = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        let limit = BatchLimit::entries(37);
        loop {
            let page = s.scan_page(range, after.as_deref(), limit).expect("page");
            assert!(page.entries.len() <= 37);
            after = page.entries.last().map(|(k, _)| k.clone());
            paged.extend(page.entries);
            if !page.more {
                break;
            }
        }
        assert_eq!(paged, scanned, "{range}");
    }
    let narrow = TokenRange::new(Token(0), Token(10));
    let outside = keys
        .iter()
        .find(|k| !narrow.contains(Token::of(k.as_bytes())))
        .expect("a key outside");
    assert!(
        s.scan_page(narrow, Some(outside.as_bytes()), BatchLimit::default())
            .is_err()
    );

    let doomed = probes[1];
    let deleted = s.delete_range(doomed).expect("delete");
    let expected = keys
        .iter()
        .filter(|k| doomed.contains(Token::of(k.as_bytes())))
        .count();
    assert_eq!(deleted.keys as usize, expected);
    assert!(deleted.bytes > 0);
    for key in &keys {
        let gone = get(s, key).is_none();
        assert_eq!(gone, doomed.contains(Token::of(key.as_bytes())), "{key}");
    }
}

/// A conditional range delete deletes nothing when its condition says no,
/// and never a write that arrives once the condition has been asked, even
/// while the delete is still deciding.
///
/// Regression: cleanup decided a range was not this node's, then scanned
/// it and wrote its range deletes; a row that a topology change started
/// meanwhile streamed in between was deleted with the rest.
fn conditional_delete_suite(s: std::sync::Arc<dyn Storage>) {
    use crate::ring::TokenRange;
    use std::sync::mpsc;
    let doomed = TokenRange::new(
        Token(6_000_000_000_000_000_000),
        Token(-6_000_000_000_000_000_000),
    );
    let inside = |prefix: &str| {
        (0..)
            .map(|i| format!("{prefix}{i}"))
            .find(|k| doomed.contains(Token::of(k.as_bytes())))
            .expect("a key in the range")
    };
    let (old, late) = (inside("old"), inside("late"));
    put(s.as_ref(), &old, &live(1, "old"));

    assert_eq!(s.delete_range_if(doomed, &|| false).expect("delete"), None);
    assert!(get(s.as_ref(), &old).is_some(), "refused: nothing deleted");

    let (asked, wait) = mpsc::channel();
    let writer = {
        let s = s.clone();
        let late = late.clone();
        std::thread::spawn(move || {
            wait.recv().expect("asked");
            put(s.as_ref(), &late, &live(2, "late"));
        })
    };
    let deleted = s
        .delete_range_if(doomed, &|| {
            asked.send(()).expect("writer waits");
            // The writer runs now; the delete still has to be written.
            std::thread::sleep(std::time::Duration::from_millis(200));
            true
        })
        .expect("delete")
        .expect("decided to delete");
    writer.join().expect("writer");
    assert_eq!(deleted.keys, 1, "only what was there when it decided");
    assert_eq!(get(s.as_ref(), &old), None);
    assert_eq!(
        get(s.as_ref(), &late),
        Some(live(2, "late")),
        "a write that arrived after the decision survives the delete"
    );
}

fn rocks(dir: &tempfile::TempDir, gc_grace_seconds: u64) -> RocksStorage {
    let config = RocksConfig {
        gc_grace_seconds,
        ..RocksConfig::default()
    };
    RocksStorage::open(dir.path(), &config).expect("open rocksdb")
}

#[test]
fn memory_engine_behaves() {
    suite(&MemoryStorage::default());
    scan_and_hints_suite(&MemoryStorage::default());
    paging_and_range_delete_suite(&MemoryStorage::default());
    compaction_suite(&MemoryStorage::new(0));
    compaction_keeps_recent_tombstones(&MemoryStorage::new(3600));
    conditional_delete_suite(std::sync::Arc::new(MemoryStorage::default()));
}

#[test]
fn rocksdb_engine_behaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    suite(&rocks(&dir, 3600));
    let dir = tempfile::tempdir().expect("tempdir");
    scan_and_hints_suite(&rocks(&dir, 3600));
    let dir = tempfile::tempdir().expect("tempdir");
    paging_and_range_delete_suite(&rocks(&dir, 3600));
    let dir = tempfile::tempdir().expect("tempdir");
    compaction_suite(&rocks(&dir, 0));
    let dir = tempfile::tempdir().expect("tempdir");
    compaction_keeps_recent_tombstones(&rocks(&dir, 3600));
    let dir = tempfile::tempdir().expect("tempdir");
    conditional_delete_suite(std::sync::Arc::new(rocks(&dir, 3600)));
}

#[test]
fn rocksdb_data_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = rocks(&dir, 3600);
        for i in 0..1000 {
            put(&s, &format!("k{i}"), &live(i, "v"));
        }
        put(&s, "k7", &Cell::tombstone(100, wall_clock_seconds()));
        s.meta_put("node_id", b"abc").expect("meta");
    }
    let s = rocks(&dir, 3600);
    for i in 0..1000 {
        let cell = get(&s, &format!("k{i}")).expect("survived");
        assert_eq!(cell.tombstone, i == 7);
    }
    assert_eq!(s.meta_get("node_id").expect("meta"), Some(b"abc".to_vec()));
}

#[test]
fn rocksdb_merges_many_versions_to_the_lww_winner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = rocks(&dir, 3600);
    // Shuffled arrival order; the winner is timestamp 50.
    for ts in [3, 50, 7, 49, 1, 12] {
        put(
            &s,
            "k",
            &Cell::live(ts, Bytes::from(format!("v{ts}")), None),
        );
    }
    assert_eq!(get(&s, "k").map(|c| c.timestamp), Some(50));
    s.compact().expect("compact");
    assert_eq!(get(&s, "k").map(|c| c.timestamp), Some(50));
    put(&s, "k", &Cell::live(40, Bytes::from_static(b"late"), None));
    assert_eq!(get(&s, "k").map(|c| c.timestamp), Some(50));
}

/// The point-read options (memtable Bloom filter, block hash index)
/// change how a read finds a key, never what it finds: the whole suite
/// passes with them on (range deletes included), values stay right across
/// compactions into tables and overwrites, and tables written with them
/// read back without them. (RocksDB's row cache is not offered: it refuses
/// `DeleteRange`, which `cleanup` and decommission use.)
#[test]
fn rocksdb_read_path_options_keep_behaviour() {
    let tuned = |dir: &tempfile::TempDir, gc_grace_seconds: u64| {
        let config = RocksConfig {
            gc_grace_seconds,
            memtable_bloom: true,
            block_hash_index: true,
            ..RocksConfig::default()
        };
        RocksStorage::open(dir.path(), &config).expect("open rocksdb")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    suite(&tuned(&dir, 3600));
    let dir = tempfile::tempdir().expect("tempdir");
    scan_and_hints_suite(&tuned(&dir, 3600));
    let dir = tempfile::tempdir().expect("tempdir");
    paging_and_range_delete_suite(&tuned(&dir, 3600));
    let dir = tempfile::tempdir().expect("tempdir");
    compaction_suite(&tuned(&dir, 0));

    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = tuned(&dir, 3600);
        for i in 0..2000 {
            put(&s, &format!("k{i}"), &live(i, "old"));
        }
        s.compact().expect("compact into tables");
        for i in (0..2000).step_by(7) {
            assert_eq!(get(&s, &format!("k{i}")), Some(live(i, "old")));
        }
        assert_eq!(get(&s, "k-missing"), None);
        for i in (0..2000).step_by(7) {
            put(&s, &format!("k{i}"), &live(i + 10_000, "new"));
        }
        for i in (0..2000).step_by(7) {
            assert_eq!(get(&s, &format!("k{i}")), Some(live(i + 10_000, "new")));
        }
        s.compact().expect("compact again");
    }
    let s = rocks(&dir, 3600);
    for i in 0..2000 {
        let expected = if i % 7 == 0 {
            live(i + 10_000, "new")
        } else {
            live(i, "old")
        };
        assert_eq!(get(&s, &format!("k{i}")), Some(expected));
    }
}
