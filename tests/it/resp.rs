//! The RESP port with real Redis clients: the `redis` crate, `redis-cli`
//! (scripted, a pipeline, `--pipe` mass insertion), `redis-benchmark`, and
//! raw bytes for what no client sends (pipelines of mixed commands,
//! malformed frames).

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use ringkv_tests::{NodeOptions, TestCluster, TestNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(node: &TestNode) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{}/", node.ports.resp)).expect("url");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("the RESP port answers")
}

/// Runs a command that must succeed.
async fn ok<T: redis::FromRedisValue>(
    con: &mut redis::aio::MultiplexedConnection,
    args: &[&[u8]],
) -> T {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).expect("name"));
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    match cmd.query_async(con).await {
        Ok(value) => value,
        Err(error) => panic!("{:?}: {error}", String::from_utf8_lossy(&args.concat())),
    }
}

/// Runs a command that must fail; its error as "CODE detail".
async fn refused(con: &mut redis::aio::MultiplexedConnection, args: &[&[u8]]) -> String {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).expect("name"));
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    match cmd.query_async::<redis::Value>(con).await {
        Ok(value) => panic!("{:?} answered {value:?}", String::from_utf8_lossy(args[0])),
        Err(error) => format!(
            "{} {}",
            error.code().unwrap_or("?"),
            error.detail().unwrap_or("")
        ),
    }
}

fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "{text:?} should contain {needle:?}");
}

