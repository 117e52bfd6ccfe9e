//! The write path.
//!
//! A write is a mutation of one partition (`storage::Mutation`): a row
//! put or delete, a range or partition delete, or a partition batch of
//! several; each replica applies it in one atomic write, and hints carry
//! it whole.
//!
//! 1. Find the key's replicas and which of them are up. If fewer are up
//!    than the level requires, answer `Unavailable` and send nothing.
//! 2. Timestamp the write (hybrid logical clock, or the client's).
//! 3. Send it to every live replica at once; answer as soon as `required`
//!    have acknowledged. Sends to the others carry on in the background, so
//!    every live replica gets the write even when the answer went early.
//! 4. If the deadline passes first, answer `Timeout` with how many acked:
//!    the write may still land. If so many replicas *refused* that the level
//!    cannot be met any more, answer `Failed` at once.
//! 5. A write the coordinator stamped asks each replica whether it already
//!    held a cell the write loses to (a read before the write, on the
//!    replica). If one of the acknowledging replicas did, the coordinator
//!    writes again, stamped above that cell, at most [`MAX_PUSHES`] times
//!    within the one write timeout (CockroachDB's "write too old" push).
//!    So a write acknowledged before another began is ordered before it
//!    when the two writes' levels overlap (W1 + W2 > N), even when the
//!    first coordinator's clock ran ahead of the second's: a replica in
//!    both write sets held the first when the second arrived.
//!
//! Replicas known to be down get a hint at once; replicas that fail or time
//! out get one when their attempt ends. At ANY a stored hint acknowledges,
//! whichever way the replica missed the write; hints are then as durable as
//! writes (`commitlog_sync`), since one may be the only copy. At ANY with no
//! replica up and no hint stored (hints full), the write fails with
//! `NotStored`: nothing was written.
//!
//! A client-supplied timestamp is folded into the clock (`observe`), so a
//! later server-stamped write is never older than it. A client timeout
//! longer than the node's own is capped by it: it bounds the background
//! replica sends too.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::tally::{Verdict, WriteTally};
use super::trace::{Trace, millis, note};
use super::{
    BatchRequest, ConsistencyLevel, Coordinator, CoordinatorError, ReplicaPlan, Target,
    WriteRequest,
};
use crate::clock::Timestamp;
use crate::identity::NodeId;
use crate::peer::{ReplicaError, WriteAck};
use crate::ring::Token;
use crate::storage::deletions::{Deletion, Deletions};
use crate::storage::{Cell, Mutation, WriteMode};

/// Times a coordinator-stamped write is written again above a newer cell a
/// replica reported (step 5), at most.
const MAX_PUSHES: usize = 2;

impl Coordinator {
    /// Writes a value or tombstone; returns its timestamp.
    pub async fn write(&self, request: WriteRequest) -> Result<Timestamp, CoordinatorError> {
        self.batch(request.into()).await
    }

