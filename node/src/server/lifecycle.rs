//! Who owns a node's tasks, and the order they stop in (see the module
//! docs of `server`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Who owns the node's tasks, stopped in order (see the module docs).
#[derive(Default)]
pub(super) struct Lifecycle {
    /// Work that outlives client requests.
    pub(super) requests: TaskTracker,
    /// The internode server, and its stop signal.
    pub(super) peer: TaskTracker,
    pub(super) peer_stop: CancellationToken,
    /// Every other background worker, and their stop signal.
    pub(super) workers: TaskTracker,
    pub(super) worker_stop: CancellationToken,
    /// Set when the node stopped itself (`disk_failure_policy = stop`, or
    /// another live node with its id): why, for the exit message.
    pub(super) fatal: Arc<std::sync::OnceLock<String>>,
}

impl Lifecycle {
    pub(super) async fn shut_down(&self, grace: Duration) {
        async fn wait(tasks: &TaskTracker, grace: Duration, what: &str) {
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
        life.requests.spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            done();
        });
        let (stop, done) = (life.peer_stop.clone(), record("peer API"));
        life.peer.spawn(async move {
            stop.cancelled().await;
            done();
        });
        let (stop, done) = (life.worker_stop.clone(), record("workers"));
        life.workers.spawn(async move {
            stop.cancelled().await;
            done();
        });
        life.shut_down(Duration::from_secs(5)).await;
        let order = order.lock().map(|o| o.clone()).unwrap_or_default();
        assert_eq!(order, ["request work", "peer API", "workers"]);
    }
}
