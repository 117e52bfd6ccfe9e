//! The faults of a run, drawn from its seed, and the driver that applies
//! them to the simulation at their times and heals everything when the
//! workload's fault phase ends.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::SimNode;
use super::workload::{FAULTS_FROM, FAULTS_UNTIL, History};

/// Which kinds of faults a run draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Partitions: one node, minority/majority, one way.
    Partition,
    /// Crashes (losing unsynced writes) and restarts.
    Crash,
    /// Pauses: every link of a node held, then released.
    Pause,
    /// Clock offsets and jumps between nodes, with partitions.
    Clock,
    /// Message delay and loss.
    Lossy,
    /// All of the above.
    Mixed,
}

impl Mix {
    pub const ALL: [Mix; 6] = [
        Mix::Partition,
        Mix::Crash,
        Mix::Pause,
        Mix::Clock,
        Mix::Lossy,
        Mix::Mixed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mix::Partition => "partition",
            Mix::Crash => "crash",
            Mix::Pause => "pause",
            Mix::Clock => "clock",
            Mix::Lossy => "lossy",
            Mix::Mixed => "mixed",
        }
    }

    pub fn parse(name: &str) -> Option<Mix> {
        Mix::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// One fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// No messages between the two sides.
    Partition(Vec<usize>, Vec<usize>),
    /// No messages from the first side to the second.
    PartitionOneWay(Vec<usize>, Vec<usize>),
    /// Every link of the node held (messages queue until released).
    Pause(usize),
    /// The node stops; what it had not fsynced is lost.
    Crash(usize),
    /// The node's clock moves by this many microseconds.
    ClockJump(usize, i64),
    /// Messages take up to this long.
    Delay(Duration),
    /// Links of the node fail with this probability per step.
    Loss(usize, f64),
    /// Ends every fault above (restarting crashed nodes, releasing paused
    /// ones, resetting delay and loss); clock offsets stay.
    Heal,
}

/// Faults at simulated times, in order.
pub type Schedule = Vec<(Duration, Fault)>;

/// The faults of `seed` under `mix`, within the workload's fault phase
/// (times count from the cluster's formation).
pub fn schedule(seed: u64, mix: Mix, nodes: usize) -> Schedule {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_fa17);
    let mut at = FAULTS_FROM + Duration::from_millis(rng.random_range(0..1_000));
    let mut schedule = Vec::new();
    let end = FAULTS_UNTIL.saturating_sub(Duration::from_secs(1));
    while at < end {
        let kind = match mix {
            Mix::Mixed => Mix::ALL[rng.random_range(0..5)],
            other => other,
        };
        let node = rng.random_range(0..nodes);
        let fault = match kind {
            Mix::Partition => partition(&mut rng, nodes),
            Mix::Crash => Fault::Crash(node),
            Mix::Pause => Fault::Pause(node),
            Mix::Clock => {
                if rng.random_bool(0.5) {
                    Fault::ClockJump(node, rng.random_range(-2_000_000..2_000_000))
                } else {
                    partition(&mut rng, nodes)
                }
            }
            Mix::Lossy => {
                if rng.random_bool(0.5) {
                    Fault::Delay(Duration::from_millis(rng.random_range(5..400)))
                } else {
                    Fault::Loss(node, rng.random_range(0.001..0.05))
                }
            }
            Mix::Mixed => unreachable!("drawn above"),
        };
        schedule.push((at, fault));
        let lasts = Duration::from_millis(rng.random_range(300..3_000));
        at += lasts;
        schedule.push((at, Fault::Heal));
        at += Duration::from_millis(rng.random_range(100..1_500));
    }
    schedule
}

fn partition(rng: &mut StdRng, nodes: usize) -> Fault {
    let mut order: Vec<usize> = (0..nodes).collect();
    order.shuffle(rng);
    // One node alone, or a minority against the majority.
    let minority = if rng.random_bool(0.5) { 1 } else { nodes / 2 };
    let (a, b) = order.split_at(minority.max(1));
    if rng.random_bool(0.25) {
        if rng.random_bool(0.5) {
            Fault::PartitionOneWay(a.to_vec(), b.to_vec())
        } else {
            Fault::PartitionOneWay(b.to_vec(), a.to_vec())
        }
    } else {
        Fault::Partition(a.to_vec(), b.to_vec())
    }
}

/// Applies a schedule to a running simulation.
pub struct Driver<'a> {
    schedule: std::vec::IntoIter<(Duration, Fault)>,
    next: Option<(Duration, Fault)>,
    nodes: &'a [SimNode],
    crashed: Vec<usize>,
    paused: Vec<usize>,
    lossy: Vec<usize>,
    healed_for_good: bool,
    /// Whether any node crashed during the run.
    pub crashed_ever: bool,
    /// The nodes of the cluster at the end, whose stores the handoff check
    /// reads.
    remaining: Vec<SimNode>,
    /// A topology change ran: the handoff check asks for a quorum of the
    /// final replicas, not all of them (see `check::quorum_held`).
    pub changed: bool,
}

