//! The `http` grant: URL patterns, and what counts as a private address.
//!
//! A grant is a list of `scheme://host:port` patterns (`*` and `?` wildcards
//! in the host, `*` for any port). Private networks are refused after DNS
//! resolution unless the grant names the address or allows private
//! networks; [`PublicOnlyResolver`] re-checks every address the outbound
//! client connects to (see `capabilities/http.rs` for the declaration).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use super::GrantError;
use super::hosts::HostPattern;

/// The parsed `http` grant.
#[derive(Debug, Clone, Default)]
pub struct HttpGrant {
    /// Allowed URL patterns.
    pub patterns: Vec<UrlPattern>,
    /// Whether any private address may be reached.
    pub private_networks: bool,
}

impl HttpGrant {
    /// How the grant is written, for error messages and listings.
    pub const SYNTAX: &'static str = "\"http\": [\"https://*.example.com\", \"http://10.0.0.5:8080\"] or {\"allow\": [...], \"privateNetworks\": true}";

    /// Parses a declaration: `false`, a list of URL patterns, or
    /// `{"allow": [...], "privateNetworks": bool}`. `Ok(None)`: nothing granted.
    pub fn parse_declaration(declared: &Value) -> Result<Option<HttpGrant>, String> {
        let (list, private) = match declared {
            Value::Bool(false) => return Ok(None),
            Value::Array(_) => (declared, false),
            Value::Object(map) => {
                for key in map.keys() {
                    if key != "allow" && key != "privateNetworks" {
                        return Err(format!(
                            "unknown key `{key}` (allowed: `allow`, `privateNetworks`)"
                        ));
                    }
                }
                let private = match map.get("privateNetworks") {
                    None | Some(Value::Bool(false)) => false,
                    Some(Value::Bool(true)) => true,
                    Some(other) => {
                        return Err(format!(
                            "`privateNetworks` must be true or false, found {other}"
                        ));
                    }
                };
                (map.get("allow").unwrap_or(&Value::Null), private)
            }
            other => return Err(format!("expected a list of URL patterns, found {other}")),
        };
        let patterns = super::string_list(list, "`allow`")?
            .iter()
            .map(|p| UrlPattern::parse(p).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        if patterns.is_empty() {
            return Ok(None);
        }
        Ok(Some(HttpGrant {
            patterns,
            private_networks: private,
        }))
    }

    /// The pattern that allows `url`, if any.
    pub fn matching(&self, url: &url::Url) -> Option<&UrlPattern> {
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        self.patterns
            .iter()
            .find(|p| p.matches(url.scheme(), host, port))
    }

    /// Whether the request to `url` may reach private addresses: the grant
    /// says so, or some pattern that matches `url` names the host literally.
    pub fn allows_private(&self, url: &url::Url) -> bool {
        if self.private_networks {
            return true;
        }
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        self.patterns
            .iter()
            .any(|p| p.matches(url.scheme(), host, port) && p.names_private_host())
    }
}

impl HttpGrant {
    /// The private address a request to `url` would reach when the grant
    /// does not allow it: the URL's own IP address, or the first of its
    /// name's addresses when every one is private (checked after DNS).
    /// `None`: the request may go on (through [`PublicOnlyResolver`] unless
    /// [`HttpGrant::allows_private`]).
    pub(crate) async fn refused_private(&self, url: &url::Url) -> Option<IpAddr> {
        if self.allows_private(url) {
            return None;
        }
        match url.host()? {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)).filter(|ip| is_private_address(*ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)).filter(|ip| is_private_address(*ip)),
            url::Host::Domain(host) => {
                resolves_only_private(host, url.port_or_known_default().unwrap_or(80)).await
            }
        }
    }
}

/// Which ports a pattern allows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ports {
    Any,
    DefaultOf(&'static str),
    Exact(u16),
}

impl Ports {
    /// The one port of a non-`Any` pattern.
    fn single(&self) -> Option<u16> {
        match self {
            Ports::Any => None,
            Ports::Exact(p) => Some(*p),
            Ports::DefaultOf("https") => Some(443),
            Ports::DefaultOf(_) => Some(80),
        }
    }
}

/// One `scheme://host:port` pattern.
///
/// ```
/// use buntime::capabilities::UrlPattern;
/// let p = UrlPattern::parse("https://*.example.com").unwrap();
/// assert!(p.matches("https", "api.example.com", 443));
/// assert!(!p.matches("http", "api.example.com", 80));
/// assert!(!p.matches("https", "api.example.com", 8443));
/// let any = UrlPattern::parse("http://127.0.0.1:*").unwrap();
/// assert!(any.matches("http", "127.0.0.1", 9000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPattern {
    scheme: Option<String>,
    pub(crate) host: HostPattern,
    host_text: String,
    ports: Ports,
}

