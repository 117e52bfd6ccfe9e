//! The coordinator: any node runs a client request against the key's
//! replicas and answers once the consistency level is met.
//!
//! - [`write`](Coordinator::write): fan out to every live replica, answer
//!   after W acknowledgements.
//!   The quorum arithmetic is plain data in `tally`.
//! - [`read`](Coordinator::read): one data read and R−1 digest reads;
//!   on disagreement, full reads, LWW, and blocking read repair.
//! - [`paxos`]: the proposer's decisions in a round of compare-and-set
//!   (the rounds themselves are not wired to requests yet).
//!
//! Replicas come from the ring of the current [`ClusterView`] (writes also
//! go to the replicas a topology change in progress adds, see `plan`);
//! liveness from the failure detector. A request whose level needs more live replicas than
//! the view knows of fails with `Unavailable` before anything is sent.
//! Replicas are reached through [`ReplicaTransport`], so the paths are unit
//! tested over an in-memory cluster.
//!
//! Replicas that are down when a write starts, or that fail or time out,
//! get a hint stored on the coordinator (if hinted handoff is on); hints do
//! not count toward the level, except at ANY. After a read whose replicas
//! agreed, a background read repair compares the replicas not asked, with
//! probability `read_repair_chance`.
//!
//! CAVEATS: no speculative retry on slow (as opposed to failed) replicas.

mod consistency;
mod error;
mod metrics;
pub mod paxos;
mod query;
mod read;
mod request;
mod round;
mod tally;
pub mod trace;
mod write;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

pub use consistency::ConsistencyLevel;
pub use error::CoordinatorError;
pub use metrics::{Op, OpMetrics, Outcome, RequestMetrics};
pub use query::{
    DEFAULT_COUNT_LIMIT, DEFAULT_QUERY_BYTES, DEFAULT_QUERY_LIMIT, MAX_QUERY_LIMIT, QueryPage,
    QueryRequest, Row, RowCount,
};
pub use request::{
    BatchOp, BatchRequest, Limits, MAX_BATCH_BYTES, MAX_BATCH_OPS, MAX_KEY_SIZE, MAX_SORT_KEY_SIZE,
    MAX_TTL_SECONDS, ReadRequest, ReadResult, Target, WriteRequest, validate_key, validate_row_key,
    validate_sort_key,
};

use crate::clock::{ClockOffsets, HybridClock};
use crate::hints::HintStore;
use crate::identity::NodeId;
use crate::membership::{ClusterView, ViewHandle};
use crate::peer::ReplicaTransport;
use crate::ring::Token;
use crate::workers::{Worker, Workers};

/// The names the work that outlives a request runs under.
const REPLICA_SENDS: &str = "replica writes after the answer";
const READ_REPAIRS: &str = "background read repair";

/// Settings of the request paths.
#[derive(Debug, Clone)]
pub struct CoordinatorSettings {
    /// N, replicas per key.
    pub replication_factor: usize,
    pub write_timeout: Duration,
    pub read_timeout: Duration,
    pub limits: Limits,
    /// Chance (0..1) of a background read repair after an agreeing read.
    pub read_repair_chance: f64,
}

/// Who to ask for one request.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaPlan {
    /// Replicas up according to the view, in ring order.
    pub alive: Vec<NodeId>,
    /// Replicas the view knows to be down.
    pub down: Vec<NodeId>,
    /// Acknowledgements the level requires.
    pub required: usize,
}

/// Runs reads and writes.
pub struct Coordinator {
    view: ViewHandle,
    transport: Arc<dyn ReplicaTransport>,
    clock: Arc<HybridClock>,
    settings: CoordinatorSettings,
    /// `None` when hinted handoff is off.
    hints: Option<Arc<HintStore>>,
    /// Own the work that outlives a request (replica sends after an early
    /// answer, background read repair), so shutdown can wait for it.
    replica_sends: Worker,
    read_repairs: Worker,
    /// Picks read replicas and background read repairs; seeded by the
    /// simulation so a run replays exactly.
    rng: Mutex<StdRng>,
    /// Peers' clock offsets; a node whose clock is far from the majority's
    /// coordinates no writes. `None`: not checked.
    offsets: Option<Arc<ClockOffsets>>,
}

impl Coordinator {
    pub fn new(
        view: ViewHandle,
        transport: Arc<dyn ReplicaTransport>,
        clock: Arc<HybridClock>,
        settings: CoordinatorSettings,
        hints: Option<Arc<HintStore>>,
    ) -> Self {
        Self {
            view,
            transport,
            clock,
            settings,
            hints,
            replica_sends: Workers::new().worker(REPLICA_SENDS),
            read_repairs: Workers::new().worker(READ_REPAIRS),
            rng: Mutex::new(StdRng::from_rng(&mut rand::rng())),
            offsets: None,
        }
    }

    /// Refuses writes while `offsets` says this node's clock is far from
    /// the majority's.
    pub fn with_clock_offsets(mut self, offsets: Arc<ClockOffsets>) -> Self {
        self.offsets = Some(offsets);
        self
    }

    /// Draws the coordinator's random choices from `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = Mutex::new(StdRng::seed_from_u64(seed));
        self
    }

    /// This node's id.
    pub fn local(&self) -> NodeId {
        self.view.load().local()
    }

    /// The name of `node` as gossip tells it (its id while unknown).
    pub fn name_of(&self, node: &NodeId) -> String {
        self.view.load().name_of(node)
    }

    /// The wall clock the coordinator stamps writes and expiries with.
    pub fn wall(&self) -> &crate::clock::WallClock {
        self.clock.wall()
    }

    /// Runs work that outlives requests on `tasks`; the node waits for it
    /// on shutdown before its final WAL sync.
    pub fn with_tasks(mut self, tasks: &Workers) -> Self {
        self.replica_sends = tasks.worker(REPLICA_SENDS);
        self.read_repairs = tasks.worker(READ_REPAIRS);
        self
    }

    /// The replicas of `token` split by liveness, or `Unavailable` when too
    /// few are up for `level`. At ANY a hint for a down replica will do.
    ///
    /// A write also goes to the replicas a topology change in progress
    /// adds, and needs one more acknowledgement for each (as Cassandra's
    /// pending endpoints): with one change at a time that puts it on a
    /// quorum of the replica sets before and after the change alike.
    fn plan(
        &self,
        view: &ClusterView,
        token: Token,
        level: ConsistencyLevel,
        write: bool,
    ) -> Result<ReplicaPlan, CoordinatorError> {
        let (replicas, pending) = if write {
            view.write_replicas(token)
        } else {
            (std::borrow::Cow::Borrowed(view.ring().replicas(token)), 0)
        };
        let mut required = level.required(self.settings.replication_factor);
        if level != ConsistencyLevel::Any {
            required += pending;
        }
        let (alive, down): (Vec<NodeId>, Vec<NodeId>) =
            replicas.iter().partition(|node| view.is_alive(node));
        let hint_will_do =
            level == ConsistencyLevel::Any && self.hints.is_some() && !down.is_empty();
        if alive.len() < required && !hint_will_do {
            return Err(CoordinatorError::Unavailable {
                required,
                alive: alive.len(),
            });
        }
        Ok(ReplicaPlan {
            alive,
            down,
            required,
        })
    }
}
