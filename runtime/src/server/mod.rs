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
mod request_id;
mod static_files;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;

pub use apps::{AppKind, detect_kind};
pub use error::{ApiError, RequestId};

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
    let pools = state.pools.clone();
    let flag = state.shutting_down.clone();
    let reclaimer = pools.spawn_reclaimer(Duration::from_secs(1));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let graceful = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        flag.store(true, Ordering::Relaxed);
        let _ = tx.send(());
    });
    let server = tokio::spawn(async move { graceful.await });
    let _ = rx.await;
    tracing::info!("shutting down: finishing in-flight requests");
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(result)) => result?,
        Ok(Err(e)) => tracing::error!(error = %e, "the server task failed"),
        Err(_) => {
            tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}; closing")
        }
    }
    reclaimer.abort();
    pools.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
