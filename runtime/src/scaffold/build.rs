//! `buntime plugin build` and `buntime app build`: builds the project in a
//! directory with its own toolchain and lays out what the server loads.
//!
//! The language is told by the project's files (`Cargo.toml`: Rust,
//! `package.json`: AssemblyScript, `build.sh`: C), so the command works for
//! any project `buntime plugin new` or `app new` wrote, and for hand-made
//! ones of the same shape. The toolchain is the project's: `cargo` honours
//! its `rust-toolchain.toml` and `.cargo/config.toml`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Kind, Lang};

/// Why a project could not be built or laid out.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The directory holds no project this command knows.
    #[error(
        "{}: no Cargo.toml, package.json or build.sh here; run this in a project made by `buntime {noun} new`",
        dir.display()
    )]
    NotAProject {
        /// The directory.
        dir: PathBuf,
        /// `plugin` or `app`.
        noun: &'static str,
    },
    /// The project lacks its `manifest.jsonc` or `worker.jsonc`, or it is invalid.
    #[error("{0}")]
    Config(String),
    /// A build tool could not be started.
    #[error("cannot run `{tool}` in {}: {source} ({hint})", dir.display())]
    Spawn {
        /// The tool.
        tool: String,
        /// Where.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
        /// What to install.
        hint: &'static str,
    },
    /// The build tool failed (its own output says why).
    #[error("`{tool}` failed in {} ({status}); its output above says why", dir.display())]
    Failed {
        /// The command.
        tool: String,
        /// Where.
        dir: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// The build ran but left no module where expected.
    #[error("the build left no module at {}", .0.display())]
    NoModule(PathBuf),
    /// Laying out the output failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Builds the `kind` project in `dir` and lays it out under `out`: a plugin
/// as `out/<name>/{manifest.jsonc, plugin.wasm, ui/}` (a dir for
/// `RUNTIME_PLUGIN_DIRS`), an app as `out/<name>/<version>/{worker.jsonc,
/// app.wasm}` (for `RUNTIME_WORKER_DIRS`). Returns the laid-out directory.
pub fn build_project(
    kind: Kind,
    dir: &Path,
    out: &Path,
    version: &str,
) -> Result<PathBuf, BuildError> {
    let lang = detect(dir).ok_or_else(|| BuildError::NotAProject {
        dir: dir.to_owned(),
        noun: kind.noun(),
    })?;
    // Read the config before building, so a broken one fails fast.
    let (config_file, dest) = match kind {
        Kind::Plugin => {
            let path = dir.join("manifest.jsonc");
            let text = read(&path)?;
            let manifest = crate::plugins::Manifest::parse(&text, &path)
                .map_err(|e| BuildError::Config(e.to_string()))?;
            let short = manifest
                .name
                .rsplit('/')
                .next()
                .unwrap_or(&manifest.name)
                .to_owned();
            (path, out.join(short))
        }
        Kind::App => {
            let path = dir.join("worker.jsonc");
            read(&path)?;
            let name = std::fs::canonicalize(dir)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "app".to_owned());
            (path, out.join(name).join(version))
        }
    };
    let module = match lang {
        Lang::Rust => build_rust(dir)?,
        Lang::C => {
            run(
                Command::new("sh").arg("build.sh"),
                dir,
                "clang and lld",
                false,
            )?;
            dir.join(format!("build/{}.wasm", kind.noun()))
        }
        Lang::AssemblyScript => {
            if !dir.join("node_modules/.bin/asc").exists() {
                run(
                    Command::new("npm").args(["ci", "--no-audit", "--no-fund"]),
                    dir,
                    "node and npm",
                    false,
                )?;
            }
            run(
                Command::new("npm").args(["run", "build"]),
                dir,
                "node and npm",
                false,
            )?;
            dir.join(format!("build/{}.wasm", kind.noun()))
        }
    };
    if !module.is_file() {
        return Err(BuildError::NoModule(module));
    }
    lay_out(kind, dir, &config_file, &module, &dest)?;
    Ok(dest)
}

/// The project's language, told by its files.
fn detect(dir: &Path) -> Option<Lang> {
    [
        ("Cargo.toml", Lang::Rust),
        ("package.json", Lang::AssemblyScript),
        ("build.sh", Lang::C),
    ]
    .into_iter()
    .find(|(file, _)| dir.join(file).is_file())
    .map(|(_, lang)| lang)
}

fn read(path: &Path) -> Result<String, BuildError> {
    std::fs::read_to_string(path).map_err(|e| {
        BuildError::Config(format!(
            "cannot read {}: {e} (a plugin project has a manifest.jsonc, an app project a worker.jsonc)",
            path.display()
        ))
    })
}

/// Runs a build tool in `dir`, its stderr (and, unless `capture`, its
/// stdout) shown as it goes; returns the captured stdout.
fn run(
    cmd: &mut Command,
    dir: &Path,
    needs: &'static str,
    capture: bool,
) -> Result<Vec<u8>, BuildError> {
    let tool = format!("{cmd:?}").replace('"', "");
    let output = cmd
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(if capture {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| BuildError::Spawn {
            tool: tool.clone(),
            dir: dir.to_owned(),
            source,
            hint: needs,
        })?;
    if !output.status.success() {
        return Err(BuildError::Failed {
            tool,
            dir: dir.to_owned(),
            status: output.status,
        });
    }
    Ok(output.stdout)
}

/// `cargo build --release`; the module is the `.wasm` cargo reports, wherever
/// `CARGO_TARGET_DIR` put it.
fn build_rust(dir: &Path) -> Result<PathBuf, BuildError> {
    let stdout = run(
        Command::new("cargo").args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ]),
        dir,
        "rustup, from rustup.rs",
        true,
    )?;
    let wasm = String::from_utf8_lossy(&stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| m["filenames"].as_array().cloned())
        .flatten()
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"));
    wasm.ok_or_else(|| BuildError::NoModule(dir.join("target")))
}

/// Replaces `dest` with the config file, the module and (plugins) `ui/`.
fn lay_out(
    kind: Kind,
    dir: &Path,
    config_file: &Path,
    module: &Path,
    dest: &Path,
) -> Result<(), BuildError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BuildError::Io { path, source }
    };
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(io(dest))?;
    }
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let config_name = config_file.file_name().unwrap_or_default();
    std::fs::copy(config_file, dest.join(config_name)).map_err(io(dest))?;
    let wasm = dest.join(format!("{}.wasm", kind.noun()));
    std::fs::copy(module, &wasm).map_err(io(&wasm))?;
    let ui = dir.join("ui");
    if kind == Kind::Plugin && ui.is_dir() {
        copy_dir(&ui, &dest.join("ui")).map_err(io(&ui))?;
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
