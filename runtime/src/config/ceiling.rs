//! The operator's ceiling over apps: `apps.ceiling` in `buntime.jsonc`.
//!
//! An app's `worker.jsonc` is written by whoever deploys the app; the ceiling
//! is the most the operator lets any app ask for. An app asking for more is
//! not loaded: the error names the app's file, the field, the value asked,
//! the ceiling and the `buntime.jsonc` field to raise.
//!
//! ```jsonc
//! {
//!   "apps": {
//!     "ceiling": {
//!       "timeout": "5m", "maxConcurrency": 1000, "maxQueue": 10000, "maxBodySize": "100mb",
//!       "capabilities": { "http": { "allow": ["*"], "privateNetworks": false } }
//!     }
//!   }
//! }
//! ```
//!
//! The numeric fields are one table, [`LIMITS`]: a further `worker.jsonc`
//! size or count is held to a ceiling by one more row there.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::worker::{AppConfig, WORKER_CONFIG_FILE};
use super::{ConfigError, duration_value, size_value};
use crate::grants::{HttpGrant, UrlPattern};

/// How a limit is written and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds, written as a duration (`"5m"`, `30`).
    Millis,
    /// A plain count.
    Count,
    /// Bytes, written as a size (`"100mb"`).
    Bytes,
}

/// One numeric `worker.jsonc` field the ceiling bounds.
#[derive(Debug)]
pub struct Limit {
    /// The field, as written in both files.
    pub field: &'static str,
    /// How it is written.
    pub unit: Unit,
    /// The ceiling when `buntime.jsonc` does not set one.
    pub default: u64,
    /// What an app's config asks for, in `unit`.
    pub asked: fn(&AppConfig) -> u64,
    /// Sets the field (in `unit`): a default above the ceiling is lowered to it.
    pub set: fn(&mut AppConfig, u64),
}

/// Every numeric field under the ceiling, with its default.
pub const LIMITS: &[Limit] = &[
    Limit {
        field: "timeout",
        unit: Unit::Millis,
        default: 5 * 60 * 1000,
        asked: |c| c.timeout.as_millis().try_into().unwrap_or(u64::MAX),
        set: |c, n| c.timeout = Duration::from_millis(n),
    },
    Limit {
        field: "maxConcurrency",
        unit: Unit::Count,
        default: 1000,
        asked: |c| c.max_concurrency as u64,
        set: |c, n| c.max_concurrency = usize::try_from(n).unwrap_or(usize::MAX),
    },
    Limit {
        field: "maxQueue",
        unit: Unit::Count,
        default: 10_000,
        asked: |c| c.max_queue as u64,
        set: |c, n| c.max_queue = usize::try_from(n).unwrap_or(usize::MAX),
    },
    Limit {
        field: "maxBodySize",
        unit: Unit::Bytes,
        default: 100 << 20,
        asked: |c| c.max_body_size,
        set: |c, n| c.max_body_size = n,
    },
    Limit {
        field: "maxResponseBodySize",
        unit: Unit::Bytes,
        default: 100 << 20,
        asked: |c| c.max_response_body_size,
        set: |c, n| c.max_response_body_size = n,
    },
];

/// The parsed `apps.ceiling`.
#[derive(Debug, Clone)]
pub struct AppCeiling {
    /// One value per row of [`LIMITS`], in the same order.
    limits: Vec<u64>,
    /// The widest `http` grant an app may hold.
    http: HttpGrant,
}

impl Default for AppCeiling {
    fn default() -> Self {
        Self {
            limits: LIMITS.iter().map(|l| l.default).collect(),
            http: any_public_host(),
        }
    }
}

impl PartialEq for AppCeiling {
    fn eq(&self, other: &Self) -> bool {
        self.limits == other.limits
            && self.http.private_networks == other.http.private_networks
            && self.http.patterns == other.http.patterns
    }
}

/// The default `http` ceiling: any host, any scheme and port, public
/// addresses only.
fn any_public_host() -> HttpGrant {
    HttpGrant {
        patterns: UrlPattern::parse("*").into_iter().collect(),
        private_networks: false,
    }
}

const FIELD: &str = "apps.ceiling";

impl AppCeiling {
    /// The ceiling of `field` (a [`LIMITS`] field), in its unit.
    pub fn limit(&self, field: &str) -> Option<u64> {
        LIMITS
            .iter()
            .position(|l| l.field == field)
            .and_then(|i| self.limits.get(i).copied())
    }

