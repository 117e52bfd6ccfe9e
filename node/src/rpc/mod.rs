//! gRPC services: thin adapters from protobuf to the node's modules.
//! Protobuf types and `tonic::Status` do not leave this module.

mod admin;
mod convert;
mod kv;
mod status;

pub use admin::{AdminService, NodeDescription};
pub use kv::KeyValueService;
