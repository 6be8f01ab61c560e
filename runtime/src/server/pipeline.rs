//! The plugin chain around every request that is not a core route.
//!
//! ```text
//! strip identity headers (and, for /_/…, the caller's API key)
//! on_request, plugin 1..n (each: continue with changes | respond | proxy)
//!   → /_/<base>/* plugin routes, or /<app>[@range]/* apps
//! on_response, plugin n..1 (each may change status and headers)
//! ```
//!
//! A `proxy` answer is forwarded by the host (`upstream`) and its response
//! unwinds like a `respond`.
//!
//! Only plugins whose `on_request` stage was reached see the response, so a
//! plugin that answers early is wrapped by exactly the plugins before it.
//! The response headers a plugin asked for when it let the request through
//! (`response_headers`) are set at the same point of the unwinding, just
//! before its own `on_response`: they reach every response it wrapped. A
//! failing plugin follows its `onError`: `closed` answers 502 (503 on a
//! timeout) naming the plugin; `open` skips it. Both are logged and counted.
//!
//! A plugin's answers obey the rules of every guest response
//! (`guest_http`): a `respond` and an `on_response` status must be 200 to
//! 599 (else the plugin failed), framing headers it sets or removes are
//! ignored, and a `respond` body must fit its `maxResponseBodySize`.
//! `on_response` sees host-generated errors too, and its status change
//! holds for them (the request-id layer keeps it when writing the body).
//!
//! The heads are serialized straight from axum's types (`HeadView`,
//! [`unwinding::ResponseHeadView`], the same JSON as `buntime_pdk::RequestHead` and
//! `ResponseView`) and only again after a plugin changed something, so a
//! chain of pass-through plugins costs one serialization each way.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use buntime_pdk::hooks::{RequestChanges, RequestDecision};
use bytes::Bytes;

use super::AppState;
use super::client::RequestClientSource;
use super::error::{ApiError, ErrorKind, bad_gateway, hook_error_response};
use super::forwarding::ForwardingMemo;
use super::guest_http::{
    DroppedHeaders, Guest, GuestHeaders, HeadForms, HeadView, response_from_head,
};
use super::upstream_routes::{RouteScope, Routed};
use super::upstream_target::Target;
use crate::plugins::{Chain, HookError, Plugin};
use crate::telemetry::SpanParent;
use crate::wasm::abi::{RequestBody, ResponseBody};

mod changes;
mod unwinding;
pub(crate) use changes::{apply_request_changes, apply_response_changes};
#[cfg(test)]
use unwinding::ResponseHeadView;
use unwinding::on_response;

/// Headers that carry an identity established by an authentication plugin
/// (or the tenant the vhosts plugin derived from the host); a client must
/// never be able to set them itself.
pub const IDENTITY_HEADERS: [&str; 8] = [
    "x-identity",
    "x-user",
    "x-user-id",
    "x-user-email",
    "x-user-roles",
    "x-authenticated-user",
    "x-buntime-identity",
    "x-vhost-tenant",
];

/// Whether a (lowercase) header name is an identity header: one of
/// [`IDENTITY_HEADERS`] or any `x-identity-*`.
pub(crate) fn is_identity(name: &str) -> bool {
    IDENTITY_HEADERS.contains(&name) || name.starts_with("x-identity-")
}

/// Removes every identity header (and any `x-identity-*`) a client sent.
pub fn strip_identity(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_identity(k.as_str()))
        .cloned()
        .collect();
    for k in doomed {
        headers.remove(k);
    }
}

/// The fallback handler of the core router: the chain for an unknown path
/// under `/_/api/`.
pub(crate) async fn handle(State(state): State<AppState>, req: Request) -> Response {
    let peer = req.extensions().get::<super::ClientAddr>().map(|c| c.0);
    run(&state, req, peer, None).await
}

