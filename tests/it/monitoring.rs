//! Monitoring: the metrics every node exports, scraped by a real Prometheus
//! (Debian's `prometheus`) with the shipped configuration, and the shipped
//! configuration and alert rules checked by `promtool`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use bytes::Bytes;
use ringkv_client::{Consistency, ReadOptions, WriteOptions};
use ringkv_tests::{TestCluster, client_of, free_port, system_tool};

fn shipped(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/prometheus")
        .join(file)
}

fn promtool(args: &[&str]) -> String {
    let output = system_tool("promtool", "prometheus")
        .args(args)
        .current_dir(shipped(""))
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_shipped_prometheus_config_and_alert_rules_pass_promtool() {
    let config = promtool(&["check", "config", "prometheus.yml"]);
    assert!(config.contains("SUCCESS: 1 rule files found"), "{config}");
    let rules = promtool(&["check", "rules", "ringkv-alerts.yml"]);
    assert!(rules.contains("SUCCESS: 7 rules found"), "{rules}");
    // The rules' own unit tests: each alert fires when it should and not
    // before.
    let tests = promtool(&["test", "rules", "ringkv-alerts.test.yml"]);
    assert!(tests.contains("SUCCESS"), "{tests}");
}

/// A Prometheus server, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Runs Prometheus with the shipped `prometheus.yml` and alert rules,
    /// its targets file listing `nodes` (HTTP addresses) as cluster `test`.
    fn start(nodes: &[SocketAddr]) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        for file in ["prometheus.yml", "ringkv-alerts.yml"] {
            std::fs::copy(shipped(file), dir.path().join(file)).expect("copy the shipped config");
        }
        std::fs::create_dir(dir.path().join("targets")).expect("targets dir");
        let targets: Vec<String> = nodes.iter().map(|a| format!("    - {a}")).collect();
        std::fs::write(
            dir.path().join("targets/test.yml"),
            format!(
                "- targets:\n{}\n  labels:\n    cluster: test\n",
                targets.join("\n")
            ),
        )
        .expect("targets file");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = system_tool("prometheus", "prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// The value of an instant query that yields one sample; `None` when
    /// it yields none (or Prometheus does not answer yet).
    async fn value(&self, query: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", encode(query));
        let (code, body) = ringkv_tests::http_get(self.addr, &path).await.ok()?;
        if code != 200 {
            return None;
        }
        let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
        answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }

    /// Waits until `query` yields `expected`; panics with what it last
    /// yielded if it does not within the scrape intervals of a slow machine.
    async fn expect(&self, query: &str, expected: f64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let last = self.value(query).await;
            if last == Some(expected) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{query}: expected {expected}, Prometheus says {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes everything but letters and digits.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn prometheus_scrapes_a_three_node_cluster_with_the_shipped_config() {
    let mut cluster = TestCluster::start(3, 3).await.expect("cluster");
    let (n1, n2, n3) = (cluster.node(0), cluster.node(1), cluster.node(2));

    // Every series the node exports carries HELP and TYPE.
    let (_, text) = n1.http_get("/metrics").await.expect("metrics");
    let mut families = 0;
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line
            .split_whitespace()
            .nth(2)
            .expect("a TYPE line names a series");
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
        families += 1;
    }
    assert!(families >= 20, "only {families} series families:\n{text}");

    // Known traffic: 40 puts at QUORUM, 5 deletes at ALL, 25 gets at ONE,
    // spread by the client over the three coordinators.
    let client = client_of(&[n1, n2, n3]).await;
    let quorum = WriteOptions::default().consistency(Consistency::Quorum);
    let all = WriteOptions::default().consistency(Consistency::All);
    let one = ReadOptions::default().consistency(Consistency::One);
    for i in 0..40 {
        let key = Bytes::from(format!("m{i}"));
        client
            .put_with(key, Bytes::from_static(b"v"), &quorum)
            .await
            .expect("put");
    }
    for i in 0..5 {
        client
            .delete_with(Bytes::from(format!("m{i}")), &all)
            .await
            .expect("delete");
    }
    for i in 0..25 {
        client
            .get_with(Bytes::from(format!("m{i}")), &one)
            .await
            .expect("get");
    }

    let http: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.ports.http).collect();
    let prometheus = Prometheus::start(&http);
    prometheus
        .expect(r#"count(up{job="ringkv",cluster="test"} == 1)"#, 3.0)
        .await;
    let expected = [
        (
            r#"sum(ringkv_requests_total{op="put",level="quorum",outcome="ok"})"#,
            40.0,
        ),
        (
            r#"sum(ringkv_requests_total{op="delete",level="all",outcome="ok"})"#,
            5.0,
        ),
        (
            r#"sum(ringkv_requests_total{op="get",level="one",outcome="ok"})"#,
            25.0,
        ),
        (
            r#"sum(ringkv_request_duration_seconds_count{op="put",level="quorum"})"#,
            40.0,
        ),
        (r#"sum(ringkv_requests_total{outcome!="ok"})"#, 0.0),
        // Each write goes to the two replicas besides the coordinator.
        (
            r#"sum(ringkv_replica_request_duration_seconds_count{call="write"})"#,
            90.0,
        ),
        (
            r#"count(count by (peer) (ringkv_replica_request_duration_seconds_count))"#,
            3.0,
        ),
        (r#"sum(ringkv_replica_request_errors_total)"#, 0.0),
        (r#"sum(ringkv_cluster_members{status="up"})"#, 9.0),
        (r#"sum(ringkv_cluster_members{status="down"})"#, 0.0),
        (r#"count(ringkv_peer_up == 1)"#, 6.0),
        (r#"count(ringkv_build_info)"#, 3.0),
        (r#"min(ringkv_gc_grace_seconds)"#, 864000.0),
        (r#"count(ringkv_storage_sst_files >= 0)"#, 3.0),
        (r#"count(ringkv_storage_memtable_bytes > 0)"#, 3.0),
        (
            r#"count(ringkv_disk_total_bytes > ringkv_disk_free_bytes)"#,
            3.0,
        ),
        (r#"min(ringkv_disk_writable)"#, 1.0),
        (r#"count(process_resident_memory_bytes > 1000000)"#, 3.0),
        (r#"count(process_open_fds > 10)"#, 3.0),
        (r#"count(ringkv_repair_running == 0)"#, 3.0),
        (r#"count(ALERTS{alertstate="firing"}) or vector(0)"#, 0.0),
    ];
    for (query, value) in expected {
        prometheus.expect(query, value).await;
    }
    // The shipped alert rules are loaded and, once evaluated, healthy.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = ringkv_tests::http_get(prometheus.addr, "/api/v1/rules")
            .await
            .expect("rules");
        let rules: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let health: Vec<String> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .map(|r| r["health"].as_str().unwrap_or_default().to_owned())
            .collect();
        if health.len() == 7 && health.iter().all(|h| h == "ok") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "alert rules: {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A node killed: the others' failure detectors, and so Prometheus, see
    // it down.
    cluster.kill_and_wait(2).await.expect("kill n3");
    prometheus
        .expect(r#"max(ringkv_peer_up{cluster="test",peer="n3"})"#, 0.0)
        .await;
    prometheus
        .expect(r#"sum(ringkv_cluster_members{status="down"})"#, 2.0)
        .await;
}
