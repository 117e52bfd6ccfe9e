//! The operator API, `ringkv.v1.Admin`: this node's identity and its view
//! of the cluster (members, ring, a key's replicas).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use ringkv_proto::v1 as pb;
use ringkv_proto::v1::admin_server::Admin;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::stats::StatsSource;
use super::{status, users};
use crate::auth::UserStore;
use crate::clock::ClockOffsets;
use crate::coordinator::validate_key;
use crate::identity::NodeId;
use crate::membership::{ClusterView, Member, ViewHandle};
use crate::repair::{self, Progress, Repairer, Scope};
use crate::ring::Token;
use crate::streaming::{self, Topology, TopologyError};
use crate::workers::Workers;

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
    /// Owns the repairs `ringkv repair` starts and the topology changes it
    /// is asked for, and stops them on shutdown.
    tasks: Workers,
    stop: CancellationToken,
    /// Topology changes and cleanup; `None` in tests without them.
    topology: Option<Arc<Topology>>,
    /// Stops the whole node (after a decommission).
    node_stop: CancellationToken,
    /// Users, when authentication is on.
    users: Option<UserStore>,
    /// What `NodeStats` answers; `None` in tests without it.
    stats: Option<StatsSource>,
    /// Peers' clock offsets, for `ClusterStatus`.
    offsets: Option<Arc<ClockOffsets>>,
}

impl AdminService {
    pub fn new(node: NodeDescription, view: ViewHandle, repairer: Arc<Repairer>) -> Self {
        Self {
            node,
            view,
            repairer,
            started: Instant::now(),
            tasks: Workers::new(),
            stop: CancellationToken::new(),
            topology: None,
            node_stop: CancellationToken::new(),
            users: None,
            stats: None,
            offsets: None,
        }
    }

    /// Answers `ClusterStatus` with the clock offsets in `offsets`.
    pub fn with_clock_offsets(mut self, offsets: Arc<ClockOffsets>) -> Self {
        self.offsets = Some(offsets);
        self
    }

    /// Answers `NodeStats` with snapshots from `stats`.
    pub fn with_stats(mut self, stats: StatsSource) -> Self {
        self.stats = Some(stats);
        self
    }

    fn identity(&self) -> pb::NodeInfoResponse {
        pb::NodeInfoResponse {
            node_id: self.node.id.to_string(),
            node_name: self.node.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: self.started.elapsed().as_secs(),
            replication_factor: self.node.replication_factor,
            rack: self.node.rack.clone(),
            cluster_name: self.node.cluster_name.clone(),
        }
    }

    /// Serves the user commands over `users` (authentication on).
    pub fn with_users(mut self, users: Option<UserStore>) -> Self {
        self.users = users;
        self
    }

    /// Runs repairs and topology changes on `tasks`, stopped by `stop`
    /// (the node's workers).
    pub fn with_tasks(mut self, tasks: Workers, stop: CancellationToken) -> Self {
        self.tasks = tasks;
        self.stop = stop;
        self
    }

    /// Serves the topology commands with `topology`; a decommission stops
    /// the node through `node_stop` once it has left.
    pub fn with_topology(mut self, topology: Arc<Topology>, node_stop: CancellationToken) -> Self {
        self.topology = Some(topology);
        self.node_stop = node_stop;
        self
    }

    fn topology(&self) -> Result<Arc<Topology>, Status> {
        self.topology
            .clone()
            .ok_or_else(|| Status::unimplemented("this node runs without topology changes"))
    }

    /// Runs a change on the node's tasks, so it goes on to its end (or to
    /// the node's shutdown) even if the client goes away, and answers with
    /// its outcome.
    async fn run_change<F>(
        &self,
        change: impl FnOnce(Arc<Topology>) -> F + Send + 'static,
        after: Option<CancellationToken>,
    ) -> Result<Response<pb::TopologyChangeResponse>, Status>
    where
        F: std::future::Future<Output = Result<(), TopologyError>> + Send + 'static,
    {
        let topology = self.topology()?;
        let (done, outcome) = tokio::sync::oneshot::channel();
        let stop = self.stop.clone();
        let started = Instant::now();
        self.tasks.spawn(streaming::WORKER, async move {
            let before = streamed(&topology);
            let result = tokio::select! {
                result = change(topology.clone()) => result,
                _ = stop.cancelled() => return Ok(()),
            };
            // Kept as the worker's last error as well as answered.
            let failure = result.as_ref().err().map(ToString::to_string);
            let after_totals = streamed(&topology);
            let _ =
                done.send(result.map(|()| (after_totals.0 - before.0, after_totals.1 - before.1)));
            if let Some(failure) = failure {
                return Err(failure);
            }
            if let Some(node_stop) = after {
                // Let the answer reach the client, then stop the node.
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                node_stop.cancel();
            }
            Ok(())
        });
        match outcome.await {
            Ok(Ok((keys, bytes))) => Ok(Response::new(pb::TopologyChangeResponse {
                keys_streamed: keys,
                bytes_streamed: bytes,
                elapsed_ms: started.elapsed().as_millis() as u64,
            })),
            Ok(Err(error)) => Err(status::from_topology(error)),
            Err(_) => Err(Status::unavailable("the node is shutting down")),
        }
    }
}

