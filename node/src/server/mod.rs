//! Wiring: opens the store, joins the cluster, starts the services and
//! background workers, and stops them all in order.
//!
//! Start:
//! 1. open RocksDB and the node id; start the WAL syncer;
//! 2. bind every port (a port in use stops the node at once, with a clear
//!    error) and start the internode and HTTP services;
//! 3. start gossip; on a first start choose tokens (`membership::join`),
//!    otherwise reuse the remembered ones; announce NORMAL;
//! 4. start hint replay, the anti-entropy scheduler and the last-repair
//!    announcer; serve clients.
//!
//! Shutdown, on SIGINT/SIGTERM or when the caller's token is cancelled,
//! each step bounded by `shutdown_timeout_ms`:
//! 1. the client API stops accepting connections and lets in-flight
//!    requests finish;
//! 2. work that outlives requests (replica sends after an early answer,
//!    background read repair) finishes;
//! 3. the internode service stops accepting requests and drains: replica
//!    writes still waiting for a group fsync get it, since the syncer is
//!    still running;
//! 4. the HTTP service, gossip and the other workers (the WAL syncers
//!    among them) stop and are awaited;
//! 5. the WAL is fsynced and RocksDB is closed when the last handle drops.

mod addresses;
mod http;
mod shutdown;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ringkv_proto::internal::v1::peer_server::PeerServer;
use ringkv_proto::v1::admin_server::AdminServer;
use ringkv_proto::v1::key_value_server::KeyValueServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::TcpIncoming;

pub use addresses::{Advertised, advertised, resolve_host};
pub use shutdown::cancel_on_signal;

use crate::clock::{HybridClock, wall_clock_micros};
use crate::config::{Config, MAX_KEY_SIZE};
use crate::coordinator::{Coordinator, CoordinatorSettings, Limits};
use crate::hints::{HintStore, ReplaySettings, run_replay};
use crate::identity::{self, NodeId};
use crate::membership::join::{self, JoinSettings};
use crate::membership::keys::{self, NodeStatus};
use crate::membership::{GossipSettings, Membership, persist};
use crate::peer::{RepairTransport, ReplicaTransport, TreeCache};
use crate::repair::{
    LEAVES_PER_RANGE, LocalReplica, Repairer, load_last_completed, run_scheduler,
    save_last_completed,
};
use crate::rpc::{AdminService, KeyValueService, NodeDescription, NodeTransport, PeerService};
use crate::storage::batch::MAX_BATCH_BYTES;
use crate::storage::{
    DirtyMap, DiskFailurePolicy, DiskHealth, GroupSync, LocalStore, RocksConfig, RocksStorage,
    Storage, SyncMode, run_disk_recovery, run_periodic_sync,
};

/// Room above the largest key and value for the rest of a request.
const MESSAGE_OVERHEAD: usize = 64 * 1024;

/// The store, its disk's health, and the node id.
type Opened = (Arc<dyn Storage>, Arc<DiskHealth>, NodeId);

/// Opens the store and the node id.
fn open_store(config: &Config) -> anyhow::Result<Opened> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let db_path = config.data_dir.join("db");
    let rocks_config = RocksConfig {
        gc_grace_seconds: config.gc_grace_seconds,
        block_cache_bytes: config.block_cache_bytes(),
    };
    let rocks = RocksStorage::open(&db_path, &rocks_config)
        .with_context(|| format!("cannot open the store in {}", db_path.display()))?;
    let health = rocks.health();
    let engine: Arc<dyn Storage> = Arc::new(rocks);
    let node_id = identity::load_or_create(engine.as_ref()).context("cannot load the node id")?;
    Ok((engine, health, node_id))
}

/// Where the clock keeps its ceiling (see `clock`).
const CLOCK_CEILING_KEY: &str = "clock.ceiling";
/// How often the clock's stored ceiling is renewed.
const CLOCK_RENEW_INTERVAL: Duration = Duration::from_millis(250);
/// Longest wait at start for the wall clock to pass the stored ceiling.
const MAX_CLOCK_WAIT: Duration = Duration::from_secs(2);

