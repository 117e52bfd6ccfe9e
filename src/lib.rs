//! Test harness for ringkv: starts real `ringkv-node` processes on loopback
//! ports and drives them through `ringkv-client` and the `ringkv` binary.
//!
//! The binaries are found next to the running test executable's profile
//! directory (`target/<profile>/`), so build them first:
//! `cargo build --release --workspace --bins` (scripts/test.sh does).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ringkv_client::{Client, ClientConfig};

/// How long a node may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of a workspace binary built in the same profile as this test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test-binary> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} not found; build the binaries first: cargo build --release --workspace --bins",
        path.display()
    );
    path
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub name: String,
    /// `--replication-factor`; `None` leaves it to the config file/env.
    pub replication_factor: Option<u32>,
    /// Further `ringkv-node` flags.
    pub args: Vec<String>,
    /// Environment variables for the process.
    pub env: Vec<(String, String)>,
}

impl NodeOptions {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            replication_factor: Some(1),
            args: Vec::new(),
            env: Vec::new(),
        }
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
    log_path: PathBuf,
    child: Option<Child>,
}

impl TestNode {
    /// Starts a node under `dir` and waits until it answers.
    pub async fn start(dir: &Path, options: NodeOptions) -> anyhow::Result<TestNode> {
        let data_dir = dir.join(&options.name);
        std::fs::create_dir_all(&data_dir)?;
        let mut node = TestNode {
            log_path: dir.join(format!("{}.log", options.name)),
            client_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir,
            options,
            child: None,
        };
        node.spawn().await?;
        Ok(node)
    }

    /// The command line of this node.
    fn command(&self) -> Command {
        let mut command = Command::new(binary("ringkv-node"));
        command
            .arg("--node-name")
            .arg(&self.options.name)
            .arg("--data-dir")
            .arg(self.data_dir.join("data"))
            .arg("--listen-client")
            .arg(self.client_addr.to_string());
        if let Some(n) = self.options.replication_factor {
            command.arg("--replication-factor").arg(n.to_string());
        }
        command
            .args(&self.options.args)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .env("RINGKV_LOG_LEVEL", "info");
        command
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
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
        self.wait_ready().await
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

    async fn try_client(&self, connect_timeout: Duration) -> ringkv_client::Result<Client> {
        let mut config = ClientConfig::new([self.client_addr.to_string()]);
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
    }
}

/// Runs `ringkv --host H ... ARGS` and returns its output.
pub fn ringkv_cli(hosts: &[&str], args: &[&str]) -> Output {
    let mut command = Command::new(binary("ringkv"));
    for host in hosts {
        command.arg("--host").arg(host);
    }
    command
        .args(args)
        .env_remove("RINGKV_HOST")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ringkv: {e}"))
}

/// Polls `check` until it returns true or `timeout` passes; returns whether
/// it became true. For conditions that converge in the background.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
