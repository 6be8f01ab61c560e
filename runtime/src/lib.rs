//! Buntime: a serverless WASM application runtime.
//!
//! One process serves many apps (WASM modules and static sites, each in many
//! semver versions) from a worker pool, and runs a chain of sandboxed WASM
//! plugins that intercept requests and responses through a
//! capability-mediated ABI.
//!
//! # Core concepts
//!
//! - **Engine** ([`wasm::Engine`]): the one wasmtime engine, with the pooling
//!   allocator, epoch deadlines and a compiled-module cache.
//! - **Guest**: an app or plugin module. Guests speak the Extism ABI, so any
//!   Extism PDK (Rust, C, AssemblyScript, Go, Zig, JS, …) can build one.
//! - **Capability** ([`capabilities::Capability`]): a guarded kind of access
//!   outside the sandbox (HTTP, log, …).
//! - **Grant** ([`capabilities::Grants`]): what the operator allowed a guest.
//!
//! # Example
//!
//! ```no_run
//! use buntime::wasm::{Engine, EngineConfig, GuestOptions};
//! # async fn demo() -> anyhow::Result<()> {
//! let engine = Engine::new(EngineConfig::default())?;
//! let module = engine.load_file("greet.wasm".as_ref(), GuestOptions::new("greet"))?;
//! let mut instance = module.instantiate().await?;
//! let out = instance.call("greet", "world").await?;
//! println!("{}", String::from_utf8_lossy(&out.output));
//! # Ok(()) }
//! ```

pub mod access;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod counter;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod grants;
pub mod idle_lists;
pub mod log_feed;
pub mod metrics;
pub mod plugins;
pub mod pool;
pub mod routing;
pub mod scaffold;
pub mod server;
pub mod telemetry;
pub mod wasm;
