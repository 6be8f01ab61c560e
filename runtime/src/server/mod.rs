//! The HTTP server: the service and its routes, shared state, graceful shutdown.
//!
//! ```text
//! request → request id → body/header limits
//!   ├─ core routes (`routes.rs`: /_/api/*, /_/metrics, /_/stats, /_/sse,
//!   │   /.well-known/buntime), each behind its guard (`guard.rs`); plugins
//!   │   with `coreRoutes` add CORS headers only (`core_headers.rs`)
//!   └─ plugin chain (on_request … on_response)
//!        ├─ /_/<base>/*            a plugin's routes and ui/ (guarded)
//!        └─ /<app>[@range]/*       static files or the worker pool
//! ```

mod api;
mod app_check;
mod apps;
mod body;
mod client;
mod connection;
mod core_headers;
mod cost;
pub(crate) mod decision;
mod error;
mod exposition;
mod extended_connect;
mod forwarding;
mod guard;
pub(crate) mod guest_http;
mod head_json;
mod hook_call;
mod keys_api;
mod listener;
mod metrics_view;
pub(crate) mod pipeline;
mod plugin_routes;
mod plugin_stream;
mod plugins_api;
mod request_id;
mod routes;
mod service;
mod span_body;
mod static_cache;
pub(crate) mod static_files;
mod static_send;
mod upload_spool;
pub(crate) mod upstream;
mod upstream_client;
mod upstream_pool;
mod upstream_routes;
pub(crate) mod upstream_target;
mod upstream_ws;
mod upstream_ws_close;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use apps::{AppKind, AppSettingsCache, detect_kind, load_settings};
pub use error::{ApiError, ErrorDetail, ErrorKind, RequestId};
pub use listener::ConnectionLimits;
pub use pipeline::{IDENTITY_HEADERS, strip_identity};
pub use service::{BuntimeService, ClientAddr};
pub use static_cache::StaticCache;

use crate::capabilities::HostServices;
use crate::plugins::{PluginError, PluginHost, PluginSources};
use crate::pool::Pools;
use crate::routing::Catalog;
use crate::wasm::{Engine, HostFunction};

/// Shared state of every handler: one `Arc`, so handing it to a request is
/// one reference-count increment however many parts it has.
#[derive(Debug, Clone)]
pub struct AppState {
    shared: Arc<Shared>,
    /// How much of an internal failure clients are told (from
    /// `RUNTIME_ENV`; [`ErrorDetail::Full`] unless set).
    pub error_detail: ErrorDetail,
    /// OpenTelemetry traces (off unless an OTLP endpoint is configured).
    pub telemetry: crate::telemetry::Telemetry,
    /// Whether responses carry the per-request cost breakdown
    /// (`RUNTIME_COST_HEADER`; see `cost.rs`).
    pub cost_header: bool,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Shared {
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
    /// The plugin chain.
    pub plugins: Arc<PluginHost>,
    /// Recently served small static files.
    pub static_cache: Arc<StaticCache>,
    /// Which guests have had a framing header dropped (logged once each).
    pub(crate) dropped_headers: guest_http::DroppedHeaders,
    /// Who may call the core API and the plugin routes.
    pub access: crate::access::Access,
    /// Requests and connections, for `/_/metrics`.
    pub http: crate::metrics::HttpStats,
    /// Kept-alive connections to the upstreams plugins proxy to.
    pub(crate) upstreams: Arc<upstream_pool::Pool>,
    /// The upstream origins plugins proxied to, parsed once each.
    pub(crate) upstream_origins: Arc<upstream_target::Origins>,
    /// The WebSockets relayed to upstreams, closed at shutdown.
    pub(crate) relays: upstream_ws::Relays,
}

impl AppState {
    /// Builds the state of a server: the app catalog over `worker_dirs`, a
    /// pool of `pool_size` app versions, and the plugin chain loaded from
    /// `plugins`. Fails when a required plugin cannot load or
    /// `buntime.jsonc` is invalid.
    pub async fn build(
        engine: Engine,
        worker_dirs: Vec<std::path::PathBuf>,
        pool_size: usize,
        plugins: PluginSources,
    ) -> Result<Self, PluginError> {
        Self::build_with_access(engine, worker_dirs, pool_size, plugins, Default::default()).await
    }

