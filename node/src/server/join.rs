//! Step 2 of a node's start, [`Node::join`], in its phases:
//! 1. `serve_http`: `/metrics` first (the services below register their
//!    counters), with `/health` answering 503 until step 3;
//! 2. `serve_peer_port`: the internode API, gRPC and framed, on one port;
//! 3. `start_membership`: decide the start from the data directory (a
//!    [`StartPlan`]), then gossip from the first message what that start
//!    is;
//! 4. `connect_peers`: the transport to the other nodes, and the topology
//!    changes over it;
//! 5. `bootstrap_or_resume`: roll back an interrupted decommission, wait
//!    to hear the ring (a member), or choose tokens and bootstrap (a new
//!    node), retrying a join that withdrew;
//! 6. `start_workers` (in `services`): hint replay, clock probes, the
//!    coordinator, repair and its scheduler, the announcers, each a named
//!    worker;
//! 7. `build_services` (in `services`): users, the admin service, and
//!    what step 3 serves.

use std::sync::Arc;
use std::time::Duration;

use ringkv_proto::internal::v2::peer_server::PeerServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::ClientTlsConfig;

use super::addresses::{self, Advertised};
use super::announce::stop_for_twin;
use super::http;
use super::node::Node;
use super::serve::{HttpParts, Joined, server_builder, start_http};
use super::start::{Persisted, StartPlan, initial_gossip};
use crate::config::{Config, InternodeProtocol};
use crate::identity::NodeId;
use crate::membership::join;
use crate::membership::keys::{self, NodeStatus};
use crate::membership::{Membership, persist};
use crate::peer::RepairTransport;
use crate::repair::load_last_completed;
use crate::ring::Token;
use crate::rpc::accept::Admission;
use crate::rpc::framed::{self, ClientSettings, FramedServer};
use crate::rpc::limit::{BodyLimit, InFlightLimit, peer_body_limit};
use crate::rpc::net::Listener;
use crate::rpc::tls::FramedTls;
use crate::rpc::{LateView, NodeTransport, PeerService};
use crate::streaming::{self, Topology, TopologyError};

/// Times a join may withdraw (another change started with it) and retry.
const MAX_WITHDRAWALS: u32 = 5;

/// The internode port being served: what the later phases take from it.
struct PeerPort {
    /// Filled in once gossip runs (the port serves before it does).
    late_view: LateView,
    /// The in-flight limit both of its protocols share.
    limit: InFlightLimit,
    /// TLS of the framed protocol, for calling peers too.
    framed_tls: Option<FramedTls>,
    /// TLS for calling peers over gRPC.
    dial_tls: Option<ClientTlsConfig>,
}

/// Where a start's bootstrap stands.
enum Bootstrap {
    /// Nothing to stream: serve.
    Done,
    /// Tokens to choose, for a new node (replacing a dead one, or not).
    Choose { replaces: Option<NodeId> },
    /// Tokens chosen and saved: stream the ranges they take.
    Stream {
        tokens: Vec<Token>,
        replaces: Option<NodeId>,
    },
}

