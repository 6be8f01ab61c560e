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
//! answer the proxy plugin wrote for the same rule, and it is checked the
//! same way (`upstream_target`), once per installed table rather than per
//! request: each rule's header changes and limits, and the origin of a
//! target with no capture before its path. The grant and the
//! private-network rule are checked on every request (`upstream`).

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use buntime_pdk::hooks::Upstream;
use buntime_routes::{Matched, Rule, has_dot_segment};

use super::error::{ApiError, ErrorKind};
use super::guest_http::DroppedHeaders;
use super::upstream_target::{Origin, Origins, Settings, Target, fixed_prefix, locate, locate_at};
use crate::capabilities::{RouteSlot, RouteTable};

/// What the table says of a request.
#[derive(Debug)]
pub(super) enum Routed {
    /// Forward it there.
    Proxy(Target),
    /// Answer this instead: refused by the matching rule (no identity, a
    /// dot segment).
    Refused(Response),
    /// The matching rule's target does not check: the plugin's failure,
    /// with this message, as for a malformed `proxy` answer.
    Malformed(String),
}

/// Where the server reads a table's rules from: per rule, its checked
/// settings (or why they do not check) and its fixed origin.
struct Derived(Vec<Result<Forwarding, String>>);

/// How requests a rule matches are forwarded, checked once.
struct Forwarding {
    settings: Settings,
    /// `scheme://authority` of a target no capture can change, parsed.
    origin: Option<(Box<str>, Arc<Origin>)>,
}

/// What the server needs to route by a table: the plugin's name (its
/// dropped headers are noted under it) and the server's shared state.
pub(super) struct RouteScope<'a> {
    pub(super) module: &'a str,
    pub(super) dropped: &'a DroppedHeaders,
    pub(super) origins: &'a Origins,
}

/// The route `slot`'s table gives `req`; `None` when no rule applies
/// (or nothing is installed).
pub(super) fn route(slot: &RouteSlot, req: &Request, scope: &RouteScope<'_>) -> Option<Routed> {
    let path = req.uri().path();
    if path == "/_" || path.starts_with("/_/") {
        return None;
    }
    slot.with(|table| {
        let table = table?;
        let (at, caps) = buntime_routes::find(&table.rules, req.method().as_str(), path)?;
        // Only this module fills `derived`, always with a `Derived`.
        let derived = table
            .derived
            .get_or_init(|| Box::new(derive(table, scope)))
            .downcast_ref::<Derived>()?;
        Some(decide(req, &table.rules[at], &caps, &derived.0[at], scope))
    })
}

fn derive(table: &RouteTable, scope: &RouteScope<'_>) -> Derived {
    Derived(
        table
            .rules
            .iter()
            .map(|rule| {
                let settings =
                    Settings::parse(upstream(rule, String::new()), scope.module, scope.dropped)?;
                let origin = fixed_prefix(&rule.spec.target)
                    .and_then(|prefix| Some((prefix.into(), scope.origins.get(prefix)?)));
                Ok(Forwarding { settings, origin })
            })
            .collect(),
    )
}

/// The `proxy` answer `rule` stands for, to `url`.
fn upstream(rule: &Rule, url: String) -> Upstream {
    let spec = &rule.spec;
    let mut up = Upstream::new(url);
    up.set_headers.clone_from(&spec.headers);
    up.remove_headers.clone_from(&spec.remove_headers);
    up.timeout_ms = spec.timeout_ms;
    up.connect_timeout_ms = spec.connect_timeout_ms;
    up.websocket = spec.websocket;
    up.idle_timeout_ms = spec.idle_timeout_ms;
    up.max_duration_ms = spec.max_duration_ms;
    up
}

/// The answer for `req`, which `rule` matched with `caps`.
fn decide(
    req: &Request,
    rule: &Rule,
    caps: &Matched<'_>,
    forwarding: &Result<Forwarding, String>,
    scope: &RouteScope<'_>,
) -> Routed {
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
    let forwarding = match forwarding {
        Ok(f) => f,
        Err(e) => return Routed::Malformed(e.clone()),
    };
    let url = rule.url(caps, path, req.uri().query());
    let located = match &forwarding.origin {
        Some((prefix, origin)) => locate_at(url, prefix, origin, scope.origins),
        None => locate(&url, scope.origins),
    };
    match located {
        Ok((origin, uri)) => Routed::Proxy(Target::at(origin, uri, forwarding.settings.clone())),
        Err(e) => Routed::Malformed(e),
    }
}
