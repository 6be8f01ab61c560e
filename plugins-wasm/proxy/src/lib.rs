//! `@buntime/plugin-proxy`: requests whose path matches a rule are forwarded
//! by the host to the rule's upstream. The plugin is the control plane: it
//! checks the rules, keeps the dynamic ones, serves `/_/proxy/api/rules`,
//! and installs every rule as its route table (`upstream_routes`); the host
//! matches each request against that table and forwards a match itself
//! (connecting, streaming both bodies, applying the timeouts and mapping
//! upstream failures), with no call into the plugin per request.
//!
//! - [`rules`]: rules parsed, checked, matched and expanded (`buntime-routes`,
//!   the code the host runs the table with);
//! - `guest`: `on_init` and installing the table; `api`:
//!   `/_/proxy/api/rules`; `store`: where the dynamic rules are kept (wasm
//!   only).
//!
//! Options and failure modes: `docs/plugins/proxy.md`.

pub use buntime_routes as rules;

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod guest;
#[cfg(target_arch = "wasm32")]
mod store;
