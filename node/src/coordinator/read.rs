//! The read path.
//!
//! Which replica to ask next and when the read has its answer is decided
//! by [`ReadRound`](super::round::ReadRound), plain data; this file sends
//! the asks and waits.
//!
//! 1. Find the key's live replicas; `Unavailable` if too few.
//! 2. Ask `required` of them: this node first when it is a replica (no
//!    hop), the others in random order to spread load. The first is asked
//!    for data, the rest only for a digest. A replica that fails is replaced
//!    by a spare live replica, if any.
//! 3. If every digest matches the data, answer.
//! 4. Otherwise read full data from every replica that answered, resolve
//!    with LWW, write the winner back to the replicas that were stale and
//!    wait for those writes (blocking read repair: a later read at the same
//!    level cannot see the older value again), then answer.
//! 5. When they agreed, with probability `read_repair_chance`, compare the
//!    live replicas that were not asked in the background and repair them.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use rand::Rng;
use rand::seq::SliceRandom;

use super::round::{ReadRound, Step, resolve};
use super::trace::{Trace, millis, note};
use super::{Coordinator, CoordinatorError, ReadRequest, ReadResult};
use crate::identity::NodeId;
use crate::membership::ClusterView;
use crate::peer::{ReadReply, ReplicaError, ReplicaTransport};
use crate::ring::Token;
use crate::storage::Cell;

type Ask = BoxFuture<'static, (NodeId, bool, Result<ReadReply, ReplicaError>)>;

/// What every round of one read needs.
struct Read {
    token: Token,
    key: Bytes,
    trace: Option<Arc<Trace>>,
    /// This node, for the trace's notes.
    local: NodeId,
    deadline: Instant,
    /// Replicas the level requires.
    required: usize,
}

/// How the first round ended.
enum FirstRound {
    /// The data and every digest agreed: `cell` is the answer.
    Agreed {
        data_node: NodeId,
        cell: Option<Cell>,
        digest_nodes: Vec<NodeId>,
    },
    /// A digest disagreed: read the data of `full_from` and resolve.
    Mismatch {
        data: (NodeId, Option<Cell>),
        full_from: Vec<NodeId>,
    },
}

impl Coordinator {
    fn ask(
        &self,
        node: NodeId,
        (token, key): (Token, &Bytes),
        digest_only: bool,
        trace: &Option<Arc<Trace>>,
    ) -> Ask {
        let what = if digest_only { "a digest" } else { "data" };
        note(trace, node, || format!("asked for {what}"));
        let request = self.transport.read(node, token, key.clone(), digest_only);
        let trace = trace.clone();
        Box::pin(async move {
            let sent = Instant::now();
            let answer = request.await;
            note(&trace, node, || {
                let took = millis(sent.elapsed());
                match &answer {
                    Ok(ReadReply::Digest(_)) => format!("answered with a digest in {took}"),
                    Ok(ReadReply::Data(Some(cell))) => format!(
                        "answered with data (timestamp {}) in {took}",
                        cell.timestamp
                    ),
                    Ok(ReadReply::Data(None)) => format!("answered: no data, in {took}"),
                    Err(error) => format!("failed after {took}: {error}"),
                }
            });
            (node, digest_only, answer)
        })
    }

    /// True with probability `chance`, from the coordinator's RNG.
    fn chance(&self, chance: f64) -> bool {
        self.rng
            .lock()
            .map(|mut rng| rng.random_bool(chance))
            .unwrap_or(false)
    }

    /// Live replicas in the order reads prefer them.
    pub(super) fn read_order(&self, view: &ClusterView, mut alive: Vec<NodeId>) -> Vec<NodeId> {
        if let Ok(mut rng) = self.rng.lock() {
            alive.shuffle(&mut *rng);
        }
        if let Some(at) = alive.iter().position(|n| *n == view.local()) {
            alive.swap(0, at);
        }
        alive
    }

