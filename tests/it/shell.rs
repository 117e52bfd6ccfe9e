//! The `ringkv` shell against a real node: one-shot commands, JSON, exit
//! statuses, bad input, and the interactive prompt fed through stdin.

use std::io::Write;
use std::process::{Output, Stdio};

use bytes::Bytes;
use ringkv_tests::{NodeOptions, TestNode, binary, ringkv_cli};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr)
        .trim_end()
        .to_owned()
}

fn assert_ok(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", stderr(output));
    stdout(output)
}

/// Fails with status 1 and exactly one line on stderr containing `needle`.
fn assert_fails_with(output: &Output, needle: &str) {
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {} stderr: {}",
        stdout(output),
        stderr(output)
    );
    let err = stderr(output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
}

#[tokio::test]
async fn one_shot_put_get_del() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = TestNode::start(dir.path(), NodeOptions::new("n1"))
        .await
        .expect("node");

    assert_eq!(assert_ok(&n.cli(&["put", "greeting", "hello world"])), "OK");
    assert_eq!(assert_ok(&n.cli(&["get", "greeting"])), "hello world");
    assert_eq!(
        assert_ok(&n.cli(&["--consistency", "one", "get", "greeting"])),
        "hello world"
    );
    assert_eq!(assert_ok(&n.cli(&["del", "greeting"])), "OK");
    assert_eq!(assert_ok(&n.cli(&["get", "greeting"])), "(not found)");

    // JSON for scripts.
    let written: serde_json::Value = serde_json::from_str(&assert_ok(
        &n.cli(&["--json", "put", "k", "v", "--ttl", "600"]),
    ))
    .expect("json");
    assert_eq!(written["written"], true);
    let read: serde_json::Value =
        serde_json::from_str(&assert_ok(&n.cli(&["--json", "get", "k"]))).expect("json");
    assert_eq!(read["found"], true);
    assert_eq!(read["value"], "v");
    assert_eq!(read["timestamp_micros"], written["timestamp_micros"]);
    assert!(read["expires_at"].as_i64().is_some());
    let missing: serde_json::Value =
        serde_json::from_str(&assert_ok(&n.cli(&["--json", "get", "nope"]))).expect("json");
    assert_eq!(missing["found"], false);

    // Values that are not UTF-8 print as hex.
    let client = n.client().await;
    client
        .put("bin", Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]))
        .await
        .expect("put");
    assert_eq!(assert_ok(&n.cli(&["get", "bin"])), "0xdeadbeef");

    // Falls back to the next --host when the first is down.
    let dead = format!("127.0.0.1:{}", ringkv_tests::free_port());
    let output = ringkv_cli(&[&dead, &n.client_addr.to_string()], &["get", "k"]);
    assert_eq!(assert_ok(&output), "v");
}

#[tokio::test]
async fn one_shot_bad_input_fails_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = TestNode::start(
        dir.path(),
        NodeOptions::new("n1").arg("--max-value-size", "1024"),
    )
    .await
    .expect("node");
    n.cli(&["put", "k", "kept"]);

    assert_fails_with(&n.cli(&["put", "", "v"]), "key is empty");
    let long_key = "k".repeat(64 * 1024 + 1);
    assert_fails_with(&n.cli(&["put", &long_key, "v"]), "limit is 65536 bytes");
    let big_value = "v".repeat(1025);
    assert_fails_with(&n.cli(&["put", "k", &big_value]), "max_value_size = 1024");
    assert_fails_with(&n.cli(&["--consistency", "ANY", "get", "k"]), "ANY");
    assert_fails_with(
        &n.cli(&["--consistency", "TWO", "put", "k", "v"]),
        "required 2",
    );

    // Unknown level: a usage error, status 2.
    let output = n.cli(&["--consistency", "MOST", "get", "k"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("MOST"));

    // Nothing stored was touched, and the node still serves.
    assert_eq!(assert_ok(&n.cli(&["get", "k"])), "kept");

    // No node at all.
    let dead = format!("127.0.0.1:{}", ringkv_tests::free_port());
    assert_fails_with(&ringkv_cli(&[&dead], &["get", "k"]), "cannot connect");
}

