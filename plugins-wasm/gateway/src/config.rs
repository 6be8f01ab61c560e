//! The gateway's config: parsed and checked once, refused with a message
//! naming the field when it is wrong (pure; no host calls).

use std::time::Duration;

use serde_json::Value;

use crate::cors::Cors;
use crate::shell::Shell;

/// A config the gateway refuses; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// The whole config.
#[derive(Debug, Clone, Default)]
pub struct Gateway {
    /// Rate limits; `None`: off.
    pub rate: Option<RateLimit>,
    /// CORS; `None`: off.
    pub cors: Option<Cors>,
    /// The request log; `None`: off.
    pub log: Option<RequestLog>,
    /// The app shell; `None`: off.
    pub shell: Option<Shell>,
}

/// What a request's bucket is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyBy {
    /// The client address the host resolved (through trusted proxies).
    Ip,
    /// The API key the client presented (`X-API-Key` or a bearer token),
    /// by its SHA-256; the address when it presents none.
    ApiKey,
    /// The identity subject (`X-Identity`'s `sub`); the address when anonymous.
    User,
    /// A request header's value (lower-case name); the address when absent.
    Header(String),
}

/// One limit: `requests` per `window`, for requests matching `paths` and
/// `methods`, counted per `key_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// The bucket namespace: `default` or `route<i>`.
    pub id: String,
    /// Capacity.
    pub requests: u64,
    /// Refill period of a full bucket.
    pub window: Duration,
    /// The key.
    pub key_by: KeyBy,
    /// Path globs (empty: every path).
    pub paths: Vec<String>,
    /// Upper-case methods (empty: every method).
    pub methods: Vec<String>,
}

/// The `rateLimit` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Route limits, first match wins, then [`RateLimit::default`].
    pub routes: Vec<Limit>,
    /// The limit for requests no route matches.
    pub default: Option<Limit>,
    /// Path globs never limited.
    pub exclude: Vec<String>,
}

/// The `requestLog` section.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestLog {
    /// Entries kept.
    pub size: u64,
    /// Share of requests logged, 0 to 1.
    pub sample_rate: f64,
}

impl Gateway {
    /// Parses the sections (each absent or `null` = off).
    pub fn parse(
        rate: Option<&Value>,
        cors: Option<&Value>,
        log: Option<&Value>,
        shell: Option<&Value>,
    ) -> Result<Self, ConfigError> {
        let some = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
        Ok(Self {
            rate: some(rate).map(|v| RateLimit::parse(&v)).transpose()?,
            cors: some(cors).map(|v| Cors::parse(&v)).transpose()?,
            log: some(log).map(|v| RequestLog::parse(&v)).transpose()?,
            shell: some(shell).map(|v| Shell::parse(&v)).transpose()?,
        })
    }
}

impl RequestLog {
    fn parse(v: &Value) -> Result<Self, ConfigError> {
        let size = match v.get("size") {
            None => 100,
            Some(n) => match n.as_u64() {
                Some(n @ 1..=10_000) => n,
                _ => return err(format!("`requestLog.size` must be 1 to 10000, found {n}")),
            },
        };
        let sample_rate = match v.get("sampleRate") {
            None => 1.0,
            Some(r) => match r.as_f64() {
                Some(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    return err(format!(
                        "`requestLog.sampleRate` must be a number from 0 to 1, found {r}"
                    ));
                }
            },
        };
        known(v, "requestLog", &["size", "sampleRate"])?;
        Ok(Self { size, sample_rate })
    }

    /// Whether request number `seq` (from 1) is logged: exactly
    /// `sample_rate` of them, spread evenly, with no randomness.
    pub fn sampled(&self, seq: u64) -> bool {
        let r = self.sample_rate;
        (seq as f64 * r).floor() != ((seq - 1) as f64 * r).floor()
    }
}

impl RateLimit {
    fn parse(v: &Value) -> Result<Self, ConfigError> {
        if !v.is_object() {
            return err(format!("`rateLimit` must be an object or null, found {v}"));
        }
        known(
            v,
            "rateLimit",
            &["requests", "window", "keyBy", "excludePaths", "routes"],
        )?;
        let default = match v.get("requests") {
            None | Some(Value::Null) => None,
            Some(_) => Some(Limit::parse(v, "rateLimit", "default".into(), None)?),
        };
        let routes = match v.get("routes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let at = format!("rateLimit.routes[{i}]");
                    known(r, &at, &["path", "methods", "requests", "window", "keyBy"])?;
                    Limit::parse(r, &at, format!("route{i}"), Some(v))
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return err(format!("`rateLimit.routes` must be a list, found {other}")),
        };
        if default.is_none() && routes.is_empty() {
            return err("`rateLimit` sets neither `requests` nor `routes`: it would limit nothing");
        }
        Ok(Self {
            routes,
            default,
            exclude: globs(v.get("excludePaths"), "rateLimit.excludePaths")?,
        })
    }

    /// The limit that applies to `method path`, if any.
    pub fn limit_for(&self, method: &str, path: &str) -> Option<&Limit> {
        if self.exclude.iter().any(|g| glob_match(g, path)) {
            return None;
        }
        self.routes
            .iter()
            .find(|l| l.matches(method, path))
            .or(self.default.as_ref())
    }
}

