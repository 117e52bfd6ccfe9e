//! Repair runs: every range this node holds (or is primary for), against
//! every other live replica, with progress; and the background scheduler.
//!
//! For each range with replicas {me, B, C} the runner syncs me↔B, me↔C and
//! then me↔B again: after the first two syncs this node and C hold the
//! union of all three, and the last one hands B whatever only C had. So one
//! run on one node leaves every live replica of its ranges identical.
//!
//! The scheduler repairs each node's *primary* ranges (those it owns the
//! first replica of) every `anti_entropy_interval_ms`, so every range is
//! repaired once per interval across the cluster. `ringkv repair` repairs
//! all of a node's ranges at once. One run at a time per node.
//!
//! A range that fails (a peer errs or times out) is recorded in the run's
//! progress and skipped; the run goes on with the other ranges, and only a
//! run with no failed range and no skipped replica counts as completed.
//! Progress is published on a `watch` channel, which never blocks the run:
//! a client that stops reading (Ctrl-C on `ringkv repair`) cannot stall a
//! repair that holds the one-at-a-time lock.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

use super::session::{SyncError, SyncStats};
use crate::clock::WallClock;
use crate::identity::NodeId;
use crate::membership::ViewHandle;
use crate::metrics::{REPAIR_BYTES, REPAIR_KEYS, REPAIR_RANGES, REPAIR_RANGES_FAILED};
use crate::peer::LocalReplica;
use crate::peer::RepairTransport;
use crate::peer::ReplicaError;
use crate::ring::TokenRange;
use crate::storage::{Storage, StorageError};
use crate::workers::Worker;

const LAST_COMPLETED_KEY: &str = "repair.last_completed";

/// When this node last completed a repair (Unix seconds; 0: never).
pub fn load_last_completed(storage: &dyn Storage) -> Result<i64, StorageError> {
    Ok(storage
        .meta_get(LAST_COMPLETED_KEY)?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

/// Remembers when this node last completed a repair.
pub fn save_last_completed(storage: &dyn Storage, seconds: i64) -> Result<(), StorageError> {
    storage.meta_put(LAST_COMPLETED_KEY, seconds.to_string().as_bytes())
}

/// Which ranges a run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Ranges this node is the first replica of.
    Primary,
    /// Every range this node holds a replica of.
    All,
}

/// Progress of a run, published after each range.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Progress {
    pub ranges_total: u32,
    /// Ranges finished, failed ones included.
    pub ranges_done: u32,
    pub replicas_skipped: u32,
    /// Ranges that could not be synced with some replica, and why.
    pub failed: Vec<RangeFailure>,
    pub stats: SyncStats,
    pub elapsed: Duration,
    pub done: bool,
}

/// A range a run could not sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeFailure {
    pub range: TokenRange,
    pub error: String,
}

impl Progress {
    pub fn keys_streamed(&self) -> u64 {
        self.stats.keys_received + self.stats.keys_sent
    }

    pub fn bytes_streamed(&self) -> u64 {
        self.stats.bytes_received + self.stats.bytes_sent
    }
}

/// Runs repairs for this node.
pub struct Repairer {
    local: NodeId,
    view: ViewHandle,
    replica: LocalReplica,
    transport: Arc<dyn RepairTransport>,
    pub(super) running: Mutex<()>,
    /// Set while a run waits for the running one: at most one waits, and
    /// a run asked for meanwhile is refused ([`SyncError::Busy`]), so
    /// asking and cancelling in a loop queues nothing.
    pub(super) waiting: std::sync::atomic::AtomicBool,
    /// Unix seconds of the last run that reached every replica (0: none).
    completed: watch::Sender<i64>,
    /// Ranges the last run could not sync (empty after a clean run).
    failed: watch::Sender<Vec<TokenRange>>,
    /// Progress of the running run, or of the last one.
    latest: watch::Sender<Progress>,
    /// Tells when a run completed.
    wall: WallClock,
}

