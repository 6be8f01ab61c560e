//! The host table: the config parsed and checked, a request's `Host`
//! normalised, and the match that picks an app and a tenant. Pure, so it
//! builds and is tested natively.
//!
//! Matching is strict on purpose: a host routes requests to an app and names
//! a tenant whose data the app (and keyval, database) serves, so a host that
//! is not a well-formed DNS name, or a subdomain that is not a valid tenant
//! name, matches nothing rather than something close.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Longest DNS name, in characters (RFC 1035 §2.3.4, without the final dot).
const MAX_HOST: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;

/// What is wrong with the config; the message names the entry and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Where a matched host sends its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The app, `name` or `name@version`: requests go to `/<app>/<path>`.
    pub app: String,
    /// Only paths under this prefix (whole segments) are served; kept in the
    /// path the app sees. `None`: every path.
    pub path_prefix: Option<String>,
}

/// A wildcard entry, `*.<domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wildcard {
    /// The domain without `*.`, e.g. `example.com`.
    domain: String,
    target: Target,
    /// Matches subdomains of any depth, not only one label.
    any_depth: bool,
    /// The subdomain becomes the tenant.
    tenant: bool,
}

/// The parsed config: exact hosts, wildcards (longest domain first), the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hosts {
    exact: BTreeMap<String, Target>,
    wildcards: Vec<Wildcard>,
    default: Option<Target>,
}

/// The outcome of matching a request's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// An entry (or the default) matched: send the request to `target`,
    /// with `tenant` if the entry names one.
    App {
        target: &'a Target,
        tenant: Option<String>,
    },
    /// The host matched an entry whose `pathPrefix` the path is not under.
    OutsidePrefix,
    /// No entry matched and there is no default.
    Unknown,
}

/// One entry's object form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EntryObject {
    app: String,
    #[serde(default)]
    path_prefix: Option<String>,
    #[serde(default)]
    any_depth: bool,
    #[serde(default = "yes")]
    tenant: bool,
}

fn yes() -> bool {
    true
}

impl Hosts {
    /// Parses the config's `hosts` and `default` values (`None`: absent).
    pub fn parse(hosts: Option<&Value>, default: Option<&Value>) -> Result<Self, ConfigError> {
        let mut table = Self::default();
        match hosts {
            None | Some(Value::Null) => {}
            Some(Value::Object(entries)) => {
                for (pattern, entry) in entries {
                    table.add(pattern, entry)?;
                }
            }
            Some(other) => {
                return Err(ConfigError(format!(
                    "`hosts` must be an object of host → app, found {other}"
                )));
            }
        }
        // The most specific wildcard wins: `*.eu.example.com` before `*.example.com`.
        table
            .wildcards
            .sort_by_key(|w| std::cmp::Reverse(w.domain.len()));
        table.default = match default {
            None | Some(Value::Null) => None,
            Some(value) => Some(entry(value, "`default`")?.0),
        };
        Ok(table)
    }

    fn add(&mut self, pattern: &str, value: &Value) -> Result<(), ConfigError> {
        let at = format!("`hosts.{pattern}`");
        let (target, any_depth, tenant) = entry(value, &at)?;
        let pattern = pattern.to_ascii_lowercase();
        if let Some(domain) = pattern.strip_prefix("*.") {
            if !valid_name(domain) || !domain.contains('.') || is_ipv4(domain) {
                return Err(ConfigError(format!(
                    "{at}: `*.{domain}` is not a wildcard over a domain: write `*.example.com` (a DNS name of two or more labels after `*.`)"
                )));
            }
            if any_depth && tenant {
                return Err(ConfigError(format!(
                    "{at}: `anyDepth` matches subdomains of several labels, which are not tenant names: set `\"tenant\": false` with it"
                )));
            }
            self.wildcards.push(Wildcard {
                domain: domain.to_owned(),
                target,
                any_depth,
                tenant,
            });
        } else {
            if !valid_name(&pattern) || is_ipv4(&pattern) {
                return Err(ConfigError(format!(
                    "{at}: `{pattern}` is not a host name: use a DNS name such as `shop.example.com` (no port, no scheme), or `*.example.com`"
                )));
            }
            if any_depth {
                return Err(ConfigError(format!(
                    "{at}: `anyDepth` applies to wildcards (`*.example.com`) only"
                )));
            }
            self.exact.insert(pattern, target);
        }
        Ok(())
    }

