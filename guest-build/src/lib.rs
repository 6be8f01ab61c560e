//! Compiles a guest workspace (Rust crates for `wasm32-*`) from a build
//! script, with a nested `cargo build` in a target dir of its own.
//!
//! Host and guest builds never share a target dir or a lock: the host build
//! is the one running this build script, and a guest build in the same dir
//! would wait on it forever. Settings meant for the host build (flags,
//! wrappers, coverage) are removed so they do not leak into the guest.
//!
//! ```no_run
//! use std::path::Path;
//! let wasm = buntime_guest_build::build(
//!     Path::new("plugins-wasm"),
//!     Path::new("target/wasm-guests"),
//!     "wasm32-unknown-unknown",
//!     &["keyval"],
//! );
//! assert!(wasm[0].ends_with("keyval.wasm"));
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `packages` of the workspace at `workspace` for `target` in release
/// mode into `target_dir`; returns the path of each package's `.wasm`, in
/// order. Exits the build script with a message naming the fix on failure.
pub fn build(workspace: &Path, target_dir: &Path, target: &str, packages: &[&str]) -> Vec<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            target,
            "--target-dir",
        ])
        .arg(target_dir);
    for p in packages {
        cmd.args(["-p", &p.replace('_', "-")]);
    }
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_LLVM_COV",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| {
        fail(&format!(
            "could not run cargo for the guests in {}: {e}",
            workspace.display()
        ))
    });
    if !status.success() {
        fail(&format!(
            "building the guests in {} for {target} failed (see above); is the target installed? (`rustup target add {target}`, or `./x setup`)",
            workspace.display()
        ));
    }
    packages
        .iter()
        .map(|p| {
            target_dir
                .join(target)
                .join("release")
                .join(format!("{}.wasm", p.replace('-', "_")))
        })
        .collect()
}

/// Asks cargo to rerun the build script when anything under `path` changes.
pub fn watch(path: &Path) {
    println!("cargo::rerun-if-changed={}", path.display());
}

/// Copies `from` to `to`, exiting the build script on failure.
pub fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| {
        fail(&format!(
            "copying {} to {} failed: {e}",
            from.display(),
            to.display()
        ))
    });
}

/// The value of environment variable `name`, which cargo sets for build scripts.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| fail(&format!("{name} is not set")))
}

/// Stops the build script with `message`.
pub fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
