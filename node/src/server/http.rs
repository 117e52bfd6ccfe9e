//! The HTTP endpoints: `/metrics` (Prometheus text format), `/health`
//! (200 once the node serves clients; 503 before, and while its disk
//! refuses writes, with the reason), and the web console (`/`, see
//! `server::console`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::gauges::Gauges;
use crate::rpc::accept::Admission;
use crate::rpc::net::Connection;
use crate::storage::DiskHealth;

/// Whether the node serves clients yet, and can write.
#[derive(Debug, Default)]
pub struct Health {
    serving: AtomicBool,
    disk: Option<Arc<DiskHealth>>,
}

impl Health {
    /// Health that also reports `disk`.
    pub fn with_disk(disk: Option<Arc<DiskHealth>>) -> Self {
        Self {
            serving: AtomicBool::new(false),
            disk,
        }
    }

    /// What `/health` answers.
    fn answer(&self) -> (StatusCode, String) {
        if !self.is_serving() {
            return (StatusCode::SERVICE_UNAVAILABLE, "starting\n".into());
        }
        match self.disk.as_ref().and_then(|d| d.problem()) {
            Some(cause) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("unable to write: {cause}\n"),
            ),
            None => (StatusCode::OK, "ok\n".into()),
        }
    }

    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
    }

    fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }
}

/// What `/metrics` renders: the recorder, and the gauges to refresh first.
#[derive(Clone)]
pub struct Exporter {
    pub handle: crate::metrics::MetricsHandle,
    pub gauges: Arc<Gauges>,
}

/// The HTTP port's listener: accepted connections admitted under the
/// port's cap and silence limit (`rpc::accept`); those over the cap are
/// closed at once.
pub struct Admitted {
    listener: TcpListener,
    admission: Admission,
}

impl Admitted {
    pub fn new(listener: TcpListener, admission: Admission) -> Self {
        Self {
            listener,
            admission,
        }
    }
}

impl axum::serve::Listener for Admitted {
    type Io = Connection;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Connection, std::net::SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    if let Some(connection) = self.admission.admit(Connection::tcp(stream)) {
                        return (connection, addr);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot accept an HTTP connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

/// Serves the endpoints until `stop`.
pub async fn serve(
    listener: Admitted,
    metrics: Option<Exporter>,
    health: Arc<Health>,
    console: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let router = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    match metrics {
                        Some(exporter) => {
                            let handle = exporter.handle;
                            let rendered = exporter
                                .gauges
                                .off_runtime(move |gauges| {
                                    gauges.refresh();
                                    handle.render()
                                })
                                .await;
                            match rendered {
                                Some(text) => (StatusCode::OK, text),
                                None => (
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    "rendering metrics failed\n".to_owned(),
                                ),
                            }
                        }
                        None => (
                            StatusCode::NOT_FOUND,
                            "metrics recorder not installed\n".to_owned(),
                        ),
                    }
                }
            }),
        )
        .route(
            "/health",
            get(move || {
                let health = health.clone();
                async move { health.answer() }
            }),
        )
        .merge(console);
    axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}
