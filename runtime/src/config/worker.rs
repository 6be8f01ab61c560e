//! `worker.jsonc`: how one app version runs.
//!
//! Parsed with json5 (comments, trailing commas), unknown keys refused, every
//! value validated; each error names the file, the field and what is allowed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::ConfigError;
use super::units::{duration_from_secs, parse_duration, parse_size};

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default idle timeout of warm instances.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of requests before an instance is recycled.
pub const DEFAULT_MAX_REQUESTS: u64 = 1000;
/// Default request body limit.
pub const DEFAULT_MAX_BODY: u64 = 10 << 20;
/// Largest request body limit a plugin manifest may ask for (an app's is
/// held to the operator's ceiling, `apps.ceiling.maxBodySize`, which defaults
/// to the same).
pub const MAX_BODY_CEILING: u64 = 100 << 20;
/// Default response body limit (apps' `maxResponseBodySize`, plugins' too).
pub const DEFAULT_MAX_RESPONSE_BODY: u64 = 10 << 20;
/// Default memory cap of an app instance.
pub const DEFAULT_MEMORY: u64 = 64 << 20;
/// Memory cap with `lowMemory: true`.
pub const LOW_MEMORY: u64 = 16 << 20;

/// The validated settings of one app version.
#[derive(Debug, Clone, PartialEq)]
pub struct AppConfig {
    /// File to serve or module to run, relative to the app dir; `None` = detect.
    pub entrypoint: Option<String>,
    /// Per-request deadline.
    pub timeout: Duration,
    /// Zero: a fresh instance per request. Otherwise warm instances are reused
    /// and retired after this long without use (sliding).
    pub ttl: Duration,
    /// Warm instances idle this long are told (`on_idle`) and reclaimed.
    pub idle_timeout: Duration,
    /// Recycle an instance after this many requests (0 = never).
    pub max_requests: u64,
    /// Most instances of this app running at once.
    pub max_concurrency: usize,
    /// Most requests waiting for an instance; beyond it, 503.
    pub max_queue: usize,
    /// Memory cap per instance, in bytes.
    pub memory: u64,
    /// Request body limit, in bytes.
    pub max_body_size: u64,
    /// Response body limit, in bytes: a larger answer is a 502.
    pub max_response_body_size: u64,
    /// Environment handed to the app (as config entries).
    pub env: BTreeMap<String, String>,
    /// Env keys with these prefixes are injected into HTML as `window.__env__`.
    pub env_prefix: Vec<String>,
    /// Inject `<base href>` into HTML responses.
    pub inject_base: bool,
    /// Routes reachable without authentication (consumed by the authn plugin).
    pub public_routes: Value,
    /// Capabilities requested by the app (e.g. `{"http": ["api.example.com"]}`).
    pub capabilities: BTreeMap<String, Value>,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            entrypoint: None,
            timeout: DEFAULT_TIMEOUT,
            ttl: Duration::ZERO,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_requests: DEFAULT_MAX_REQUESTS,
            max_concurrency: 8,
            max_queue: 100,
            memory: DEFAULT_MEMORY,
            max_body_size: DEFAULT_MAX_BODY,
            max_response_body_size: DEFAULT_MAX_RESPONSE_BODY,
            env: BTreeMap::new(),
            env_prefix: vec!["PUBLIC_".into(), "VITE_".into()],
            inject_base: false,
            public_routes: Value::Null,
            capabilities: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    entrypoint: Option<String>,
    timeout: Option<Value>,
    ttl: Option<Value>,
    idle_timeout: Option<Value>,
    max_requests: Option<u64>,
    max_concurrency: Option<usize>,
    max_queue: Option<usize>,
    low_memory: Option<bool>,
    memory: Option<Value>,
    max_body_size: Option<Value>,
    max_response_body_size: Option<Value>,
    env: Option<BTreeMap<String, Value>>,
    env_prefix: Option<Vec<String>>,
    inject_base: Option<bool>,
    public_routes: Option<Value>,
    capabilities: Option<BTreeMap<String, Value>>,
    /// Read by the deployments UI; accepted and ignored here.
    #[allow(
        dead_code,
        reason = "accepted for compatibility, not used by the runtime"
    )]
    visibility: Option<String>,
}

/// The file name looked for in each app dir.
pub const WORKER_CONFIG_FILE: &str = "worker.jsonc";

impl AppConfig {
    /// Reads `dir/worker.jsonc`; a missing file means all defaults.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let file = dir.join(WORKER_CONFIG_FILE);
        match std::fs::read_to_string(&file) {
            Ok(text) => Self::parse(&text, &file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(ConfigError::new(
                &file,
                "",
                format!("cannot read the file: {e}"),
            )),
        }
    }

