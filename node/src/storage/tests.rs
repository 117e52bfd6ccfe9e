//! One behaviour suite run against both engines, so the in-memory engine
//! used by unit tests cannot drift from RocksDB.

use bytes::Bytes;

use super::*;
use crate::clock::wall_clock_seconds;
use crate::ring::{Token, TokenRange};

fn live(ts: i64, v: &'static str) -> Cell {
    Cell::live(ts, Bytes::from_static(v.as_bytes()), None)
}

/// Writes the plain key `key` (the row with the empty sort key).
fn put(s: &dyn Storage, key: &str, cell: &Cell) {
    let row = key::plain_key(key.as_bytes());
    s.write(Token::of(key.as_bytes()), &row, cell, false)
        .expect("write");
}

fn get(s: &dyn Storage, key: &str) -> Option<Cell> {
    let row = key::plain_key(key.as_bytes());
    s.read(Token::of(key.as_bytes()), &row).expect("read")
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
            assert_eq!(Some(token), key::partition_token(key));
            seen.push((token, key.to_vec()));
        })
        .expect("scan");
        let mut expected: Vec<(Token, Vec<u8>)> = keys
            .iter()
            .map(|k| (Token::of(k.as_bytes()), key::plain_key(k.as_bytes())))
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
        s.scan_page(
            narrow,
            Some(&key::plain_key(outside.as_bytes())),
            BatchLimit::default()
        )
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

/// Partition and range deletions (see `deletions`): a row they shadow
/// reads as their tombstone and is gone from the store; an older row that
/// arrives later is dropped, a newer one kept; the partition's deletions
/// merge by union; other partitions are untouched.
fn deletions_suite(s: &dyn Storage) {
    use deletions::{Deletion, Deletions};
    let partition = b"device-42";
    let token = Token::of(partition);
    let now = wall_clock_seconds();
    let at = |timestamp| Deletion {
        timestamp,
        deleted_at: now,
    };
    let row = |sort: &str, cell: &Cell| {
        s.write(
            token,
            &key::row_key(partition, sort.as_bytes()),
            cell,
            false,
        )
        .expect("write row");
    };
    let read = |sort: &str| {
        s.read(token, &key::row_key(partition, sort.as_bytes()))
            .expect("read")
    };
    let delete = |deletions: Deletions| {
        let cell = deletions.to_cell().expect("a deletion");
        s.write(token, &key::deletions_key(partition), &cell, false)
            .expect("write deletions");
    };
    let stored_rows = || {
        let mut sorts = Vec::new();
        s.scan(
            TokenRange::new(Token(token.0 - 1), token),
            &mut |_, k, _| {
                if let Some(row) = key::split_row_key(k)
                    && row.partition == partition
                    && row.kind == key::KIND_ROW
                {
                    sorts.push(String::from_utf8_lossy(row.sort).into_owned());
                }
            },
        )
        .expect("scan");
        sorts
    };
    for (i, sort) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        row(sort, &live(10 + i as i64, "v"));
    }
    put(s, "other", &live(1, "x"));

    // [b, d) at 12: b (11) and c (12, a tie goes to the delete) go.
    delete(Deletions::of_range(
        Bytes::from_static(b"b"),
        Some(Bytes::from_static(b"d")),
        at(12),
    ));
    assert_eq!(read("a"), Some(live(10, "v")));
    assert_eq!(read("b"), Some(at(12).tombstone()));
    assert_eq!(read("c"), Some(at(12).tombstone()));
    assert_eq!(read("d"), Some(live(13, "v")), "the end is exclusive");
    assert_eq!(stored_rows(), ["a", "d", "e"]);

    // Older rows arriving later are dropped; a newer one is kept.
    row("b", &live(5, "late"));
    row("c", &Cell::tombstone(3, now));
    assert_eq!(read("b"), Some(at(12).tombstone()));
    assert_eq!(stored_rows(), ["a", "d", "e"]);
    row("b", &live(20, "new"));
    assert_eq!(read("b"), Some(live(20, "new")));

    // The partition at 15: every row up to 15 goes, b (20) stays.
    delete(Deletions::of_partition(at(15)));
    assert_eq!(read("a"), Some(at(15).tombstone()));
    assert_eq!(read("e"), Some(at(15).tombstone()));
    assert_eq!(read("never-written"), Some(at(15).tombstone()));
    assert_eq!(read("b"), Some(live(20, "new")));
    assert_eq!(stored_rows(), ["b"]);

    // The entry holds the union of what reached it, in any order.
    delete(Deletions::of_range(Bytes::from_static(b"x"), None, at(30)));
    delete(Deletions::of_partition(at(14)));
    let held = s
        .read(token, &key::deletions_key(partition))
        .expect("read")
        .expect("stored");
    let held = Deletions::from_cell(&held).expect("decodes");
    assert_eq!(held.partition, Some(at(15)));
    assert_eq!(held.covering(b"y"), Some(at(30)));
    assert_eq!(
        held.ranges.len(),
        1,
        "the range at 12 is under the partition's 15"
    );
    assert_eq!(get(s, "other"), Some(live(1, "x")));

    // Deletions past the entry's byte bound are refused, naming it.
    let wide = Deletions::of_range(
        Bytes::from(vec![b'a'; 600 << 10]),
        Some(Bytes::from(vec![b'b'; 600 << 10])),
        at(40),
    );
    let refused = s
        .write(
            token,
            &key::deletions_key(partition),
            &wide.to_cell().expect("cell"),
            false,
        )
        .expect_err("over the bound");
    assert!(refused.to_string().contains("bytes of them"), "{refused}");

    // Deletions that delete nothing are refused.
    let empty = Cell::live(1, Bytes::from(Deletions::default().encode()), Some(now));
    assert!(
        s.write(token, &key::deletions_key(partition), &empty, false)
            .is_err()
    );
}

