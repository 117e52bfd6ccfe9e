//! Wiring: opens the store, joins the cluster, starts the services and
//! background workers, and stops them all in order.
//!
//! A node runs in three steps ([`Node`]), each given what it needs from
//! the outside world, so that the simulation runs the same code over its
//! own network, clock and storage:
//! 1. [`Node::open`]: open the store (RocksDB, or the one given) and the
//!    node id; start the WAL syncer; start the clock above the ceiling its
//!    last run stored;
//! 2. [`Node::join`], given the internode (and HTTP) listeners: start the
//!    internode service and `/metrics` and `/health` (503 until step 3);
//!    decide what the start does from the data directory (`start`: a
//!    fresh start, a restart, a resumed bootstrap or an abandoned
//!    decommission); start gossip over the given transport; on a first
//!    start choose tokens (`membership::join`), otherwise reuse the
//!    remembered ones; announce NORMAL; start hint replay, the anti-entropy scheduler
//!    and the announcers;
//! 3. [`Joined::serve`], given the client listener: serve clients until
//!    stopped.
//!
//! [`run`] binds every port first (a port in use stops the node at once,
//! with a clear error), then runs the steps.
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
//!    among them, and repairs started by `ringkv repair`) stop and are
//!    awaited;
//! 5. the WAL is fsynced and RocksDB is closed when the last handle drops.
//!
//! The node's own tasks run under names (`crate::workers`): the three
//! sets that stop in steps 2 to 4 (`lifecycle::Lifecycle`) share one
//! table, which `ringkv tpstats` and the console's "running work" read.
//! (Tasks that libraries start inside, tonic's and axum's per-connection
//! tasks, gossip's, and the RESP port's connections, which the port owns
//! in a `JoinSet`, are not listed.)

mod addresses;
mod announce;
mod clocks;
mod console;
mod files;
mod gauges;
mod http;
mod join;
mod lifecycle;
mod node;
mod serve;
mod services;
mod shutdown;
mod start;
#[cfg(test)]
mod tests;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use addresses::{Advertised, advertised, resolve_host};
pub use node::{Environment, Node};
pub use serve::Joined;
pub use shutdown::cancel_on_signal;

use crate::config::Config;
use crate::rpc::gossip_mac::AuthenticatedUdp;
use crate::rpc::net::Listener;

/// The sockets a node serves on.
pub struct Listeners {
    pub client: Listener,
    pub peer: Listener,
    /// `/metrics` and `/health`; `None`: not served.
    pub http: Option<TcpListener>,
    /// The RESP port; `None`: not served.
    pub resp: Option<TcpListener>,
}

impl Listeners {
    /// Binds the configured ports.
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        use anyhow::Context;
        let client = Listener::bind(config.listen_client, "clients").await?;
        let peer = Listener::bind(config.listen_peer, "peers").await?;
        let http = TcpListener::bind(config.listen_http)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.listen_http))?;
        let resp = if config.resp_enabled {
            Some(
                TcpListener::bind(config.listen_resp)
                    .await
                    .with_context(|| format!("cannot listen for RESP on {}", config.listen_resp))?,
            )
        } else {
            None
        };
        Ok(Listeners {
            client,
            peer,
            http: Some(http),
            resp,
        })
    }
}

/// Runs a node on the configured ports until `stop` is cancelled.
pub async fn run(config: Config, stop: CancellationToken) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config).await?;
    let mut env = Environment::system();
    if let Some(key) = config.gossip_key()? {
        env.network.gossip = std::sync::Arc::new(AuthenticatedUdp::new(key));
    }
    Node::open(&config, env).await?.run(listeners, stop).await
}
