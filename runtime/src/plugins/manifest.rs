//! `manifest.jsonc`: what a plugin is, needs and promises.
//!
//! ```jsonc
//! {
//!   "name": "@acme/plugin-ratelimit",   // unique; `@scope/name` or `name`
//!   "version": "1.2.0",                 // semver
//!   "base": "ratelimit",                // routes at /_/ratelimit/* (optional)
//!   "dependencies": [],                 // must load first
//!   "optionalDependencies": [],         // load first when present
//!   "capabilities": { "state": true },  // deny by default
//!   "limits": { "memory": "32mb", "timeout": "50ms", "instances": 8 },
//!   "onError": "closed",                // or "open": skip the plugin on failure
//!   "requestBody": "64kb",              // on_request sees bodies up to this size
//!   "maxResponseBodySize": "10mb",      // largest body it may answer with (default 10mb)
//!   "services": ["check"],              // exports other plugins may call
//!   "config": { "limit": 100 },         // defaults, overridden by buntime.jsonc
//!   "menus": [{ "title": "Rate limit", "icon": "lucide:gauge", "path": "/" }],
//!   "publicRoutes": { "GET": ["/health"] }, // answer without a key (default: none)
//!   "coreRoutes": "headers"             // on_request adds CORS headers to core routes too
//! }
//! ```
//!
//! Unknown keys are refused so a typo cannot silently drop a setting; every
//! error names the file and the field.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{
    ConfigError, DEFAULT_MAX_RESPONSE_BODY, duration_value, json5_message, response_size_value,
    size_value,
};

/// The manifest's file name.
pub const MANIFEST_FILE: &str = "manifest.jsonc";

/// Internal path segments no plugin may take as its `base`.
pub const RESERVED_BASES: [&str; 6] = ["api", "metrics", "stats", "sse", "health", "static"];

/// What a failing plugin does to the request it was handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Fail the request (502/503 naming the plugin). The default: an auth
    /// plugin that crashes must not let requests through.
    #[default]
    Closed,
    /// Skip the plugin and carry on.
    Open,
}

/// What a plugin's `on_request` may do on the core routes (`/_/api/*` and
/// the others of `server::routes`), which never pass through the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CoreRoutes {
    /// Nothing: it is not called for them. The default.
    #[default]
    None,
    /// It is called, and the host keeps only the CORS headers it asks for
    /// and its answers to CORS preflights (`server::core_headers`).
    Headers,
}

/// Resource limits of each hook call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory (and memory-block arena) cap per instance.
    pub memory: u64,
    /// Deadline of one hook call.
    pub timeout: Duration,
    /// Most instances running at once (and kept warm).
    pub instances: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 32 << 20,
            timeout: Duration::from_millis(500),
            instances: 8,
        }
    }
}

/// A validated plugin manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Unique name.
    pub name: String,
    /// Version.
    pub version: semver::Version,
    /// Routes at `/_/<base>/*`.
    pub base: Option<String>,
    /// Plugins that must load first.
    pub dependencies: Vec<String>,
    /// Plugins that load first when present.
    pub optional_dependencies: Vec<String>,
    /// Declared capabilities (parsed into grants at load).
    pub capabilities: Value,
    /// Per-call limits.
    pub limits: Limits,
    /// Failure policy.
    pub on_error: OnError,
    /// Largest request body `on_request` receives; `None` = none.
    pub request_body: Option<u64>,
    /// Largest body its `respond` decisions and routes may answer with.
    pub max_response_body_size: u64,
    /// Largest request body its own routes (`handle`) accept.
    pub max_route_body_size: u64,
    /// Exports other plugins may call through `services`.
    pub services: Vec<String>,
    /// Config defaults.
    pub config: serde_json::Map<String, Value>,
    /// Admin UI menu entries, passed through.
    pub menus: Value,
    /// `false`: discovered but not loaded unless `buntime.jsonc` lists it.
    pub enabled: bool,
    /// One line for listings.
    pub description: Option<String>,
    /// Routes under `/_/<base>/` that answer without a key.
    pub public_routes: crate::config::PublicRoutes,
    /// `routePermissions`: by method, the core API permission a key needs
    /// on this plugin's routes instead of `plugin:<base>:read|write` (a
    /// plugin that manages apps asks for `apps:install` like the core API).
    pub route_permissions: Vec<(String, crate::access::Permission)>,
    /// `spoolUploads`: routes whose bodies the host streams to a file.
    pub spool_uploads: Option<super::SpoolUploads>,
    /// `coreRoutes`: whether `on_request` also runs, restricted, for the
    /// core routes.
    pub core_routes: CoreRoutes,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    name: Option<String>,
    version: Option<String>,
    base: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
    #[serde(default)]
    optional_dependencies: Vec<String>,
    capabilities: Option<Value>,
    limits: Option<RawLimits>,
    on_error: Option<Value>,
    request_body: Option<Value>,
    max_response_body_size: Option<Value>,
    max_route_body_size: Option<Value>,
    #[serde(default)]
    services: Vec<String>,
    config: Option<Value>,
    menus: Option<Value>,
    enabled: Option<bool>,
    description: Option<String>,
    public_routes: Option<Value>,
    route_permissions: Option<BTreeMap<String, String>>,
    spool_uploads: Option<Value>,
    core_routes: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory: Option<Value>,
    timeout: Option<Value>,
    instances: Option<usize>,
}

