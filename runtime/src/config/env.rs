//! The runtime's environment variables.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PORT` | 8000 | listen port |
//! | `RUNTIME_HOST` | `0.0.0.0` | listen address: an IPv4 or IPv6 address (`::` for every IPv6 and, where the system allows, IPv4 address) or a host name |
//! | `RUNTIME_WORKER_DIRS` | required | app dirs, `:`-separated, searched in order |
//! | `RUNTIME_PLUGIN_DIRS` | `./plugins` | plugin dirs, `:`-separated |
//! | `RUNTIME_POOL_SIZE` | 10 (development), 500 (production) | apps kept warm (LRU) |
//! | `RUNTIME_ENV` (or `NODE_ENV`) | `development` | `development`, `production`, `staging` or `test`; `production` hides server internals from error bodies |
//! | `RUNTIME_HEADER_TIMEOUT` | `10s` | a client must send its request head within this |
//! | `RUNTIME_MAX_HEADERS` | 100 | most header lines per request (431 beyond) |
//! | `RUNTIME_MAX_HEADER_SIZE` | `64kb` | most bytes per request head |
//! | `RUNTIME_IDLE_TIMEOUT` | `60s` | a connection with no request in flight and no bytes moving is closed after this |
//! | `RUNTIME_BODY_TIMEOUT` | `30s` | a request body must deliver its next bytes within this (408 otherwise) |
//! | `RUNTIME_MAX_CONNECTIONS` | 10000 | most open connections; one more is answered 503 and closed |
//! | `RUNTIME_SHUTDOWN_TIMEOUT` | `30s` | after SIGTERM/Ctrl-C, in-flight requests get this long before they are cut and the process exits |
//! | `RUNTIME_DATA_DIR` | `./data` | databases of the `sql` capability (`<name>.db`, SQLite, WAL) |
//! | `RUNTIME_MAX_TENANTS` | 1000 | most tenants per database (each is a file; creating one more is refused) |
//! | `RUNTIME_MAX_STREAMS` | 1024 | most event streams (plugin SSE routes, `/_/sse`) open at once (503 beyond) |
//! | `RUNTIME_MAX_STREAMS_PER_CLIENT` | 32 | most event streams open at once from one client address (429 beyond) |
//! | `RUNTIME_CONFIG` | `./buntime.jsonc` (optional there) | the plugin configuration file |
//! | `RUNTIME_CACHE_DIR` | `$XDG_CACHE_HOME/buntime` | compiled-module cache (`off` disables it) |
//! | `RUNTIME_WASM_GUARD_PAGES` | `0` | `1`: bounds-check apps' memory with guard pages instead of explicit checks (plugins always use them) |
//! | `RUNTIME_WASM_PERF_MAP` | `0` | `1`: name compiled guest functions for `perf` (`/tmp/perf-<pid>.map`) |
//! | `RUNTIME_LOG_LEVEL` | `info` | a `tracing` filter (read by `cli::init_logging`) |
//! | `RUNTIME_LOG_FORMAT` | text (JSON in production) | `json` or `text` (read by `cli::init_logging`) |
//! | `RUNTIME_MASTER_KEY` (or `BUNTIME_MASTER_KEY`) | none | an API key that acts as admin (at least 16 characters) |
//! | `RUNTIME_TRUSTED_PROXIES` | none | CIDRs of proxies whose `Forwarded` / `X-Forwarded-*` headers are believed |
//! | `RUNTIME_METRICS_PUBLIC` | `false` | `true`: `/_/metrics` answers without a key |
//! | `RUNTIME_KEY_ATTEMPTS` | `10` | invalid keys one client address may send in a burst (1 to 10000) |
//! | `RUNTIME_KEY_ATTEMPT_WINDOW` | `60s` | the time over which that allowance refills (at most `24h`) |
//! | `RUNTIME_COST_HEADER` | `false` | `true`: responses carry each guest call's time and memory in `Server-Timing` (debugging) |
//! | `OTEL_*` | none | OpenTelemetry traces (`super::TraceConfig`) |

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ConfigError;

