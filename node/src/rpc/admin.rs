//! The operator API, `ringkv.v1.Admin`: this node's identity and its view
//! of the cluster (members, ring, a key's replicas).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use ringkv_proto::v1 as pb;
use ringkv_proto::v1::admin_server::Admin;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::status;
use crate::coordinator::validate_key;
use crate::identity::NodeId;
use crate::membership::{ClusterView, Member, ViewHandle};
use crate::repair::{Progress, Repairer, Scope};
use crate::ring::Token;

/// What the admin service reports about this node.
#[derive(Debug, Clone)]
pub struct NodeDescription {
    pub id: NodeId,
    pub name: String,
    pub replication_factor: u32,
    pub rack: String,
    pub cluster_name: String,
}

/// Serves `Admin`.
pub struct AdminService {
    node: NodeDescription,
    view: ViewHandle,
    repairer: Arc<Repairer>,
    started: Instant,
    /// Owns the repairs `ringkv repair` starts, and stops them on shutdown.
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl AdminService {
    pub fn new(node: NodeDescription, view: ViewHandle, repairer: Arc<Repairer>) -> Self {
        Self {
            node,
            view,
            repairer,
            started: Instant::now(),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        }
    }

    /// Runs repairs on `tasks`, stopped by `stop` (the node's workers).
    pub fn with_tasks(mut self, tasks: TaskTracker, stop: CancellationToken) -> Self {
        self.tasks = tasks;
        self.stop = stop;
        self
    }
}

fn progress(p: &Progress) -> pb::RepairProgress {
    pb::RepairProgress {
        ranges_total: p.ranges_total,
        ranges_done: p.ranges_done,
        leaves_differing: p.stats.leaves_differing,
        keys_streamed: p.keys_streamed(),
        bytes_streamed: p.bytes_streamed(),
        replicas_skipped: p.replicas_skipped,
        elapsed_ms: p.elapsed.as_millis() as u64,
        done: p.done,
        failed_ranges: p
            .failed
            .iter()
            .map(|f| pb::FailedRange {
                start_token: f.range.start.0,
                end_token: f.range.end.0,
                error: f.error.clone(),
            })
            .collect(),
    }
}

fn member(m: &Member, owns: &BTreeMap<NodeId, f64>) -> pb::Member {
    pb::Member {
        node_id: m.id.to_string(),
        name: m.name.clone(),
        client_addr: m.client_addr.map(|a| a.to_string()).unwrap_or_default(),
        rack: m.rack.clone(),
        up: m.alive,
        state: m.status.to_string(),
        load_bytes: m.load_bytes.unwrap_or(0),
        owns: owns.get(&m.id).copied().unwrap_or(0.0),
        tokens: u32::try_from(m.tokens.len()).unwrap_or(u32::MAX),
        last_repair: m.last_repair.unwrap_or(0),
        disk_problem: m.disk_problem.clone().unwrap_or_default(),
        last_repair_failed_ranges: m
            .repair_failed
            .iter()
            .map(|&(start_token, end_token)| pb::FailedRange {
                start_token,
                end_token,
                error: String::new(),
            })
            .collect(),
    }
}

fn members(view: &ClusterView) -> (Vec<pb::Member>, BTreeMap<NodeId, u32>) {
    let owns = view.ring().effective_ownership();
    let mut index = BTreeMap::new();
    let list = view
        .members()
        .enumerate()
        .map(|(i, m)| {
            index.insert(m.id, i as u32);
            member(m, &owns)
        })
        .collect();
    (list, index)
}

#[tonic::async_trait]
impl Admin for AdminService {
    type RepairStream =
        Pin<Box<dyn futures::Stream<Item = Result<pb::RepairProgress, Status>> + Send>>;

    async fn repair(
        &self,
        request: Request<pb::RepairRequest>,
    ) -> Result<Response<Self::RepairStream>, Status> {
        let scope = if request.into_inner().primary_only {
            Scope::Primary
        } else {
            Scope::All
        };
        let (out, stream) = mpsc::channel(16);
        let repairer = self.repairer.clone();
        // The run goes on to its end even if the client goes away (Ctrl-C
        // on `ringkv repair`): progress is a `watch`, which never blocks the
        // run, and forwarding simply stops when nobody reads.
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            let (tx, mut rx) = watch::channel(Progress::default());
            let forward = async {
                while rx.changed().await.is_ok() {
                    let latest = progress(&rx.borrow_and_update());
                    if out.send(Ok(latest)).await.is_err() {
                        break;
                    }
                }
            };
            let run = async { tokio::join!(repairer.run(scope, Some(tx)), forward).0 };
            let outcome = tokio::select! {
                outcome = run => outcome,
                _ = stop.cancelled() => return,
            };
            if let Err(error) = outcome {
                let _ = out
                    .send(Err(Status::aborted(format!("repair failed: {error}"))))
                    .await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }

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
            rack: self.node.rack.clone(),
            cluster_name: self.node.cluster_name.clone(),
        }))
    }

    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let view = self.view.load_full();
        Ok(Response::new(pb::ClusterStatusResponse {
            cluster_name: self.node.cluster_name.clone(),
            replication_factor: self.node.replication_factor,
            local_node_id: self.node.id.to_string(),
            members: members(&view).0,
        }))
    }

    async fn ring(
        &self,
        _request: Request<pb::RingRequest>,
    ) -> Result<Response<pb::RingResponse>, Status> {
        let view = self.view.load_full();
        let (members, index) = members(&view);
        let ranges = view
            .ring()
            .ranges()
            .map(|(range, replicas)| pb::RingRange {
                start_token: range.start.0,
                end_token: range.end.0,
                replicas: replicas
                    .iter()
                    .filter_map(|r| index.get(r).copied())
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::RingResponse {
            replication_factor: self.node.replication_factor,
            members,
            ranges,
        }))
    }

    async fn get_endpoints(
        &self,
        request: Request<pb::GetEndpointsRequest>,
    ) -> Result<Response<pb::GetEndpointsResponse>, Status> {
        let key = request.into_inner().key;
        validate_key(&key).map_err(status::from_coordinator)?;
        let view = self.view.load_full();
        let token = Token::of(&key);
        let owns = view.ring().effective_ownership();
        let replicas = view
            .ring()
            .replicas(token)
            .iter()
            .filter_map(|id| view.member(id))
            .map(|m| member(m, &owns))
            .collect();
        Ok(Response::new(pb::GetEndpointsResponse {
            token: token.0,
            replicas,
        }))
    }
}
