//! Capabilities and grants: what a guest may reach outside its sandbox.
//!
//! A guest (app or plugin) can do nothing outside its own linear memory unless
//! it was *granted* the capability that guards it. Every Buntime host function
//! declares the [`Capability`] it needs (see [`crate::wasm::HostFunction`]); the
//! host checks the caller's [`Grants`] on every call, and a denial is an error
//! the guest sees, a warning in the log naming the grant to add, and a counter.
//!
//! This module holds the grant set and the checks that do not depend on
//! wasmtime, so they can be tested as plain tables. The per-capability host
//! functions live next to the engine in [`crate::wasm`].

mod hosts;

use std::collections::BTreeSet;
use std::fmt;

pub use hosts::HostPattern;

/// The name of a capability, e.g. `http` or `log`.
///
/// ```
/// use buntime::capabilities::Capability;
/// assert_eq!(Capability::HTTP.name(), "http");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(&'static str);

impl Capability {
    /// Outbound HTTP requests (`extism:host/env::http_request` and Buntime's own).
    pub const HTTP: Capability = Capability("http");
    /// Writing to the host's log.
    pub const LOG: Capability = Capability("log");

    /// Declares a capability by name. Names are lowercase identifiers.
    pub const fn new(name: &'static str) -> Self {
        Capability(name)
    }

    /// The capability's name as written in manifests.
    pub const fn name(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// What one guest has been granted.
///
/// Deny by default: [`Grants::default`] grants nothing. The Extism ABI's own
/// basics (memory, input, output, config, vars, logging) need no grant (log messages
/// are truncated by the host).
///
/// ```
/// use buntime::capabilities::{Capability, Grants};
/// let grants = Grants::default()
///     .with(Capability::HTTP)
///     .allow_host("*.example.com")
///     .unwrap();
/// assert!(grants.allows(Capability::HTTP));
/// assert!(grants.allows_host("api.example.com"));
/// assert!(!grants.allows_host("example.org"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Grants {
    capabilities: BTreeSet<String>,
    allowed_hosts: Vec<HostPattern>,
}

impl Grants {
    /// Grants a capability.
    pub fn with(mut self, capability: Capability) -> Self {
        self.capabilities.insert(capability.name().to_owned());
        self
    }

    /// Grants a capability by name (as read from a manifest).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.capabilities.insert(name.into());
        self
    }

    /// Adds a host-name pattern (`*` and `?` wildcards) that outbound HTTP may
    /// reach. Granting a host also grants [`Capability::HTTP`].
    pub fn allow_host(mut self, pattern: &str) -> Result<Self, GrantError> {
        self.allowed_hosts.push(HostPattern::parse(pattern)?);
        Ok(self.with(Capability::HTTP))
    }

    /// Whether `capability` was granted.
    pub fn allows(&self, capability: Capability) -> bool {
        self.capabilities.contains(capability.name())
    }

    /// Whether outbound HTTP may reach `host`.
    pub fn allows_host(&self, host: &str) -> bool {
        self.allows(Capability::HTTP) && self.allowed_hosts.iter().any(|p| p.matches(host))
    }

    /// The granted capability names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.capabilities.iter().map(String::as_str)
    }
}

/// A grant that cannot be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    /// A host pattern is empty or malformed.
    #[error("invalid host pattern `{pattern}`: {reason}")]
    InvalidHostPattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A refused host call: what was asked, by whom, and how to allow it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "capability `{capability}` denied for `{function}`: {detail}; grant it in the guest's manifest (`capabilities`: {hint})"
)]
pub struct Denial {
    /// The capability that was missing.
    pub capability: Capability,
    /// The host function that was called.
    pub function: String,
    /// What exactly was refused.
    pub detail: String,
    /// The manifest entry that would allow it.
    pub hint: String,
}
