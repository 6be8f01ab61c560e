//! `@buntime/plugin-proxy`: requests whose path matches a rule are handed to
//! the host to forward to the rule's upstream (`RequestDecision::Proxy`):
//! the host connects, streams both bodies, applies the timeouts and maps
//! upstream failures; this plugin only decides where and how.
//!
//! - [`rules`]: rules parsed, checked, matched and expanded (pure);
//! - `guest`: the hooks; `api`: `/_/proxy/api/rules`; `store`: where the
//!   dynamic rules are kept (wasm only).
//!
//! Options and failure modes: `docs/plugins/proxy.md`.

pub mod rules;

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod guest;
#[cfg(target_arch = "wasm32")]
mod store;
