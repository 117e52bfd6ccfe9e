//! Workers that gossip what this node learns about itself: its disk's
//! health, the ranges its repairs could not sync, and when its last repair
//! completed.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::membership::Membership;
use crate::membership::keys;
use crate::repair::save_last_completed;
use crate::storage::{DiskFailurePolicy, Storage};

/// Gossips whether this node's disk accepts writes, so `status` shows it
/// everywhere; under `disk_failure_policy = stop` a failure stops the node.
pub(super) async fn announce_disk(
    mut changes: tokio::sync::watch::Receiver<Option<String>>,
    membership: Arc<Membership>,
    policy: DiskFailurePolicy,
    (node_stop, stopped): (CancellationToken, Arc<std::sync::OnceLock<String>>),
    stop: CancellationToken,
) {
    loop {
        let problem = changes.borrow_and_update().clone();
        if let Some(cause) = &problem
            && policy == DiskFailurePolicy::Stop
        {
            tracing::error!(cause, "disk_failure_policy = stop: shutting down");
            let _ = stopped.set(format!(
                "stopped by disk_failure_policy = stop: the disk refuses writes ({cause})"
            ));
            node_stop.cancel();
        }
        membership
            .announce(vec![(keys::DISK, problem.unwrap_or_default())])
            .await;
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}

/// Stops this node when another live node has its id and started first
/// (see `membership::twins`).
pub(super) async fn stop_for_twin(
    mut twins: tokio::sync::watch::Receiver<Option<crate::membership::twins::Twin>>,
    (node_stop, fatal): (CancellationToken, Arc<std::sync::OnceLock<String>>),
    stop: CancellationToken,
) {
    loop {
        let twin = twins.borrow_and_update().clone();
        if let Some(twin) = twin.filter(|t| t.this_is_newer) {
            let _ = fatal.set(format!(
                "another live node (gossip address {}) has this node's id and started earlier; this node refuses to serve (give one of them an empty data directory)",
                twin.gossip_addr
            ));
            node_stop.cancel();
            return;
        }
        tokio::select! {
            changed = twins.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}

/// Gossips the ranges each repair run could not sync, so `status` shows
/// them on every node.
pub(super) async fn announce_repair_failures(
    mut failed: tokio::sync::watch::Receiver<Vec<crate::ring::TokenRange>>,
    membership: Arc<Membership>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            changed = failed.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
        let ranges: Vec<(i64, i64)> = failed
            .borrow_and_update()
            .iter()
            .map(|r| (r.start.0, r.end.0))
            .collect();
        membership
            .announce(vec![(keys::REPAIR_FAILED, keys::encode_ranges(&ranges))])
            .await;
    }
}

/// Remembers and gossips each completed repair, so `status` can show when
/// every node last completed one.
pub(super) async fn announce_repairs(
    mut completed: tokio::sync::watch::Receiver<i64>,
    membership: Arc<Membership>,
    engine: Arc<dyn Storage>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            changed = completed.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
        let seconds = *completed.borrow_and_update();
        if let Err(error) = save_last_completed(engine.as_ref(), seconds) {
            tracing::warn!(%error, "cannot remember the last repair time");
        }
        membership
            .announce(vec![(keys::LAST_REPAIR, seconds.to_string())])
            .await;
    }
}
