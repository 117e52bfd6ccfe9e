//! Partitions of sorted rows on three nodes: rows beside plain keys,
//! queries in order and reversed with paging, counts, row, range and
//! partition deletes, and queries that merge replicas which disagree
//! (short reads, a deletion only one replica holds, read repair).

use bytes::Bytes;
use futures::TryStreamExt;
use ringkv_client::{Consistency, Query, ReadOptions, Row, WriteOptions};
use ringkv_node::storage::deletions::{Deletion, Deletions};
use ringkv_node::storage::key::{deletions_key, row_key};
use ringkv_proto::internal::v2 as pbi;
use ringkv_tests::TestCluster;

fn sorts(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|row| String::from_utf8_lossy(&row.sort_key).into_owned())
        .collect()
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

#[tokio::test]
async fn rows_queries_counts_and_deletes_on_three_nodes() {
    let cluster = TestCluster::start(3, 3).await.expect("cluster");
    let client = cluster.node(0).client().await;
    let other = cluster.node(2).direct_client().await;

    // Rows of a partition beside the plain key of the same name.
    client.put("device-42", "plain").await.expect("put");
    for i in 0..50 {
        client
            .put_row("device-42", format!("t{i:03}"), format!("reading {i}"))
            .await
            .expect("put row");
    }
    assert_eq!(
        other.get("device-42").await.expect("get").map(|v| v.value),
        Some(Bytes::from("plain"))
    );
    assert_eq!(
        other
            .get_row("device-42", "t007")
            .await
            .expect("get row")
            .map(|v| v.value),
        Some(Bytes::from("reading 7"))
    );
    assert_eq!(other.get_row("device-42", "t999").await.expect("get"), None);

    // Every row, in order (the plain key is the row with the empty sort
    // key), a page of 7 at a time.
    let all: Vec<Row> = other
        .query("device-42", Query::new().limit(7))
        .try_collect()
        .await
        .expect("query");
    assert_eq!(all.len(), 51);
    assert_eq!(all[0].sort_key, Bytes::new());
    assert_eq!(sorts(&all[1..3]), ["t000", "t001"]);
    // The last 5, newest first: one page, and a token that leads nowhere.
    let page = other
        .query_page(
            "device-42",
            &Query::new().limit(5).reverse().from("t"),
            None,
        )
        .await
        .expect("page");
    assert_eq!(sorts(&page.rows), ["t049", "t048", "t047", "t046", "t045"]);
    let next = other
        .query_page(
            "device-42",
            &Query::new().limit(5).reverse().from("t"),
            page.next.clone(),
        )
        .await
        .expect("next page");
    assert_eq!(sorts(&next.rows), ["t044", "t043", "t042", "t041", "t040"]);
    // A range and a prefix.
    let range: Vec<Row> = other
        .query("device-42", Query::new().from("t010").to("t013"))
        .try_collect()
        .await
        .expect("range");
    assert_eq!(sorts(&range), ["t010", "t011", "t012"]);
    let prefixed: Vec<Row> = other
        .query("device-42", Query::new().prefix("t02"))
        .try_collect()
        .await
        .expect("prefix");
    assert_eq!(prefixed.len(), 10);
    let count = other
        .count("device-42", &Query::new().prefix("t0"), 0)
        .await
        .expect("count");
    assert_eq!((count.count, count.truncated), (50, false));
    let capped = other
        .count("device-42", &Query::new(), 20)
        .await
        .expect("count");
    assert_eq!((capped.count, capped.truncated), (20, true));

    // A row delete, a range delete, at QUORUM through one node; read
    // through another.
    client
        .delete_row("device-42", "t000")
        .await
        .expect("delete row");
    let quorum = WriteOptions::default().consistency(Consistency::Quorum);
    client
        .delete_rows_with("device-42", "t010", Some(Bytes::from("t040")), &quorum)
        .await
        .expect("delete range");
    let left: Vec<Row> = other
        .query("device-42", Query::new().from("t"))
        .try_collect()
        .await
        .expect("query");
    assert_eq!(left.len(), 49 - 30);
    assert_eq!(sorts(&left[..2]), ["t001", "t002"]);
    assert_eq!(sorts(&left[9..11]), ["t040", "t041"]);
    assert_eq!(other.get_row("device-42", "t020").await.expect("get"), None);

    // The whole partition: every row and the plain key go; a row written
    // after it stays.
    client
        .delete_partition_with("device-42", &quorum)
        .await
        .expect("delete partition");
    client
        .put_row("device-42", "t500", "after")
        .await
        .expect("put after");
    let after: Vec<Row> = other
        .query("device-42", Query::new())
        .try_collect()
        .await
        .expect("query");
    assert_eq!(sorts(&after), ["t500"]);
    assert_eq!(other.get("device-42").await.expect("get"), None);

    // Bad queries are refused with the reason.
    let error = other
        .query_page("device-42", &Query::new().limit(20_000), None)
        .await
        .expect_err("too many rows");
    assert!(error.to_string().contains("10000"), "{error}");
    let error = other
        .query_page("device-42", &Query::new(), Some(Bytes::from("garbage")))
        .await
        .expect_err("bad token");
    assert!(error.to_string().contains("page token"), "{error}");
}

