//! What a change copies, and the copying: the (source, target) pairs of
//! each moving range, streamed page by page, checkpointed, throttled and
//! retried.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::change::Operation;
use super::throttle::Throttle;
use super::{Checkpoint, Movement, SourceError, StreamHandle, Topology, TopologyError, plan};
use crate::identity::NodeId;
use crate::membership::Change;
use crate::peer::ReplicaError;
use crate::ring::TokenRange;

/// Attempts of one page before a stream fails.
const PAGE_ATTEMPTS: u32 = 30;
/// Longest pause between attempts.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// Ranges to copy, by (source, target).
type Copies = BTreeMap<(NodeId, NodeId), Vec<TokenRange>>;

/// Every live replica that keeps `movement`'s range, other than `target`;
/// an error when there is none.
fn every_live_keeper(
    movement: &Movement,
    target: NodeId,
    live: &impl Fn(&NodeId) -> bool,
) -> Result<Vec<NodeId>, SourceError> {
    let keepers: Vec<NodeId> = movement
        .kept
        .iter()
        .filter(|n| **n != target && live(n))
        .copied()
        .collect();
    if keepers.is_empty() {
        return Err(SourceError::NoLiveReplica {
            range: movement.range,
        });
    }
    Ok(keepers)
}

impl Topology {
    /// The copies `change` needs, from the current view: (source, target)
    /// pairs and their ranges. A join streams each range from the replica
    /// giving it up; a replacement and a removal, whose node giving the
    /// ranges up is dead, from every live replica that keeps them (a write
    /// acknowledged by a quorum may be on only one of them); a
    /// decommission from this node.
    fn copies(&self, change: &Change) -> Result<Copies, SourceError> {
        let view = self.membership.view();
        let mut copies = Copies::new();
        let Some(t) = view.transition() else {
            return Ok(copies);
        };
        let live = |n: &NodeId| view.is_alive(n);
        for movement in plan::movements(&t.old, &t.new) {
            let range = movement.range;
            match change {
                Change::Join(_) if movement.to.contains(&self.local) => {
                    let (source, consistent) = plan::source(
                        &movement,
                        true,
                        self.settings.allow_inconsistent_source,
                        |n| *n != self.local && live(n),
                    )?;
                    if !consistent {
                        tracing::warn!(%range, %source, "streaming from a replica other than the one giving the range up (--allow-inconsistent-source): a write acknowledged by a quorum may be missing until repair");
                    }
                    copies.entry((source, self.local)).or_default().push(range);
                }
                Change::Replace { .. } if movement.to.contains(&self.local) => {
                    let sources = every_live_keeper(&movement, self.local, &live)?;
                    for source in sources {
                        copies.entry((source, self.local)).or_default().push(range);
                    }
                }
                Change::Leave(node) if movement.from.contains(node) => {
                    for target in &movement.to {
                        copies.entry((self.local, *target)).or_default().push(range);
                    }
                }
                Change::Remove { node, .. } if movement.from.contains(node) => {
                    for target in &movement.to {
                        for source in every_live_keeper(&movement, *target, &live)? {
                            copies.entry((source, *target)).or_default().push(range);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(copies)
    }

    /// Streams what `change` needs once it is the only change in progress;
    /// plans again and streams what is new whenever the plan changed
    /// meanwhile (a source died, another change withdrew late). Copies the
    /// checkpoint holds are not repeated.
    pub(super) async fn stream_change(
        &self,
        operation: Operation,
        checkpoint: &mut Checkpoint,
    ) -> Result<(), TopologyError> {
        let change = operation.change(self.local);
        let ignoring = &operation.ignoring();
        let mut streamed: Option<Copies> = None;
        let deadline = tokio::time::Instant::now() + self.settings.agreement_timeout;
        loop {
            self.await_alone(ignoring).await?;
            let plan = match self.copies(&change) {
                Ok(plan) => plan,
                // A source that is down (paused, partitioned, restarting)
                // is waited for, up to the agreement timeout.
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(%error, "waiting for a streaming source");
                    tokio::time::sleep(self.membership.interval()).await;
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            if streamed.as_ref() == Some(&plan) {
                return Ok(());
            }
            for (&(source, target), ranges) in &plan {
                self.stream(operation.name(), source, target, ranges, checkpoint)
                    .await?;
            }
            streamed = Some(plan);
        }
    }

    /// Copies `ranges` from `source` to `target`, skipping what the
    /// checkpoint says is done.
    async fn stream(
        &self,
        operation: &'static str,
        source: NodeId,
        target: NodeId,
        ranges: &[TokenRange],
        checkpoint: &mut Checkpoint,
    ) -> Result<(), TopologyError> {
        let handle = self
            .streams
            .start(operation, (source, target), ranges.len(), self.local);
        let outcome = self
            .copy_ranges(&handle, source, target, ranges, checkpoint)
            .await;
        handle.finish(outcome.as_ref().err().map(ToString::to_string));
        outcome
    }

    async fn copy_ranges(
        &self,
        handle: &StreamHandle,
        source: NodeId,
        target: NodeId,
        ranges: &[TokenRange],
        checkpoint: &mut Checkpoint,
    ) -> Result<(), TopologyError> {
        let mut throttle = Throttle::new(self.settings.throughput_bytes_per_second);
        let engine = self.store.engine().clone();
        for range in ranges {
            let pair = (source, target);
            if checkpoint.is_done(*range, pair) {
                handle.range_done();
                continue;
            }
            let mut after = checkpoint.resume_after(*range, pair);
            let failed = |error| TopologyError::Stream {
                range: *range,
                from: source,
                to: target,
                error,
            };
            loop {
                let (cells, more) =
                    retrying(|| self.transport.stream_range(source, *range, after.clone()))
                        .await
                        .map_err(failed)?;
                if let Some((last, _)) = cells.last() {
                    let last: Bytes = last.clone();
                    let keys = cells.len() as u64;
                    let bytes: u64 = cells
                        .iter()
                        .map(|(k, c)| (k.len() + c.encoded_len()) as u64)
                        .sum();
                    for (_, cell) in &cells {
                        self.clock.observe(cell.timestamp);
                    }
                    retrying(|| self.transport.write_batch(target, cells.clone()))
                        .await
                        .map_err(failed)?;
                    handle.copied(keys, bytes);
                    checkpoint.advance(&engine, *range, pair, &last).await?;
                    throttle.pace(bytes).await;
                    after = Some(last);
                }
                if !more {
                    break;
                }
            }
            checkpoint.finish(&engine, *range, pair).await?;
            handle.range_done();
        }
        Ok(())
    }
}

/// Runs `call` until it succeeds, up to [`PAGE_ATTEMPTS`] times with
/// growing pauses: a peer that restarts mid-stream is waited for.
async fn retrying<T>(
    mut call: impl FnMut() -> BoxFuture<'static, Result<T, ReplicaError>>,
) -> Result<T, ReplicaError> {
    let mut pause = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if attempt >= PAGE_ATTEMPTS => return Err(error),
            Err(error) => {
                tracing::debug!(%error, attempt, "stream page failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
                attempt += 1;
            }
        }
    }
}
