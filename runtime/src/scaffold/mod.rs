//! `buntime plugin new` and `buntime app new`: a project in Rust, C or
//! AssemblyScript that builds from this binary alone, anywhere.
//!
//! Everything a project needs from Buntime travels inside the binary: the
//! Rust PDK's sources (vendored into the project as `pdk/`, with a lockfile
//! pinning its dependencies to the versions this repository builds with),
//! the single-header C PDK, and for AssemblyScript the asc transform that
//! declares the ABI version. Each project states the PDK and ABI version it
//! targets, pins its toolchain (`rust-toolchain.toml` with the wasm target,
//! exact npm versions) and carries a README going from build to a running
//! server. [`build`] builds one and lays out what the server loads.

pub mod build;
mod files;
pub mod inspect;

use std::path::{Path, PathBuf};

use crate::plugins::valid_plugin_name;

pub use build::{BuildError, build_project};

/// The language of a new project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the vendored `buntime-pdk` crate.
    Rust,
    /// C, freestanding, with the single-header PDK `buntime.h`.
    C,
    /// AssemblyScript, with `@extism/as-pdk`.
    #[value(name = "as")]
    AssemblyScript,
}

/// What a new project builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A plugin: `manifest.jsonc` + `plugin.wasm`.
    Plugin,
    /// An app: `worker.jsonc` + `app.wasm`.
    App,
}

impl Kind {
    /// `plugin` or `app`: the CLI noun and the module's file stem.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Plugin => "plugin",
            Kind::App => "app",
        }
    }
}

/// Why a project could not be scaffolded.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not a valid plugin or app name.
    #[error(
        "`{0}` is not a valid {1} name: use lowercase letters, digits, `-`, `_` and `.`{scope}",
        scope = if *.1 == "plugin" { ", optionally as `@scope/name`" } else { "" }
    )]
    InvalidName(String, &'static str),
    /// The target exists.
    #[error("{} already exists; choose another name or --dir", .0.display())]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Creates the project for `name` in `parent/<last part of name>`; returns
/// the project's directory.
///
/// ```
/// use buntime::scaffold::{Kind, Lang, new_project};
/// let dir = tempfile::tempdir().unwrap();
/// let created = new_project(Kind::Plugin, "@acme/hello", Lang::C, dir.path()).unwrap();
/// assert!(created.join("manifest.jsonc").is_file() && created.join("src/buntime.h").is_file());
/// assert!(new_project(Kind::App, "@acme/app", Lang::Rust, dir.path()).is_err());
/// ```
pub fn new_project(
    kind: Kind,
    name: &str,
    lang: Lang,
    parent: &Path,
) -> Result<PathBuf, ScaffoldError> {
    let valid = valid_plugin_name(name) && (kind == Kind::Plugin || !name.starts_with('@'));
    if !valid {
        return Err(ScaffoldError::InvalidName(name.to_owned(), kind.noun()));
    }
    let short = name.rsplit('/').next().unwrap_or(name);
    let dir = parent.join(short);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    for (rel, text) in files::project(kind, name, lang) {
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ScaffoldError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| ScaffoldError::Io {
            path: path.clone(),
            source,
        })?;
        #[cfg(unix)]
        if rel.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            let executable = std::fs::Permissions::from_mode(0o755);
            std::fs::set_permissions(&path, executable)
                .map_err(|source| ScaffoldError::Io { path, source })?;
        }
    }
    Ok(dir)
}
