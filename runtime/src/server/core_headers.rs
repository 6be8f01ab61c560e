//! CORS for the core routes: the `on_request` of the plugins whose manifest
//! says `"coreRoutes": "headers"` (the gateway) also runs for a request to
//! a core route (`routes.rs`), in chain order, and the host keeps from its
//! answer only CORS:
//!
//! - the `response_headers` of a `continue` whose names are `vary` or start
//!   with `access-control-`, set on the core route's response as the chain
//!   sets them (latest plugin first; `vary` merged);
//! - a `respond` to a CORS preflight (`OPTIONS` with `Origin` and
//!   `Access-Control-Request-Method`) with status 200 or 204: answered
//!   with that status, the same header names and no body, instead of the
//!   core router's 405.
//!
//! Everything else a plugin answers is ignored — other headers (logged
//! once per plugin at debug level), request changes, a `respond` to any
//! other request, a `proxy`, a failure, a trap, a timeout: the core route is
//! served as if the plugin were not there. The request never reaches the
//! chain's routing or an upstream, and its body is never read. The plugin
//! sees the head without the caller's credentials (`Authorization`,
//! `Proxy-Authorization`, `Cookie`, `X-API-Key`) or identity headers, and
//! `core_route: true` in it. The core routes' own checks (`guard.rs`) run
//! unchanged, after this.
//!
//! A guarded route served to a caller without a key — which happens only
//! while no key is configured, to a client on this machine — never gets
//! CORS headers but `vary`: a page on an allowed origin must not read what
//! the server shows its own machine without a key.
//!
//! A server without such a plugin never enters this module: the service
//! checks one flag (`PluginHost::covers_core_routes`).

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use buntime_pdk::hooks::RequestDecision;
use tower::ServiceExt as _;

use super::AppState;
use super::client::RequestClientSource;
use super::guest_http::{Guest, HeadForms, HeadView, HeaderPairs};
use super::routes::Guard;
use crate::plugins::{Chain, Plugin};
use crate::telemetry::TraceHeaders;

/// Serves the core request `req` from `peer` with `core` (the core
/// router), wrapped by the plugins of the chain in force that cover the
/// core routes.
pub(super) async fn serve(
    state: &AppState,
    core: Router,
    mut req: Request,
    peer: Option<SocketAddr>,
) -> Result<Response, Infallible> {
    let chain = state.plugins.for_request();
    // An unknown path under `/_/api/` falls back to the chain, where every
    // plugin sees it anyway.
    let guard = super::routes::guard_of(req.method(), req.uri().path());
    let Some(guard) = guard.filter(|_| chain.core_route_plugins().next().is_some()) else {
        return core.oneshot(req).await;
    };
    let request_id = super::request_id::assign(&mut req);
    // The head alone crosses the plugins' awaits (a body is not `Sync`).
    let (parts, body) = req.into_parts();
    let readable = readable(state, guard, &parts);
    let (pending, answer) = ask(state, &chain, &parts, peer).await;
    let req = Request::from_parts(parts, body);
    let mut res = match answer {
        Some(mut res) => {
            res.headers_mut()
                .insert(super::request_id::X_REQUEST_ID, request_id);
            res
        }
        None => core.oneshot(req).await?,
    };
    for mut headers in pending.into_iter().rev() {
        if !readable {
            headers.retain(|(name, _)| name == header::VARY);
        }
        super::pipeline::set_response_headers(&mut res, headers);
    }
    Ok(res)
}

/// Whether the response to `req` may be readable across origins: not when
/// a guarded route is asked for without a key while no key exists, which
/// the server serves only to its own machine (`Caller::Local`).
fn readable(state: &AppState, guard: Guard, req: &Parts) -> bool {
    let public = match guard {
        Guard::Public => true,
        Guard::Metrics => state.access.policy.metrics_public,
        Guard::Needs(_) => false,
    };
    public || state.access.configured() || crate::access::presented_key(&req.headers).is_some()
}

