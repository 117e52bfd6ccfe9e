//! [`Node`]: a ringkv node's three steps (open, join, serve), each given
//! what it takes from the world in an [`Environment`] and listeners.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::SeedableRng;
use rand::rngs::StdRng;
use ringkv_proto::internal::v1::peer_server::PeerServer;
use ringkv_proto::v1::admin_server::AdminServer;
use ringkv_proto::v1::key_value_server::KeyValueServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::addresses::{self, Advertised, advertised};
use super::announce::{announce_disk, announce_repair_failures, announce_repairs, stop_for_twin};
use super::console::{self, Console};
use super::gauges::{self, Gauges};
use super::lifecycle::Lifecycle;
use super::{Listeners, http};
use crate::auth::throttle::Throttle;
use crate::auth::{Authenticator, Role, UserStore};
use crate::clock::{ClockOffsets, HybridClock, WallClock};
use crate::config::{ApiLimits, Config, InternodeProtocol};
use crate::console::history::{History, SampleSource};
use crate::coordinator::Coordinator;
use crate::hints::{HintStore, run_replay};
use crate::identity::NodeId;
use crate::membership::join;
use crate::membership::keys::{self, NodeStatus};
use crate::membership::{GossipSettings, Membership, ViewHandle, persist};
use crate::peer::{RepairTransport, ReplicaTransport, TreeCache};
use crate::repair::{LEAVES_PER_RANGE, LocalReplica, Repairer, load_last_completed, run_scheduler};
use crate::resp::{RespServer, RespSettings};
use crate::rpc::accept::{self, Admission, PortLimits};
use crate::rpc::framed::{self, ClientSettings, FramedServer};
use crate::rpc::limit::{BodyLimit, InFlightLimit, peer_body_limit};
use crate::rpc::net::{self, Listener, Network};
use crate::rpc::require_auth::RequireAuth;
use crate::rpc::tls::NodeTls;
use crate::rpc::{
    AdminService, KeyValueService, LateView, NodeDescription, NodeTransport, PeerService,
};
use crate::storage::{
    DirtyMap, DiskHealth, GroupSync, LocalStore, RocksConfig, RocksStorage, Storage, SyncMode,
    run_disk_recovery, run_periodic_sync,
};
use crate::streaming::{Topology, TopologyError};

/// Where the clock keeps its ceiling (see `clock`).
const CLOCK_CEILING_KEY: &str = "clock.ceiling";
/// How often the clock's stored ceiling is renewed.
const CLOCK_RENEW_INTERVAL: Duration = Duration::from_millis(250);
/// Longest wait at start for the wall clock to pass the stored ceiling.
const MAX_CLOCK_WAIT: Duration = Duration::from_secs(2);
/// Times a join may withdraw (another change started with it) and retry.
const MAX_WITHDRAWALS: u32 = 5;
/// Largest admin request (they carry a few ids and flags).
const ADMIN_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest HTTP/2 header block a server accepts.
const MAX_HEADER_BYTES: u32 = 64 * 1024;
/// Streams a client may open and reset before the server has seen them.
const MAX_PENDING_RESETS: usize = 64;

/// What a node takes from the world besides its configuration.
pub struct Environment {
    /// Wall time (timestamps, TTLs, tombstones, hint windows).
    pub wall: WallClock,
    /// Sockets and gossip transport.
    pub network: Network,
    /// Seeds the node's random choices (tokens, read replicas, read repair
    /// chance); `None`: drawn from the operating system.
    pub seed: Option<u64>,
    /// The store; `None`: RocksDB in `data_dir`.
    pub storage: Option<(Arc<dyn Storage>, Arc<DiskHealth>)>,
    /// Installs the process-wide Prometheus recorder for `/metrics`.
    pub metrics: bool,
}

impl Environment {
    /// A real node: system clock, TCP and UDP, RocksDB, metrics.
    pub fn system() -> Self {
        Self {
            wall: WallClock::system(),
            network: Network::system(),
            seed: None,
            storage: None,
            metrics: true,
        }
    }
}

