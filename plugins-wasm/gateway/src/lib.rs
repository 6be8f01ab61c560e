//! `@buntime/plugin-gateway`: rate limits that hold exactly across the
//! plugin's parallel instances, CORS on every response to an allowed
//! origin, and a request log with its API at `/_/gateway/api`.
//!
//! - [`config`]: the config, checked once (pure);
//! - [`cors`]: origin matching and the CORS headers (pure);
//! - [`limit`]: bucket keys and rate-limit headers (pure);
//! - [`shell`]: which navigations the app shell serves (pure);
//! - `guest`: the hooks; `api`: the routes; `history`: the counters per
//!   second (wasm only).
//!
//! Options and failure modes: `docs/plugins/gateway.md`.

pub mod config;
pub mod cors;
pub mod limit;
pub mod shell;

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod guest;
#[cfg(target_arch = "wasm32")]
mod history;