    /// Parses and validates the text of a `worker.jsonc` (`file` is for errors).
    ///
    /// ```
    /// use buntime::config::AppConfig;
    /// let c = AppConfig::parse(r#"{ ttl: "5m", timeout: 10, // seconds
    /// }"#, "worker.jsonc".as_ref()).unwrap();
    /// assert_eq!(c.ttl.as_secs(), 300);
    /// let e = AppConfig::parse(r#"{ tll: 1 }"#, "worker.jsonc".as_ref()).unwrap_err();
    /// assert!(e.to_string().contains("unknown field `tll`"));
    /// ```
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let raw: Raw =
            json5::from_str(text).map_err(|e| ConfigError::new(file, "", json5_message(e)))?;
        let err = |field: &str, msg: String| ConfigError::new(file, field, msg);
        if let Some(entry) = &raw.entrypoint {
            check_entrypoint(entry).map_err(|m| err("entrypoint", m))?;
        }
        let mut c = Self {
            entrypoint: raw.entrypoint,
            ..Self::default()
        };
        if let Some(v) = raw.timeout {
            c.timeout = duration_value(&v).map_err(|m| err("timeout", m))?;
            if c.timeout.is_zero() {
                return Err(err("timeout", "must be greater than 0".into()));
            }
        }
        if let Some(v) = raw.ttl {
            c.ttl = duration_value(&v).map_err(|m| err("ttl", m))?;
        }
        if let Some(v) = raw.idle_timeout {
            c.idle_timeout = duration_value(&v).map_err(|m| err("idleTimeout", m))?;
            if c.idle_timeout.is_zero() {
                return Err(err("idleTimeout", "must be greater than 0".into()));
            }
        }
        if let Some(n) = raw.max_requests {
            c.max_requests = n;
        }
        if let Some(n) = raw.max_concurrency {
            // The upper bound is the operator's (`apps.ceiling` in buntime.jsonc).
            if n == 0 {
                return Err(err("maxConcurrency", "must be at least 1".into()));
            }
            c.max_concurrency = n;
        }
        if let Some(n) = raw.max_queue {
            c.max_queue = n;
        }
        if raw.low_memory == Some(true) {
            c.memory = LOW_MEMORY;
        }
        if let Some(v) = raw.memory {
            c.memory = size_value(&v).map_err(|m| err("memory", m))?;
            if c.memory < (1 << 20) {
                return Err(err("memory", "must be at least 1mb".into()));
            }
        }
        if let Some(v) = raw.max_body_size {
            c.max_body_size = size_value(&v).map_err(|m| err("maxBodySize", m))?;
        }
        if let Some(v) = raw.max_response_body_size {
            c.max_response_body_size =
                response_size_value(&v).map_err(|m| err("maxResponseBodySize", m))?;
        }
        if let Some(env) = raw.env {
            c.env = env
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect();
        }
        if let Some(p) = raw.env_prefix {
            c.env_prefix = p;
        }
        c.inject_base = raw.inject_base.unwrap_or(false);
        c.public_routes = raw.public_routes.unwrap_or(Value::Null);
        c.capabilities = raw.capabilities.unwrap_or_default();
        if !c.ttl.is_zero() {
            if c.ttl < c.timeout {
                return Err(err(
                    "ttl",
                    format!(
                        "must be at least `timeout` ({:?}) when set, got {:?}",
                        c.timeout, c.ttl
                    ),
                ));
            }
            if c.idle_timeout < c.timeout {
                return Err(err(
                    "idleTimeout",
                    format!(
                        "must be at least `timeout` ({:?}), got {:?}",
                        c.timeout, c.idle_timeout
                    ),
                ));
            }
            c.idle_timeout = c.idle_timeout.min(c.ttl);
        }
        Ok(c)
    }
}

/// An entrypoint names a file inside the app dir: relative, without `..`.
/// (Symlinks are checked when the file is opened: [`crate::routing::AppDir`].)
fn check_entrypoint(entry: &str) -> Result<(), String> {
    use std::path::Component;
    let path = Path::new(entry);
    let fix = "write a path relative to the app directory, such as \"dist/index.html\"";
    if entry.is_empty() || entry.contains('\0') || entry.contains('\\') {
        return Err(format!("`{entry}` is not a valid file name; {fix}"));
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "`{entry}` leaves the app directory (an absolute path or `..`); {fix}"
        ));
    }
    Ok(())
}

pub(crate) fn duration_value(v: &Value) -> Result<Duration, String> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(duration_from_secs)
            .ok_or_else(|| format!("{n} is out of range (0 to 365 days, in seconds)")),
        Value::String(s) => parse_duration(s),
        other => Err(format!(
            "expected seconds or a string such as \"30s\", got {other}"
        )),
    }
}

pub(crate) fn size_value(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("{n} is not a whole number of bytes")),
        Value::String(s) => parse_size(s),
        other => Err(format!(
            "expected bytes or a string such as \"10mb\", got {other}"
        )),
    }
}

/// A `maxResponseBodySize`: a size from 1 byte to 100mb.
pub(crate) fn response_size_value(v: &Value) -> Result<u64, String> {
    let n = size_value(v)?;
    // The upper bound is the operator's (`apps.ceiling` in buntime.jsonc).
    if n == 0 {
        return Err("must be at least 1 byte".into());
    }
    Ok(n)
}

pub(crate) fn json5_message(e: json5::Error) -> String {
    format!("invalid JSONC: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AppConfig, ConfigError> {
        AppConfig::parse(text, Path::new("worker.jsonc"))
    }

    #[test]
    fn max_response_body_size_is_a_size_of_at_least_1_byte() {
        assert_eq!(
            parse("{}").map(|c| c.max_response_body_size),
            Ok(DEFAULT_MAX_RESPONSE_BODY)
        );
        assert_eq!(
            parse(r#"{ maxResponseBodySize: "1kb" }"#).map(|c| c.max_response_body_size),
            Ok(1024)
        );
        // Above the default ceiling parses; the ceiling refuses it at load.
        assert_eq!(
            parse(r#"{ maxResponseBodySize: "101mb" }"#).map(|c| c.max_response_body_size),
            Ok(101 << 20)
        );
        for bad in ["0", r#""lots""#] {
            let e = parse(&format!("{{ maxResponseBodySize: {bad} }}")).unwrap_err();
            assert_eq!(e.field, "maxResponseBodySize", "{bad}: {e}");
        }
    }
}