/// An opened node: its store, id and clock.
pub struct Node {
    config: Config,
    name: String,
    advertised: Advertised,
    wall: WallClock,
    network: Network,
    rng: StdRng,
    metrics: bool,
    engine: Arc<dyn Storage>,
    disk: Arc<DiskHealth>,
    node_id: NodeId,
    store: LocalStore,
    trees: Arc<TreeCache>,
    clock: Arc<HybridClock>,
    tls: NodeTls,
    life: Lifecycle,
    /// The gauges of `/metrics`.
    gauges: Arc<Gauges>,
    /// The samples the web console charts.
    history: Arc<History>,
    /// The web console on the HTTP port.
    console: Arc<Console>,
}

/// A node that has joined its cluster and is ready to serve clients.
pub struct Joined {
    coordinator: Arc<Coordinator>,
    admin: AdminService,
    health: Arc<http::Health>,
    max_message: usize,
    /// What the client API admits at once.
    client_limits: ApiLimits,
    client_tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// The client port's connection bounds.
    client_port: PortLimits,
    /// How often the client API pings its connections.
    ping: Duration,
    /// Checks credentials; `None`: authentication off.
    auth: Option<Arc<Authenticator>>,
    /// Longest a read or write may hold its permit.
    request_deadline: Duration,
    view: ViewHandle,
    resp: RespSettings,
    resp_tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    grace: Duration,
    banner: Banner,
    gauges: Arc<Gauges>,
}

impl Node {
    /// Step 1: opens the store, the node id and the clock, and starts the
    /// durability workers.
    pub async fn open(config: &Config, env: Environment) -> anyhow::Result<Node> {
        let (engine, disk) = match env.storage {
            Some(storage) => storage,
            None => open_rocksdb(config)?,
        };
        let node_id = crate::storage::node_id::load_or_create(engine.as_ref())
            .context("cannot load the node id")?;
        let name = if config.node_name.is_empty() {
            format!("node-{}", node_id.short())
        } else {
            config.node_name.clone()
        };
        let advertised = advertised(config).await?;
        let tls = NodeTls::load(&config.tls_files())?;
        let life = Lifecycle::default();
        let (workers, worker_stop) = (&life.workers, &life.worker_stop);
        workers.spawn(run_disk_recovery(
            engine.clone(),
            disk.clone(),
            worker_stop.clone(),
        ));
        let dirty = Arc::new(DirtyMap::default());
        let store = start_durability(config, &engine, workers, worker_stop).tracking(dirty.clone());
        let trees = Arc::new(TreeCache::new(engine.clone(), dirty, LEAVES_PER_RANGE));
        let clock = Arc::new(open_clock(&engine, env.wall.clone())?);
        // A quick restart starts the clock at its stored ceiling, a little
        // ahead of real time: wait it out rather than stamp writes in the
        // future. (A wall clock that went far back is not waited for: the
        // clock runs ahead of it until it catches up.)
        let ahead = clock.ahead_of_wall();
        if ahead <= MAX_CLOCK_WAIT {
            tokio::time::sleep(ahead).await;
        } else {
            tracing::warn!(
                ?ahead,
                "the wall clock is behind timestamps this node issued before; timestamps run ahead of it until it catches up"
            );
        }
        workers.spawn(renew_clock_ceiling(clock.clone(), worker_stop.clone()));
        let rng = match env.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        let gauges = Arc::new(Gauges::new(
            config.gc_grace_seconds,
            engine.clone(),
            disk.clone(),
        ));
        let history = History::new(env.wall.clone());
        let console = Console::new(history.clone(), gauges.clone());
        Ok(Node {
            config: config.clone(),
            name,
            advertised,
            wall: env.wall,
            network: env.network,
            rng,
            metrics: env.metrics,
            engine,
            disk,
            node_id,
            store,
            trees,
            clock,
            tls,
            life,
            gauges,
            history,
            console,
        })
    }

