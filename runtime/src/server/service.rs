//! The service hyper calls for every request.
//!
//! The core routes ([`super::routes`]) go through axum's `Router`. Every other request —
//! apps and plugin routes, nearly all of the traffic — goes straight to the
//! plugin chain: the router would only find no route and fall back to the
//! same handler, after a route lookup, an `OriginalUri` extension, a clone of
//! its boxed fallback service and the middleware's boxed futures, which under
//! load were a few percent of a warm app request. Both paths get the same
//! request id handling ([`super::request_id`]). Plugins that ask to
//! (`coreRoutes`) add CORS headers to core responses
//! ([`super::core_headers`]). An HTTP/2 WebSocket (an
//! extended CONNECT) enters both as the HTTP/1.1 handshake, and its answer
//! is checked on the way out ([`super::extended_connect`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse as _, Response};
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

use super::AppState;
use super::connection::Activity;
use super::forwarding::ForwardingMemo;
use crate::metrics::{Counted, MethodClass};
use crate::telemetry::{InSpan, RequestSpan};

/// The server: the core routes' `Router` and the shared state.
///
/// A `tower::Service` for any request body, so it serves hyper's
/// connections and, in process, tests and benchmarks alike.
///
/// One `Arc` of its parts: hyper's glue clones the service for every
/// request, and each request's future keeps it, so a clone is one count
/// rather than one per part.
#[derive(Clone, Debug)]
pub struct BuntimeService {
    parts: Arc<Parts>,
}

#[derive(Debug)]
struct Parts {
    core: Router,
    state: AppState,
    /// Set for the service of one client connection (`listener.rs`).
    connection: Option<ConnectionScope>,
}

/// What a connection's service adds to each request.
#[derive(Debug)]
struct ConnectionScope {
    activity: Arc<Activity>,
    body_read_timeout: Duration,
    peer: std::net::SocketAddr,
    forwarding: ForwardingMemo,
}

/// The peer a request to an internal path (`/_/…`) came from (a request
/// extension), for access checks and limits kept per client.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

impl BuntimeService {
    pub(crate) fn new(core: Router, state: AppState) -> Self {
        Self {
            parts: Arc::new(Parts {
                core,
                state,
                connection: None,
            }),
        }
    }

    /// The server state.
    pub(crate) fn state(&self) -> &AppState {
        &self.parts.state
    }

    /// The service for one client connection from `peer`: its requests
    /// count as in flight on `activity` until answered or dropped, their
    /// bodies must keep arriving within `body_read_timeout`, and requests
    /// to internal routes carry a [`ClientAddr`].
    pub(crate) fn for_connection(
        &self,
        activity: Arc<Activity>,
        body_read_timeout: Duration,
        peer: std::net::SocketAddr,
    ) -> Self {
        Self {
            parts: Arc::new(Parts {
                core: self.parts.core.clone(),
                state: self.parts.state.clone(),
                connection: Some(ConnectionScope {
                    activity,
                    body_read_timeout,
                    peer,
                    forwarding: ForwardingMemo::default(),
                }),
            }),
        }
    }
}