impl Repairer {
    /// A repairer; `last_completed` is when this node last completed a
    /// repair (Unix seconds, 0 for never).
    pub fn new(
        local: NodeId,
        view: ViewHandle,
        replica: LocalReplica,
        transport: Arc<dyn RepairTransport>,
        last_completed: i64,
    ) -> Self {
        Self {
            local,
            view,
            replica,
            transport,
            running: Mutex::new(()),
            waiting: std::sync::atomic::AtomicBool::new(false),
            completed: watch::Sender::new(last_completed),
            failed: watch::Sender::new(Vec::new()),
            latest: watch::Sender::new(Progress::default()),
            wall: WallClock::system(),
        }
    }

    /// Reads wall time from `wall` instead of the system clock.
    pub fn with_clock(mut self, wall: WallClock) -> Self {
        self.wall = wall;
        self
    }

    /// Unix seconds of the last complete run (0: never).
    pub fn last_completed(&self) -> i64 {
        *self.completed.borrow()
    }

    /// Whether a run is going on.
    pub fn is_running(&self) -> bool {
        self.running.try_lock().is_err()
    }

    /// Progress of the running run, or of the last one (a run stopped
    /// midway, e.g. by a client that went away, stays as it stopped).
    pub fn latest(&self) -> Progress {
        self.latest.borrow().clone()
    }

    /// The running run, as the repair worker's status (nothing when none
    /// runs).
    pub fn in_words(&self) -> Vec<String> {
        if !self.is_running() {
            return Vec::new();
        }
        let run = self.latest();
        vec![format!(
            "repair: {} of {} ranges compared, {} keys ({} bytes) streamed",
            run.ranges_done,
            run.ranges_total,
            run.keys_streamed(),
            run.bytes_streamed()
        )]
    }

    /// Follows the ranges each run could not sync.
    pub fn subscribe_failures(&self) -> watch::Receiver<Vec<TokenRange>> {
        self.failed.subscribe()
    }