    /// Reads a key; `None` when it has no live value.
    pub async fn read(&self, request: ReadRequest) -> Result<Option<ReadResult>, CoordinatorError> {
        request.validate()?;
        let view = self.view.load_full();
        let token = Token::of(&request.key);
        let trace = request.trace;
        let local = view.local();
        let plan = self
            .plan(&view, token, request.level, false)
            .inspect_err(|error| note(&trace, local, || format!("not sent: {error}")))?;
        let required = plan.required;
        let timeout = request.timeout.map_or(self.settings.read_timeout, |t| {
            t.min(self.settings.read_timeout)
        });
        let read = Read {
            token,
            key: Bytes::from(crate::storage::key::row_key(
                &request.key,
                &request.sort_key,
            )),
            trace,
            local,
            deadline: Instant::now() + timeout,
            required,
        };
        note(&read.trace, local, || {
            format!(
                "reading at {} (token {}): {} live replicas, {required} required",
                request.level,
                token.0,
                plan.alive.len()
            )
        });

        // Decide up front whether this read also repairs the replicas it
        // does not ask, so the common read copies nothing for it.
        let chance = self.settings.read_repair_chance.clamp(0.0, 1.0);
        let background_repair =
            (plan.alive.len() > required && self.chance(chance)).then(|| plan.alive.clone());
        let order = self.read_order(&view, plan.alive);
        let (data, full_from) = match self.digest_round(&read, order).await? {
            FirstRound::Agreed {
                data_node,
                cell,
                digest_nodes,
            } => {
                if let Some(alive) = background_repair {
                    let asked: Vec<NodeId> =
                        std::iter::once(data_node).chain(digest_nodes).collect();
                    self.repair_the_others(&read, (asked, cell.clone()), alive);
                }
                return Ok(live(cell, self.clock.wall().millis()));
            }
            FirstRound::Mismatch { data, full_from } => (data, full_from),
        };
        let cells = self.data_round(&read, data, &full_from).await?;
        let resolved = resolve(&cells);
        if let Some((winner, stale)) = &resolved {
            self.repair_round(&read, winner, stale, cells.len()).await?;
        }
        let winner = resolved.map(|(winner, _)| winner);
        Ok(live(winner, self.clock.wall().millis()))
    }

    /// Steps 2 and 3: data from one replica and digests from the others
    /// required, spares asked for replicas that fail, until they agree or
    /// disagree.
    async fn digest_round(
        &self,
        read: &Read,
        order: Vec<NodeId>,
    ) -> Result<FirstRound, CoordinatorError> {
        let (token, key, trace, local) = (read.token, &read.key, &read.trace, read.local);
        let (mut round, asks) = ReadRound::start(read.required, order);
        let mut pending: FuturesUnordered<Ask> = asks
            .into_iter()
            .map(|(node, digest_only)| self.ask(node, (token, key), digest_only, trace))
            .collect();
        loop {
            let Ok(next) = tokio::time::timeout_at(read.deadline, pending.next()).await else {
                note(trace, local, || "timed out waiting for replicas".into());
                return Err(round.timed_out().into());
            };
            let Some((node, digest_only, answer)) = next else {
                // The round fails a read with nothing outstanding first.
                return Err(round.timed_out().into());
            };
            if let Err(error) = &answer {
                tracing::debug!(%node, %error, "replica read failed; trying a spare");
            }
            match round.answer(node, digest_only, answer) {
                Step::Wait => {}
                Step::Ask { node, digest_only } => {
                    note(trace, local, || "trying a spare replica".into());
                    pending.push(self.ask(node, (token, key), digest_only, trace));
                }
                Step::Unmet(unmet) => {
                    note(trace, local, || "too few replicas answered".into());
                    return Err(unmet.into());
                }
                Step::Agreed {
                    data_node,
                    cell,
                    digest_nodes,
                } => {
                    note(trace, local, || {
                        if digest_nodes.is_empty() {
                            "one replica required: its data is the answer".into()
                        } else {
                            "digests match the data: no repair needed".into()
                        }
                    });
                    return Ok(FirstRound::Agreed {
                        data_node,
                        cell,
                        digest_nodes,
                    });
                }
                Step::Resolve { data, full_from } => {
                    return Ok(FirstRound::Mismatch { data, full_from });
                }
            }
        }
    }

    /// Step 5: compares the live replicas not asked with what the asked
    /// ones agreed on, in the background.
    fn repair_the_others(
        &self,
        read: &Read,
        (asked, cell): (Vec<NodeId>, Option<Cell>),
        alive: Vec<NodeId>,
    ) {
        let others: Vec<NodeId> = alive.into_iter().filter(|n| !asked.contains(n)).collect();
        self.read_repairs.spawn(repair_in_background(
            self.transport.clone(),
            read.token,
            read.key.clone(),
            (asked, cell),
            others,
            self.settings.read_timeout,
        ));
        note(&read.trace, read.local, || {
            "background read repair of the replicas not asked started".into()
        });
    }