impl UrlPattern {
    /// HTTP or HTTPS on any port to hosts matching `host`.
    pub fn any_scheme(host: HostPattern) -> Self {
        Self {
            scheme: None,
            host_text: host.as_str().to_owned(),
            host,
            ports: Ports::Any,
        }
    }

    /// Parses `[scheme://]host[:port|:*]`.
    pub fn parse(text: &str) -> Result<Self, GrantError> {
        let invalid = |reason| GrantError::InvalidHostPattern {
            pattern: text.to_owned(),
            reason,
        };
        let (scheme, rest) = match text.split_once("://") {
            Some((s, rest)) => {
                let s = s.to_ascii_lowercase();
                if s != "http" && s != "https" {
                    return Err(invalid("the scheme must be http or https"));
                }
                (Some(s), rest)
            }
            None => (None, text),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(invalid("a pattern has no path: write scheme://host:port"));
        }
        // `[::1]:8080`, `host:*`, `host`.
        let (host, port) = if rest.starts_with('[') {
            match rest.find(']') {
                Some(end) => match &rest[end + 1..] {
                    "" => (&rest[..=end], None),
                    tail => match tail.strip_prefix(':') {
                        Some(p) => (&rest[..=end], Some(p)),
                        None => return Err(invalid("expected `:port` after an IPv6 address")),
                    },
                },
                None => return Err(invalid("an IPv6 address needs a closing `]`")),
            }
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let ports = match (port, scheme.as_deref()) {
            (Some("*"), _) => Ports::Any,
            (Some(p), _) => Ports::Exact(
                p.parse()
                    .ok()
                    .filter(|&n: &u16| n > 0)
                    .ok_or_else(|| invalid("the port must be a number from 1 to 65535 or `*`"))?,
            ),
            (None, Some("https")) => Ports::DefaultOf("https"),
            (None, Some(_)) => Ports::DefaultOf("http"),
            (None, None) => Ports::Any,
        };
        Ok(Self {
            scheme,
            host: HostPattern::parse(host)?,
            host_text: host.to_ascii_lowercase(),
            ports,
        })
    }

    /// Whether a request to `scheme://host:port` matches.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = match &self.scheme {
            Some(s) => s.eq_ignore_ascii_case(scheme),
            None => scheme == "http" || scheme == "https",
        };
        let port_ok = match self.ports {
            Ports::Any => true,
            Ports::Exact(p) => p == port,
            Ports::DefaultOf("https") => port == 443,
            Ports::DefaultOf(_) => port == 80,
        };
        scheme_ok && port_ok && self.host.matches(host)
    }

    /// Whether every URL `other` matches is matched by `self` too: the scheme
    /// and port are at least as wide, and the host glob covers `other`'s host
    /// glob (see [`HostPattern::covers`]). Used to hold an app's grant to the
    /// operator's ceiling.
    ///
    /// ```
    /// use buntime::capabilities::UrlPattern;
    /// let ceiling = UrlPattern::parse("*.example.com").unwrap();
    /// assert!(ceiling.covers(&UrlPattern::parse("https://api.example.com").unwrap()));
    /// assert!(ceiling.covers(&UrlPattern::parse("*.eu.example.com:8443").unwrap()));
    /// assert!(!ceiling.covers(&UrlPattern::parse("*.com").unwrap()));
    /// let https = UrlPattern::parse("https://api.example.com").unwrap();
    /// assert!(!https.covers(&UrlPattern::parse("api.example.com").unwrap()));
    /// ```
    pub fn covers(&self, other: &UrlPattern) -> bool {
        let scheme = match (&self.scheme, &other.scheme) {
            (None, _) => true,
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => false,
        };
        let ports = match (&self.ports, &other.ports) {
            (Ports::Any, _) => true,
            (_, Ports::Any) => false,
            (a, b) => a.single() == b.single(),
        };
        scheme && ports && self.host.covers(&other.host)
    }

    /// Whether the pattern names one private host literally (an IP address or
    /// `localhost`, no wildcard), which grants that host despite the
    /// private-network block.
    pub fn names_private_host(&self) -> bool {
        let h = self.host_text.trim_start_matches('[').trim_end_matches(']');
        if h == "localhost" {
            return true;
        }
        h.parse::<IpAddr>().is_ok_and(is_private_address)
    }
}

