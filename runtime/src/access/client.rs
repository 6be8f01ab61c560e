//! Who the client is: its address through trusted proxies, and the scheme
//! and host it used.
//!
//! The peer of the connection is the client unless it is a trusted proxy
//! (`RUNTIME_TRUSTED_PROXIES`, CIDRs). From a trusted peer, `Forwarded`
//! (or, without it, `X-Forwarded-For`) is read right to left: each hop a
//! trusted proxy added is believed, and the first address that is not a
//! trusted proxy is the client. Forwarding headers from any other peer are
//! never believed — and mark the request as relayed by a proxy, so a proxy
//! on the same machine does not make every client look local.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName, Uri, header};

use crate::config::TrustedProxies;

/// The client of a request, as plugins and apps receive it in the request
/// head (`client`, serialised by `client_json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientView<'a> {
    /// The connection's peer.
    pub peer: SocketAddr,
    /// The client's address: the peer, or resolved through trusted proxies.
    pub address: IpAddr,
    /// `http` or `https`, as the client used it.
    pub scheme: &'a str,
    /// The host (and port) the client asked for.
    pub host: Option<&'a str>,
    /// The request came through a proxy whose account of the client was
    /// not believed (an untrusted peer that forwarded, or an unreadable
    /// hop): the client is somewhere else.
    pub relayed: bool,
}

impl ClientView<'_> {
    /// Whether the client is this machine: a loopback address, asking for
    /// a loopback host (a page on another site that a DNS rebinding points
    /// here still names its own host), not relayed by an untrusted proxy.
    pub fn is_local(&self) -> bool {
        !self.relayed && self.address.is_loopback() && self.host.is_none_or(host_is_loopback)
    }
}

/// Whether `host` (with an optional port) names this machine's loopback:
/// `localhost`, `*.localhost`, 127.0.0.0/8 or `[::1]`.
pub fn host_is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let name = name.trim_end_matches('.');
    name.eq_ignore_ascii_case("localhost")
        || name
            .get(name.len().saturating_sub(10)..)
            .is_some_and(|s| s.eq_ignore_ascii_case(".localhost"))
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Resolves the client of a request from `peer` over `headers` (and the
/// URI's authority, where HTTP/2 puts the host).
pub fn resolve<'a>(
    peer: SocketAddr,
    headers: &'a HeaderMap,
    uri: &'a Uri,
    proxies: &TrustedProxies,
) -> ClientView<'a> {
    let own_host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let mut view = ClientView {
        peer,
        address: peer.ip().to_canonical(),
        scheme: "http",
        host: own_host,
        relayed: false,
    };
    let forwarded = headers.contains_key(header::FORWARDED);
    if !forwarded && !headers.contains_key(X_FORWARDED_FOR) {
        return view;
    }
    if proxies.is_empty() || !proxies.contains(view.address) {
        view.relayed = true;
        return view;
    }
    if forwarded {
        let elements = headers
            .get_all(header::FORWARDED)
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
        let mut nearest = true;
        for element in elements {
            if nearest {
                nearest = false;
                if let Some(proto) = param(element, "proto") {
                    view.scheme = scheme(proto);
                }
                if let Some(host) = param(element, "host") {
                    view.host = Some(host);
                }
            }
            if !step(&mut view, param(element, "for"), proxies) {
                break;
            }
        }
    } else {
        let hops = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
        for hop in hops {
            if !step(&mut view, Some(hop), proxies) {
                break;
            }
        }
        if let Some(proto) = last_value(headers, X_FORWARDED_PROTO) {
            view.scheme = scheme(proto);
        }
        if let Some(host) = last_value(headers, X_FORWARDED_HOST) {
            view.host = Some(host);
        }
    }
    view
}

/// Moves the client one hop further out; `false` when the walk ends.
fn step(view: &mut ClientView<'_>, hop: Option<&str>, proxies: &TrustedProxies) -> bool {
    match hop.and_then(node_address) {
        Some(ip) => {
            view.address = ip;
            proxies.contains(ip)
        }
        None => {
            // `unknown`, an obfuscated name or garbage: the client is past
            // a hop nobody vouches for.
            view.relayed = true;
            false
        }
    }
}

