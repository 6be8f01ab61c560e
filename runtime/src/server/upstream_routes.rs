//! A plugin's installed route table (`upstream_routes`) run at its place
//! in the chain: the host's side of the table the plugin keeps.
//!
//! ```text
//! /_ and /_/… → never routed (the server's and the plugins' own routes)
//! first rule whose methods and pattern match
//!   → not `public` and no identity → 401 AUTHENTICATION_REQUIRED
//!   → a `.`/`..` segment             → 400 INVALID_PATH
//!   → else the request is proxied as if `on_request` had answered `proxy`
//! no rule → the plugin's `on_request`, if it exports one, else on down the chain
//! ```
//!
//! What a match is forwarded with (the URL from `target`, `rewrite` and the
//! captures, the header changes and the timeouts) is exactly the `proxy`
//! answer the proxy plugin wrote for the same rule, so the request then
//! takes the same way (`upstream_target`, `upstream`): the grant and the
//! private-network rule are checked on every request.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use buntime_pdk::hooks::Upstream;
use buntime_routes::{Captures, Rule, has_dot_segment};

use super::error::{ApiError, ErrorKind};
use crate::capabilities::RouteSlot;

/// What the table says of a request.
#[derive(Debug)]
pub(super) enum Routed {
    /// Forward it.
    Proxy(Upstream),
    /// Answer this instead (refused by the matching rule).
    Refused(Response),
}

/// The route `slot`'s table gives `req`; `None` when no rule applies
/// (or nothing is installed).
pub(super) fn route(slot: &RouteSlot, req: &Request) -> Option<Routed> {
    let path = req.uri().path();
    if path == "/_" || path.starts_with("/_/") {
        return None;
    }
    slot.with(|table| {
        let rules = &table?.rules;
        let (rule, caps) = buntime_routes::find(rules, req.method().as_str(), path)?;
        Some(decide(req, rule, &caps))
    })
}

/// The answer for `req`, which `rule` matched with `caps`.
fn decide(req: &Request, rule: &Rule, caps: &Captures<'_>) -> Routed {
    let spec = &rule.spec;
    let path = req.uri().path();
    if !spec.public && !req.headers().contains_key("x-identity") {
        let id = spec.id.as_deref().unwrap_or_default();
        let mut res = ApiError::new(
            ErrorKind::AuthenticationRequired,
            format!(
                "the proxy rule `{id}` is not public and the request has no identity; authenticate (the authn plugin sets one) or mark the rule `public`"
            ),
        )
        .into_response();
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Routed::Refused(res);
    }
    if has_dot_segment(path) {
        return Routed::Refused(
            ApiError::new(
                ErrorKind::InvalidPath,
                "a path with `.` or `..` segments is not forwarded",
            )
            .into_response(),
        );
    }
    let mut up = Upstream::new(rule.url(caps, path, req.uri().query()));
    up.set_headers.clone_from(&spec.headers);
    up.remove_headers.clone_from(&spec.remove_headers);
    up.timeout_ms = spec.timeout_ms;
    up.connect_timeout_ms = spec.connect_timeout_ms;
    up.websocket = spec.websocket;
    up.idle_timeout_ms = spec.idle_timeout_ms;
    up.max_duration_ms = spec.max_duration_ms;
    Routed::Proxy(up)
}
