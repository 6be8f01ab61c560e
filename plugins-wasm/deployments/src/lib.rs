//! `@buntime/plugin-deployments`: app versions in and out of the first
//! worker dir over HTTP, through the host's `fs` capability.
//!
//! - [`paths`]: names, versions and relative paths, checked (pure);
//! - `fs`: the `fs_*` host functions (wasm only);
//! - `routes`: the routes under `/_/deployments/api` (wasm only).
//!
//! Routes, limits and failure modes: `docs/plugins/deployments.md`.

pub mod paths;

#[cfg(target_arch = "wasm32")]
mod fs;
#[cfg(target_arch = "wasm32")]
mod routes;
