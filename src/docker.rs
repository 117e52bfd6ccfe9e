//! A ringkv cluster in Docker (`deploy/docker/docker-compose.yml`), for the
//! fault tests: start it under its own project name and subnet, find its
//! containers, break them (`network disconnect`, `kill`, `pause`) and mend
//! them. Torn down, volumes included, when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use ringkv_client::{Client, ClientConfig};

use crate::eventually;

/// A compose project of the repository's Docker cluster.
pub struct DockerCluster {
    project: String,
    subnet_prefix: String,
    compose_file: PathBuf,
    /// The file that adds nodes 4 and 5.
    grow_file: PathBuf,
    compose: Vec<String>,
    env: Vec<(String, String)>,
}

fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `docker compose` if the plugin exists, else `docker-compose`.
fn compose_command() -> anyhow::Result<Vec<String>> {
    let plugin = Command::new("docker").args(["compose", "version"]).output();
    if plugin.is_ok_and(|o| o.status.success()) {
        return Ok(vec!["docker".into(), "compose".into()]);
    }
    let standalone = Command::new("docker-compose").arg("version").output();
    if standalone.is_ok_and(|o| o.status.success()) {
        return Ok(vec!["docker-compose".into()]);
    }
    bail!("neither 'docker compose' nor 'docker-compose' is available")
}

