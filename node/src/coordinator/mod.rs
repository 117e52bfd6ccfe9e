//! The coordinator: any node runs a client request against the key's
//! replicas and answers once the consistency level is met.
//!
//! - [`write`](Coordinator::write): fan out to every live replica, answer
//!   after W acknowledgements.
//! - [`read`](Coordinator::read): one data read and R−1 digest reads;
//!   on disagreement, full reads, LWW, and blocking read repair.
//!
//! Replicas come from the ring of the current [`ClusterView`]; liveness from
//! the failure detector. A request whose level needs more live replicas than
//! the view knows of fails with `Unavailable` before anything is sent.
//! Replicas are reached through [`ReplicaTransport`], so the paths are unit
//! tested over an in-memory cluster.
//!
//! CAVEATS: no speculative retry on slow (as opposed to failed) replicas;
//! no hinted handoff yet, so a replica that is down misses writes until
//! read repair touches the key.

mod consistency;
mod error;
mod read;
mod request;
pub mod transport;
mod write;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

pub use consistency::ConsistencyLevel;
pub use error::CoordinatorError;
pub use request::{Limits, MAX_TTL_SECONDS, ReadRequest, ReadResult, WriteRequest, validate_key};
pub use transport::{ReadReply, ReplicaError, ReplicaTransport};

use crate::clock::HybridClock;
use crate::identity::NodeId;
use crate::membership::{ClusterView, ViewHandle};
use crate::ring::Token;

/// Settings of the request paths.
#[derive(Debug, Clone)]
pub struct CoordinatorSettings {
    /// N, replicas per key.
    pub replication_factor: usize,
    pub write_timeout: Duration,
    pub read_timeout: Duration,
    pub limits: Limits,
}

/// Who to ask for one request.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaPlan {
    /// Replicas up according to the view, in ring order.
    pub alive: Vec<NodeId>,
    /// Acknowledgements the level requires.
    pub required: usize,
}

/// Runs reads and writes.
pub struct Coordinator {
    view: ViewHandle,
    transport: Arc<dyn ReplicaTransport>,
    clock: Arc<HybridClock>,
    settings: CoordinatorSettings,
}

impl Coordinator {
    pub fn new(
        view: ViewHandle,
        transport: Arc<dyn ReplicaTransport>,
        clock: Arc<HybridClock>,
        settings: CoordinatorSettings,
    ) -> Self {
        Self {
            view,
            transport,
            clock,
            settings,
        }
    }

    /// The replicas of `token` split by liveness, or `Unavailable` when too
    /// few are up for `level`.
    fn plan(
        &self,
        view: &ClusterView,
        token: Token,
        level: ConsistencyLevel,
    ) -> Result<ReplicaPlan, CoordinatorError> {
        let required = level.required(self.settings.replication_factor);
        let alive: Vec<NodeId> = view
            .ring()
            .replicas(token)
            .iter()
            .copied()
            .filter(|node| view.is_alive(node))
            .collect();
        if alive.len() < required {
            return Err(CoordinatorError::Unavailable {
                required,
                alive: alive.len(),
            });
        }
        Ok(ReplicaPlan { alive, required })
    }
}