/// One replica holds newer tombstones for the first 250 of 300 rows and a
/// range deletion the others lack. A query at ALL neither ends early nor
/// returns a deleted row (short reads), and its read repair leaves the
/// other replicas without the deleted rows.
#[tokio::test]
async fn a_query_sees_through_what_only_one_replica_deleted() {
    let cluster = TestCluster::start(3, 3).await.expect("cluster");
    let client = cluster.node(0).client().await;
    let all = WriteOptions::default().consistency(Consistency::All);
    for i in 0..300 {
        client
            .put_row_with("p", format!("r{i:03}"), "v", &all)
            .await
            .expect("put row");
    }
    let lone = cluster.node(1);
    let later = now_micros() + 1_000;
    for i in 0..250 {
        lone.plant(
            &row_key(b"p", format!("r{i:03}").as_bytes()),
            pbi::Cell {
                timestamp_micros: later,
                tombstone: true,
                local_deletion_time: Some(later / 1_000_000),
                expiry_ms_early: 0,
                value: Bytes::new(),
            },
        )
        .await
        .expect("plant tombstone");
    }
    let range = Deletions::of_range(
        Bytes::from("r260"),
        Some(Bytes::from("r270")),
        Deletion {
            timestamp: later,
            deleted_at: later / 1_000_000,
        },
    )
    .to_cell()
    .expect("cell");
    lone.plant(
        &deletions_key(b"p"),
        pbi::Cell {
            timestamp_micros: range.timestamp,
            tombstone: false,
            local_deletion_time: range.local_deletion_time,
            expiry_ms_early: 0,
            value: range.value,
        },
    )
    .await
    .expect("plant deletion");

    let at_all = Query::new().limit(15).consistency(Consistency::All);
    let reader = cluster.node(2).direct_client().await;
    let page = reader
        .query_page("p", &at_all, None)
        .await
        .expect("query at ALL");
    let want: Vec<String> = (250..260)
        .chain(270..275)
        .map(|i| format!("r{i:03}"))
        .collect();
    assert_eq!(sorts(&page.rows), want);
    assert!(page.next.is_some());
    let rest: Vec<Row> = reader
        .query("p", at_all.clone())
        .try_collect()
        .await
        .expect("every page");
    assert_eq!(rest.len(), 40);

    // Read repair wrote the tombstones and the deletion to the others: at
    // ONE, any replica agrees now.
    for node in &cluster.nodes {
        let one = node.direct_client().await;
        let rows: Vec<Row> = one
            .query("p", Query::new().consistency(Consistency::One))
            .try_collect()
            .await
            .expect("query at ONE");
        assert_eq!(rows.len(), 40, "{}", node.name());
        assert_eq!(
            one.get_row_with(
                "p",
                "r265",
                &ReadOptions::default().consistency(Consistency::One)
            )
            .await
            .expect("get"),
            None
        );
        let held = node
            .stored_row(&row_key(b"p", b"r265"))
            .await
            .expect("stored");
        assert!(
            held.is_some_and(|cell| cell.tombstone),
            "{} reads r265 as the deletion's tombstone",
            node.name()
        );
    }
}