impl Manifest {
    /// Parses the text of a `manifest.jsonc` (`file` is for errors).
    ///
    /// ```
    /// use buntime::plugins::Manifest;
    /// let m = Manifest::parse(r#"{ name: "@acme/hello", version: "1.0.0", base: "hello",
    ///     limits: { timeout: "50ms" } }"#, "manifest.jsonc".as_ref()).unwrap();
    /// assert_eq!(m.limits.timeout.as_millis(), 50);
    /// let e = Manifest::parse(r#"{ name: "x", version: "1", base: "a/b" }"#, "manifest.jsonc".as_ref()).unwrap_err();
    /// assert!(e.to_string().contains("`version`"), "{e}");
    /// ```
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let raw: Raw =
            json5::from_str(text).map_err(|e| ConfigError::new(file, "", json5_message(e)))?;
        let err = |field: &str, msg: String| ConfigError::new(file, field, msg);

        let name = raw
            .name
            .ok_or_else(|| err("name", "is required, e.g. \"@acme/plugin-hello\"".into()))?;
        if !valid_plugin_name(&name) {
            return Err(err(
                "name",
                format!(
                    "`{name}` is not a valid name: use `name` or `@scope/name` with lowercase letters, digits, `-`, `_` and `.`"
                ),
            ));
        }
        let version = raw.version.ok_or_else(|| {
            err(
                "version",
                "is required, a semver version such as \"1.0.0\"".into(),
            )
        })?;
        let version = semver::Version::parse(&version).map_err(|e| {
            err(
                "version",
                format!("`{version}` is not a semver version: {e}"),
            )
        })?;
        let base = match raw.base.as_deref().map(|b| b.trim_matches('/')) {
            None | Some("") => None,
            Some(b) => {
                if !b
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(err(
                        "base",
                        format!("`{b}` must be one path segment of letters, digits, `-` and `_`"),
                    ));
                }
                if RESERVED_BASES.contains(&b) {
                    return Err(err(
                        "base",
                        format!(
                            "`{b}` is reserved for the runtime ({})",
                            RESERVED_BASES.join(", ")
                        ),
                    ));
                }
                Some(b.to_owned())
            }
        };
        for (field, deps) in [
            ("dependencies", &raw.dependencies),
            ("optionalDependencies", &raw.optional_dependencies),
        ] {
            if let Some(bad) = deps.iter().find(|d| !valid_plugin_name(d)) {
                return Err(err(field, format!("`{bad}` is not a valid plugin name")));
            }
            if deps.contains(&name) {
                return Err(err(field, "a plugin cannot depend on itself".into()));
            }
        }
        let capabilities = match raw.capabilities {
            None => Value::Object(Default::default()),
            Some(v @ Value::Object(_)) => v,
            Some(other) => {
                return Err(err(
                    "capabilities",
                    format!("must be an object, found {other}"),
                ));
            }
        };
        let mut limits = Limits::default();
        if let Some(l) = raw.limits {
            if let Some(v) = l.memory {
                limits.memory = size_value(&v).map_err(|m| err("limits.memory", m))?;
                if limits.memory < (1 << 20) {
                    return Err(err("limits.memory", "must be at least 1mb".into()));
                }
            }
            if let Some(v) = l.timeout {
                limits.timeout = duration_value(&v).map_err(|m| err("limits.timeout", m))?;
                if limits.timeout.is_zero() {
                    return Err(err("limits.timeout", "must be greater than 0".into()));
                }
            }
            if let Some(n) = l.instances {
                if n == 0 || n > 1024 {
                    return Err(err(
                        "limits.instances",
                        format!("must be 1 to 1024, got {n}"),
                    ));
                }
                limits.instances = n;
            }
        }
        let on_error = match raw.on_error {
            None => OnError::Closed,
            Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
                err(
                    "onError",
                    format!("must be \"closed\" or \"open\", found {v}"),
                )
            })?,
        };
        let request_body = raw
            .request_body
            .map(|v| size_value(&v).map_err(|m| err("requestBody", m)))
            .transpose()?
            .filter(|&n| n > 0);
        if let Some(n) = request_body
            && n > crate::config::MAX_BODY_CEILING
        {
            return Err(err(
                "requestBody",
                format!("must be at most 100mb, got {n} bytes"),
            ));
        }
        let max_response_body_size = raw
            .max_response_body_size
            .map(|v| response_size_value(&v).map_err(|m| err("maxResponseBodySize", m)))
            .transpose()?
            .unwrap_or(DEFAULT_MAX_RESPONSE_BODY);
        if max_response_body_size > crate::config::MAX_BODY_CEILING {
            return Err(err(
                "maxResponseBodySize",
                format!("must be at most 100mb, got {max_response_body_size} bytes"),
            ));
        }
        let max_route_body_size = raw
            .max_route_body_size
            .map(|v| response_size_value(&v).map_err(|m| err("maxRouteBodySize", m)))
            .transpose()?
            .unwrap_or(crate::config::DEFAULT_MAX_BODY);
        if max_route_body_size > crate::config::MAX_BODY_CEILING {
            return Err(err(
                "maxRouteBodySize",
                format!("must be at most 100mb, got {max_route_body_size} bytes"),
            ));
        }
        for s in &raw.services {
            if s.is_empty() || s.starts_with("on_") || s == "handle" || s.starts_with('_') {
                return Err(err(
                    "services",
                    format!(
                        "`{s}` cannot be a service: hooks, `handle` and `_`-names are not callable by other plugins"
                    ),
                ));
            }
        }
        let config = match raw.config {
            None | Some(Value::Null) => Default::default(),
            Some(Value::Object(m)) => m,
            Some(other) => return Err(err("config", format!("must be an object, found {other}"))),
        };
        let public_routes =
            crate::config::PublicRoutes::parse(raw.public_routes.as_ref().unwrap_or(&Value::Null))
                .map_err(|m| err("publicRoutes", m))?;
        let mut route_permissions = Vec::new();
        for (method, name) in raw.route_permissions.unwrap_or_default() {
            let Some(p) = crate::access::Permission::ALL
                .into_iter()
                .find(|p| p.as_str() == name)
            else {
                let known: Vec<&str> = crate::access::Permission::ALL
                    .iter()
                    .map(|p| p.as_str())
                    .collect();
                return Err(err(
                    "routePermissions",
                    format!(
                        "`{name}` is not a core permission; use one of {}",
                        known.join(", ")
                    ),
                ));
            };
            route_permissions.push((method.to_ascii_uppercase(), p));
        }
        let spool_uploads = raw
            .spool_uploads
            .filter(|v| !v.is_null())
            .map(|v| super::SpoolUploads::parse(&v).map_err(|m| err("spoolUploads", m)))
            .transpose()?;
        let core_routes = match raw.core_routes {
            None | Some(Value::Null) => CoreRoutes::None,
            Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
                err(
                    "coreRoutes",
                    format!("must be \"headers\" or \"none\", found {v}"),
                )
            })?,
        };
        Ok(Self {
            core_routes,
            public_routes,
            route_permissions,
            spool_uploads,
            name,
            version,
            base,
            dependencies: raw.dependencies,
            optional_dependencies: raw.optional_dependencies,
            capabilities,
            limits,
            on_error,
            request_body,
            max_response_body_size,
            max_route_body_size,
            services: raw.services,
            config,
            menus: raw.menus.unwrap_or(Value::Array(Vec::new())),
            enabled: raw.enabled.unwrap_or(true),
            description: raw.description,
        })
    }

    /// Required and optional dependencies together.
    pub fn all_dependencies(&self) -> Vec<String> {
        self.dependencies
            .iter()
            .chain(&self.optional_dependencies)
            .cloned()
            .collect()
    }
}