/// The address of a `for=` node or an `X-Forwarded-For` entry: an IP,
/// `ip:port`, `[v6]` or `[v6]:port`, possibly quoted.
fn node_address(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse::<IpAddr>().ok();
    }
    node.parse::<IpAddr>()
        .ok()
        .or_else(|| node.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The value of `name=` in one `Forwarded` element.
fn param<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// The last (nearest) entry of a comma-separated header.
fn last_value(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers
        .get_all(name)
        .iter()
        .next_back()?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn scheme(proto: &str) -> &'static str {
    if proto.eq_ignore_ascii_case("https") {
        "https"
    } else {
        "http"
    }
}

/// `f` of `ip` as text (its `Display`), written on the stack: an IPv4
/// address (the usual peer) without the formatting machinery, which showed
/// at about 1 % of a traced server's CPU (span attributes, forwarding
/// headers). The writer is the one of the client object's JSON.
///
/// ```
/// let ip: std::net::IpAddr = "10.0.0.255".parse().unwrap();
/// assert_eq!(buntime::access::with_ip_text(ip, str::len), 10);
/// ```
pub fn with_ip_text<R>(ip: IpAddr, f: impl FnOnce(&str) -> R) -> R {
    f(super::client_json::AddressText::ip(ip).as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(peer: &str, pairs: &[(&str, &str)], trusted: &str) -> (IpAddr, bool, String) {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        let uri = Uri::from_static("/");
        let proxies = TrustedProxies::parse(trusted).expect("proxies");
        let v = resolve(peer.parse().expect("peer"), &headers, &uri, &proxies);
        (
            v.address,
            v.relayed,
            format!("{}://{}", v.scheme, v.host.unwrap_or("")),
        )
    }

    #[test]
    fn forwarding_headers_are_believed_only_from_trusted_proxies() {
        let xff = [("x-forwarded-for", "1.1.1.1, 203.0.113.9"), ("host", "in")];
        let (ip, relayed, _) = view("198.51.100.1:1", &xff, "");
        assert_eq!(ip.to_string(), "198.51.100.1");
        assert!(relayed);
        // Right to left: the client's own claim (1.1.1.1) is never reached.
        let (ip, relayed, _) = view("10.0.0.1:1", &xff, "10.0.0.0/8");
        assert_eq!(ip.to_string(), "203.0.113.9");
        assert!(!relayed);
        let (ip, _, _) = view("10.0.0.1:1", &xff, "10.0.0.0/8, 203.0.113.0/24");
        assert_eq!(ip.to_string(), "1.1.1.1");
        let (ip, relayed, _) = view(
            "10.0.0.1:1",
            &[("x-forwarded-for", "garbage, 10.0.0.2")],
            "10.0.0.0/8",
        );
        assert_eq!(ip.to_string(), "10.0.0.2");
        assert!(relayed);
    }

    #[test]
    fn forwarded_gives_address_scheme_and_host() {
        let pairs = [
            (
                "forwarded",
                r#"for=6.6.6.6;proto=http, for="[2001:db8::1]:4711";proto=https;host=app.example.com"#,
            ),
            ("x-forwarded-for", "7.7.7.7"),
            ("host", "internal:8000"),
        ];
        let (ip, relayed, url) = view("[::ffff:127.0.0.1]:9", &pairs, "127.0.0.1");
        assert_eq!(ip.to_string(), "2001:db8::1");
        assert!(!relayed);
        assert_eq!(url, "https://app.example.com");
        let (_, _, url) = view(
            "127.0.0.1:9",
            &[
                ("x-forwarded-for", "7.7.7.7"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "a.example, b.example"),
            ],
            "127.0.0.0/8",
        );
        assert_eq!(url, "https://b.example");
    }

    #[test]
    fn loopback_hosts() {
        for local in [
            "localhost",
            "localhost:8000",
            "a.localhost",
            "127.0.0.1:80",
            "[::1]:8000",
            "127.9.9.9",
        ] {
            assert!(host_is_loopback(local), "{local}");
        }
        for remote in [
            "example.com",
            "evil.localhost.example.com",
            "10.0.0.1:80",
            "[2001:db8::1]",
        ] {
            assert!(!host_is_loopback(remote), "{remote}");
        }
    }

    #[test]
    fn the_ip_text_is_the_display_of_the_address() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "9.99.199.200",
            "::1",
            "::ffff:1.2.3.4",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            with_ip_text(ip, |text| assert_eq!(text, ip.to_string()));
        }
    }
}
