//! Plugins: sandboxed WASM modules that intercept requests and responses.
//!
//! A plugin is a directory with `manifest.jsonc` and `plugin.wasm` (and
//! optionally `ui/`), or the same compiled into the binary. The host
//! discovers them ([`discovery`]), selects them by `buntime.jsonc`, orders
//! them by dependencies ([`order`]), loads each ([`Plugin::load`]: compile,
//! check what the manifest promises, grant capabilities, run `on_init`) and
//! installs the result as a [`Chain`] that the server runs around every
//! request (see `server::pipeline`). [`PluginHost`] swaps chains on reload and
//! routes `services` calls and events between plugins.
//!
//! ```no_run
//! use buntime::capabilities::HostServices;
//! use buntime::plugins::{PluginHost, PluginSources};
//! use buntime::wasm::{Engine, EngineConfig};
//! # async fn demo() -> anyhow::Result<()> {
//! let engine = Engine::new(EngineConfig::default())?;
//! let sources = PluginSources { dirs: vec!["./plugins".into()], ..Default::default() };
//! let host = PluginHost::new(engine, HostServices::new(None, None), sources);
//! let chain = host.start().await?;
//! for p in &chain.plugins {
//!     println!("{} {}", p.manifest.name, p.manifest.version);
//! }
//! # Ok(()) }
//! ```

pub mod discovery;
mod host;
mod instances;
mod load_error;
mod manifest;
pub mod order;
mod plugin;
mod spool;

pub use discovery::{
    Candidate, EmbeddedFiles, EmbeddedPlugin, Origin, PLUGIN_WASM_FILE, PluginUi, Problem,
};
pub use host::{
    Chain, ChainHandle, DRAIN_GRACE, NotLoaded, PluginError, PluginHost, PluginSources,
};
pub use instances::InstancePool;
pub use load_error::{LoadError, NotLoadedState};
pub use manifest::{
    CoreRoutes, Limits, MANIFEST_FILE, Manifest, OnError, RESERVED_BASES, valid_plugin_name,
};
pub use plugin::{HookError, HookFailure, Hooks, Plugin, PluginStats, check_module};
pub use spool::{DEFAULT_SPOOL_BYTES, MAX_SPOOL_BYTES, SpoolUploads};

/// `(manifest.jsonc, plugin.wasm, ui/ files)` of each core plugin, built
/// from `plugins-wasm/` by `build.rs`.
const CORE_PLUGINS: &[(&str, &[u8], EmbeddedFiles)] =
    include!(concat!(env!("OUT_DIR"), "/core_plugins.rs"));

/// The core plugins compiled into this binary (`@buntime/plugin-database`,
/// `@buntime/plugin-keyval`, `@buntime/plugin-vhosts`,
/// `@buntime/plugin-gateway`, `@buntime/plugin-deployments`,
/// `@buntime/plugin-authn`, `@buntime/plugin-authz`, `@buntime/plugin-proxy`,
/// `@buntime/plugin-metrics`). They load unless the configuration turns them
/// off (the manifests of all but database, keyval and metrics do, until
/// `buntime.jsonc` lists them); a plugin dir holding a plugin of the same
/// name overrides one.
pub fn embedded() -> Vec<EmbeddedPlugin> {
    CORE_PLUGINS
        .iter()
        .map(|(manifest, wasm, ui)| EmbeddedPlugin {
            manifest: (*manifest).into(),
            wasm: (*wasm).into(),
            ui,
        })
        .collect()
}