impl Node {
    /// Step 2: serves the internode API on `peer` (and `/metrics` and
    /// `/health`, 503 until step 3, on `http`), joins the cluster and
    /// starts the background workers. `None` when `stop` came first.
    pub async fn join(
        &mut self,
        peer: Listener,
        http: Option<TcpListener>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Option<Joined>> {
        let health = self.serve_http(http);
        let port = self.serve_peer_port(peer);
        let (plan, membership, last_repair) = self.start_membership(&port, stop).await?;
        let (transport, topology) = self.connect_peers(&membership, &port);
        if !self
            .bootstrap_or_resume(plan, &membership, &topology, stop)
            .await?
        {
            return Ok(None);
        }
        let running = self.start_workers(&membership, &transport, last_repair, stop)?;
        let joined = self.build_services(
            health,
            &membership,
            (transport, topology),
            running,
            port.limit,
            stop,
        )?;
        Ok(Some(joined))
    }

    /// Phase 1: `/metrics`, `/health` and the console on `http`.
    fn serve_http(&self, http: Option<TcpListener>) -> Arc<http::Health> {
        let health = Arc::new(http::Health::with_disk(Some(self.disk.clone())));
        if let Some(listener) = http {
            let parts = HttpParts {
                health: health.clone(),
                gauges: self.gauges.clone(),
                history: self.history.clone(),
                console: self.console.clone(),
            };
            let port = self.config.port_limits().http;
            let (workers, stop) = (&self.life.workers, &self.life.worker_stop);
            start_http(listener, port, self.metrics, parts, workers, stop);
        }
        health
    }

    /// Phase 2: the internode API on `peer`, both protocols.
    fn serve_peer_port(&self, peer: Listener) -> PeerPort {
        let config = &self.config;
        let max_message = config.max_message_bytes();
        let late_view: LateView = Arc::default();
        let peer_limits = config.peer_api_limits();
        let internode_timeout = config.internode_timeout();
        let service = Arc::new(
            PeerService::new(
                self.store.clone(),
                self.clock.clone(),
                self.trees.clone(),
                config.peer_bounds(),
                late_view.clone(),
            )
            .with_peer_name(config.internode_peer_name())
            .with_history(Some(self.history.clone())),
        );
        // Both protocols of the peer port share the in-flight limit.
        let limit = InFlightLimit::for_api("internode", &peer_limits);
        let grpc = limit.wrap(
            BodyLimit::new(
                PeerServer::from_arc(service.clone())
                    .max_decoding_message_size(max_message)
                    .max_encoding_message_size(max_message),
                peer_body_limit,
            ),
            max_message,
        );
        let framed_tls = self.tls.framed.clone();
        let framed = Arc::new(
            FramedServer::new(service, limit.clone(), internode_timeout, max_message)
                .with_tls(framed_tls.as_ref().map(|tls| tls.server.clone()))
                .with_handshake_timeout(config.port_limits().peer.handshake)
                .with_workers(&self.life.peer),
        );
        let peer_stop = self.life.peer_stop.clone();
        let (peer_tls, dial_tls) = self.tls.internode.clone().unzip();
        let mut server = server_builder(peer_limits.per_connection, config.server_ping_interval())
            .timeout(internode_timeout);
        let admission = Admission::new("internode", config.port_limits().peer);
        self.life.peer.spawn("internode API", async move {
            let router = server.add_service(grpc);
            let port = framed::PeerPort {
                admission,
                grpc_tls: peer_tls,
            };
            let served = framed::serve(router, framed, peer, port, peer_stop).await;
            if let Err(error) = &served {
                tracing::error!(%error, "internode API server failed");
            }
            served
        });
        PeerPort {
            late_view,
            limit,
            framed_tls,
            dial_tls,
        }
    }

    /// Phase 3: what this start does, and gossip saying so from its first
    /// message; the time of the last completed repair, read at start.
    async fn start_membership(
        &self,
        port: &PeerPort,
        stop: &CancellationToken,
    ) -> anyhow::Result<(StartPlan, Arc<Membership>, i64)> {
        let (config, engine) = (&self.config, &self.engine);
        let plan = StartPlan::new(
            Persisted {
                decommissioned: Topology::was_decommissioned(&self.store)?,
                tokens: persist::load_tokens(engine.as_ref())?,
                bootstrap: Topology::pending_bootstrap(&self.store)?,
                decommission: Topology::decommission_interrupted(&self.store)?,
            },
            config.replaces()?,
        );
        if plan == StartPlan::Decommissioned {
            anyhow::bail!(
                "this node was decommissioned and must not rejoin with its old data; to add this machine again as a new node, empty its data directory ({})",
                config.data_dir.display()
            );
        }
        let gossip =
            config.gossip_settings(self.node_id, self.advertised.gossip, self.wall.clone());
        let last_repair = load_last_completed(engine.as_ref())?;
        let initial = initial_gossip(config, &self.name, &self.advertised, &plan, last_repair);
        let membership = Membership::start(
            gossip,
            engine.clone(),
            initial,
            self.network.gossip.as_ref(),
        )
        .await?;
        // Set once: a second set (never) would leave the first in place.
        let _ = port.late_view.set(membership.view_handle());
        let (workers, worker_stop) = (&self.life.workers, &self.life.worker_stop);
        workers.spawn("gossip", membership.clone().run(worker_stop.clone()));
        workers.spawn(
            "twin watch",
            stop_for_twin(
                membership.subscribe_twins(),
                (stop.clone(), self.life.fatal.clone()),
                worker_stop.clone(),
            ),
        );
        join::check_replication_factor(&membership, config.replication_factor)?;
        Ok((plan, membership, last_repair))
    }

    /// Phase 4: the transport to the other nodes, and topology changes.
    fn connect_peers(
        &self,
        membership: &Arc<Membership>,
        port: &PeerPort,
    ) -> (Arc<NodeTransport>, Arc<Topology>) {
        let config = &self.config;
        let (max_message, internode_timeout) =
            (config.max_message_bytes(), config.internode_timeout());
        let framed =
            (config.internode_protocol == InternodeProtocol::Framed).then(|| ClientSettings {
                dial: self.network.dial.clone(),
                tls: port.framed_tls.clone().map(|tls| (tls.client, tls.name)),
                deadline: internode_timeout,
                max_message,
                keepalive: framed::KEEPALIVE_INTERVAL,
                // Listed with the node's workers; they end with their link.
                tasks: self.life.workers.sibling(),
            });
        let transport = Arc::new(
            NodeTransport::new(
                self.node_id,
                self.store.clone(),
                membership.view_handle(),
                internode_timeout,
            )
            .with_dial(self.network.dial.clone())
            .with_max_message(max_message)
            .with_tls(port.dial_tls.clone())
            .with_framed(framed),
        );
        let topology = Arc::new(Topology::new(
            membership.clone(),
            transport.clone() as Arc<dyn RepairTransport>,
            self.store.clone(),
            self.clock.clone(),
            config.stream_settings(),
        ));
        let streaming = self.life.workers.worker(streaming::WORKER);
        streaming.describe(&topology, |topology| topology.streams_in_words());
        (transport, topology)
    }

    /// Phase 5: brings the node into the ring as `plan` says. `false` when
    /// `stop` came first.
    async fn bootstrap_or_resume(
        &mut self,
        plan: StartPlan,
        membership: &Membership,
        topology: &Topology,
        stop: &CancellationToken,
    ) -> anyhow::Result<bool> {
        if let StartPlan::AbandonDecommission { .. } = plan {
            topology.abandon_decommission().await?;
        }
        if plan.is_member() {
            self.await_the_ring(membership).await;
        }
        let mut next = match plan {
            StartPlan::Decommissioned
            | StartPlan::Restart { .. }
            | StartPlan::AbandonDecommission { .. } => Bootstrap::Done,
            StartPlan::ResumeBootstrap { tokens, replaces } => {
                tracing::info!("resuming an interrupted bootstrap");
                Bootstrap::Stream { tokens, replaces }
            }
            StartPlan::Fresh { replaces } => Bootstrap::Choose { replaces },
        };
        let engine = self.engine.clone();
        let mut withdrawals = 0;
        loop {
            next = match next {
                Bootstrap::Done => return Ok(true),
                Bootstrap::Choose { replaces } => {
                    let Some(tokens) = pick_tokens(
                        &self.config,
                        &self.advertised,
                        &mut self.rng,
                        membership,
                        replaces,
                        stop,
                    )
                    .await?
                    else {
                        return Ok(false);
                    };
                    let founding = withdrawals == 0
                        && replaces.is_none()
                        && membership.view().ring().is_empty();
                    if founding {
                        // A new cluster's first node: nothing to stream.
                        persist::save_tokens(engine.as_ref(), &tokens)?;
                        membership
                            .announce(vec![
                                (keys::TOKENS, keys::encode_tokens(&tokens)),
                                (keys::STATUS, NodeStatus::Normal.to_string()),
                            ])
                            .await;
                        Bootstrap::Done
                    } else {
                        Topology::begin_bootstrap(&self.store, replaces).await?;
                        persist::save_tokens(engine.as_ref(), &tokens)?;
                        Bootstrap::Stream { tokens, replaces }
                    }
                }
                Bootstrap::Stream { tokens, replaces } => {
                    let outcome = tokio::select! {
                        joined = topology.bootstrap(&tokens, replaces) => joined,
                        _ = stop.cancelled() => return Ok(false),
                    };
                    match outcome {
                        Ok(()) => Bootstrap::Done,
                        // Another change started at the same moment and
                        // this join withdrew: choose tokens again once that
                        // change is over.
                        Err(TopologyError::InProgress(other)) if withdrawals < MAX_WITHDRAWALS => {
                            withdrawals += 1;
                            tracing::info!(%other, "join withdrawn; choosing tokens again");
                            persist::clear_tokens(engine.as_ref())?;
                            Bootstrap::Choose { replaces }
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
            };
        }
    }

    /// A restarted member of a cluster waits (up to `ring_delay`) to hear
    /// the current topology from a live peer before it coordinates:
    /// changes may have happened while it was down.
    async fn await_the_ring(&self, membership: &Membership) {
        let has_peers = membership
            .view()
            .members()
            .any(|m| m.id != self.node_id && m.status != NodeStatus::Left);
        if !has_peers {
            return;
        }
        let wait = Duration::from_millis(self.config.ring_delay_ms);
        if tokio::time::timeout(wait, membership.await_a_peer())
            .await
            .is_err()
        {
            tracing::info!(
                ?wait,
                "no live peer confirmed the remembered topology; serving by it"
            );
        }
    }
}

/// This node's tokens on a first start: a dead node's when replacing it,
/// otherwise balanced new ones. `None` when `stop` came first.
async fn pick_tokens(
    config: &Config,
    advertised: &Advertised,
    rng: &mut rand::rngs::StdRng,
    membership: &Membership,
    replaces: Option<NodeId>,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Vec<Token>>> {
    let is_seed = addresses::is_seed(&config.seeds, advertised.gossip, config.listen_gossip).await;
    let settings = config.join_settings(is_seed);
    let choosing = async {
        match replaces {
            Some(dead) => join::replacement_tokens(membership, dead, &settings).await,
            None => join::choose_tokens(membership, &settings, rng).await,
        }
    };
    tokio::select! {
        chosen = choosing => Ok(Some(chosen?)),
        _ = stop.cancelled() => Ok(None),
    }
}