/// The deployment environment, which sets defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Local development: small pool, readable logs.
    Development,
    /// Staging.
    Staging,
    /// Production: large pool, JSON logs, internal error details hidden.
    Production,
    /// Tests.
    Test,
}

/// Settings read from the environment.
#[derive(Debug, Clone)]
pub struct RuntimeEnv {
    /// Listen port.
    pub port: u16,
    /// `RUNTIME_HOST`: the listen address (an IP address or a host name).
    pub host: String,
    /// App dirs in search order.
    pub worker_dirs: Vec<PathBuf>,
    /// Plugin dirs.
    pub plugin_dirs: Vec<PathBuf>,
    /// Apps kept warm.
    pub pool_size: usize,
    /// The deployment environment.
    pub environment: Environment,
    /// Compiled-module cache dir, if enabled.
    pub cache_dir: Option<PathBuf>,
    /// `RUNTIME_WASM_GUARD_PAGES`: guard pages instead of explicit bounds checks.
    pub guard_pages: bool,
    /// `RUNTIME_WASM_PERF_MAP`: write a perf map of compiled guest code.
    pub perf_map: bool,
    /// `buntime.jsonc` (from `RUNTIME_CONFIG`, else in the working directory).
    pub config_file: PathBuf,
    /// Whether `RUNTIME_CONFIG` named the file (then it must exist).
    pub config_file_explicit: bool,
    /// `RUNTIME_DATA_DIR`: where the `sql` capability keeps its databases.
    pub data_dir: PathBuf,
    /// `RUNTIME_MAX_TENANTS`: most tenants per database.
    pub max_tenants: usize,
    /// `RUNTIME_MAX_STREAMS` and `RUNTIME_MAX_STREAMS_PER_CLIENT`: caps on
    /// open event streams.
    pub stream_limits: super::StreamLimits,
    /// `RUNTIME_HEADER_TIMEOUT`: a client must send its request head within this.
    pub header_timeout: Duration,
    /// `RUNTIME_MAX_HEADERS`: most header lines in one request.
    pub max_headers: usize,
    /// `RUNTIME_MAX_HEADER_SIZE`: most bytes in one request head.
    pub max_header_bytes: usize,
    /// `RUNTIME_IDLE_TIMEOUT`: an idle connection is closed after this.
    pub idle_timeout: Duration,
    /// `RUNTIME_BODY_TIMEOUT`: the longest pause in a request body.
    pub body_timeout: Duration,
    /// `RUNTIME_MAX_CONNECTIONS`: most open connections.
    pub max_connections: usize,
    /// `RUNTIME_SHUTDOWN_TIMEOUT`: the grace period of a shutdown.
    pub shutdown_timeout: Duration,
    /// `RUNTIME_MASTER_KEY` (or `BUNTIME_MASTER_KEY`): an admin key.
    pub master_key: Option<super::Secret>,
    /// `RUNTIME_TRUSTED_PROXIES`: whose forwarding headers are believed.
    pub trusted_proxies: super::TrustedProxies,
    /// `RUNTIME_METRICS_PUBLIC`: `/_/metrics` without a key.
    pub metrics_public: bool,
    /// `RUNTIME_KEY_ATTEMPTS` and `RUNTIME_KEY_ATTEMPT_WINDOW`: invalid keys
    /// one client address may send in a burst, and the refill time.
    pub key_attempts: (u32, Duration),
    /// `RUNTIME_COST_HEADER`: the per-request cost breakdown in
    /// `Server-Timing`.
    pub cost_header: bool,
    /// The `OTEL_*` tracing settings (`None`: no endpoint, tracing off).
    pub traces: Option<super::TraceConfig>,
}

impl RuntimeEnv {
    /// Reads the process environment.
    pub fn from_process() -> Result<Self, ConfigError> {
        Self::from_map(&std::env::vars().collect())
    }