#[tokio::test]
async fn a_redis_client_library_runs_every_command_against_a_three_node_cluster() {
    let mut cluster = TestCluster::start(3, 3).await.expect("cluster");
    let mut a = connect(cluster.node(0)).await;
    let mut c = connect(cluster.node(2)).await;

    // Connection commands.
    assert_eq!(ok::<String>(&mut a, &[b"PING"]).await, "PONG");
    assert_eq!(ok::<String>(&mut a, &[b"PING", b"hi"]).await, "hi");
    assert_eq!(ok::<Vec<u8>>(&mut a, &[b"ECHO", b"a\0b"]).await, b"a\0b");
    assert_eq!(ok::<String>(&mut a, &[b"SELECT", b"0"]).await, "OK");
    assert_contains(&refused(&mut a, &[b"SELECT", b"1"]).await, "out of range");
    assert_eq!(
        ok::<String>(&mut a, &[b"CLIENT", b"SETNAME", b"tester"]).await,
        "OK"
    );
    assert_eq!(
        ok::<String>(&mut a, &[b"CLIENT", b"GETNAME"]).await,
        "tester"
    );
    let id: i64 = ok(&mut a, &[b"CLIENT", b"ID"]).await;
    let info: String = ok(&mut a, &[b"CLIENT", b"INFO"]).await;
    assert_contains(&info, &format!("id={id} "));
    assert_contains(&info, "name=tester");
    let count: i64 = ok(&mut a, &[b"COMMAND", b"COUNT"]).await;
    assert!(count >= 20, "{count}");
    let docs: redis::Value = ok(&mut a, &[b"COMMAND", b"DOCS", b"get"]).await;
    assert!(
        format!("{docs:?}").contains("Returns the string value"),
        "{docs:?}"
    );
    let info: String = ok(&mut a, &[b"INFO"]).await;
    for field in [
        "redis_version:",
        "connected_clients:",
        "total_commands_processed:",
        "nodes_up:3",
        "replication_factor:3",
    ] {
        assert_contains(&info, field);
    }

    // Keys, written through one node and read through another (each node
    // coordinates).
    assert_eq!(ok::<String>(&mut a, &[b"SET", b"k", b"v1"]).await, "OK");
    assert_eq!(
        ok::<Option<String>>(&mut c, &[b"GET", b"k"])
            .await
            .as_deref(),
        Some("v1")
    );
    assert_eq!(
        ok::<Option<String>>(&mut c, &[b"GET", b"missing"]).await,
        None
    );
    assert_eq!(ok::<i64>(&mut c, &[b"STRLEN", b"k"]).await, 2);
    assert_eq!(ok::<i64>(&mut c, &[b"TTL", b"k"]).await, -1);
    assert_eq!(ok::<i64>(&mut c, &[b"PTTL", b"missing"]).await, -2);
    for (args, low, high) in [
        (&[&b"SET"[..], b"ex", b"v", b"EX", b"100"][..], 98, 100),
        (&[b"SET", b"px", b"v", b"PX", b"50500"], 49, 51),
        (&[b"SETEX", b"setex", b"200", b"v"], 198, 200),
        (&[b"PSETEX", b"psetex", b"300000", b"v"], 298, 300),
    ] {
        assert_eq!(ok::<String>(&mut a, args).await, "OK");
        let ttl: i64 = ok(&mut c, &[b"TTL", args[1]]).await;
        assert!((low..=high).contains(&ttl), "{:?}: ttl {ttl}", args[1]);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let at = (now + 1000).to_string();
    assert_eq!(
        ok::<String>(&mut a, &[b"SET", b"exat", b"v", b"EXAT", at.as_bytes()]).await,
        "OK"
    );
    let pttl: i64 = ok(&mut c, &[b"PTTL", b"exat"]).await;
    assert!((990_000..=1_001_000).contains(&pttl), "pttl {pttl}");
    // Milliseconds are kept: PX 1500 lives 1.5 s, not 2 (PTTL counts
    // down from 1500, never above), and is gone after it.
    assert_eq!(
        ok::<String>(&mut a, &[b"SET", b"px-ms", b"v", b"PX", b"1500"]).await,
        "OK"
    );
    let pttl: i64 = ok(&mut c, &[b"PTTL", b"px-ms"]).await;
    assert!((1..=1_500).contains(&pttl), "pttl {pttl}");
    assert!((0..=2).contains(&ok::<i64>(&mut c, &[b"TTL", b"px-ms"]).await));
    assert_eq!(
        ok::<String>(&mut a, &[b"PSETEX", b"psetex-ms", b"700", b"v"]).await,
        "OK"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1_600)).await;
    for key in [&b"px-ms"[..], b"psetex-ms"] {
        assert_eq!(ok::<Option<String>>(&mut c, &[b"GET", key]).await, None);
        assert_eq!(ok::<i64>(&mut c, &[b"PTTL", key]).await, -2);
    }
    // An expiry time in the past deletes the key, as in Redis.
    let past = ((now - 10) * 1000).to_string();
    assert_eq!(
        ok::<String>(&mut a, &[b"SET", b"exat", b"v", b"PXAT", past.as_bytes()]).await,
        "OK"
    );
    assert_eq!(ok::<Option<String>>(&mut c, &[b"GET", b"exat"]).await, None);

    assert_eq!(
        ok::<String>(&mut a, &[b"MSET", b"m1", b"a", b"m2", b"b", b"m3", b"c"]).await,
        "OK"
    );
    let values: Vec<Option<String>> = ok(&mut c, &[b"MGET", b"m1", b"nope", b"m3"]).await;
    assert_eq!(values, vec![Some("a".into()), None, Some("c".into())]);
    assert_eq!(
        ok::<i64>(&mut c, &[b"EXISTS", b"m1", b"m2", b"nope", b"m1"]).await,
        3
    );
    assert_eq!(ok::<i64>(&mut a, &[b"DEL", b"m1", b"m2"]).await, 2);
    assert_eq!(ok::<i64>(&mut a, &[b"UNLINK", b"m3"]).await, 1);
    assert_eq!(
        ok::<i64>(&mut c, &[b"EXISTS", b"m1", b"m2", b"m3"]).await,
        0
    );

    // Binary keys and values are kept byte for byte.
    let key: &[u8] = b"bin\0\r\n\xff key";
    let value: &[u8] = b"\0\x01\r\n\xfe";
    assert_eq!(ok::<String>(&mut a, &[b"SET", key, value]).await, "OK");
    assert_eq!(ok::<Vec<u8>>(&mut c, &[b"GET", key]).await, value);

    // Bad input: clear errors, and the connection goes on.
    assert_contains(
        &refused(&mut a, &[b"GET"]).await,
        "wrong number of arguments for 'get'",
    );
    assert_contains(
        &refused(&mut a, &[b"MSET", b"a", b"b", b"c"]).await,
        "wrong number of arguments",
    );
    assert_contains(
        &refused(&mut a, &[b"FLUSHALL"]).await,
        "unknown command 'FLUSHALL'",
    );
    assert_contains(
        &refused(&mut a, &[b"SET", b"k", b"v", b"EX", b"0"]).await,
        "invalid expire time",
    );
    assert_contains(
        &refused(&mut a, &[b"SET", b"k", b"v", b"EX", b"soon"]).await,
        "not an integer",
    );
    assert_contains(
        &refused(&mut a, &[b"SET", b"k", b"v", b"BOGUS"]).await,
        "syntax error",
    );
    assert_contains(&refused(&mut a, &[b"SET", b"", b"v"]).await, "key is empty");
    assert_contains(
        &refused(&mut a, &[b"GET", b"\0ringkv/user/admin"]).await,
        "reserved",
    );
    let big_key = vec![b'k'; 64 * 1024 + 1];
    assert_contains(
        &refused(&mut a, &[b"SET", &big_key, b"v"]).await,
        "the limit is 65536 bytes",
    );
    let big_value = vec![b'v'; (16 << 20) + 1];
    assert_contains(
        &refused(&mut a, &[b"SET", b"big", &big_value]).await,
        "max_value_size",
    );
    // A command of more keys than the node's in-flight limit (1024).
    let many: Vec<Vec<u8>> = (0..1100).map(|i| format!("many{i}").into_bytes()).collect();
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(many.iter().map(Vec::as_slice));
    assert_contains(
        &refused(&mut a, &mget).await,
        "OVERLOADED one command of 1100 keys",
    );
    // Read-modify-write commands are refused by name, never half done.
    for args in [
        &[&b"INCR"[..], b"n"][..],
        &[b"SET", b"k", b"v", b"NX"],
        &[b"SET", b"k", b"v", b"GET"],
        &[b"GETSET", b"k", b"v"],
        &[b"EXPIRE", b"k", b"10"],
        &[b"APPEND", b"k", b"v"],
        &[b"MULTI"],
    ] {
        assert_contains(&refused(&mut a, args).await, "no compare-and-set");
    }
    assert_eq!(
        ok::<Option<String>>(&mut c, &[b"GET", b"k"])
            .await
            .as_deref(),
        Some("v1")
    );

    // A client that pipelines QUORUM reads of a large value and never
    // takes the replies: its commands (which wait on another replica) still
    // finish and give their in-flight permits back, so the node goes on
    // serving others. (Before, the connection stopped driving its commands
    // while blocked writing, and they held their permits for good.)
    let big = vec![b'x'; 1 << 20];
    assert_eq!(ok::<String>(&mut a, &[b"SET", b"big", &big]).await, "OK");
    let mut hog = TcpStream::connect(cluster.node(0).ports.resp)
        .await
        .expect("connect");
    hog.write_all(&b"GET big\r\n".repeat(300))
        .await
        .expect("write");
    let resp = cluster.node(0).ports.resp;
    let settled = ringkv_tests::eventually(Duration::from_secs(20), || async move {
        let info = raw(resp, b"INFO stats\r\n", b"\r\n\r\n").await;
        String::from_utf8_lossy(&info)
            .lines()
            .any(|line| line.trim() == "requests_in_flight:0")
    })
    .await;
    assert!(settled, "the hog's commands gave their permits back");
    assert_eq!(ok::<String>(&mut a, &[b"SET", b"other", b"v"]).await, "OK");
    drop(hog);

    // Consistency levels per connection, and the typed errors.
    assert_eq!(
        ok::<String>(&mut a, &[b"RINGKV.CONSISTENCY", b"ALL"]).await,
        "OK"
    );
    assert_contains(
        &refused(&mut a, &[b"RINGKV.CONSISTENCY", b"READ", b"ANY"]).await,
        "writes only",
    );
    assert_contains(
        &refused(&mut a, &[b"RINGKV.CONSISTENCY", b"MOST"]).await,
        "unknown consistency level",
    );
    cluster.kill_and_wait(1).await.expect("n2 down");
    let error = refused(&mut a, &[b"SET", b"k", b"v2"]).await;
    assert_eq!(
        error,
        "UNAVAILABLE required 3, alive 2: not enough live replicas"
    );
    let error = refused(&mut a, &[b"MSET", b"x", b"1", b"y", b"2"]).await;
    assert_contains(&error, "UNAVAILABLE MSET met ALL for 0 of 2 keys");
    // QUORUM (the default of a new connection) still works.
    assert_eq!(ok::<String>(&mut c, &[b"SET", b"k", b"v3"]).await, "OK");
    assert_eq!(
        ok::<String>(&mut a, &[b"RINGKV.CONSISTENCY", b"READ", b"QUORUM"]).await,
        "OK"
    );
    assert_eq!(
        ok::<Option<String>>(&mut a, &[b"GET", b"k"])
            .await
            .as_deref(),
        Some("v3")
    );
    let levels: redis::Value = ok(&mut a, &[b"RINGKV.CONSISTENCY"]).await;
    assert!(
        format!("{levels:?}").contains("QUORUM") && format!("{levels:?}").contains("ALL"),
        "{levels:?}"
    );
}

