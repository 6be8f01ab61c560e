//! Host-executed proxying: a plugin's `on_request` answered `proxy`, and
//! the host forwards the request to that upstream itself.
//!
//! ```text
//! check the URL against the plugin's `upstream` grant (and, after DNS, the
//! private-network rule)
//! → the request, hop-by-hop headers stripped, the plugin's header changes
//!   and X-Forwarded-*/Forwarded set, its body streamed up
//! ← the response head within `timeout` of the request body's last piece
//!   (a long upload is not a slow upstream), hop-by-hop headers stripped,
//!   its body streamed down (cut if the upstream is quiet for `timeout`)
//! ```
//!
//! Neither body is ever held whole: the client's body is handed to the
//! outbound connection as it arrives, and the upstream's to the client's.
//! The response then unwinds through the plugins before the one that
//! proxied, like any early answer. Failures are the host's JSON errors:
//! `502 UPSTREAM_UNAVAILABLE` (no connection: refused, unknown name),
//! `504 UPSTREAM_TIMEOUT`, `502 UPSTREAM_FAILED` (a broken answer) and
//! `502 UPSTREAM_DENIED` (outside the grant).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use buntime_pdk::hooks::Upstream;
use bytes::Bytes;

use super::AppState;
use super::client::RequestClientSource;
use super::error::{ApiError, ErrorKind};
use super::guest_http::{DroppedHeaders, GuestHeaders};
use super::upstream_client::{IdleBody, Progress, ProgressBody, within_silence};
use super::upstream_pool::{self, SendError};
use super::upstream_ws::{Relay, asked, switch};
use crate::capabilities::{Capability, Denial, HttpGrant};
use crate::plugins::Plugin;

/// How long an upstream may take to answer (and to send each piece of its
/// body) unless the plugin says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take unless the plugin says otherwise.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest timeout a plugin may ask for (one hour), in milliseconds.
const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// A relayed WebSocket's silence and life, unless the plugin says otherwise.
const DEFAULT_WS_IDLE: Duration = Duration::from_secs(300);
const DEFAULT_WS_TOTAL: Duration = Duration::from_secs(3600);
/// The longest either may be (a day), in milliseconds.
const MAX_WS_MS: u64 = 86_400_000;

/// Headers that concern one connection, never forwarded either way
/// (RFC 9110 §7.6.1), plus `expect` (the host answers it itself).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// A checked `proxy` answer.
#[derive(Debug)]
pub(crate) struct Target {
    url: url::Url,
    /// The request target on the upstream connection: path and query.
    uri: Uri,
    /// `scheme://host:port` as the connector takes it.
    authority: Uri,
    /// `scheme://host:port`, for messages and the pool.
    origin: Arc<str>,
    /// The `Host` header for the upstream: `host[:port]` as in the URL.
    host: HeaderValue,
    set_headers: Vec<(HeaderName, HeaderValue)>,
    remove_headers: Vec<HeaderName>,
    timeout: Duration,
    connect_timeout: Duration,
    /// Relay a WebSocket upgrade, within these limits.
    websocket: Option<Relay>,
}