    /// Reads settings from `vars` (testable without touching the process).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use buntime::config::RuntimeEnv;
    /// let vars = HashMap::from([("RUNTIME_WORKER_DIRS".to_string(), "/a:/b".to_string())]);
    /// let env = RuntimeEnv::from_map(&vars).unwrap();
    /// assert_eq!(env.port, 8000);
    /// assert_eq!(env.worker_dirs.len(), 2);
    /// ```
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let var = |k: &str| vars.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
        let err = |name: &str, msg: String| ConfigError::new(Path::new(name), "", msg);

        let environment = match var("RUNTIME_ENV").or_else(|| var("NODE_ENV")) {
            None | Some("development") => Environment::Development,
            Some("production") => Environment::Production,
            Some("staging") => Environment::Staging,
            Some("test") => Environment::Test,
            Some(other) => {
                return Err(err(
                    "RUNTIME_ENV",
                    format!("`{other}` is not one of development, staging, production, test"),
                ));
            }
        };
        let port = match var("PORT") {
            None => 8000,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| err("PORT", format!("`{p}` is not a port number (0-65535)")))?,
        };
        let worker_dirs = split_dirs(var("RUNTIME_WORKER_DIRS").ok_or_else(|| {
            err(
                "RUNTIME_WORKER_DIRS",
                "is required: the `:`-separated list of directories holding apps (e.g. `./apps`)"
                    .into(),
            )
        })?);
        let plugin_dirs = split_dirs(var("RUNTIME_PLUGIN_DIRS").unwrap_or("./plugins"));
        let default_pool = match environment {
            Environment::Production => 500,
            Environment::Staging => 50,
            Environment::Development => 10,
            Environment::Test => 5,
        };
        let pool_size = match var("RUNTIME_POOL_SIZE") {
            None => default_pool,
            Some(n) => match n.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(err(
                        "RUNTIME_POOL_SIZE",
                        format!("`{n}` is not a positive whole number"),
                    ));
                }
            },
        };
        let flag = |name: &str| match var(name) {
            None | Some("0" | "false" | "off") => Ok(false),
            Some("1" | "true" | "on") => Ok(true),
            Some(other) => Err(err(
                name,
                format!("`{other}` is not one of 1, 0, true, false, on, off"),
            )),
        };
        let guard_pages = flag("RUNTIME_WASM_GUARD_PAGES")?;
        let perf_map = flag("RUNTIME_WASM_PERF_MAP")?;
        let cache_dir = match var("RUNTIME_CACHE_DIR") {
            Some("off") => None,
            Some(dir) => Some(PathBuf::from(dir)),
            None => var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| Path::new(h).join(".cache")))
                .map(|base| base.join("buntime")),
        };
        let (config_file, config_file_explicit) = match var("RUNTIME_CONFIG") {
            Some(path) => (PathBuf::from(path), true),
            None => (PathBuf::from(super::RUNTIME_CONFIG_FILE), false),
        };
        let duration = |name: &str, default: Duration| match var(name) {
            None => Ok(default),
            Some(t) => super::parse_duration(t)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    err(
                        name,
                        format!("`{t}` is not a duration such as \"10s\" (greater than 0)"),
                    )
                }),
        };
        // A whole number from 1 to `max`.
        let count = |name: &str, default: usize, max: usize| match var(name) {
            None => Ok(default),
            Some(n) => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| err(name, format!("`{n}` is not a whole number from 1 to {max}"))),
        };
        let header_timeout = duration("RUNTIME_HEADER_TIMEOUT", Duration::from_secs(10))?;
        let idle_timeout = duration("RUNTIME_IDLE_TIMEOUT", Duration::from_secs(60))?;
        let body_timeout = duration("RUNTIME_BODY_TIMEOUT", Duration::from_secs(30))?;
        let shutdown_timeout = duration("RUNTIME_SHUTDOWN_TIMEOUT", Duration::from_secs(30))?;
        let max_connections = count("RUNTIME_MAX_CONNECTIONS", 10_000, 1_000_000)?;
        let host = match var("RUNTIME_HOST") {
            None => "0.0.0.0".to_owned(),
            // `[::1]`, as in a URL, means the address inside the brackets.
            Some(h) => h
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(h)
                .to_owned(),
        };
        let max_headers = count("RUNTIME_MAX_HEADERS", 100, 10_000)?;
        let max_header_bytes = match var("RUNTIME_MAX_HEADER_SIZE") {
            None => 64 << 10,
            Some(n) => super::parse_size(n)
                .ok()
                .filter(|b| (1024..=(16 << 20)).contains(b))
                .map(|b| b as usize)
                .ok_or_else(|| {
                    err(
                        "RUNTIME_MAX_HEADER_SIZE",
                        format!("`{n}` is not a size from 1kb to 16mb, such as \"64kb\""),
                    )
                })?,
        };
        let data_dir = PathBuf::from(var("RUNTIME_DATA_DIR").unwrap_or("./data"));
        let max_tenants = count("RUNTIME_MAX_TENANTS", super::DEFAULT_MAX_TENANTS, 1_000_000)?;
        let stream_limits = super::StreamLimits {
            total: count("RUNTIME_MAX_STREAMS", super::DEFAULT_MAX_STREAMS, 1_000_000)?,
            per_client: count(
                "RUNTIME_MAX_STREAMS_PER_CLIENT",
                super::DEFAULT_MAX_STREAMS_PER_CLIENT,
                1_000_000,
            )?,
        };
        let master_key = match ["RUNTIME_MASTER_KEY", "BUNTIME_MASTER_KEY"]
            .into_iter()
            .find_map(|name| var(name).map(|v| (name, v)))
        {
            None => None,
            Some((name, key)) if key.chars().count() < 16 => {
                return Err(err(
                    name,
                    "must be at least 16 characters (e.g. `openssl rand -base64 32`)".into(),
                ));
            }
            Some((_, key)) => Some(super::Secret::new(key)),
        };
        let trusted_proxies =
            super::TrustedProxies::parse(var("RUNTIME_TRUSTED_PROXIES").unwrap_or(""))
                .map_err(|m| err("RUNTIME_TRUSTED_PROXIES", m))?;
        let metrics_public = flag("RUNTIME_METRICS_PUBLIC")?;
        let key_attempts = (
            count(
                "RUNTIME_KEY_ATTEMPTS",
                super::FAILED_ATTEMPTS as usize,
                super::MAX_FAILED_ATTEMPTS as usize,
            )? as u32,
            match duration("RUNTIME_KEY_ATTEMPT_WINDOW", super::ATTEMPT_WINDOW)? {
                w if w > super::MAX_ATTEMPT_WINDOW => {
                    return Err(err(
                        "RUNTIME_KEY_ATTEMPT_WINDOW",
                        format!("`{w:?}` is longer than 24h"),
                    ));
                }
                w => w,
            },
        );
        let cost_header = flag("RUNTIME_COST_HEADER")?;
        let traces = super::TraceConfig::from_map(vars)?;
        Ok(Self {
            traces,
            master_key,
            trusted_proxies,
            metrics_public,
            key_attempts,
            cost_header,
            port,
            host,
            idle_timeout,
            body_timeout,
            max_connections,
            shutdown_timeout,
            data_dir,
            max_tenants,
            stream_limits,
            header_timeout,
            max_headers,
            max_header_bytes,
            worker_dirs,
            plugin_dirs,
            pool_size,
            environment,
            cache_dir,
            guard_pages,
            perf_map,
            config_file,
            config_file_explicit,
        })
    }
}

