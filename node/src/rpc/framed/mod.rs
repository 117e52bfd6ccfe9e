//! The framed internode protocol: the Peer service's hot calls (replica
//! writes, reads and queries) as length-prefixed protobuf frames with request ids,
//! many calls multiplexed on one connection per peer, the ready frames of
//! a connection coalesced into one write.
//!
//! Why: gRPC over HTTP/2 costs a replicated operation far more CPU than the
//! work it carries (HPACK headers, HTTP/2 framing and flow control, a
//! stream per call). Measured with `cargo bench --bench internode` on this
//! project's 2-core machine, through the real `PeerService` on an
//! in-memory store, a gRPC call cost 53 µs of CPU (caller and server) and
//! a framed one 19 µs. Cassandra and ScyllaDB likewise use a lean binary
//! protocol between nodes.
//!
//! What stays as it was:
//! - the schema: frame bodies are the `.proto` messages of
//!   `ringkv.internal.v2` (`FrameError` for failures);
//! - the port: the peer port tells framed connections from gRPC ones by
//!   their first four bytes ([`frame::MAGIC`]), so one port serves both;
//! - the checks: the same handlers, bounds, in-flight limit, deadline and
//!   node-certificate check as the gRPC service;
//! - the rest of the Peer service (batches, Merkle trees, range streaming):
//!   gRPC, on its own connection. Those messages are large; kept off the
//!   framed connection they never hold a small write behind them (as
//!   Cassandra keeps large messages on a connection of their own).
//!
//! A node announces in gossip the framed versions it serves (`peer_framed`:
//! [`frame::SERVED`]); callers use frames only towards nodes that serve
//! their version ([`frame::VERSION`]), so nodes of an older release keep
//! being called over gRPC (version 2 had no queries: a node of version 3
//! still serves its callers, but calls it over gRPC). A node with `internode_protocol = "grpc"` calls every peer over
//! gRPC (and still serves frames).
//!
//! CAVEATS: a call's frame and its answer travel on one connection, so one
//! large value (up to `max_value_size`) or a full page of rows (about
//! 1 MiB) delays the small frames queued behind it by its transfer time.
//! Queries were moved here anyway: most pages are small, and over gRPC a
//! 3-node QUORUM query cost several times a point read's CPU.

mod client;
pub mod frame;
mod server;
#[cfg(test)]
mod tests;
mod writer;

pub use client::{ClientSettings, FramedClient, KEEPALIVE_INTERVAL};
pub use server::{FramedServer, PeerPort, serve};