    /// Steps 2 and 3, then the ordered shutdown (see the module docs).
    pub async fn run(
        mut self,
        listeners: Listeners,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let outcome = async {
            let joining = self.join(listeners.peer, listeners.http, &stop);
            let Some(joined) = joining.await? else {
                return Ok(());
            };
            joined.serve(listeners.client, listeners.resp, &stop).await
        }
        .await;
        let life = &self.life;
        life.shut_down(self.config.shutdown_grace()).await;
        if let Some(why) = life.fatal.get() {
            anyhow::bail!("{why}");
        }
        self.engine
            .sync_wal()
            .context("final write-ahead log sync failed")?;
        outcome?;
        tracing::info!("ringkv node stopped");
        Ok(())
    }

    /// Step 2: serves the internode API on `peer` (and `/metrics` and
    /// `/health`, 503 until step 3, on `http`), joins the cluster and
    /// starts the background workers. `None` when `stop` came first.
    pub async fn join(
        &mut self,
        peer: Listener,
        http: Option<TcpListener>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Option<Joined>> {
        let config = &self.config;
        let (engine, node_id) = (&self.engine, self.node_id);
        let (workers, worker_stop) = (&self.life.workers, &self.life.worker_stop);
        let max_message = config.max_message_bytes();

        // Metrics first: the services below register their counters.
        let health = Arc::new(http::Health::with_disk(Some(self.disk.clone())));
        if let Some(listener) = http {
            let parts = HttpParts {
                health: health.clone(),
                gauges: self.gauges.clone(),
                history: self.history.clone(),
                console: self.console.clone(),
            };
            let port = config.port_limits().http;
            start_http(listener, port, self.metrics, parts, workers, worker_stop);
        }

        let late_view: LateView = Arc::default();
        let peer_limits = config.peer_api_limits();
        let internode_timeout = Duration::from_millis(config.internode_timeout_ms);
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
        let internode_limit = limit.clone();
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
            FramedServer::new(service, limit, internode_timeout, max_message)
                .with_tls(framed_tls.as_ref().map(|tls| tls.server.clone()))
                .with_handshake_timeout(config.port_limits().peer.handshake),
        );
        let peer_stop = self.life.peer_stop.clone();
        let (peer_tls, dial_tls) = self.tls.internode.clone().unzip();
        let mut server = server_builder(peer_limits.per_connection, config.server_ping_interval())
            .timeout(internode_timeout);
        let admission = Admission::new("internode", config.port_limits().peer);
        self.life.peer.spawn(async move {
            let router = server.add_service(grpc);
            let port = framed::PeerPort {
                admission,
                grpc_tls: peer_tls,
            };
            if let Err(error) = framed::serve(router, framed, peer, port, peer_stop).await {
                tracing::error!(%error, "internode API server failed");
            }
        });

        if Topology::was_decommissioned(&self.store)? {
            anyhow::bail!(
                "this node was decommissioned and must not rejoin with its old data; to add this machine again as a new node, empty its data directory ({})",
                config.data_dir.display()
            );
        }
        let tokens = persist::load_tokens(engine.as_ref())?;
        // A bootstrap a restart interrupted resumes (`Some(replaces)`); a
        // decommission it interrupted is rolled back.
        let pending = match tokens {
            Some(_) => Topology::pending_bootstrap(&self.store)?,
            None => None,
        };
        let leaving = tokens.is_some() && Topology::decommission_interrupted(&self.store)?;
        let gossip = GossipSettings {
            node_id,
            cluster_name: config.cluster_name.clone(),
            listen: config.listen_gossip,
            advertise: self.advertised.gossip,
            seeds: config.seeds.clone(),
            interval: Duration::from_millis(config.gossip_interval_ms),
            phi_convict_threshold: config.phi_convict_threshold,
            dead_node_grace: Duration::from_millis(config.gossip_dead_node_grace_ms),
            replication_factor: config.replication_factor as usize,
            wall: self.wall.clone(),
        };
        let last_repair = load_last_completed(engine.as_ref())?;
        let initial = initial_gossip(
            config,
            &self.name,
            &self.advertised,
            tokens.as_deref(),
            (pending, leaving),
            last_repair,
        );
        let membership = Membership::start(
            gossip,
            engine.clone(),
            initial,
            self.network.gossip.as_ref(),
        )
        .await?;
        // Set once: a second set (never) would leave the first in place.
        let _ = late_view.set(membership.view_handle());
        workers.spawn(membership.clone().run(worker_stop.clone()));
        workers.spawn(stop_for_twin(
            membership.subscribe_twins(),
            (stop.clone(), self.life.fatal.clone()),
            worker_stop.clone(),
        ));
        join::check_replication_factor(&membership, config.replication_factor)?;

        let transport = Arc::new(
            NodeTransport::new(
                node_id,
                self.store.clone(),
                membership.view_handle(),
                Duration::from_millis(config.internode_timeout_ms),
            )
            .with_dial(self.network.dial.clone())
            .with_max_message(max_message)
            .with_tls(dial_tls)
            .with_framed(
                (config.internode_protocol == InternodeProtocol::Framed).then(|| ClientSettings {
                    dial: self.network.dial.clone(),
                    tls: framed_tls.map(|tls| (tls.client, tls.name)),
                    deadline: internode_timeout,
                    max_message,
                    keepalive: framed::KEEPALIVE_INTERVAL,
                }),
            ),
        );
        let topology = Arc::new(Topology::new(
            membership.clone(),
            transport.clone() as Arc<dyn RepairTransport>,
            self.store.clone(),
            self.clock.clone(),
            config.stream_settings(),
        ));
        if leaving {
            topology.abandon_decommission().await?;
        }
        // A restarted member of a cluster waits (up to ring_delay) to hear
        // the current topology from a live peer before it coordinates:
        // changes may have happened while it was down.
        let restarting = tokens.is_some() && pending.is_none();
        let has_peers = membership
            .view()
            .members()
            .any(|m| m.id != node_id && m.status != NodeStatus::Left);
        if restarting && has_peers {
            let wait = Duration::from_millis(config.ring_delay_ms);
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
        let mut bootstrap = match (tokens, pending) {
            (Some(_), None) => None,
            (Some(tokens), Some(replaces)) => {
                tracing::info!("resuming an interrupted bootstrap");
                Some((tokens, replaces))
            }
            (None, _) => {
                let replaces = config.replaces()?;
                let Some(tokens) = pick_tokens(
                    config,
                    &self.advertised,
                    &mut self.rng,
                    &membership,
                    replaces,
                    stop,
                )
                .await?
                else {
                    return Ok(None);
                };
                if membership.view().ring().is_empty() && replaces.is_none() {
                    // A new cluster's first node: nothing to stream.
                    persist::save_tokens(engine.as_ref(), &tokens)?;
                    membership
                        .announce(vec![
                            (keys::TOKENS, keys::encode_tokens(&tokens)),
                            (keys::STATUS, NodeStatus::Normal.to_string()),
                        ])
                        .await;
                    None
                } else {
                    Topology::begin_bootstrap(&self.store, replaces).await?;
                    persist::save_tokens(engine.as_ref(), &tokens)?;
                    Some((tokens, replaces))
                }
            }
        };
        let mut withdrawals = 0;
        while let Some((tokens, replaces)) = bootstrap.take() {
            let outcome = tokio::select! {
                joined = topology.bootstrap(&tokens, replaces) => joined,
                _ = stop.cancelled() => return Ok(None),
            };
            match outcome {
                Ok(()) => {}
                // Another change started at the same moment and this join
                // withdrew: choose tokens again once that change is over.
                Err(TopologyError::InProgress(other)) if withdrawals < MAX_WITHDRAWALS => {
                    withdrawals += 1;
                    tracing::info!(%other, "join withdrawn; choosing tokens again");
                    persist::clear_tokens(engine.as_ref())?;
                    let Some(tokens) = pick_tokens(
                        config,
                        &self.advertised,
                        &mut self.rng,
                        &membership,
                        replaces,
                        stop,
                    )
                    .await?
                    else {
                        return Ok(None);
                    };
                    Topology::begin_bootstrap(&self.store, replaces).await?;
                    persist::save_tokens(engine.as_ref(), &tokens)?;
                    bootstrap = Some((tokens, replaces));
                }
                Err(error) => return Err(error.into()),
            }
        }

        let hints = if config.hinted_handoff_enabled {
            let hints = Arc::new(
                HintStore::open(engine.clone(), config.hint_capacity_bytes())?
                    .durable_as(self.store.clone())
                    .with_clock(self.wall.clone()),
            );
            workers.spawn(run_replay(
                hints.clone(),
                membership.view_handle(),
                transport.clone(),
                config.replay_settings(),
                worker_stop.clone(),
            ));
            Some(hints)
        } else {
            None
        };
        let offsets = Arc::new(ClockOffsets::new(config.max_clock_offset_ms));
        workers.spawn(super::clocks::probe_clocks(
            transport.clone(),
            offsets.clone(),
            membership.view_handle(),
            self.wall.clone(),
            worker_stop.clone(),
        ));
        let coordinator = Arc::new(
            Coordinator::new(
                membership.view_handle(),
                transport.clone() as Arc<dyn ReplicaTransport>,
                self.clock.clone(),
                config.coordinator_settings(),
                hints.clone(),
            )
            .with_tasks(self.life.requests.clone())
            .with_seed(rand::Rng::random(&mut self.rng))
            .with_clock_offsets(offsets.clone()),
        );

        let repairer = Arc::new(
            Repairer::new(
                node_id,
                membership.view_handle(),
                LocalReplica {
                    cache: self.trees.clone(),
                    store: self.store.clone(),
                },
                transport.clone() as Arc<dyn RepairTransport>,
                last_repair,
            )
            .with_clock(self.wall.clone()),
        );
        if let Some(interval) = config.anti_entropy_interval() {
            workers.spawn(run_scheduler(
                repairer.clone(),
                interval,
                worker_stop.clone(),
            ));
        }
        workers.spawn(announce_disk(
            self.disk.subscribe(),
            membership.clone(),
            config.disk_failure_policy,
            (stop.clone(), self.life.fatal.clone()),
            worker_stop.clone(),
        ));
        workers.spawn(announce_repair_failures(
            repairer.subscribe_failures(),
            membership.clone(),
            worker_stop.clone(),
        ));
        workers.spawn(announce_repairs(
            repairer.subscribe(),
            membership.clone(),
            engine.clone(),
            worker_stop.clone(),
        ));
        self.console.joined(console::Joined {
            view: membership.view_handle(),
            cluster_name: config.cluster_name.clone(),
            replication_factor: config.replication_factor,
            peers: transport.clone() as Arc<dyn SampleSource>,
            topology: topology.clone(),
            offsets: offsets.clone(),
        });
        self.gauges.joined(gauges::Joined {
            view: membership.view_handle(),
            generation: membership.generation(),
            hints,
            repairer: repairer.clone(),
            internode: internode_limit,
            background: self.life.requests.clone(),
            replicas: transport.replica_metrics(),
        });
        let users = config
            .authentication
            .then(|| UserStore::new(coordinator.clone()));
        if let (Some(users), Some(password)) = (&users, config.admin_password()?) {
            workers.spawn(ensure_admin(users.clone(), password, worker_stop.clone()));
        }
        let auth = users.clone().map(|users| {
            let throttle = Throttle::new(
                config.auth_max_failures,
                Duration::from_millis(config.auth_failure_refill_ms),
            );
            Arc::new(Authenticator::with_throttle(
                users,
                config.auth_cache(),
                throttle,
            ))
        });
        let admin = AdminService::new(
            NodeDescription {
                id: node_id,
                name: self.name.clone(),
                replication_factor: config.replication_factor,
                rack: config.rack.clone(),
                cluster_name: config.cluster_name.clone(),
            },
            membership.view_handle(),
            repairer,
        )
        .with_tasks(workers.clone(), worker_stop.clone())
        .with_topology(topology, stop.clone())
        .with_users(users)
        .with_clock_offsets(offsets.clone())
        .with_stats({
            let gauges = self.gauges.clone();
            Arc::new(move || gauges.snapshot())
        });
        Ok(Some(Joined {
            coordinator,
            admin,
            health,
            max_message,
            client_limits: config.client_api_limits(),
            client_tls: self.tls.client.clone(),
            client_port: config.port_limits().client,
            ping: config.server_ping_interval(),
            auth,
            request_deadline: config.client_request_deadline(),
            view: membership.view_handle(),
            resp: config.resp_settings(&self.name),
            resp_tls: self.tls.resp.clone(),
            grace: config.shutdown_grace(),
            banner: Banner {
                node_id,
                name: self.name.clone(),
                advertised: self.advertised,
                data_dir: config.data_dir.display().to_string(),
                commitlog_sync: config.commitlog_sync,
            },
            gauges: self.gauges.clone(),
        }))
    }
}

/// What `Joined::serve` logs when the node starts serving.
struct Banner {
    node_id: NodeId,
    name: String,
    advertised: Advertised,
    data_dir: String,
    commitlog_sync: SyncMode,
}

impl Joined {
    /// Step 3: serves clients on `client` (and the RESP port on `resp`)
    /// until `stop`, then lets in-flight requests finish.
    pub async fn serve(
        self,
        client: Listener,
        resp: Option<TcpListener>,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let limit = InFlightLimit::for_api("client", &self.client_limits);
        self.gauges.serving(limit.clone());
        let resp = resp.map(|listener| {
            let server = RespServer::new(
                self.coordinator.clone(),
                self.auth.clone(),
                limit.clone(),
                self.view.clone(),
                self.resp.clone(),
                self.resp_tls.clone(),
            );
            server.serve(listener, stop.clone())
        });
        let kv = limit.wrap_with_deadline(
            RequireAuth::new(
                KeyValueServer::new(KeyValueService::new(self.coordinator))
                    .max_decoding_message_size(self.max_message)
                    .max_encoding_message_size(self.max_message),
                self.auth.clone(),
            ),
            self.max_message,
            self.request_deadline,
        );
        let admin = limit.wrap(
            RequireAuth::new(
                AdminServer::new(self.admin)
                    .max_decoding_message_size(ADMIN_MESSAGE_BYTES)
                    .max_encoding_message_size(self.max_message),
                self.auth.clone(),
            ),
            ADMIN_MESSAGE_BYTES,
        );
        let banner = &self.banner;
        tracing::info!(
            node_id = %banner.node_id,
            node_name = %banner.name,
            client = %banner.advertised.client,
            peer = %banner.advertised.peer,
            gossip = %banner.advertised.gossip,
            data_dir = %banner.data_dir,
            commitlog_sync = %banner.commitlog_sync,
            "ringkv node serving"
        );
        self.health.set_serving(true);

        let router = server_builder(self.client_limits.per_connection, self.ping)
            .add_service(kv)
            .add_service(admin);
        let admission = Admission::new("client", self.client_port);
        let incoming = accept::incoming(client, admission, self.client_tls, stop.clone());
        let server = net::serve(router, incoming, stop.clone().cancelled_owned());
        let grace = self.grace;
        let drain_deadline = async {
            stop.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        let resp = async {
            if let Some(resp) = resp {
                resp.await;
            }
        };
        // Both drain on `stop`; a gRPC server that fails fails the node at
        // once.
        let servers = async {
            tokio::pin!(server, resp);
            tokio::select! {
                grpc = &mut server => match grpc {
                    Ok(()) => {
                        resp.await;
                        Ok(())
                    }
                    failed => failed,
                },
                () = &mut resp => server.await,
            }
        };
        tokio::select! {
            result = servers => result.context("client API server failed")?,
            _ = drain_deadline => tracing::warn!(?grace, "in-flight requests did not finish in time; closing"),
        }
        self.health.set_serving(false);
        Ok(())
    }
}

/// A gRPC server with bounded HTTP/2: at most `streams` requests per
/// connection (the per-node limit is [`InFlightLimit`]), bounded headers,
/// a cap on streams a client may open and reset at once (the HTTP/2
/// "rapid reset" flood), and a PING every `ping` that must be answered
/// within as long. TLS is the accept loop's (`rpc::accept`).
fn server_builder(streams: usize, ping: Duration) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(u32::try_from(streams).unwrap_or(u32::MAX))
        .http2_max_header_list_size(MAX_HEADER_BYTES)
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS))
        .http2_keepalive_interval(Some(ping))
        .http2_keepalive_timeout(Some(ping))
}