/// Every variable Buntime reads (the table above, and `docs/configuration.md`).
pub const VARIABLES: &[&str] = &[
    "PORT",
    "RUNTIME_HOST",
    "RUNTIME_WORKER_DIRS",
    "RUNTIME_PLUGIN_DIRS",
    "RUNTIME_POOL_SIZE",
    "RUNTIME_ENV",
    "NODE_ENV",
    "RUNTIME_HEADER_TIMEOUT",
    "RUNTIME_MAX_HEADERS",
    "RUNTIME_MAX_HEADER_SIZE",
    "RUNTIME_IDLE_TIMEOUT",
    "RUNTIME_BODY_TIMEOUT",
    "RUNTIME_MAX_CONNECTIONS",
    "RUNTIME_SHUTDOWN_TIMEOUT",
    "RUNTIME_DATA_DIR",
    "RUNTIME_MAX_TENANTS",
    "RUNTIME_MAX_STREAMS",
    "RUNTIME_MAX_STREAMS_PER_CLIENT",
    "RUNTIME_CONFIG",
    "RUNTIME_CACHE_DIR",
    "RUNTIME_WASM_GUARD_PAGES",
    "RUNTIME_WASM_PERF_MAP",
    "RUNTIME_LOG_LEVEL",
    "RUNTIME_LOG_FORMAT",
    "RUNTIME_MASTER_KEY",
    "BUNTIME_MASTER_KEY",
    "RUNTIME_TRUSTED_PROXIES",
    "RUNTIME_METRICS_PUBLIC",
    "RUNTIME_KEY_ATTEMPTS",
    "RUNTIME_KEY_ATTEMPT_WINDOW",
    "RUNTIME_COST_HEADER",
    // Tracing (read by `super::TraceConfig`).
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
];

