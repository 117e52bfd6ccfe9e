//! A stranger on the network must not stop a node: regressions of the
//! second hardening issue, each an attack from a raw socket beside an
//! honest client that must keep being served.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ringkv_client::{Consistency, WriteOptions};
use ringkv_tests::{NodeOptions, TestCluster, TestNode, eventually};

/// What an honest client saw beside an attack: each request's latency.
/// `scripts/attack-check.sh` prints the lines these reports print.
#[derive(Default)]
struct Seen(Vec<Duration>);

impl Seen {
    /// Times `request`, which must succeed.
    async fn time<T, E: std::fmt::Display>(
        &mut self,
        what: &str,
        request: impl std::future::Future<Output = Result<T, E>>,
    ) -> T {
        let asked = std::time::Instant::now();
        let answer = request
            .await
            .unwrap_or_else(|error| panic!("{what}: {error}"));
        self.0.push(asked.elapsed());
        answer
    }

    fn report(&mut self, attack: &str) {
        self.0.sort();
        let at = |q: f64| self.0[((self.0.len() - 1) as f64 * q) as usize];
        println!(
            "attack-check: {attack}: the honest client made {} requests, 0 errors, latency p50 {:.1} ms, max {:.1} ms",
            self.0.len(),
            at(0.5).as_secs_f64() * 1e3,
            at(1.0).as_secs_f64() * 1e3,
        );
    }
}

/// How long the tests' nodes wait for a request's body.
const BODY_TIMEOUT_MS: &str = "5000";

/// A stranger's HTTP/2 connection that opens streams with HEADERS and
/// never sends their bodies.
struct IdleStreams {
    /// Streams the server let it open.
    responses: Vec<h2::client::ResponseFuture>,
    /// The request bodies, kept open (never written, never ended).
    _bodies: Vec<h2::SendStream<Bytes>>,
    connection: tokio::task::JoinHandle<()>,
}