    /// Writes a partition batch (one mutation: see `storage::Mutation`);
    /// returns its timestamp. A single write is a batch of one.
    pub async fn batch(&self, request: BatchRequest) -> Result<Timestamp, CoordinatorError> {
        request.validate(&self.settings.limits, self.clock.wall().micros())?;
        // A clock far from the majority's must not stamp writes; a write
        // the client stamped does not use it.
        if request.timestamp.is_none()
            && let Some(why) = self.offsets.as_ref().and_then(|o| o.refusal())
        {
            return Err(CoordinatorError::ClockOffset(why));
        }
        let view = self.view.load_full();
        let token = Token::of(&request.key);
        let trace = request.trace.clone();
        let local = view.local();
        // A write the coordinator stamps asks the replicas whether they
        // hold a row it loses to; one the client stamped keeps its
        // timestamp, whatever it loses to.
        // (Deletions merge by union, so nothing is newer than they are.)
        let server_stamped = request.timestamp.is_none() && request.has_rows();
        let mut timestamp = match request.timestamp {
            Some(timestamp) => {
                self.clock.observe(timestamp);
                timestamp
            }
            None => {
                // A batch's deletes go one microsecond before its puts:
                // draw that microsecond from the clock too, so that no
                // other write of this node shares it.
                if request.has_rows() && request.has_deletions() {
                    self.clock.now();
                }
                self.clock.now()
            }
        };
        // Built (and its bounds checked) before any replica is planned
        // for: an invalid batch is refused as such, whoever is up.
        let mut mutation = mutation(&request, token, timestamp, self.clock.wall().millis())?;
        let plan = self
            .plan(&view, token, request.level, true)
            .inspect_err(|error| note(&trace, local, || format!("not sent: {error}")))?;
        let timeout = request.timeout.map_or(self.settings.write_timeout, |t| {
            t.min(self.settings.write_timeout)
        });
        // Every attempt of the write shares its one timeout.
        let deadline = Instant::now() + timeout;
        let mut pushes = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = self
                .write_at(
                    &request,
                    &mutation,
                    timestamp,
                    &plan,
                    (left, server_stamped),
                )
                .await;
            note(&trace, local, || match &outcome {
                Ok(None) => format!("{} acknowledgements: the write is done", plan.required),
                Ok(Some(newer)) => format!(
                    "{} acknowledgements; a replica holds a newer cell (timestamp {newer})",
                    plan.required
                ),
                Err(error) => format!("the write failed: {error}"),
            });
            match outcome {
                Ok(Some(newer)) if server_stamped && pushes < MAX_PUSHES => {
                    // Step 5: write again above it.
                    pushes += 1;
                    self.clock.observe(newer);
                    timestamp = self.clock.now().max(newer.saturating_add(1));
                    mutation =
                        self::mutation(&request, token, timestamp, self.clock.wall().millis())?;
                    note(&trace, local, || {
                        format!("writing again above it, at timestamp {timestamp}")
                    });
                }
                Ok(_) => return Ok(timestamp),
                Err(error) => return Err(error),
            }
        }
    }

    /// One attempt of a write at `timestamp`: hints for the down replicas,
    /// then the live ones. `Some(newer)`: with `report_newer`, a replica
    /// that acknowledged held a cell the write loses to, the newest such.
    async fn write_at(
        &self,
        request: &BatchRequest,
        mutation: &Mutation,
        timestamp: Timestamp,
        plan: &ReplicaPlan,
        (timeout, report_newer): (Duration, bool),
    ) -> Result<Option<Timestamp>, CoordinatorError> {
        let trace = &request.trace;
        let local = self.view.load().local();
        let token = mutation.token;
        let any = request.level == ConsistencyLevel::Any;
        note(trace, local, || {
            let cells = match mutation.entries().len() {
                1 => String::new(),
                n => format!(", {n} cells"),
            };
            format!(
                "writing at {} (token {}, timestamp {timestamp}{cells}): {} live replicas, {} down, {} required",
                request.level,
                token.0,
                plan.alive.len(),
                plan.down.len(),
                plan.required
            )
        });
        let mut hinted = self.hint_all(&plan.down, mutation);
        for node in &plan.down {
            note(trace, *node, || "down: not sent".into());
        }
        if !plan.down.is_empty() {
            note(trace, local, || {
                format!(
                    "hints stored for {hinted} of {} down replicas",
                    plan.down.len()
                )
            });
        }
        if any && hinted > 0 {
            // At ANY a hint may be the only copy: as durable as a write.
            if let Some(hints) = &self.hints
                && let Err(error) = hints.make_durable().await
            {
                tracing::warn!(%error, "hints are not durable; they do not acknowledge");
                hinted = 0;
            }
        }
        if any && plan.alive.is_empty() && hinted == 0 {
            return Err(CoordinatorError::NotStored {
                reason: format!(
                    "hints for the {} down replicas are full or failed",
                    plan.down.len()
                ),
            });
        }
        let hint_acks = if any { hinted } else { 0 };
        let acks = (hint_acks, any);
        self.replicate(mutation.clone(), plan, timeout, acks, report_newer, trace)
            .await
    }

    /// Stores hints for replicas that are down; returns how many were kept.
    fn hint_all(&self, targets: &[NodeId], mutation: &Mutation) -> usize {
        let Some(hints) = &self.hints else {
            return 0;
        };
        let entries = mutation.borrowed();
        targets
            .iter()
            .filter(|node| match hints.store_entries(**node, &entries) {
                Ok(kept) => kept,
                Err(error) => {
                    tracing::warn!(%error, node = %node, "cannot store hint");
                    false
                }
            })
            .count()
    }

    /// Sends `mutation` to every live replica of `plan`; returns once
    /// `plan.required` acknowledged, counting `hint_acks` already, and (with
    /// `hints_ack`, at ANY) a hint stored for a replica that failed.
    pub(super) async fn replicate(
        &self,
        mutation: Mutation,
        plan: &ReplicaPlan,
        timeout: Duration,
        (hint_acks, hints_ack): (usize, bool),
        report_newer: bool,
        trace: &Option<Arc<Trace>>,
    ) -> Result<Option<Timestamp>, CoordinatorError> {
        let deadline = Instant::now() + timeout;
        let local = self.view.load().local();
        // Each replica's attempt reports its outcome, and whether a hint was
        // stored for it when it failed.
        type Outcome = (NodeId, Result<WriteAck, ReplicaError>, bool);
        let (done, mut acks_rx) = mpsc::channel::<Outcome>(plan.alive.len().max(1));
        for &node in &plan.alive {
            note(trace, node, || "sent the write".into());
            let send = self.transport.write_reporting(
                node,
                mutation.clone(),
                WriteMode::client(report_newer),
            );
            let trace = trace.clone();
            let done = done.clone();
            let hints = self.hints.clone().filter(|_| node != local);
            let mutation = mutation.clone();
            // A task per replica: it outlives this call when the answer goes
            // out early, so slower replicas still get the write (or a hint).
            self.replica_sends.spawn(async move {
                let sent = Instant::now();
                let result = match tokio::time::timeout(timeout, send).await {
                    Ok(result) => result,
                    Err(_) => Err(ReplicaError::Timeout),
                };
                note(&trace, node, || match &result {
                    Ok(WriteAck { newer: None }) => {
                        format!("acknowledged in {}", millis(sent.elapsed()))
                    }
                    Ok(WriteAck { newer: Some(newer) }) => format!(
                        "acknowledged in {}, holding a newer cell (timestamp {newer})",
                        millis(sent.elapsed())
                    ),
                    Err(error) => {
                        format!("not acknowledged after {}: {error}", millis(sent.elapsed()))
                    }
                });
                let mut hinted = false;
                if let Err(error) = &result {
                    tracing::debug!(%node, %error, "replica write not acknowledged");
                    // A replica that refused the write for good would
                    // refuse its hint too.
                    let refused = matches!(error, ReplicaError::Refused(_));
                    if let Some(hints) = hints.filter(|_| !refused) {
                        match hints.store_entries(node, &mutation.borrowed()) {
                            Ok(kept) => hinted = kept,
                            Err(error) => tracing::warn!(%error, %node, "cannot store hint"),
                        }
                        note(&trace, node, || {
                            if hinted {
                                "a hint is stored for it"
                            } else {
                                "no hint could be stored"
                            }
                            .into()
                        });
                        // Only at ANY does the hint acknowledge, and then
                        // it must be as durable as a write.
                        if hinted && hints_ack && hints.make_durable().await.is_err() {
                            hinted = false;
                        }
                    }
                }
                let _ = done.send((node, result, hinted)).await;
            });
        }
        drop(done);

        // The arithmetic is plain data (`tally`); this loop only waits.
        let mut tally = WriteTally::new(plan.required, plan.alive.len(), hint_acks, hints_ack);
        let mut verdict = tally.verdict();
        // The newest cell an acknowledging replica held that the write
        // loses to. With R + W > N, a write acknowledged before this one
        // began is on some replica among the first W to acknowledge.
        let mut newer: Option<Timestamp> = None;
        loop {
            match verdict {
                Verdict::Met => return Ok(newer),
                Verdict::Unmet(unmet) => return Err(unmet.into()),
                Verdict::Pending => {}
            }
            verdict = match tokio::time::timeout_at(deadline, acks_rx.recv()).await {
                Err(_) => return Err(tally.timed_out().into()),
                Ok(None) => Verdict::Unmet(tally.unmet()),
                Ok(Some((node, answer, hinted))) => {
                    if let Ok(WriteAck { newer: Some(held) }) = answer {
                        newer = newer.max(Some(held));
                    }
                    tally.record(node, answer.map(drop), hinted)
                }
            };
        }
    }
}