impl<B> tower::Service<http::Request<B>> for BuntimeService
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let parts = self.parts.clone();
        let (mut req, in_flight): (Request, _) = match &parts.connection {
            Some(scope) => (
                // A body known to be empty (most GETs) has nothing to wait
                // for: no timer for it.
                req.map(|b| {
                    if b.is_end_stream() {
                        Body::new(b)
                    } else {
                        Body::new(TimeoutBody::new(scope.body_read_timeout, b))
                    }
                }),
                Some(scope.activity.begin()),
            ),
            None => (req.map(Body::new), None),
        };
        // An HTTP/2 WebSocket (extended CONNECT) enters as the HTTP/1.1
        // handshake; its answer is checked on the way out.
        let (websocket, refused) = match super::extended_connect::enter(
            &mut req,
            parts.connection.as_ref().map(|c| &c.activity),
        ) {
            Ok(websocket) => (websocket, None),
            Err(e) => (None, Some(e)),
        };
        // Only the internal routes check access and keep limits per client;
        // app traffic does not pay for the extension (the chain gets the
        // peer as an argument).
        if let Some(scope) = &parts.connection
            && req.uri().path().starts_with("/_/")
        {
            req.extensions_mut().insert(ClientAddr(scope.peer));
        }
        let method = MethodClass::of(req.method());
        let peer = parts.connection.as_ref().map(|c| c.peer);
        // One branch when tracing is off (`Telemetry::request` returns at
        // once); a request the sampler drops costs the decision. A sampled
        // request's span ends with its response body (`span_body.rs`).
        let traced = parts.state.telemetry.request(&req, peer);
        let detail = parts.state.error_detail;
        // A refused request is answered by the chain's branch (inside its
        // request-id layer), whatever its path.
        if refused.is_none() && super::routes::is_core(req.uri().path()) {
            let core = parts.core.clone();
            // One flag on a server without a plugin that covers the core
            // routes (`coreRoutes`, `core_headers.rs`).
            let covered = parts.state.plugins.covers_core_routes();
            Box::pin(async move {
                use futures_util::future::Either;
                let state = &parts.state;
                let _in_flight = in_flight;
                let mut counted = Counted::enter(&state.http, method);
                let current = traced.as_deref().map(RequestSpan::parent);
                // One future type either way: one await point. The covered
                // path is boxed, so it does not size every core request's.
                let call = if covered {
                    Either::Left(Box::pin(super::core_headers::serve(state, core, req, peer)))
                } else {
                    Either::Right(core.oneshot(req))
                };
                let mut response = InSpan::new(call, current).await;
                if let Some(websocket) = &websocket {
                    response = response.map(|r| websocket.leave(r, detail));
                }
                if let Some(span) = traced {
                    response = response.map(|r| {
                        super::span_body::end_with_body(r, move |status, app| {
                            span.finish(status, app)
                        })
                    });
                }
                if let Ok(r) = &response {
                    counted.answered(r.status());
                }
                response
            })
        } else {
            let meter = parts.state.cost_header.then(|| {
                let meter = crate::wasm::CostMeter::default();
                req.extensions_mut().insert(meter.clone());
                meter
            });
            Box::pin(async move {
                let state = &parts.state;
                let _in_flight = in_flight;
                let mut counted = Counted::enter(&state.http, method);
                let current = traced.as_deref().map(RequestSpan::parent);
                // Awaited where it is made: each move of a future copies
                // all of it, and wrapping the request id's future (the
                // log ids' wrapper around it, then this await) copied
                // it three times. The ids wrap the small future inside.
                let mut response = super::request_id::with_request_id(req, detail, |req| {
                    use futures_util::future::Either;
                    // One future type either way: one await point. The
                    // chain's future is large (the plugins', the app's and
                    // the pool's states nest in it) and is boxed once where
                    // it is made: unboxed, every layer around it (this
                    // one, the request id's, the log ids', this block)
                    // copied all of it once more when first polled.
                    let chain = match refused {
                        Some(e) => Either::Left(std::future::ready(e.into_response())),
                        None => Either::Right(Box::pin(super::pipeline::run(
                            state,
                            req,
                            peer,
                            parts.connection.as_ref().map(|c| &c.forwarding),
                        ))),
                    };
                    InSpan::new(chain, current)
                })
                .await;
                if let Some(websocket) = &websocket {
                    response = websocket.leave(response, detail);
                }
                if let Some(span) = traced {
                    response = super::span_body::end_with_body(response, move |status, app| {
                        span.finish(status, app)
                    });
                }
                if let Some(value) = meter.and_then(|m| super::cost::server_timing(&m.take())) {
                    response
                        .headers_mut()
                        .insert(super::cost::SERVER_TIMING, value);
                }
                counted.answered(response.status());
                Ok(response)
            })
        }
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
