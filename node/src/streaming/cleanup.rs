//! Cleanup: deleting the ranges this node no longer replicates, range by
//! range, each decided in the same step as its delete (see the module
//! docs of `streaming`).

use std::sync::Arc;

use super::{Topology, TopologyError};
use crate::membership::ClusterView;
use crate::ring::TokenRange;
use crate::storage::Deleted;

/// What cleanup removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub ranges: usize,
    pub deleted: Deleted,
}

impl Topology {
    /// Waits until the ring has been settled for `cleanup_settle` (see
    /// there), and returns the view then; refuses when it does not settle
    /// within the agreement timeout.
    async fn await_settled(
        &self,
        mut view: Arc<ClusterView>,
    ) -> Result<Arc<ClusterView>, TopologyError> {
        let deadline = tokio::time::Instant::now() + self.settings.agreement_timeout;
        loop {
            let settled = self.membership.settled_for();
            if settled.is_some_and(|d| d >= self.settings.cleanup_settle) {
                return Ok(view);
            }
            // A change that starts meanwhile refuses cleanup at once.
            if let Some(what) = view.first_change() {
                return Err(TopologyError::InProgress(what));
            }
            if tokio::time::Instant::now() >= deadline {
                let why = if view.topology_laggards().is_empty() {
                    format!(
                        "the ring did not stay settled for {:?} within {:?}",
                        self.settings.cleanup_settle, self.settings.agreement_timeout
                    )
                } else {
                    view.laggards_in_words()
                };
                return Err(TopologyError::InProgress(why));
            }
            let rest = settled.map_or(self.settings.cleanup_settle, |d| {
                self.settings.cleanup_settle.saturating_sub(d)
            });
            tokio::time::sleep(rest.min(self.membership.interval())).await;
            view = self.membership.view();
        }
    }

    /// Deletes the local data of every range this node does not replicate.
    pub async fn cleanup(&self) -> Result<CleanupReport, TopologyError> {
        let _busy = self.busy()?;
        let view = self.membership.view();
        if let Some(what) = view.first_change() {
            return Err(TopologyError::InProgress(what));
        }
        if !view.ring().nodes().contains(&self.local) {
            return Err(TopologyError::Refused(
                "this node owns no tokens in the ring; cleanup would delete everything".into(),
            ));
        }
        let view = self.await_settled(view).await?;
        let ring = view.ring();
        // Ranges this node does not replicate, neighbours merged.
        let mut unowned: Vec<TokenRange> = Vec::new();
        for (range, replicas) in ring.ranges() {
            if replicas.contains(&self.local) {
                continue;
            }
            match unowned.last_mut() {
                Some(last) if last.end == range.start => last.end = range.end,
                _ => unowned.push(range),
            }
        }
        let mut report = CleanupReport {
            ranges: unowned.len(),
            ..CleanupReport::default()
        };
        for range in unowned {
            // A change that started meanwhile may stream into these ranges
            // or send this node writes for them: decide range by range, in
            // the same step as the delete as far as writes are concerned
            // (`delete_range_if`), so that nothing written after the
            // decision is deleted.
            let engine = self.store.engine().clone();
            let (membership, ring) = (self.membership.clone(), ring.clone());
            let settle = self.settings.cleanup_settle;
            let deleted = crate::storage::blocking(move || {
                engine.delete_range_if(range, &|| {
                    let now = membership.view();
                    now.transition().is_none()
                        && Arc::ptr_eq(now.ring(), &ring)
                        && membership.settled_for().is_some_and(|d| d >= settle)
                })
            })
            .await??;
            let Some(deleted) = deleted else {
                let now = self.membership.view();
                return Err(TopologyError::InProgress(
                    now.change_besides(&[self.local])
                        .unwrap_or_else(|| "the ring changed during cleanup".into()),
                ));
            };
            report.deleted.keys += deleted.keys;
            report.deleted.bytes += deleted.bytes;
        }
        metrics::counter!(crate::metrics::CLEANUP_BYTES).increment(report.deleted.bytes);
        tracing::info!(
            ranges = report.ranges,
            keys = report.deleted.keys,
            bytes = report.deleted.bytes,
            "cleanup done"
        );
        Ok(report)
    }
}