impl Limit {
    /// A limit from `v` (at `at`), with `requests`, `window` and `keyBy`
    /// falling back to `parent`'s (a route inherits the section's).
    fn parse(v: &Value, at: &str, id: String, parent: Option<&Value>) -> Result<Self, ConfigError> {
        let field = |k: &str| v.get(k).or_else(|| parent.and_then(|p| p.get(k)));
        let requests = match field("requests") {
            Some(n) => match n.as_u64() {
                Some(n @ 1..) => n,
                _ => {
                    return err(format!(
                        "`{at}.requests` must be a whole number above 0, found {n}"
                    ));
                }
            },
            None => return err(format!("`{at}.requests` is missing")),
        };
        let window = match field("window") {
            None => Duration::from_secs(60),
            Some(w) => duration(w).ok_or_else(|| {
                ConfigError(format!(
                    "`{at}.window` must be seconds or `<n>ms|s|m|h|d` above 0, found {w}"
                ))
            })?,
        };
        let key_by = match field("keyBy") {
            None => KeyBy::Ip,
            Some(k) => key_by(k).ok_or_else(|| {
                ConfigError(format!(
                    "`{at}.keyBy` must be \"ip\", \"apiKey\", \"user\" or \"header:<name>\", found {k}"
                ))
            })?,
        };
        let (paths, methods) = if parent.is_some() {
            let paths = match v.get("path") {
                Some(Value::String(p)) => vec![pattern(p, &format!("{at}.path"))?],
                None => Vec::new(),
                Some(other) => {
                    return err(format!("`{at}.path` must be a path glob, found {other}"));
                }
            };
            let methods = list(
                v.get("methods"),
                &format!("{at}.methods"),
                "a method",
                |m| {
                    m.as_str()
                        .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()))
                        .map(str::to_ascii_uppercase)
                },
            )?
            .unwrap_or_default();
            (paths, methods)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Self {
            id,
            requests,
            window,
            key_by,
            paths,
            methods,
        })
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && (self.paths.is_empty() || self.paths.iter().any(|g| glob_match(g, path)))
    }
}

/// Refuses keys of `v` outside `allowed`, naming the first unknown one.
fn known(v: &Value, at: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    match v.as_object() {
        Some(o) => match o.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => err(format!(
                "`{at}.{k}` is not an option; known: {}",
                allowed.join(", ")
            )),
            None => Ok(()),
        },
        None => err(format!("`{at}` must be an object, found {v}")),
    }
}

fn key_by(v: &Value) -> Option<KeyBy> {
    match v.as_str()? {
        "ip" => Some(KeyBy::Ip),
        "apiKey" => Some(KeyBy::ApiKey),
        "user" => Some(KeyBy::User),
        other => {
            let name = other.strip_prefix("header:")?.trim();
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b));
            valid.then(|| KeyBy::Header(name.to_ascii_lowercase()))
        }
    }
}

/// Seconds (a number) or `<n>ms|s|m|h|d`, above 0.
pub fn duration(v: &Value) -> Option<Duration> {
    let d = match v {
        Value::Number(n) => Duration::from_secs(n.as_u64()?),
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit())?;
            let n: u64 = s[..split].parse().ok()?;
            let ms = match &s[split..] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return None,
            };
            Duration::from_millis(n.checked_mul(ms)?)
        }
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

/// A list option (absent or `null`: `None`), each item read by `item`;
/// an item it refuses is named with `what` it should have been.
pub(crate) fn list<T>(
    v: Option<&Value>,
    at: &str,
    what: &str,
    item: impl Fn(&Value) -> Option<T>,
) -> Result<Option<Vec<T>>, ConfigError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| item(i).ok_or_else(|| ConfigError(format!("`{at}`: {i} is not {what}"))))
            .collect::<Result<_, _>>()
            .map(Some),
        Some(other) => err(format!("`{at}` must be a list, found {other}")),
    }
}

fn globs(v: Option<&Value>, at: &str) -> Result<Vec<String>, ConfigError> {
    let glob = |g: &Value| g.as_str().filter(|p| p.starts_with('/')).map(str::to_owned);
    Ok(list(v, at, "a path glob starting with `/`", glob)?.unwrap_or_default())
}

fn pattern(p: &str, at: &str) -> Result<String, ConfigError> {
    if !p.starts_with('/') {
        return err(format!("`{at}`: `{p}` must start with `/`"));
    }
    Ok(p.to_owned())
}

/// Whether `path` matches `glob`: `*` is any run within one segment, `**`
/// any run across segments, `?` one character other than `/`; a trailing
/// `/**` also matches the bare prefix (`/api/**` matches `/api`).
pub fn glob_match(glob: &str, path: &str) -> bool {
    if let Some(prefix) = glob.strip_suffix("/**")
        && path == prefix
    {
        return true;
    }
    matches(glob.as_bytes(), path.as_bytes())
}

fn matches(g: &[u8], p: &[u8]) -> bool {
    // Recursive: globs are the operator's and short, paths bounded by the
    // server's URI limit.
    match g.first() {
        None => p.is_empty(),
        Some(b'*') if g.get(1) == Some(&b'*') => {
            let rest = &g[2..];
            (0..=p.len()).any(|i| matches(rest, &p[i..]))
        }
        Some(b'*') => {
            let rest = &g[1..];
            let seg = p.iter().position(|&b| b == b'/').unwrap_or(p.len());
            (0..=seg).any(|i| matches(rest, &p[i..]))
        }
        Some(b'?') => p.first().is_some_and(|&b| b != b'/') && matches(&g[1..], &p[1..]),
        Some(&c) => p.first() == Some(&c) && matches(&g[1..], &p[1..]),
    }
}