impl DockerCluster {
    /// Starts the 3-node cluster as project `project` on
    /// `subnet_prefix`.0/24, publishing node 1 on high ports, with extra
    /// environment (e.g. a short anti-entropy interval).
    pub async fn up(
        project: &str,
        subnet_prefix: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<DockerCluster> {
        let docker_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/docker");
        let compose_file = docker_dir.join("docker-compose.yml");
        let grow_file = docker_dir.join("docker-compose.5nodes.yml");
        let mut all_env: Vec<(String, String)> = vec![
            ("RINGKV_SUBNET_PREFIX".into(), subnet_prefix.into()),
            ("RINGKV_CLIENT_PORT".into(), "17400".into()),
            ("RINGKV_HTTP_PORT".into(), "17480".into()),
            ("RINGKV_RESP_PORT".into(), "17479".into()),
        ];
        all_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let cluster = DockerCluster {
            project: project.to_owned(),
            subnet_prefix: subnet_prefix.to_owned(),
            compose_file,
            grow_file,
            compose: compose_command()?,
            env: all_env,
        };
        // A leftover from an interrupted run would hold the subnet.
        let _ = cluster.compose_all(&["down", "-v"]);
        cluster.compose(&["up", "-d"])?;
        cluster.wait_for_view(&[1, 2, 3], &[]).await?;
        Ok(cluster)
    }

    fn compose(&self, args: &[&str]) -> anyhow::Result<String> {
        self.compose_files(&[&self.compose_file], args)
    }

    /// Compose over the 3-node file and the one adding nodes 4 and 5.
    fn compose_all(&self, args: &[&str]) -> anyhow::Result<String> {
        self.compose_files(&[&self.compose_file, &self.grow_file], args)
    }

    fn compose_files(&self, files: &[&PathBuf], args: &[&str]) -> anyhow::Result<String> {
        let mut command = Command::new(&self.compose[0]);
        command
            .args(&self.compose[1..])
            .arg("-p")
            .arg(&self.project);
        for file in files {
            command.arg("-f").arg(file);
        }
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        run(&mut command)
    }

    /// Starts nodes 4 and 5 (`docker-compose.5nodes.yml`) next to the
    /// running three: they join the cluster one after the other.
    pub fn grow(&self) -> anyhow::Result<()> {
        self.compose_all(&["up", "-d"]).map(|_| ())
    }

    /// Removes node `n`'s container and volume (after it decommissioned).
    pub fn remove(&self, n: usize) -> anyhow::Result<()> {
        self.compose_all(&["rm", "-s", "-f", "-v", &format!("ringkv-{n}")])?;
        let volume = format!("{}_ringkv-{n}-data", self.project.replace('-', ""));
        // Compose v1 strips the project name of dashes; v2 keeps them.
        for name in [volume, format!("{}_ringkv-{n}-data", self.project)] {
            let _ = self.docker(&["volume", "rm", &name]);
        }
        Ok(())
    }

    /// `docker ARGS...`.
    pub fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("docker").args(args))
    }

    /// The container id of node `n` (1-based).
    pub fn container(&self, n: usize) -> anyhow::Result<String> {
        let id = self.docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service=ringkv-{n}"),
        ])?;
        if id.is_empty() {
            bail!("no container for ringkv-{n}");
        }
        Ok(id)
    }

    /// The name of the cluster's network.
    pub fn network(&self) -> anyhow::Result<String> {
        let name = self.docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
        ])?;
        name.lines()
            .next()
            .map(str::to_owned)
            .context("no network for the project")
    }

    /// Node `n`'s IP on the cluster network.
    pub fn ip(&self, n: usize) -> String {
        format!("{}.{}", self.subnet_prefix, 10 + n)
    }

    /// Node `n`'s client API address.
    pub fn client_addr(&self, n: usize) -> SocketAddr {
        SocketAddr::new(self.ip(n).parse().unwrap_or([127, 0, 0, 1].into()), 7400)
    }

    /// Node `n`'s internode API address.
    pub fn peer_addr(&self, n: usize) -> SocketAddr {
        SocketAddr::new(self.ip(n).parse().unwrap_or([127, 0, 0, 1].into()), 7401)
    }

    /// Cuts node `n` off the network.
    pub fn disconnect(&self, n: usize) -> anyhow::Result<()> {
        self.docker(&[
            "network",
            "disconnect",
            &self.network()?,
            &self.container(n)?,
        ])
        .map(|_| ())
    }

    /// Puts node `n` back on the network at its address.
    pub fn connect(&self, n: usize) -> anyhow::Result<()> {
        let ip = self.ip(n);
        self.docker(&[
            "network",
            "connect",
            "--ip",
            &ip,
            &self.network()?,
            &self.container(n)?,
        ])
        .map(|_| ())
    }

    /// A client of the given nodes (1-based).
    pub async fn client(
        &self,
        nodes: &[usize],
        token_aware: bool,
        retries: u32,
    ) -> anyhow::Result<Client> {
        let mut config = ClientConfig::new(nodes.iter().map(|n| self.client_addr(*n).to_string()));
        config.token_aware = token_aware;
        config.max_retries = retries;
        config.request_timeout = Duration::from_secs(3);
        config.connect_timeout = Duration::from_secs(3);
        Ok(Client::connect(config).await?)
    }

    /// Waits until node `up[0]` sees the nodes in `up` UP and NORMAL and
    /// those in `down` DOWN.
    pub async fn wait_for_view(&self, up: &[usize], down: &[usize]) -> anyhow::Result<()> {
        let observer = up.first().copied().context("an observer is needed")?;
        let names = |ns: &[usize]| ns.iter().map(|n| format!("ringkv-{n}")).collect::<Vec<_>>();
        let (up_names, down_names) = (names(up), names(down));
        let seen = eventually(Duration::from_secs(120), || async {
            let Ok(client) = self.client(&[observer], false, 0).await else {
                return false;
            };
            let Ok(status) = client.cluster_status().await else {
                return false;
            };
            let is = |name: &String, want: bool| {
                status
                    .members
                    .iter()
                    .any(|m| &m.name == name && m.up == want && m.state == "NORMAL")
            };
            up_names.iter().all(|n| is(n, true)) && down_names.iter().all(|n| is(n, false))
        })
        .await;
        if !seen {
            bail!("ringkv-{observer} did not see up={up_names:?} down={down_names:?} within 120 s");
        }
        Ok(())
    }

    /// What a node logged.
    pub fn logs(&self, n: usize) -> String {
        self.container(n)
            .and_then(|id| {
                let output = Command::new("docker")
                    .args(["logs", "--tail", "40", &id])
                    .output()?;
                Ok(format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ))
            })
            .unwrap_or_default()
    }
}

impl Drop for DockerCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in 1..=5 {
                eprintln!("---- last log lines of ringkv-{n} ----\n{}", self.logs(n));
            }
        }
        if let Err(error) = self.compose_all(&["down", "-v"]) {
            eprintln!("cannot tear down {}: {error}", self.project);
        }
    }
}