/// The `RUNTIME_*` names among `names` that Buntime does not read: most
/// likely typos, which would otherwise be ignored in silence (`buntime check`
/// warns about them).
pub fn unknown_variables<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut unknown: Vec<&str> = names
        .into_iter()
        .filter(|n| n.starts_with("RUNTIME_") && !VARIABLES.contains(n))
        .collect();
    unknown.sort_unstable();
    unknown
}

fn split_dirs(list: &str) -> Vec<PathBuf> {
    list.split(':')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<RuntimeEnv, ConfigError> {
        RuntimeEnv::from_map(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn worker_dirs_are_required() {
        let e = env(&[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("RUNTIME_WORKER_DIRS: is required"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let base = ("RUNTIME_WORKER_DIRS", "./apps");
        for (k, v) in [
            ("PORT", "eighty"),
            ("PORT", "70000"),
            ("RUNTIME_POOL_SIZE", "0"),
            ("RUNTIME_ENV", "prod"),
            ("RUNTIME_HEADER_TIMEOUT", "soon"),
            ("RUNTIME_MAX_HEADERS", "0"),
            ("RUNTIME_MAX_HEADER_SIZE", "1"),
            ("RUNTIME_MAX_TENANTS", "0"),
            ("RUNTIME_MAX_TENANTS", "lots"),
            ("RUNTIME_MAX_STREAMS", "0"),
            ("RUNTIME_MAX_STREAMS_PER_CLIENT", "many"),
            ("RUNTIME_WASM_GUARD_PAGES", "maybe"),
            ("RUNTIME_WASM_PERF_MAP", "yes"),
            ("RUNTIME_IDLE_TIMEOUT", "0s"),
            ("RUNTIME_BODY_TIMEOUT", "later"),
            ("RUNTIME_SHUTDOWN_TIMEOUT", "-1"),
            ("RUNTIME_MAX_CONNECTIONS", "0"),
            ("RUNTIME_MASTER_KEY", "short"),
            ("BUNTIME_MASTER_KEY", "short"),
            ("RUNTIME_TRUSTED_PROXIES", "10.0.0.0/8, proxy.local"),
            ("RUNTIME_METRICS_PUBLIC", "yes"),
            ("RUNTIME_KEY_ATTEMPTS", "0"),
            ("RUNTIME_KEY_ATTEMPTS", "100000"),
            ("RUNTIME_KEY_ATTEMPT_WINDOW", "0s"),
            ("RUNTIME_KEY_ATTEMPT_WINDOW", "2d"),
        ] {
            let e = env(&[base, (k, v)]).unwrap_err();
            assert!(e.to_string().starts_with(k), "{e}");
        }
    }

    #[test]
    fn defaults_follow_the_environment() {
        let dev = env(&[("RUNTIME_WORKER_DIRS", "a")]).unwrap();
        assert_eq!(dev.pool_size, 10);
        let prod = env(&[("RUNTIME_WORKER_DIRS", "a"), ("NODE_ENV", "production")]).unwrap();
        assert_eq!(prod.pool_size, 500);
        assert_eq!(prod.plugin_dirs, vec![PathBuf::from("./plugins")]);
        assert_eq!(dev.max_tenants, 1000);
        assert_eq!(dev.stream_limits, crate::config::StreamLimits::default());
        let streams = env(&[
            ("RUNTIME_WORKER_DIRS", "a"),
            ("RUNTIME_MAX_STREAMS", "10"),
            ("RUNTIME_MAX_STREAMS_PER_CLIENT", "2"),
        ])
        .unwrap();
        assert_eq!(
            streams.stream_limits,
            crate::config::StreamLimits {
                total: 10,
                per_client: 2
            }
        );
        let few = env(&[("RUNTIME_WORKER_DIRS", "a"), ("RUNTIME_MAX_TENANTS", "3")]).unwrap();
        assert_eq!(few.max_tenants, 3);
        assert_eq!(dev.host, "0.0.0.0");
        assert_eq!(dev.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(dev.max_connections, 10_000);
    }

    #[test]
    fn the_documented_variables_are_the_known_ones() {
        // The first column of the Environment table in docs/configuration.md.
        let docs = include_str!("../../../docs/configuration.md");
        let table = docs
            .split("## Environment")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("an Environment section");
        let mut documented: Vec<&str> = table
            .lines()
            .filter_map(|l| l.strip_prefix('|')?.split('|').next())
            .flat_map(|cell| cell.split('`').skip(1).step_by(2))
            .filter(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .collect();
        documented.sort_unstable();
        let mut known = VARIABLES.to_vec();
        known.sort_unstable();
        assert_eq!(documented, known);
    }

    #[test]
    fn unknown_runtime_variables_are_named() {
        let set = [
            "RUNTIME_PORT",
            "PORT",
            "RUNTIME_HOST",
            "HOME",
            "RUNTIME_WORKERDIRS",
        ];
        assert_eq!(
            unknown_variables(set),
            vec!["RUNTIME_PORT", "RUNTIME_WORKERDIRS"]
        );
    }

    #[test]
    fn access_settings() {
        let e = env(&[
            ("RUNTIME_WORKER_DIRS", "a"),
            ("BUNTIME_MASTER_KEY", "0123456789abcdef"),
            ("RUNTIME_TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
            ("RUNTIME_METRICS_PUBLIC", "true"),
            ("RUNTIME_KEY_ATTEMPTS", "3"),
            ("RUNTIME_KEY_ATTEMPT_WINDOW", "1h"),
        ])
        .unwrap();
        assert_eq!(e.key_attempts, (3, Duration::from_secs(3600)));
        assert_eq!(
            e.master_key.as_ref().map(|k| k.expose()),
            Some("0123456789abcdef")
        );
        assert!(!format!("{e:?}").contains("0123456789abcdef"));
        assert!(e.trusted_proxies.contains("::1".parse().unwrap()));
        assert!(e.metrics_public);
        let dev = env(&[("RUNTIME_WORKER_DIRS", "a")]).unwrap();
        assert!(dev.master_key.is_none() && dev.trusted_proxies.is_empty() && !dev.metrics_public);
        assert_eq!(dev.key_attempts, (10, Duration::from_secs(60)));
    }

    #[test]
    fn the_listen_address_may_be_ipv6_with_or_without_brackets() {
        for given in ["::1", "[::1]"] {
            let e = env(&[("RUNTIME_WORKER_DIRS", "a"), ("RUNTIME_HOST", given)]).unwrap();
            assert_eq!(e.host, "::1");
        }
    }
}