impl IdleStreams {
    /// Opens `n` streams to `path` on `addr` (those past the server's
    /// stream limit are refused by the server).
    async fn open(addr: SocketAddr, path: &str, n: usize) -> IdleStreams {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut send, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let (mut responses, mut bodies) = (Vec::new(), Vec::new());
        for _ in 0..n {
            send = match tokio::time::timeout(Duration::from_secs(1), send.ready()).await {
                Ok(Ok(ready)) => ready,
                _ => break,
            };
            let request = http::Request::post(format!("http://{addr}{path}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .expect("request");
            match send.send_request(request, false) {
                Ok((response, body)) => {
                    responses.push(response);
                    bodies.push(body);
                }
                Err(_) => break,
            }
        }
        IdleStreams {
            responses,
            _bodies: bodies,
            connection,
        }
    }

    /// Streams sent.
    fn opened(&self) -> usize {
        self.responses.len()
    }

    /// Waits until every stream was answered or reset by the node; how
    /// many the node admitted (answered, at the body timeout) rather than
    /// refused (reset unopened, past its stream limit), or `None` if some
    /// are still open after `limit`.
    async fn admitted_within(&mut self, limit: Duration) -> Option<usize> {
        let responses = std::mem::take(&mut self.responses);
        let ended = tokio::time::timeout(limit, futures::future::join_all(responses))
            .await
            .ok()?;
        let refused = ended
            .iter()
            .filter(|r| matches!(r, Err(e) if e.reason() == Some(h2::Reason::REFUSED_STREAM)))
            .count();
        Some(ended.len() - refused)
    }
}

impl Drop for IdleStreams {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// Issue item 1, client port: a stranger's connection holding 1024 idle
/// streams took every `max_requests_in_flight` permit, so `put` answered
/// "overloaded" and RESP `-OVERLOADED` for as long as it stayed open.
#[tokio::test]
async fn idle_streams_on_the_client_port_stop_no_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(
        dir.path(),
        NodeOptions::new("n1").arg("--request-body-timeout-ms", BODY_TIMEOUT_MS),
    )
    .await
    .expect("node");
    let mut attack = IdleStreams::open(node.client_addr, "/ringkv.v1.KeyValue/Put", 1024).await;
    let mut more = IdleStreams::open(node.client_addr, "/ringkv.v1.KeyValue/Get", 1024).await;
    assert!(
        attack.opened() > 0 && more.opened() > 0,
        "the stranger got in"
    );

    // Streams waiting for their bodies hold none of the node's permits.
    let in_flight = node
        .metric("ringkv_requests_in_flight{api=\"client\"}")
        .await
        .expect("metrics");
    assert_eq!(in_flight, 0.0, "idle streams hold permits");

    let honest = node.direct_client().await;
    let one = WriteOptions::default().consistency(Consistency::One);
    let mut seen = Seen::default();
    for i in 0..20 {
        let put = honest.put_with(format!("honest-{i}"), "v", &one);
        seen.time("an honest put beside the stranger", put).await;
    }
    let resp = redis::Client::open(format!("redis://{}/", node.ports.resp)).expect("url");
    let mut resp = resp
        .get_multiplexed_async_connection()
        .await
        .expect("RESP connection");
    redis::cmd("RINGKV.CONSISTENCY")
        .arg("ONE")
        .query_async::<()>(&mut resp)
        .await
        .expect("level");
    for i in 0..20 {
        let mut set = redis::cmd("SET");
        set.arg(format!("resp-honest-{i}")).arg("v");
        let set = set.query_async::<()>(&mut resp);
        seen.time("an honest RESP SET beside the stranger", set)
            .await;
    }
    seen.report("2 connections opening 1,024 bodiless HTTP/2 streams each on the client port (gRPC puts and RESP SETs)");

    // The stalled requests are dropped after the body timeout.
    // Every stream ends: the node answers each at the body timeout (the
    // client library queues those past the node's 256 streams per
    // connection and sends them as earlier ones end).
    for idle in [&mut attack, &mut more] {
        let ended = idle.admitted_within(Duration::from_secs(120)).await;
        assert!(ended.is_some(), "streams without a body are still open");
    }
}

/// Issue item 1, peer port without internode TLS: 4096 idle streams took
/// every `max_peer_requests_in_flight` permit, so the node refused the
/// replica writes of its coordinators.
#[tokio::test]
async fn idle_streams_on_the_peer_port_stop_no_replica_write() {
    let cluster = TestCluster::start_with(2, 2, &[("--request-body-timeout-ms", BODY_TIMEOUT_MS)])
        .await
        .expect("cluster");
    let target = cluster.node(1);
    let mut attacks = Vec::new();
    for _ in 0..4 {
        attacks.push(
            IdleStreams::open(target.ports.peer, "/ringkv.internal.v2.Peer/Write", 4096).await,
        );
    }
    assert!(
        attacks.iter().all(|a| a.opened() > 0),
        "the stranger got in"
    );
    let in_flight = target
        .metric("ringkv_requests_in_flight{api=\"internode\"}")
        .await
        .expect("metrics");
    assert_eq!(in_flight, 0.0, "idle streams hold permits");

    // Writes at ALL through the other node need n2's replica write.
    let honest = cluster.node(0).direct_client().await;
    let all = WriteOptions::default().consistency(Consistency::All);
    let mut seen = Seen::default();
    for i in 0..20 {
        let put = honest.put_with(format!("honest-{i}"), "v", &all);
        seen.time("a write at ALL beside the stranger", put).await;
    }
    seen.report("4 connections opening 4,096 bodiless HTTP/2 streams each on a replica's peer port (puts at ALL)");
    for attack in &mut attacks {
        let admitted = attack.admitted_within(Duration::from_secs(60)).await;
        assert!(admitted.is_some_and(|n| n > 0), "{admitted:?}");
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            target
                .metric("ringkv_requests_in_flight{api=\"internode\"}")
                .await
                .is_ok_and(|n| n == 0.0)
        })
        .await
    );
}

/// Opens `n` TCP connections to `addr` and keeps them silent.
async fn silent_connections(addr: SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        if let Ok(stream) = tokio::net::TcpStream::connect(addr).await {
            held.push(stream);
        }
    }
    held
}

/// How many of `held` the node closed (end of stream or reset) within
/// `limit`.
async fn closed_within(held: &mut [tokio::net::TcpStream], limit: Duration) -> usize {
    use tokio::io::AsyncReadExt;
    let reads = held.iter_mut().map(|stream| async move {
        let mut buf = [0u8; 256];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue, // a server preface or ping: not closed
                Err(_) => return false,
            }
        }
    });
    futures::future::join_all(reads)
        .await
        .into_iter()
        .filter(|closed| *closed)
        .count()
}