/// Runs the interactive shell against `node`, typing `script`; its output,
/// once it exited successfully.
fn at_the_prompt(node: &TestNode, history: &std::path::Path, script: &str) -> String {
    let mut child = std::process::Command::new(binary("ringkv"))
        .arg("--host")
        .arg(node.client_addr.to_string())
        .env("RINGKV_HISTORY", history)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shell");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write script");
    let output = child.wait_with_output().expect("shell exits");
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

#[tokio::test]
async fn interactive_prompt_reads_commands_from_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = TestNode::start(dir.path(), NodeOptions::new("n1"))
        .await
        .expect("node");
    let history = dir.path().join("history");
    let script = "PUT fruit apple\nget fruit\nCONSISTENCY\nconsistency all\n\
                  PUT \"two words\" 'a b c'\nGET \"two words\"\nCONSISTENCY any\nGET fruit\n\
                  bogus\nDEL fruit\nconsistency one\nGET fruit\nHELP\nEXIT\n";
    let out = at_the_prompt(&n, &history, script);
    for expected in [
        "Consistency QUORUM",
        "apple",
        "Current consistency level is QUORUM.",
        "Consistency level set to ALL.",
        "a b c",
        "Consistency level set to ANY.",
        "error: invalid argument: consistency level ANY is for writes only",
        "unrecognized subcommand 'bogus'",
        "(not found)",
        "CONSISTENCY [<level>]",
    ] {
        assert!(
            out.contains(expected),
            "prompt output lacks {expected:?}:\n{out}"
        );
    }
    // The fruit was deleted at ANY, which a single node satisfies itself.
    assert_eq!(n.client().await.get("fruit").await.expect("get"), None);
    let saved = std::fs::read_to_string(&history).expect("history file written");
    assert!(saved.contains("PUT fruit apple"), "{saved}");
}

/// Regression (hardening item 11): `ringkv get k | head -c 20` panicked
/// with a backtrace when `head` closed the pipe. A closed stdout ends the
/// shell quietly.
#[tokio::test]
async fn a_closed_stdout_ends_the_shell_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = TestNode::start(dir.path(), NodeOptions::new("n1"))
        .await
        .expect("node");
    assert_eq!(assert_ok(&n.cli(&["put", "k", &"x".repeat(1000)])), "OK");
    for args in [&["get", "k"][..], &["status"], &["--json", "ring"]] {
        let mut child = std::process::Command::new(binary("ringkv"))
            .arg("--host")
            .arg(n.client_addr.to_string())
            .args(args)
            .env_remove("RINGKV_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ringkv");
        // Close the read end before the shell writes: its write fails with
        // EPIPE, as when `head` has read enough and exited.
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("wait");
        let err = stderr(&output);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} printed {err:?}");
        assert!(output.status.success(), "{args:?}: {:?}", output.status);
    }
}