/// What the HTTP port serves.
struct HttpParts {
    health: Arc<http::Health>,
    gauges: Arc<Gauges>,
    history: Arc<History>,
    console: Arc<Console>,
}

/// Serves `/metrics` (installing the Prometheus recorder when `metrics`),
/// `/health` and the web console on `listener`, and samples the node for
/// the console, as workers.
fn start_http(
    listener: TcpListener,
    port: PortLimits,
    metrics: bool,
    parts: HttpParts,
    workers: &TaskTracker,
    stop: &CancellationToken,
) {
    let HttpParts {
        health,
        gauges,
        history,
        console,
    } = parts;
    let metrics = if metrics {
        crate::metrics::install()
    } else {
        None
    };
    if let Some(handle) = metrics.clone() {
        gauges.describe();
        let upkeep_stop = stop.clone();
        let gauges = gauges.clone();
        workers.spawn(async move {
            let mut tick = tokio::time::interval(crate::metrics::UPKEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        // RocksDB properties, statvfs and /proc: a store
                        // reopening after a full disk holds its lock for
                        // seconds, so never on a runtime thread.
                        let (gauges, handle) = (gauges.clone(), handle.clone());
                        let _ = tokio::task::spawn_blocking(move || {
                            gauges.refresh();
                            handle.run_upkeep();
                        })
                        .await;
                    }
                    _ = upkeep_stop.cancelled() => break,
                }
            }
        });
    }
    if let Some(handle) = metrics.clone() {
        let gauges = gauges.clone();
        let render = move || {
            gauges.refresh();
            handle.render()
        };
        workers.spawn(history.run_sampler(render, stop.clone()));
    }
    let exporter = metrics.map(|handle| http::Exporter { handle, gauges });
    let console = super::console::routes(console);
    // After the recorder is installed, so that its counter counts.
    let admission = Admission::new("http", port);
    workers.spawn(http::serve(
        http::Admitted::new(listener, admission),
        exporter,
        health,
        console,
        stop.clone(),
    ));
}

