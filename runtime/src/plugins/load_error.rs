//! Why a plugin did not load, and in what state that leaves it.
//!
//! Every [`LoadError`] names the file and the field (or hook) at fault and
//! how to fix it; the host shows it in `GET /_/api/plugins` (`notLoaded`)
//! and in the log, and fails the start when the plugin is required.

use std::path::PathBuf;

use serde::Serialize;

use super::plugin::HookError;
use crate::grants::GrantError;

/// Why [`super::Plugin::load`] (or [`super::check_module`]) refused a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The operator's `capabilities` in `buntime.jsonc` do not narrow what
    /// the manifest declares.
    #[error("{runtime_file}: `plugins[{plugin}].capabilities`: {source}")]
    Narrow {
        /// `buntime.jsonc`, as the operator named it.
        runtime_file: String,
        /// The plugin's name.
        plugin: String,
        /// What is wrong with the narrowing.
        source: GrantError,
    },
    /// The manifest's `capabilities` are invalid.
    #[error("{}: `capabilities`: {source}", manifest.display())]
    Capabilities {
        /// The manifest.
        manifest: PathBuf,
        /// What is wrong with the declaration.
        source: GrantError,
    },
    /// `spoolUploads` is set without an `fs` root to spool below.
    #[error(
        "{}: `spoolUploads` needs an `fs` grant (the upload is written below its first root); declare `\"fs\": [\"workerDirs\"]` in `capabilities`, and keep it in {runtime_file} if it narrows the grant",
        manifest.display()
    )]
    SpoolWithoutFs {
        /// The manifest.
        manifest: PathBuf,
        /// `buntime.jsonc`, as the operator named it.
        runtime_file: String,
    },
    /// The module file could not be read.
    #[error("{}: cannot read the module: {source}", wasm.display())]
    Read {
        /// The module.
        wasm: PathBuf,
        /// The read error.
        source: std::io::Error,
    },
    /// The compilation task was cancelled (the server is stopping).
    #[error("{}: compilation was interrupted", wasm.display())]
    Interrupted {
        /// The module.
        wasm: PathBuf,
    },
    /// The engine refused the module (invalid WebAssembly, an import that
    /// was not granted, limits past the engine's).
    #[error("{}: {source}", wasm.display())]
    Compile {
        /// The module.
        wasm: PathBuf,
        /// The engine's error.
        source: crate::wasm::LoadError,
    },
    /// A function listed in `services` is not exported.
    #[error("{}: `services`: `{service}` is listed but {} does not export it", manifest.display(), wasm.display())]
    MissingService {
        /// The manifest.
        manifest: PathBuf,
        /// The module.
        wasm: PathBuf,
        /// The listed function.
        service: String,
    },
    /// A `base` is set but nothing would answer under it.
    #[error(
        "{}: `base`: `{base}` is set but {} exports no `handle` and there is no `ui/` dir to serve",
        manifest.display(),
        wasm.display()
    )]
    BaseWithoutRoutes {
        /// The manifest.
        manifest: PathBuf,
        /// The module.
        wasm: PathBuf,
        /// The base.
        base: String,
    },
    /// `on_init` ran past the plugin's timeout.
    #[error("`on_init` timed out: {}", .0.failure)]
    InitTimedOut(HookError),
    /// `on_init` refused the config or failed.
    #[error("`on_init` refused its config or failed: {}", .0.failure)]
    InitFailed(HookError),
}

/// Why a plugin is not running (`notLoaded[].state` in `GET /_/api/plugins`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotLoadedState {
    /// It was tried and refused: a [`LoadError`], a missing install, a taken base.
    Failed,
    /// It was not tried: a dependency is missing, failed or forms a cycle.
    Skipped,
    /// It is switched off (its manifest, `buntime.jsonc` or the API).
    Disabled,
}

impl NotLoadedState {
    /// The word used in the API and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            NotLoadedState::Failed => "failed",
            NotLoadedState::Skipped => "skipped",
            NotLoadedState::Disabled => "disabled",
        }
    }
}

impl std::fmt::Display for NotLoadedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
