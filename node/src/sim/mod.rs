//! Deterministic simulation: N real nodes (the real coordinator, hints,
//! repair, chitchat membership and tonic services) in one process and one
//! thread, over turmoil's simulated network and clock, with faults drawn
//! from one seed.
//!
//! A run ([`run`]):
//! 1. builds a turmoil simulation seeded with the seed; each node is a
//!    turmoil host running `server::Node` over the simulated TCP and UDP
//!    ([`net`]), a crash-modelling `MemoryStorage`, a wall clock that is the
//!    simulation's plus a per-node offset, and RNGs seeded from the seed;
//! 2. a client host runs the workload ([`workload`]) against every node's
//!    client API while the driver applies the fault schedule ([`faults`]):
//!    partitions (one node, minority/majority, one way), delay, loss,
//!    pauses (all of a node's links held), crashes (unsynced writes lost)
//!    and restarts, clock offsets and jumps;
//! 3. the driver heals everything; the client waits for gossip to see every
//!    node, runs a full repair through each node's Admin API and reads
//!    back; then [`check`] checks the invariants against the history and
//!    against every replica's store.
//!
//! Everything a run does is a function of the seed: turmoil's RNG and
//! tokio's (`--cfg tokio_unstable`, see `.cargo/config.toml`) are seeded,
//! node ids, tokens and the coordinator's choices come from the seed, the
//! OS entropy that chitchat and std's hash maps draw comes from the seed
//! ([`entropy`]), blocking storage work runs in place, and gossip sends go
//! out in sorted order. The history (every operation, its outcome and simulated time)
//! hashes to the same value on every run of a seed; a test checks it.
//!
//! CAVEATS: a pause holds a node's links (as a stopped process's peers see
//! it) but its timers still run; time inside a host advances in turmoil
//! ticks (1 ms), so races finer than a tick are not explored.

pub mod check;
pub mod entropy;
pub mod faults;
pub mod net;
pub mod scenario;
pub mod workload;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::clock::WallClock;
use crate::config::{Config, SyncMode};
use crate::identity::NodeId;
use crate::server::{Environment, Listeners, Node};
use crate::storage::{DiskHealth, MemoryStorage, Storage};

pub use faults::Mix;
pub use scenario::Scenario;

/// Ports every simulated node uses (each node has its own IP).
pub const CLIENT_PORT: u16 = 7400;
const PEER_PORT: u16 = 7401;
const GOSSIP_PORT: u16 = 7402;
/// Replicas per key.
pub const REPLICATION_FACTOR: usize = 3;
/// How long a run may take in simulated time before it counts as stuck.
const SIMULATION_LIMIT: Duration = Duration::from_secs(600);

/// One simulated node: its store (which outlives crashes) and its clock
/// offset.
#[derive(Clone)]
pub struct SimNode {
    pub name: String,
    pub id: NodeId,
    pub store: Arc<MemoryStorage>,
    /// Added to the simulation's wall clock, in microseconds.
    pub clock_offset: Arc<AtomicI64>,
}

/// What a run produced.
pub struct Outcome {
    pub seed: u64,
    pub mix: Mix,
    pub scenario: Scenario,
    /// One line per event, in order.
    pub history: Vec<String>,
    /// Broken invariants; empty when the run passed.
    pub violations: Vec<String>,
}

impl Outcome {
    /// A hash of the history, equal across runs of one seed.
    pub fn history_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: stable across runs and processes.
        let mut hasher = std::hash::DefaultHasher::new();
        self.history.hash(&mut hasher);
        hasher.finish()
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut command = format!(
            "scripts/simulate.sh --replay {} --mix {}",
            self.seed,
            self.mix.name()
        );
        if self.scenario != Scenario::Steady {
            command.push_str(&format!(" --change {}", self.scenario.name()));
        }
        command
    }
}

/// A node's id, from its index and the seed.
fn node_id(seed: u64, index: usize) -> NodeId {
    let high = u128::from(seed) << 64;
    NodeId(uuid::Uuid::from_u128(high | (index as u128 + 1)))
}

