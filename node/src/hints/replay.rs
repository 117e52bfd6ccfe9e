//! Hint replay: handing held writes to a replica that is back.
//!
//! Every second the replayer looks at the nodes it holds hints for:
//! - a node that left the cluster (or is unknown to it) loses its hints;
//! - hints older than the window (`max_hint_window_ms`, never more than
//!   `gc_grace`) are dropped: replaying them could bring back data whose
//!   tombstone has been purged, and anti-entropy covers them anyway;
//! - a node that is up gets its hints, oldest first, in batches, at most
//!   `hint_replay_throttle_kb` per second, each batch deleted once the
//!   node acknowledged it. A failed batch stops replay to that node until
//!   the next round.
//!
//! Hints carry the original write's timestamp, so replay after newer writes
//! is harmless: LWW keeps the newer value.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::store::{DropReason, Hint, HintStore, count_dropped};
use crate::clock::wall_clock_micros;
use crate::identity::NodeId;
use crate::membership::{NodeStatus, ViewHandle};
use crate::metrics::HINTS_REPLAYED;
use crate::repair::RepairTransport;

/// How often the replayer looks for work.
const ROUND: Duration = Duration::from_secs(1);
/// Hints per replay batch.
const BATCH: usize = 200;

/// Settings of replay.
#[derive(Debug, Clone, Copy)]
pub struct ReplaySettings {
    /// Hints older than this are dropped.
    pub window: Duration,
    /// Replay bandwidth, bytes per second, per node.
    pub throttle_bytes_per_second: u64,
}

/// The replay worker; runs until `stop`.
pub async fn run_replay(
    hints: Arc<HintStore>,
    view: ViewHandle,
    transport: Arc<dyn RepairTransport>,
    settings: ReplaySettings,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(ROUND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        for target in hints.targets() {
            let outcome = tokio::select! {
                outcome = replay_to(&hints, &view, transport.as_ref(), settings, target) => outcome,
                _ = stop.cancelled() => return,
            };
            if let Err(error) = outcome {
                tracing::debug!(node = %target, %error, "hint replay paused");
            }
        }
    }
}

fn expired(hint: &Hint, window: Duration) -> bool {
    let window = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    hint.created.saturating_add(window) < wall_clock_micros()
}

/// One round for one target.
async fn replay_to(
    hints: &HintStore,
    view: &ViewHandle,
    transport: &dyn RepairTransport,
    settings: ReplaySettings,
    target: NodeId,
) -> Result<(), String> {
    let view = view.load_full();
    let Some(member) = view.member(&target) else {
        hints
            .drop_all(target, DropReason::Left)
            .map_err(|e| e.to_string())?;
        return Ok(());
    };
    if member.status == NodeStatus::Left {
        hints
            .drop_all(target, DropReason::Left)
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let alive = view.is_alive(&target);
    let mut replayed = 0u64;
    loop {
        let batch = hints.oldest(target, BATCH).map_err(|e| e.to_string())?;
        if batch.is_empty() {
            break;
        }
        let (old, fresh): (Vec<Hint>, Vec<Hint>) =
            batch.into_iter().partition(|h| expired(h, settings.window));
        if !old.is_empty() {
            count_dropped(DropReason::Expired, old.len() as u64);
            hints.remove(target, &old).map_err(|e| e.to_string())?;
        }
        if !alive {
            // Down: only sweep the expired hints at the front.
            if fresh.is_empty() {
                continue;
            }
            break;
        }
        if fresh.is_empty() {
            continue;
        }
        let bytes: u64 = fresh.iter().map(Hint::size).sum();
        let entries = fresh
            .iter()
            .map(|h| (h.key.clone(), h.cell.clone()))
            .collect();
        transport
            .write_batch(target, entries)
            .await
            .map_err(|e| e.to_string())?;
        hints.remove(target, &fresh).map_err(|e| e.to_string())?;
        metrics::counter!(HINTS_REPLAYED).increment(fresh.len() as u64);
        replayed += fresh.len() as u64;
        let pause = Duration::from_secs_f64(
            bytes as f64 / settings.throttle_bytes_per_second.max(1) as f64,
        );
        tokio::time::sleep(pause).await;
    }
    if replayed > 0 {
        tracing::info!(node = %member.name, replayed, "replayed hints");
    }
    Ok(())
}
