//! The plugin host: loads the chain, swaps it on reload, routes service calls
//! and delivers events (`host/events.rs`, `host/services.rs`).
//!
//! The current [`Chain`] sits behind a lock that is held only to clone an
//! `Arc` (`host/chain.rs`); a request keeps the chain it started with, so a reload never pulls a
//! plugin out from under a request. The new chain is fully loaded (compiled,
//! `on_init` run) before it replaces the old one; the old plugins are then
//! drained and told `on_shutdown`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::discovery::{Candidate, EmbeddedPlugin, discover};
use super::load_error::{LoadError, NotLoadedState};
use super::order::{Node, sort};
use super::plugin::Plugin;
use crate::capabilities::{HostServices, ServiceRouter};
use crate::config::{ConfigError, RuntimeFile};
use crate::wasm::Engine;

#[cfg(test)]
mod build_tests;
mod chain;
mod events;
mod logs;
mod services;

use chain::InForce;
pub use chain::{Chain, ChainHandle, NotLoaded};

/// How long a reload or shutdown waits for a plugin's in-flight calls.
pub const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// A failure that stops the server (or fails a reload).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// `buntime.jsonc` is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A required plugin did not load.
    #[error("required plugin `{plugin}` cannot load: {reason}")]
    Required {
        /// The plugin.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// A plugin being reloaded on its own failed to load (the old one stays).
    #[error("plugin `{plugin}` failed to reload (the running version stays): {source}")]
    LoadFailed {
        /// The plugin.
        plugin: String,
        /// Why (boxed: a load error names paths and keeps the hook's error).
        source: Box<LoadError>,
    },
    /// No such plugin.
    #[error("no plugin called `{0}` is loaded or installed")]
    Unknown(String),
    /// Disabling would break plugins that depend on it.
    #[error("`{plugin}` cannot be disabled while {} depend on it; disable them first", dependents.join(", "))]
    HasDependents {
        /// The plugin.
        plugin: String,
        /// Its loaded dependents.
        dependents: Vec<String>,
    },
}

/// Where plugins come from and how they are configured.
#[derive(Debug, Clone, Default)]
pub struct PluginSources {
    /// Plugin dirs, searched in order.
    pub dirs: Vec<PathBuf>,
    /// Plugins compiled into the binary.
    pub embedded: Vec<EmbeddedPlugin>,
    /// `buntime.jsonc`, re-read on every reload; `None`: all defaults.
    pub config_file: Option<(PathBuf, bool)>,
    /// Where the `sql` capability keeps its databases; `None`: no databases.
    pub data_dir: Option<PathBuf>,
    /// Most tenants per database; `None`: the default (1000).
    pub max_tenants: Option<usize>,
}