/// The configuration of node `index`, whose IP is `ip`, seeded by `seed_ip`.
fn node_config(index: usize, ip: IpAddr, seed_ip: IpAddr) -> Config {
    let at = |port| SocketAddr::new(ip, port);
    Config {
        node_name: format!("n{index}"),
        listen_client: at(CLIENT_PORT),
        listen_peer: at(PEER_PORT),
        listen_gossip: at(GOSSIP_PORT),
        listen_http: at(7480),
        broadcast_address: ip.to_string(),
        seeds: vec![SocketAddr::new(seed_ip, GOSSIP_PORT).to_string()],
        replication_factor: REPLICATION_FACTOR as u32,
        num_tokens: 8,
        gossip_interval_ms: 100,
        // Short, so that gossip forgets every node a run kills or removes
        // and the ring must come from what nodes remember and carry.
        gossip_dead_node_grace_ms: 4_000,
        ring_delay_ms: 1_000,
        join_timeout_ms: 30_000,
        write_timeout_ms: 1_000,
        read_timeout_ms: 1_000,
        internode_timeout_ms: 1_000,
        anti_entropy_interval_ms: 0,
        commitlog_sync: SyncMode::Group,
        shutdown_timeout_ms: 1_000,
        ..Config::default()
    }
}

/// Microseconds since the epoch on this host's simulated clock.
fn simulated_micros() -> i64 {
    turmoil::since_epoch()
        .and_then(|d| i64::try_from(d.as_micros()).ok())
        .unwrap_or(0)
}

/// How a node of a run starts.
struct Start {
    /// Its first start waits until this long after the cluster formed
    /// (`formed`), and replaces the node with that id.
    late: Option<(Duration, Option<NodeId>)>,
    formed: Rc<std::cell::Cell<Option<Duration>>>,
    /// Hinted handoff on.
    hints: bool,
    /// Its first start waits until the client releases it (churn).
    gate: Option<Rc<RefCell<workload::History>>>,
}

/// Registers node `index` as a turmoil host; restarts run it again on the
/// same store.
fn add_node(
    sim: &mut turmoil::Sim<'_>,
    seed: u64,
    (node, index): (&SimNode, usize),
    post: &net::Post,
    start_as: Start,
) {
    let Start {
        late,
        formed,
        hints,
        gate,
    } = start_as;
    let post = post.clone();
    let store = node.store.clone();
    let offset = node.clock_offset.clone();
    let starts = Rc::new(RefCell::new(0u64));
    sim.host(node.name.as_str(), move || {
        let (store, offset, post) = (store.clone(), offset.clone(), post.clone());
        let formed = formed.clone();
        let gate = gate.clone();
        let start = {
            let mut starts = starts.borrow_mut();
            *starts += 1;
            *starts
        };
        async move {
            crate::storage::run_inline_on_this_thread();
            let ip = turmoil::lookup(format!("n{index}"));
            let mut config = node_config(index, ip, turmoil::lookup("n0"));
            config.hinted_handoff_enabled = hints;
            if let Some((at, replaces)) = late {
                if start == 1 {
                    // Counted from the cluster's formation.
                    let formed_at = loop {
                        match formed.get() {
                            Some(formed_at) => break formed_at,
                            None => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    };
                    let now = turmoil::sim_elapsed().unwrap_or_default();
                    tokio::time::sleep((formed_at + at).saturating_sub(now)).await;
                }
                config.replace = replaces.map(|id| id.to_string()).unwrap_or_default();
            }
            if let Some(gate) = gate
                && start == 1
            {
                while !gate.borrow().released.contains(&index) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            let wall = WallClock::from_fn(move || {
                simulated_micros().saturating_add(offset.load(Ordering::Relaxed))
            });
            let engine: Arc<dyn Storage> = store;
            let env = Environment {
                wall,
                network: net::network(post),
                seed: Some(seed ^ (index as u64) << 32 ^ start),
                storage: Some((engine, Arc::new(DiskHealth::default()))),
                metrics: false,
            };
            let listeners = Listeners {
                client: net::listen(config.listen_client).await?,
                peer: net::listen(config.listen_peer).await?,
                http: None,
                resp: None,
            };
            Node::open(&config, env)
                .await?
                .run(listeners, CancellationToken::new())
                .await?;
            Ok(())
        }
    });
}

/// Runs one seed under one fault mix with `nodes` nodes (or the nodes a
/// topology change `scenario` uses), on a fresh thread whose OS entropy
/// comes from the seed (see [`entropy`]).
pub fn run(seed: u64, mix: Mix, nodes: usize, scenario: Scenario) -> Outcome {
    let run = std::thread::Builder::new()
        .name(format!("sim-{seed}"))
        .spawn(move || {
            entropy::seed_this_thread(seed);
            run_here(seed, mix, scenario.layout(nodes), scenario)
        });
    match run.map(|thread| thread.join()) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) | Err(_) => Outcome {
            seed,
            mix,
            scenario,
            history: Vec::new(),
            violations: vec!["the simulation panicked".into()],
        },
    }
}