/// Issue item 7: the gRPC, HTTP and peer ports kept every connection,
/// idle or not, forever. Now connections past each port's cap are closed
/// at once, silent ones after `connection_idle_timeout_ms`, and a writer
/// whose connection was open before keeps writing throughout.
#[tokio::test]
async fn connections_past_the_caps_are_closed_and_a_writer_keeps_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(
        dir.path(),
        NodeOptions::new("n1")
            .arg("--max-client-connections", "16")
            .arg("--max-peer-connections", "16")
            .arg("--max-http-connections", "8")
            .arg("--connection-idle-timeout-ms", "3000"),
    )
    .await
    .expect("node");
    let writer = node.direct_client().await;
    let one = WriteOptions::default().consistency(Consistency::One);
    writer.put_with("before", "v", &one).await.expect("write");

    let ports = [node.ports.client, node.ports.peer, node.ports.http];
    let mut held = Vec::new();
    for port in ports {
        held.push(silent_connections(port, 100).await);
    }
    let mut seen = Seen::default();
    for i in 0..50 {
        let put = writer.put_with(format!("during-{i}"), "v", &one);
        seen.time("the writer while the caps are held", put).await;
    }
    seen.report("100 silent connections to each of the client, peer and HTTP ports (puts)");
    // Past each cap, connections are closed at once.
    for (stream, cap) in held.iter_mut().zip([16, 16, 8]) {
        let closed = closed_within(stream, Duration::from_millis(1500)).await;
        assert!(
            closed >= 100 - cap,
            "only {closed} of 100 connections closed at a cap of {cap}"
        );
    }
    // The rest fall silent and are closed after the idle timeout.
    for stream in &mut held {
        let n = stream.len();
        assert_eq!(closed_within(stream, Duration::from_secs(20)).await, n);
    }
    // The writer's own connection answered the node's pings: still open.
    tokio::time::sleep(Duration::from_secs(4)).await;
    writer
        .put_with("after", "v", &one)
        .await
        .expect("a connection that answers pings is not silent");
    for port in ["client", "internode", "http"] {
        let refused = node
            .metric(&format!(
                "ringkv_connections_refused_total{{port=\"{port}\"}}"
            ))
            .await
            .expect("metrics");
        assert!(refused > 0.0, "{port}: {refused}");
    }
}

/// Issue item 7: the node never raised its open-file limit, so under a
/// soft limit of 1024 (a login shell's) the client and RESP ports' caps
/// let sockets take every descriptor, and the store could not open its
/// next WAL or table file: the disk turned unwritable. Now the node raises
/// the soft limit to the hard one and caps the store's open files below
/// what the connection caps leave; a writer keeps writing, through
/// memtable flushes, while both ports hold connections past their caps.
#[tokio::test]
async fn connections_at_their_caps_leave_the_store_its_files() {
    // This process holds the connections: it needs the descriptors too.
    let (_, hard) = rlimit::Resource::NOFILE.get().expect("getrlimit");
    rlimit::Resource::NOFILE
        .set(hard, hard)
        .expect("raise this process's open-file limit");
    let hard = hard.min(65_536);
    assert!(
        hard >= 4_096,
        "the test needs a hard open-file limit of 4096"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(
        dir.path(),
        NodeOptions::new("n1")
            .open_files(1024, hard)
            .arg("--memtable-mb", "4"),
    )
    .await
    .expect("node");
    let pid = node.pid().expect("running");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    assert_eq!(
        open_files.split_whitespace().nth(3),
        Some(hard.to_string().as_str()),
        "soft limit raised to the hard one: {open_files}"
    );

    let writer = node.direct_client().await;
    let one = WriteOptions::default().consistency(Consistency::One);
    writer.put_with("before", "v", &one).await.expect("write");
    let mut held = silent_connections(node.ports.client, 1_100).await;
    held.extend(silent_connections(node.ports.resp, 1_100).await);
    // 24 MiB through a 4 MiB memtable: several flushes and new WALs, each
    // a file to open while the sockets are held.
    let value = Bytes::from(vec![b'x'; 64 << 10]);
    let mut seen = Seen::default();
    for i in 0..384 {
        let put = writer.put_with(format!("during-{i}"), value.clone(), &one);
        seen.time("the writer while both ports hold their caps", put)
            .await;
    }
    seen.report("1,100 connections to each of the client and RESP ports under a soft limit of 1024 (64 KiB puts)");
    let writable = node.metric("ringkv_disk_writable").await.expect("metrics");
    assert_eq!(writable, 1.0, "the store still accepts writes");
    drop(held);
    writer.put_with("after", "v", &one).await.expect("write");
}

/// Issue item 7: a TLS handshake that never finished held its connection
/// forever. Now it is closed after `tls_handshake_timeout_ms`.
#[tokio::test]
async fn a_tls_handshake_that_never_finishes_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    ringkv_tests::make_certs(&certs).expect("certificates");
    let node = TestNode::start(
        dir.path(),
        NodeOptions::new("n1")
            .tls(&certs)
            .arg("--tls-handshake-timeout-ms", "2000")
            .arg("--connection-idle-timeout-ms", "600000"),
    )
    .await
    .expect("node");
    for port in [node.ports.client, node.ports.peer] {
        let mut held = silent_connections(port, 4).await;
        use tokio::io::AsyncWriteExt;
        for stream in &mut held {
            // The first bytes of a ClientHello, then nothing.
            stream
                .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
                .await
                .expect("write");
        }
        assert_eq!(
            closed_within(&mut held, Duration::from_secs(15)).await,
            4,
            "{port}"
        );
    }
    // The node still serves TLS clients.
    let client = node.client().await;
    let mut seen = Seen::default();
    for i in 0..20 {
        let put = client.put(format!("after-{i}"), "v");
        seen.time("a TLS client", put).await;
    }
    seen.report("TLS handshakes that never finish (puts over TLS after them)");
}

