//! Errors of loading and calling guests.
//!
//! Load errors name the guest (and the file where there is one). Call errors
//! separate what the guest did (returned an error, trapped, overran its
//! deadline or memory) from what went wrong in the host.

use std::path::PathBuf;

/// A module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The engine itself could not be configured.
    #[error("failed to configure the WASM engine: {0:#}")]
    Engine(anyhow::Error),
    /// The guest's options cannot be honoured by this engine.
    #[error("`{guest}`: {message}")]
    Options {
        /// The guest's name.
        guest: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The module file could not be read.
    #[error("failed to read WASM module `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly module.
    #[error("`{guest}` is not a valid WebAssembly module: {cause:#}")]
    Compile {
        /// The guest's name.
        guest: String,
        /// Why.
        cause: anyhow::Error,
    },
    /// The module declares a Buntime ABI version this host cannot run.
    #[error("`{guest}` {cause}")]
    AbiVersion {
        /// The guest's name.
        guest: String,
        /// Which versions.
        cause: super::AbiVersionError,
    },
    /// The module imports something the host does not provide.
    #[error(
        "`{guest}` cannot be linked: {cause:#} (guests may import only `extism:host/env`, `extism:host/user` and `wasi_snapshot_preview1`; see docs/abi.md)"
    )]
    Link {
        /// The guest's name.
        guest: String,
        /// Why.
        cause: anyhow::Error,
    },
}

/// Why a call into a guest failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    /// The guest set an error message (Extism `error_set`) and returned `rc`.
    #[error("{message}")]
    Guest {
        /// The export's return code.
        rc: i32,
        /// The message the guest set.
        message: String,
    },
    /// The export does not exist (or has an unsupported signature).
    #[error("function not found: `{0}`")]
    NotFound(String),
    /// The guest ran past its deadline and was stopped.
    #[error("timeout: the call exceeded its {0:?} deadline and was stopped")]
    Timeout(std::time::Duration),
    /// The call ran for long on the direct path while the other worker
    /// threads were held by long calls too; it was stopped so that one stays
    /// free. The module's later calls run where they can yield; a retry is
    /// expected to succeed.
    #[error(
        "the call was stopped: it ran long while every other worker thread was busy with long guest calls; retry"
    )]
    Preempted,
    /// The guest ran out of fuel.
    #[error("the call ran out of fuel")]
    OutOfFuel,
    /// The guest tried to grow its memory past its limit and then trapped.
    #[error("out of memory: the guest tried to grow past its {limit}-byte limit")]
    OutOfMemory {
        /// The limit in bytes.
        limit: usize,
    },
    /// The guest trapped (e.g. `unreachable`, stack overflow, a bad pointer
    /// passed to a host function).
    #[error("the guest trapped: {0}")]
    Trap(String),
    /// A host function refused the call or failed (e.g. an HTTP request to a
    /// host that was not granted, a bad pointer passed to an ABI function);
    /// the guest was stopped.
    #[error("{0}")]
    HostFunction(String),
    /// WASI `proc_exit` with a non-zero code.
    #[error("the guest exited with code {0}")]
    Exit(i32),
    /// The instance was discarded after an earlier trap or timeout.
    #[error("this instance was discarded after an earlier failure; use a fresh one")]
    Discarded,
    /// Instantiation failed (e.g. the pool is full).
    #[error("failed to instantiate: {0}")]
    Instantiate(String),
    /// Every instance stayed busy for this long: the call was not started.
    #[error("every instance was busy for {0:?}; the call was not started")]
    Busy(std::time::Duration),
    /// The instances are being drained (a reload or shutdown): the call was
    /// not started.
    #[error("the instances are draining for a reload or shutdown; the call was not started")]
    Draining,
}

impl CallError {
    /// The Extism return code for this error: the guest's own code, 134 for a
    /// trap (SIGABRT, as Extism reports it), -1 otherwise.
    pub fn rc(&self) -> i32 {
        match self {
            CallError::Guest { rc, .. } => *rc,
            CallError::Exit(code) => *code,
            CallError::Trap(_) | CallError::OutOfMemory { .. } => 134,
            _ => -1,
        }
    }
}