/// A write of several cells of one partition is one step: its deletions
/// remove the stored rows they shadow, its own rows (newer than them)
/// stay, a row its deletions or the stored ones shadow is dropped, and
/// cells of two partitions are refused with nothing written.
fn write_all_suite(s: &dyn Storage) {
    use deletions::{Deletion, Deletions};
    let partition = b"cart-7";
    let token = Token::of(partition);
    let now = wall_clock_seconds();
    let row_key = |sort: &str| key::row_key(partition, sort.as_bytes());
    let read = |sort: &str| s.read(token, &row_key(sort)).expect("read");
    for (i, sort) in ["a", "b", "c"].into_iter().enumerate() {
        s.write(token, &row_key(sort), &live(10 + i as i64, "old"), false)
            .expect("write");
    }
    // Clear the partition at 19 and put b and d at 20, in one write; a
    // row at 15 in the same write is under the deletion and goes.
    let clear = Deletions::of_partition(Deletion {
        timestamp: 19,
        deleted_at: now,
    })
    .to_cell()
    .expect("cell");
    let (b, d, late) = (row_key("b"), row_key("d"), row_key("e"));
    let deletions = key::deletions_key(partition);
    let entries: [(&[u8], &Cell); 4] = [
        (&b, &live(20, "new")),
        (&deletions, &clear),
        (&d, &live(20, "new")),
        (&late, &live(15, "shadowed")),
    ];
    s.write_all(token, &entries, false).expect("write all");
    assert_eq!(
        read("a"),
        Some(
            Deletion {
                timestamp: 19,
                deleted_at: now
            }
            .tombstone()
        )
    );
    assert_eq!(read("b"), Some(live(20, "new")));
    assert_eq!(read("d"), Some(live(20, "new")));
    assert_eq!(
        read("e"),
        Some(
            Deletion {
                timestamp: 19,
                deleted_at: now
            }
            .tombstone()
        )
    );
    let page = s
        .query(
            token,
            &RowsQuery {
                partition: Bytes::from_static(partition),
                start: Bytes::new(),
                end: None,
                reverse: false,
                limit: BatchLimit::default(),
            },
        )
        .expect("query");
    let sorts: Vec<_> = page.rows.iter().map(|(sort, _)| sort.clone()).collect();
    assert_eq!(sorts, ["b", "d"], "only the write's own rows are stored");

    // Two partitions in one write: refused, nothing written.
    let other = key::row_key(b"cart-8", b"x");
    let f = row_key("f");
    let mixed: [(&[u8], &Cell); 2] = [(&f, &live(30, "v")), (&other, &live(30, "v"))];
    let refused = s
        .write_all(token, &mixed, false)
        .expect_err("two partitions");
    assert!(refused.to_string().contains("one partition"), "{refused}");
    assert_eq!(
        read("f"),
        Some(
            Deletion {
                timestamp: 19,
                deleted_at: now
            }
            .tombstone()
        )
    );
}

