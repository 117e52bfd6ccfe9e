//! Step 3 of a node's start, [`Joined::serve`]: the client API (gRPC) and
//! the RESP port until stopped; and the HTTP port (metrics, health, the
//! console), which steps 2 and 3 share.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ringkv_proto::v1::admin_server::AdminServer;
use ringkv_proto::v1::key_value_server::KeyValueServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::addresses::Advertised;
use super::console::Console;
use super::gauges::Gauges;
use super::http;
use crate::auth::Authenticator;
use crate::config::ApiLimits;
use crate::console::history::History;
use crate::coordinator::Coordinator;
use crate::identity::NodeId;
use crate::membership::ViewHandle;
use crate::resp::{RespServer, RespSettings};
use crate::rpc::accept::{self, Admission, PortLimits};
use crate::rpc::limit::InFlightLimit;
use crate::rpc::net::{self, Listener};
use crate::rpc::require_auth::RequireAuth;
use crate::rpc::{AdminService, KeyValueService};
use crate::storage::SyncMode;
use crate::workers::Workers;

/// Largest admin request (they carry a few ids and flags).
const ADMIN_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest HTTP/2 header block a server accepts.
const MAX_HEADER_BYTES: u32 = 64 * 1024;
/// Streams a client may open and reset before the server has seen them.
const MAX_PENDING_RESETS: usize = 64;

/// A node that has joined its cluster and is ready to serve clients.
pub struct Joined {
    pub(super) coordinator: Arc<Coordinator>,
    pub(super) admin: AdminService,
    pub(super) health: Arc<http::Health>,
    pub(super) max_message: usize,
    /// What the client API admits at once.
    pub(super) client_limits: ApiLimits,
    pub(super) client_tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// The client port's connection bounds.
    pub(super) client_port: PortLimits,
    /// How often the client API pings its connections.
    pub(super) ping: Duration,
    /// Checks credentials; `None`: authentication off.
    pub(super) auth: Option<Arc<Authenticator>>,
    /// Longest a read or write may hold its permit.
    pub(super) request_deadline: Duration,
    pub(super) view: ViewHandle,
    pub(super) resp: RespSettings,
    pub(super) resp_tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    pub(super) grace: Duration,
    pub(super) banner: Banner,
    pub(super) gauges: Arc<Gauges>,
    /// Where the client port's accept loop and handshakes run.
    pub(super) tasks: Workers,
}

/// What `Joined::serve` logs when the node starts serving.
pub(super) struct Banner {
    pub(super) node_id: NodeId,
    pub(super) name: String,
    pub(super) advertised: Advertised,
    pub(super) data_dir: String,
    pub(super) commitlog_sync: SyncMode,
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
        let incoming = accept::incoming(
            client,
            admission,
            self.client_tls,
            (&self.tasks, stop.clone()),
        );
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
pub(super) fn server_builder(streams: usize, ping: Duration) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(u32::try_from(streams).unwrap_or(u32::MAX))
        .http2_max_header_list_size(MAX_HEADER_BYTES)
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS))
        .http2_keepalive_interval(Some(ping))
        .http2_keepalive_timeout(Some(ping))
}

/// What the HTTP port serves.
pub(super) struct HttpParts {
    pub(super) health: Arc<http::Health>,
    pub(super) gauges: Arc<Gauges>,
    pub(super) history: Arc<History>,
    pub(super) console: Arc<Console>,
}

/// Serves `/metrics` (installing the Prometheus recorder when `metrics`),
/// `/health` and the web console on `listener`, and samples the node for
/// the console, as workers.
pub(super) fn start_http(
    listener: TcpListener,
    port: PortLimits,
    metrics: bool,
    parts: HttpParts,
    workers: &Workers,
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
        workers.spawn("metrics upkeep", async move {
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
        workers.spawn("console sampler", history.run_sampler(render, stop.clone()));
    }
    let exporter = metrics.map(|handle| http::Exporter { handle, gauges });
    let console = super::console::routes(console);
    // After the recorder is installed, so that its counter counts.
    let admission = Admission::new("http", port);
    workers.spawn(
        "http API",
        http::serve(
            http::Admitted::new(listener, admission),
            exporter,
            health,
            console,
            stop.clone(),
        ),
    );
}