/// Loads, holds and swaps the plugin chain.
pub struct PluginHost {
    engine: Engine,
    services: Arc<HostServices>,
    sources: PluginSources,
    chain: InForce,
    /// Whether the chain in force has a plugin whose `on_request` runs for
    /// the core routes (`coreRoutes`): the one check a core request makes
    /// on a server without one.
    covers_core: AtomicBool,
    disabled: Mutex<BTreeSet<String>>,
    reloading: tokio::sync::Mutex<()>,
    events: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.current().plugins.len())
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// A host with no plugins loaded yet. Its plugins run on `engine`'s
    /// sibling for long-lived guests ([`Engine::for_long_lived_guests`]).
    pub fn new(engine: Engine, services: Arc<HostServices>, sources: PluginSources) -> Arc<Self> {
        let host = Arc::new(Self {
            // Plugins' instances serve request after request: guard pages
            // rather than explicit bounds checks (see the method).
            engine: engine.for_long_lived_guests(),
            services: services.clone(),
            sources,
            chain: InForce::default(),
            covers_core: AtomicBool::new(false),
            disabled: Mutex::default(),
            reloading: tokio::sync::Mutex::new(()),
            events: Mutex::new(None),
        });
        let router: Arc<dyn ServiceRouter> = host.clone();
        services.set_router(Arc::downgrade(&router));
        host
    }

    /// The host services plugins use.
    pub fn services(&self) -> &Arc<HostServices> {
        &self.services
    }

    /// The chain now in force.
    pub fn current(&self) -> Arc<Chain> {
        self.chain.current()
    }

    /// The chain in force, for one request: this thread's handle to it
    /// (see [`ChainHandle`]).
    pub fn for_request(&self) -> Arc<ChainHandle> {
        self.chain.for_request()
    }

    /// Whether a plugin of the chain in force asks to run for the core
    /// routes (`coreRoutes: "headers"`); one relaxed load.
    #[inline]
    pub fn covers_core_routes(&self) -> bool {
        self.covers_core.load(Ordering::Relaxed)
    }

    /// Loads every configured plugin and installs the chain. Fails only for
    /// required plugins and an invalid `buntime.jsonc`; other failures are
    /// logged and reported in [`Chain::not_loaded`].
    pub async fn start(self: &Arc<Self>) -> Result<Arc<Chain>, PluginError> {
        let _guard = self.reloading.lock().await;
        let chain = Arc::new(self.build().await?);
        // Subscribe first, so the `plugin_loaded` events of this very start
        // reach the plugins that asked for them.
        self.spawn_event_delivery();
        self.spawn_log_delivery();
        self.install(chain.clone());
        Ok(chain)
    }

    /// Reloads every plugin: loads a new chain, swaps it in, then drains the
    /// old plugins and runs their `on_shutdown`. On error the old chain stays.
    pub async fn reload(self: &Arc<Self>) -> Result<Arc<Chain>, PluginError> {
        let _guard = self.reloading.lock().await;
        let chain = Arc::new(self.build().await?);
        let old = self.install(chain.clone());
        tokio::spawn(retire_all(old));
        Ok(chain)
    }

    /// Reloads one plugin from its files, keeping its place in the chain.
    pub async fn reload_one(self: &Arc<Self>, name: &str) -> Result<Arc<Chain>, PluginError> {
        let _guard = self.reloading.lock().await;
        let current = self.current();
        let Some(index) = current.plugins.iter().position(|p| p.manifest.name == name) else {
            return Err(PluginError::Unknown(name.to_owned()));
        };
        let file = self.runtime_file()?;
        let (candidates, _) = discover(&self.sources.dirs, &self.sources.embedded);
        let Some(candidate) = candidates.iter().find(|c| c.manifest.name == name) else {
            return Err(PluginError::Unknown(name.to_owned()));
        };
        let plugin =
            self.load_one(candidate, &file)
                .await
                .map_err(|source| PluginError::LoadFailed {
                    plugin: name.to_owned(),
                    source: Box::new(source),
                })?;
        let mut plugins = current.plugins.clone();
        let old = std::mem::replace(&mut plugins[index], plugin);
        let chain = Arc::new(Chain {
            plugins,
            not_loaded: current.not_loaded.clone(),
            problems: current.problems.clone(),
        });
        self.install(chain.clone());
        tokio::spawn(retire(old));
        Ok(chain)
    }

    /// Enables or disables a plugin (kept across reloads), then reloads.
    pub async fn set_enabled(
        self: &Arc<Self>,
        name: &str,
        enabled: bool,
    ) -> Result<Arc<Chain>, PluginError> {
        let current = self.current();
        let known =
            current.get(name).is_some() || current.not_loaded.iter().any(|n| n.name == name);
        if !known {
            return Err(PluginError::Unknown(name.to_owned()));
        }
        if !enabled {
            let dependents: Vec<String> = current
                .plugins
                .iter()
                .filter(|p| p.manifest.dependencies.iter().any(|d| d == name))
                .map(|p| p.manifest.name.clone())
                .collect();
            if !dependents.is_empty() {
                return Err(PluginError::HasDependents {
                    plugin: name.to_owned(),
                    dependents,
                });
            }
        }
        if let Ok(mut d) = self.disabled.lock() {
            if enabled {
                d.remove(name);
            } else {
                d.insert(name.to_owned());
            }
        }
        self.reload().await
    }

    /// Runs `on_shutdown` on every plugin, in reverse load order, after
    /// their in-flight calls finish.
    pub async fn shutdown(&self) {
        if let Some(task) = self.events.lock().ok().and_then(|mut t| t.take()) {
            task.abort();
        }
        let chain = self.install(Arc::default());
        retire_all(chain).await;
    }

    fn install(&self, chain: Arc<Chain>) -> Arc<Chain> {
        let covers = chain.core_route_plugins().next().is_some();
        let old = self.chain.replace(chain.clone());
        // After the swap: a request that sees the flag finds the chain
        // (one that finds no such plugin in it serves the core route alone).
        self.covers_core.store(covers, Ordering::Relaxed);
        self.announce(&old, &chain);
        old
    }

    fn runtime_file(&self) -> Result<RuntimeFile, ConfigError> {
        match &self.sources.config_file {
            Some((path, explicit)) => RuntimeFile::load(path, *explicit),
            None => Ok(RuntimeFile::default()),
        }
    }

    fn runtime_file_label(file: &RuntimeFile) -> String {
        file.path
            .as_ref()
            .map_or("buntime.jsonc".into(), |p| p.display().to_string())
    }

    async fn load_one(
        &self,
        candidate: &Candidate,
        file: &RuntimeFile,
    ) -> Result<Arc<Plugin>, LoadError> {
        Plugin::load(
            &self.engine,
            candidate,
            file.entry(&candidate.manifest.name),
            &self.services,
            &Self::runtime_file_label(file),
        )
        .await
    }

    /// Discovers, selects, orders and loads.
    async fn build(&self) -> Result<Chain, PluginError> {
        let file = self.runtime_file()?;
        let (candidates, problems) = discover(&self.sources.dirs, &self.sources.embedded);
        let disabled = self.disabled.lock().map(|d| d.clone()).unwrap_or_default();
        let mut chain = Chain {
            problems: problems.clone(),
            ..Chain::default()
        };
        let required = |name: &str| file.is_required(name);
        let fail = |chain: &mut Chain, name: &str, state: NotLoadedState, reason: String| {
            if required(name) && state != NotLoadedState::Disabled {
                return Err(PluginError::Required {
                    plugin: name.to_owned(),
                    reason,
                });
            }
            tracing::warn!(plugin = name, state = state.as_str(), "{reason}");
            chain.not_loaded.push(NotLoaded {
                name: name.to_owned(),
                state,
                reason,
            });
            Ok(())
        };
        for p in &problems {
            tracing::warn!("plugin problem: {}", p.message);
            if let Some(name) = &p.plugin
                && required(name)
            {
                return Err(PluginError::Required {
                    plugin: name.clone(),
                    reason: p.message.clone(),
                });
            }
        }

        // Selection: the configured list, or every plugin enabled in its
        // manifest. Core (embedded) plugins are on unless turned off, list
        // or no list, so naming one third-party plugin keeps keyval running.
        let mut selected: Vec<&Candidate> = Vec::new();
        match &file.plugins {
            Some(entries) => {
                for c in &candidates {
                    let core = self
                        .sources
                        .embedded
                        .iter()
                        .any(|e| embedded_name(e).as_deref() == Some(c.manifest.name.as_str()));
                    if !core || entries.iter().any(|e| e.name == c.manifest.name) {
                        continue;
                    }
                    if c.manifest.enabled && !disabled.contains(&c.manifest.name) {
                        selected.push(c);
                    } else {
                        chain.not_loaded.push(disabled_entry(c));
                    }
                }
                for e in entries {
                    if !e.enabled || disabled.contains(&e.name) {
                        fail(
                            &mut chain,
                            &e.name,
                            NotLoadedState::Disabled,
                            "disabled in the configuration".into(),
                        )?;
                        continue;
                    }
                    match candidates.iter().find(|c| c.manifest.name == e.name) {
                        Some(c) => selected.push(c),
                        None => fail(
                            &mut chain,
                            &e.name,
                            NotLoadedState::Failed,
                            format!(
                                "listed in {} but not installed (searched the embedded plugins and {:?})",
                                Self::runtime_file_label(&file),
                                self.sources.dirs
                            ),
                        )?,
                    }
                }
            }
            None => {
                for name in &file.required {
                    if !candidates.iter().any(|c| &c.manifest.name == name) {
                        fail(
                            &mut chain,
                            name,
                            NotLoadedState::Failed,
                            format!(
                                "required in {} but not installed (searched the embedded plugins and {:?})",
                                Self::runtime_file_label(&file),
                                self.sources.dirs
                            ),
                        )?;
                    }
                }
                for c in &candidates {
                    if !c.manifest.enabled || disabled.contains(&c.manifest.name) {
                        chain.not_loaded.push(disabled_entry(c));
                    } else {
                        selected.push(c);
                    }
                }
            }
        }

        // One plugin per base.
        let mut bases: Vec<(&str, &str)> = Vec::new();
        let mut unique: Vec<&Candidate> = Vec::new();
        for c in selected {
            if let Some(base) = c.manifest.base.as_deref()
                && let Some((_, other)) = bases.iter().find(|(b, _)| *b == base)
            {
                let reason = format!(
                    "{}: `base`: `{base}` is already used by `{other}`; give one of them another base",
                    c.manifest_path().display()
                );
                fail(&mut chain, &c.manifest.name, NotLoadedState::Failed, reason)?;
                continue;
            }
            if let Some(base) = c.manifest.base.as_deref() {
                bases.push((base, &c.manifest.name));
            }
            unique.push(c);
        }

        let nodes: Vec<Node> = unique
            .iter()
            .map(|c| Node {
                name: c.manifest.name.clone(),
                dependencies: c.manifest.dependencies.clone(),
                optional_dependencies: c.manifest.optional_dependencies.clone(),
            })
            .collect();
        let order = sort(&nodes);
        for (name, reason) in &order.left_out {
            fail(&mut chain, name, NotLoadedState::Skipped, reason.clone())?;
        }
        for i in order.order {
            let c = unique[i];
            let name = &c.manifest.name;
            if let Some(dep) = c
                .manifest
                .dependencies
                .iter()
                .find(|d| chain.get(d).is_none())
            {
                fail(
                    &mut chain,
                    name,
                    NotLoadedState::Skipped,
                    format!("requires `{dep}`, which failed to load"),
                )?;
                continue;
            }
            match self.load_one(c, &file).await {
                Ok(p) => {
                    tracing::info!(plugin = %name, version = %c.manifest.version, hooks = ?p.hooks.names(), "plugin loaded");
                    chain.plugins.push(p);
                }
                Err(e) => fail(&mut chain, name, NotLoadedState::Failed, e.to_string())?,
            }
        }
        Ok(chain)
    }
}

