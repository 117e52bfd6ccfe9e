//! ringkv-node: a peer of a ringkv cluster.
//!
//! Layers, bottom-up (a module uses only its own layer and those before
//! it; `layering`'s test checks this list against the code):
//! - [`identity`], [`metrics`], [`workers`], [`linearizable`]: the node
//!   id, the metric names, the table of named tasks, and the checker of
//!   compare-and-set histories;
//! - [`clock`]: the hybrid logical clock that timestamps writes;
//! - [`ring`]: tokens, token ranges, replica placement and token allocation;
//! - [`storage`]: cells, last-write-wins, RocksDB and the durability policy
//!   (and the node id kept on disk);
//! - [`membership`]: gossip, failure detection and the cluster view (and
//!   the view in words: a peer's name, the changes in progress);
//! - [`peer`]: what one node asks of another (the replica transports and
//!   their errors), the Merkle trees replicas compare, and the
//!   replica-side handlers;
//! - [`hints`]: hinted handoff (the hint store and its replay);
//! - [`coordinator`]: the read and write paths and consistency levels
//!   (stores hints for replicas that miss a write);
//! - [`repair`]: Merkle-tree anti-entropy;
//! - [`streaming`]: range streaming for topology changes (join, replace,
//!   decommission, removenode) and cleanup;
//! - [`console`]: what the web console charts: samples each node keeps of
//!   itself, copies of its peers', and the SVG charts drawn from them;
//! - [`auth`]: users, roles and the credential check of the client APIs;
//! - [`rpc`]: gRPC adapters, the credential check around the client API's
//!   services, and the network they run over;
//! - [`resp`]: the Redis-protocol front door (over the coordinator, like
//!   the gRPC client API);
//! - [`config`]: the settings, and the settings each layer takes derived
//!   from them;
//! - [`server`], [`telemetry`]: wiring and shutdown; logs;
//! - `sim` (tests only): the deterministic simulation of a cluster.

pub mod auth;
pub mod clock;
pub mod config;
pub mod console;
pub mod coordinator;
pub mod hints;
pub mod identity;
#[cfg(test)]
mod layering;
pub mod linearizable;
pub mod membership;
pub mod metrics;
pub mod peer;
pub mod repair;
pub mod resp;
pub mod ring;
pub mod rpc;
pub mod server;
#[cfg(test)]
mod sim;
pub mod storage;
pub mod streaming;
pub mod telemetry;
pub mod workers;
