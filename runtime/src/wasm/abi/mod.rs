//! The host side of the Extism ABI, implemented natively.
//!
//! Guests import `extism:host/env` (memory blocks, input, output, errors,
//! config, vars, logging, HTTP), optionally `wasi_snapshot_preview1` (with
//! nothing granted: no environment, no files; clocks and randomness only), and
//! Buntime's own functions in `extism:host/user`. Each area has its own file.
//! See `docs/abi.md` for the guest's view of every function.

mod blocks;
mod body;
mod bulk;
mod client;
mod config;
mod http;
mod log;
mod memory;
mod user;
pub(crate) mod wasi;

use wasmtime::Linker;

use super::host_fn::HostFunction;
use super::state::HostState;

pub use body::{RequestBody, ResponseBody, ResponseBodyLimit, body_functions};
pub use client::{REQUEST_CLIENT, RequestClient, client_function};

/// The import namespace of the Extism ABI.
pub const ENV_NAMESPACE: &str = "extism:host/env";

/// Defines every host import in `linker`.
pub(crate) fn link(
    linker: &mut Linker<HostState>,
    host_functions: &[HostFunction],
) -> wasmtime::Result<()> {
    memory::link(linker)?;
    bulk::link(linker)?;
    config::link(linker)?;
    log::link(linker)?;
    http::link(linker)?;
    user::link(linker, host_functions)?;
    wasi::link(linker)?;
    Ok(())
}

/// Turns a guest-caused failure into a trap naming the host function.
pub(crate) fn guest_fault(function: &str, detail: impl std::fmt::Display) -> wasmtime::Error {
    wasmtime::Error::msg(format!("{ENV_NAMESPACE}::{function}: {detail}"))
}
