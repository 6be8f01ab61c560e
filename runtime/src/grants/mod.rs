//! The vocabulary of grants: capability names, what a guest was granted,
//! how the operator narrows a declaration, and the denial a refused call
//! returns.
//!
//! This is the leaf both sides of the sandbox speak: the engine (`wasm`)
//! checks a host function's [`Capability`] against the calling guest's
//! [`Grants`] and answers with a [`Denial`]; the capabilities
//! (`capabilities`) parse declarations into grants and implement the host
//! functions; the configuration (`config`) checks manifests against the
//! operator's ceiling. It depends on none of them. The `http` grant's URL
//! patterns and private-address rules live here too, because the engine's
//! own outbound client (`http_request`) enforces them.

mod hosts;
mod http;

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

pub use hosts::HostPattern;
pub(crate) use hosts::glob_match;
pub use http::{HttpGrant, UrlPattern, is_private_address};
pub(crate) use http::{PublicOnlyResolver, public_addrs, resolves_only_private};

/// The name of a capability, e.g. `http` or `log`.
///
/// ```
/// use buntime::capabilities::Capability;
/// assert_eq!(Capability::HTTP.name(), "http");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(&'static str);

impl Capability {
    /// Outbound HTTP requests (`extism:host/env::http_request`).
    pub const HTTP: Capability = Capability("http");
    /// Writing to the host's log (plugins; apps always may).
    pub const LOG: Capability = Capability("log");
    /// A host-side key-value namespace shared by a plugin's instances.
    pub const STATE: Capability = Capability("state");
    /// Publishing and subscribing to events.
    pub const EVENTS: Capability = Capability("events");
    /// Calling functions exported by plugins one depends on.
    pub const SERVICES: Capability = Capability("services");
    /// Reading the worker pool's stats and the app list.
    pub const POOL: Capability = Capability("pool");
    /// Named SQLite databases in the host.
    pub const SQL: Capability = Capability("sql");
    /// Files below directories the operator grants.
    pub const FS: Capability = Capability("fs");
    /// Hashes, MACs, random bytes, password hashes and JWS verification.
    pub const CRYPTO: Capability = Capability("crypto");
    /// Delegating a request to an upstream (`on_request`'s `proxy`).
    pub const UPSTREAM: Capability = Capability("upstream");

    /// Declares a capability by name. Names are lowercase identifiers.
    pub const fn new(name: &'static str) -> Self {
        Capability(name)
    }

    /// Its cell in [`CapabilityCounts`].
    #[inline]
    pub fn index(self) -> usize {
        COUNTED
            .iter()
            .position(|n| *n == self.0)
            .unwrap_or(COUNTED.len())
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

/// What a declaration parser may consult.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrantContext<'a> {
    /// The plugin's required and optional dependencies.
    pub dependencies: &'a [String],
}

/// A parsed grant, typed by its capability.
pub type GrantValue = Arc<dyn Any + Send + Sync>;

/// What one guest has been granted.
///
/// Deny by default: [`Grants::default`] grants nothing. The Extism ABI's own
/// basics (memory, input, output, config, vars) need no grant.
///
/// ```
/// use buntime::capabilities::{Capability, Grants};
/// let grants = Grants::default()
///     .with(Capability::LOG)
///     .allow_host("*.example.com")
///     .unwrap();
/// assert!(grants.allows(Capability::HTTP));
/// assert!(grants.allows_host("api.example.com"));
/// assert!(!grants.allows_host("example.org"));
/// ```
#[derive(Clone, Default)]
pub struct Grants {
    granted: BTreeMap<String, GrantValue>,
    /// Calls and denials by capability, shared by every copy of these
    /// grants (every instance of the guest).
    pub counts: Arc<CapabilityCounts>,
}

/// The capability names counted apart, in [`Capability::index`] order;
/// any other capability is counted under `other` (the last cell).
pub const COUNTED: [&str; 11] = [
    "log", "http", "state", "events", "services", "pool", "sql", "fs", "crypto", "upstream",
    "metrics",
];

/// Cells of [`CapabilityCounts`]: [`COUNTED`] and `other`.
pub const COUNT_CELLS: usize = COUNTED.len() + 1;

/// A guest's host calls and denials by capability: one atomic add where
/// the host checks the grant.
#[derive(Debug, Default)]
pub struct CapabilityCounts {
    /// Calls the grant allowed.
    pub calls: crate::counter::Cells<COUNT_CELLS>,
    /// Calls refused.
    pub denials: crate::counter::Cells<COUNT_CELLS>,
}

impl CapabilityCounts {
    /// The label of cell `i`.
    pub fn label(i: usize) -> &'static str {
        COUNTED.get(i).copied().unwrap_or("other")
    }
}

impl fmt::Debug for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.granted.keys()).finish()
    }
}

impl Grants {
    /// Grants a capability with no parameters.
    pub fn with(mut self, capability: Capability) -> Self {
        self.granted
            .entry(capability.name().to_owned())
            .or_insert_with(|| Arc::new(()));
        self
    }