/// Cells and bytes streamed by every stream this node keeps.
fn streamed(topology: &Topology) -> (u64, u64) {
    topology
        .streams()
        .snapshot()
        .iter()
        .fold((0, 0), |(k, b), s| (k + s.keys, b + s.bytes))
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
        version: m.version.clone(),
        settings: m.settings.clone(),
        generation: m.generation,
        clock_offset_micros: None,
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
        self.tasks.spawn(repair::WORKER, async move {
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
                _ = stop.cancelled() => return Ok(()),
            };
            if let Err(error) = outcome {
                let why = format!("repair failed: {error}");
                let _ = out.send(Err(Status::aborted(why.clone()))).await;
                // Kept as the worker's last error as well as answered.
                return Err(why);
            }
            Ok(())
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }

    async fn decommission(
        &self,
        _request: Request<pb::DecommissionRequest>,
    ) -> Result<Response<pb::TopologyChangeResponse>, Status> {
        let node_stop = self.node_stop.clone();
        self.run_change(
            |topology| async move { topology.decommission().await },
            Some(node_stop),
        )
        .await
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::TopologyChangeResponse>, Status> {
        let text = request.into_inner().node_id;
        let node: NodeId = text
            .parse()
            .map_err(|_| Status::invalid_argument(format!("{text:?} is not a node id")))?;
        self.run_change(
            move |topology| async move { topology.remove(node).await },
            None,
        )
        .await
    }

    async fn cleanup(
        &self,
        _request: Request<pb::CleanupRequest>,
    ) -> Result<Response<pb::CleanupResponse>, Status> {
        let topology = self.topology()?;
        let report = topology.cleanup().await.map_err(status::from_topology)?;
        Ok(Response::new(pb::CleanupResponse {
            ranges: u32::try_from(report.ranges).unwrap_or(u32::MAX),
            keys_deleted: report.deleted.keys,
            bytes_freed: report.deleted.bytes,
        }))
    }

    async fn streams(
        &self,
        _request: Request<pb::StreamsRequest>,
    ) -> Result<Response<pb::StreamsResponse>, Status> {
        let view = self.view.load_full();
        let name = |id: &NodeId| view.name_of(id);
        let streams = match &self.topology {
            Some(topology) => topology.streams().snapshot(),
            None => Vec::new(),
        };
        Ok(Response::new(pb::StreamsResponse {
            streams: streams
                .iter()
                .map(|s| pb::Stream {
                    operation: s.operation.to_owned(),
                    source: name(&s.source),
                    target: name(&s.target),
                    ranges_total: s.ranges_total,
                    ranges_done: s.ranges_done,
                    keys: s.keys,
                    bytes: s.bytes,
                    done: s.done,
                    error: s.error.clone().unwrap_or_default(),
                    elapsed_ms: s.elapsed().as_millis() as u64,
                })
                .collect(),
            change_in_progress: view.changes_in_words(),
        }))
    }

    async fn node_info(
        &self,
        _request: Request<pb::NodeInfoRequest>,
    ) -> Result<Response<pb::NodeInfoResponse>, Status> {
        Ok(Response::new(self.identity()))
    }

    async fn node_stats(
        &self,
        _request: Request<pb::NodeStatsRequest>,
    ) -> Result<Response<pb::NodeStatsResponse>, Status> {
        let source = self
            .stats
            .clone()
            .ok_or_else(|| Status::unimplemented("this node keeps no statistics"))?;
        // Reads RocksDB properties and /proc: not for a runtime thread.
        let stats = tokio::task::spawn_blocking(move || source())
            .await
            .map_err(|e| Status::internal(format!("gathering statistics failed: {e}")))?;
        Ok(Response::new(super::stats::to_proto(
            stats,
            self.identity(),
        )))
    }

    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let view = self.view.load_full();
        let mut members = members(&view).0;
        if let Some(offsets) = &self.offsets {
            let measured = offsets.offsets();
            let local = self.node.id.to_string();
            for member in &mut members {
                member.clock_offset_micros = if member.node_id == local {
                    Some(0)
                } else {
                    measured
                        .iter()
                        .find(|o| o.peer.to_string() == member.node_id)
                        .map(|o| o.offset_micros)
                };
            }
        }
        Ok(Response::new(pb::ClusterStatusResponse {
            cluster_name: self.node.cluster_name.clone(),
            replication_factor: self.node.replication_factor,
            local_node_id: self.node.id.to_string(),
            members,
            change_in_progress: view.changes_in_words(),
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

    async fn user_add(
        &self,
        request: Request<pb::UserAddRequest>,
    ) -> Result<Response<pb::UserResponse>, Status> {
        users::add(self.users.as_ref(), request.into_inner()).await
    }

    async fn user_delete(
        &self,
        request: Request<pb::UserDeleteRequest>,
    ) -> Result<Response<pb::UserResponse>, Status> {
        users::delete(self.users.as_ref(), request.into_inner()).await
    }

    async fn user_password(
        &self,
        request: Request<pb::UserPasswordRequest>,
    ) -> Result<Response<pb::UserResponse>, Status> {
        users::password(self.users.as_ref(), request).await
    }

    async fn user_list(
        &self,
        _: Request<pb::UserListRequest>,
    ) -> Result<Response<pb::UserListResponse>, Status> {
        users::list(self.users.as_ref()).await
    }
}
