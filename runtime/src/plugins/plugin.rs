//! One loaded plugin: its module, grants, config, instances and counters, and
//! how a hook call on it succeeds or fails.

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use serde_json::Value;

use super::discovery::Candidate;
use super::instances::InstancePool;
use super::load_error::LoadError;
use super::manifest::{Manifest, OnError};
use crate::capabilities::{GrantContext, Grants, GuestContext, HostServices, narrow};
use crate::config::PluginEntry;
use crate::counter::Counter;
use crate::telemetry::CallSpanFields;
use crate::wasm::{CallError, Engine, GuestModule, GuestOptions};

/// The hooks a plugin exports. A hook that is not exported is never called
/// and costs nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Hooks {
    /// `on_init`.
    pub on_init: bool,
    /// `on_request`.
    pub on_request: bool,
    /// `on_response`.
    pub on_response: bool,
    /// `handle` (routes under `/_/<base>/*`).
    pub handle: bool,
    /// `on_event`.
    pub on_event: bool,
    /// `on_shutdown`.
    pub on_shutdown: bool,
}

impl Hooks {
    /// The exported hook names.
    pub fn names(&self) -> Vec<&'static str> {
        [
            ("on_init", self.on_init),
            ("on_request", self.on_request),
            ("on_response", self.on_response),
            ("handle", self.handle),
            ("on_event", self.on_event),
            ("on_shutdown", self.on_shutdown),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| n)
        .collect()
    }
}

/// Counters of one plugin.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Calls that failed (trap, timeout, malformed answer).
    pub errors: Counter,
    /// Of those, timeouts.
    pub timeouts: Counter,
    /// Failures skipped under `onError: "open"`.
    pub skipped: Counter,
    /// Calls refused because every instance stayed busy past the queue wait.
    pub busy: Counter,
    /// Calls whose latency was measured: one in `LATENCY_SAMPLE`.
    pub timed_calls: Counter,
    /// Sum of the measured calls' latencies, in nanoseconds.
    pub latency_ns: Counter,
    /// Calls, errors and timeouts per hook (services under "other"), with
    /// the timed calls' durations.
    pub hooks: crate::metrics::HookStats,
    /// Time and memory of the sampled calls (the same one in
    /// `LATENCY_SAMPLE`), on the instance only.
    pub cost: crate::metrics::GuestCostStats,
    /// Requests answered by the plugin's routes (`/_/<base>/…`: `handle`
    /// or its `ui/`), by method and status class.
    pub routes: crate::metrics::RequestCounts,
}

impl PluginStats {
    /// Hook and service calls: the sum over the hooks, so a call counts
    /// once, in its hook's cell.
    pub fn calls(&self) -> u64 {
        self.hooks.calls.get().iter().sum()
    }
}

/// One call in this many is timed for [`PluginStats::latency_ns`] and
/// metered for [`PluginStats::cost`]. A pass-through hook costs a few
/// hundred nanoseconds, and the two clock reads that timing takes would be
/// a tenth of that on every call.
pub(crate) const LATENCY_SAMPLE: u64 = crate::metrics::cost::COST_SAMPLE;

/// Why a hook call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookFailure {
    /// The call failed; the engine's error says how: the plugin trapped or
    /// returned an error, ran past its deadline ([`CallError::Timeout`]),
    /// found every instance busy past the queue wait ([`CallError::Busy`],
    /// not counted as the plugin's failure) or its instances draining for
    /// a reload or shutdown ([`CallError::Draining`]).
    Call(CallError),
    /// It answered something that is not a valid decision.
    Malformed(String),
}

impl HookFailure {
    /// A short word for logs, metrics and span status: `failed`, `timeout`,
    /// `busy`, `draining` or `malformed`.
    pub fn kind(&self) -> &'static str {
        match self {
            HookFailure::Call(CallError::Timeout(_)) => "timeout",
            HookFailure::Call(CallError::Busy(_)) => "busy",
            HookFailure::Call(CallError::Draining) => "draining",
            HookFailure::Call(_) => "failed",
            HookFailure::Malformed(_) => "malformed",
        }
    }
}

impl std::fmt::Display for HookFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookFailure::Call(e) => e.fmt(f),
            HookFailure::Malformed(m) => f.write_str(m),
        }
    }
}

/// A failed hook call, naming the plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin `{plugin}` failed in `{hook}`: {failure}")]
pub struct HookError {
    /// The plugin.
    pub plugin: String,
    /// The hook or service function.
    pub hook: String,
    /// What happened.
    pub failure: HookFailure,
}