fn run_here(seed: u64, mix: Mix, layout: scenario::Layout, scenario: Scenario) -> Outcome {
    let nodes = layout.hosts;
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        .simulation_duration(SIMULATION_LIMIT)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_micros(200))
        .max_message_latency(Duration::from_millis(2))
        .build();
    let cluster: Vec<SimNode> = (0..nodes)
        .map(|index| {
            let store = Arc::new(MemoryStorage::crash_safe(864_000));
            let id = node_id(seed, index);
            // Named before the first start, so ids replay too.
            let _ = crate::storage::node_id::assign(store.as_ref(), id);
            SimNode {
                name: format!("n{index}"),
                id,
                store,
                clock_offset: Arc::new(AtomicI64::new(0)),
            }
        })
        .collect();
    let post = net::Post::default();
    let formed = Rc::new(std::cell::Cell::new(None));
    // Half the topology runs go without hinted handoff: then nothing but
    // the change's own protocol (pending writes, strict sources) keeps a
    // quorum of the new replicas holding every acknowledged write.
    let hints = scenario == Scenario::Steady || seed.is_multiple_of(2);
    let history = Rc::new(RefCell::new(workload::History::default()));
    for (index, node) in cluster.iter().enumerate() {
        let late = layout
            .late
            .filter(|(late, _, _)| *late == index)
            .map(|(_, at, replaces)| (at, replaces.map(|dead| cluster[dead].id)));
        let start = Start {
            late,
            formed: formed.clone(),
            hints,
            gate: layout.gated.contains(&index).then(|| history.clone()),
        };
        add_node(&mut sim, seed, (node, index), &post, start);
    }
    let ids = cluster.iter().map(|n| n.id.to_string()).collect();
    sim.client(
        "client",
        workload::run(seed, scenario, layout.clone(), ids, history.clone()),
    );
    // Faults hit the stable nodes only (see `scenario`).
    let schedule = faults::schedule(seed, mix, layout.stable);
    let remaining: Vec<SimNode> = layout
        .final_nodes
        .iter()
        .map(|&i| cluster[i].clone())
        .collect();
    // Without crashes, streaming, pending writes and hints alone must have
    // put every acknowledged write on every replica of the final ring (on a
    // quorum of them, after a topology change) before any repair runs.
    let mut driver = faults::Driver::new(schedule, &cluster, remaining.clone());
    driver.changed = scenario != Scenario::Steady;
    let mut killed = false;
    let mut failure = None;
    loop {
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => {
                failure = Some(format!("the simulation failed: {error}"));
                break;
            }
        }
        let now = sim.elapsed();
        let formed_at = history.borrow().formed_at;
        formed.set(formed_at);
        if let Some((node, at)) = layout.killed
            && let Some(formed_at) = formed_at
            && !killed
            && now >= formed_at + at
        {
            sim.crash(cluster[node].name.as_str());
            history
                .borrow_mut()
                .record(now, format!("n{node} killed for good"));
            killed = true;
        }
        // Restarts and kills the client asked for (churn).
        let (restarts, kills) = {
            let mut history = history.borrow_mut();
            (
                std::mem::take(&mut history.restart),
                std::mem::take(&mut history.kill),
            )
        };
        for node in restarts {
            sim.bounce(cluster[node].name.as_str());
        }
        for node in kills {
            sim.crash(cluster[node].name.as_str());
        }
        let over = history.borrow().faults_over;
        driver.advance(&mut sim, now, over, &mut history.borrow_mut());
    }
    let history = Rc::try_unwrap(history)
        .map(RefCell::into_inner)
        .unwrap_or_else(|shared| shared.borrow().clone());
    let mut violations = check::check(&history, &remaining);
    violations.extend(failure);
    Outcome {
        seed,
        mix,
        scenario,
        history: history.events,
        violations,
    }
}
