//! What a node's start does, decided once from what its data directory
//! holds: a [`StartPlan`].
//!
//! 1. A data directory that was decommissioned refuses to start: its data
//!    is stale, and rejoining with it would bring back what was deleted
//!    while it was away.
//! 2. No tokens: a **fresh** start. The node picks tokens (or takes a dead
//!    node's, with `replaces`) and bootstraps, or founds a cluster.
//! 3. Tokens and a bootstrap checkpoint: a **bootstrap a restart
//!    interrupted**. It resumes with the same tokens, gossiping them as
//!    pending from the first message so coordinators keep sending it
//!    writes.
//! 4. Tokens and a decommission checkpoint: a **decommission a restart
//!    interrupted**. The node gossips LEAVING at `read_old` from its first
//!    message, rolls the decommission back, then serves as a member.
//! 5. Tokens and nothing pending: a **restart** of a member.
//!
//! Members (cases 4 and 5) wait, up to `ring_delay`, to hear the current
//! topology from a live peer before they serve: changes may have happened
//! while they were down.
//!
//! CAVEATS: a bootstrap checkpoint and a decommission checkpoint together
//! cannot be written (a decommission needs a NORMAL node); if a damaged
//! directory holds both, the bootstrap resumes and the decommission
//! checkpoint is left as it is.

use super::addresses::Advertised;
use crate::config::Config;
use crate::identity::NodeId;
use crate::membership::keys::{self, NodeStatus, Phase};
use crate::ring::Token;
use crate::rpc::framed;

/// What the data directory says about the node's place in its cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Persisted {
    /// The node finished a decommission.
    pub decommissioned: bool,
    /// The tokens it saved, if any.
    pub tokens: Option<Vec<Token>>,
    /// A bootstrap checkpoint: `Some(replaces)`.
    pub bootstrap: Option<Option<NodeId>>,
    /// A decommission checkpoint.
    pub decommission: bool,
}

/// What this start does (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPlan {
    /// Refuse to start.
    Decommissioned,
    /// Pick tokens (or take `replaces`'s) and bootstrap.
    Fresh { replaces: Option<NodeId> },
    /// Resume the bootstrap of `tokens`.
    ResumeBootstrap {
        tokens: Vec<Token>,
        replaces: Option<NodeId>,
    },
    /// Roll an interrupted decommission back, then serve with `tokens`.
    AbandonDecommission { tokens: Vec<Token> },
    /// Serve with `tokens`.
    Restart { tokens: Vec<Token> },
}

impl StartPlan {
    /// The plan for `persisted`; `replaces` is the `replace_node` setting,
    /// which counts only for a fresh start.
    pub fn new(persisted: Persisted, replaces: Option<NodeId>) -> StartPlan {
        if persisted.decommissioned {
            return StartPlan::Decommissioned;
        }
        let Some(tokens) = persisted.tokens else {
            return StartPlan::Fresh { replaces };
        };
        match (persisted.bootstrap, persisted.decommission) {
            (Some(replaces), _) => StartPlan::ResumeBootstrap { tokens, replaces },
            (None, true) => StartPlan::AbandonDecommission { tokens },
            (None, false) => StartPlan::Restart { tokens },
        }
    }

    /// The tokens the node starts with, if it has any yet.
    pub fn tokens(&self) -> Option<&[Token]> {
        match self {
            StartPlan::ResumeBootstrap { tokens, .. }
            | StartPlan::AbandonDecommission { tokens }
            | StartPlan::Restart { tokens } => Some(tokens),
            StartPlan::Decommissioned | StartPlan::Fresh { .. } => None,
        }
    }

    /// Whether the node is a member coming back: it waits to hear the
    /// current topology from a live peer before it serves.
    pub fn is_member(&self) -> bool {
        matches!(
            self,
            StartPlan::Restart { .. } | StartPlan::AbandonDecommission { .. }
        )
    }

    /// What the node gossips about its place from its first message: its
    /// status, tokens, and the phase of a change it is in the middle of.
    pub fn gossip(&self) -> Vec<(&'static str, String)> {
        let status = match self {
            StartPlan::Restart { .. } => NodeStatus::Normal,
            StartPlan::AbandonDecommission { .. } => NodeStatus::Leaving,
            _ => NodeStatus::Joining,
        };
        let mut entries = vec![
            (keys::STATUS, status.to_string()),
            (
                keys::TOKENS,
                self.tokens().map(keys::encode_tokens).unwrap_or_default(),
            ),
        ];
        match self {
            StartPlan::AbandonDecommission { .. } => {
                entries.push((keys::PHASE, Phase::ReadOld.as_str().to_owned()));
            }
            StartPlan::ResumeBootstrap { replaces, .. } => {
                entries.push((keys::PHASE, Phase::Pending.as_str().to_owned()));
                if let Some(dead) = replaces {
                    entries.push((keys::REPLACES, dead.to_string()));
                }
            }
            _ => {}
        }
        entries
    }
}

