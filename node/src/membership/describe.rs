//! The cluster view in words: a peer's name, and the topology changes in
//! progress as the refusals, logs, `status` and the console say them.

use super::view::{Change, ClusterView};
use crate::identity::NodeId;

impl ClusterView {
    /// The name of `node` as gossip tells it (its id while unknown).
    pub fn name_of(&self, node: &NodeId) -> String {
        self.member(node)
            .map_or_else(|| node.to_string(), |m| m.name.clone())
    }

    /// `node` by name and id ("n2 (4f0c…)"), for messages that must say
    /// which node exactly; its id alone while unknown.
    fn named(&self, node: &NodeId) -> String {
        self.member(node)
            .map_or_else(|| node.to_string(), |m| format!("{} ({node})", m.name))
    }

    /// `change` in words: "node n4 (…) is joining".
    pub fn describe(&self, change: &Change) -> String {
        let name = |id: &NodeId| self.named(id);
        match change {
            Change::Join(node) => format!("node {} is joining", name(node)),
            Change::Replace { node, replaces } => {
                format!("node {} is replacing {}", name(node), name(replaces))
            }
            Change::Leave(node) => format!("node {} is leaving", name(node)),
            Change::Remove { node, by } => format!("node {} is removing {}", name(by), name(node)),
        }
    }

    /// The first change in progress, in words; `Some("")` while a
    /// transition is known but its changes are not.
    pub fn first_change(&self) -> Option<String> {
        let t = self.transition()?;
        Some(
            t.changes
                .first()
                .map(|(change, _)| self.describe(change))
                .unwrap_or_default(),
        )
    }

    /// A change in progress driven by none of `drivers`, in words.
    pub fn change_besides(&self, drivers: &[NodeId]) -> Option<String> {
        self.transition()?
            .changes
            .iter()
            .find(|(change, _)| !drivers.contains(&change.driver()))
            .map(|(change, _)| self.describe(change))
    }

    /// Every change in progress with its phase, in words ("node n4 (…) is
    /// joining (read_new); …"); empty when none.
    pub fn changes_in_words(&self) -> String {
        self.transition()
            .map(|t| {
                t.changes
                    .iter()
                    .map(|(change, phase)| {
                        format!("{} ({})", self.describe(change), phase.as_str())
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }

    /// The live nodes that do not gossip this view's topology yet, in
    /// words.
    pub fn laggards_in_words(&self) -> String {
        let names: Vec<String> = self
            .topology_laggards()
            .iter()
            .map(|m| m.name.clone())
            .collect();
        format!(
            "node(s) {} have not seen the current ring yet",
            names.join(", ")
        )
    }
}