/// A CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
fn is_preflight(req: &Parts) -> bool {
    req.method == Method::OPTIONS
        && req.headers.contains_key(header::ORIGIN)
        && req
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The response headers each covering plugin asked for, in chain order,
/// and a preflight's answer if one answered it.
async fn ask(
    state: &AppState,
    chain: &Chain,
    req: &Parts,
    peer: Option<SocketAddr>,
) -> (Vec<Vec<(HeaderName, HeaderValue)>>, Option<Response>) {
    let preflight = is_preflight(req);
    let visible = visible_headers(&req.headers);
    let trace = state.telemetry.current();
    // The client as it connected; no key hash: core routes' keys are
    // nothing a plugin counts by.
    let client = RequestClientSource::new(peer, &state.access.policy.trusted_proxies);
    let dropped = &state.dropped_headers;
    let mut pending = Vec::new();
    let mut input = HeadForms::default();
    for (_, plugin) in chain.core_route_plugins() {
        let span = trace.as_ref().map(|t| t.hook(&plugin.spans.on_request));
        let trace_headers = span.as_ref().and_then(|s| s.trace_headers());
        let binary = plugin.instances.module().binary_heads().on_request;
        let head = match &trace_headers {
            Some(t) => head_view(req, &visible, Some(t)).encode(binary),
            None => input
                .get(binary)
                .get_or_insert_with(|| head_view(req, &visible, None).encode(binary))
                .clone(),
        };
        let guest = Guest::for_plugin(plugin, dropped);
        let mut ext = http::Extensions::new();
        guest.limit_writes(&mut ext);
        client.attach(plugin.instances.module(), &visible, &req.uri, &mut ext);
        super::request_id::tag_logs(plugin.instances.module(), &req.extensions, &mut ext);
        // The wait for an instance counts too: a busy or stuck plugin delays
        // a core request by at most twice its deadline.
        let call = super::hook_call::call_hook(plugin, "on_request", head, ext, span);
        let wait = plugin.manifest.limits.timeout.saturating_mul(2);
        let Ok((result, _)) = tokio::time::timeout(wait, call).await else {
            ignored(plugin, "it did not answer in time");
            continue;
        };
        let decision = result.and_then(|out| {
            if out.is_empty() {
                return Ok(RequestDecision::pass());
            }
            super::decision::read(&out).map_err(|e| plugin.malformed("on_request", e))
        });
        let decision = match decision {
            Ok(d) => d,
            // Logged and counted as the plugin's failure already.
            Err(_) => {
                plugin.stats.skipped.add(1);
                continue;
            }
        };
        match decision {
            RequestDecision::Continue(changes) => {
                match cors_headers(plugin, changes.response_headers, state) {
                    Ok(headers) if headers.is_empty() => {}
                    Ok(headers) => pending.push(headers),
                    Err(detail) => {
                        plugin.malformed("on_request", detail);
                        plugin.stats.skipped.add(1);
                    }
                }
            }
            RequestDecision::Respond { response }
                if preflight && matches!(response.status, 200 | 204) =>
            {
                match cors_headers(plugin, response.headers, state) {
                    Ok(headers) => {
                        let mut res = Response::new(Body::empty());
                        *res.status_mut() =
                            StatusCode::from_u16(response.status).unwrap_or(StatusCode::NO_CONTENT);
                        for (name, value) in headers {
                            res.headers_mut().append(name, value);
                        }
                        return (pending, Some(res));
                    }
                    Err(detail) => {
                        plugin.malformed("on_request", detail);
                        plugin.stats.skipped.add(1);
                    }
                }
            }
            RequestDecision::Respond { .. } => ignored(
                plugin,
                "it answered a request that is not a CORS preflight, or not with 200 or 204",
            ),
            RequestDecision::Proxy { .. } => ignored(plugin, "it delegated it to an upstream"),
        }
    }
    (pending, None)
}

/// The request's head as the plugins see it on a core route (with a traced
/// hook's `traceparent`).
fn head_view<'a>(
    req: &'a Parts,
    headers: &'a HeaderMap,
    trace: Option<&'a TraceHeaders>,
) -> HeadView<'a> {
    HeadView {
        method: req.method.as_str(),
        path: req.uri.path(),
        query: req.uri.query(),
        headers: HeaderPairs(headers, None, trace),
        base: "",
        request_id: super::guest_http::request_id(&req.extensions),
        body_length: None,
        core_route: true,
    }
}

/// Whether a request header carries a credential or an identity, which no
/// plugin sees on a core route.
fn is_secret(name: &str) -> bool {
    matches!(name, "authorization" | "proxy-authorization" | "cookie")
        || name == crate::access::API_KEY_HEADER
        || super::pipeline::is_identity(name)
}

/// `headers` without the secret ones.
fn visible_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if !is_secret(name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Whether the host sets a header of this (lowercase) name on a core
/// route's response for a plugin.
fn is_cors(name: &str) -> bool {
    name == "vary" || name.starts_with("access-control-")
}

/// The CORS headers of `wanted`, checked like the chain's
/// `response_headers`; the others are dropped (logged once per plugin).
fn cors_headers(
    plugin: &Plugin,
    wanted: Vec<(String, String)>,
    state: &AppState,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let (cors, other): (Vec<_>, Vec<_>) = wanted
        .into_iter()
        .partition(|(name, _)| is_cors(&name.to_ascii_lowercase()));
    if let Some((name, _)) = other.first() {
        state.dropped_headers.note_core_route(plugin.name(), name);
    }
    super::pipeline::response_headers(cors, plugin.name(), &state.dropped_headers)
}

/// Logs at debug level that `plugin`'s answer for a core route was
/// ignored, and why.
fn ignored(plugin: &Plugin, why: &str) {
    tracing::debug!(
        plugin = plugin.name(),
        "ignored a plugin's answer for a core route: {why}; the core route is served as if the plugin were not there"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_identities_are_hidden() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer k"),
            ("proxy-authorization", "Basic x"),
            ("cookie", "s=1"),
            ("x-api-key", "k"),
            ("x-identity", "{}"),
            ("x-identity-sub", "a"),
            ("x-user-id", "1"),
            ("origin", "https://a.example"),
            ("accept", "*/*"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let visible = visible_headers(&h);
        let seen: Vec<&str> = visible.keys().map(|k| k.as_str()).collect();
        assert_eq!(seen, ["origin", "accept"]);
    }

    #[test]
    fn only_cors_names_pass() {
        for ok in [
            "vary",
            "access-control-allow-origin",
            "access-control-max-age",
        ] {
            assert!(is_cors(ok), "{ok}");
        }
        for no in [
            "set-cookie",
            "location",
            "content-type",
            "x-access-control",
            "varyx",
        ] {
            assert!(!is_cors(no), "{no}");
        }
    }
}