    /// Whether no host and no default is configured.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcards.is_empty() && self.default.is_none()
    }

    /// Matches a normalised host (see [`normalize`]; `None`: the request
    /// named none, or a malformed one, which only the default serves)
    /// and a request path.
    pub fn route(&self, host: Option<&str>, path: &str) -> Route<'_> {
        let found = host.and_then(|h| self.find(h));
        let (target, tenant) = match (found, &self.default) {
            (Some(found), _) => found,
            (None, Some(default)) => (default, None),
            (None, None) => return Route::Unknown,
        };
        match &target.path_prefix {
            Some(prefix) if !under(path, prefix) => Route::OutsidePrefix,
            _ => Route::App { target, tenant },
        }
    }

    /// The tenant `host` names through a wildcard entry, if any (for
    /// requests that are not rerouted, such as `/_/` routes).
    pub fn tenant(&self, host: &str) -> Option<String> {
        self.find(host).and_then(|(_, tenant)| tenant)
    }

    fn find(&self, host: &str) -> Option<(&Target, Option<String>)> {
        if let Some(target) = self.exact.get(host) {
            return Some((target, None));
        }
        self.wildcards.iter().find_map(|w| {
            let sub = host.strip_suffix(w.domain.as_str())?.strip_suffix('.')?;
            if sub.is_empty() || (!w.any_depth && sub.contains('.')) {
                return None;
            }
            if !w.tenant {
                return Some((&w.target, None));
            }
            // A label that is not a tenant name (e.g. `xn--…`, too long for
            // a tenant) matches nothing rather than being passed on.
            valid_tenant(sub).then(|| (&w.target, Some(sub.to_owned())))
        })
    }
}

/// Parses one entry: `"app"` or `{app, pathPrefix?, anyDepth?, tenant?}`.
fn entry(value: &Value, at: &str) -> Result<(Target, bool, bool), ConfigError> {
    let object = match value {
        Value::String(app) => EntryObject {
            app: app.clone(),
            path_prefix: None,
            any_depth: false,
            tenant: true,
        },
        Value::Object(_) => EntryObject::deserialize(value).map_err(|e| {
            ConfigError(format!(
                "{at}: {e}; an entry is an app name or {{\"app\", \"pathPrefix\"?, \"anyDepth\"?, \"tenant\"?}}"
            ))
        })?,
        other => {
            return Err(ConfigError(format!(
                "{at}: expected an app name or an object with `app`, found {other}"
            )));
        }
    };
    if !valid_app(&object.app) {
        return Err(ConfigError(format!(
            "{at}: `{}` is not an app: write `name` or `name@version` (letters, digits, `-`, `_`, `.`)",
            object.app
        )));
    }
    let path_prefix = match object.path_prefix.as_deref() {
        None | Some("") | Some("/") => None,
        Some(p) => {
            let trimmed = p.trim_end_matches('/');
            let ok = trimmed.starts_with('/')
                && !trimmed.starts_with("/_/")
                && trimmed != "/_"
                && trimmed.split('/').skip(1).all(|s| {
                    !s.is_empty()
                        && s != "."
                        && s != ".."
                        && s.bytes()
                            .all(|b| b.is_ascii_graphic() && !b"?#%".contains(&b))
                });
            if !ok {
                return Err(ConfigError(format!(
                    "{at}: `pathPrefix` `{p}` must be a path such as `/shop` (starting with `/`, no `?`, `#`, `%`, `.` or `..` segments, not under `/_/`)"
                )));
            }
            Some(trimmed.to_owned())
        }
    };
    Ok((
        Target {
            app: object.app,
            path_prefix,
        },
        object.any_depth,
        object.tenant,
    ))
}

/// Whether `path` is `prefix` or below it (whole segments: `/shop` covers
/// `/shop/a`, not `/shopping`).
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The host a request names, lower case, without port or final dot, or
/// `None` when it is absent or not a DNS name (IP literals included: they
/// never match an entry).
pub fn normalize(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let name = match raw.rsplit_once(':') {
        Some((name, port)) => {
            let digits =
                !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
            if !digits {
                return None;
            }
            name
        }
        None => raw,
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    (valid_name(&name) && !is_ipv4(&name)).then_some(name)
}

/// A DNS name: labels of 1–63 letters, digits and `-` (not at either end),
/// at most 253 characters in all.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HOST
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_ipv4(name: &str) -> bool {
    name.split('.')
        .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// A tenant name as keyval and database accept it (1–64 letters, digits,
/// `-`, `_`), here from one DNS label.
pub fn valid_tenant(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 64
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `name` or `name@version`, as the app routes accept them.
fn valid_app(app: &str) -> bool {
    let (name, version) = match app.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (app, None),
    };
    let name_ok = !name.is_empty()
        && !name.starts_with('.')
        && name != "_"
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let version_ok = version.is_none_or(|v| {
        !v.is_empty()
            && v.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'^' | b'~' | b'*')
            })
    });
    name_ok && version_ok
}

#[cfg(test)]
#[path = "hosts_tests.rs"]
mod tests;
