//! Membership: who is in the cluster, who is up, and the ring they form.
//!
//! - [`keys`]: what each node gossips about itself.
//! - [`view`]: [`ClusterView`], the immutable picture request paths read.
//! - [`gossip`]: [`Membership`], chitchat wiring and the view worker.
//! - [`join`]: a node's first start: choosing tokens.
//! - [`persist`]: the ring remembered across restarts.
//! - [`twins`]: another running node with this node's id.
//! - `describe`: the view in words (a peer's name, the changes in
//!   progress).

mod describe;
mod gossip;
pub mod join;
pub mod keys;
pub mod persist;
pub mod twins;
mod view;

pub use gossip::{GossipSettings, Membership, ViewHandle};
pub use keys::NodeStatus;
pub use view::{Change, ClusterView, GossipEntry, Member, Transition};
