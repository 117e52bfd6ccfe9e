//! The topology changes this node drives, run by one driver.
//!
//! Every [`Operation`] walks the same steps (the module docs of
//! `streaming`): announce `pending`, settle, yield to a contested change,
//! `read_old`, stream, `read_new`, finish. What differs is data the
//! operation supplies:
//! - what it gossips at each phase ([`Operation::at_phase`]): a join,
//!   replacement or decommission its own `phase` key, a removal the
//!   `removing` key naming the dead node;
//! - the nodes whose changes it neither waits for nor yields to
//!   ([`Operation::ignoring`]): the dead node a removal ends;
//! - what a failure undoes ([`Operation::on_failure`]): a bootstrap keeps
//!   its checkpoint and resumes at the next start (and withdraws, owning
//!   nothing, when it lost a contest), a decommission rolls back to
//!   NORMAL, a removal withdraws its announcement;
//! - what it checks first, announces first, and does last (the public
//!   methods below).
//!
//! A new kind of change (or state that must move with one: rows, Paxos
//! state) plugs in as a variant here and a source of copies in `copy`.

use super::{Checkpoint, Topology, TopologyError};
use crate::identity::NodeId;
use crate::membership::Change;
use crate::membership::keys::{self, NodeStatus, Phase};
use crate::ring::Token;
use crate::storage::{LocalStore, StorageError};

/// Marks a node that decommissioned: it must not rejoin with its old data.
const DECOMMISSIONED_KEY: &str = "topology.decommissioned";
/// The names of a bootstrap's checkpoint: a join's, a replacement's.
const JOIN: &str = "bootstrap";
const REPLACE: &str = "replace";

/// A topology change this node drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// This node joins with tokens of its own, or (`replaces`) takes a
    /// dead node's.
    Bootstrap { replaces: Option<NodeId> },
    /// This node leaves.
    Decommission,
    /// This node removes a dead one.
    RemoveNode(NodeId),
}

/// What a failed change undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Nothing: the checkpoint stays and the change resumes at the next
    /// start; after a lost contest, withdraw and own nothing.
    Resume,
    /// Back to NORMAL, through `read_old` if reads had moved.
    RollBack,
    /// Withdraw the announcement; the ring stays as it was.
    Withdraw,
}

/// Where a change stopped.
struct Failure {
    error: TopologyError,
    /// Another change announced at the same time won.
    lost_contest: bool,
    /// Reads had moved to the new replicas (`read_new` was announced).
    reads_moved: bool,
}

impl Operation {
    /// Its name: of its checkpoint, its streams, its logs.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Bootstrap { replaces: None } => JOIN,
            Operation::Bootstrap { replaces: Some(_) } => REPLACE,
            Operation::Decommission => "decommission",
            Operation::RemoveNode(_) => "removenode",
        }
    }

    /// The change it is, as views describe changes in progress.
    pub fn change(self, local: NodeId) -> Change {
        match self {
            Operation::Bootstrap { replaces: None } => Change::Join(local),
            Operation::Bootstrap {
                replaces: Some(dead),
            } => Change::Replace {
                node: local,
                replaces: dead,
            },
            Operation::Decommission => Change::Leave(local),
            Operation::RemoveNode(node) => Change::Remove { node, by: local },
        }
    }

    /// Nodes whose own changes this one neither waits for nor yields to:
    /// a dead node's join or decommission is what removing it ends.
    pub fn ignoring(self) -> Vec<NodeId> {
        match self {
            Operation::RemoveNode(node) => vec![node],
            _ => Vec::new(),
        }
    }

    /// What this node gossips to move its change to `phase`.
    pub fn at_phase(self, phase: Phase) -> Vec<(String, String)> {
        match self {
            Operation::RemoveNode(node) => vec![(
                keys::REMOVING.to_owned(),
                keys::encode_removing(&node, phase),
            )],
            _ => vec![(keys::PHASE.to_owned(), phase.as_str().to_owned())],
        }
    }

    /// What a failure undoes.
    pub fn on_failure(self) -> OnFailure {
        match self {
            Operation::Bootstrap { .. } => OnFailure::Resume,
            Operation::Decommission => OnFailure::RollBack,
            Operation::RemoveNode(_) => OnFailure::Withdraw,
        }
    }
}

impl Topology {
    /// Whether this node decommissioned before (and must not rejoin).
    pub fn was_decommissioned(store: &LocalStore) -> Result<bool, StorageError> {
        Ok(store
            .engine()
            .meta_get(DECOMMISSIONED_KEY)?
            .is_some_and(|v| !v.is_empty()))
    }