impl std::fmt::Display for UrlPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(s) = &self.scheme {
            write!(f, "{s}://")?;
        }
        f.write_str(&self.host_text)?;
        match self.ports {
            Ports::Any if self.scheme.is_some() => f.write_str(":*"),
            Ports::Exact(p) => write!(f, ":{p}"),
            _ => Ok(()),
        }
    }
}

/// Whether `ip` is loopback, private, link-local, unique-local, shared (CGNAT),
/// unspecified or broadcast — anything that is not the public internet.
///
/// ```
/// use buntime::capabilities::is_private_address;
/// assert!(is_private_address("10.1.2.3".parse().unwrap()));
/// assert!(is_private_address("::ffff:127.0.0.1".parse().unwrap()));
/// assert!(!is_private_address("93.184.216.34".parse().unwrap()));
/// ```
pub fn is_private_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => private_v4(v4),
            None => private_v6(v6),
        },
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

fn private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

/// A DNS resolver for the outbound client used when private networks are not
/// granted: it drops every private address it resolves, so a connection can
/// only ever go to a public one, whatever the name resolves to by then.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addrs = public_addrs(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// `host`'s public addresses (port 0): what [`PublicOnlyResolver`] connects
/// to. An error when it has none.
pub(crate) async fn public_addrs(host: &str) -> std::io::Result<Vec<std::net::SocketAddr>> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, 0))
        .await?
        .filter(|a| !is_private_address(a.ip()))
        .collect();
    if addrs.is_empty() {
        return Err(std::io::Error::other(format!(
            "`{host}` resolves only to private addresses"
        )));
    }
    Ok(addrs)
}

/// The first private address among `host`'s, if every one of them is private
/// (then the request cannot go anywhere allowed).
pub(crate) async fn resolves_only_private(host: &str, port: u16) -> Option<IpAddr> {
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host, port))
        .await
        .ok()?
        .map(|a| a.ip())
        .collect();
    if !addrs.is_empty() && addrs.iter().all(|ip| is_private_address(*ip)) {
        addrs.first().copied()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_pattern_table() {
        let cases = [
            ("api.example.com", "https", "api.example.com", 8443, true),
            ("api.example.com", "http", "api.example.com", 80, true),
            (
                "https://api.example.com",
                "https",
                "api.example.com",
                443,
                true,
            ),
            (
                "https://api.example.com",
                "http",
                "api.example.com",
                80,
                false,
            ),
            (
                "https://api.example.com:8443",
                "https",
                "api.example.com",
                8443,
                true,
            ),
            ("http://*.svc:*", "http", "a.svc", 1234, true),
            ("http://[::1]:8080", "http", "[::1]", 8080, true),
        ];
        for (pattern, scheme, host, port, want) in cases {
            let p = UrlPattern::parse(pattern).unwrap();
            assert_eq!(
                p.matches(scheme, host, port),
                want,
                "{pattern} vs {scheme}://{host}:{port}"
            );
        }
    }

    #[test]
    fn malformed_url_patterns_are_refused() {
        for bad in [
            "ftp://x.com",
            "https://x.com/path",
            "https://x.com:http",
            "",
            "https://",
        ] {
            assert!(UrlPattern::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn any_matching_pattern_may_name_a_private_host() {
        let grant = HttpGrant {
            patterns: vec![
                UrlPattern::parse("*").unwrap(),
                UrlPattern::parse("http://127.0.0.1:8080").unwrap(),
            ],
            private_networks: false,
        };
        assert!(grant.allows_private(&url::Url::parse("http://127.0.0.1:8080/x").unwrap()));
        assert!(!grant.allows_private(&url::Url::parse("http://127.0.0.1:9090/x").unwrap()));
    }

    #[test]
    fn private_hosts_named_literally() {
        assert!(
            UrlPattern::parse("http://127.0.0.1:*")
                .unwrap()
                .names_private_host()
        );
        assert!(
            UrlPattern::parse("http://localhost:8080")
                .unwrap()
                .names_private_host()
        );
        assert!(
            !UrlPattern::parse("http://*.internal:*")
                .unwrap()
                .names_private_host()
        );
        assert!(!UrlPattern::parse("*").unwrap().names_private_host());
    }

    #[test]
    fn private_address_table() {
        for (ip, want) in [
            ("127.0.0.1", true),
            ("10.0.0.1", true),
            ("172.16.5.4", true),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("100.64.0.1", true),
            ("0.0.0.0", true),
            ("::1", true),
            ("fd00::1", true),
            ("fe80::1", true),
            ("8.8.8.8", false),
            ("2606:4700::1111", false),
        ] {
            assert_eq!(is_private_address(ip.parse().unwrap()), want, "{ip}");
        }
    }
}
