//! The operator API, `ringkv.v1.Admin`.

use std::time::Instant;

use ringkv_proto::v1 as pb;
use ringkv_proto::v1::admin_server::Admin;
use tonic::{Request, Response, Status};

use crate::identity::NodeId;

/// What the admin service reports about this node.
#[derive(Debug, Clone)]
pub struct NodeDescription {
    pub id: NodeId,
    pub name: String,
    pub replication_factor: u32,
}

/// Serves `Admin`.
pub struct AdminService {
    node: NodeDescription,
    started: Instant,
}

impl AdminService {
    pub fn new(node: NodeDescription) -> Self {
        Self {
            node,
            started: Instant::now(),
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn node_info(
        &self,
        _request: Request<pb::NodeInfoRequest>,
    ) -> Result<Response<pb::NodeInfoResponse>, Status> {
        Ok(Response::new(pb::NodeInfoResponse {
            node_id: self.node.id.to_string(),
            node_name: self.node.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: self.started.elapsed().as_secs(),
            replication_factor: self.node.replication_factor,
        }))
    }
}