/// Past gc_grace a partition's deletions are purged, and nothing they
/// deleted comes back: the rows went when the deletions were applied.
fn deletions_purge_suite(s: &dyn Storage) {
    use deletions::{Deletion, Deletions};
    let partition = b"p";
    let token = Token::of(partition);
    let long_ago = wall_clock_seconds() - 10;
    s.write(token, &key::row_key(partition, b"r"), &live(1, "v"), false)
        .expect("write");
    let deletions = Deletions::of_partition(Deletion {
        timestamp: 2,
        deleted_at: long_ago,
    });
    s.write(
        token,
        &key::deletions_key(partition),
        &deletions.to_cell().expect("cell"),
        false,
    )
    .expect("delete");
    s.compact().expect("compact");
    assert_eq!(
        s.read(token, &key::deletions_key(partition)).expect("read"),
        None
    );
    assert_eq!(
        s.read(token, &key::row_key(partition, b"r")).expect("read"),
        None
    );
}

/// A query reads one partition's rows in a range, in order or reversed,
/// tombstones included, in pages the limit bounds, with the deletions
/// that overlap the range; nothing of another partition.
fn query_suite(s: &dyn Storage) {
    use deletions::{Deletion, Deletions};
    let partition = Bytes::from_static(b"events");
    let token = Token::of(&partition);
    let sorts: Vec<String> = (0..10).map(|i| format!("t{i:02}")).collect();
    for (i, sort) in sorts.iter().enumerate() {
        let row = key::row_key(&partition, sort.as_bytes());
        s.write(token, &row, &live(10 + i as i64, "v"), false)
            .expect("write");
    }
    let t03 = key::row_key(&partition, b"t03");
    s.write(
        token,
        &t03,
        &Cell::tombstone(100, wall_clock_seconds()),
        false,
    )
    .expect("delete");
    let range = Deletions::of_range(
        Bytes::from_static(b"t07"),
        Some(Bytes::from_static(b"t09")),
        Deletion {
            timestamp: 50,
            deleted_at: wall_clock_seconds(),
        },
    );
    s.write(
        token,
        &key::deletions_key(&partition),
        &range.to_cell().expect("cell"),
        false,
    )
    .expect("delete range");
    // Another partition, and plain keys around.
    put(s, "events", &live(1, "plain"));
    s.write(
        Token::of(b"other"),
        &key::row_key(b"other", b"t05"),
        &live(1, "x"),
        false,
    )
    .expect("write");

    let query = |start: &str, end: Option<&str>, reverse: bool, entries: usize| {
        s.query(
            token,
            &RowsQuery {
                partition: partition.clone(),
                start: Bytes::copy_from_slice(start.as_bytes()),
                end: end.map(|e| Bytes::copy_from_slice(e.as_bytes())),
                reverse,
                limit: BatchLimit::entries(entries),
            },
        )
        .expect("query")
    };
    let sorts_of = |page: &RowsPage| -> Vec<String> {
        page.rows
            .iter()
            .map(|(sort, _)| String::from_utf8_lossy(sort).into_owned())
            .collect()
    };
    let all = query("", None, false, 100);
    // The plain key `events` is the partition's row with the empty sort key.
    assert_eq!(
        sorts_of(&all),
        ["", "t00", "t01", "t02", "t03", "t04", "t05", "t06", "t09"]
    );
    assert!(!all.more);
    assert!(all.rows[4].1.tombstone, "tombstones come back");
    assert_eq!(all.deletions, Some(range.clone()));
    let reversed = query("t02", Some("t06"), true, 100);
    assert_eq!(sorts_of(&reversed), ["t05", "t04", "t03", "t02"]);
    assert_eq!(reversed.deletions, None, "the range deletion is elsewhere");
    let first = query("t01", None, false, 3);
    assert_eq!(sorts_of(&first), ["t01", "t02", "t03"]);
    assert!(first.more);
    let last = query("", None, true, 2);
    assert_eq!(sorts_of(&last), ["t09", "t06"]);
    assert!(last.more);
    assert!(query("t10", None, false, 10).rows.is_empty());
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
    deletions_suite(&MemoryStorage::default());
    deletions_purge_suite(&MemoryStorage::new(0));
    query_suite(&MemoryStorage::default());
    write_all_suite(&MemoryStorage::default());
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
    let dir = tempfile::tempdir().expect("tempdir");
    deletions_suite(&rocks(&dir, 3600));
    let dir = tempfile::tempdir().expect("tempdir");
    deletions_purge_suite(&rocks(&dir, 0));
    let dir = tempfile::tempdir().expect("tempdir");
    query_suite(&rocks(&dir, 3600));
    let dir = tempfile::tempdir().expect("tempdir");
    write_all_suite(&rocks(&dir, 3600));
}

