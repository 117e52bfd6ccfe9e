//! Several test nodes forming one cluster.

use crate::node::{NodeOptions, TestNode};

/// Several nodes, each seeded with the first one's gossip address.
pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    pub dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `size` nodes named n1..nN with replication factor `rf`: the
    /// first alone, the others together once it serves.
    pub async fn start(size: usize, rf: u32) -> anyhow::Result<TestCluster> {
        Self::start_with(size, rf, &[]).await
    }

    /// As [`TestCluster::start`], with extra flags for every node.
    pub async fn start_with(
        size: usize,
        rf: u32,
        flags: &[(&str, &str)],
    ) -> anyhow::Result<TestCluster> {
        let dir = tempfile::tempdir()?;
        let configure = |name: &str| {
            flags.iter().fold(
                NodeOptions::new(name).replication_factor(rf),
                |options, (flag, value)| options.arg(flag, value),
            )
        };
        let first = TestNode::start(dir.path(), configure("n1")).await?;
        let seeds = [first.ports.gossip];
        let rest = (2..=size).map(|i| {
            let options = configure(&format!("n{i}")).seeds(&seeds);
            let dir = dir.path().to_path_buf();
            async move { TestNode::start(&dir, options).await }
        });
        let mut nodes = vec![first];
        for node in futures::future::join_all(rest).await {
            nodes.push(node?);
        }
        let cluster = TestCluster { nodes, dir };
        let names: Vec<&str> = cluster.nodes.iter().map(TestNode::name).collect();
        for node in &cluster.nodes {
            node.wait_for_view(&names, &[]).await?;
        }
        Ok(cluster)
    }

    pub fn node(&self, i: usize) -> &TestNode {
        &self.nodes[i]
    }

    fn running_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.name().to_owned())
            .collect()
    }

    /// Kills node `i` (SIGKILL) and waits until every running node sees it
    /// down and the others up.
    pub async fn kill_and_wait(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].kill();
        let up = self.running_names();
        let up: Vec<&str> = up.iter().map(String::as_str).collect();
        let down = [self.nodes[i].name()];
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            node.wait_for_view(&up, &down).await?;
        }
        Ok(())
    }

    /// Restarts node `i` and waits until every running node, it included,
    /// sees every running node up.
    pub async fn restart_and_wait(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].restart().await?;
        let up = self.running_names();
        let up: Vec<&str> = up.iter().map(String::as_str).collect();
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            node.wait_for_view(&up, &[]).await?;
        }
        Ok(())
    }

    pub fn node_mut(&mut self, i: usize) -> &mut TestNode {
        &mut self.nodes[i]
    }

    /// Client addresses of every node.
    pub fn hosts(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| n.client_addr.to_string())
            .collect()
    }
}