/// Opens RocksDB in the configured data directory.
fn open_rocksdb(config: &Config) -> anyhow::Result<(Arc<dyn Storage>, Arc<DiskHealth>)> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let db_path = config.data_dir.join("db");
    let connections = [
        config.max_client_connections,
        config.max_peer_connections,
        config.max_http_connections,
        config.resp_max_clients,
    ]
    .into_iter()
    .fold(0u64, u64::saturating_add);
    let files = super::files::budget(connections);
    let rocks_config = RocksConfig {
        gc_grace_seconds: config.gc_grace_seconds,
        block_cache_bytes: config.block_cache_bytes(),
        memtable_bytes: config.memtable_bytes(),
        background_jobs: config.storage_background_jobs as usize,
        memtable_bloom: config.memtable_bloom,
        block_hash_index: config.block_hash_index,
        max_open_files: files.max_open_files(),
    };
    let rocks = RocksStorage::open(&db_path, &rocks_config)
        .with_context(|| format!("cannot open the store in {}", db_path.display()))?;
    let health = rocks.health();
    Ok((Arc::new(rocks), health))
}

/// The node's clock, started above the ceiling its last run stored.
fn open_clock(engine: &Arc<dyn Storage>, wall: WallClock) -> anyhow::Result<HybridClock> {
    let stored = engine
        .meta_get(CLOCK_CEILING_KEY)
        .context("cannot read the clock ceiling")?
        .map(|bytes| {
            std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .context("the stored clock ceiling is unreadable; the data directory is damaged")
        })
        .transpose()?;
    let engine = engine.clone();
    let save = Box::new(move |bound: i64| {
        engine
            .meta_put(CLOCK_CEILING_KEY, bound.to_string().as_bytes())
            .map_err(|e| e.to_string())
    });
    Ok(HybridClock::with_ceiling(wall, stored, save))
}