    /// Steps 3 to 5 of a change `operation` announced as `pending`: settle,
    /// yield to a contested change, `read_old`, stream, `read_new`.
    async fn drive(
        &self,
        operation: Operation,
        checkpoint: &mut Checkpoint,
    ) -> Result<(), Failure> {
        let failed = |error| Failure {
            error,
            lost_contest: false,
            reads_moved: false,
        };
        self.settle().await.map_err(failed)?;
        if let Some(other) = self.contested(&operation.ignoring()) {
            return Err(Failure {
                error: TopologyError::InProgress(other),
                lost_contest: true,
                reads_moved: false,
            });
        }
        self.announce(operation.at_phase(Phase::ReadOld)).await;
        self.agree().await.map_err(failed)?;
        self.stream_change(operation, checkpoint)
            .await
            .map_err(failed)?;
        self.announce(operation.at_phase(Phase::ReadNew)).await;
        self.agree().await.map_err(|error| Failure {
            error,
            lost_contest: false,
            reads_moved: true,
        })
    }

    /// Undoes what `operation` did before `failure`, as its failure policy
    /// says; the error to return.
    async fn undo(
        &self,
        operation: Operation,
        failure: Failure,
    ) -> Result<TopologyError, TopologyError> {
        let engine = self.store.engine().clone();
        match operation.on_failure() {
            OnFailure::Resume if failure.lost_contest => {
                // Withdraw: back to choosing tokens, owning nothing. The
                // tokens go first: a restart must not find them without the
                // checkpoint that marks them as not yet streamed.
                if let TopologyError::InProgress(other) = &failure.error {
                    tracing::warn!(%other, "another topology change started at the same time; withdrawing");
                }
                self.announce(vec![
                    (keys::TOKENS, String::new()),
                    (keys::PHASE, String::new()),
                    (keys::REPLACES, String::new()),
                ])
                .await;
                {
                    let engine = engine.clone();
                    crate::storage::blocking(move || {
                        crate::membership::persist::clear_tokens(engine.as_ref())
                            .map_err(|e| StorageError::Task(e.to_string()))
                    })
                    .await??;
                }
                Checkpoint::clear(&engine, operation.name()).await?;
            }
            OnFailure::Resume => {}
            OnFailure::RollBack => {
                tracing::warn!(error = %failure.error, "decommission failed; back to NORMAL");
                self.roll_back_leave(failure.reads_moved).await;
                Checkpoint::clear(&engine, operation.name()).await?;
            }
            OnFailure::Withdraw => {
                tracing::warn!(error = %failure.error, "removenode failed; the node stays in the ring");
                self.announce(vec![(keys::REMOVING, String::new())]).await;
            }
        }
        Ok(failure.error)
    }

    /// Join (or, with `replaces`, replace a dead node): announce the
    /// tokens as pending, stream every range this node gains, then turn
    /// NORMAL. Resumes from its checkpoint after a restart.
    pub async fn bootstrap(
        &self,
        tokens: &[Token],
        replaces: Option<NodeId>,
    ) -> Result<(), TopologyError> {
        let _busy = self.busy()?;
        let operation = Operation::Bootstrap { replaces };
        let engine = self.store.engine().clone();
        let mut checkpoint = match Checkpoint::load(engine.as_ref(), operation.name())? {
            Some(checkpoint) => checkpoint,
            None => Checkpoint::begin(&engine, operation.name(), replaces).await?,
        };
        let mut pairs = vec![(keys::TOKENS.to_owned(), keys::encode_tokens(tokens))];
        pairs.extend(operation.at_phase(Phase::Pending));
        pairs.push((keys::STATUS.to_owned(), NodeStatus::Joining.to_string()));
        if let Some(dead) = replaces {
            pairs.push((keys::REPLACES.to_owned(), dead.to_string()));
        }
        self.announce(pairs).await;
        tracing::info!(
            operation = operation.name(),
            tokens = tokens.len(),
            "announced pending tokens"
        );
        if let Err(failure) = self.drive(operation, &mut checkpoint).await {
            return Err(self.undo(operation, failure).await?);
        }
        let mut done = vec![
            (keys::PHASE.to_owned(), String::new()),
            (keys::STATUS.to_owned(), NodeStatus::Normal.to_string()),
        ];
        if let Some(dead) = replaces {
            // Remembered before the checkpoint goes: a restart in between
            // must still count the replaced node as removed.
            let mut removed = self.membership.view().removed().clone();
            removed.insert(dead);
            let (engine, remembered) = (engine.clone(), removed.clone());
            crate::storage::blocking(move || {
                crate::membership::persist::save_removed(engine.as_ref(), &remembered)
                    .map_err(|e| StorageError::Task(e.to_string()))
            })
            .await??;
            done.extend(keys::encode_removed(&removed));
        }
        // Streamed and agreed: from here a restart comes back NORMAL.
        Checkpoint::clear(&engine, operation.name()).await?;
        self.announce(done).await;
        tracing::info!(operation = operation.name(), "joined: NORMAL");
        Ok(())
    }

