//! gRPC services: thin adapters from protobuf to the node's modules, the
//! framed internode protocol, and the internode client. Protobuf types and `tonic::Status` do not leave
//! this module.

pub mod accept;
mod admin;
pub mod around;
pub mod bounds;
mod convert;
pub mod framed;
pub mod gossip_mac;
mod kv;
pub mod limit;
pub mod net;
mod peer;
pub mod replica_metrics;
mod replicas;
pub mod require_auth;
pub mod stats;
mod status;
pub mod tls;
mod users;

pub use admin::{AdminService, NodeDescription};
pub use kv::KeyValueService;
pub use peer::{LateView, PeerService, Served};
pub use replicas::NodeTransport;
