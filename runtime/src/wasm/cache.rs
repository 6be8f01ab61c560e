//! The on-disk cache of compiled modules.
//!
//! A compiled module (`.cwasm`) is machine code that wasmtime loads without
//! checking it, so a damaged or planted file must never reach
//! `Module::deserialize`. Each entry is named after the WASM bytes' sha256 and
//! a hash of the engine's configuration and version, and carries a sha256 of
//! its own payload that is verified before use. Anything that does not verify
//! is deleted, counted and recompiled.
//!
//! The directory must be the process's own: it is created owner-only (0700),
//! and one that already exists is used only if it is owned by the current
//! user and neither group- nor world-writable, and every directory above it
//! is owned by the user or root and writable by no one else unless sticky
//! (or writable only by the process's own group, as a Kubernetes volume
//! under `fsGroup` is);
//! otherwise the engine logs a warning and runs without a cache. Entries are written to a temporary file
//! created exclusively (never through an existing path or link) with
//! owner-only permissions (0600), then renamed into place, so a crash
//! mid-write leaves no half file behind. An entry that is not the user's own,
//! or is writable by others, is not loaded.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

use super::stats::EngineStats;

const MAGIC: &[u8; 8] = b"BUNTIME1";
const HEADER: usize = MAGIC.len() + 32;

/// A directory of compiled modules for one engine configuration.
#[derive(Debug)]
pub(crate) struct ModuleCache {
    dir: PathBuf,
    engine_key: String,
}

impl ModuleCache {
    /// The cache in `dir`, creating it; `None` (after a warning) when the
    /// directory cannot be created or is not safe to load machine code from.
    pub(crate) fn open(dir: PathBuf, engine: &Engine) -> Option<Self> {
        match create_private_dir(&dir).and_then(|()| check_dir(&dir)) {
            // The resolved path: a link swapped later does not move the cache.
            Ok(real) => Some(Self::new(real, engine)),
            Err(reason) => {
                tracing::warn!(dir = %dir.display(), %reason, "not using the compiled-module cache directory; running without a cache (fix its ownership and permissions, or choose another)");
                None
            }
        }
    }

    fn new(dir: PathBuf, engine: &Engine) -> Self {
        // `DefaultHasher` may change between Rust releases; that costs only a
        // cache miss, since a new toolchain means a new binary anyway.
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        // The cache holds rewritten modules, keyed by the original's sha256.
        super::rewrite::VERSION.hash(&mut h);
        Self {
            dir,
            engine_key: format!("{:016x}", h.finish()),
        }
    }

    pub(crate) fn path(&self, sha256: &[u8; 32]) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", hex(sha256), self.engine_key))
    }

    /// Loads a verified entry, or `None` (after removing a bad one).
    pub(crate) fn load(
        &self,
        engine: &Engine,
        sha256: &[u8; 32],
        stats: &EngineStats,
    ) -> Option<Module> {
        let path = self.path(sha256);
        let mut file = std::fs::File::open(&path).ok()?;
        if let Err(reason) = file
            .metadata()
            .map_err(|e| e.to_string())
            .and_then(|m| owned_privately(&m))
        {
            reject(&path, &reason, stats);
            return None;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ok()?;
        match verify(&bytes) {
            Ok(payload) => match deserialize(engine, payload) {
                Ok(module) => {
                    stats.cache_hits.add(1);
                    return Some(module);
                }
                Err(e) => reject(&path, &format!("{e:#}"), stats),
            },
            Err(reason) => reject(&path, reason, stats),
        }
        None
    }

    /// Writes an entry; failures only cost a recompile later, so they are logged.
    pub(crate) fn store(&self, sha256: &[u8; 32], module: &Module) {
        if let Err(e) = self.try_store(sha256, module) {
            tracing::warn!(dir = %self.dir.display(), error = %format!("{e:#}"), "could not write the compiled-module cache");
        }
    }

    fn try_store(&self, sha256: &[u8; 32], module: &Module) -> anyhow::Result<()> {
        let payload = module.serialize()?;
        create_private_dir(&self.dir).map_err(anyhow::Error::msg)?;
        // `tempfile` creates the file with O_EXCL under a random name, owner-only.
        let mut file = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)?;
        file.write_all(MAGIC)?;
        file.write_all(&Sha256::digest(&payload))?;
        file.write_all(&payload)?;
        file.as_file().sync_all()?;
        // On failure the temporary file is removed when dropped.
        file.persist(self.path(sha256))?;
        Ok(())
    }
}