    /// A bootstrap (or replacement) that was started and not finished:
    /// `Some(replaces)`.
    pub fn pending_bootstrap(store: &LocalStore) -> Result<Option<Option<NodeId>>, StorageError> {
        for name in [JOIN, REPLACE] {
            if let Some(checkpoint) = Checkpoint::load(store.engine().as_ref(), name)? {
                return Ok(Some(checkpoint.replaces));
            }
        }
        Ok(None)
    }

    /// Marks a bootstrap as started, before its tokens are saved, so a
    /// restart at any point resumes it.
    pub async fn begin_bootstrap(
        store: &LocalStore,
        replaces: Option<NodeId>,
    ) -> Result<(), StorageError> {
        let operation = Operation::Bootstrap { replaces };
        Checkpoint::begin(store.engine(), operation.name(), replaces).await?;
        Ok(())
    }

    /// Decommission this node: LEAVING, stream every range it holds to
    /// the new replicas, LEFT. The caller stops the node afterwards.
    pub async fn decommission(&self) -> Result<(), TopologyError> {
        let _busy = self.busy()?;
        let view = self.membership.view();
        self.idle(&view)?;
        let me = view
            .member(&self.local)
            .ok_or_else(|| TopologyError::Refused("this node is not a member yet".into()))?;
        if me.status != NodeStatus::Normal {
            return Err(TopologyError::Refused(format!(
                "this node is {}; only a NORMAL node can decommission",
                me.status
            )));
        }
        let nodes = view.ring().nodes().len();
        let rf = self.settings.replication_factor;
        if nodes.saturating_sub(1) < rf {
            return Err(TopologyError::TooFewNodes {
                remaining: nodes.saturating_sub(1),
                replication_factor: rf,
            });
        }
        let operation = Operation::Decommission;
        let engine = self.store.engine().clone();
        let mut checkpoint = Checkpoint::begin(&engine, operation.name(), None).await?;
        let mut pairs = operation.at_phase(Phase::Pending);
        pairs.push((keys::STATUS.to_owned(), NodeStatus::Leaving.to_string()));
        self.announce(pairs).await;
        tracing::info!("decommissioning: LEAVING");
        if let Err(failure) = self.drive(operation, &mut checkpoint).await {
            return Err(self.undo(operation, failure).await?);
        }
        {
            let engine = engine.clone();
            crate::storage::blocking(move || engine.meta_put(DECOMMISSIONED_KEY, b"1")).await??;
        }
        Checkpoint::clear(&engine, operation.name()).await?;
        self.announce(vec![
            (keys::PHASE, String::new()),
            (keys::STATUS, NodeStatus::Left.to_string()),
        ])
        .await;
        // Let the others hear it before this node stops gossiping.
        if let Err(error) = self.agree().await {
            tracing::warn!(%error, "not every node saw LEFT yet; gossip will tell them");
        }
        tracing::info!("decommissioned: LEFT");
        Ok(())
    }

    /// Undoes a decommission that did not finish: back to NORMAL, through
    /// `read_old` first when reads had moved to the new replicas (a node
    /// still reading from those must not meet one that writes only to the
    /// old ones). This node still holds its ranges and got every write
    /// meanwhile, so the old ring is whole.
    async fn roll_back_leave(&self, reads_moved: bool) {
        if reads_moved {
            self.announce(Operation::Decommission.at_phase(Phase::ReadOld))
                .await;
            if let Err(error) = self.agree().await {
                tracing::warn!(%error, "not every node saw the decommission roll back to read_old");
            }
        }
        self.announce(vec![
            (keys::PHASE, String::new()),
            (keys::STATUS, NodeStatus::Normal.to_string()),
        ])
        .await;
    }

