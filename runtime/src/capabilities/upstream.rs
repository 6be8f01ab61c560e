//! `upstream`: the upstreams a plugin may delegate a request to, and the
//! route table the host runs for it.
//!
//! A plugin's `on_request` may answer `proxy` with a URL; the host then
//! forwards the request there itself (`server::upstream`). The grant lists
//! the URLs that may be reached, with the `http` grant's patterns and its
//! private-network rule (refused after DNS unless the grant names the host
//! or sets `privateNetworks`), so the two read and behave alike. The host
//! checks the grant when it acts on the answer.
//!
//! A plugin whose routing is a list of rules can instead install them
//! (`upstream_routes`): the host matches every request against the table at
//! the plugin's place in the chain and forwards a match itself, with no
//! call into the plugin (`server::upstream_routes`). The plugin stays the
//! control plane: it validates, stores and serves its rules, and installs
//! the table again whenever they change. The rules are those of
//! [`buntime_routes`], compiled here under the same limits the plugin
//! checked them with; every target is still checked against the grant on
//! each request.

use std::any::Any;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use buntime_routes::Rule;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::args::{argument, parse, to_json};
use super::{Capability, CapabilitySpec, GrantContext, GrantValue, GuestContext, HttpGrant};
use crate::wasm::{HostError, HostFunction, HostState, ResultEncoding};

/// The `upstream` capability; its grant is an [`super::HttpGrant`].
pub(super) struct UpstreamSpec;

impl CapabilitySpec for UpstreamSpec {
    fn capability(&self) -> Capability {
        Capability::UPSTREAM
    }

    fn syntax(&self) -> &'static str {
        "\"upstream\": [\"http://127.0.0.1:*\", \"https://*.svc.cluster.local\"] or {\"allow\": [...], \"privateNetworks\": true}"
    }

    fn parse(&self, declared: &Value, _: &GrantContext<'_>) -> Result<Option<GrantValue>, String> {
        Ok(HttpGrant::parse_declaration(declared)?.map(|g| Arc::new(g) as GrantValue))
    }

    fn host_functions(&self) -> Vec<HostFunction> {
        vec![HostFunction::new(
            "upstream_routes",
            Capability::UPSTREAM,
            1,
            ResultEncoding::Envelope,
            |state: &mut HostState, args| {
                let request = GuestContext::of_ref(state).and_then(|cx| {
                    let install: Install = parse(argument(state, args[0])?)?;
                    Ok((cx.routes.clone(), install))
                });
                Box::pin(async move {
                    let (slot, install) = request?;
                    // An older table is not compiled at all.
                    let installed = slot.current();
                    if installed
                        .as_ref()
                        .is_some_and(|t| t.version > install.version)
                    {
                        return to_json(Installed { installed: false });
                    }
                    // Compiling up to 2 000 patterns is CPU work: on the
                    // blocking pool, never on an async worker.
                    let table = tokio::task::spawn_blocking(move || {
                        let reuse = installed.as_deref().map_or(&[][..], |t| &t.rules[..]);
                        RouteTable::compile(install.version, install.routes, reuse)
                    })
                    .await
                    .map_err(|_| {
                        HostError::new("internal", "compiling the route table was interrupted")
                    })?
                    .map_err(|e| HostError::invalid_argument(e.to_string()))?;
                    to_json(Installed {
                        installed: slot.install(table),
                    })
                })
            },
        )]
    }
}

/// `upstream_routes`' argument.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Install {
    /// Orders installs: an older table never replaces a newer one.
    version: u64,
    routes: Vec<Value>,
}

/// `upstream_routes`' answer.
#[derive(Serialize)]
struct Installed {
    installed: bool,
}

/// A plugin's route rules, compiled, in the order they are tried.
#[derive(Debug)]
pub struct RouteTable {
    /// The version the plugin installed it under.
    pub version: u64,
    /// The rules; the first that matches a request routes it.
    pub rules: Vec<Rule>,
    /// What the server derives from the rules to forward by them (each
    /// rule's checked header changes, limits and, when fixed, its target's
    /// origin), made on the table's first request. Held as `Any`: this
    /// module sits below the server, whose type it is.
    pub derived: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl RouteTable {
    /// Compiles `routes` (each a rule as `buntime_routes::RuleSpec` reads
    /// it), keeping the compiled pattern of any rule equal to one of
    /// `installed`; the error names the rule at fault as `routes[i]`.
    ///
    /// ```
    /// use buntime::capabilities::RouteTable;
    /// let rules = vec![serde_json::json!({"pattern": "^/api/(.*)$", "target": "http://svc:8080/$1"})];
    /// assert_eq!(RouteTable::compile(1, rules, &[]).unwrap().rules.len(), 1);
    /// let bad = vec![serde_json::json!({"pattern": "(", "target": "http://svc"})];
    /// assert!(RouteTable::compile(1, bad, &[]).unwrap_err().to_string().starts_with("`routes[0]`"));
    /// ```
    pub fn compile(
        version: u64,
        routes: Vec<Value>,
        installed: &[Rule],
    ) -> Result<Self, buntime_routes::RuleError> {
        Ok(Self {
            version,
            rules: buntime_routes::parse_routes(routes, installed)?,
            derived: OnceLock::new(),
        })
    }
}

/// Where a plugin's installed table lives: shared by its guest context
/// (which installs) and the plugin (whose place in the chain reads it).
#[derive(Debug, Default)]
pub struct RouteSlot {
    installed: RwLock<Option<Arc<RouteTable>>>,
}

impl RouteSlot {
    /// Installs `table` unless the installed one is newer; whether it did.
    pub fn install(&self, table: RouteTable) -> bool {
        let mut slot = self
            .installed
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|t| t.version > table.version) {
            return false;
        }
        *slot = Some(Arc::new(table));
        true
    }

    /// The installed table, shared.
    pub fn current(&self) -> Option<Arc<RouteTable>> {
        self.installed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `f` of the installed table (`None` before the first install), under
    /// a read lock held only for the call: matching a request borrows the
    /// rules rather than counting a reference on every request.
    pub fn with<T>(&self, f: impl FnOnce(Option<&RouteTable>) -> T) -> T {
        let slot = self
            .installed
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f(slot.as_deref())
    }
}
