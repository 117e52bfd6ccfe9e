//! Joining: a node's first start, when it chooses its tokens.
//!
//! A new node gossips JOINING without tokens, learns the ring from its
//! seeds, then picks tokens that keep ownership balanced
//! (`ring::allocate_tokens`) and turns NORMAL. To let it see the whole ring:
//! - once it has heard from any other node it waits a few gossip rounds
//!   more (`settle`) for the rest of the membership to arrive;
//! - a seed that hears from nobody within `ring_delay` starts the cluster;
//!   a non-seed that hears from nobody within `timeout` gives up;
//! - when several nodes join at once, the one with the smallest id goes
//!   first and the others wait until it is NORMAL, so each sees the tokens
//!   of the one before (bounded by `timeout`).
//!
//! A node whose replication factor differs from any other member's refuses
//! to join: replicas would disagree about who holds what.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use rand::Rng;

use super::gossip::Membership;
use super::keys::NodeStatus;
use super::view::ClusterView;
use crate::ring::{Token, allocate_tokens};

/// Settings of the join.
#[derive(Debug, Clone)]
pub struct JoinSettings {
    pub num_tokens: usize,
    pub rack: String,
    pub replication_factor: u32,
    /// This node is one of its own seeds (or has none).
    pub is_seed: bool,
    /// Gossip rounds to wait after first contact.
    pub settle: Duration,
    /// How long a seed waits to hear from others before starting alone.
    pub ring_delay: Duration,
    /// How long to wait for contact, or for earlier joiners.
    pub timeout: Duration,
    /// Poll interval.
    pub interval: Duration,
}

/// Why a node cannot join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(
        "replication_factor is {ours} here but {theirs} on node {node} ({addr}); every node of a cluster must use the same replication factor, refusing to join"
    )]
    ReplicationFactor {
        ours: u32,
        theirs: u32,
        node: String,
        addr: String,
    },
    #[error("no seed answered within {0:?}; check --seeds and that the seeds are running")]
    NoContact(Duration),
    #[error(
        "cannot join: {0} and did not finish within the join timeout; one topology change at a time"
    )]
    ChangeInProgress(String),
    #[error("cannot replace node {node}: {reason}")]
    Replace { node: String, reason: String },
}

/// Fails if another member uses a different replication factor.
pub fn check_replication_factor(membership: &Membership, ours: u32) -> Result<(), JoinError> {
    let view = membership.view();
    match view.replication_factor_conflict(ours) {
        Some(other) => Err(JoinError::ReplicationFactor {
            ours,
            theirs: other.replication_factor.unwrap_or_default(),
            node: other.name.clone(),
            addr: other.gossip_addr.to_string(),
        }),
        None => Ok(()),
    }
}

/// How long a joining node has been hearing the ring: since it started,
/// and since it first heard a live peer.
struct Heard {
    started: Instant,
    contact: Option<Instant>,
}

impl Heard {
    fn new() -> Heard {
        Heard {
            started: Instant::now(),
            contact: None,
        }
    }

    /// Refreshes the view and notes the first contact with a live peer;
    /// the view, or an error if the cluster's replication factor differs.
    async fn listen(
        &mut self,
        membership: &Membership,
        settings: &JoinSettings,
    ) -> Result<Arc<ClusterView>, JoinError> {
        membership.refresh().await;
        check_replication_factor(membership, settings.replication_factor)?;
        let view = membership.view();
        let local = view.local();
        if self.contact.is_none() && view.members().any(|m| m.id != local && m.alive) {
            self.contact = Some(Instant::now());
        }
        Ok(view)
    }

    /// Whether the ring has had time to reach this node: `settle` since
    /// its first contact, or (when `alone_ok`, a seed) `ring_delay` since
    /// its start without any.
    fn settled(&self, settings: &JoinSettings, alone_ok: bool) -> bool {
        match self.contact {
            Some(since) => since.elapsed() >= settings.settle,
            None => alone_ok && self.started.elapsed() >= settings.ring_delay,
        }
    }
}

