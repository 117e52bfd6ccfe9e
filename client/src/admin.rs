//! The operator API: what a node says about itself and the cluster, and
//! on-demand repair. Admin calls go to the host the client first connected
//! to, so `status` shows that node's view.

use bytes::Bytes;
use ringkv_proto::v1 as pb;
use ringkv_proto::v1::admin_client::AdminClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::client::Client;
use crate::cluster::{
    ChangeSummary, CleanupSummary, ClusterStatus, Endpoints, MemberInfo, RepairProgress, RingInfo,
    Streams,
};
use crate::error::{Error, Result};

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Permanent node id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// ringkv version of the node.
    pub version: String,
    /// Seconds since the node started.
    pub uptime_seconds: u64,
    /// Replicas per key in the node's cluster.
    pub replication_factor: u32,
    /// The node's rack.
    pub rack: String,
    /// The node's cluster.
    pub cluster_name: String,
}

impl Client {
    pub(crate) fn admin(&self) -> Result<AdminClient<Channel>> {
        Ok(AdminClient::new(self.channel(self.inner.router.home())?)
            .max_decoding_message_size(usize::MAX))
    }

    /// Identity and version of the node first connected to.
    pub async fn node_info(&self) -> Result<NodeInfo> {
        let request = self.request(pb::NodeInfoRequest {}, self.inner.config.request_timeout);
        let info = self.admin()?.node_info(request).await?.into_inner();
        Ok(NodeInfo {
            id: info.node_id,
            name: info.node_name,
            version: info.version,
            uptime_seconds: info.uptime_seconds,
            replication_factor: info.replication_factor,
            rack: info.rack,
            cluster_name: info.cluster_name,
        })
    }

    /// The cluster as the node first connected to sees it.
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        let request = self.request(
            pb::ClusterStatusRequest {},
            self.inner.config.request_timeout,
        );
        let status = self.admin()?.cluster_status(request).await?.into_inner();
        Ok(ClusterStatus {
            cluster_name: status.cluster_name,
            replication_factor: status.replication_factor,
            local_node_id: status.local_node_id,
            members: status.members.into_iter().map(MemberInfo::from).collect(),
            change_in_progress: Some(status.change_in_progress).filter(|c| !c.is_empty()),
        })
    }

    /// Token ownership and placement, from the node first connected to.
    pub async fn ring_info(&self) -> Result<RingInfo> {
        let request = self.request(pb::RingRequest {}, self.inner.config.request_timeout);
        Ok(self.admin()?.ring(request).await?.into_inner().into())
    }

    /// The replicas of a key, from the node first connected to.
    pub async fn endpoints(&self, key: impl Into<Bytes>) -> Result<Endpoints> {
        let request = self.request(
            pb::GetEndpointsRequest { key: key.into() },
            self.inner.config.request_timeout,
        );
        let response = self.admin()?.get_endpoints(request).await?.into_inner();
        Ok(Endpoints {
            token: response.token,
            replicas: response
                .replicas
                .into_iter()
                .map(MemberInfo::from)
                .collect(),
        })
    }

    /// Runs an anti-entropy repair on the node first connected to (all its
    /// ranges, or only those it is primary for), calling `on_progress` as
    /// ranges complete. Returns the final summary. No deadline: a repair
    /// takes as long as it takes.
    pub async fn repair(
        &self,
        primary_only: bool,
        mut on_progress: impl FnMut(&RepairProgress),
    ) -> Result<RepairProgress> {
        let mut stream = self
            .admin()?
            .repair(self.untimed(pb::RepairRequest { primary_only }))
            .await?
            .into_inner();
        let mut last = RepairProgress::default();
        while let Some(message) = stream.message().await? {
            last = RepairProgress::from(message);
            on_progress(&last);
        }
        if !last.done {
            return Err(Error::Rpc {
                code: Code::Aborted,
                message: "the repair stream ended before the repair finished".into(),
            });
        }
        Ok(last)
    }

    /// Decommissions the node first connected to: it streams its ranges to
    /// the nodes taking them over, leaves the ring and stops. Returns once
    /// it has left. No deadline: streaming takes as long as it takes.
    pub async fn decommission(&self) -> Result<ChangeSummary> {
        let response = self
            .admin()?
            .decommission(self.untimed(pb::DecommissionRequest {}))
            .await?
            .into_inner();
        Ok(summary(response))
    }

    /// Removes a dead node (by id): its ranges are re-replicated from the
    /// surviving replicas. Runs on the node first connected to. No
    /// deadline.
    pub async fn remove_node(&self, node_id: &str) -> Result<ChangeSummary> {
        let response = self
            .admin()?
            .remove_node(self.untimed(pb::RemoveNodeRequest {
                node_id: node_id.to_owned(),
            }))
            .await?
            .into_inner();
        Ok(summary(response))
    }

    /// Deletes the data the node first connected to holds for ranges it no
    /// longer replicates. No deadline.
    pub async fn cleanup(&self) -> Result<CleanupSummary> {
        let response = self
            .admin()?
            .cleanup(self.untimed(pb::CleanupRequest {}))
            .await?
            .into_inner();
        Ok(CleanupSummary {
            ranges: response.ranges,
            keys_deleted: response.keys_deleted,
            bytes_freed: response.bytes_freed,
        })
    }

    /// The range streams of the node first connected to.
    pub async fn streams(&self) -> Result<Streams> {
        let request = self.request(pb::StreamsRequest {}, self.inner.config.request_timeout);
        Ok(self.admin()?.streams(request).await?.into_inner().into())
    }
}

/// User management (nodes with authentication on).
impl Client {
    /// Adds (or replaces) the user `name` with `password` and `role`
    /// (read-only, read-write or admin). Admins only.
    pub async fn user_add(&self, name: &str, password: &str, role: &str) -> Result<()> {
        let request = self.request(
            pb::UserAddRequest {
                name: name.to_owned(),
                password: password.to_owned(),
                role: role.to_owned(),
            },
            self.inner.config.request_timeout,
        );
        self.admin()?.user_add(request).await?;
        Ok(())
    }

    /// Deletes the user `name`. Admins only.
    pub async fn user_delete(&self, name: &str) -> Result<()> {
        let request = self.request(
            pb::UserDeleteRequest {
                name: name.to_owned(),
            },
            self.inner.config.request_timeout,
        );
        self.admin()?.user_delete(request).await?;
        Ok(())
    }

    /// Changes the password of `name` (admins: anyone's; others: their own).
    pub async fn user_password(&self, name: &str, password: &str) -> Result<()> {
        let request = self.request(
            pb::UserPasswordRequest {
                name: name.to_owned(),
                password: password.to_owned(),
            },
            self.inner.config.request_timeout,
        );
        self.admin()?.user_password(request).await?;
        Ok(())
    }

    /// Every user and its role. Admins only.
    pub async fn user_list(&self) -> Result<Vec<(String, String)>> {
        let request = self.request(pb::UserListRequest {}, self.inner.config.request_timeout);
        let response = self.admin()?.user_list(request).await?.into_inner();
        Ok(response
            .users
            .into_iter()
            .map(|u| (u.name, u.role))
            .collect())
    }
}

fn summary(response: pb::TopologyChangeResponse) -> ChangeSummary {
    ChangeSummary {
        keys_streamed: response.keys_streamed,
        bytes_streamed: response.bytes_streamed,
        elapsed: std::time::Duration::from_millis(response.elapsed_ms),
    }
}