/// Writes `request` on a fresh connection and reads until the answer ends
/// with `until`, the server closes, or 30 s pass.
async fn raw(addr: SocketAddr, request: &[u8], until: &[u8]) -> Vec<u8> {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !answer.ends_with(until) {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    answer
}

#[tokio::test]
async fn pipelines_answer_in_order_resp3_works_and_garbage_closes_only_its_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), NodeOptions::new("n1"))
        .await
        .expect("node");

    // 300 commands in one write, mixed fast (PING) and coordinated (SET,
    // GET): replies come back in the order sent.
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for i in 0..100 {
        request
            .extend_from_slice(format!("SET key{i} value{i}\r\nPING\r\nGET key{i}\r\n").as_bytes());
        expected.extend_from_slice(
            format!(
                "+OK\r\n+PONG\r\n${}\r\nvalue{i}\r\n",
                format!("value{i}").len()
            )
            .as_bytes(),
        );
    }
    request.extend_from_slice(b"ECHO end\r\n");
    expected.extend_from_slice(b"$3\r\nend\r\n");
    let answer = raw(node.ports.resp, &request, b"$3\r\nend\r\n").await;
    assert_eq!(
        String::from_utf8_lossy(&answer),
        String::from_utf8_lossy(&expected)
    );

    // RESP3 after HELLO 3: maps and nulls of their own; the reply to the
    // command before HELLO stays RESP2.
    let answer = raw(
        node.ports.resp,
        b"GET nothing\r\nHELLO 3\r\nGET nothing\r\nRINGKV.CONSISTENCY\r\nECHO end\r\n",
        b"$3\r\nend\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("$-1\r\n%7\r\n$6\r\nserver\r\n$6\r\nringkv\r\n"),
        "{text}"
    );
    assert!(text.contains("$5\r\nproto\r\n:3\r\n"), "{text}");
    assert!(
        text.ends_with(
            "_\r\n%2\r\n$4\r\nread\r\n$6\r\nQUORUM\r\n$5\r\nwrite\r\n$6\r\nQUORUM\r\n$3\r\nend\r\n"
        ),
        "{text}"
    );

    // Malformed frames: a protocol error, then the connection closes.
    for garbage in [
        &b"*2\r\n$3\r\nGET\r\n:12\r\n"[..],
        b"*1\r\n$99999999999\r\n",
        b"*100000000\r\n",
        b"GET \"unbalanced\r\n",
    ] {
        let answer = raw(node.ports.resp, garbage, b"\r\n").await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("-ERR Protocol error"),
            "{garbage:?}: {text}"
        );
    }
    // Half a command and a hang-up.
    let mut socket = TcpStream::connect(node.ports.resp).await.expect("connect");
    socket
        .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc")
        .await
        .expect("write");
    drop(socket);

    // The node kept serving, on both ports.
    let answer = raw(node.ports.resp, b"GET key7\r\n", b"value7\r\n").await;
    assert_eq!(answer, b"$6\r\nvalue7\r\n");
    let client = node.client().await;
    assert_eq!(
        client
            .get("key99")
            .await
            .expect("gRPC get")
            .map(|v| v.value),
        Some(Bytes::from_static(b"value99"))
    );
}