impl Target {
    /// Checks a plugin's `upstream`; the error describes what is wrong with
    /// it (a malformed answer). Framing and hop-by-hop headers it sets or
    /// removes are dropped (noted in `dropped` under `module`): the host
    /// frames the request and owns the connection.
    pub(crate) fn parse(
        up: Upstream,
        module: &str,
        dropped: &DroppedHeaders,
    ) -> Result<Self, String> {
        let mut url = url::Url::parse(&up.url)
            .map_err(|e| format!("`upstream.url` `{}` is not an absolute URL: {e}", up.url))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(format!(
                "`upstream.url` `{}` must be an http or https URL",
                up.url
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("`upstream.url` `{}` names no host", up.url));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "`upstream.url` `{}` carries credentials; send them in a header (`set_headers`)",
                up.url
            ));
        }
        url.set_fragment(None);
        let invalid = |e: &dyn std::fmt::Display| {
            format!("`upstream.url` `{}` is not a valid URI: {e}", up.url)
        };
        let uri: Uri = url[url::Position::BeforePath..]
            .parse()
            .map_err(|e| invalid(&e))?;
        // `scheme://host[:port]`: what `Url::origin().ascii_serialization()`
        // gives for an http(s) URL without credentials (the parser already
        // dropped a default port), read off the serialization instead of
        // formatted again on every proxied request.
        let origin = &url[..url::Position::BeforePath];
        let authority: Uri = origin.parse().map_err(|e| invalid(&e))?;
        let origin = Arc::<str>::from(origin);
        let host = HeaderValue::try_from(&url[url::Position::BeforeHost..url::Position::AfterPort])
            .map_err(|e| invalid(&e))?;
        let removed = GuestHeaders {
            module,
            field: "`upstream.remove_headers`",
            dropped,
        };
        let mut remove_headers = Vec::with_capacity(up.remove_headers.len());
        for name in &up.remove_headers {
            remove_headers.extend(removed.name(name)?);
        }
        let checked = GuestHeaders {
            field: "`upstream.set_headers`",
            ..removed
        };
        let mut set_headers = Vec::with_capacity(up.set_headers.len());
        for (k, v) in up.set_headers {
            set_headers.extend(checked.header(&k, Bytes::from(v))?);
        }
        let ms = |v: Option<u64>, field: &str, default: Duration, max: u64| match v {
            None => Ok(default),
            Some(ms) if (1..=max).contains(&ms) => Ok(Duration::from_millis(ms)),
            Some(ms) => Err(format!("`upstream.{field}` {ms} must be from 1 to {max}")),
        };
        Ok(Self {
            timeout: ms(up.timeout_ms, "timeout_ms", DEFAULT_TIMEOUT, MAX_TIMEOUT_MS)?,
            connect_timeout: ms(
                up.connect_timeout_ms,
                "connect_timeout_ms",
                DEFAULT_CONNECT_TIMEOUT,
                MAX_TIMEOUT_MS,
            )?,
            websocket: up.websocket.then_some(Relay {
                idle: ms(
                    up.idle_timeout_ms,
                    "idle_timeout_ms",
                    DEFAULT_WS_IDLE,
                    MAX_WS_MS,
                )?,
                total: ms(
                    up.max_duration_ms,
                    "max_duration_ms",
                    DEFAULT_WS_TOTAL,
                    MAX_WS_MS,
                )?,
            }),
            url,
            uri,
            authority,
            origin,
            host,
            set_headers,
            remove_headers,
        })
    }
}

