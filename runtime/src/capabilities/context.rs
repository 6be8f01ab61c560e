//! What capability host functions reach: the host's shared services and the
//! calling guest's identity.
//!
//! The engine links every host function once, before any plugin exists, so a
//! function cannot capture the objects it works on. Instead each plugin's
//! [`GuestOptions`](crate::wasm::GuestOptions) carries a [`GuestContext`] that
//! lands in every store of that plugin; a host function reads it from the
//! store's state. No globals.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;

use super::events::EventBus;
use super::state::StateStore;
use crate::routing::Catalog;
use crate::wasm::{HostError, HostState};

/// Routes a `services` call to the plugin that exports the function.
pub trait ServiceRouter: Send + Sync {
    /// Calls `function` of plugin `target` with `input` on behalf of `caller`.
    fn call(
        &self,
        caller: &str,
        target: &str,
        function: &str,
        input: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, HostError>> + Send>>;
}

/// Validates an app version dir as the server would load it (the `fs`
/// capability's `fs_check_app`); the server installs one.
pub trait AppCheck: Send + Sync {
    /// Checks the app `name` (version `version`, `None`: unversioned) in
    /// `dir`: what kind it is (`{"kind", "entry"}`), or what is wrong.
    fn check(
        &self,
        dir: &std::path::Path,
        name: &str,
        version: Option<&str>,
    ) -> Result<serde_json::Value, String>;
}

/// What the `pool` capability reads of the worker pool. The pool
/// implements it, so the capabilities do not depend on the pool (which
/// depends on them for grants and events).
pub trait PoolView: Send + Sync {
    /// `{"apps", "capacity", "evictions", "workers": [{"app", "active",
    /// "idle", "requests", "errors"}]}` (`pool_stats`, docs/capabilities.md).
    fn stats(&self) -> serde_json::Value;
}

/// What the `metrics` capability reads of the server's figures: the
/// server implements it, so the capabilities do not depend on the server.
pub trait MetricsView: Send + Sync {
    /// The figures as JSON (`metrics_snapshot`, docs/capabilities.md).
    fn snapshot(&self) -> serde_json::Value;
}

/// The host-side services shared by every plugin.
pub struct HostServices {
    /// Per-plugin key-value namespaces (`state`).
    pub state: StateStore,
    /// The event bus (`events`, lifecycle events).
    pub events: EventBus,
    /// The worker pool (`pool`), when serving.
    pub pools: Option<Arc<dyn PoolView>>,
    /// The installed apps (`pool`), when serving.
    pub catalog: Option<Arc<Catalog>>,
    /// The databases (`sql`), when configured.
    pub sql: Option<Arc<super::SqlDatabases>>,
    /// Fetched key sets (`crypto`).
    pub crypto: super::JwksCache,
    /// Metrics the plugins registered (`metrics`), by plugin.
    pub plugin_metrics: crate::metrics::plugin::PluginMetricsStore,
    router: OnceLock<Weak<dyn ServiceRouter>>,
    app_check: OnceLock<Arc<dyn AppCheck>>,
    metrics_view: OnceLock<Arc<dyn MetricsView>>,
}

impl std::fmt::Debug for HostServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostServices").finish_non_exhaustive()
    }
}

impl HostServices {
    /// Services over `pools` and `catalog` (either may be absent in tools and tests).
    pub fn new(pools: Option<Arc<dyn PoolView>>, catalog: Option<Arc<Catalog>>) -> Arc<Self> {
        Self::with_sql(pools, catalog, None)
    }

    /// [`HostServices::new`] with databases for the `sql` capability.
    pub fn with_sql(
        pools: Option<Arc<dyn PoolView>>,
        catalog: Option<Arc<Catalog>>,
        sql: Option<Arc<super::SqlDatabases>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: StateStore::default(),
            events: EventBus::default(),
            pools,
            catalog,
            sql,
            crypto: super::JwksCache::default(),
            plugin_metrics: Default::default(),
            router: OnceLock::new(),
            app_check: OnceLock::new(),
            metrics_view: OnceLock::new(),
        })
    }

    /// Installs the service router (the plugin host). Set once.
    pub fn set_router(&self, router: Weak<dyn ServiceRouter>) {
        let _ = self.router.set(router);
    }

    /// Installs the app validator (`fs_check_app`). Set once.
    pub fn set_app_check(&self, check: Arc<dyn AppCheck>) {
        let _ = self.app_check.set(check);
    }

    /// The app validator, when the server installed one.
    pub fn app_check(&self) -> Option<Arc<dyn AppCheck>> {
        self.app_check.get().cloned()
    }

    /// Installs the server's figures (`metrics`). Set once.
    pub fn set_metrics_view(&self, view: Arc<dyn MetricsView>) {
        let _ = self.metrics_view.set(view);
    }

    /// The server's figures, when a server installed them.
    pub fn metrics_view(&self) -> Option<Arc<dyn MetricsView>> {
        self.metrics_view.get().cloned()
    }

    /// The service router, while it lives.
    pub fn router(&self) -> Option<Arc<dyn ServiceRouter>> {
        self.router.get()?.upgrade()
    }
}

/// The calling guest's identity and the host services it may use.
#[derive(Debug, Clone)]
pub struct GuestContext {
    /// The plugin's name (its `state` namespace and its identity in events and services).
    pub name: String,
    /// Its required and optional dependencies.
    pub dependencies: Vec<String>,
    /// The shared services.
    pub host: Arc<HostServices>,
    /// Its registered metrics (`metrics`): held here so an update finds
    /// them without a lookup.
    pub metrics: Arc<crate::metrics::plugin::PluginMetrics>,
    /// Its `state` namespace, found once (`StateStore::handle`).
    pub state: super::state::NamespaceHandle,
    /// Its route table (`upstream_routes`), read by its place in the chain.
    pub routes: Arc<super::RouteSlot>,
}

impl GuestContext {
    /// The context of the guest whose store `state` is: what a capability
    /// host function works on. An error for a guest loaded without one (an
    /// app, or a module loaded by a tool).
    pub(crate) fn of(state: &HostState) -> Result<Arc<GuestContext>, HostError> {
        state
            .context::<GuestContext>()
            .ok_or_else(super::state::no_context)
    }

    /// [`Self::of`], borrowed from the store's state.
    pub(crate) fn of_ref(state: &HostState) -> Result<&GuestContext, HostError> {
        state
            .context_ref::<GuestContext>()
            .ok_or_else(super::state::no_context)
    }
}
