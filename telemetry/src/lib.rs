//! The observability endpoint every Yun daemon serves: `/metrics` (Prometheus text exposition
//! from a prometheus-client registry) and `/healthz` (200 when the daemon's health probe says
//! so, 503 otherwise, with the reason as body).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;
use tokio::net::TcpListener;

#[derive(Debug, Error)]
pub enum TelemetryError {
    #[error("cannot listen on {addr} for /metrics: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Answers `/healthz`: `Ok(())` is healthy, `Err(reason)` is not.
pub type HealthProbe = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    health: HealthProbe,
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], body),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match (state.health)() {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

/// Binds `addr` now (so a port clash fails start-up) and serves in a background task.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: HealthProbe,
) -> Result<SocketAddr, TelemetryError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(AppState { registry, health });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}

/// Logs to stderr; `RUST_LOG` overrides the default level `info`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
