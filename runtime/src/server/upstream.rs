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
use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::client::RequestClientSource;
use super::error::{ApiError, ErrorKind};
use super::upstream_client::{IdleBody, Progress, ProgressBody, within_silence};
use super::upstream_pool::{self, SendError};
use super::upstream_target::Target;
use super::upstream_ws::{asked, switch};
use crate::capabilities::{Capability, Denial, HttpGrant};
use crate::plugins::Plugin;

/// Headers that concern one connection, never forwarded either way
/// (RFC 9110 §7.6.1); a request's `expect` goes too (the host answers it
/// itself). A `static`, not a `const`: a `const` array of header names is
/// built (and dropped) wherever it is used.
static HOP_BY_HOP: [HeaderName; 9] = [
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

/// Forwards `req` to `target` for `plugin` and answers what the upstream
/// answers (or the host's error).
pub(crate) async fn forward(
    state: &AppState,
    plugin: &Plugin,
    mut req: Request,
    target: Target,
    client: &RequestClientSource<'_>,
) -> Response {
    let url = &target.origin.url;
    let origin = target.origin.text.clone();
    let grant = plugin
        .grants
        .get::<HttpGrant>(Capability::UPSTREAM)
        .filter(|g| g.matching(url).is_some());
    let Some(grant) = grant else {
        return denied(
            state,
            plugin,
            format!("`{origin}` is not in the plugin's `upstream` grant"),
            format!("\"upstream\": [\"{origin}\"]"),
        );
    };
    if let Some(ip) = grant.refused_private(url).await {
        let port = url.port_or_known_default().unwrap_or(80);
        let at = match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        return denied(
            state,
            plugin,
            format!(
                "`{}` is the private address {ip}",
                url.host_str().unwrap_or_default()
            ),
            format!(
                "\"upstream\": [\"{}://{at}:{port}\"] or {{\"allow\": [...], \"privateNetworks\": true}}",
                url.scheme()
            ),
        );
    }
    let allow_private = grant.allows_private(url);
    let forwarding = super::forwarding::forwarding_headers(client, req.headers(), req.uri());
    let upgrade = target.websocket.and_then(|relay| {
        let handshake = asked(&mut req)?;
        Some((relay, handshake, hyper::upgrade::on(&mut req)))
    });

    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    headers.remove(header::EXPECT);
    for name in &target.remove_headers {
        headers.remove(name);
    }
    // `Host` is always set; what came in under the forwarding names is
    // replaced or removed, even if the plugin removed them; the plugin's
    // own values come last.
    headers.insert(header::HOST, target.origin.host.clone());
    forwarding.apply(headers);
    for (name, value) in target.set_headers {
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
    // A body known to be empty (most GETs) has no progress to note.
    let body = if body.is_end_stream() {
        body
    } else {
        Body::new(ProgressBody::new(body, progress.clone()))
    };
    let outbound = Request::from_parts(parts, body);

    let key = upstream_pool::Key {
        origin: origin.clone(),
        allow_private,
        connect_timeout: target.connect_timeout,
    };
    // The send inline, not in a named local first: a local moved into
    // the wait still takes its own room in this future's state.
    let answer = within_silence(
        upstream_pool::send(&state.upstreams, key, &target.origin.authority, outbound),
        &progress,
        target.timeout,
        &state.upstreams.timers,
    )
    .await;
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
    // One look at each of the (few) names finds whether there is anything
    // to strip; most messages carry none, and a removal per hop-by-hop name
    // hashes that name whether or not it is there.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
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

/// Whether `name` is one of [`HOP_BY_HOP`]: its text matched by length and
/// bytes (comparing `HeaderName`s one by one cost more than the removals
/// this check saves).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
        // The quick check knows exactly the names the list holds.
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for other in [
            header::HOST,
            header::EXPECT,
            HeaderName::from_static("x-te"),
        ] {
            assert!(!is_hop_by_hop(&other), "{other}");
        }
    }
}