/// The node's clock, started above the ceiling its last run stored.
fn open_clock(engine: &Arc<dyn Storage>) -> anyhow::Result<HybridClock> {
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
    Ok(HybridClock::with_ceiling(wall_clock_micros, stored, save))
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

/// Accepted connections with Nagle's algorithm off: small gRPC frames must
/// not wait for the peer's delayed ACK (a 40 ms stall per exchange).
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// The key-values this node gossips when it starts.
fn initial_gossip(
    config: &Config,
    name: &str,
    advertised: &Advertised,
    tokens: Option<&[crate::ring::Token]>,
    last_repair: i64,
) -> Vec<(String, String)> {
    let status = if tokens.is_some() {
        NodeStatus::Normal
    } else {
        NodeStatus::Joining
    };
    [
        (keys::STATUS, status.to_string()),
        (keys::LAST_REPAIR, last_repair.to_string()),
        (
            keys::TOKENS,
            tokens.map(keys::encode_tokens).unwrap_or_default(),
        ),
        (keys::NAME, name.to_owned()),
        (keys::RACK, config.rack.clone()),
        (
            keys::REPLICATION_FACTOR,
            config.replication_factor.to_string(),
        ),
        (keys::CLIENT_ADDR, advertised.client.to_string()),
        (keys::PEER_ADDR, advertised.peer.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Runs a node until `stop` is cancelled.
pub async fn run(config: Config, stop: CancellationToken) -> anyhow::Result<()> {
    let (engine, disk, node_id) = open_store(&config)?;
    let name = if config.node_name.is_empty() {
        format!("node-{}", node_id.short())
    } else {
        config.node_name.clone()
    };
    let advertised = advertised(&config).await?;
    let life = Lifecycle::default();
    let node = Identity {
        id: node_id,
        name: &name,
        advertised,
        disk: disk.clone(),
    };
    let outcome = serve(&config, engine.clone(), node, &life, &stop).await;
    life.shut_down(Duration::from_millis(config.shutdown_timeout_ms))
        .await;
    if let Some(cause) = life.stopped_by_disk.get() {
        anyhow::bail!("stopped by disk_failure_policy = stop: the disk refuses writes ({cause})");
    }
    engine
        .sync_wal()
        .context("final write-ahead log sync failed")?;
    outcome?;
    tracing::info!("ringkv node stopped");
    Ok(())
}

/// Who owns the node's tasks, stopped in order (see the module docs).
#[derive(Default)]
struct Lifecycle {
    /// Work that outlives client requests.
    requests: TaskTracker,
    /// The internode server, and its stop signal.
    peer: TaskTracker,
    peer_stop: CancellationToken,
    /// Every other background worker, and their stop signal.
    workers: TaskTracker,
    worker_stop: CancellationToken,
    /// Set when `disk_failure_policy = stop` stopped the node: the cause.
    stopped_by_disk: Arc<std::sync::OnceLock<String>>,
}

impl Lifecycle {
    async fn shut_down(&self, grace: Duration) {
        async fn wait(tasks: &TaskTracker, grace: Duration, what: &str) {
            tasks.close();
            if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
                tracing::warn!(?grace, "{what} did not stop in time");
            }
        }
        wait(&self.requests, grace, "background replica work").await;
        self.peer_stop.cancel();
        wait(&self.peer, grace, "the internode API").await;
        self.worker_stop.cancel();
        wait(&self.workers, grace, "background workers").await;
    }
}

/// Who this node is.
struct Identity<'a> {
    id: NodeId,
    name: &'a str,
    advertised: Advertised,
    disk: Arc<DiskHealth>,
}

/// Everything between opening the store and stopping the workers.
async fn serve(
    config: &Config,
    engine: Arc<dyn Storage>,
    node: Identity<'_>,
    life: &Lifecycle,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let Identity {
        id: node_id,
        name,
        advertised,
        disk,
    } = node;
    let (workers, worker_stop) = (&life.workers, &life.worker_stop);
    workers.spawn(run_disk_recovery(
        engine.clone(),
        disk.clone(),
        worker_stop.clone(),
    ));
    let dirty = Arc::new(DirtyMap::default());
    let store = start_durability(config, &engine, workers, worker_stop).tracking(dirty.clone());
    let trees = Arc::new(TreeCache::new(engine.clone(), dirty, LEAVES_PER_RANGE));
    let clock = Arc::new(open_clock(&engine)?);
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
    let renewer = clock.clone();
    let renew_stop = worker_stop.clone();
    workers.spawn(async move {
        let mut tick = tokio::time::interval(CLOCK_RENEW_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = renew_stop.cancelled() => return,
            }
            let clock = renewer.clone();
            let _ = tokio::task::spawn_blocking(move || clock.renew()).await;
        }
    });
    let max_value_size = usize::try_from(config.max_value_size).unwrap_or(usize::MAX);
    // A value over the limit must reach validation (INVALID_ARGUMENT naming
    // the limit), so the transport accepts somewhat more than the largest
    // valid request.
    let max_message = max_value_size
        .saturating_add(MAX_KEY_SIZE)
        .saturating_add(MESSAGE_OVERHEAD)
        .saturating_mul(2)
        // Internode batches of several cells reach MAX_BATCH_BYTES.
        .max(2 * MAX_BATCH_BYTES + MESSAGE_OVERHEAD);

    // Bind everything first: a port in use should stop the node before it
    // joins anything.
    let client_listener = bind(config.listen_client, "clients").await?;
    let peer_listener = bind(config.listen_peer, "peers").await?;
    let http_listener = bind(config.listen_http, "HTTP").await?;

    let peer = PeerServer::new(PeerService::new(
        store.clone(),
        clock.clone(),
        trees.clone(),
    ))
    .max_decoding_message_size(max_message)
    .max_encoding_message_size(max_message);
    let peer_stop = life.peer_stop.clone();
    life.peer.spawn(async move {
        let served = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(peer)
            .serve_with_incoming_shutdown(incoming(peer_listener), peer_stop.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "internode API server failed");
        }
    });

    let health = Arc::new(http::Health::with_disk(Some(disk.clone())));
    let metrics = crate::metrics::install();
    if let Some(handle) = metrics.clone() {
        let upkeep_stop = worker_stop.clone();
        workers.spawn(async move {
            let mut tick = tokio::time::interval(crate::metrics::UPKEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => handle.run_upkeep(),
                    _ = upkeep_stop.cancelled() => break,
                }
            }
        });
    }
    workers.spawn(http::serve(
        http_listener,
        metrics,
        health.clone(),
        worker_stop.clone(),
    ));

    let tokens = persist::load_tokens(engine.as_ref())?;
    let gossip = GossipSettings {
        node_id,
        cluster_name: config.cluster_name.clone(),
        listen: config.listen_gossip,
        advertise: advertised.gossip,
        seeds: config.seeds.clone(),
        interval: Duration::from_millis(config.gossip_interval_ms),
        phi_convict_threshold: config.phi_convict_threshold,
        replication_factor: config.replication_factor as usize,
    };
    let last_repair = load_last_completed(engine.as_ref())?;
    let initial = initial_gossip(config, name, &advertised, tokens.as_deref(), last_repair);
    let membership = Membership::start(gossip, engine.clone(), initial).await?;
    workers.spawn(membership.clone().run(worker_stop.clone()));
    join::check_replication_factor(&membership, config.replication_factor)?;

    let tokens = match tokens {
        Some(tokens) => tokens,
        None => {
            let settings = JoinSettings {
                num_tokens: config.num_tokens as usize,
                rack: config.rack.clone(),
                replication_factor: config.replication_factor,
                is_seed: addresses::is_seed(&config.seeds, advertised.gossip, config.listen_gossip)
                    .await,
                settle: Duration::from_millis(config.gossip_interval_ms * 4),
                ring_delay: Duration::from_millis(config.ring_delay_ms),
                timeout: Duration::from_millis(config.join_timeout_ms),
                interval: Duration::from_millis(config.gossip_interval_ms),
            };
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
            let tokens = tokio::select! {
                chosen = join::choose_tokens(&membership, &settings, &mut rng) => chosen?,
                _ = stop.cancelled() => return Ok(()),
            };
            persist::save_tokens(engine.as_ref(), &tokens)?;
            tokens
        }
    };
    membership
        .announce(vec![
            (keys::TOKENS, keys::encode_tokens(&tokens)),
            (keys::STATUS, NodeStatus::Normal.to_string()),
        ])
        .await;

    let transport = Arc::new(NodeTransport::new(
        node_id,
        store.clone(),
        membership.view_handle(),
        Duration::from_millis(config.internode_timeout_ms),
    ));
    let hints = if config.hinted_handoff_enabled {
        let hints = Arc::new(
            HintStore::open(
                engine.clone(),
                config.max_hints_per_node_mb.saturating_mul(1 << 20),
            )?
            .durable_as(store.clone()),
        );
        let window = Duration::from_millis(config.max_hint_window_ms)
            .min(Duration::from_secs(config.gc_grace_seconds));
        let settings = ReplaySettings {
            window,
            throttle_bytes_per_second: config.hint_replay_throttle_kb.saturating_mul(1024),
        };
        workers.spawn(run_replay(
            hints.clone(),
            membership.view_handle(),
            transport.clone(),
            settings,
            worker_stop.clone(),
        ));
        Some(hints)
    } else {
        None
    };
    let coordinator = Arc::new(
        Coordinator::new(
            membership.view_handle(),
            transport.clone() as Arc<dyn ReplicaTransport>,
            clock,
            CoordinatorSettings {
                replication_factor: config.replication_factor as usize,
                write_timeout: Duration::from_millis(config.write_timeout_ms),
                read_timeout: Duration::from_millis(config.read_timeout_ms),
                limits: Limits { max_value_size },
                read_repair_chance: config.read_repair_chance,
            },
            hints,
        )
        .with_tasks(life.requests.clone()),
    );

    let repairer = Arc::new(Repairer::new(
        node_id,
        membership.view_handle(),
        LocalReplica {
            cache: trees,
            store,
        },
        transport as Arc<dyn RepairTransport>,
        last_repair,
    ));
    if config.anti_entropy_interval_ms > 0 {
        let interval = Duration::from_millis(config.anti_entropy_interval_ms);
        workers.spawn(run_scheduler(
            repairer.clone(),
            interval,
            worker_stop.clone(),
        ));
    }
    workers.spawn(announce_disk(
        disk.subscribe(),
        membership.clone(),
        config.disk_failure_policy,
        (stop.clone(), life.stopped_by_disk.clone()),
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
    let kv = KeyValueServer::new(KeyValueService::new(coordinator))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let admin = AdminServer::new(AdminService::new(
        NodeDescription {
            id: node_id,
            name: name.to_owned(),
            replication_factor: config.replication_factor,
            rack: config.rack.clone(),
            cluster_name: config.cluster_name.clone(),
        },
        membership.view_handle(),
        repairer,
    ));
    tracing::info!(
        node_id = %node_id,
        node_name = %name,
        client = %advertised.client,
        peer = %advertised.peer,
        gossip = %advertised.gossip,
        data_dir = %config.data_dir.display(),
        commitlog_sync = %config.commitlog_sync,
        "ringkv node serving"
    );
    health.set_serving(true);

    let grpc_stop = stop.clone();
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(kv)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming(client_listener), grpc_stop.cancelled_owned());
    let grace = Duration::from_millis(config.shutdown_timeout_ms);
    let drain_deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result.context("client API server failed")?,
        _ = drain_deadline => tracing::warn!(?grace, "in-flight requests did not finish in time; closing"),
    }
    health.set_serving(false);
    Ok(())
}