/// A loaded plugin.
#[derive(Debug)]
pub struct Plugin {
    /// Its manifest.
    pub manifest: Manifest,
    /// `embedded` or its dir.
    pub source: String,
    /// Its effective config (manifest defaults + `buntime.jsonc`).
    pub config: Value,
    /// What it was granted.
    pub grants: Grants,
    /// The exported hooks.
    pub hooks: Hooks,
    /// Static UI served under `/_/<base>/`.
    pub ui: Option<super::PluginUi>,
    /// Its instances.
    pub instances: InstancePool,
    /// Counters.
    pub stats: PluginStats,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Its routes that answer without a key: the manifest's, unless
    /// `buntime.jsonc` gives its own.
    pub public_routes: crate::config::PublicRoutes,
    /// What the spans of its hook calls are named and carry.
    pub(crate) spans: HookSpans,
    /// Its route table (`upstream_routes`) when it may install one (it
    /// holds the `upstream` grant); matched at its place in the chain.
    pub(crate) routes: Option<Arc<crate::capabilities::RouteSlot>>,
}

/// The name and attributes of the spans of a plugin's hook calls, encoded
/// once as it loads ([`CallSpanFields`]).
#[derive(Debug)]
pub(crate) struct HookSpans {
    pub(crate) on_request: CallSpanFields,
    pub(crate) on_response: CallSpanFields,
    /// Its routes' calls.
    pub(crate) handle: CallSpanFields,
}

impl HookSpans {
    fn of(plugin: &str) -> Self {
        Self {
            on_request: CallSpanFields::hook(plugin, "on_request"),
            on_response: CallSpanFields::hook(plugin, "on_response"),
            handle: CallSpanFields::hook(plugin, "handle"),
        }
    }
}

impl Plugin {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// Compiles, checks and initializes `candidate`. The error names the file
    /// and field (or hook) at fault.
    pub async fn load(
        engine: &Engine,
        candidate: &Candidate,
        entry: Option<&PluginEntry>,
        host: &Arc<HostServices>,
        runtime_file: &str,
    ) -> Result<Arc<Plugin>, LoadError> {
        let m = &candidate.manifest;
        let manifest_path = candidate.manifest_path();
        let wasm_path = candidate.wasm_path();

        let dependencies = m.all_dependencies();
        let declared = match entry.and_then(|e| e.capabilities.as_ref()) {
            Some(op) => narrow(&m.capabilities, op).map_err(|source| LoadError::Narrow {
                runtime_file: runtime_file.to_owned(),
                plugin: m.name.clone(),
                source,
            })?,
            None => m.capabilities.clone(),
        };
        let grants = Grants::parse(
            &declared,
            &GrantContext {
                dependencies: &dependencies,
            },
        )
        .map_err(|source| LoadError::Capabilities {
            manifest: manifest_path.clone(),
            source,
        })?;
        // Spooled uploads go below the first `fs` root: without one they
        // would fail on every request.
        if m.spool_uploads.is_some()
            && grants
                .get::<crate::capabilities::fs::FsGrant>(crate::capabilities::Capability::FS)
                .is_none_or(|g| g.roots.is_empty())
        {
            return Err(LoadError::SpoolWithoutFs {
                manifest: manifest_path,
                runtime_file: runtime_file.to_owned(),
            });
        }

        let mut config = m.config.clone();
        if let Some(e) = entry {
            for (k, v) in &e.config {
                config.insert(k.clone(), v.clone());
            }
        }
        let routes = Arc::new(crate::capabilities::RouteSlot::default());
        let mut options = GuestOptions::new(m.name.as_str())
            .memory_limit(m.limits.memory as usize)
            .timeout(m.limits.timeout)
            .grants(grants.clone())
            .log_requires_grant(true)
            .context(Arc::new(GuestContext {
                name: m.name.clone(),
                dependencies,
                host: host.clone(),
                metrics: host.plugin_metrics.of(&m.name),
                state: host.state.handle(&m.name),
                routes: routes.clone(),
            }));
        for (k, v) in &config {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            options = options.config(k.clone(), text);
        }

        let bytes = candidate.wasm().map_err(|source| LoadError::Read {
            wasm: wasm_path.clone(),
            source,
        })?;
        let engine = engine.clone();
        let module = tokio::task::spawn_blocking(move || engine.load(&bytes, options))
            .await
            .map_err(|_| LoadError::Interrupted {
                wasm: wasm_path.clone(),
            })?
            .map_err(|source| LoadError::Compile {
                wasm: wasm_path.clone(),
                source,
            })?;

        let ui = candidate.ui();
        let hooks = check_module(m, &manifest_path, &wasm_path, &module, ui.is_some())?;

        let mut manifest = m.clone();
        if entry.is_some_and(|e| e.off_core_routes) {
            manifest.core_routes = super::CoreRoutes::None;
        }
        let spans = HookSpans::of(&manifest.name);
        let routes = grants
            .allows(crate::capabilities::Capability::UPSTREAM)
            .then_some(routes);
        let plugin = Arc::new(Plugin {
            manifest,
            source: candidate.source_label(),
            config: Value::Object(config),
            grants,
            hooks,
            ui,
            instances: InstancePool::new(module, m.limits.instances),
            stats: PluginStats::default(),
            loaded_at: SystemTime::now(),
            public_routes: entry
                .and_then(|e| e.public_routes.clone())
                .unwrap_or_else(|| m.public_routes.clone()),
            spans,
            routes,
        });
        if hooks.on_init {
            let input = Bytes::from(plugin.config.to_string());
            if let Err(e) = plugin
                .call("on_init", input, http::Extensions::new())
                .await
                .0
            {
                return Err(match e.failure {
                    HookFailure::Call(CallError::Timeout(_)) => LoadError::InitTimedOut(e),
                    _ => LoadError::InitFailed(e),
                });
            }
        }
        Ok(plugin)
    }

