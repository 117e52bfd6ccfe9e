//! Topology changes a run makes while its faults happen: a node joins, one
//! decommissions, a dead one is removed, a dead one is replaced, or all of
//! these in a row with restarts between them (churn).
//!
//! The node a change is about, and a node that starts late (a joiner, a
//! replacer), take no faults and coordinate no client requests: the faults
//! hit the other nodes (the streaming sources among them), and the clients
//! keep writing and reading through those at QUORUM while ranges move.

use std::time::Duration;

/// When a change starts, after the cluster formed: within the fault phase.
pub const CHANGE_AT: Duration = Duration::from_secs(2);
/// How long after a node dies its removal or replacement starts: time for
/// the failure detector to see it down.
pub const AFTER_DEATH: Duration = Duration::from_secs(3);

/// The topology change of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// No change.
    Steady,
    /// A fourth node joins three.
    Join,
    /// One of four nodes decommissions.
    Decommission,
    /// One of four nodes dies and is removed.
    RemoveNode,
    /// One of four nodes dies and a new node replaces it.
    Replace,
    /// Three nodes, then in a row: n3 joins and restarts three times, n4
    /// joins, n3 decommissions, n4 restarts twice, n5 joins, n4 dies and
    /// is removed.
    Churn,
}

/// What each node of a run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Nodes (turmoil hosts) of the run.
    pub hosts: usize,
    /// Nodes `0..stable` coordinate and take faults.
    pub stable: usize,
    /// A node started this long after the cluster formed instead of at
    /// once, replacing the dead node given.
    pub late: Option<(usize, Duration, Option<usize>)>,
    /// A node killed for good this long after the cluster formed.
    pub killed: Option<(usize, Duration)>,
    /// Nodes that start only when the client says so (churn).
    pub gated: Vec<usize>,
    /// The nodes of the cluster at the end.
    pub final_nodes: Vec<usize>,
}

impl Scenario {
    pub const CHANGES: [Scenario; 5] = [
        Scenario::Join,
        Scenario::Decommission,
        Scenario::RemoveNode,
        Scenario::Replace,
        Scenario::Churn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::Join => "join",
            Scenario::Decommission => "decommission",
            Scenario::RemoveNode => "removenode",
            Scenario::Replace => "replace",
            Scenario::Churn => "churn",
        }
    }

    pub fn parse(name: &str) -> Option<Scenario> {
        [Scenario::Steady]
            .into_iter()
            .chain(Scenario::CHANGES)
            .find(|s| s.name() == name)
    }

    /// The layout of a run with `nodes` nodes when steady (changes use
    /// their own counts).
    pub fn layout(self, nodes: usize) -> Layout {
        match self {
            Scenario::Steady => Layout {
                hosts: nodes,
                stable: nodes,
                late: None,
                killed: None,
                gated: Vec::new(),
                final_nodes: (0..nodes).collect(),
            },
            Scenario::Join => Layout {
                hosts: 4,
                stable: 3,
                late: Some((3, CHANGE_AT, None)),
                killed: None,
                gated: Vec::new(),
                final_nodes: vec![0, 1, 2, 3],
            },
            Scenario::Decommission | Scenario::RemoveNode => Layout {
                hosts: 4,
                stable: 3,
                late: None,
                killed: (self == Scenario::RemoveNode).then_some((3, CHANGE_AT)),
                gated: Vec::new(),
                final_nodes: vec![0, 1, 2],
            },
            Scenario::Replace => Layout {
                hosts: 5,
                stable: 3,
                late: Some((4, CHANGE_AT + AFTER_DEATH, Some(3))),
                killed: Some((3, CHANGE_AT)),
                gated: Vec::new(),
                final_nodes: vec![0, 1, 2, 4],
            },
            Scenario::Churn => Layout {
                hosts: 6,
                stable: 3,
                late: None,
                killed: None,
                gated: vec![3, 4, 5],
                final_nodes: vec![0, 1, 2, 5],
            },
        }
    }
}
