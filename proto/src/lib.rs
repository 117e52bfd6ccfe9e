//! Protocol buffers of ringkv, generated at build time from `proto/`.
//!
//! - [`v1`]: the client API (`KeyValue`) and the operator API (`Admin`),
//!   served on the client port (7400 by default).
//! - [`internal::v2`]: the node-to-node API (`Peer`), served on the peer port
//!   (7401 by default).
//!
//! - [`partitioner`]: the key → token function that nodes and clients share.
//!
//! These types stop at the edges: the node converts them to its domain types
//! in its `rpc` module, the client library in its own code.

pub mod partitioner;

/// The binary metadata entry that carries a traced request's
/// [`v1::Trace`] (protobuf), on the answer or on the error status.
pub const TRACE_METADATA_KEY: &str = "ringkv-trace-bin";

/// The public client and operator API, package `ringkv.v1`.
pub mod v1 {
    tonic::include_proto!("ringkv.v1");
}

/// Node-to-node messages; not a stable API.
pub mod internal {
    /// Package `ringkv.internal.v2` (v1 was the releases of storage
    /// format 1, whose keys were plain keys: the two refuse each other).
    pub mod v2 {
        tonic::include_proto!("ringkv.internal.v2");
    }
}