/// A directory of storage format 1 (cells keyed by plain key in `data`)
/// is moved to format 2 on `upgrade_format`, cell for cell, merge operands
/// folded; a move interrupted half-way (some cells already in `rows`)
/// finishes on the next; the old family is gone afterwards.
#[test]
fn rocksdb_upgrades_format_1_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys: Vec<String> = (0..25_000).map(|i| format!("user{i}")).collect();
    {
        // What the release of format 1 wrote: its `data` family, merges.
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let mut data = rocksdb::Options::default();
        data.set_merge_operator_associative("ringkv.lww.v1", |_, existing, operands| {
            let mut best: Option<Vec<u8>> = existing.map(<[u8]>::to_vec);
            for op in operands {
                let newer = best.as_deref().is_none_or(|b| {
                    CellView::decode(op).ok().map(|c| c.timestamp)
                        > CellView::decode(b).ok().map(|c| c.timestamp)
                });
                if newer {
                    best = Some(op.to_vec());
                }
            }
            best
        });
        let db = rocksdb::DB::open_cf_descriptors(
            &opts,
            dir.path(),
            vec![
                rocksdb::ColumnFamilyDescriptor::new("data", data),
                rocksdb::ColumnFamilyDescriptor::new("rows", rocksdb::Options::default()),
                rocksdb::ColumnFamilyDescriptor::new("meta", rocksdb::Options::default()),
            ],
        )
        .expect("open as format 1");
        let (data, rows) = (
            db.cf_handle("data").expect("data"),
            db.cf_handle("rows").expect("rows"),
        );
        for (i, k) in keys.iter().enumerate() {
            let token = Token::of(k.as_bytes());
            let old = key::data_key(token, k.as_bytes());
            if i % 10 == 0 {
                // Already moved by an interrupted upgrade.
                let new = key::data_key(token, &key::plain_key(k.as_bytes()));
                db.put_cf(rows, new, live(i as i64, "v").encode())
                    .expect("put");
            } else {
                db.merge_cf(data, &old, live(1, "old").encode())
                    .expect("merge");
                db.merge_cf(data, &old, live(i as i64 + 2, "v").encode())
                    .expect("merge");
            }
        }
        // A plain key whose bytes look like a format 2 deletions entry's
        // (regression: the old family merged it as deletions, failed, and
        // the upgrade stopped on "corruption").
        let shaped = key::data_key(Token::of(b"\x03abc\x00"), b"\x03abc\x00");
        for ts in [4, 5] {
            db.merge_cf(data, &shaped, live(ts, "odd").encode())
                .expect("merge");
        }
    }
    let s = rocks(&dir, 3600);
    let moved = s.upgrade_format().expect("upgrade");
    assert_eq!(moved, 22_501);
    assert_eq!(get(&s, "\x03abc\x00"), Some(live(5, "odd")));
    for (i, k) in keys.iter().enumerate() {
        let want = if i % 10 == 0 { i as i64 } else { i as i64 + 2 };
        assert_eq!(get(&s, k).map(|c| c.timestamp), Some(want), "{k}");
    }
    assert_eq!(s.upgrade_format().expect("again"), 0);
    drop(s);
    let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).expect("list");
    assert!(!families.iter().any(|f| f == "data"), "{families:?}");
    let s = rocks(&dir, 3600);
    assert_eq!(get(&s, "user7").map(|c| c.timestamp), Some(9));
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
