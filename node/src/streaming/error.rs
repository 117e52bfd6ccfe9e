//! Why a topology change or cleanup was refused or failed.

use std::time::Duration;

use super::SourceError;
use crate::identity::NodeId;
use crate::peer::ReplicaError;
use crate::ring::TokenRange;
use crate::storage::StorageError;

/// Why a topology change or cleanup was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(
        "a topology change is in progress: {0}; one change at a time, so wait until `ringkv status` shows every node NORMAL"
    )]
    InProgress(String),
    #[error(
        "decommission would leave {remaining} nodes, fewer than replication_factor = {replication_factor}; add a node first"
    )]
    TooFewNodes {
        remaining: usize,
        replication_factor: usize,
    },
    #[error("no node with id {0} is known to this cluster")]
    UnknownNode(String),
    #[error(
        "node {name} ({id}) is up; removenode is for dead nodes (run `ringkv decommission` on it instead)"
    )]
    NodeAlive { name: String, id: NodeId },
    #[error("{0}")]
    Refused(String),
    #[error("nodes {} did not see the change within {timeout:?}; it stays in progress and resumes when this node restarts", lagging.join(", "))]
    NoAgreement {
        lagging: Vec<String>,
        timeout: Duration,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("streaming {range} from {from} to {to} failed: {error}")]
    Stream {
        range: TokenRange,
        from: NodeId,
        to: NodeId,
        error: ReplicaError,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}