/// Partition batches on three nodes: a batch clears a partition and fills
/// it again in one write; a batch of several partitions is one batch per
/// partition, each with its own outcome; a replica that was down gets a
/// whole batch from one hint, with no read or repair to help.
#[tokio::test]
async fn partition_batches_are_whole_on_every_replica_hints_included() {
    let quiet = [
        ("--anti-entropy-interval-ms", "0"),
        ("--read-repair-chance", "0"),
    ];
    let mut cluster = TestCluster::start_with(3, 3, &quiet)
        .await
        .expect("cluster");
    let client = cluster.node(0).client().await;
    for fruit in ["apple", "fig", "pear"] {
        client
            .put_row("cart-7", fruit, "old")
            .await
            .expect("put row");
    }

    let mut batch = ringkv_client::Batch::new();
    batch
        .delete_partition("cart-7")
        .put("cart-7", "pear", "2")
        .put("cart-7", "plum", "5")
        .put("cart-8", "kiwi", "1")
        .put("cart-9", "a", "1")
        .put("cart-9", "a", "2");
    let written = client.batch(&batch).await.expect("batch");
    let outcomes: Vec<(String, usize, bool)> = written
        .iter()
        .map(|p| {
            (
                String::from_utf8_lossy(&p.key).into_owned(),
                p.operations,
                p.result.is_ok(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("cart-7".to_owned(), 3, true),
            ("cart-8".to_owned(), 1, true),
            ("cart-9".to_owned(), 2, false),
        ],
        "each partition on its own; naming a row twice is refused"
    );
    let error = written[2].result.as_ref().expect_err("refused").to_string();
    assert!(error.contains("twice"), "{error}");
    let rows: Vec<Row> = client
        .query("cart-7", Query::new())
        .try_collect()
        .await
        .expect("query");
    assert_eq!(sorts(&rows), ["pear", "plum"], "cleared, then filled");
    assert_eq!(rows[0].value, Bytes::from("2"));
    assert_eq!(
        rows[0].timestamp_micros, rows[1].timestamp_micros,
        "one timestamp"
    );

    // n3 down: the batch goes to n1 and n2 and into one hint for n3.
    cluster.kill_and_wait(2).await.expect("n3 seen down");
    let client = ringkv_tests::client_of(&[cluster.node(0), cluster.node(1)]).await;
    let mut batch = ringkv_client::Batch::new();
    batch.delete_rows("cart-7", "p", Some(Bytes::from("pz")));
    for i in 0..40 {
        batch.put("cart-7", format!("item-{i:02}"), format!("{i}"));
    }
    for p in client.batch(&batch).await.expect("batch") {
        p.result.expect("written at QUORUM with n3 down");
    }
    cluster.node_mut(2).restart().await.expect("restart n3");
    let n3 = cluster.node(2);
    let row = |sort: &str| row_key(b"cart-7", sort.as_bytes());
    let delivered = ringkv_tests::eventually(std::time::Duration::from_secs(60), || async {
        // (A row never written reads as the partition deletion's
        // tombstone: wait for the value.)
        matches!(n3.stored_row(&row("item-39")).await, Ok(Some(c)) if !c.tombstone)
    })
    .await;
    assert!(delivered, "the hint reached n3");
    for i in 0..40 {
        let held = n3
            .stored_row(&row(&format!("item-{i:02}")))
            .await
            .expect("read");
        assert!(held.is_some_and(|c| !c.tombstone), "item-{i:02} on n3");
    }
    for gone in ["pear", "plum"] {
        let held = n3.stored_row(&row(gone)).await.expect("read");
        assert!(held.is_none_or(|c| c.tombstone), "{gone} deleted on n3");
    }
}

/// 64 KiB of bytes that do not compress (the guardrail measures what the
/// table files hold).
fn incompressible(seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The partition-size guardrail on a real node: past
/// `partition_size_warn_mb` writes are counted and logged; past
/// `partition_size_max_mb` row writes to that partition are refused,
/// naming the setting, while deletes of it and writes to other
/// partitions go on.
#[tokio::test]
async fn large_partitions_are_reported_and_past_the_limit_refused() {
    use ringkv_tests::{NodeOptions, TestNode};
    let dir = tempfile::tempdir().expect("tempdir");
    // Small memtables, so the rows reach table files (what is measured).
    let warn = TestNode::start(
        dir.path(),
        NodeOptions::new("warn")
            .arg("--memtable-mb", "4")
            .arg("--partition-size-warn-mb", "1"),
    )
    .await
    .expect("node");
    let client = warn.client().await;
    for i in 0..320u64 {
        client
            .put_row("big", format!("r{i:04}"), incompressible(i))
            .await
            .expect("a large partition is written to, with a warning");
    }
    let counted = warn
        .metric("ringkv_large_partition_writes_total")
        .await
        .expect("metric");
    assert!(counted >= 1.0, "{counted} large-partition writes counted");
    assert!(
        warn.log().contains("writing to a large partition"),
        "{}",
        warn.log()
    );
    drop(warn);

    let dir = tempfile::tempdir().expect("tempdir");
    let limited = TestNode::start(
        dir.path(),
        NodeOptions::new("limited")
            .arg("--memtable-mb", "4")
            .arg("--partition-size-max-mb", "2"),
    )
    .await
    .expect("node");
    let client = limited.client().await;
    let mut refused = None;
    for i in 0..400u64 {
        if let Err(error) = client
            .put_row("big", format!("r{i:04}"), incompressible(i))
            .await
        {
            refused = Some((i, error.to_string()));
            break;
        }
    }
    let (at, error) = refused.expect("refused before 25 MiB");
    assert!(error.contains("partition_size_max_mb"), "{error}");
    assert!(at >= 32, "refused after {at} rows of 64 KiB, under 2 MiB");
    client
        .put_row("small", "r", "v")
        .await
        .expect("other partitions take writes");
    client
        .delete_row("big", "r0000")
        .await
        .expect("deletes of the large partition go through");
    assert!(
        limited
            .metric("ringkv_partition_writes_refused_total")
            .await
            .expect("metric")
            >= 1.0
    );
}