fn tool(name: &str) -> Command {
    ringkv_tests::system_tool(name, "redis-tools")
}

#[tokio::test]
async fn redis_cli_and_redis_benchmark_work_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), NodeOptions::new("n1"))
        .await
        .expect("node");
    let port = node.ports.resp.port().to_string();
    let cli = |args: &[&str]| {
        let output = tool("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(output.status.success(), "{args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned()
    };

    // Scripted commands.
    assert_eq!(cli(&["PING"]), "PONG");
    assert_eq!(cli(&["SET", "greeting", "hello world"]), "OK");
    assert_eq!(cli(&["GET", "greeting"]), "hello world");
    assert_eq!(cli(&["STRLEN", "greeting"]), "11");
    assert_eq!(cli(&["RINGKV.CONSISTENCY", "ONE"]), "OK");
    assert_contains(&cli(&["INCR", "n"]), "no compare-and-set");
    assert_contains(&cli(&["NOSUCH"]), "unknown command");
    assert_contains(&cli(&["INFO", "server"]), "redis_version:");

    // A pipeline of commands on standard input, one connection.
    let mut child = tool("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"SET p1 one\nSET p2 two\nMGET p1 p2 p3\nDEL p1\nEXISTS p1 p2\n")
        .expect("write");
    let output = child.wait_with_output().expect("redis-cli ends");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "OK\nOK\none\ntwo\n\n1\n1\n"
    );

    // Mass insertion with --pipe: 5,000 SETs in the protocol.
    let mut protocol = Vec::new();
    for i in 0..5000 {
        let (key, value) = (format!("mass:{i}"), format!("value:{i}"));
        protocol.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                key.len(),
                value.len()
            )
            .as_bytes(),
        );
    }
    let mut child = tool("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port, "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli --pipe runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&protocol)
        .expect("write");
    let output = child.wait_with_output().expect("redis-cli ends");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert_contains(&text, "errors: 0, replies: 5000");
    assert_eq!(cli(&["GET", "mass:4321"]), "value:4321");
    assert_eq!(cli(&["EXISTS", "mass:0", "mass:2500", "mass:4999"]), "3");

    // redis-benchmark, small counts, pipelined and not.
    for pipeline in ["1", "16"] {
        let output = tool("redis-benchmark")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                "set,get",
                "-n",
                "2000",
                "-c",
                "8",
                "-P",
                pipeline,
                "-d",
                "100",
                "-q",
            ])
            .output()
            .expect("redis-benchmark runs");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{text} {output:?}");
        assert_contains(&text, "SET: ");
        assert_contains(&text, "GET: ");
        assert!(!text.to_lowercase().contains("error"), "{text}");
    }
    assert_eq!(cli(&["STRLEN", "key:__rand_int__"]), "100");
}

