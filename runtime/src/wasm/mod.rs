//! The WASM engine and the native host of the Extism ABI.
//!
//! - [`Engine`]: the one wasmtime engine (pooling, epochs, cache, linker).
//! - [`GuestModule`]: a compiled, linked module; instantiates in microseconds.
//! - [`GuestInstance`]: a live instance; [`GuestInstance::call`] runs an export.
//! - [`HostFunction`]: a Buntime host function in `extism:host/user`, guarded
//!   by a capability grant.

pub mod abi;
mod abi_version;
mod arena;
mod cache;
mod clock;
mod cost;
mod engine;
mod error;
mod free_list;
mod host_fn;
mod instance;
mod loaded_code;
mod module;
mod options;
mod rewrite;
mod state;
mod stats;
mod sync_call;
mod ticker;

pub use abi_version::{
    AbiVersionError, BinaryHeads, HOST_ABI_VERSION, binary_heads, check_abi_version,
    declared_abi_version,
};
pub use arena::{Arena, ArenaError, BLOCK_COST};
pub use clock::GuestClock;
pub use cost::{CostMeter, GuestCost};
pub(crate) use engine::EngineShared;
pub use engine::{Allocation, DEFAULT_EPOCH_TICK, Engine, EngineConfig};
pub use error::{CallError, LoadError};
pub(crate) use host_fn::user_denial;
pub use host_fn::{
    GuestMemory, HostError, HostFunction, HostFuture, HostOutput, ResultEncoding, USER_NAMESPACE,
};
pub use instance::{CallOutput, GuestInstance};
pub use module::{GuestModule, ModuleOrigin};
pub use options::{
    DEFAULT_LOG_BURST, DEFAULT_LOG_LINES_PER_SECOND, DEFAULT_MAX_HTTP_RESPONSE_BYTES,
    DEFAULT_MAX_VAR_BYTES, DEFAULT_MEMORY_LIMIT, GuestOptions,
};
pub use rewrite::{ARENA_EXPORT, RewriteError, rewrite_module};
pub use state::HostState;
pub use stats::EngineStats;