/// Forwards `req` to `target` for `plugin` and answers what the upstream
/// answers (or the host's error).
pub(crate) async fn forward(
    state: &AppState,
    plugin: &Plugin,
    mut req: Request,
    target: Target,
    client: &RequestClientSource<'_>,
) -> Response {
    let origin = target.origin.clone();
    let grant = plugin
        .grants
        .get::<HttpGrant>(Capability::UPSTREAM)
        .filter(|g| g.matching(&target.url).is_some());
    let Some(grant) = grant else {
        return denied(
            state,
            plugin,
            format!("`{origin}` is not in the plugin's `upstream` grant"),
            format!("\"upstream\": [\"{origin}\"]"),
        );
    };
    if let Some(ip) = grant.refused_private(&target.url).await {
        let port = target.url.port_or_known_default().unwrap_or(80);
        let at = match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        return denied(
            state,
            plugin,
            format!(
                "`{}` is the private address {ip}",
                target.url.host_str().unwrap_or_default()
            ),
            format!(
                "\"upstream\": [\"{}://{at}:{port}\"] or {{\"allow\": [...], \"privateNetworks\": true}}",
                target.url.scheme()
            ),
        );
    }
    let allow_private = grant.allows_private(&target.url);
    let forwarding = forwarding_headers(client, req.headers(), req.uri());
    let upgrade = target.websocket.and_then(|relay| {
        let handshake = asked(&mut req)?;
        Some((relay, handshake, hyper::upgrade::on(&mut req)))
    });

    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    for name in [
        header::HOST,
        header::EXPECT,
        header::FORWARDED,
        X_FORWARDED_FOR,
        X_FORWARDED_PROTO,
        X_FORWARDED_HOST,
    ] {
        headers.remove(name);
    }
    for name in &target.remove_headers {
        headers.remove(name);
    }
    headers.insert(header::HOST, target.host);
    for (name, value) in forwarding.into_iter().chain(target.set_headers) {
        headers.insert(name, value);
    }
    // After the plugin's headers: the host's key is the one it checks.
    if let Some((_, handshake, _)) = &upgrade {
        handshake.request_headers(headers);
    }
    parts.uri = target.uri;
    parts.version = Version::HTTP_11;
    parts.extensions = http::Extensions::new();
    let progress = Progress::new();
    let body = Body::new(ProgressBody::new(body, progress.clone()));
    let outbound = Request::from_parts(parts, body);

    let key = upstream_pool::Key {
        origin: origin.clone(),
        allow_private,
        connect_timeout: target.connect_timeout,
    };
    let sent = upstream_pool::send(&state.upstreams, key, &target.authority, outbound);
    let answer = within_silence(sent, &progress, target.timeout).await;
    match answer {
        // The connection is the relay's now: its lease is dropped.
        Some(Ok((res, _))) if res.status() == StatusCode::SWITCHING_PROTOCOLS => match upgrade {
            Some((relay, handshake, client_side)) => {
                switch(res, client_side, handshake, relay, origin, &state.relays)
            }
            // A switch nobody asked for cannot be relayed.
            None => ApiError::new(
                ErrorKind::UpstreamFailed,
                format!("the upstream `{origin}` switched protocols unasked"),
            )
            .into_response(),
        },
        Some(Ok((res, lease))) => {
            let (mut parts, body) = res.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            parts.extensions = http::Extensions::new();
            let body = IdleBody::new(body, target.timeout, origin, lease);
            Response::from_parts(parts, Body::new(body))
        }
        Some(Err(e)) => failed(&origin, &e, target.connect_timeout),
        None => ApiError::new(
            ErrorKind::UpstreamTimeout,
            format!(
                "the upstream `{origin}` did not answer within {} ms of the request's last byte",
                target.timeout.as_millis()
            ),
        )
        .into_response(),
    }
}

/// A refused upstream: logged and counted like every denial, answered 502.
fn denied(state: &AppState, plugin: &Plugin, detail: String, hint: String) -> Response {
    let denial = Denial {
        capability: Capability::UPSTREAM,
        function: "on_request (proxy)".to_owned(),
        detail,
        hint,
    };
    state
        .pools
        .engine()
        .stats()
        .record_denial(Capability::UPSTREAM.name());
    tracing::warn!(plugin = plugin.name(), capability = "upstream", "{denial}");
    ApiError::new(
        ErrorKind::UpstreamDenied,
        format!("plugin `{}`: {denial}", plugin.name()),
    )
    .into_response()
}

/// A request that got no answer: 504 for a connect timeout, 502 otherwise.
fn failed(origin: &str, e: &SendError, connect_timeout: Duration) -> Response {
    let mut chain = e.to_string();
    let mut timed_out = false;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
        }
        source = s.source();
    }
    if e.is_connect() && timed_out {
        return ApiError::new(
            ErrorKind::UpstreamTimeout,
            format!(
                "connecting to the upstream `{origin}` took longer than {} ms",
                connect_timeout.as_millis()
            ),
        )
        .into_response();
    }
    tracing::warn!(upstream = origin, "upstream request failed: {chain}");
    let (kind, what) = if e.is_connect() {
        (ErrorKind::UpstreamUnavailable, "could not connect to")
    } else {
        (ErrorKind::UpstreamFailed, "no valid answer from")
    };
    ApiError::new(kind, format!("{what} the upstream `{origin}`: {chain}")).into_response()
}

