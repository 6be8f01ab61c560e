//! CORS: which origins are allowed, and the headers a preflight and an
//! actual response carry (pure; no host calls).
//!
//! Origins are compared as parsed parts, never as patterns turned into
//! regexes: `https://*.example.com` allows `https://a.example.com` and
//! `https://a.b.example.com`, not `https://example.com`,
//! `https://aXexample.com` or `http://a.example.com`.

use serde_json::Value;

use crate::config::{ConfigError, err, list};

/// Methods allowed when `methods` is not set.
const DEFAULT_METHODS: [&str; 6] = ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"];

/// The `cors` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    origins: Origins,
    methods: Vec<String>,
    /// `None`: reflect what the preflight asks for.
    allowed_headers: Option<Vec<String>>,
    exposed_headers: Vec<String>,
    credentials: bool,
    max_age: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origins {
    Any,
    List(Vec<Pattern>),
}

/// An allowed origin: `scheme://host[:port]`, the host possibly `*.` + a
/// domain (any subdomain of it, at any depth).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    scheme: String,
    /// The host, or for a wildcard the domain with its leading dot.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

/// An origin's parts as written (scheme, host, port): slices of `origin`,
/// so checking a request's `Origin` allocates nothing.
fn split(origin: &str) -> Option<(&str, &str, Option<u16>)> {
    // A search for the one `:` (memchr), not for "://" (a substring
    // searcher set up per call): this runs on every request with an Origin.
    let colon = origin.find(':')?;
    let (scheme, rest) = (&origin[..colon], origin[colon..].strip_prefix("://")?);
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    let (host, port) = if rest.starts_with('[') {
        let end = rest.find(']')? + 1;
        match &rest[end..] {
            "" => (&rest[..end], None),
            p => (
                &rest[..end],
                Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
            ),
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
            None => (rest, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:*".contains(&b));
    host_ok.then_some((scheme, host, port))
}

/// Whether `s` is one or more DNS labels joined by dots.
fn labels(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

impl Pattern {
    fn parse(text: &str) -> Option<Self> {
        let text = text.to_ascii_lowercase();
        let (scheme, host, port) = split(&text)?;
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(domain) if labels(domain) => (format!(".{domain}"), true),
            Some(_) => return None,
            None if host.contains('*') => return None,
            None => (host.to_owned(), false),
        };
        Some(Self {
            scheme: scheme.to_owned(),
            host,
            wildcard,
            port,
        })
    }

    /// Whether an origin's parts as written (any case; the pattern's are
    /// lower case) match. `split` let through ASCII hosts only, so slicing
    /// `host` at any byte is safe.
    fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        if !scheme.eq_ignore_ascii_case(&self.scheme) || port != self.port {
            return false;
        }
        if self.wildcard {
            host.len() > self.host.len()
                && host.is_char_boundary(host.len() - self.host.len())
                && host[host.len() - self.host.len()..].eq_ignore_ascii_case(&self.host)
                && labels(&host[..host.len() - self.host.len()])
        } else {
            host.eq_ignore_ascii_case(&self.host)
        }
    }
}

fn strings(v: Option<&Value>, at: &str) -> Result<Option<Vec<String>>, ConfigError> {
    list(v, at, "a name", |i| {
        i.as_str()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned)
    })
}

impl Cors {
    /// Parses the `cors` section.
    pub fn parse(v: &Value) -> Result<Self, ConfigError> {
        let Some(obj) = v.as_object() else {
            return err(format!("`cors` must be an object or null, found {v}"));
        };
        const KNOWN: [&str; 6] = [
            "origins",
            "methods",
            "allowedHeaders",
            "exposedHeaders",
            "credentials",
            "maxAge",
        ];
        if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return err(format!(
                "`cors.{k}` is not an option; known: {}",
                KNOWN.join(", ")
            ));
        }
        let origins = match v.get("origins") {
            Some(Value::String(s)) if s == "*" => Origins::Any,
            Some(Value::String(s)) => Origins::List(vec![pattern(s)?]),
            Some(Value::Array(items)) => Origins::List(
                items
                    .iter()
                    .map(|i| match i.as_str() {
                        Some(s) => pattern(s),
                        None => err(format!("`cors.origins`: {i} is not an origin")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            None => return err("`cors.origins` is missing: list the allowed origins, or \"*\""),
            Some(other) => {
                return err(format!(
                    "`cors.origins` must be \"*\" or a list, found {other}"
                ));
            }
        };
        let credentials = match v.get("credentials") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return err(format!(
                    "`cors.credentials` must be true or false, found {other}"
                ));
            }
        };
        if credentials && origins == Origins::Any {
            return err(
                "`cors.credentials` is true with `origins: \"*\"`: any site could read credentialed responses; list the origins",
            );
        }
        let methods = strings(v.get("methods"), "cors.methods")?
            .map(|m| m.iter().map(|m| m.to_ascii_uppercase()).collect())
            .unwrap_or_else(|| DEFAULT_METHODS.map(str::to_owned).to_vec());
        let max_age =
            match v.get("maxAge") {
                None => Some(86_400),
                Some(Value::Null) => None,
                Some(n) => Some(n.as_u64().ok_or_else(|| {
                    ConfigError(format!("`cors.maxAge` must be seconds, found {n}"))
                })?),
            };
        Ok(Self {
            origins,
            methods,
            allowed_headers: strings(v.get("allowedHeaders"), "cors.allowedHeaders")?,
            exposed_headers: strings(v.get("exposedHeaders"), "cors.exposedHeaders")?
                .unwrap_or_default(),
            credentials,
            max_age,
        })
    }

    /// Whether requests from `origin` get CORS headers.
    pub fn allows(&self, origin: &str) -> bool {
        match &self.origins {
            Origins::Any => true,
            Origins::List(list) => {
                split(origin).is_some_and(|(s, h, p)| list.iter().any(|pat| pat.allows(s, h, p)))
            }
        }
    }

    /// Whether responses depend on the request's `Origin` (always, unless
    /// every origin gets `*`), so caches must key on it.
    pub fn varies(&self) -> bool {
        self.origins != Origins::Any
    }

    /// `Access-Control-Allow-Origin` (and `-Credentials`) for `origin`.
    fn allow_origin(&self, origin: &str, out: &mut Vec<(String, String)>) {
        let value = if self.origins == Origins::Any {
            "*"
        } else {
            origin
        };
        out.push(("access-control-allow-origin".into(), value.into()));
        if self.credentials {
            out.push(("access-control-allow-credentials".into(), "true".into()));
        }
        if self.varies() {
            out.push(("vary".into(), "Origin".into()));
        }
    }

    /// The headers of an actual response to an allowed `origin`; `expose`
    /// names headers the gateway adds itself that scripts may read.
    pub fn response_headers(&self, origin: &str, expose: &[&str]) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(4);
        self.allow_origin(origin, &mut out);
        let exposed: Vec<&str> = self
            .exposed_headers
            .iter()
            .map(String::as_str)
            .chain(expose.iter().copied())
            .collect();
        if !exposed.is_empty() {
            out.push(("access-control-expose-headers".into(), exposed.join(", ")));
        }
        out
    }

    /// The headers of the answer to a preflight from an allowed `origin`
    /// asking for `headers` (`Access-Control-Request-Headers`).
    pub fn preflight_headers(&self, origin: &str, headers: Option<&str>) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(6);
        self.allow_origin(origin, &mut out);
        out.push((
            "access-control-allow-methods".into(),
            self.methods.join(", "),
        ));
        let allowed = match &self.allowed_headers {
            Some(list) => Some(list.join(", ")),
            None => {
                // Reflected, so it varies with the request too.
                out.push(("vary".into(), "Access-Control-Request-Headers".into()));
                headers
                    .map(|h| {
                        h.split(',')
                            .map(str::trim)
                            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .filter(|h| !h.is_empty())
            }
        };
        if let Some(h) = allowed {
            out.push(("access-control-allow-headers".into(), h));
        }
        if let Some(age) = self.max_age {
            out.push(("access-control-max-age".into(), age.to_string()));
        }
        out
    }

    /// The config as the API shows it.
    pub fn describe(&self) -> Value {
        let origins: Value = match &self.origins {
            Origins::Any => "*".into(),
            Origins::List(l) => l
                .iter()
                .map(|p| {
                    let host = if p.wildcard {
                        format!("*{}", p.host)
                    } else {
                        p.host.clone()
                    };
                    match p.port {
                        Some(port) => format!("{}://{host}:{port}", p.scheme),
                        None => format!("{}://{host}", p.scheme),
                    }
                })
                .collect(),
        };
        serde_json::json!({
            "origins": origins,
            "methods": self.methods,
            "allowedHeaders": self.allowed_headers,
            "exposedHeaders": self.exposed_headers,
            "credentials": self.credentials,
            "maxAge": self.max_age,
        })
    }
}

fn pattern(s: &str) -> Result<Pattern, ConfigError> {
    Pattern::parse(s).ok_or_else(|| {
        ConfigError(format!(
            "`cors.origins`: `{s}` is not an origin (`https://app.example.com`, `https://*.example.com`, optionally with `:port`)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cors(v: Value) -> Cors {
        Cors::parse(&v).unwrap()
    }

    #[test]
    fn exact_and_wildcard_origins() {
        let c =
            cors(json!({ "origins": ["https://app.example.com", "https://*.example.org:8443"] }));
        assert!(c.allows("https://app.example.com"));
        assert!(c.allows("HTTPS://App.Example.com"));
        assert!(!c.allows("http://app.example.com"));
        assert!(!c.allows("https://app.example.com:444"));
        assert!(!c.allows("https://appXexample.com"));
        assert!(c.allows("https://a.example.org:8443"));
        assert!(c.allows("https://a.b.example.org:8443"));
        for no in [
            "https://example.org:8443",
            "https://aXexample.org:8443",
            "https://a.example.org",
            "https://a.example.org.evil.com:8443",
            "https://.example.org:8443",
            "null",
            "",
        ] {
            assert!(!c.allows(no), "{no}");
        }
        // The dot before the domain is literal: no regex in sight.
        let c = cors(json!({ "origins": "https://*.a.example.com" }));
        assert!(!c.allows("https://x.aXexample.com"));
        assert!(c.allows("https://x.a.example.com"));
    }

    #[test]
    fn bad_configs_are_refused() {
        for bad in [
            json!({ "origins": "*", "credentials": true }),
            json!({ "origins": ["example.com"] }),
            json!({ "origins": ["https://a*.example.com"] }),
            json!({ "origins": ["https://*."] }),
            json!({}),
            json!({ "origins": "*", "maxage": 1 }),
        ] {
            assert!(Cors::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn preflight_reflects_or_lists_headers() {
        let c = cors(json!({ "origins": ["https://a.com"], "credentials": true, "maxAge": 60 }));
        let h = c.preflight_headers("https://a.com", Some("x-one, content-type"));
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("access-control-allow-origin"), Some("https://a.com"));
        assert_eq!(get("access-control-allow-credentials"), Some("true"));
        assert_eq!(
            get("access-control-allow-headers"),
            Some("x-one, content-type")
        );
        assert_eq!(get("access-control-max-age"), Some("60"));
        let any = cors(json!({ "origins": "*", "allowedHeaders": ["x-a"] }));
        let h = any.response_headers("https://z.com", &["x-ratelimit-limit"]);
        assert_eq!(h[0], ("access-control-allow-origin".into(), "*".into()));
        assert!(!h.iter().any(|(k, _)| k == "vary"));
    }
}