/// A QUORUM read through a stale replica, traced: the trace shows the
/// replicas asked (data from the coordinator itself, a digest from
/// another), the digest mismatch, the full read, and the read repair that
/// wrote the newer cell to the stale replica; the next read needs none.
#[tokio::test]
async fn tracing_shows_the_digest_mismatch_and_the_read_repair_of_a_stale_replica() {
    // Without hints, a replica that was down stays stale until repaired.
    let mut cluster =
        ringkv_tests::TestCluster::start_with(3, 3, &[("--hinted-handoff-enabled", "false")])
            .await
            .expect("cluster");
    // A key n3 is the primary replica of: the shell sends its request
    // there, and n3 reads its own (stale) copy first and a digest from one
    // of the others.
    let key = (0..1000)
        .map(|i| format!("k{i}"))
        .find(|key| {
            let endpoints = json_of(&cluster.node(2).cli(&["--json", "getendpoints", key]));
            endpoints["replicas"][0]["name"] == "n3"
        })
        .expect("a key whose primary replica is n3");
    let key = key.as_str();
    let at = |level: &'static str| ["--consistency", level];
    assert_ok(
        &cluster
            .node(0)
            .cli(&[&at("all")[..], &["put", key, "old"]].concat()),
    );
    cluster.kill_and_wait(2).await.expect("kill n3");
    assert_ok(
        &cluster
            .node(0)
            .cli(&[&at("quorum")[..], &["put", key, "new"]].concat()),
    );
    cluster.restart_and_wait(2).await.expect("restart n3");

    let n3 = cluster.node(2);
    let out = assert_ok(&n3.cli(&["--consistency", "quorum", "--trace", "get", key]));
    println!("{out}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("new"), "{out}");
    assert!(out.contains("Tracing session: coordinator n3"), "{out}");
    // A step: a trace row whose node column is `node` and whose activity
    // starts with `activity`.
    let step = |out: &str, node: &str, activity: &str| {
        out.lines().any(|line| {
            let mut columns = line.split_whitespace();
            let (_elapsed, shown) = (columns.next(), columns.next());
            shown == Some(node) && columns.collect::<Vec<_>>().join(" ").starts_with(activity)
        })
    };
    for (node, activity) in [
        ("n3", "reading at QUORUM"),
        ("n3", "asked for data"),
        ("n3", "answered with data (timestamp"),
        (
            "n3",
            "digest mismatch: reading data from the replicas that sent digests",
        ),
        ("n3", "resolved to timestamp"),
        ("n3", "read repair: writing the newest cell"),
        ("n3", "read repair acknowledged in"),
        ("n3", "answered the client"),
    ] {
        assert!(
            step(&out, node, activity),
            "the trace lacks {node} {activity:?}:\n{out}"
        );
    }
    // The other replica asked: for a digest first, then for its data.
    let other = ["n1", "n2"]
        .into_iter()
        .find(|n| step(&out, n, "asked for a digest"))
        .unwrap_or_else(|| panic!("no digest asked of n1 or n2:\n{out}"));
    assert!(step(&out, other, "answered with a digest in"), "{out}");
    assert!(step(&out, other, "asked for data"), "{out}");
    assert!(
        out.contains("read repair writes it to 1 stale replicas"),
        "{out}"
    );

    // Repaired: the same read now agrees, and says so.
    let out = assert_ok(&n3.cli(&["--consistency", "quorum", "--trace", "get", key]));
    assert!(
        out.contains("digests match the data: no repair needed"),
        "{out}"
    );
    assert!(!out.contains("digest mismatch"), "{out}");

    // Writes are traced too, and JSON carries the trace for scripts.
    let out = assert_ok(&n3.cli(&["--json", "--trace", "--consistency", "all", "put", key, "v"]));
    let written: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let events = written["trace"]["events"].as_array().expect("events");
    let acknowledged = events
        .iter()
        .filter(|e| {
            e["activity"]
                .as_str()
                .is_some_and(|a| a.starts_with("acknowledged in"))
        })
        .count();
    assert_eq!(acknowledged, 3, "every replica acknowledges at ALL: {out}");
    assert_eq!(written["trace"]["coordinator"], "n3");

    // A failed request still shows its trace: ALL with a replica down.
    cluster.kill_and_wait(1).await.expect("kill n2");
    let failed = cluster
        .node(2)
        .cli(&["--consistency", "all", "--trace", "get", key]);
    assert_eq!(failed.status.code(), Some(1));
    let out = stdout(&failed);
    assert!(out.contains("Tracing session: coordinator n"), "{out}");
    assert!(
        out.contains("not sent: not enough live replicas: required 3, alive 2"),
        "{out}"
    );
}

#[tokio::test]
async fn tracing_on_at_the_prompt_traces_each_request_until_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = TestNode::start(dir.path(), NodeOptions::new("n1"))
        .await
        .expect("node");
    let script = "TRACING\nTRACING ON\nPUT a 1\nGET a\nTRACING OFF\nGET a\nEXIT\n";
    let out = at_the_prompt(&n, &dir.path().join("history"), script);
    assert!(out.contains("Tracing is off."), "{out}");
    assert!(out.contains("Now tracing requests."), "{out}");
    assert!(out.contains("Disabled tracing."), "{out}");
    // The PUT and the first GET are traced; the last GET is not.
    assert_eq!(
        out.matches("Tracing session: coordinator n1").count(),
        2,
        "{out}"
    );
    assert!(
        out.contains("1 acknowledgements: the write is done"),
        "{out}"
    );
}

fn json_of(output: &Output) -> serde_json::Value {
    serde_json::from_str(&assert_ok(output)).expect("JSON")
}