    /// Grants a capability by name (as read from a manifest).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.granted
            .entry(name.into())
            .or_insert_with(|| Arc::new(()));
        self
    }

    /// Grants a capability with its parsed parameters.
    pub fn with_value(mut self, capability: Capability, value: GrantValue) -> Self {
        self.granted.insert(capability.name().to_owned(), value);
        self
    }

    /// Adds a host-name pattern (`*` and `?` wildcards) that outbound HTTP may
    /// reach on any port, over HTTP or HTTPS. Granting a host also grants
    /// [`Capability::HTTP`].
    pub fn allow_host(self, pattern: &str) -> Result<Self, GrantError> {
        let url = UrlPattern::any_scheme(HostPattern::parse(pattern)?);
        let mut http = self
            .get::<HttpGrant>(Capability::HTTP)
            .cloned()
            .unwrap_or_default();
        http.patterns.push(url);
        Ok(self.with_value(Capability::HTTP, Arc::new(http)))
    }

    /// Whether `capability` was granted.
    pub fn allows(&self, capability: Capability) -> bool {
        self.granted.contains_key(capability.name())
    }

    /// The parsed grant of `capability`, if granted with parameters of type `T`.
    pub fn get<T: Any + Send + Sync>(&self, capability: Capability) -> Option<&T> {
        self.granted.get(capability.name())?.downcast_ref::<T>()
    }

    /// Whether outbound HTTP may reach `host` (some scheme, some port).
    pub fn allows_host(&self, host: &str) -> bool {
        self.get::<HttpGrant>(Capability::HTTP)
            .is_some_and(|g| g.patterns.iter().any(|p| p.host.matches(host)))
    }

    /// The granted capability names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.granted.keys().map(String::as_str)
    }
}

/// Narrows a declaration by the operator's override, both as JSON.
///
/// The operator can only take away: `false` revokes a capability; a list keeps
/// only the entries listed (each must also be declared); an object narrows
/// key by key; `true` keeps what was declared. Anything the manifest did not
/// declare cannot be added here.
///
/// ```
/// use serde_json::json;
/// use buntime::capabilities::narrow;
/// let declared = json!({"log": true, "http": ["https://a.example", "https://b.example"]});
/// let narrowed = narrow(&declared, &json!({"log": false, "http": ["https://a.example"]})).unwrap();
/// assert_eq!(narrowed, json!({"http": ["https://a.example"]}));
/// assert!(narrow(&declared, &json!({"http": ["https://c.example"]})).is_err());
/// ```
pub fn narrow(declared: &Value, operator: &Value) -> Result<Value, GrantError> {
    let (Some(declared), Some(operator)) = (declared.as_object(), operator.as_object()) else {
        return Err(GrantError::Invalid {
            capability: String::new(),
            reason: "`capabilities` must be an object".into(),
        });
    };
    let mut out = declared.clone();
    for (name, op) in operator {
        let Some(decl) = declared.get(name) else {
            if op == &Value::Bool(false) {
                continue; // revoking what was never granted
            }
            return Err(GrantError::NotDeclared {
                capability: name.clone(),
                entry: op.to_string(),
            });
        };
        match narrow_value(decl, op).map_err(|entry| GrantError::NotDeclared {
            capability: name.clone(),
            entry,
        })? {
            Some(v) => {
                out.insert(name.clone(), v);
            }
            None => {
                out.remove(name);
            }
        }
    }
    Ok(Value::Object(out))
}

/// `Ok(None)` = revoked; `Err(entry)` = `entry` was not declared.
fn narrow_value(decl: &Value, op: &Value) -> Result<Option<Value>, String> {
    match (decl, op) {
        (_, Value::Bool(false)) => Ok(None),
        (Value::Bool(false), _) => Err(op.to_string()),
        (_, Value::Bool(true)) => Ok(Some(decl.clone())),
        (Value::Array(d), Value::Array(o)) => {
            for entry in o {
                if !d.contains(entry) {
                    return Err(entry.to_string());
                }
            }
            Ok(Some(op.clone()))
        }
        (Value::Object(d), Value::Object(o)) => {
            let mut out = d.clone();
            for (k, v) in o {
                let Some(dv) = d.get(k) else {
                    return Err(format!("{k}: {v}"));
                };
                match narrow_value(dv, v)? {
                    Some(v) => out.insert(k.clone(), v),
                    None => out.insert(k.clone(), Value::Bool(false)),
                };
            }
            Ok(Some(Value::Object(out)))
        }
        _ if decl == op => Ok(Some(op.clone())),
        _ => Err(op.to_string()),
    }
}

/// A grant that cannot be accepted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    /// A host pattern is empty or malformed.
    #[error("invalid host pattern `{pattern}`: {reason}")]
    InvalidHostPattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No such capability.
    #[error("unknown capability `{name}`; known capabilities: {}", known.join(", "))]
    Unknown {
        /// The name as written.
        name: String,
        /// What exists.
        known: Vec<&'static str>,
    },
    /// The declaration does not parse.
    #[error("capability `{capability}`: {reason}")]
    Invalid {
        /// The capability.
        capability: String,
        /// What is wrong and the syntax expected.
        reason: String,
    },
    /// The operator tried to grant what the manifest did not declare.
    #[error(
        "capability `{capability}`: `{entry}` is not declared in the plugin's manifest; buntime.jsonc can only narrow a plugin's grants"
    )]
    NotDeclared {
        /// The capability.
        capability: String,
        /// The entry that is not declared.
        entry: String,
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

/// Reads a string list from a declaration.
pub(crate) fn string_list(value: &Value, what: &str) -> Result<Vec<String>, String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{what} entries must be strings, found {v}"))
            })
            .collect(),
        Value::Bool(false) => Ok(Vec::new()),
        other => Err(format!("{what} must be a list of strings, found {other}")),
    }
}
