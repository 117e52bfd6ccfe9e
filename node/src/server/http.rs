//! The HTTP endpoints: `/metrics` (Prometheus text format) and `/health`
//! (200 once the node serves clients, 503 before).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Whether the node serves clients yet.
#[derive(Debug, Default)]
pub struct Health {
    serving: AtomicBool,
}

impl Health {
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
    }

    fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }
}

/// Serves the endpoints until `stop`.
pub async fn serve(
    listener: TcpListener,
    metrics: Option<PrometheusHandle>,
    health: Arc<Health>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let router = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    match metrics {
                        Some(handle) => (StatusCode::OK, handle.render()),
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
                async move {
                    if health.is_serving() {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
                    }
                }
            }),
        );
    axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}