    /// Parses the value of `apps` in `buntime.jsonc` (`file` is for errors).
    pub fn parse_apps(value: &Value, file: &Path) -> Result<Self, ConfigError> {
        let err = |field: &str, msg: String| ConfigError::new(file, field, msg);
        let Value::Object(apps) = value else {
            return Err(err(
                "apps",
                "must be an object: { \"ceiling\": { ... } }".into(),
            ));
        };
        let mut out = Self::default();
        for (key, v) in apps {
            match key.as_str() {
                "ceiling" => out = Self::parse(v, file)?,
                other => {
                    return Err(err(
                        &format!("apps.{other}"),
                        format!("unknown key `{other}` (allowed: `ceiling`)"),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Parses the `apps.ceiling` object.
    fn parse(value: &Value, file: &Path) -> Result<Self, ConfigError> {
        let err = |field: &str, msg: String| ConfigError::new(file, field, msg);
        let Value::Object(map) = value else {
            return Err(err(FIELD, "must be an object".into()));
        };
        let mut out = Self::default();
        for (key, v) in map {
            let field = format!("{FIELD}.{key}");
            if key == "capabilities" {
                out.http = parse_capabilities(v).map_err(|m| err(&field, m))?;
                continue;
            }
            let Some(i) = LIMITS.iter().position(|l| l.field == key) else {
                let allowed: Vec<String> = LIMITS
                    .iter()
                    .map(|l| format!("`{}`", l.field))
                    .chain(["`capabilities`".to_owned()])
                    .collect();
                return Err(err(
                    &field,
                    format!("unknown key `{key}` (allowed: {})", allowed.join(", ")),
                ));
            };
            let n = match LIMITS[i].unit {
                Unit::Millis => duration_value(v)
                    .map(|d| d.as_millis().try_into().unwrap_or(u64::MAX))
                    .map_err(|m| err(&field, m))?,
                Unit::Bytes => size_value(v).map_err(|m| err(&field, m))?,
                Unit::Count => v
                    .as_u64()
                    .ok_or_else(|| err(&field, format!("expected a whole number, got {v}")))?,
            };
            out.limits[i] = n;
        }
        Ok(out)
    }

    /// Holds the config read from `dir`'s `worker.jsonc` to this ceiling.
    ///
    /// A field left at its default (the app asked for nothing) that is above a
    /// lowered ceiling is lowered to it; a value the app wrote above the
    /// ceiling is refused.
    pub fn apply(&self, config: &mut AppConfig, dir: &Path) -> Result<(), ConfigError> {
        let file = dir.join(WORKER_CONFIG_FILE);
        let defaults = AppConfig::default();
        for (limit, &ceiling) in LIMITS.iter().zip(&self.limits) {
            let asked = (limit.asked)(config);
            if asked > ceiling && asked == (limit.asked)(&defaults) {
                (limit.set)(config, ceiling);
            } else if asked > ceiling {
                return Err(ConfigError::new(
                    &file,
                    limit.field,
                    format!(
                        "asks for {}, above the operator's ceiling of {} (raise `{FIELD}.{}` in buntime.jsonc to allow it)",
                        show(limit.unit, asked),
                        show(limit.unit, ceiling),
                        limit.field
                    ),
                ));
            }
        }
        if let Some(declared) = config.capabilities.get("http") {
            self.check_http(declared)
                .map_err(|m| ConfigError::new(&file, "capabilities.http", m))?;
        }
        Ok(())
    }

    fn check_http(&self, declared: &Value) -> Result<(), String> {
        let Some(asked) = parse_http(declared)? else {
            return Ok(());
        };
        let raise = format!("`{FIELD}.capabilities.http` in buntime.jsonc");
        if asked.private_networks && !self.http.private_networks {
            return Err(format!(
                "asks for `privateNetworks: true`, which the operator's ceiling does not allow (set `privateNetworks: true` in {raise} to allow it)"
            ));
        }
        for pattern in &asked.patterns {
            let covered = self.http.patterns.iter().find(|c| c.covers(pattern));
            let Some(by) = covered else {
                return Err(format!(
                    "asks for `{pattern}`, outside the operator's ceiling [{}] (add it to `allow` in {raise})",
                    self.allowed_text()
                ));
            };
            // A pattern naming a private address grants that address; the
            // operator must have allowed private networks or named it too.
            if pattern.names_private_host()
                && !self.http.private_networks
                && !by.names_private_host()
            {
                return Err(format!(
                    "asks for `{pattern}`, a private address, and the operator's ceiling allows no private networks (name it in `allow` or set `privateNetworks: true` in {raise})"
                ));
            }
        }
        Ok(())
    }

    fn allowed_text(&self) -> String {
        self.http
            .patterns
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `capabilities` of the ceiling: only `http` (apps may always log, and
/// may hold no other capability).
fn parse_capabilities(value: &Value) -> Result<HttpGrant, String> {
    let Value::Object(map) = value else {
        return Err("must be an object such as { \"http\": [\"*.example.com\"] }".into());
    };
    let mut http = any_public_host();
    for (key, v) in map {
        if key != "http" {
            return Err(format!(
                "unknown capability `{key}` (apps may hold `http` only; `log` is always granted)"
            ));
        }
        http = match v {
            Value::Bool(true) => any_public_host(),
            other => parse_http(other)?.unwrap_or_default(),
        };
    }
    Ok(http)
}

/// An `http` value as apps write it (`false`, a list, or
/// `{ "allow": [...], "privateNetworks": bool }`).
fn parse_http(value: &Value) -> Result<Option<HttpGrant>, String> {
    HttpGrant::parse_declaration(value).map_err(|reason| {
        format!(
            "capability `http`: {reason} (syntax: {})",
            HttpGrant::SYNTAX
        )
    })
}

/// A limit as a person writes it.
fn show(unit: Unit, n: u64) -> String {
    match unit {
        Unit::Count => n.to_string(),
        Unit::Millis => format!("{:?}", Duration::from_millis(n)),
        Unit::Bytes if n >= 1 << 20 && n.is_multiple_of(1 << 20) => format!("{}mb", n >> 20),
        Unit::Bytes if n >= 1 << 10 && n.is_multiple_of(1 << 10) => format!("{}kb", n >> 10),
        Unit::Bytes => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ceiling(text: &str) -> Result<AppCeiling, ConfigError> {
        let v: Value = json5::from_str(text).unwrap();
        AppCeiling::parse_apps(&v, Path::new("/etc/buntime.jsonc"))
    }

    fn app(text: &str) -> AppConfig {
        AppConfig::parse(text, Path::new("worker.jsonc")).unwrap()
    }

    #[test]
    fn defaults_hold_every_field() {
        let c = AppCeiling::default();
        assert!(c.apply(&mut AppConfig::default(), Path::new("a")).is_ok());
        for (text, field, needle) in [
            (
                "{ timeout: \"6m\" }",
                "timeout",
                "asks for 360s, above the operator's ceiling of 300s (raise `apps.ceiling.timeout`",
            ),
            (
                "{ maxConcurrency: 1001 }",
                "maxConcurrency",
                "asks for 1001, above the operator's ceiling of 1000",
            ),
            ("{ maxQueue: 10001 }", "maxQueue", "ceiling of 10000"),
            (
                "{ maxBodySize: \"101mb\" }",
                "maxBodySize",
                "asks for 101mb, above the operator's ceiling of 100mb",
            ),
            (
                "{ capabilities: { http: { allow: [\"*\"], privateNetworks: true } } }",
                "capabilities.http",
                "privateNetworks: true",
            ),
            (
                "{ capabilities: { http: [\"http://127.0.0.1:8080\"] } }",
                "capabilities.http",
                "a private address",
            ),
        ] {
            let e = c.apply(&mut app(text), Path::new("apps/x")).unwrap_err();
            assert_eq!(e.source, Path::new("apps/x/worker.jsonc"), "{text}");
            assert_eq!(e.field, field, "{text}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn the_operator_can_raise_and_lower_it() {
        let c = ceiling(
            r#"{ ceiling: { timeout: "1h", maxBodySize: "1gb", capabilities: { http: { allow: ["*.example.com", "http://10.0.0.5:8080"] } } } }"#,
        )
        .unwrap();
        assert_eq!(c.limit("timeout"), Some(3_600_000));
        assert_eq!(c.limit("maxConcurrency"), Some(1000));
        let mut ok = app(
            r#"{ timeout: "30m", maxBodySize: "500mb", capabilities: { http: ["https://api.example.com", "http://10.0.0.5:8080"] } }"#,
        );
        assert!(c.apply(&mut ok, Path::new("a")).is_ok());
        let e = c
            .apply(
                &mut app(r#"{ capabilities: { http: ["api.example.org"] } }"#),
                Path::new("a"),
            )
            .unwrap_err();
        assert!(e.message.contains("asks for `api.example.org`, outside the operator's ceiling [`*.example.com`, `http://10.0.0.5:8080`]"), "{e}");
        let none = ceiling(r#"{ ceiling: { capabilities: { http: false } } }"#).unwrap();
        assert!(
            none.apply(
                &mut app(r#"{ capabilities: { http: ["a.example.com"] } }"#),
                Path::new("a")
            )
            .is_err()
        );
        assert!(none.apply(&mut app("{}"), Path::new("a")).is_ok());
    }

    #[test]
    fn a_lowered_ceiling_lowers_defaults_and_refuses_what_was_written() {
        let c = ceiling(r#"{ ceiling: { maxQueue: 10, timeout: "10s", maxBodySize: "1mb" } }"#)
            .unwrap();
        let mut quiet = app("{}");
        c.apply(&mut quiet, Path::new("a")).unwrap();
        assert_eq!(quiet.max_queue, 10);
        assert_eq!(quiet.timeout, Duration::from_secs(10));
        assert_eq!(quiet.max_body_size, 1 << 20);
        assert_eq!(quiet.max_concurrency, 8);
        let e = c
            .apply(&mut app("{ maxQueue: 11 }"), Path::new("a"))
            .unwrap_err();
        assert_eq!(e.field, "maxQueue");
    }

    #[test]
    fn a_bad_ceiling_names_the_field() {
        for (text, needle) in [
            (
                "{ ceiling: { timout: 1 } }",
                "`apps.ceiling.timout`: unknown key `timout`",
            ),
            (
                "{ ceiling: { maxQueue: -1 } }",
                "`apps.ceiling.maxQueue`: expected a whole number",
            ),
            (
                "{ ceiling: { capabilities: { sql: true } } }",
                "unknown capability `sql`",
            ),
            ("{ ceilings: {} }", "`apps.ceilings`: unknown key"),
        ] {
            let e = ceiling(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
