//! Who owns a node's tasks, and the order they stop in (see the module
//! docs of `server`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::workers::Workers;

/// Who owns the node's tasks, stopped in order (see the module docs). The
/// three sets share one table of names: `workers.snapshot()` lists them all.
pub(super) struct Lifecycle {
    /// Work that outlives client requests.
    pub(super) requests: Workers,
    /// The internode server, and its stop signal.
    pub(super) peer: Workers,
    pub(super) peer_stop: CancellationToken,
    /// Every other background worker, and their stop signal.
    pub(super) workers: Workers,
    pub(super) worker_stop: CancellationToken,
    /// Set when the node stopped itself (`disk_failure_policy = stop`, or
    /// another live node with its id): why, for the exit message.
    pub(super) fatal: Arc<std::sync::OnceLock<String>>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        let workers = Workers::new();
        Self {
            requests: workers.sibling(),
            peer: workers.sibling(),
            peer_stop: CancellationToken::new(),
            workers,
            worker_stop: CancellationToken::new(),
            fatal: Arc::default(),
        }
    }
}

impl Lifecycle {
    pub(super) async fn shut_down(&self, grace: Duration) {
        async fn wait(tasks: &Workers, grace: Duration, what: &str) {
            tasks.close();
            if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
                tracing::warn!(?grace, "{what} did not stop in time");
            }
        }
        wait(&self.requests, grace, "background replica work").await;
        self.peer_stop.cancel();
        wait(&self.peer, grace, "the internode API").await;
        self.worker_stop.cancel();
        wait(&self.workers, grace, "background workers").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Shutdown order: work left by requests first, then the internode API
    /// (whose replica writes may still wait for a group fsync), and only
    /// then the other workers, the WAL syncers among them.
    #[tokio::test]
    async fn shutdown_stops_requests_then_the_peer_api_then_the_workers() {
        let life = Lifecycle::default();
        let order = Arc::new(Mutex::new(Vec::new()));
        let record = |what: &'static str| {
            let order = order.clone();
            move || {
                if let Ok(mut order) = order.lock() {
                    order.push(what);
                }
            }
        };
        let done = record("request work");
        life.requests.spawn("request work", async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            done();
        });
        let (stop, done) = (life.peer_stop.clone(), record("peer API"));
        life.peer.spawn("peer API", async move {
            stop.cancelled().await;
            done();
        });
        let (stop, done) = (life.worker_stop.clone(), record("workers"));
        life.workers.spawn("workers", async move {
            stop.cancelled().await;
            done();
        });
        life.shut_down(Duration::from_secs(5)).await;
        let order = order.lock().map(|o| o.clone()).unwrap_or_default();
        assert_eq!(order, ["request work", "peer API", "workers"]);
        // One table lists the three sets' tasks, all ended.
        let listed: Vec<_> = life
            .workers
            .snapshot()
            .into_iter()
            .map(|w| (w.name, w.running, w.done))
            .collect();
        assert_eq!(
            listed,
            [
                ("peer API".to_owned(), 0, 1),
                ("request work".to_owned(), 0, 1),
                ("workers".to_owned(), 0, 1),
            ]
        );
    }
}