/// Keeps the clock's stored ceiling ahead of the clock, until `stop`.
async fn renew_clock_ceiling(clock: Arc<HybridClock>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CLOCK_RENEW_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let clock = clock.clone();
        let _ = crate::storage::blocking(move || clock.renew()).await;
    }
}

/// This node's tokens on a first start: a dead node's when replacing it,
/// otherwise balanced new ones. `None` when `stop` came first.
async fn pick_tokens(
    config: &Config,
    advertised: &Advertised,
    rng: &mut StdRng,
    membership: &Membership,
    replaces: Option<NodeId>,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Vec<crate::ring::Token>>> {
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

/// Creates the user `admin` with `password` when no such user exists,
/// retrying until the users can be read and written (a quorum is up).
async fn ensure_admin(users: UserStore, password: String, stop: CancellationToken) {
    loop {
        let outcome = match users.get("admin").await {
            Ok(Some(_)) => Ok(false),
            Ok(None) => users
                .put("admin", &password, Role::Admin)
                .await
                .map(|()| true),
            Err(error) => Err(error),
        };
        match outcome {
            Ok(created) => {
                if created {
                    tracing::info!("created the user admin (auth_admin_password)");
                }
                return;
            }
            Err(error) => tracing::info!(%error, "cannot check the admin user yet; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Starts the WAL sync worker the durability mode needs.
fn start_durability(
    config: &Config,
    engine: &Arc<dyn Storage>,
    workers: &TaskTracker,
    stop: &CancellationToken,
) -> LocalStore {
    let group = match config.commitlog_sync {
        SyncMode::Group => {
            let group =
                GroupSync::new(Duration::from_millis(config.commitlog_sync_group_window_ms));
            workers.spawn(group.clone().run(engine.clone(), stop.clone()));
            Some(group)
        }
        SyncMode::Periodic => {
            let period = Duration::from_millis(config.commitlog_sync_period_ms);
            workers.spawn(run_periodic_sync(engine.clone(), period, stop.clone()));
            None
        }
        SyncMode::Always => None,
    };
    LocalStore::new(engine.clone(), config.commitlog_sync, group)
}

/// The key-values this node gossips when it starts.
fn initial_gossip(
    config: &Config,
    name: &str,
    advertised: &Advertised,
    tokens: Option<&[crate::ring::Token]>,
    (pending, leaving): (Option<Option<NodeId>>, bool),
    last_repair: i64,
) -> Vec<(String, String)> {
    // A bootstrap that a restart interrupted gossips its tokens as pending
    // from the first message, so coordinators keep sending it writes; an
    // interrupted decommission gossips LEAVING at read_old until it has
    // rolled back.
    let status = match (tokens, pending) {
        (Some(_), None) if leaving => NodeStatus::Leaving,
        (Some(_), None) => NodeStatus::Normal,
        _ => NodeStatus::Joining,
    };
    let mut extra = Vec::new();
    if leaving {
        extra.push((keys::PHASE, keys::Phase::ReadOld.as_str().to_owned()));
    }
    if let Some(replaces) = pending {
        extra.push((keys::PHASE, keys::Phase::Pending.as_str().to_owned()));
        if let Some(dead) = replaces {
            extra.push((keys::REPLACES, dead.to_string()));
        }
    }
    [
        (keys::STATUS, status.to_string()),
        (keys::LAST_REPAIR, last_repair.to_string()),
        (
            keys::TOKENS,
            tokens.map(keys::encode_tokens).unwrap_or_default(),
        ),
        (keys::NAME, name.to_owned()),
        (keys::VERSION, env!("CARGO_PKG_VERSION").to_owned()),
        (keys::SETTINGS, config.shared_settings()),
        (keys::RACK, config.rack.clone()),
        (
            keys::REPLICATION_FACTOR,
            config.replication_factor.to_string(),
        ),
        (keys::CLIENT_ADDR, advertised.client.to_string()),
        (keys::PEER_ADDR, advertised.peer.to_string()),
        (keys::PEER_FRAMED, framed::frame::VERSION.to_string()),
    ]
    .into_iter()
    .chain(extra)
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
