//! `buntime plugin inspect <dir|wasm>`: what a plugin module exports and
//! imports, its hooks, the grants its manifest asks for, the ABI version it
//! declares, and whether it would load here.
//!
//! "Would load" runs the load's own checks (ABI version, compilation and
//! linking against this host's functions, manifest and grants, services and
//! `base`; `crate::plugins::check_module`) without running the plugin: its
//! `on_init` is not called.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wasmparser::{Parser, Payload, TypeRef};

use crate::capabilities::{GrantContext, Grants};
use crate::plugins::{MANIFEST_FILE, Manifest, PLUGIN_WASM_FILE, check_module};
use crate::wasm::{Engine, EngineConfig, GuestOptions, HOST_ABI_VERSION, declared_abi_version};

/// Prints the report for `path`; exits non-zero when it would not load.
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let (wasm_path, manifest_path) = if path.is_dir() {
        (path.join(PLUGIN_WASM_FILE), Some(path.join(MANIFEST_FILE)))
    } else {
        (path.to_owned(), None)
    };
    let bytes = std::fs::read(&wasm_path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e} (give a plugin dir holding {PLUGIN_WASM_FILE}, or a .wasm file)",
            wasm_path.display()
        )
    })?;
    println!("module    {} ({} bytes)", wasm_path.display(), bytes.len());
    let (exports, imports) = match exports_and_imports(&bytes) {
        Ok(lists) => lists,
        Err(e) => {
            println!(
                "loads     no: {}: not a WebAssembly module: {e}",
                wasm_path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    match declared_abi_version(&bytes) {
        Ok(Some(v)) => println!("abi       version {v} (this host: {HOST_ABI_VERSION})"),
        Ok(None) => {
            println!("abi       not declared, taken as version 1 (this host: {HOST_ABI_VERSION})")
        }
        Err(e) => println!("abi       unreadable: {e}"),
    }
    println!("exports   {}", exports.join(", "));
    println!("imports   {}", imports.join(", "));
    let hooks: Vec<&str> = [
        "on_init",
        "on_request",
        "on_response",
        "handle",
        "on_event",
        "on_shutdown",
    ]
    .into_iter()
    .filter(|h| exports.iter().any(|e| e == h))
    .collect();
    println!("hooks     {}", hooks.join(", "));
    // The exports sent the binary request head (docs/abi.md §14).
    let heads = crate::wasm::binary_heads(&bytes);
    let binary: Vec<&str> = [("on_request", heads.on_request), ("handle", heads.handle)]
        .into_iter()
        .filter_map(|(export, binary)| binary.then_some(export))
        .collect();
    if binary.is_empty() {
        println!("heads     JSON");
    } else {
        println!("heads     binary: {}", binary.join(", "));
    }
    match would_load(&bytes, &wasm_path, manifest_path.as_deref()) {
        Ok(()) => {
            println!("loads     yes");
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            println!("loads     no: {reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Function exports, and imports as `module::name`, in module order.
fn exports_and_imports(
    bytes: &[u8],
) -> Result<(Vec<String>, Vec<String>), wasmparser::BinaryReaderError> {
    let mut exports = Vec::new();
    let mut imports = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ExportSection(section) => {
                for export in section {
                    let export = export?;
                    if export.kind == wasmparser::ExternalKind::Func {
                        exports.push(export.name.to_owned());
                    }
                }
            }
            Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    let import = import?;
                    if matches!(import.ty, TypeRef::Func(_)) {
                        imports.push(format!("{}::{}", import.module, import.name));
                    }
                }
            }
            _ => {}
        }
    }
    Ok((exports, imports))
}

/// The load's checks, without running the plugin.
fn would_load(bytes: &[u8], wasm_path: &Path, manifest_path: Option<&Path>) -> Result<(), String> {
    let engine = Engine::new(EngineConfig {
        host_functions: crate::server::host_functions(),
        ..EngineConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let name = wasm_path.display().to_string();
    let Some(manifest_path) = manifest_path else {
        engine
            .load(bytes, GuestOptions::new(name))
            .map_err(|e| e.to_string())?;
        return Ok(());
    };
    let text = std::fs::read_to_string(manifest_path)
        .map_err(|e| format!("cannot read {}: {e}", manifest_path.display()))?;
    let manifest = Manifest::parse(&text, manifest_path).map_err(|e| e.to_string())?;
    let dependencies = manifest.all_dependencies();
    let grants = Grants::parse(
        &manifest.capabilities,
        &GrantContext {
            dependencies: &dependencies,
        },
    )
    .map_err(|e| format!("{}: `capabilities`: {e}", manifest_path.display()))?;
    println!(
        "plugin    {} {}, base {}",
        manifest.name,
        manifest.version,
        manifest
            .base
            .as_deref()
            .map_or("-".to_owned(), |b| format!("/_/{b}"))
    );
    println!(
        "grants    {}",
        grants.names().collect::<Vec<_>>().join(", ")
    );
    let options = GuestOptions::new(manifest.name.as_str())
        .memory_limit(manifest.limits.memory as usize)
        .grants(grants);
    let module = engine
        .load(bytes, options)
        .map_err(|e| format!("{}: {e}", wasm_path.display()))?;
    let has_ui = manifest_path
        .parent()
        .map(|d| d.join("ui"))
        .is_some_and(|ui: PathBuf| ui.is_dir());
    check_module(&manifest, manifest_path, wasm_path, &module, has_ui)
        .map_err(|e| e.to_string())?;
    Ok(())
}