/// The chain around plugin routes and apps, for a request from `peer`
/// (`None`: served in process) on a connection that keeps its forwarding
/// headers in `memo`.
pub(crate) async fn run(
    state: &AppState,
    mut req: Request,
    peer: Option<SocketAddr>,
    memo: Option<&ForwardingMemo>,
) -> Response {
    strip_identity(req.headers_mut());
    if req.uri().path().starts_with("/_/") {
        super::guard::take_key(state, &mut req);
    }
    let chain = state.plugins.for_request();
    // Only a valid key is told (by its hash): made-up ones would each be a
    // caller of their own to a plugin that counts by key.
    let key = req
        .extensions()
        .get::<super::guard::PresentedKey>()
        .map(super::guard::PresentedKey::as_str)
        .filter(|k| state.access.holds(k));
    let client = RequestClientSource::new(peer, &state.access.policy.trusted_proxies)
        .with_api_key(key)
        .with_memo(memo);
    let dropped = &state.dropped_headers;
    let mut unwind = Unwind::default();
    // With hooks to run, what `on_response` needs after `on_request`: how far
    // the request got, its span, cost meter and log tag. One `dispatch`
    // await with or without plugins: each await point is a slot of its own
    // in this future, and a second would enlarge every request's.
    let mut with_chain = None;
    let outcome = if !chain.intercepts() {
        Ok(req)
    } else {
        // A chain that reads the client gets it as the request arrived,
        // before any plugin changed a header.
        if chain
            .plugins
            .iter()
            .any(|p| p.instances.module().reads_client())
        {
            client.resolve(req.headers(), req.uri());
        }
        let trace = state.telemetry.current();
        let meter = super::cost::meter_of(req.extensions());
        // `on_response` runs after the request is gone: its log lines get
        // the request's tag taken now, when a plugin there can log at all.
        let log_tag = chain
            .plugins
            .iter()
            .find(|p| p.hooks.on_response && p.instances.module().logs())
            .and_then(|p| super::request_id::log_tag(p.instances.module(), req.extensions()));
        // The hooks' futures are boxed, as the app call is in `dispatch`:
        // held inline, the largest of them would size this future and every
        // one above it, copied whole on each move (measured: moving the
        // request's future was most of a warm request's `memcpy`). Boxed
        // in a statement of its own: a temporary of the statement that
        // awaits lives across the await, and so would the unboxed future,
        // in this future's state (see `dispatch`).
        let hooks = Box::pin(on_request(
            state,
            &chain,
            req,
            dropped,
            &client,
            &mut unwind,
            trace.as_ref(),
        ));
        let (entered, outcome) = hooks.await;
        with_chain = Some((entered, trace, meter, log_tag));
        outcome
    };
    let (path, response) = match outcome {
        Ok(req) => {
            let path = match with_chain {
                Some(_) => req.uri().path().to_owned(),
                None => String::new(),
            };
            (path, dispatch(state, &chain, req, &client).await)
        }
        Err((path, response)) => (path, response),
    };
    let Some((entered, trace, meter, log_tag)) = with_chain else {
        return response;
    };
    // Answered before any plugin's place (a route table's match at the
    // first, say): nothing to unwind, and no future to box for it.
    if entered == 0 && unwind.pending.is_empty() {
        return response;
    }
    let hooks = Box::pin(on_response(
        &chain,
        entered,
        response,
        &path,
        dropped,
        &client,
        unwind,
        trace.as_ref(),
        meter.as_ref(),
        log_tag.as_ref(),
    ));
    hooks.await
}

/// The response headers plugin `.0` asked for in `on_request`.
type PendingHeaders = (usize, Vec<(HeaderName, HeaderValue)>);

/// What `on_request` leaves for the way back through the chain.
#[derive(Debug, Default)]
struct Unwind {
    /// Response headers plugins asked for, in chain order.
    pending: Vec<PendingHeaders>,
    /// The plugins that asked to skip their `on_response` for this request
    /// (a few at most: a scan beats a set).
    skipped: Vec<usize>,
}

impl Unwind {
    fn skip_on_response(&mut self, plugin: usize) {
        self.skipped.push(plugin);
    }

    fn skips(&self, plugin: usize) -> bool {
        self.skipped.contains(&plugin)
    }
}

/// Checks the `response_headers` of a `continue`: framing headers are
/// dropped (and noted), anything invalid makes the answer malformed.
pub(super) fn response_headers(
    wanted: Vec<(String, String)>,
    module: &str,
    dropped: &DroppedHeaders,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let checked = GuestHeaders {
        module,
        field: "`response_headers`",
        dropped,
    };
    let mut out = Vec::with_capacity(wanted.len());
    for (k, v) in wanted {
        out.extend(checked.header(&k, Bytes::from(v))?);
    }
    Ok(out)
}

/// Sets `headers` on `res`; a `vary` joins the response's own (once).
pub(super) fn set_response_headers(res: &mut Response, headers: Vec<(HeaderName, HeaderValue)>) {
    for (name, value) in headers {
        if name == axum::http::header::VARY {
            let wanted = value
                .to_str()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            let present = res.headers().get_all(&name).iter().any(|v| {
                v.to_str().unwrap_or_default().split(',').any(|t| {
                    let t = t.trim();
                    t == "*" || t.eq_ignore_ascii_case(&wanted)
                })
            });
            if !present {
                res.headers_mut().append(name, value);
            }
        } else {
            res.headers_mut().insert(name, value);
        }
    }
}

