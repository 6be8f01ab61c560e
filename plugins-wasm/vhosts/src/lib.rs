//! `@buntime/plugin-vhosts`: routes a request to an app by the host the
//! client asked for, a wildcard's subdomain becoming the tenant
//! (`x-vhost-tenant`), with a default app and an optional path prefix.
//!
//! - [`hosts`]: the config, host normalisation and matching (pure);
//! - `guest`: the `on_init` and `on_request` exports (wasm only).
//!
//! Options and failure modes: `docs/plugins/vhosts.md`.

pub mod hosts;

#[cfg(target_arch = "wasm32")]
mod guest;