    /// Follows completions of runs that reached every replica.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.completed.subscribe()
    }

    /// The ranges of `scope` and their other replicas.
    fn plan(&self, scope: Scope) -> Vec<(TokenRange, Vec<NodeId>)> {
        let view = self.view.load_full();
        let ring = view.ring();
        let plan: Vec<(TokenRange, Vec<NodeId>)> = ring
            .ranges()
            .filter(|(_, replicas)| match scope {
                Scope::Primary => replicas.first() == Some(&self.local),
                Scope::All => replicas.contains(&self.local),
            })
            .map(|(range, replicas)| {
                let others = replicas
                    .iter()
                    .copied()
                    .filter(|r| *r != self.local)
                    .collect();
                (range, others)
            })
            .collect();
        // Trees of ranges this node no longer holds are dropped.
        self.replica.cache.retain(&ring.ranges_of(&self.local));
        plan
    }

    /// Repairs `scope`, publishing progress after each range.
    pub async fn run(
        &self,
        scope: Scope,
        progress: Option<watch::Sender<Progress>>,
    ) -> Result<Progress, SyncError> {
        let _one_at_a_time = match self.running.try_lock() {
            Ok(running) => running,
            Err(_) => {
                use std::sync::atomic::Ordering;
                if self.waiting.swap(true, Ordering::AcqRel) {
                    return Err(SyncError::Busy);
                }
                // Clears the flag however the wait ends (the caller may
                // drop this future).
                struct Waiting<'a>(&'a std::sync::atomic::AtomicBool);
                impl Drop for Waiting<'_> {
                    fn drop(&mut self) {
                        self.0.store(false, std::sync::atomic::Ordering::Release);
                    }
                }
                let _waiting = Waiting(&self.waiting);
                self.running.lock().await
            }
        };
        let started = Instant::now();
        let plan = self.plan(scope);
        let mut state = Progress {
            ranges_total: plan.len() as u32,
            ..Progress::default()
        };
        self.latest.send_replace(state.clone());
        // Peers that did not answer in this run (deadline, unreachable):
        // later ranges do not wait on them again.
        let mut silent: HashSet<NodeId> = HashSet::new();
        for (range, others) in plan {
            let view = self.view.load_full();
            let (live, down): (Vec<NodeId>, Vec<NodeId>) =
                others.into_iter().partition(|n| view.is_alive(n));
            state.replicas_skipped += down.len() as u32;
            let (live, gone): (Vec<NodeId>, Vec<NodeId>) =
                live.into_iter().partition(|n| !silent.contains(n));
            if let Some(peer) = gone.first() {
                state.failed.push(RangeFailure {
                    range,
                    error: format!("peer {peer} did not answer earlier in this run"),
                });
                metrics::counter!(REPAIR_RANGES_FAILED).increment(1);
            }
            // me↔B, me↔C, then me↔B again (see the module docs).
            let rounds = live
                .iter()
                .chain(live.iter().take(live.len().saturating_sub(1)));
            for peer in rounds {
                match self
                    .replica
                    .sync(self.transport.as_ref(), *peer, range)
                    .await
                {
                    Ok(stats) => {
                        metrics::counter!(REPAIR_KEYS)
                            .increment(stats.keys_received + stats.keys_sent);
                        metrics::counter!(REPAIR_BYTES)
                            .increment(stats.bytes_received + stats.bytes_sent);
                        state.stats.add(stats);
                    }
                    Err(error) => {
                        if let SyncError::Peer {
                            node,
                            error: ReplicaError::Timeout | ReplicaError::Unreachable(_),
                        } = &error
                        {
                            silent.insert(*node);
                        }
                        // Skip the rest of this range; the next run retries it.
                        tracing::warn!(%range, %error, "repair of a range failed; going on");
                        metrics::counter!(REPAIR_RANGES_FAILED).increment(1);
                        state.failed.push(RangeFailure {
                            range,
                            error: error.to_string(),
                        });
                        break;
                    }
                }
            }
            metrics::counter!(REPAIR_RANGES).increment(1);
            state.ranges_done += 1;
            state.elapsed = started.elapsed();
            self.latest.send_replace(state.clone());
            if let Some(tx) = &progress {
                tx.send_replace(state.clone());
            }
        }
        state.done = true;
        state.elapsed = started.elapsed();
        if state.replicas_skipped == 0 && state.failed.is_empty() {
            self.completed.send_replace(self.wall.seconds());
        }
        let mut failed: Vec<TokenRange> = state.failed.iter().map(|f| f.range).collect();
        failed.dedup();
        self.failed.send_if_modified(|last| {
            let changed = *last != failed;
            *last = failed;
            changed
        });
        self.latest.send_replace(state.clone());
        if let Some(tx) = &progress {
            tx.send_replace(state.clone());
        }
        tracing::info!(
            ?scope,
            ranges = state.ranges_done,
            leaves_differing = state.stats.leaves_differing,
            keys_streamed = state.keys_streamed(),
            bytes_streamed = state.bytes_streamed(),
            skipped = state.replicas_skipped,
            failed = state.failed.len(),
            elapsed_ms = state.elapsed.as_millis() as u64,
            "repair finished"
        );
        Ok(state)
    }
}

/// Repairs this node's primary ranges every `interval` until `stop`.
pub async fn run_scheduler(
    repairer: Arc<Repairer>,
    interval: Duration,
    worker: Worker,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: wait one interval
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let outcome = tokio::select! {
            outcome = repairer.run(Scope::Primary, None) => outcome,
            _ = stop.cancelled() => return,
        };
        match outcome {
            Err(error) => {
                tracing::warn!(%error, "background repair failed; retrying next interval");
                worker.report(format!("a scheduled repair failed: {error}"));
            }
            // Each failed range was logged; the worker keeps the gist.
            Ok(run) => {
                if let Some(first) = run.failed.first() {
                    worker.report(format!(
                        "{} of {} ranges could not be repaired, the first {}: {}",
                        run.failed.len(),
                        run.ranges_total,
                        first.range,
                        first.error
                    ));
                }
            }
        }
    }
}