    /// Step 4, first half: the digests disagree, so every replica that
    /// sent one is asked for its data; the cells, `data`'s first.
    async fn data_round(
        &self,
        read: &Read,
        data: (NodeId, Option<Cell>),
        full_from: &[NodeId],
    ) -> Result<Vec<(NodeId, Option<Cell>)>, CoordinatorError> {
        let timeout_error = |received| CoordinatorError::Timeout {
            required: read.required,
            received,
        };
        note(&read.trace, read.local, || {
            "digest mismatch: reading data from the replicas that sent digests".into()
        });
        let mut cells: Vec<(NodeId, Option<Cell>)> = vec![data];
        let mut full: FuturesUnordered<Ask> = full_from
            .iter()
            .map(|node| self.ask(*node, (read.token, &read.key), false, &read.trace))
            .collect();
        while let Some(answer) = tokio::time::timeout_at(read.deadline, full.next())
            .await
            .map_err(|_| timeout_error(cells.len()))?
        {
            match answer {
                (node, _, Ok(ReadReply::Data(cell))) => cells.push((node, cell)),
                (_, _, Ok(ReadReply::Digest(_))) | (_, _, Err(_)) => {
                    return Err(timeout_error(cells.len()));
                }
            }
        }
        Ok(cells)
    }

    /// Step 4, second half: writes the LWW `winner` to the `stale`
    /// replicas and waits for them (blocking read repair); `received` is
    /// how many replicas answered, for a timeout's error.
    async fn repair_round(
        &self,
        read: &Read,
        winner: &Cell,
        stale: &[NodeId],
        received: usize,
    ) -> Result<(), CoordinatorError> {
        let timeout_error = || CoordinatorError::Timeout {
            required: read.required,
            received,
        };
        note(&read.trace, read.local, || {
            format!(
                "resolved to timestamp {}; read repair writes it to {} stale replicas",
                winner.timestamp,
                stale.len()
            )
        });
        let repairs: FuturesUnordered<_> = stale
            .iter()
            .map(|node| {
                note(&read.trace, *node, || {
                    "read repair: writing the newest cell".into()
                });
                let write =
                    self.transport
                        .write(*node, read.token, read.key.clone(), winner.clone());
                let (node, trace) = (*node, read.trace.clone());
                async move {
                    let sent = Instant::now();
                    let outcome = write.await;
                    note(&trace, node, || match &outcome {
                        Ok(()) => {
                            format!("read repair acknowledged in {}", millis(sent.elapsed()))
                        }
                        Err(error) => format!("read repair failed: {error}"),
                    });
                    outcome
                }
            })
            .collect();
        metrics::counter!(crate::metrics::READ_REPAIRS, "kind" => "blocking")
            .increment(stale.len() as u64);
        let outcomes: Vec<_> = tokio::time::timeout_at(read.deadline, repairs.collect())
            .await
            .map_err(|_| timeout_error())?;
        if outcomes.iter().any(Result::is_err) {
            return Err(timeout_error());
        }
        Ok(())
    }
}

/// Compares replicas that a read did not ask (`others`) with the version the
/// asked ones agreed on, and writes the LWW winner to every stale one.
async fn repair_in_background(
    transport: Arc<dyn ReplicaTransport>,
    token: Token,
    key: Bytes,
    (asked, agreed): (Vec<NodeId>, Option<Cell>),
    others: Vec<NodeId>,
    timeout: Duration,
) {
    let reads = others.iter().map(|node| {
        let read = transport.read(*node, token, key.clone(), false);
        async move { (*node, tokio::time::timeout(timeout, read).await) }
    });
    let mut cells: Vec<(NodeId, Option<Cell>)> =
        asked.into_iter().map(|n| (n, agreed.clone())).collect();
    for (node, answer) in futures::future::join_all(reads).await {
        if let Ok(Ok(ReadReply::Data(cell))) = answer {
            cells.push((node, cell));
        }
    }
    let Some((winner, stale)) = resolve(&cells) else {
        return;
    };
    if stale.is_empty() {
        return;
    }
    let writes = stale.iter().map(|node| {
        tokio::time::timeout(
            timeout,
            transport.write(*node, token, key.clone(), winner.clone()),
        )
    });
    let repaired = futures::future::join_all(writes)
        .await
        .into_iter()
        .filter(|outcome| matches!(outcome, Ok(Ok(()))))
        .count();
    metrics::counter!(crate::metrics::READ_REPAIRS, "kind" => "background")
        .increment(repaired as u64);
}

/// The answer for a resolved cell: its value if live.
fn live(cell: Option<Cell>, now_ms: i64) -> Option<ReadResult> {
    cell.filter(|c| c.is_live_ms(now_ms)).map(|c| ReadResult {
        timestamp: c.timestamp,
        expires_at_ms: c.expires_at_ms(),
        value: c.value,
    })
}