/// The key-values this node gossips when it starts.
pub(super) fn initial_gossip(
    config: &Config,
    name: &str,
    advertised: &Advertised,
    plan: &StartPlan,
    last_repair: i64,
) -> Vec<(String, String)> {
    [
        (keys::LAST_REPAIR, last_repair.to_string()),
        (keys::NAME, name.to_owned()),
        (keys::VERSION, env!("CARGO_PKG_VERSION").to_owned()),
        (keys::SETTINGS, config.shared_settings()),
        (keys::RACK, config.rack.clone()),
        (
            keys::REPLICATION_FACTOR,
            config.replication_factor.to_string(),
        ),
        (keys::CLIENT_ADDR, advertised.client.to_string()),
        (keys::PEER_ADDR, advertised.peer.to_string()),
        (
            keys::PEER_FRAMED,
            framed::frame::SERVED.map(|v| v.to_string()).join(","),
        ),
    ]
    .into_iter()
    .chain(plan.gossip())
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> NodeId {
        NodeId(uuid::Uuid::from_u128(n))
    }

    /// Every combination of what a data directory can hold, and the start
    /// it makes.
    #[test]
    fn every_persisted_state_has_one_plan() {
        let tokens = vec![Token(1), Token(2)];
        let configured = Some(id(9));
        let plan = |decommissioned, has_tokens: bool, bootstrap, decommission| {
            StartPlan::new(
                Persisted {
                    decommissioned,
                    tokens: has_tokens.then(|| tokens.clone()),
                    bootstrap,
                    decommission,
                },
                configured,
            )
        };
        for has_tokens in [false, true] {
            for bootstrap in [None, Some(None), Some(Some(id(7)))] {
                for decommission in [false, true] {
                    assert_eq!(
                        plan(true, has_tokens, bootstrap, decommission),
                        StartPlan::Decommissioned
                    );
                    // Without tokens nothing was under way: checkpoints
                    // without tokens are of a start that saved none.
                    assert_eq!(
                        plan(false, false, bootstrap, decommission),
                        StartPlan::Fresh {
                            replaces: configured
                        }
                    );
                }
            }
        }
        let tokens_again = || tokens.clone();
        for (bootstrap, decommission, expected) in [
            (
                None,
                false,
                StartPlan::Restart {
                    tokens: tokens_again(),
                },
            ),
            (
                None,
                true,
                StartPlan::AbandonDecommission {
                    tokens: tokens_again(),
                },
            ),
            (
                Some(None),
                false,
                StartPlan::ResumeBootstrap {
                    tokens: tokens_again(),
                    replaces: None,
                },
            ),
            (
                Some(Some(id(7))),
                false,
                StartPlan::ResumeBootstrap {
                    tokens: tokens_again(),
                    replaces: Some(id(7)),
                },
            ),
            // Cannot be written (see CAVEATS): the bootstrap wins.
            (
                Some(None),
                true,
                StartPlan::ResumeBootstrap {
                    tokens: tokens_again(),
                    replaces: None,
                },
            ),
        ] {
            assert_eq!(plan(false, true, bootstrap, decommission), expected);
        }
    }

    #[test]
    fn the_first_gossip_says_where_the_start_is() {
        let tokens = vec![Token(5)];
        let value = |plan: &StartPlan, key: &str| {
            plan.gossip()
                .into_iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v)
        };
        let restart = StartPlan::Restart {
            tokens: tokens.clone(),
        };
        assert_eq!(value(&restart, keys::STATUS).as_deref(), Some("NORMAL"));
        assert_eq!(value(&restart, keys::PHASE), None);
        assert!(restart.is_member());

        let leaving = StartPlan::AbandonDecommission {
            tokens: tokens.clone(),
        };
        assert_eq!(value(&leaving, keys::STATUS).as_deref(), Some("LEAVING"));
        assert_eq!(value(&leaving, keys::PHASE).as_deref(), Some("read_old"));
        assert!(leaving.is_member());

        let resume = StartPlan::ResumeBootstrap {
            tokens: tokens.clone(),
            replaces: Some(id(3)),
        };
        assert_eq!(value(&resume, keys::STATUS).as_deref(), Some("JOINING"));
        assert_eq!(value(&resume, keys::PHASE).as_deref(), Some("pending"));
        assert_eq!(value(&resume, keys::REPLACES), Some(id(3).to_string()));
        assert_eq!(
            value(&resume, keys::TOKENS),
            Some(keys::encode_tokens(&tokens))
        );
        assert!(!resume.is_member());

        let fresh = StartPlan::Fresh { replaces: None };
        assert_eq!(value(&fresh, keys::STATUS).as_deref(), Some("JOINING"));
        assert_eq!(value(&fresh, keys::TOKENS).as_deref(), Some(""));
        assert!(!fresh.is_member());
    }
}