/// Issue item 5: 500 connections guessing passwords in a loop made an
/// honest admin's requests wait 4 s behind their Argon2 verifications.
/// Now failed logins are throttled per source address and per user (10,
/// then one a second), so the verifications a guesser gets are bounded,
/// and a password the node verified before re-verifies without waiting
/// behind guesses.
#[tokio::test]
async fn password_guessing_is_throttled_and_the_honest_admin_keeps_working() {
    use std::time::Instant;
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    ringkv_tests::make_certs(&certs).expect("certificates");
    let node = TestNode::start(
        dir.path(),
        NodeOptions::new("n1")
            .tls(&certs)
            .authentication("the admin password")
            .arg("--auth-cache-ms", "500"),
    )
    .await
    .expect("node");
    let admin = node.client().await;
    admin.put("k", "v").await.expect("the admin logs in");

    let guessing = Duration::from_secs(8);
    let started = Instant::now();
    let guessers = (0..32).map(|g| {
        let mut config = node.client_config();
        config.credentials = Some(ringkv_client::Credentials {
            user: if g % 2 == 0 {
                "admin".into()
            } else {
                format!("guess-{g}")
            },
            password: format!("guess {g}"),
        });
        config.max_retries = 0;
        async move {
            let client = ringkv_client::Client::connect(config)
                .await
                .expect("connects");
            let (mut throttled, mut wrong) = (0u32, 0u32);
            while started.elapsed() < guessing {
                match client.get("k").await {
                    Err(error) if error.to_string().contains("too many failed logins") => {
                        throttled += 1
                    }
                    Err(_) => wrong += 1,
                    Ok(_) => panic!("a guess got in"),
                }
            }
            (throttled, wrong)
        }
    });
    let honest = async {
        let mut seen = Seen::default();
        for i in 0..20 {
            let put = admin.put(format!("honest-{i}"), "v");
            seen.time("the admin during the guessing", put).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let slowest = seen.0.iter().max().copied().unwrap_or_default();
        seen.report("32 clients guessing passwords (the admin's puts)");
        slowest
    };
    let (outcomes, slowest) = tokio::join!(futures::future::join_all(guessers), honest);
    let throttled: u32 = outcomes.iter().map(|(t, _)| t).sum();
    let attempts: u32 = outcomes.iter().map(|(t, w)| t + w).sum();
    let verified = node
        .metric("ringkv_auth_failures_total{reason=\"wrong\"}")
        .await
        .expect("metrics");
    println!(
        "{attempts} guesses in {guessing:?}: {throttled} refused unchecked, {verified} verified; the admin's slowest put took {slowest:?}"
    );
    assert!(throttled > 0, "guesses were refused unchecked");
    // 10 at once, then one a second, from the one address.
    assert!(
        verified <= 10.0 + guessing.as_secs_f64() + 2.0,
        "{verified} wrong passwords were verified"
    );
}
