//! The on-disk cache of compiled modules.
//!
//! A compiled module (`.cwasm`) is machine code that wasmtime loads without
//! checking it, so a damaged file must never reach `Module::deserialize`. Each
//! entry is named after the WASM bytes' sha256 and a hash of the engine's
//! configuration and version, and carries a sha256 of its own payload that is
//! verified before use. Anything that does not verify is deleted, counted and
//! recompiled. Writes go to a temporary file that is renamed into place, so a
//! crash mid-write leaves no half file behind.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
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
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Self {
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
        let bytes = std::fs::read(&path).ok()?;
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
        std::fs::create_dir_all(&self.dir)?;
        let (tmp_path, mut file) = tempfile_in(&self.dir)?;
        let written = (|| {
            file.write_all(MAGIC)?;
            file.write_all(&Sha256::digest(&payload))?;
            file.write_all(&payload)?;
            file.sync_all()?;
            std::fs::rename(&tmp_path, self.path(sha256))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp_path);
        }
        Ok(written?)
    }
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

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let name = format!(
        ".tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    )
    .replace(['(', ')'], "");
    let path = dir.join(name);
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