/// The mutation `request` writes at `timestamp` to the partition whose
/// token is `token`; `now_ms` is the wall clock's Unix milliseconds
/// (deletion times, expiries). Its range and partition deletes merge into one
/// deletions entry, stamped one microsecond before its rows when it has
/// any (see [`BatchRequest`]).
fn mutation(
    request: &BatchRequest,
    token: Token,
    timestamp: Timestamp,
    now_ms: i64,
) -> Result<Mutation, CoordinatorError> {
    let now = now_ms.div_euclid(1000);
    let deletion = Deletion {
        timestamp: if request.has_rows() {
            timestamp.saturating_sub(1)
        } else {
            timestamp
        },
        deleted_at: now,
    };
    let mut deletions: Option<Deletions> = None;
    let mut entries = Vec::with_capacity(request.ops.len() + 1);
    for op in &request.ops {
        let more = match (&op.target, &op.value) {
            (Target::Row(sort), value) => {
                let cell = match value {
                    Some(value) => match op.ttl_ms.filter(|&ttl| ttl > 0) {
                        Some(ttl) => {
                            let ttl = i64::try_from(ttl).unwrap_or(i64::MAX);
                            let at = now_ms.saturating_add(ttl);
                            Cell::expiring_at_ms(timestamp, value.clone(), at)
                        }
                        None => Cell::live(timestamp, value.clone(), None),
                    },
                    None => Cell::tombstone(timestamp, now),
                };
                let row = crate::storage::key::row_key(&request.key, sort);
                entries.push((Bytes::from(row), cell));
                continue;
            }
            (Target::Rows { start, end }, _) => {
                Deletions::of_range(start.clone(), end.clone(), deletion)
            }
            (Target::Partition, _) => Deletions::of_partition(deletion),
        };
        match &mut deletions {
            Some(union) => union.merge(&more),
            None => deletions = Some(more),
        }
    }
    let invalid = CoordinatorError::InvalidArgument;
    if let Some(deletions) = deletions {
        use crate::storage::deletions::{MAX_DELETIONS_BYTES, MAX_RANGE_DELETIONS};
        if deletions.ranges.len() > MAX_RANGE_DELETIONS
            || deletions.encoded_len() > MAX_DELETIONS_BYTES
        {
            return Err(invalid(format!(
                "a batch deletes {} ranges in {} bytes; a partition holds at most {MAX_RANGE_DELETIONS} range deletions and {MAX_DELETIONS_BYTES} bytes of them",
                deletions.ranges.len(),
                deletions.encoded_len()
            )));
        }
        let cell = deletions
            .to_cell()
            .ok_or_else(|| invalid("nothing to delete".into()))?;
        let key = crate::storage::key::deletions_key(&request.key);
        entries.insert(0, (Bytes::from(key), cell));
    }
    // Replicas and hint replay bound a write of several cells by its keys
    // and values, deletions included: hold the batch to the same bound
    // before anything is sent.
    let bytes: usize = entries
        .iter()
        .map(|(key, cell)| key.len() + cell.value.len())
        .sum();
    if entries.len() > 1 && bytes > super::MAX_BATCH_BYTES {
        return Err(invalid(format!(
            "a batch holds {bytes} bytes of row keys, values and deletions; the limit is {} bytes (a single put may be larger)",
            super::MAX_BATCH_BYTES
        )));
    }
    Ok(Mutation::new(token, entries))
}