/// Waits for the ring to be known and picks this node's tokens.
pub async fn choose_tokens(
    membership: &Membership,
    settings: &JoinSettings,
    rng: &mut impl Rng,
) -> Result<Vec<Token>, JoinError> {
    let mut heard = Heard::new();
    let started = heard.started;
    loop {
        let view = heard.listen(membership, settings).await?;
        let local = view.local();
        if heard.settled(settings, settings.is_seed) {
            // One change at a time: wait for a change in progress.
            if let Some(change) = view.change_besides(&[local]) {
                if started.elapsed() >= settings.timeout {
                    return Err(JoinError::ChangeInProgress(change));
                }
                tracing::info!(%change, "waiting for the topology change in progress to finish");
                tokio::time::sleep(settings.interval).await;
                continue;
            }
            let earlier_joiner = view
                .members()
                .find(|m| m.id < local && m.alive && m.status == NodeStatus::Joining);
            match earlier_joiner {
                None => {}
                Some(other) if started.elapsed() < settings.timeout => {
                    tracing::debug!(waiting_for = %other.name, "another node is choosing its tokens first");
                    tokio::time::sleep(settings.interval).await;
                    continue;
                }
                Some(other) => {
                    tracing::warn!(other = %other.name, "gave up waiting for an earlier joiner; ownership may be less balanced");
                }
            }
            let ring = view.ring();
            let racks = ring
                .nodes()
                .into_iter()
                .filter_map(|n| ring.rack_of(&n).map(|r| (n, r.to_owned())))
                .collect();
            let tokens = allocate_tokens(
                ring.tokens(),
                &racks,
                local,
                &settings.rack,
                settings.num_tokens,
                settings.replication_factor as usize,
                rng,
            );
            tracing::info!(
                nodes_in_ring = ring.nodes().len(),
                tokens = tokens.len(),
                "chose tokens"
            );
            return Ok(tokens);
        }
        if started.elapsed() >= settings.timeout {
            return Err(JoinError::NoContact(settings.timeout));
        }
        tokio::time::sleep(settings.interval).await;
    }
}

/// Waits to learn the ring, then returns the tokens of `dead`, the node
/// this one replaces: it must be a known, down, NORMAL member, and no other
/// change may be in progress.
pub async fn replacement_tokens(
    membership: &Membership,
    dead: crate::identity::NodeId,
    settings: &JoinSettings,
) -> Result<Vec<Token>, JoinError> {
    let mut heard = Heard::new();
    let started = heard.started;
    let refuse = |reason: String| JoinError::Replace {
        node: dead.to_string(),
        reason,
    };
    loop {
        let view = heard.listen(membership, settings).await?;
        let local = view.local();
        // Past the settle time liveness is known (a dead node never
        // heartbeats, so it is never seen up).
        if heard.settled(settings, false) {
            let Some(member) = view.member(&dead) else {
                return Err(refuse("no such node is known to the cluster".into()));
            };
            if view.is_alive(&dead) {
                // Gossip may show a node up until the failure detector
                // has seen it silent for a while: wait, then refuse.
                if started.elapsed() >= settings.timeout {
                    return Err(refuse(format!(
                        "{} is up; only a dead node can be replaced",
                        member.name
                    )));
                }
                tokio::time::sleep(settings.interval).await;
                continue;
            }
            if member.status != NodeStatus::Normal || member.tokens.is_empty() {
                return Err(refuse(format!(
                    "{} is {}, not a NORMAL node with tokens",
                    member.name, member.status
                )));
            }
            if let Some(change) = view.change_besides(&[local]) {
                if started.elapsed() >= settings.timeout {
                    return Err(JoinError::ChangeInProgress(change));
                }
                tokio::time::sleep(settings.interval).await;
                continue;
            }
            tracing::info!(node = %member.name, tokens = member.tokens.len(), "taking the tokens of the dead node");
            return Ok(member.tokens.clone());
        }
        if started.elapsed() >= settings.timeout {
            return Err(JoinError::NoContact(settings.timeout));
        }
        tokio::time::sleep(settings.interval).await;
    }
}