    /// Calls `hook` with `input`; counts the call and classifies failures.
    ///
    /// Inlined so that a hook named by a literal (every caller but the
    /// services) finds its counters' index at compile time.
    #[inline]
    pub fn call<'a>(
        &'a self,
        hook: &'a str,
        input: Bytes,
        extensions: http::Extensions,
    ) -> impl Future<Output = (Result<Bytes, HookError>, http::Extensions)> + 'a {
        self.call_counted(crate::metrics::hook_index(hook), hook, input, extensions)
    }

    async fn call_counted(
        &self,
        index: usize,
        hook: &str,
        input: Bytes,
        extensions: http::Extensions,
    ) -> (Result<Bytes, HookError>, http::Extensions) {
        let by_hook = &self.stats.hooks;
        // One count per call, in its hook's cell; which also picks the
        // calls to time.
        let n = by_hook.calls.add(index, 1);
        let sampled = n.is_multiple_of(LATENCY_SAMPLE);
        let started = sampled.then(Instant::now);
        let cost = sampled.then_some(&self.stats.cost);
        let (result, extensions) = self.instances.call(hook, input, extensions, cost).await;
        if let Some(started) = started {
            let nanos = started.elapsed().as_nanos().min(u64::MAX as u128) as u64;
            self.stats.latency_ns.add(nanos);
            self.stats.timed_calls.add(1);
            by_hook.durations[index].observe_nanos(nanos);
        }
        let result = result.map(|out| out.output).map_err(|e| {
            match e {
                // The hook never ran: neither is the plugin's failure.
                CallError::Busy(_) => {
                    self.stats.busy.add(1);
                }
                CallError::Draining => {}
                _ => {
                    self.stats.errors.add(1);
                    by_hook.errors.add(index, 1);
                    if matches!(e, CallError::Timeout(_)) {
                        self.stats.timeouts.add(1);
                        by_hook.timeouts.add(index, 1);
                    }
                }
            }
            self.failed(hook, HookFailure::Call(e))
        });
        (result, extensions)
    }

    /// A [`HookError`] for this plugin (also used for malformed answers).
    pub fn failed(&self, hook: &str, failure: HookFailure) -> HookError {
        let error = HookError {
            plugin: self.manifest.name.clone(),
            hook: hook.to_owned(),
            failure,
        };
        tracing::warn!(plugin = %self.manifest.name, hook, on_error = ?self.manifest.on_error, "{error}");
        error
    }

    /// Counts a malformed answer and builds its error.
    pub fn malformed(&self, hook: &str, detail: impl std::fmt::Display) -> HookError {
        self.stats.errors.add(1);
        self.stats
            .hooks
            .errors
            .add(crate::metrics::hook_index(hook), 1);
        self.failed(
            hook,
            HookFailure::Malformed(format!("its answer is not a valid {hook} result: {detail}")),
        )
    }

    /// Whether failures skip this plugin rather than fail the request.
    pub fn fails_open(&self) -> bool {
        self.manifest.on_error == OnError::Open
    }
}

/// The checks of a compiled module against its manifest, the same at load
/// and in `buntime plugin inspect`: every listed service exported, a `base`
/// served by `handle` or a `ui/` dir. Returns the hooks it exports.
pub fn check_module(
    m: &Manifest,
    manifest_path: &Path,
    wasm_path: &Path,
    module: &GuestModule,
    has_ui: bool,
) -> Result<Hooks, LoadError> {
    for s in &m.services {
        if !module.has_export(s) {
            return Err(LoadError::MissingService {
                manifest: manifest_path.to_owned(),
                wasm: wasm_path.to_owned(),
                service: s.clone(),
            });
        }
    }
    let hooks = Hooks {
        on_init: module.has_export("on_init"),
        on_request: module.has_export("on_request"),
        on_response: module.has_export("on_response"),
        handle: module.has_export("handle"),
        on_event: module.has_export("on_event"),
        on_shutdown: module.has_export("on_shutdown"),
    };
    if let Some(base) = &m.base
        && !hooks.handle
        && !has_ui
    {
        return Err(LoadError::BaseWithoutRoutes {
            manifest: manifest_path.to_owned(),
            wasm: wasm_path.to_owned(),
            base: base.clone(),
        });
    }
    Ok(hooks)
}
