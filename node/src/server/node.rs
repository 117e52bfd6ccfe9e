//! [`Node`]: a ringkv node's three steps (open, join, serve), each given
//! what it takes from the world in an [`Environment`] and listeners. Step
//! 1 is here; step 2 is `join`'s, step 3 `serve`'s.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::sync::CancellationToken;

use super::Listeners;
use super::addresses::{Advertised, advertised};
use super::console::Console;
use super::gauges::Gauges;
use super::lifecycle::Lifecycle;
use crate::clock::{HybridClock, WallClock};
use crate::config::Config;
use crate::console::history::History;
use crate::identity::NodeId;
use crate::peer::TreeCache;
use crate::repair::LEAVES_PER_RANGE;
use crate::rpc::net::Network;
use crate::rpc::tls::NodeTls;
use crate::storage::{
    DirtyMap, DiskHealth, GroupSync, LocalStore, RocksConfig, RocksStorage, Storage, SyncMode,
    run_disk_recovery, run_periodic_sync,
};
use crate::workers::Workers;

/// Where the clock keeps its ceiling (see `clock`).
const CLOCK_CEILING_KEY: &str = "clock.ceiling";
/// How often the clock's stored ceiling is renewed.
const CLOCK_RENEW_INTERVAL: Duration = Duration::from_millis(250);
/// Longest wait at start for the wall clock to pass the stored ceiling.
const MAX_CLOCK_WAIT: Duration = Duration::from_secs(2);

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
    pub(super) config: Config,
    pub(super) name: String,
    pub(super) advertised: Advertised,
    pub(super) wall: WallClock,
    pub(super) network: Network,
    pub(super) rng: StdRng,
    pub(super) metrics: bool,
    pub(super) engine: Arc<dyn Storage>,
    pub(super) disk: Arc<DiskHealth>,
    pub(super) node_id: NodeId,
    pub(super) store: LocalStore,
    pub(super) trees: Arc<TreeCache>,
    pub(super) clock: Arc<HybridClock>,
    pub(super) tls: NodeTls,
    pub(super) life: Lifecycle,
    /// The gauges of `/metrics`.
    pub(super) gauges: Arc<Gauges>,
    /// The samples the web console charts.
    pub(super) history: Arc<History>,
    /// The web console on the HTTP port.
    pub(super) console: Arc<Console>,
}

impl Node {
    /// Step 1: opens the store, the node id and the clock, and starts the
    /// durability workers.
    pub async fn open(config: &Config, env: Environment) -> anyhow::Result<Node> {
        let (engine, disk) = match env.storage {
            Some(storage) => storage,
            None => open_rocksdb(config)?,
        };
        let format =
            crate::storage::format::check_and_upgrade(engine.as_ref()).with_context(|| {
                format!(
                    "cannot use the data directory {}",
                    config.data_dir.display()
                )
            })?;
        if format.moved > 0 {
            tracing::info!(
                from = format.found,
                to = crate::storage::format::FORMAT_VERSION,
                moved = format.moved,
                "upgraded the data directory's storage format"
            );
        }
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
        workers.spawn(
            "disk recovery",
            run_disk_recovery(engine.clone(), disk.clone(), worker_stop.clone()),
        );
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
        workers.spawn(
            "clock ceiling",
            renew_clock_ceiling(clock.clone(), worker_stop.clone()),
        );
        let rng = match env.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        let gauges = Arc::new(Gauges::new(
            config.gc_grace_seconds,
            engine.clone(),
            disk.clone(),
            life.workers.clone(),
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

/// Starts the WAL sync worker the durability mode needs.
fn start_durability(
    config: &Config,
    engine: &Arc<dyn Storage>,
    workers: &Workers,
    stop: &CancellationToken,
) -> LocalStore {
    let group = match config.commitlog_sync {
        SyncMode::Group => {
            let group =
                GroupSync::new(Duration::from_millis(config.commitlog_sync_group_window_ms));
            workers.spawn(
                "commit log group sync",
                group.clone().run(engine.clone(), stop.clone()),
            );
            Some(group)
        }
        SyncMode::Periodic => {
            let period = Duration::from_millis(config.commitlog_sync_period_ms);
            workers.spawn(
                "commit log periodic sync",
                run_periodic_sync(engine.clone(), period, stop.clone()),
            );
            None
        }
        SyncMode::Always => None,
    };
    let guard = crate::storage::guard::PartitionGuard::new(
        config.partition_size_warn_mb.saturating_mul(1 << 20),
        config.partition_size_max_mb.saturating_mul(1 << 20),
    );
    LocalStore::new(engine.clone(), config.commitlog_sync, group).guarded(Arc::new(guard))
}
