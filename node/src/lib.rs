//! ringkv-node: a peer of a ringkv cluster.
//!
//! Layers, bottom-up:
//! - [`clock`]: the hybrid logical clock that timestamps writes;
//! - [`ring`]: tokens (where keys live);
//! - [`storage`]: cells, last-write-wins, RocksDB and the durability policy;
//! - [`coordinator`]: the read and write paths and consistency levels;
//! - [`rpc`]: gRPC adapters; [`server`]: wiring and shutdown;
//! - [`config`], [`identity`], [`telemetry`]: settings, node id, logs.

pub mod clock;
pub mod config;
pub mod coordinator;
pub mod identity;
pub mod ring;
pub mod rpc;
pub mod server;
pub mod storage;
pub mod telemetry;