    /// Whether a decommission was interrupted (the node stopped during it).
    pub fn decommission_interrupted(store: &LocalStore) -> Result<bool, StorageError> {
        Ok(Checkpoint::load(store.engine().as_ref(), Operation::Decommission.name())?.is_some())
    }

    /// At the start of a node whose decommission was interrupted (it
    /// gossips LEAVING at `read_old` from its first message): rolls it
    /// back to NORMAL once every node has seen `read_old`.
    pub async fn abandon_decommission(&self) -> Result<(), TopologyError> {
        tracing::warn!("a decommission was interrupted; rolling it back (run it again to leave)");
        self.roll_back_leave(true).await;
        Checkpoint::clear(self.store.engine(), Operation::Decommission.name()).await?;
        Ok(())
    }

    /// Remove a dead node: its ranges are re-replicated from the surviving
    /// replicas to the new ones, then it is gossiped as removed.
    pub async fn remove(&self, node: NodeId) -> Result<(), TopologyError> {
        let _busy = self.busy()?;
        let view = self.membership.view();
        // A node that left may be forgotten by now but is remembered as
        // removed: a repeated removenode says so rather than "unknown".
        if view.removed().contains(&node) && view.member(&node).is_none() {
            return Err(TopologyError::Refused(format!(
                "node {node} has already left the cluster"
            )));
        }
        let member = view
            .member(&node)
            .ok_or_else(|| TopologyError::UnknownNode(node.to_string()))?;
        if member.status == NodeStatus::Left {
            return Err(TopologyError::Refused(format!(
                "node {} ({node}) has already left the cluster",
                member.name
            )));
        }
        if node == self.local || view.is_alive(&node) {
            return Err(TopologyError::NodeAlive {
                name: member.name.clone(),
                id: node,
            });
        }
        // A dead node's own change (a join or decommission it died in) is
        // what removing it ends; any other change must finish first.
        if let Some(change) = view.change_besides(&[self.local, node]) {
            return Err(TopologyError::InProgress(change));
        }
        let operation = Operation::RemoveNode(node);
        let engine = self.store.engine().clone();
        let mut checkpoint = Checkpoint::begin(&engine, operation.name(), None).await?;
        self.announce(operation.at_phase(Phase::Pending)).await;
        tracing::info!(node = %member.name, "removing a dead node");
        if let Err(failure) = self.drive(operation, &mut checkpoint).await {
            return Err(self.undo(operation, failure).await?);
        }
        Checkpoint::clear(&engine, operation.name()).await?;
        let mut removed = view.removed().clone();
        removed.insert(node);
        let mut done = keys::encode_removed(&removed);
        done.push((keys::REMOVING.to_owned(), String::new()));
        self.announce(done).await;
        if let Err(error) = self.agree().await {
            tracing::warn!(%error, "not every node saw the removal yet; gossip will tell them");
        }
        tracing::info!(node = %member.name, "removed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> NodeId {
        NodeId(uuid::Uuid::from_u128(n))
    }

    /// What each kind of change supplies the driver.
    #[test]
    fn each_operation_supplies_its_keys_and_its_failure_policy() {
        let (me, dead) = (id(1), id(2));
        let cases = [
            (
                Operation::Bootstrap { replaces: None },
                "bootstrap",
                Change::Join(me),
                OnFailure::Resume,
            ),
            (
                Operation::Bootstrap {
                    replaces: Some(dead),
                },
                "replace",
                Change::Replace {
                    node: me,
                    replaces: dead,
                },
                OnFailure::Resume,
            ),
            (
                Operation::Decommission,
                "decommission",
                Change::Leave(me),
                OnFailure::RollBack,
            ),
            (
                Operation::RemoveNode(dead),
                "removenode",
                Change::Remove { node: dead, by: me },
                OnFailure::Withdraw,
            ),
        ];
        for (operation, name, change, policy) in cases {
            assert_eq!(operation.name(), name);
            assert_eq!(operation.change(me), change);
            assert_eq!(operation.on_failure(), policy);
            let read_old = operation.at_phase(Phase::ReadOld);
            match operation {
                Operation::RemoveNode(node) => {
                    assert_eq!(operation.ignoring(), vec![node]);
                    assert_eq!(
                        read_old,
                        vec![(
                            keys::REMOVING.to_owned(),
                            keys::encode_removing(&node, Phase::ReadOld)
                        )]
                    );
                }
                _ => {
                    assert!(operation.ignoring().is_empty());
                    assert_eq!(
                        read_old,
                        vec![(keys::PHASE.to_owned(), "read_old".to_owned())]
                    );
                }
            }
        }
    }
}
