//! The web console in a real browser: headless Chromium (Debian's
//! `chromium`) loads the console of a running 3-node cluster; the checks
//! read the DOM the page rendered (nodes up, an arc per token range,
//! charts with points after known traffic, a key's replicas), a screenshot
//! is saved as a test artifact, and a killed node turns DOWN.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringkv_client::{Consistency, ReadOptions, WriteOptions};
use ringkv_tests::{TestCluster, TestNode, binary, client_of, system_tool};

/// How long a killed node may take to show DOWN in the console: the
/// failure detector's conviction (a few gossip rounds) plus a refresh,
/// with room for a slow machine.
const DOWN_WITHIN: Duration = Duration::from_secs(30);

/// Chromium with what it needs to run headless as root in a container.
fn chromium(args: &[String]) -> String {
    let output = system_tool("chromium", "chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            // Virtual time runs the page's 2 s refresh a few times; it
            // stands still while a fetch is pending.
            "--virtual-time-budget=7000",
        ])
        .args(args)
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn console_url(node: &TestNode, query: &str) -> String {
    format!("http://{}/{query}", node.ports.http)
}

/// The DOM of the console once the page has rendered, after `settle`
/// holds, within `patience`.
fn rendered_dom(url: &str, patience: Duration, settle: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + patience;
    loop {
        let dom = chromium(&["--dump-dom".into(), url.into()]);
        if dom.contains("data-ready=\"1\"") && settle(&dom) {
            return dom;
        }
        assert!(
            Instant::now() < deadline,
            "the console did not settle:\n{dom}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Where test artifacts go: `<target>/test-artifacts/`.
fn artifacts() -> PathBuf {
    let dir = binary("ringkv")
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

/// The value of attribute `name` on the element that carries `marker`.
fn attribute(dom: &str, marker: &str, name: &str) -> Option<u64> {
    let at = dom.find(marker)?;
    let tag_start = dom[..at].rfind('<')?;
    let tag_end = at + dom[at..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let value = tag.split(&format!("{name}=\"")).nth(1)?;
    value.split('"').next()?.parse().ok()
}

/// Whether the SVG in the figure marked `marker` has a polyline of more
/// than two points whose y varies (a data line, not a legend swatch or a
/// flat zero line).
fn drawn_line_rises(dom: &str, marker: &str) -> bool {
    let Some(at) = dom.find(marker) else {
        return false;
    };
    let end = dom[at..].find("</figure>").map_or(dom.len(), |e| at + e);
    dom[at..end].split("<polyline").skip(1).any(|line| {
        let Some(points) = line
            .split("points=\"")
            .nth(1)
            .and_then(|p| p.split('"').next())
        else {
            return false;
        };
        let ys: Vec<f64> = points
            .split_whitespace()
            .filter_map(|pair| pair.split(',').nth(1)?.parse().ok())
            .collect();
        ys.len() > 2 && ys.iter().any(|y| (y - ys[0]).abs() > 1.0)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_cluster_ring_charts_and_a_node_going_down() {
    let mut cluster = TestCluster::start(3, 3).await.expect("cluster");
    let n1 = cluster.node(0);

    // Known traffic for a few sampling periods: puts at QUORUM, gets at ONE.
    let client = client_of(&[n1, cluster.node(1), cluster.node(2)]).await;
    let quorum = WriteOptions::default().consistency(Consistency::Quorum);
    let one = ReadOptions::default().consistency(Consistency::One);
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed() < Duration::from_secs(7) {
        let key = Bytes::from(format!("c{i}"));
        client
            .put_with(key.clone(), Bytes::from_static(b"v"), &quorum)
            .await
            .expect("put");
        client.get_with(key, &one).await.expect("get");
        i += 1;
    }
    // One more sampling period, so the last sample holds the traffic.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (_, cluster_json) = n1.http_get("/console/api/cluster").await.expect("api");
    let api: serde_json::Value = serde_json::from_str(&cluster_json).expect("JSON");
    let arcs = api["ring"].as_array().map_or(0, Vec::len);
    let tokens: u64 = api["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["tokens"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(arcs as u64, tokens, "a range per token: {cluster_json}");

    let url = console_url(n1, "");
    let dom = tokio::task::spawn_blocking(move || {
        rendered_dom(&url, Duration::from_secs(60), |dom| {
            attribute(dom, "data-chart=\"requests\"", "data-nonzero").unwrap_or(0) > 0
        })
    })
    .await
    .expect("chromium");
    assert_eq!(dom.matches("data-status=\"UP\"").count(), 3, "{dom}");
    for name in ["n1", "n2", "n3"] {
        assert!(
            dom.contains(&format!("data-node=\"{name}\" data-status=\"UP\"")),
            "{dom}"
        );
    }
    assert_eq!(
        dom.matches("class=\"arc").count(),
        arcs,
        "an arc per token range"
    );
    assert!(dom.contains(&format!("{arcs} token ranges")), "{dom}");
    for chart in ["requests", "latency"] {
        let marker = format!("data-chart=\"{chart}\"");
        let nonzero = attribute(&dom, &marker, "data-nonzero").unwrap_or(0);
        assert!(
            nonzero > 0,
            "the {chart} chart has no non-zero point:\n{dom}"
        );
        // Drawn, not only counted: a data line (legend swatches have two
        // points) rises above the chart's floor.
        assert!(
            drawn_line_rises(&dom, &marker),
            "the {chart} chart draws no rising line:\n{dom}"
        );
    }
    for chart in ["errors", "hints", "read-repairs"] {
        assert!(
            dom.contains(&format!("data-chart=\"{chart}\"")),
            "{chart} missing"
        );
    }
    assert!(
        !dom.contains("has lost contact"),
        "no contact banner while every node is up:\n{dom}"
    );
    assert!(dom.contains("served by n1"), "{dom}");

    // The screenshot, as a test artifact.
    let shot = artifacts().join("console-3-nodes.png");
    let url = console_url(n1, "?key=c1");
    let path = shot.clone();
    tokio::task::spawn_blocking(move || {
        chromium(&[
            format!("--screenshot={}", path.display()),
            "--window-size=1400,1500".into(),
            url,
        ])
    })
    .await
    .expect("chromium");
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );
    println!("console screenshot: {}", shot.display());

    // A key's replicas: its range is highlighted, the others dimmed.
    let url = console_url(n1, "?key=c1");
    let dom = tokio::task::spawn_blocking(move || {
        rendered_dom(&url, Duration::from_secs(30), |dom| {
            dom.contains("replicas of")
        })
    })
    .await
    .expect("chromium");
    assert_eq!(dom.matches("class=\"arc replica\"").count(), 1, "{dom}");
    assert_eq!(dom.matches("class=\"arc dimmed\"").count(), arcs - 1);
    assert!(dom.contains("class=\"key-marker\""), "{dom}");
    let (_, answer) = n1
        .http_get("/console/api/replicas?key=c1")
        .await
        .expect("replicas");
    let replicas: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    let names: Vec<&str> = replicas["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert_eq!(names.len(), 3, "{answer}");
    assert!(
        dom.contains(&format!("replicas of \"c1\": {}", names.join(", "))),
        "{dom}"
    );

    // n3 killed: n1's console shows it DOWN, and a banner, in time.
    let killed = Instant::now();
    cluster.node_mut(2).kill();
    let url = console_url(cluster.node(0), "");
    let dom = tokio::task::spawn_blocking(move || {
        rendered_dom(&url, DOWN_WITHIN, |dom| {
            dom.contains("data-node=\"n3\" data-status=\"DOWN\"")
        })
    })
    .await
    .expect("chromium");
    let took = killed.elapsed();
    println!("n3 showed DOWN in the console {took:?} after it was killed");
    assert!(dom.contains("n1 has lost contact with n3"), "{dom}");
    assert_eq!(dom.matches("data-status=\"UP\"").count(), 2);
}

#[tokio::test]
async fn the_console_api_refuses_bad_input_and_the_page_loads_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), ringkv_tests::NodeOptions::new("n1"))
        .await
        .expect("node");
    let (code, page) = node.http_get("/").await.expect("page");
    assert_eq!(code, 200);
    assert!(page.contains("<title>ringkv console</title>"));
    for asset in ["/console/app.js", "/console/style.css"] {
        let (code, _) = node.http_get(asset).await.expect("asset");
        assert_eq!(code, 200, "{asset}");
    }
    let (code, body) = node
        .http_get("/console/api/charts?node=nobody")
        .await
        .expect("charts");
    assert_eq!(code, 404, "{body}");
    let (code, body) = node
        .http_get("/console/api/replicas?key=")
        .await
        .expect("replicas");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("key is empty"), "{body}");
    let (code, _) = node
        .http_get("/console/api/replicas")
        .await
        .expect("replicas");
    assert_eq!(code, 400, "a missing key");
    let (code, body) = node
        .http_get("/console/api/charts?node=n1")
        .await
        .expect("charts");
    assert_eq!(code, 200, "{body}");
    let charts: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(charts["charts"].as_array().map(Vec::len), Some(5));
}