async fn dispatch(
    state: &AppState,
    chain: &Chain,
    req: Request,
    client: &RequestClientSource<'_>,
) -> Response {
    // Each is boxed in a statement of its own, then awaited. Written as
    // `Box::pin(f(..)).await`, the unboxed future is a temporary of the
    // statement that awaits, and a temporary's storage lasts to the end of
    // its statement: across the await, so inside this future's state, and
    // the boxing saved nothing (measured: 4,432 bytes for `run`'s future
    // that way, 1,888 this way).
    if req.uri().path().starts_with("/_/") {
        // Boxed: its future is larger than an app call's, and would
        // otherwise size (and be copied with) every request's.
        let serve = Box::pin(super::plugin_routes::serve(state, chain, req, client));
        serve.await
    } else {
        // Boxed too: the app call is the larger part of this future, and
        // every future above it (the chain's, the service's) would carry
        // its size, copied whole each time one of them is moved; one
        // allocation costs less.
        let handle = Box::pin(super::apps::handle(state, req, client));
        handle.await
    }
}

type Early = (String, Response);

/// Runs `on_request` in load order. Returns how many plugins were entered and
/// either the (changed) request or an early response with the request's path.
/// Under `trace`, each hook's head carries the hook span's `traceparent`,
/// and so does a request it delegates to an upstream.
async fn on_request(
    state: &AppState,
    chain: &Chain,
    mut req: Request,
    dropped: &DroppedHeaders,
    client: &RequestClientSource<'_>,
    unwind: &mut Unwind,
    trace: Option<&SpanParent>,
) -> (usize, Result<Request, Early>) {
    let mut buffered: Option<Bytes> = None;
    // The head as JSON, rebuilt only when a plugin changed the request.
    // The head as JSON and in the binary layout, each written on the first
    // plugin that reads it and again after a plugin changes the request.
    let mut input = HeadForms::default();
    for (i, plugin) in chain.plugins.iter().enumerate() {
        // An installed route table answers first (`upstream_routes`): a
        // match is forwarded here without a call into the plugin.
        let routed = plugin.routes.as_ref().and_then(|slot| {
            let scope = RouteScope {
                module: plugin.name(),
                dropped,
                origins: &state.upstream_origins,
            };
            super::upstream_routes::route(slot, &req, &scope)
        });
        if let Some(routed) = routed {
            // The path is for the plugins before this one to unwind with:
            // at the first place there are none (`run` returns at once).
            let path = if i == 0 {
                String::new()
            } else {
                req.uri().path().to_owned()
            };
            let res = match routed {
                Routed::Proxy(target) => {
                    let span = trace.map(|t| t.hook(&plugin.spans.on_request));
                    if let Some(t) = span.as_ref().and_then(|s| s.trace_headers()) {
                        t.inject(req.headers_mut());
                    }
                    let forward = Box::pin(proxy(state, plugin, req, Ok(target), client));
                    let res = forward.await;
                    if let Some(span) = span {
                        (*span).end(None);
                    }
                    res
                }
                Routed::Malformed(detail) => malformed_target(plugin, detail),
                Routed::Refused(res) => res,
            };
            return (i, Err((path, res)));
        }
        if !plugin.hooks.on_request {
            continue;
        }
        // Bodies reach on_request only when the manifest asks, up to its cap.
        let mut ext = http::Extensions::new();
        if let Some(cap) = plugin.manifest.request_body {
            if buffered.is_none() {
                let (parts, body) = req.into_parts();
                let collect = Box::pin(super::body::collect(body, cap));
                match collect.await {
                    Ok(bytes) => {
                        buffered = Some(bytes.clone());
                        req = Request::from_parts(parts, Body::from(bytes));
                    }
                    Err(e) => {
                        let res = e.into_response(|| {
                            ApiError::new(ErrorKind::PayloadTooLarge, format!(
                                    "the request body exceeds the {cap}-byte limit of plugin `{}` (`requestBody` in its manifest)",
                                    plugin.name()
                                ),
                            )
                            .into_response()
                        });
                        return (i, Err((parts.uri.path().to_owned(), res)));
                    }
                }
            }
            if let Some(b) = &buffered {
                if b.len() as u64 > cap {
                    let res = ApiError::new(
                        ErrorKind::PayloadTooLarge,
                        format!(
                            "the request body exceeds the {cap}-byte limit of plugin `{}`",
                            plugin.name()
                        ),
                    )
                    .into_response();
                    return (i, Err((req.uri().path().to_owned(), res)));
                }
                ext.insert(RequestBody(b.clone()));
            }
        }
        let span = trace.map(|t| t.hook(&plugin.spans.on_request));
        let body_length = buffered.as_ref().map(|b| b.len() as u64);
        // A traced hook's head carries its own span's `traceparent`.
        let trace_headers = span.as_ref().and_then(|s| s.trace_headers());
        let binary = plugin.instances.module().binary_heads().on_request;
        let head = match &trace_headers {
            Some(t) => HeadView::for_chain(&req, body_length)
                .traced(Some(t))
                .encode(binary),
            None => input
                .get(binary)
                .get_or_insert_with(|| HeadView::for_chain(&req, body_length).encode(binary))
                .clone(),
        };
        let guest = Guest::for_plugin(plugin, dropped);
        guest.limit_writes(&mut ext);
        client.attach(
            plugin.instances.module(),
            req.headers(),
            req.uri(),
            &mut ext,
        );
        super::request_id::tag_logs(plugin.instances.module(), req.extensions(), &mut ext);
        super::cost::carry(req.extensions(), &mut ext);
        let (result, mut ext) =
            super::hook_call::call_hook(plugin, "on_request", head, ext, span).await;
        let refused = Guest::refused(&mut ext);
        let decision = result.and_then(|out| {
            if let Some(size) = refused {
                return Err(plugin.malformed("on_request", guest.over_limit(size)));
            }
            // Empty: continue unchanged (see docs/abi.md §14).
            if out.is_empty() {
                return Ok(RequestDecision::pass());
            }
            super::decision::read(&out).map_err(|e| plugin.malformed("on_request", e))
        });
        match decision {
            Ok(RequestDecision::Continue(mut changes)) => {
                let wanted = std::mem::take(&mut changes.response_headers);
                if std::mem::take(&mut changes.skip_on_response) {
                    unwind.skip_on_response(i);
                }
                let unchanged = changes == RequestChanges::default();
                if !unchanged {
                    input = HeadForms::default();
                }
                // A plain pass (most answers) has nothing to check or apply.
                let applied = if unchanged && wanted.is_empty() {
                    Ok(())
                } else {
                    response_headers(wanted, plugin.name(), dropped).and_then(|headers| {
                        apply_request_changes(&mut req, changes, plugin.name(), dropped)?;
                        if !headers.is_empty() {
                            unwind.pending.push((i, headers));
                        }
                        Ok(())
                    })
                };
                if let Err(detail) = applied {
                    let e = plugin.malformed("on_request", detail);
                    if let Some(res) = failure_response(plugin, &e) {
                        return (i, Err((req.uri().path().to_owned(), res)));
                    }
                }
            }
            Ok(RequestDecision::Proxy { upstream }) => {
                // Delegated to an upstream (server::upstream): answered like
                // a `respond`, the body streamed by the host, under the
                // hook's span.
                let path = req.uri().path().to_owned();
                if let Some(t) = &trace_headers {
                    t.inject(req.headers_mut());
                }
                let target = super::upstream_target::Target::parse(
                    upstream,
                    plugin.name(),
                    dropped,
                    &state.upstream_origins,
                );
                // Boxed, like the body collection above: rarer than a pass,
                // and a large future every chain call would carry.
                let forward = Box::pin(proxy(state, plugin, req, target, client));
                return (i, Err((path, forward.await)));
            }
            Ok(RequestDecision::Respond { response }) => {
                let res = response_from_head(response, ext.remove::<ResponseBody>(), &guest)
                    .unwrap_or_else(|detail| {
                        let e = plugin.malformed("on_request", detail);
                        failure_response(plugin, &e).unwrap_or_else(|| bad_gateway(&e))
                    });
                return (i, Err((req.uri().path().to_owned(), res)));
            }
            Err(e) => {
                if let Some(res) = failure_response(plugin, &e) {
                    return (i, Err((req.uri().path().to_owned(), res)));
                }
            }
        }
    }
    (chain.plugins.len(), Ok(req))
}

/// Forwards `req` to `target` for `plugin` (its `proxy` answer or its
/// route's), or answers why the target is malformed.
async fn proxy(
    state: &AppState,
    plugin: &Plugin,
    req: Request,
    target: Result<Target, String>,
    client: &RequestClientSource<'_>,
) -> Response {
    match target {
        Ok(target) => super::upstream::forward(state, plugin, req, target, client).await,
        Err(detail) => malformed_target(plugin, detail),
    }
}

/// The answer to a malformed target: `plugin`'s failure under its `onError`.
fn malformed_target(plugin: &Plugin, detail: String) -> Response {
    let e = plugin.malformed("on_request", detail);
    failure_response(plugin, &e).unwrap_or_else(|| bad_gateway(&e))
}

/// The response a failure produces under `onError: "closed"`; `None` (and a
/// skip counted) under `"open"`.
fn failure_response(plugin: &Plugin, e: &HookError) -> Option<Response> {
    if plugin.fails_open() {
        plugin.stats.skipped.add(1);
        return None;
    }
    Some(hook_error_response(e))
}

#[cfg(test)]
mod tests;
