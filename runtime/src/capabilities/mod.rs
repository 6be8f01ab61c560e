//! Capabilities and grants: what a guest may reach outside its sandbox.
//!
//! A guest (app or plugin) can do nothing outside its own linear memory unless
//! it was *granted* the capability that guards it. Every Buntime host function
//! declares the [`Capability`] it needs (see [`crate::wasm::HostFunction`]); the
//! host checks the caller's [`Grants`] on every call, and a denial is an error
//! the guest sees, a warning in the log naming the grant to add, and a counter.
//!
//! Each capability is one file here implementing [`CapabilitySpec`]: how its
//! manifest declaration is parsed and validated, and the host functions it
//! offers. [`SPECS`] lists them; adding a capability is one file plus one line
//! there. Manifests declare grants as JSON (`"capabilities": {"http": [...]}`);
//! the operator may narrow them in `buntime.jsonc` ([`narrow`]).

mod args;
mod context;
mod crypto;
mod events;
pub mod fs;
mod http;
mod log;
mod metrics;
mod pool;
mod services;
mod sql;
mod state;
mod upstream;

// The worked example of docs/capabilities.md §11 ("Adding a capability"),
// compiled and run by its tests so that the document cannot drift. Not in
// `SPECS`: Buntime offers no `clock` capability.
#[cfg(test)]
mod clock;
#[cfg(test)]
mod clock_tests;

use std::sync::Arc;

use serde_json::Value;

pub use context::MetricsView;
pub use context::{AppCheck, GuestContext, HostServices, PoolView, ServiceRouter};
pub use crypto::{CryptoGrant, JwksCache};
pub use events::{
    DEFAULT_MAX_STREAMS, DEFAULT_MAX_STREAMS_PER_CLIENT, Event, EventBus, EventsGrant,
    MAX_EVENT_BYTES, PLUGIN_LOADED, StreamLimits, StreamRefused, StreamTicket, TopicPattern,
    WORKER_SPAWN, WORKER_TERMINATE,
};
pub use fs::relative as fs_relative;
pub use metrics::MetricsGrant;
// The grant vocabulary, defined in the leaf module the engine shares.
pub use crate::grants::{
    Capability, Denial, GrantContext, GrantError, GrantValue, Grants, HostPattern, HttpGrant,
    UrlPattern, is_private_address, narrow,
};
pub use services::ServicesGrant;
pub use sql::{DEFAULT_MAX_TENANTS, STATEMENT_FUNCTIONS, SqlDatabases, SqlGrant};
pub use state::{NamespaceHandle, Ns, StateEntry, StateError, StateStore, bucket::Taken};
pub use upstream::{RouteSlot, RouteTable};

use crate::wasm::HostFunction;

/// One capability: how it is declared and what host functions it offers.
pub trait CapabilitySpec: Sync {
    /// The capability.
    fn capability(&self) -> Capability;

    /// One line for `docs/capabilities.md`-style listings and error hints:
    /// the declaration syntax.
    fn syntax(&self) -> &'static str;

    /// Parses a declaration (already narrowed by the operator) into the grant
    /// value the host functions read. `Ok(None)` means "not granted" (`false`).
    fn parse(&self, declared: &Value, ctx: &GrantContext<'_>)
    -> Result<Option<GrantValue>, String>;

    /// The capability's host functions in `extism:host/user`.
    fn host_functions(&self) -> Vec<HostFunction> {
        Vec::new()
    }
}

/// Every capability Buntime implements.
pub static SPECS: &[&dyn CapabilitySpec] = &[
    &log::LogSpec,
    &http::HttpSpec,
    &state::StateSpec,
    &events::EventsSpec,
    &services::ServicesSpec,
    &pool::PoolSpec,
    &sql::SqlSpec,
    &fs::FsSpec,
    &crypto::CryptoSpec,
    &upstream::UpstreamSpec,
    &metrics::MetricsSpec,
];

/// The spec of the capability called `name`.
pub fn spec(name: &str) -> Option<&'static dyn CapabilitySpec> {
    SPECS
        .iter()
        .copied()
        .find(|s| s.capability().name() == name)
}

/// The host functions of every capability (registered once in the engine),
/// each carrying its capability's declaration syntax for denials.
pub fn host_functions() -> Vec<HostFunction> {
    SPECS
        .iter()
        .flat_map(|s| {
            s.host_functions()
                .into_iter()
                .map(|f| f.grant_hint(s.syntax()))
        })
        .collect()
}

/// Parsing needs every capability's spec ([`SPECS`]), so it lives here,
/// next to them, rather than with [`Grants`] in [`crate::grants`].
impl Grants {
    /// Parses a manifest's `capabilities` object (after [`narrow`]) into grants.
    ///
    /// ```
    /// use buntime::capabilities::{Capability, GrantContext, Grants};
    /// let declared = serde_json::json!({"log": true, "http": ["https://api.example.com"]});
    /// let grants = Grants::parse(&declared, &GrantContext::default()).unwrap();
    /// assert!(grants.allows(Capability::LOG));
    /// assert!(Grants::parse(&serde_json::json!({"disk": true}), &GrantContext::default()).is_err());
    /// ```
    pub fn parse(declared: &Value, ctx: &GrantContext<'_>) -> Result<Self, GrantError> {
        let Some(map) = declared.as_object() else {
            return Err(GrantError::Invalid {
                capability: String::new(),
                reason: "`capabilities` must be an object such as {\"log\": true}".into(),
            });
        };
        let mut grants = Grants::default();
        for (name, value) in map {
            let Some(spec) = spec(name) else {
                return Err(GrantError::Unknown {
                    name: name.clone(),
                    known: SPECS.iter().map(|s| s.capability().name()).collect(),
                });
            };
            let parsed = spec
                .parse(value, ctx)
                .map_err(|reason| GrantError::Invalid {
                    capability: name.clone(),
                    reason: format!("{reason} (syntax: {})", spec.syntax()),
                })?;
            if let Some(v) = parsed {
                grants = grants.with_value(spec.capability(), v);
            }
        }
        Ok(grants)
    }
}

/// Parses a declaration that is either `true`/`false` or an empty object.
pub(crate) fn parse_flag(declared: &Value) -> Result<Option<GrantValue>, String> {
    match declared {
        Value::Bool(true) => Ok(Some(Arc::new(()))),
        Value::Bool(false) => Ok(None),
        other => Err(format!("expected true or false, found {other}")),
    }
}

pub(crate) use crate::grants::string_list;
