//! One `ringkv-node` process under test: its ports, its data directory,
//! starting, killing and restarting it, and looking inside it (its own
//! store and Merkle trees, through the internode API; its view of the
//! cluster, through the admin API; its metrics, over HTTP).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use ringkv_client::{Client, ClientConfig, ClusterStatus};
use ringkv_proto::internal::v2::peer_client::PeerClient;
use ringkv_proto::internal::v2::{Cell, ReadBatchRequest, ReplicaReadRequest, ReplicaWriteRequest};

use crate::{binary, eventually, free_port, free_udp_port, merkle_root, ringkv_cli};

/// How long a node may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Starts tried with fresh ports when one was taken meanwhile.
const PORT_ATTEMPTS: u32 = 5;

/// The addresses of one test node.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub client: SocketAddr,
    pub peer: SocketAddr,
    pub gossip: SocketAddr,
    pub http: SocketAddr,
    /// The RESP port.
    pub resp: SocketAddr,
}

impl Ports {
    fn pick() -> Ports {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        // Free ports picked one after another may repeat (the kernel hands a
        // released port out again): a node given the same port twice refuses
        // its configuration.
        let mut tcp: Vec<u16> = Vec::with_capacity(4);
        while tcp.len() < 4 {
            let port = free_port();
            if !tcp.contains(&port) {
                tcp.push(port);
            }
        }
        Ports {
            client: at(tcp[0]),
            peer: at(tcp[1]),
            gossip: at(free_udp_port()),
            http: at(tcp[2]),
            resp: at(tcp[3]),
        }
    }
}

/// What a replica holds for a key, read through the internode API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCell {
    pub timestamp_micros: i64,
    pub tombstone: bool,
    pub value: Bytes,
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub name: String,
    /// Gossip addresses of seeds; empty starts a cluster of its own.
    pub seeds: Vec<SocketAddr>,
    /// `--replication-factor`; `None` leaves it to the config file/env.
    pub replication_factor: Option<u32>,
    /// Further `ringkv-node` flags.
    pub args: Vec<String>,
    /// Environment variables for the process.
    pub env: Vec<(String, String)>,
    /// How the harness's clients reach a node with client TLS on.
    pub client_tls: Option<ringkv_client::TlsOptions>,
    /// Who the harness's clients are, on a node with authentication on.
    pub credentials: Option<ringkv_client::Credentials>,
    /// The certificates of a node with TLS on ([`NodeOptions::tls`]): the
    /// harness reaches its internode API with the node certificate.
    pub certs: Option<PathBuf>,
    /// The process's open-file limit (soft, hard), set with `prlimit`;
    /// `None` inherits the harness's.
    pub open_files: Option<(u64, u64)>,
}