impl<'a> Driver<'a> {
    pub fn new(schedule: Schedule, nodes: &'a [SimNode], remaining: Vec<SimNode>) -> Self {
        let mut schedule = schedule.into_iter();
        let next = schedule.next();
        Self {
            schedule,
            next,
            nodes,
            crashed: Vec::new(),
            paused: Vec::new(),
            lossy: Vec::new(),
            healed_for_good: false,
            crashed_ever: false,
            remaining,
            changed: false,
        }
    }

    fn names(&self, indexes: &[usize]) -> Vec<String> {
        indexes
            .iter()
            .map(|&i| self.nodes[i].name.clone())
            .collect()
    }

    /// Applies what is due at `now` (the schedule counts from the
    /// cluster's formation); once `over`, heals for good.
    pub fn advance(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        now: Duration,
        over: bool,
        history: &mut History,
    ) {
        let Some(formed) = history.formed_at else {
            return;
        };
        if over {
            if !self.healed_for_good {
                self.apply(sim, Fault::Heal, now, history);
                self.healed_for_good = true;
                history.healed = true;
            }
            if history.check_handoff && !history.handoff_checked {
                // A crash loses the hints its node had not synced: only
                // runs without one must deliver everything by hints alone.
                if !self.crashed_ever {
                    let missing = if self.changed {
                        super::check::quorum_held(history, &self.remaining)
                    } else {
                        super::check::handoff(history, &self.remaining)
                    };
                    history.violations.extend(missing);
                }
                history.record(now, "handoff checked".into());
                history.handoff_checked = true;
            }
            return;
        }
        while let Some((at, _)) = &self.next {
            if formed + *at > now {
                break;
            }
            let Some((_, fault)) = self.next.take() else {
                break;
            };
            self.apply(sim, fault, now, history);
            self.next = self.schedule.next();
        }
    }

    fn apply(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        fault: Fault,
        now: Duration,
        history: &mut History,
    ) {
        history.record(now, format!("fault {fault:?}"));
        match fault {
            Fault::Partition(a, b) => {
                for x in self.names(&a) {
                    for y in self.names(&b) {
                        sim.partition(x.as_str(), y.as_str());
                    }
                }
            }
            Fault::PartitionOneWay(a, b) => {
                for x in self.names(&a) {
                    for y in self.names(&b) {
                        sim.partition_oneway(x.as_str(), y.as_str());
                    }
                }
            }
            Fault::Pause(node) => {
                if self.paused.contains(&node) || self.crashed.contains(&node) {
                    return;
                }
                let name = self.nodes[node].name.clone();
                for other in self.others(node) {
                    sim.hold(name.as_str(), other.as_str());
                }
                self.paused.push(node);
            }
            Fault::Crash(node) => {
                if self.crashed.contains(&node) {
                    return;
                }
                sim.crash(self.nodes[node].name.as_str());
                if let Err(error) = self.nodes[node].store.crash() {
                    history.record(now, format!("crash of n{node} failed: {error}"));
                }
                self.crashed.push(node);
                self.crashed_ever = true;
                history.crashed = true;
            }
            Fault::ClockJump(node, micros) => {
                self.nodes[node]
                    .clock_offset
                    .fetch_add(micros, Ordering::Relaxed);
            }
            Fault::Delay(max) => sim.set_max_message_latency(max),
            Fault::Loss(node, rate) => {
                let name = self.nodes[node].name.clone();
                for other in self.others(node) {
                    sim.set_link_fail_rate(name.as_str(), other.as_str(), rate);
                }
                self.lossy.push(node);
            }
            Fault::Heal => {
                let all: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
                for x in &all {
                    for y in &all {
                        if x != y {
                            sim.repair(x.as_str(), y.as_str());
                        }
                    }
                }
                for node in std::mem::take(&mut self.paused) {
                    let name = self.nodes[node].name.clone();
                    for other in self.others(node) {
                        sim.release(name.as_str(), other.as_str());
                    }
                }
                for node in std::mem::take(&mut self.lossy) {
                    let name = self.nodes[node].name.clone();
                    for other in self.others(node) {
                        sim.set_link_fail_rate(name.as_str(), other.as_str(), 0.0);
                        sim.repair(name.as_str(), other.as_str());
                    }
                }
                for node in std::mem::take(&mut self.crashed) {
                    sim.bounce(self.nodes[node].name.as_str());
                }
                sim.set_max_message_latency(Duration::from_millis(2));
            }
        }
    }

    /// Every other host: the other nodes and the client.
    fn others(&self, node: usize) -> Vec<String> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != node)
            .map(|(_, n)| n.name.clone())
            .chain(std::iter::once("client".to_owned()))
            .collect()
    }
}
