//! The HTTP endpoints: `/metrics` (Prometheus text format), `/health`
//! (200 once the node serves clients; 503 before, and while its disk
//! refuses writes, with the reason), and the web console (`/`, see
//! `server::console`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::gauges::Gauges;
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
    pub handle: PrometheusHandle,
    pub gauges: Arc<Gauges>,
}

/// Serves the endpoints until `stop`.
pub async fn serve(
    listener: TcpListener,
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
                            // Reads RocksDB properties and /proc: quick, but
                            // not for a runtime thread.
                            let rendered = tokio::task::spawn_blocking(move || {
                                exporter.gauges.refresh();
                                exporter.handle.render()
                            })
                            .await;
                            match rendered {
                                Ok(text) => (StatusCode::OK, text),
                                Err(error) => (
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    format!("rendering metrics failed: {error}\n"),
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