/// Creates `dir` (and missing parents) owner-only.
fn create_private_dir(dir: &Path) -> Result<(), String> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| format!("cannot create it: {e}"))
}

/// Whether `dir` is a directory only this user can write to, in directories
/// nobody else can rename it out of; returns its resolved path.
fn check_dir(dir: &Path) -> Result<PathBuf, String> {
    let real = std::fs::canonicalize(dir).map_err(|e| format!("cannot resolve it: {e}"))?;
    let meta = std::fs::metadata(&real).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    owned_privately(&meta)?;
    for parent in real.ancestors().skip(1) {
        let meta = std::fs::metadata(parent)
            .map_err(|e| format!("cannot read its parent {}: {e}", parent.display()))?;
        safe_parent(&meta).map_err(|reason| format!("its parent {} {reason}", parent.display()))?;
    }
    Ok(real)
}

/// Whether a file or directory is the current user's and writable by no one
/// else.
#[cfg(unix)]
fn owned_privately(meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "it is owned by uid {}, not by this process's user (uid {me})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "it is writable by its group or by everyone (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Whether a directory above the cache is safe: owned by this user or root,
/// and writable by no one else unless sticky (like `/tmp`, where only an
/// entry's owner may rename it). Writable by its group is accepted when
/// that group is this process's own effective group: a Kubernetes volume
/// under `fsGroup` is root's and group-writable by the pod's group, and
/// the cache dir inside it stays owner-only (nobody else could put an entry
/// the cache would load: entries must be this user's own).
#[cfg(unix)]
fn safe_parent(meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!("is owned by uid {}", meta.uid()));
    }
    let sticky = meta.mode() & 0o1000 != 0;
    let own_group = meta.gid() == rustix::process::getegid().as_raw();
    if meta.mode() & 0o002 != 0 && !sticky {
        return Err(format!(
            "is writable by everyone and not sticky (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    if meta.mode() & 0o020 != 0 && !sticky && !own_group {
        return Err(format!(
            "is writable by its group (gid {}, not this process's group) and not sticky (mode {:o})",
            meta.gid(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn owned_privately(_meta: &std::fs::Metadata) -> Result<(), String> {
    Ok(())
}

#[cfg(not(unix))]
fn safe_parent(_meta: &std::fs::Metadata) -> Result<(), String> {
    Ok(())
}

fn reject(path: &Path, reason: &str, stats: &EngineStats) {
    stats.cache_rejected.add(1);
    tracing::warn!(file = %path.display(), reason, "discarding a compiled-module cache entry; recompiling");
    let _ = std::fs::remove_file(path);
}

fn verify(bytes: &[u8]) -> Result<&[u8], &'static str> {
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a Buntime cache file (bad header)");
    }
    let (digest, payload) = bytes[MAGIC.len()..].split_at(32);
    if Sha256::digest(payload).as_slice() != digest {
        return Err("checksum mismatch (the file is corrupt)");
    }
    Ok(payload)
}

#[allow(unsafe_code, reason = "the one audited use of Module::deserialize")]
fn deserialize(engine: &Engine, payload: &[u8]) -> wasmtime::Result<Module> {
    // SAFETY: `payload` was produced by `Module::serialize` of an engine with
    // the same compatibility hash (it is in the file name) and its sha256 has
    // just been verified, so these are the exact bytes this process wrote;
    // wasmtime additionally checks its own version and configuration header.
    unsafe { Module::deserialize(engine, payload) }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