#[tokio::test]
async fn with_tls_and_authentication_clients_auth_and_get_what_their_role_allows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    ringkv_tests::make_certs(&certs).expect("certificates");
    let node = TestNode::start(
        dir.path(),
        NodeOptions::new("n1")
            .tls(&certs)
            .authentication("the admin password"),
    )
    .await
    .expect("node");
    node.client()
        .await
        .user_add("reader", "reader password", "read-only")
        .await
        .expect("add reader");
    let port = node.ports.resp.port().to_string();
    let ca = certs.join("ca.pem").to_string_lossy().into_owned();
    let cli = |args: &[&str]| {
        let output = tool("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "--tls",
                "--cacert",
                &ca,
                "--sni",
                "ringkv-node",
            ])
            .args(args)
            .env_remove("REDISCLI_AUTH")
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned()
            + &String::from_utf8_lossy(&output.stderr)
    };
    assert_contains(&cli(&["GET", "k"]), "NOAUTH");
    assert_contains(
        &cli(&[
            "--user",
            "admin",
            "--pass",
            "the admin password",
            "--no-auth-warning",
            "SET",
            "k",
            "v",
        ]),
        "OK",
    );
    assert_contains(
        &cli(&[
            "--user",
            "reader",
            "--pass",
            "reader password",
            "--no-auth-warning",
            "GET",
            "k",
        ]),
        "v",
    );
    assert_contains(
        &cli(&[
            "--user",
            "reader",
            "--pass",
            "reader password",
            "--no-auth-warning",
            "SET",
            "k",
            "x",
        ]),
        "NOPERM",
    );
    assert_contains(
        &cli(&[
            "--user",
            "reader",
            "--pass",
            "wrong",
            "--no-auth-warning",
            "GET",
            "k",
        ]),
        "WRONGPASS",
    );
    // Plain text on the TLS port gets nothing.
    let answer = raw(node.ports.resp, b"PING\r\n", b"PONG\r\n").await;
    assert!(!answer.ends_with(b"PONG\r\n"));
    // RESP3: redis-cli -3 says HELLO 3 after AUTH; the levels come back as
    // a map.
    let levels = cli(&[
        "-3",
        "--user",
        "reader",
        "--pass",
        "reader password",
        "--no-auth-warning",
        "RINGKV.CONSISTENCY",
    ]);
    assert_eq!(
        levels, "read QUORUM\nwrite QUORUM",
        "a RESP3 map (RESP2 would be four lines)"
    );
}

