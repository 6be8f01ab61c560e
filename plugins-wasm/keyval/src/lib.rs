//! `@buntime/plugin-keyval`: a key-value store with Deno KV semantics over
//! the host's SQLite (`sql` capability), mounted at `/_/keyval/api/*`, and
//! the `kv` service other plugins call.
//!
//! - [`keys`]: typed key parts and their order-preserving encoding;
//! - [`store`]: the schema and a store per tenant;
//! - [`atomic`]: commits (checks and mutations in one transaction);
//! - [`ops`]: get, set, delete, list, count;
//! - [`filter`]: `where` filters compiled to bound SQL;
//! - [`json`]: values kept as the JSON text sent, and bigint operands;
//! - [`queue`], [`fts`], [`watch`], [`metrics`];
//! - [`routes`]: the REST API; [`service`]: the `kv` service.
//!
//! Routes and examples: `docs/plugins/keyval.md`.

// The pure parts (key encoding, filters) also build natively, so their unit
// tests run with `cargo test`; everything that calls the host is wasm-only.
pub mod filter;
pub mod json;
pub mod keys;
pub mod sqltime;

#[cfg(target_arch = "wasm32")]
mod guest;
#[cfg(target_arch = "wasm32")]
pub use guest::*;