/// Gossips whether this node's disk accepts writes, so `status` shows it
/// everywhere; under `disk_failure_policy = stop` a failure stops the node.
async fn announce_disk(
    mut changes: tokio::sync::watch::Receiver<Option<String>>,
    membership: Arc<Membership>,
    policy: DiskFailurePolicy,
    (node_stop, stopped): (CancellationToken, Arc<std::sync::OnceLock<String>>),
    stop: CancellationToken,
) {
    loop {
        let problem = changes.borrow_and_update().clone();
        if let Some(cause) = &problem
            && policy == DiskFailurePolicy::Stop
        {
            tracing::error!(cause, "disk_failure_policy = stop: shutting down");
            let _ = stopped.set(cause.clone());
            node_stop.cancel();
        }
        membership
            .announce(vec![(keys::DISK, problem.unwrap_or_default())])
            .await;
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}

/// Gossips the ranges each repair run could not sync, so `status` shows
/// them on every node.
async fn announce_repair_failures(
    mut failed: tokio::sync::watch::Receiver<Vec<crate::ring::TokenRange>>,
    membership: Arc<Membership>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            changed = failed.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
        let ranges: Vec<(i64, i64)> = failed
            .borrow_and_update()
            .iter()
            .map(|r| (r.start.0, r.end.0))
            .collect();
        membership
            .announce(vec![(keys::REPAIR_FAILED, keys::encode_ranges(&ranges))])
            .await;
    }
}