/// Removes the hop-by-hop headers, and those `Connection` names.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(listed) = headers.get(header::CONNECTION) {
        let named: Vec<HeaderName> = listed
            .to_str()
            .unwrap_or_default()
            .split(',')
            .filter_map(|n| HeaderName::try_from(n.trim()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// `X-Forwarded-For`, `-Proto`, `-Host` and `Forwarded` for the client of
/// this request, resolved through the trusted proxies (what came in under
/// those names is replaced: an untrusted client's account is never passed on).
fn forwarding_headers(
    client: &RequestClientSource<'_>,
    headers: &HeaderMap,
    uri: &Uri,
) -> Vec<(HeaderName, HeaderValue)> {
    let Some(view) = client.view(headers, uri) else {
        return Vec::new();
    };
    let address = view.address.to_canonical();
    // The address is formatted once, for both headers.
    let ip = address.to_string();
    let mut forwarded = String::with_capacity(32 + ip.len());
    forwarded.push_str("for=");
    if address.is_ipv6() {
        forwarded.push_str("\"[");
        forwarded.push_str(&ip);
        forwarded.push_str("]\"");
    } else {
        forwarded.push_str(&ip);
    }
    forwarded.push_str(";proto=");
    forwarded.push_str(view.scheme);
    let mut out = Vec::with_capacity(4);
    if let Some(host) = view.host {
        forwarded.push_str(";host=\"");
        for c in host.chars() {
            if c == '"' || c == '\\' {
                forwarded.push('\\');
            }
            forwarded.push(c);
        }
        forwarded.push('"');
        if let Ok(v) = HeaderValue::try_from(host) {
            out.push((X_FORWARDED_HOST, v));
        }
    }
    if let Ok(v) = HeaderValue::try_from(ip) {
        out.push((X_FORWARDED_FOR, v));
    }
    out.push((
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if view.scheme == "https" {
            "https"
        } else {
            "http"
        }),
    ));
    if let Ok(v) = HeaderValue::try_from(forwarded) {
        out.push((header::FORWARDED, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_answer_is_checked() {
        let dropped = DroppedHeaders::default();
        let parse = |up| Target::parse(up, "p", &dropped);
        let ok = parse(
            Upstream::new("http://svc:8080/a/b?c=1#frag")
                .set_header("x-a", "1")
                .set_header("connection", "close")
                .timeout_ms(100),
        )
        .unwrap();
        assert_eq!(ok.uri.to_string(), "/a/b?c=1");
        assert_eq!(ok.authority.to_string(), "http://svc:8080/");
        assert_eq!(&*ok.origin, "http://svc:8080");
        assert_eq!(ok.host, "svc:8080");
        let default_port = parse(Upstream::new("https://[::1]:443")).unwrap();
        assert_eq!(default_port.uri.to_string(), "/");
        assert_eq!(default_port.host, "[::1]");
        // The origin is the URL's own, however it was written.
        for written in [
            "http://svc:8080/a/b?c=1#frag",
            "https://[::1]:443",
            "HTTP://Svc.Example:80/x",
            "https://10.0.0.1:8443?q",
            "http://bücher.example/",
        ] {
            let url = url::Url::parse(written).unwrap();
            assert_eq!(
                &*parse(Upstream::new(written)).unwrap().origin,
                url.origin().ascii_serialization(),
                "{written}"
            );
        }
        assert_eq!(ok.set_headers.len(), 1, "hop-by-hop headers are not set");
        assert_eq!(ok.timeout, Duration::from_millis(100));
        assert_eq!(ok.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        for bad in [
            Upstream::new("/relative"),
            Upstream::new("ftp://svc/x"),
            Upstream::new("http://user:pw@svc/x"),
            Upstream::new("http://svc/").set_header("bad name", "1"),
            Upstream::new("http://svc/").timeout_ms(0),
            Upstream::new("http://svc/").connect_timeout_ms(MAX_TIMEOUT_MS + 1),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
    }
}
