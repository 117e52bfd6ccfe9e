//! Errors a coordinator answers with.

use crate::storage::StorageError;

/// Why a request failed. The numbers let clients act without parsing text.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The request itself is wrong; retrying it cannot help.
    #[error("{0}")]
    InvalidArgument(String),
    /// Fewer live replicas are known than the level requires; nothing was
    /// sent to any replica.
    #[error("not enough live replicas: required {required}, alive {alive}")]
    Unavailable { required: usize, alive: usize },
    /// Replicas did not answer in time. For a write, the outcome is unknown:
    /// it may still be applied.
    #[error("replicas did not answer in time: required {required}, received {received}")]
    Timeout { required: usize, received: usize },
    /// So many replicas refused (unreachable, or failing) that the level
    /// can no longer be met. For a write, the replicas that acknowledged
    /// keep it: the outcome is unknown to the client, as with a timeout.
    #[error("replicas failed: required {required}, received {received} ({})", reasons.join("; "))]
    Failed {
        required: usize,
        received: usize,
        reasons: Vec<String>,
    },
    /// At ANY with no replica up, no hint could be stored either (hints
    /// for the replicas are full, or the hint store failed): nothing was
    /// written anywhere, so the client may retry safely.
    #[error("no replica is up and no hint could be stored ({reason}); nothing was written")]
    NotStored { reason: String },
    /// This node's clock is further from the majority of its peers' than
    /// `max_clock_offset_ms`: it coordinates no writes (another node can).
    /// Nothing was written.
    #[error("{0}")]
    ClockOffset(String),
    /// The local store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}