/// Redis hashes on a three-node cluster through the `redis` crate's typed
/// commands and redis-py unchanged: fields are rows of the hash's
/// partition (the gRPC query lists them), `HSET` of many fields lands
/// whole on every replica, `HSCAN` pages with the node's cursors, types
/// answer `WRONGTYPE` on reads, and `DEL` removes a whole hash.
#[tokio::test]
async fn redis_hashes_work_through_the_redis_crate_and_redis_py() {
    use futures::StreamExt;
    use redis::AsyncCommands;
    let cluster = TestCluster::start(3, 3).await.expect("cluster");
    let mut a = connect(cluster.node(0)).await;
    let mut c = connect(cluster.node(2)).await;

    let fields: Vec<(String, String)> = (0..30)
        .map(|i| (format!("f{i:02}"), format!("v{i}")))
        .collect();
    let _: () = a.hset_multiple("h", &fields).await.expect("HMSET");
    let written: usize = a.hset("h", "extra", "x").await.expect("HSET");
    assert_eq!(written, 1);
    let all: std::collections::HashMap<String, String> = c.hgetall("h").await.expect("HGETALL");
    assert_eq!(all.len(), 31);
    assert_eq!(all.get("f07").map(String::as_str), Some("v7"));
    let got: Option<String> = c.hget("h", "f29").await.expect("HGET");
    assert_eq!(got.as_deref(), Some("v29"));
    let len: usize = c.hlen("h").await.expect("HLEN");
    assert_eq!(len, 31);
    let keys: Vec<String> = c.hkeys("h").await.expect("HKEYS");
    assert_eq!(
        keys.first().map(String::as_str),
        Some("extra"),
        "field order"
    );
    let deleted: usize = a.hdel("h", &["f00", "f01", "nope"]).await.expect("HDEL");
    assert_eq!(deleted, 3, "fields named (a blind write)");
    let mut scanned = Vec::new();
    {
        let mut iter = c
            .hscan_match::<_, _, (String, String)>("h", "f1*")
            .await
            .expect("HSCAN");
        while let Some(item) = iter.next().await {
            scanned.push(item.expect("an item").0);
        }
    }
    let expected: Vec<String> = (10..20).map(|i| format!("f{i}")).collect();
    assert_eq!(scanned, expected);
    let kind: String = redis::cmd("TYPE")
        .arg("h")
        .query_async(&mut c)
        .await
        .expect("TYPE");
    assert_eq!(kind, "hash");
    assert_contains(&refused(&mut c, &[b"GET", b"h"]).await, "WRONGTYPE");
    assert_contains(
        &refused(&mut c, &[b"HINCRBY", b"h", b"f", b"1"]).await,
        "compare-and-set",
    );
    assert_contains(
        &refused(&mut c, &[b"HSCAN", b"h", b"12345"]).await,
        "invalid cursor",
    );

    // The hash is a partition: the gRPC query lists its fields, in order,
    // from any node.
    let client = cluster.node(1).direct_client().await;
    let page = client
        .query_page("h", &ringkv_client::Query::new().limit(3), None)
        .await
        .expect("query");
    let sorts: Vec<Bytes> = page.rows.iter().map(|row| row.sort_key.clone()).collect();
    assert_eq!(sorts, ["extra", "f02", "f03"]);

    let removed: usize = a.del("h").await.expect("DEL");
    assert_eq!(removed, 1);
    let all: std::collections::HashMap<String, String> = c.hgetall("h").await.expect("HGETALL");
    assert!(all.is_empty(), "{all:?}");

    // redis-py, the most used Redis library, unchanged.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/redis_py/hashes.py");
    let output = ringkv_tests::system_tool("python3", "python3")
        .arg(script)
        .arg(cluster.node(1).ports.resp.port().to_string())
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "redis-py (scripts/test.sh installs it): {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