/// Remembers and gossips each completed repair, so `status` can show when
/// every node last completed one.
async fn announce_repairs(
    mut completed: tokio::sync::watch::Receiver<i64>,
    membership: Arc<Membership>,
    engine: Arc<dyn Storage>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            changed = completed.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
        let seconds = *completed.borrow_and_update();
        if let Err(error) = save_last_completed(engine.as_ref(), seconds) {
            tracing::warn!(%error, "cannot remember the last repair time");
        }
        membership
            .announce(vec![(keys::LAST_REPAIR, seconds.to_string())])
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Shutdown order: work left by requests first, then the internode API
    /// (whose replica writes may still wait for a group fsync), and only
    /// then the other workers, the WAL syncers among them.
    #[tokio::test]
    async fn shutdown_stops_requests_then_the_peer_api_then_the_workers() {
        let life = Lifecycle::default();
        let order = Arc::new(Mutex::new(Vec::new()));
        let record = |what: &'static str| {
            let order = order.clone();
            move || {
                if let Ok(mut order) = order.lock() {
                    order.push(what);
                }
            }
        };
        let done = record("request work");
        life.requests.spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            done();
        });
        let (stop, done) = (life.peer_stop.clone(), record("peer API"));
        life.peer.spawn(async move {
            stop.cancelled().await;
            done();
        });
        let (stop, done) = (life.worker_stop.clone(), record("workers"));
        life.workers.spawn(async move {
            stop.cancelled().await;
            done();
        });
        life.shut_down(Duration::from_secs(5)).await;
        let order = order.lock().map(|o| o.clone()).unwrap_or_default();
        assert_eq!(order, ["request work", "peer API", "workers"]);
    }
}
