//! `@buntime/plugin-deployments`: app versions in and out of the first
//! worker dir over HTTP, through the host's `fs` capability
//! (`buntime_pdk::plugin::fs`).
//!
//! - [`paths`]: names, versions and relative paths, checked (pure);
//! - `routes`: the routes under `/_/deployments/api` (wasm only).
//!
//! Routes, limits and failure modes: `docs/plugins/deployments.md`.

pub mod paths;

#[cfg(target_arch = "wasm32")]
mod routes;
