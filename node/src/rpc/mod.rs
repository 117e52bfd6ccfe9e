//! gRPC services: thin adapters from protobuf to the node's modules, and
//! the internode client. Protobuf types and `tonic::Status` do not leave
//! this module.

mod admin;
mod convert;
mod kv;
pub mod net;
mod peer;
mod replicas;
mod status;

pub use admin::{AdminService, NodeDescription};
pub use kv::KeyValueService;
pub use peer::PeerService;
pub use replicas::NodeTransport;