/// Waits until nothing but the caller holds `arc` (requests keep the chain
/// they started with), bounded by [`DRAIN_GRACE`].
async fn unused<T>(arc: &Arc<T>) {
    let deadline = tokio::time::Instant::now() + DRAIN_GRACE;
    while Arc::strong_count(arc) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Shuts down every plugin of `chain`, in reverse load order, once no
/// request uses the chain any more.
async fn retire_all(chain: Arc<Chain>) {
    unused(&chain).await;
    let plugins: Vec<Arc<Plugin>> = chain.plugins.iter().rev().cloned().collect();
    drop(chain);
    for p in plugins {
        retire(p).await;
    }
}

/// Waits until no request uses `plugin`, then runs its `on_shutdown`.
async fn retire(plugin: Arc<Plugin>) {
    unused(&plugin).await;
    let last = plugin.instances.drain(DRAIN_GRACE).await;
    if plugin.hooks.on_shutdown {
        let instance = match last {
            Some(i) => Some(i),
            None => plugin.instances.module().instantiate().await.ok(),
        };
        if let Some(mut i) = instance
            && let Err(e) = i.call("on_shutdown", Bytes::new()).await
        {
            tracing::warn!(plugin = %plugin.manifest.name, error = %e, "on_shutdown failed");
        }
    }
    tracing::debug!(plugin = %plugin.manifest.name, "plugin retired");
}

/// The `name` in an embedded plugin's manifest.
fn embedded_name(e: &EmbeddedPlugin) -> Option<String> {
    let manifest: serde_json::Value = json5::from_str(&e.manifest).ok()?;
    manifest.get("name")?.as_str().map(str::to_owned)
}

/// The `notLoaded` entry of a discovered plugin that is switched off (in its
/// manifest, or through the API).
fn disabled_entry(c: &Candidate) -> NotLoaded {
    NotLoaded {
        name: c.manifest.name.clone(),
        state: NotLoadedState::Disabled,
        reason: if c.manifest.enabled {
            "disabled through the API".into()
        } else {
            format!("`enabled: false` in {}", c.manifest_path().display())
        },
    }
}
