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

#[tokio::test]
async fn interactive_prompt_reads_commands_from_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = TestNode::start(dir.path(), NodeOptions::new("n1"))
        .await
        .expect("node");
    let history = dir.path().join("history");
    let mut child = std::process::Command::new(binary("ringkv"))
        .arg("--host")
        .arg(n.client_addr.to_string())
        .env("RINGKV_HISTORY", &history)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shell");
    let script = "PUT fruit apple\nget fruit\nCONSISTENCY\nconsistency all\n\
                  PUT \"two words\" 'a b c'\nGET \"two words\"\nCONSISTENCY any\nGET fruit\n\
                  bogus\nDEL fruit\nconsistency one\nGET fruit\nHELP\nEXIT\n";
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write script");
    let output = child.wait_with_output().expect("shell exits");
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
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
