//! Wiring: opens the store, starts background workers and the gRPC
//! services, and stops them all in order.
//!
//! Shutdown, on SIGINT/SIGTERM or when the caller's token is cancelled:
//! 1. the gRPC server stops accepting connections and lets in-flight
//!    requests finish (at most `shutdown_timeout_ms`);
//! 2. background workers are told to stop and awaited (the periodic syncer
//!    fsyncs one last time);
//! 3. the WAL is fsynced and RocksDB is closed when the last handle drops.

mod shutdown;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ringkv_proto::v1::admin_server::AdminServer;
use ringkv_proto::v1::key_value_server::KeyValueServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use shutdown::cancel_on_signal;

use crate::clock::HybridClock;
use crate::config::{Config, MAX_KEY_SIZE};
use crate::coordinator::{Coordinator, CoordinatorSettings, Limits};
use crate::identity;
use crate::rpc::{AdminService, KeyValueService, NodeDescription};
use crate::storage::{
    GroupSync, LocalStore, RocksConfig, RocksStorage, Storage, SyncMode, run_periodic_sync,
};

/// Room above the largest key and value for the rest of a request.
const MESSAGE_OVERHEAD: usize = 64 * 1024;

/// Runs a node until `stop` is cancelled.
pub async fn run(config: Config, stop: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let db_path = config.data_dir.join("db");
    let rocks_config = RocksConfig {
        gc_grace_seconds: config.gc_grace_seconds,
        block_cache_bytes: config.block_cache_bytes(),
    };
    let engine: Arc<dyn Storage> = Arc::new(
        RocksStorage::open(&db_path, &rocks_config)
            .with_context(|| format!("cannot open the store in {}", db_path.display()))?,
    );
    let node_id = identity::load_or_create(engine.as_ref()).context("cannot load the node id")?;
    let node_name = if config.node_name.is_empty() {
        format!("node-{}", node_id.short())
    } else {
        config.node_name.clone()
    };

    let workers = TaskTracker::new();
    let worker_stop = CancellationToken::new();
    let group = match config.commitlog_sync {
        SyncMode::Group => {
            let group =
                GroupSync::new(Duration::from_millis(config.commitlog_sync_group_window_ms));
            workers.spawn(group.clone().run(engine.clone(), worker_stop.clone()));
            Some(group)
        }
        SyncMode::Periodic => {
            let period = Duration::from_millis(config.commitlog_sync_period_ms);
            workers.spawn(run_periodic_sync(
                engine.clone(),
                period,
                worker_stop.clone(),
            ));
            None
        }
        SyncMode::Always => None,
    };
    let store = LocalStore::new(engine.clone(), config.commitlog_sync, group);

    let max_value_size = usize::try_from(config.max_value_size).unwrap_or(usize::MAX);
    let coordinator = Arc::new(Coordinator::new(
        store,
        Arc::new(HybridClock::default()),
        CoordinatorSettings {
            replication_factor: config.replication_factor as usize,
            write_timeout: Duration::from_millis(config.write_timeout_ms),
            read_timeout: Duration::from_millis(config.read_timeout_ms),
            limits: Limits { max_value_size },
        },
    ));
    // A value over the limit must reach validation (INVALID_ARGUMENT naming
    // the limit), so the transport accepts somewhat more than the largest
    // valid request.
    let max_message = max_value_size
        .saturating_add(MAX_KEY_SIZE)
        .saturating_add(MESSAGE_OVERHEAD)
        .saturating_mul(2);
    let kv = KeyValueServer::new(KeyValueService::new(coordinator))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let admin = AdminServer::new(AdminService::new(NodeDescription {
        id: node_id,
        name: node_name.clone(),
        replication_factor: config.replication_factor,
    }));

    let listener = TcpListener::bind(config.listen_client)
        .await
        .with_context(|| format!("cannot listen for clients on {}", config.listen_client))?;
    tracing::info!(
        node_id = %node_id,
        node_name = %node_name,
        client = %config.listen_client,
        data_dir = %config.data_dir.display(),
        commitlog_sync = %config.commitlog_sync,
        "ringkv node serving"
    );

    let grpc_stop = stop.clone();
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(kv)
        .add_service(admin)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            grpc_stop.cancelled().await
        });
    let grace = Duration::from_millis(config.shutdown_timeout_ms);
    let drain_deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result.context("client API server failed")?,
        _ = drain_deadline => tracing::warn!(?grace, "in-flight requests did not finish in time; closing"),
    }

    worker_stop.cancel();
    workers.close();
    if tokio::time::timeout(grace, workers.wait()).await.is_err() {
        tracing::warn!("background workers did not stop in time");
    }
    engine
        .sync_wal()
        .context("final write-ahead log sync failed")?;
    tracing::info!("ringkv node stopped");
    Ok(())
}