    /// [`AppState::build`] under the operator's access settings (master
    /// key, trusted proxies, public metrics). The API keys live under the
    /// data dir (in memory without one).
    pub async fn build_with_access(
        engine: Engine,
        worker_dirs: Vec<std::path::PathBuf>,
        pool_size: usize,
        plugins: PluginSources,
        policy: crate::access::AccessPolicy,
    ) -> Result<Self, PluginError> {
        let keys = crate::access::KeyStore::open(plugins.data_dir.as_deref()).map_err(|e| {
            crate::config::ConfigError::new("RUNTIME_DATA_DIR".as_ref(), "", e.to_string())
        })?;
        let access = crate::access::Access::new(policy, keys);
        let catalog = Arc::new(Catalog::new(worker_dirs));
        let pools = Pools::new(engine.clone(), pool_size);
        let runtime_file = match &plugins.config_file {
            Some((path, explicit)) => crate::config::RuntimeFile::load(path, *explicit)?,
            None => Default::default(),
        };
        let named = runtime_file.databases;
        let sql = plugins.data_dir.as_deref().map(|dir| {
            crate::capabilities::SqlDatabases::with_limits(
                dir,
                named.into_iter().collect(),
                plugins
                    .max_tenants
                    .unwrap_or(crate::capabilities::DEFAULT_MAX_TENANTS),
            )
        });
        let services = HostServices::with_sql(
            Some(pools.clone() as Arc<dyn crate::capabilities::PoolView>),
            Some(catalog.clone()),
            sql,
        );
        pools.set_events(services.events.clone());
        services.set_app_check(Arc::new(app_check::ServerAppCheck {
            engine: engine.clone(),
            ceiling: runtime_file.apps.clone(),
        }));
        let host = PluginHost::new(engine, services.clone(), plugins);
        host.start().await?;
        let shared = Arc::new(Shared {
            catalog,
            pools,
            started: Instant::now(),
            shutting_down: Arc::default(),
            app_settings: Arc::new(AppSettingsCache::with_ceiling(runtime_file.apps)),
            plugins: host,
            static_cache: Arc::default(),
            dropped_headers: Default::default(),
            access,
            http: Default::default(),
            upstreams: Arc::default(),
            upstream_origins: Arc::default(),
            relays: Default::default(),
        });
        services.set_metrics_view(Arc::new(metrics_view::ServerMetrics(Arc::downgrade(
            &shared,
        ))));
        Ok(Self {
            shared,
            error_detail: ErrorDetail::default(),
            telemetry: Default::default(),
            cost_header: false,
        })
    }

    /// Sets how much of an internal failure clients are told
    /// ([`ErrorDetail::for_environment`] of `RUNTIME_ENV`).
    pub fn with_error_detail(mut self, detail: ErrorDetail) -> Self {
        self.error_detail = detail;
        self
    }

    /// Traces requests with `telemetry` ([`crate::telemetry::Telemetry::start`]).
    pub fn with_telemetry(mut self, telemetry: crate::telemetry::Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Adds the per-request cost breakdown (`Server-Timing`: each guest
    /// call's time and memory) to every response of the chain and the apps;
    /// for debugging, as it shows clients the plugins and their timings.
    pub fn with_cost_header(mut self, on: bool) -> Self {
        self.cost_header = on;
        self
    }
}

/// How often a tokio worker that always has tasks to run polls for I/O: every
/// this many tasks (tokio's default is 61). A guest that computes for long
/// runs on a fiber and yields once per epoch tick (5 ms); with a few of them
/// spinning, 61 tasks between polls meant ~300 ms before a worker noticed a
/// new connection or request, and 31 bounds that at ~155 ms. Each poll is a
/// system call (`epoll_wait`) on a worker that has work: at 7, ordinary load
/// paid for it on about one request in five, measurably (`benches/ab.sh`:
/// a few percent of the server's CPU per request, more through plugins).
const EVENT_INTERVAL: u32 = 31;

/// The tokio runtime the `buntime` binary serves on: multi-threaded, one
/// worker per core, I/O polled often enough that guests computing on
/// fibers cannot starve it (see `EVENT_INTERVAL`).
///
/// ```
/// let runtime = buntime::server::runtime_builder().build().unwrap();
/// assert!(runtime.metrics().num_workers() >= 1);
/// ```
pub fn runtime_builder() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.event_interval(EVENT_INTERVAL).enable_all();
    builder
}

/// Every host function a server's engine needs: the HTTP body and client
/// functions of apps and plugins, and each capability's functions.
pub fn host_functions() -> Vec<HostFunction> {
    let mut all = crate::wasm::abi::body_functions();
    all.extend(crate::capabilities::host_functions());
    all
}

/// The server's service: the core routes below, everything else straight
/// into the plugin chain ([`BuntimeService`]).
pub fn service(state: AppState) -> BuntimeService {
    BuntimeService::new(routes::core_router(state.clone()), state)
}

/// Serves on `listener` until `shutdown` resolves, then drains: stops
/// accepting, lets in-flight requests finish (bounded by
/// [`ConnectionLimits::shutdown_timeout`], after which their connections are
/// cut), closes relayed WebSockets with a close frame to both ends (bounded
/// the same way), and retires every instance with `on_terminate` (bounded the same
/// way), and exports the spans still queued (bounded the same way).
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
    let plugins = state.plugins.clone();
    let flag = state.shutting_down.clone();
    let telemetry = state.telemetry.clone();
    let reclaimer = pools.spawn_reclaimer(Duration::from_secs(1));
    let closing = state.clone();
    let service = service(state);
    let relays = closing.clone();
    let shutdown = async move {
        shutdown.await;
        flag.store(true, Ordering::Relaxed);
        relays.relays.close();
        tracing::info!("shutting down: finishing in-flight requests");
    };
    listener::run(listener, service, limits, shutdown).await;
    // Relayed WebSockets were told to close when the shutdown began.
    let _ = tokio::time::timeout(limits.shutdown_timeout, closing.relays.closed()).await;
    reclaimer.abort();
    let retire = async {
        pools.shutdown().await;
        plugins.shutdown().await;
    };
    if tokio::time::timeout(limits.shutdown_timeout, retire)
        .await
        .is_err()
    {
        tracing::warn!(
            "instances still retiring after {:?} (RUNTIME_SHUTDOWN_TIMEOUT); stopping without them",
            limits.shutdown_timeout
        );
    }
    telemetry.shutdown(limits.shutdown_timeout).await;
    tracing::info!("stopped");
    Ok(())
}
