//! The HTTP server: axum router, shared state, graceful shutdown.
//!
//! ```text
//! request → request id → body/header limits
//!   ├─ /_/api/health{,/live,/ready}, /_/api/apps    core API
//!   ├─ /_/metrics, /_/stats, /_/sse, /.well-known/buntime  internal routes
//!   └─ /<app>[@range]/*                            static files or the worker pool
//! ```

mod api;
mod apps;
mod error;
mod listener;
mod request_id;
mod static_files;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;

pub use apps::{AppKind, AppSettingsCache, detect_kind};
pub use error::{ApiError, RequestId};
pub use listener::ConnectionLimits;

use crate::pool::Pools;
use crate::routing::Catalog;

/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Shared state of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The installed apps.
    pub catalog: Arc<Catalog>,
    /// The warm app versions.
    pub pools: Arc<Pools>,
    /// Process start.
    pub started: Instant,
    /// Set when a shutdown has begun (readiness turns false).
    pub shutting_down: Arc<AtomicBool>,
    /// Parsed app settings, briefly cached.
    pub app_settings: Arc<AppSettingsCache>,
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/_/api/health", get(api::health))
        .route("/_/api/health/live", get(api::live))
        .route("/_/api/health/ready", get(api::ready))
        .route("/_/api/apps", get(api::apps))
        .route("/_/metrics", get(api::metrics))
        .route("/_/stats", get(api::stats))
        .route("/_/sse", get(api::sse))
        .route("/.well-known/buntime", get(api::well_known))
        .fallback(apps::handle)
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves, then drains: stops
/// accepting, lets in-flight requests finish (bounded by [`SHUTDOWN_GRACE`]),
/// and retires every instance with `on_terminate`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, shutdown, ConnectionLimits::default()).await
}

/// [`serve`] with explicit per-connection limits.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    let pools = state.pools.clone();
    let flag = state.shutting_down.clone();
    let reclaimer = pools.spawn_reclaimer(Duration::from_secs(1));
    let router = router(state);
    let shutdown = async move {
        shutdown.await;
        flag.store(true, Ordering::Relaxed);
        tracing::info!("shutting down: finishing in-flight requests");
    };
    listener::run(listener, router, limits, shutdown, SHUTDOWN_GRACE).await;
    reclaimer.abort();
    pools.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
