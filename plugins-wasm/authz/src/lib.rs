//! `@buntime/plugin-authz`: an XACML-style authorization plugin.
//!
//! - [`policy`]: policies as written and compiled (globs, regexes, address
//!   blocks and time zones parsed once);
//! - [`settings`]: the plugin's config;
//! - [`glob`], [`ip`], [`time`]: the matchers policies are made of;
//! - [`pdp`]: the decision point: contexts, the five combining algorithms,
//!   `defaultEffect`, the explain trace;
//! - `guest` (wasm only): the PEP in `on_request`, the PAP routes under
//!   `/_/authz/api` and the policy store over the `sql` capability.
//!
//! Everything but `guest` is pure and unit-tested natively. Options, routes
//! and failure modes: `docs/plugins/authz.md`.

pub mod glob;
pub mod ip;
pub mod pdp;
pub mod policy;
pub mod settings;
pub mod time;

#[cfg(target_arch = "wasm32")]
mod guest;

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