/// The nodetool-like commands against a 3-node cluster with a node down:
/// `hints` shows what is held for it, `tpstats`, `compactionstats`, `info`
/// and `describecluster` show the node and the cluster, in text and JSON.
#[tokio::test]
async fn nodetool_commands_show_hints_pools_storage_and_the_cluster() {
    let mut cluster = ringkv_tests::TestCluster::start(3, 3)
        .await
        .expect("cluster");
    cluster.kill_and_wait(2).await.expect("kill n3");
    let n1 = cluster.node(0);
    for i in 0..20 {
        assert_ok(&n1.cli(&["--consistency", "one", "put", &format!("k{i}"), "v"]));
    }

    // Every write missed n3: its coordinators (token-aware routing spreads
    // them over n1 and n2) hold hints for it.
    let mut total = 0;
    let mut holder = None;
    for node in [cluster.node(0), cluster.node(1)] {
        let hints = json_of(&node.cli(&["--json", "hints"]));
        for held in hints["hints"].as_array().expect("hints") {
            assert_eq!(held["node_name"], "n3", "{hints}");
            assert_eq!(held["up"], false, "{hints}");
            total += held["bytes"].as_u64().unwrap_or(0);
            holder = Some(node);
        }
    }
    assert!(total > 20 * 10, "hints for 20 writes: {total} bytes");
    let holder = holder.expect("a node holds hints");
    let text = assert_ok(&holder.cli(&["hints"]));
    assert!(text.contains("n3") && text.contains("DOWN"), "{text}");
    let info = json_of(&holder.cli(&["--json", "info"]));
    assert!(info["hints_bytes"].as_u64().unwrap_or(0) > 0, "{info}");
    let pools = json_of(&holder.cli(&["--json", "tpstats"]));
    let pending = pools["pools"].as_array().and_then(|p| {
        p.iter()
            .find(|p| p["name"] == "hint replay (targets)")
            .cloned()
    });
    assert_eq!(
        pending.map(|p| p["pending"].clone()),
        Some(serde_json::json!(1)),
        "n3 is down: {pools}"
    );

    let pools = json_of(&n1.cli(&["--json", "tpstats"]));
    let pool = |name: &str| {
        pools["pools"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no pool {name}: {pools}"))
    };
    // The tpstats request itself is the client request in flight.
    assert_eq!(pool("client requests")["limit"], 1024);
    assert_eq!(pool("client requests")["refused"], 0);
    assert_eq!(pool("internode requests")["limit"], 4096);
    assert_eq!(pool("repair (ranges)")["active"], 0);
    let text = assert_ok(&n1.cli(&["tpstats"]));
    assert!(text.starts_with("Pool"), "{text}");
    assert!(text.contains("internode requests"), "{text}");
    assert!(text.contains("\nWorker "), "{text}");

    // The named workers: gossip runs; the hint replay worker of the node
    // holding hints says for whom, and the console's running work shows
    // the same line.
    let tpstats = json_of(&holder.cli(&["--json", "tpstats"]));
    let worker = |name: &str| {
        tpstats["workers"]
            .as_array()
            .and_then(|w| w.iter().find(|w| w["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no worker {name}: {tpstats}"))
    };
    assert_eq!(worker("gossip")["state"], "running", "{tpstats}");
    assert_eq!(worker("gossip")["running"], 1, "{tpstats}");
    assert_eq!(worker("hint replay")["running"], 1, "{tpstats}");
    let said: Vec<String> = worker("hint replay")["status"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        said.len() == 1
            && said[0].starts_with("hints for n3: ")
            && said[0].ends_with(" bytes (waiting: the node is down)"),
        "{tpstats}"
    );
    let (code, cluster_json) = holder
        .http_get("/console/api/cluster")
        .await
        .expect("console API");
    assert_eq!(code, 200, "{cluster_json}");
    let console: serde_json::Value = serde_json::from_str(&cluster_json).expect("JSON");
    let work: Vec<&str> = console["work"]
        .as_array()
        .map(|w| w.iter().filter_map(|l| l.as_str()).collect())
        .unwrap_or_default();
    assert!(
        work.iter().any(|line| line.starts_with("hints for n3: ")),
        "{cluster_json}"
    );

    let storage = json_of(&n1.cli(&["--json", "compactionstats"]));
    assert!(
        storage["memtable_bytes"].as_u64().unwrap_or(0) > 0,
        "{storage}"
    );
    assert!(
        storage["disk_total_bytes"].as_u64().unwrap_or(0)
            > storage["disk_free_bytes"].as_u64().unwrap_or(u64::MAX),
        "{storage}"
    );
    assert!(assert_ok(&n1.cli(&["compactionstats"])).contains("pending compaction:"));

    let info = json_of(&n1.cli(&["--json", "info"]));
    assert_eq!(info["node_name"], "n1");
    assert!(
        info["rss_bytes"].as_u64().unwrap_or(0) > 1_000_000,
        "{info}"
    );
    assert!(info["generation"].as_u64().unwrap_or(0) > 0, "{info}");
    assert!(info["open_fds"].as_u64().unwrap_or(0) > 3, "{info}");
    let text = assert_ok(&n1.cli(&["info"]));
    for line in [
        "generation:",
        "load:",
        "memory (RSS):",
        "file descriptors:",
        "repair:",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }

    let described = json_of(&n1.cli(&["--json", "describecluster"]));
    assert_eq!(described["replication_factor"], 3);
    let versions = described["versions"].as_object().expect("versions");
    assert_eq!(versions.len(), 1, "one version: {described}");
    assert_eq!(
        versions.values().next().cloned(),
        Some(serde_json::json!(["n1", "n2", "n3"]))
    );
    let settings = described["settings"].as_object().expect("settings");
    assert_eq!(settings.len(), 1, "{described}");
    assert!(
        settings.keys().all(|s| s.contains("replication_factor=3")),
        "{described}"
    );
    assert_eq!(described["down"], serde_json::json!(["n3"]));
    let text = assert_ok(&n1.cli(&["describecluster"]));
    assert!(text.starts_with("Cluster Information:"), "{text}");
    assert!(text.contains("Down: [n3]"), "{text}");
    assert!(!text.contains("WARNING"), "{text}");
}

/// `batch` from a file and from stdin: one atomic batch per partition,
/// each partition's outcome printed, exit status 1 when one failed, and a
/// line that is not an operation refused before anything is sent.
#[tokio::test]
async fn batch_writes_each_partition_of_a_file_or_stdin_in_one_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = TestNode::start(dir.path(), NodeOptions::new("n1"))
        .await
        .expect("node");
    assert_ok(&n.cli(&["put", "cart-7", "--row", "old", "x"]));
    let file = dir.path().join("cart.txt");
    std::fs::write(
        &file,
        "# a cart, cleared and filled again\n\
         delpartition cart-7\n\
         put cart-7 --row apple 2\n\
         \n\
         put cart-7 --row pear \"1 kg\"\n\
         put cart-8 --row fig 3 --ttl 600\n\
         del cart-8 --row kiwi\n",
    )
    .expect("write file");
    let text = assert_ok(&n.cli(&["batch", file.to_str().expect("path")]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("partition cart-7: 3 operations written"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("partition cart-8: 2 operations written"),
        "{text}"
    );
    let rows = assert_ok(&n.cli(&["--json", "query", "cart-7"]));
    let sorts: Vec<String> = rows
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("json line");
            format!(
                "{}={}",
                row["row"].as_str().unwrap_or("?"),
                row["value"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(sorts, ["apple=2", "pear=1 kg"]);

    // From stdin, with one partition refused: the others are written.
    let mut child = std::process::Command::new(binary("ringkv"))
        .args(["--host", &n.client_addr.to_string(), "--json", "batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shell");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"put a --row r 1\nput b --row r 1\nput b --row r 2\n")
        .expect("write");
    let output = child.wait_with_output().expect("exits");
    assert_fails_with(&output, "1 of 2 partitions of the batch failed");
    let outcomes: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    assert_eq!(outcomes[0]["key"], "a");
    assert!(outcomes[0]["timestamp_micros"].as_i64().is_some());
    assert_eq!(outcomes[1]["key"], "b");
    assert!(
        outcomes[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("twice")),
        "{outcomes:?}"
    );
    assert_eq!(assert_ok(&n.cli(&["get", "a", "--row", "r"])), "1");

    // A line that is not an operation: nothing is sent.
    std::fs::write(&file, "put c --row r 1\nstatus\n").expect("write file");
    let output = n.cli(&["batch", file.to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("line 2"), "{}", stderr(&output));
    assert_eq!(
        assert_ok(&n.cli(&["get", "c", "--row", "r"])),
        "(not found)"
    );
}