impl NodeOptions {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            seeds: Vec::new(),
            replication_factor: Some(1),
            args: Vec::new(),
            env: Vec::new(),
            client_tls: None,
            credentials: None,
            certs: None,
            open_files: None,
        }
    }

    /// Starts the node with this open-file limit (soft, hard).
    pub fn open_files(mut self, soft: u64, hard: u64) -> Self {
        self.open_files = Some((soft, hard));
        self
    }

    /// Authentication on, with the first admin `admin` and `password`; the
    /// harness's clients authenticate as that admin.
    pub fn authentication(mut self, password: &str) -> Self {
        self = self
            .arg("--authentication", "true")
            .env("RINGKV_AUTH_ADMIN_PASSWORD", password);
        self.credentials = Some(ringkv_client::Credentials {
            user: "admin".into(),
            password: password.into(),
        });
        self
    }

    /// Mutual TLS between nodes and TLS for clients, with the node
    /// certificate and CA in `certs` (made by [`crate::make_certs`]); the
    /// harness's clients trust that CA.
    pub fn tls(mut self, certs: &Path) -> Self {
        let file = |name: &str| certs.join(name).to_string_lossy().into_owned();
        self = self
            .arg("--internode-tls", "true")
            .arg("--client-tls", "true")
            .arg("--tls-cert-file", &file("node.pem"))
            .arg("--tls-key-file", &file("node.key"))
            .arg("--tls-ca-file", &file("ca.pem"));
        let ca = std::fs::read(certs.join("ca.pem")).unwrap_or_default();
        self.client_tls = Some(ringkv_client::TlsOptions::new(ca));
        self.certs = Some(certs.to_path_buf());
        self
    }

    pub fn replication_factor(mut self, n: u32) -> Self {
        self.replication_factor = Some(n);
        self
    }

    /// Passes no `--replication-factor` flag.
    pub fn without_replication_flag(mut self) -> Self {
        self.replication_factor = None;
        self
    }

    pub fn seeds(mut self, seeds: &[SocketAddr]) -> Self {
        self.seeds = seeds.to_vec();
        self
    }

    pub fn arg(mut self, flag: &str, value: &str) -> Self {
        self.args.push(flag.to_owned());
        self.args.push(value.to_owned());
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A `ringkv-node` process with its own data directory and ports.
pub struct TestNode {
    pub options: NodeOptions,
    pub data_dir: PathBuf,
    pub client_addr: SocketAddr,
    pub ports: Ports,
    log_path: PathBuf,
    child: Option<Child>,
}

impl TestNode {
    /// A node under `dir` with its data directory and free ports, not yet
    /// running.
    fn unstarted(dir: &Path, options: NodeOptions) -> anyhow::Result<TestNode> {
        let data_dir = dir.join(&options.name);
        std::fs::create_dir_all(&data_dir)?;
        let ports = Ports::pick();
        Ok(TestNode {
            log_path: dir.join(format!("{}.log", options.name)),
            client_addr: ports.client,
            ports,
            data_dir,
            options,
            child: None,
        })
    }

    /// Starts a node under `dir` and waits until it answers.
    pub async fn start(dir: &Path, options: NodeOptions) -> anyhow::Result<TestNode> {
        let mut node = TestNode::unstarted(dir, options)?;
        // A port picked free can be taken by another process before the
        // node binds it; the node then exits at once, naming the address
        // (it binds before it joins anything). Pick again.
        let mut attempts = 1;
        loop {
            match node.spawn().await {
                Ok(()) => return Ok(node),
                Err(error)
                    if attempts < PORT_ATTEMPTS
                        && format!("{error:#}").contains("Address already in use") =>
                {
                    attempts += 1;
                    node.ports = Ports::pick();
                    node.client_addr = node.ports.client;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The command line of this node.
    fn command(&self) -> Command {
        let mut command = match self.options.open_files {
            Some((soft, hard)) => {
                let mut command = Command::new("prlimit");
                command
                    .arg(format!("--nofile={soft}:{hard}"))
                    .arg(binary("ringkv-node"));
                command
            }
            None => Command::new(binary("ringkv-node")),
        };
        command
            .arg("--node-name")
            .arg(&self.options.name)
            .arg("--data-dir")
            .arg(self.data_dir.join("data"))
            .arg("--listen-client")
            .arg(self.ports.client.to_string())
            .arg("--listen-peer")
            .arg(self.ports.peer.to_string())
            .arg("--listen-gossip")
            .arg(self.ports.gossip.to_string())
            .arg("--listen-http")
            .arg(self.ports.http.to_string())
            .arg("--listen-resp")
            .arg(self.ports.resp.to_string())
            // Faster gossip than the default, so failures show within a
            // couple of seconds and tests stay short.
            .arg("--gossip-interval-ms")
            .arg("200")
            .arg("--ring-delay-ms")
            .arg("500");
        if let Some(n) = self.options.replication_factor {
            command.arg("--replication-factor").arg(n.to_string());
        }
        if !self.options.seeds.is_empty() {
            let seeds: Vec<String> = self.options.seeds.iter().map(ToString::to_string).collect();
            command.arg("--seeds").arg(seeds.join(","));
        }
        command
            .args(&self.options.args)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .env("RINGKV_LOG_LEVEL", "info");
        command
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        self.start_child()?;
        self.wait_ready().await
    }

    /// Starts a node under `dir` without waiting for it to serve clients
    /// (a joining node streams its ranges first); returns once its HTTP
    /// port answers. [`TestNode::wait_serving`] waits for the rest.
    pub async fn launch(dir: &Path, options: NodeOptions) -> anyhow::Result<TestNode> {
        let mut node = TestNode::unstarted(dir, options)?;
        node.start_child()?;
        if !eventually(START_TIMEOUT, || async {
            node.http_get("/health").await.is_ok()
        })
        .await
        {
            bail!(
                "{} did not open its HTTP port:\n{}",
                node.options.name,
                node.log()
            );
        }
        Ok(node)
    }

    /// Waits until the node serves clients.
    pub async fn wait_serving(&mut self) -> anyhow::Result<()> {
        self.wait_ready().await
    }

    fn start_child(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let child = self
            .command()
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start ringkv-node")?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{} exited during start ({status}):\n{}",
                    self.options.name,
                    self.log()
                );
            }
            if let Ok(client) = self.try_client(Duration::from_millis(500)).await
                && client.node_info().await.is_ok()
            {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "{} did not answer within {START_TIMEOUT:?}:\n{}",
                    self.options.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A client configuration for this node (with its TLS, if on).
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new([self.client_addr.to_string()]);
        config.tls = self.options.client_tls.clone();
        config.credentials = self.options.credentials.clone();
        config
    }

    async fn try_client(&self, connect_timeout: Duration) -> ringkv_client::Result<Client> {
        let mut config = self.client_config();
        config.connect_timeout = connect_timeout;
        Client::connect(config).await
    }

    /// A client connected to this node.
    pub async fn client(&self) -> Client {
        self.try_client(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to {}: {e}\n{}",
                    self.options.name,
                    self.log()
                )
            })
    }

    /// A client that sends every request to this node (which coordinates
    /// it) and never retries elsewhere.
    pub async fn direct_client(&self) -> Client {
        let mut config = self.client_config();
        config.token_aware = false;
        config.max_retries = 0;
        config.client_timestamps = false;
        Client::connect(config).await.unwrap_or_else(|e| {
            panic!(
                "cannot connect to {}: {e}\n{}",
                self.options.name,
                self.log()
            )
        })
    }

    async fn peer(&self) -> anyhow::Result<PeerClient<tonic::transport::Channel>> {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let channel = match &self.options.certs {
            None => {
                Endpoint::from_shared(format!("http://{}", self.ports.peer))?
                    .connect()
                    .await?
            }
            Some(certs) => {
                let tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(std::fs::read(certs.join("ca.pem"))?))
                    .identity(Identity::from_pem(
                        std::fs::read(certs.join("node.pem"))?,
                        std::fs::read(certs.join("node.key"))?,
                    ))
                    .domain_name("ringkv-node");
                Endpoint::from_shared(format!("https://{}", self.ports.peer))?
                    .tls_config(tls)?
                    .connect()
                    .await?
            }
        };
        Ok(PeerClient::new(channel).max_decoding_message_size(usize::MAX))
    }

    /// What this node's own store holds for the plain key `key` (through
    /// the internode API, so no coordination or repair is involved).
    pub async fn stored(&self, key: &[u8]) -> anyhow::Result<Option<StoredCell>> {
        self.stored_row(&ringkv_node::storage::key::plain_key(key))
            .await
    }

    /// Writes `cell` under the row key `row` into this node's own store
    /// only (through the internode API: a replica that got a write the
    /// others missed).
    pub async fn plant(&self, row: &[u8], cell: Cell) -> anyhow::Result<()> {
        let mut peer = self.peer().await?;
        peer.write(ReplicaWriteRequest {
            key: Bytes::copy_from_slice(row),
            cell: Some(cell),
            report_newer: false,
            more: Vec::new(),
            repair: false,
        })
        .await?;
        Ok(())
    }

    /// What this node's own store holds under the row key `row` (a
    /// deletion covering a missing row reads as its tombstone).
    pub async fn stored_row(&self, row: &[u8]) -> anyhow::Result<Option<StoredCell>> {
        let mut peer = self.peer().await?;
        let response = peer
            .read(ReplicaReadRequest {
                key: Bytes::copy_from_slice(row),
                digest_only: false,
            })
            .await?
            .into_inner();
        Ok(response.cell.map(|c| StoredCell {
            timestamp_micros: c.timestamp_micros,
            tombstone: c.tombstone,
            value: c.value,
        }))
    }

    /// How many of `keys` this node's own store holds (tombstones count).
    pub async fn stored_count(&self, keys: &[Bytes]) -> anyhow::Result<usize> {
        let mut peer = self.peer().await?;
        let mut held = 0;
        let mut rest = keys;
        while !rest.is_empty() {
            let chunk = &rest[..rest.len().min(500)];
            let response = peer
                .read_batch(ReadBatchRequest {
                    keys: chunk
                        .iter()
                        .map(|key| Bytes::from(ringkv_node::storage::key::plain_key(key)))
                        .collect(),
                })
                .await?
                .into_inner();
            held += response.entries.len();
            // The node answers a prefix bounded by bytes (a node that
            // predates keys_answered leaves it 0 and answers everything).
            let answered = match response.keys_answered as usize {
                0 => chunk.len(),
                n => n.min(chunk.len()),
            };
            rest = &rest[answered..];
        }
        Ok(held)
    }

    /// The root of this node's Merkle tree for `(start, end]`.
    pub async fn merkle_root(&self, start: i64, end: i64) -> anyhow::Result<Bytes> {
        merkle_root(self.ports.peer, start, end).await
    }

    /// This node's view of the cluster.
    pub async fn status(&self) -> anyhow::Result<ClusterStatus> {
        Ok(self
            .try_client(Duration::from_secs(2))
            .await?
            .cluster_status()
            .await?)
    }

    /// Waits until this node sees the nodes named in `up` up and NORMAL
    /// (owning their tokens) and those in `down` down.
    pub async fn wait_for_view(&self, up: &[&str], down: &[&str]) -> anyhow::Result<()> {
        let matches = || async {
            let Ok(status) = self.status().await else {
                return false;
            };
            let is = |name: &str, want: bool| {
                status
                    .members
                    .iter()
                    .any(|m| m.name == name && m.up == want && m.state == "NORMAL")
            };
            up.iter().all(|n| is(n, true)) && down.iter().all(|n| is(n, false))
        };
        if eventually(Duration::from_secs(60), matches).await {
            return Ok(());
        }
        let seen = self.status().await.map(|s| {
            s.members
                .iter()
                .map(|m| (m.name.clone(), m.up))
                .collect::<Vec<_>>()
        });
        bail!(
            "{} did not see up={up:?} down={down:?} within 60 s; it sees {seen:?}",
            self.options.name
        )
    }

    /// `GET path` on the node's HTTP port: the status code and body.
    pub async fn http_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        crate::http_get(self.ports.http, path).await
    }

    /// The sum of the Prometheus samples from `/metrics` that `selector`
    /// picks (0 when none): `name` picks every series of `name`,
    /// `name{a="x",b="y"}` those whose labels include `a="x"` and `b="y"`.
    pub async fn metric(&self, selector: &str) -> anyhow::Result<f64> {
        let (_, body) = self.http_get("/metrics").await?;
        Ok(sum_samples(&body, selector))
    }

    /// The process id, while the node runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn name(&self) -> &str {
        &self.options.name
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP` to pause the process as a hung
    /// machine would, `libc::SIGCONT` to resume it).
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child
            && let Ok(pid) = i32::try_from(child.id())
        {
            // SAFETY: plain syscall on a pid we own.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// The exit status, once the process has exited by itself.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} is not running", self.options.name);
        };
        let pid = i32::try_from(child.id())?;
        // SAFETY: plain syscall on a pid we own.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "{} ignored SIGTERM for 30 s:\n{}",
                    self.options.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the process again on the same data directory and ports.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("{} is still running", self.options.name);
        }
        self.spawn().await
    }

    /// Runs the `ringkv` shell against this node, one-shot.
    pub fn cli(&self, args: &[&str]) -> Output {
        ringkv_cli(&[self.client_addr.to_string().as_str()], args)
    }

    /// What the node has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what the node logged.
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- last log lines of {} ----", self.options.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The sum of the samples of Prometheus text `body` that `selector` picks
/// (see [`TestNode::metric`]).
pub fn sum_samples(body: &str, selector: &str) -> f64 {
    let (name, wanted) = split_sample(selector);
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (line_name, labels) = split_sample(series);
            let picked = line_name == name && wanted.iter().all(|label| labels.contains(label));
            picked.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// `name{a="x",b="y"}` as `name` and `["a=\"x\"", "b=\"y\""]`.
fn split_sample(series: &str) -> (&str, Vec<&str>) {
    match series.split_once('{') {
        Some((name, labels)) => (
            name,
            labels
                .trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty())
                .collect(),
        ),
        None => (series, Vec::new()),
    }
}