/// `name` or `@scope/name`, lowercase letters, digits, `-`, `_`, `.`.
pub fn valid_plugin_name(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 100
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
    };
    match name.strip_prefix('@') {
        Some(scoped) => scoped
            .split_once('/')
            .is_some_and(|(scope, n)| part(scope) && part(n)),
        None => part(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ConfigError> {
        Manifest::parse(text, Path::new("p/manifest.jsonc"))
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{version: "1.0.0"}"#, "name"),
            (r#"{name: "Bad Name", version: "1.0.0"}"#, "name"),
            (r#"{name: "a", version: "one"}"#, "version"),
            (r#"{name: "a", version: "1.0.0", base: "api"}"#, "base"),
            (
                r#"{name: "a", version: "1.0.0", limits: {timeout: "soon"}}"#,
                "limits.timeout",
            ),
            (
                r#"{name: "a", version: "1.0.0", limits: {memory: "1kb"}}"#,
                "limits.memory",
            ),
            (
                r#"{name: "a", version: "1.0.0", onError: "maybe"}"#,
                "onError",
            ),
            (
                r#"{name: "a", version: "1.0.0", spoolUploads: {routes: ["/up"], dir: "../x"}}"#,
                "spoolUploads",
            ),
            (
                r#"{name: "a", version: "1.0.0", spoolUploads: {routes: ["/up"], dir: "u", maxSize: "2gb"}}"#,
                "spoolUploads",
            ),
            (
                r#"{name: "a", version: "1.0.0", dependencies: ["a"]}"#,
                "dependencies",
            ),
            (
                r#"{name: "a", version: "1.0.0", services: ["on_request"]}"#,
                "services",
            ),
            (
                r#"{name: "a", version: "1.0.0", capabilities: []}"#,
                "capabilities",
            ),
            (
                r#"{name: "a", version: "1.0.0", maxResponseBodySize: "1gb"}"#,
                "maxResponseBodySize",
            ),
            (
                r#"{name: "a", version: "1.0.0", publicRoutes: ["health"]}"#,
                "publicRoutes",
            ),
            (
                r#"{name: "a", version: "1.0.0", routePermissions: {POST: "apps:everything"}}"#,
                "routePermissions",
            ),
            (
                r#"{name: "a", version: "1.0.0", coreRoutes: "all"}"#,
                "coreRoutes",
            ),
        ];
        for (text, field) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
            assert!(e.to_string().starts_with("p/manifest.jsonc"), "{e}");
        }
        let e = parse(r#"{name: "a", version: "1.0.0", bsae: "x"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `bsae`"), "{e}");
    }

    #[test]
    fn core_routes_are_off_unless_asked_for() {
        let m = parse(r#"{name: "a", version: "1.0.0"}"#).unwrap();
        assert_eq!(m.core_routes, CoreRoutes::None);
        let m = parse(r#"{name: "a", version: "1.0.0", coreRoutes: "headers"}"#).unwrap();
        assert_eq!(m.core_routes, CoreRoutes::Headers);
    }

    #[test]
    fn names() {
        for ok in ["a", "plugin-x", "@buntime/plugin-keyval", "a.b_c"] {
            assert!(valid_plugin_name(ok), "{ok}");
        }
        for bad in ["", "@x", "@/x", "A", "a/b", "../x", "@a/b/c"] {
            assert!(!valid_plugin_name(bad), "{bad}");
        }
    }
}
