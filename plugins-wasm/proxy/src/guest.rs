//! The wasm side of the chain: `on_init` checks the static rules;
//! `on_request` finds the first rule for the request and answers `proxy`.
//!
//! Dynamic rules live in the `sql` database (`store`); a revision in the
//! plugin's `state` under [`REVISION`] is bumped after every change. Each
//! instance keeps the list compiled and reloads it when the revision moves
//! (and on its first request), so a request costs one small state read.

use std::cell::RefCell;
use std::sync::OnceLock;

use buntime_pdk::hooks::{RequestDecision, Upstream};
use buntime_pdk::plugin::{HookBytes, config, state};
use buntime_pdk::{Error, RequestHeadRef, ResponseHead};
use serde_json::{Value, json};

use crate::rules::{self, Rule, RuleSpec};

/// Bumped after every change of the stored rules.
pub(crate) const REVISION: &str = "rules:rev";

/// The static rules, parsed on first use (each instance reads the config
/// itself: `on_init` ran on one instance only).
pub(crate) fn static_rules() -> Result<&'static [Rule], Error> {
    static RULES: OnceLock<Result<Vec<Rule>, String>> = OnceLock::new();
    RULES
        .get_or_init(|| {
            let value = config("rules").map(|t| serde_json::from_str::<Value>(&t));
            match value {
                None => Ok(Vec::new()),
                Some(Ok(v)) => rules::parse_list(Some(&v)).map_err(|e| e.to_string()),
                Some(Err(e)) => Err(format!("`rules` is not JSON: {e}")),
            }
        })
        .as_deref()
        .map_err(|e| Error::msg(e.clone()))
}

/// The dynamic rules as stored, with the version they were read at.
pub(crate) fn stored() -> Result<(Vec<RuleSpec>, u64), Error> {
    crate::store::load()
}

struct Cached {
    /// The revision the rules were loaded at; `None` before the first load
    /// (the revision restarts at 0 with the process, the rules do not).
    revision: Option<i64>,
    rules: Vec<Rule>,
}

thread_local! {
    static DYNAMIC: RefCell<Cached> = const { RefCell::new(Cached { revision: None, rules: Vec::new() }) };
}

/// Runs `f` over this instance's dynamic rules, reloading them first if
/// they changed.
fn with_dynamic<T>(f: impl FnOnce(&[Rule]) -> T) -> Result<T, Error> {
    let revision = state::get::<i64>(REVISION)?.map_or(0, |(v, _)| v);
    DYNAMIC.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.revision != Some(revision) {
            // Stored rules were checked when written; one that no longer
            // compiles (a newer limit) is skipped rather than failing all.
            cached.rules = stored()?
                .0
                .into_iter()
                .filter_map(|s| Rule::new(s).ok())
                .collect();
            cached.revision = Some(revision);
        }
        Ok(f(&cached.rules))
    })
}

fn init(cfg: Value) -> Result<(), Error> {
    rules::parse_list(cfg.get("rules")).map_err(|e| Error::msg(e.to_string()))?;
    Ok(())
}
buntime_pdk::on_init!(init);

/// The request is read in place (`HookBytes`): a rule needs its method,
/// path, query, id and one header, not an owned copy of every header.
fn check(input: HookBytes) -> Result<RequestDecision, Error> {
    let req = input.request()?;
    let path = req.path();
    // The server's own and the plugins' routes are never proxied.
    if path == "/_" || path.starts_with("/_/") {
        return Ok(RequestDecision::pass());
    }
    let statics = static_rules()?;
    let found = match rules::find(statics, req.method(), path) {
        Some((rule, caps)) => Some(decide(&req, rule, &caps)),
        None => with_dynamic(|dynamic| {
            rules::find(dynamic, req.method(), path).map(|(r, c)| decide(&req, r, &c))
        })?,
    };
    Ok(found.unwrap_or_else(RequestDecision::pass))
}
buntime_pdk::on_request!(check);

/// The answer for a request `rule` matched with `caps`.
fn decide(req: &RequestHeadRef<'_>, rule: &Rule, caps: &regex::Captures<'_>) -> RequestDecision {
    let spec = &rule.spec;
    let id = spec.id.as_deref().unwrap_or_default();
    if !spec.public && req.header("x-identity").is_none() {
        let mut head = error(
            req,
            401,
            "AUTHENTICATION_REQUIRED",
            format!(
                "the proxy rule `{id}` is not public and the request has no identity; authenticate (the authn plugin sets one) or mark the rule `public`"
            ),
        );
        head.headers
            .push(("www-authenticate".into(), "Bearer".into()));
        return RequestDecision::respond(head);
    }
    if rules::has_dot_segment(req.path()) {
        return RequestDecision::respond(error(
            req,
            400,
            "INVALID_PATH",
            "a path with `.` or `..` segments is not forwarded".to_owned(),
        ));
    }
    let mut up = Upstream::new(rule.url(caps, req.path(), req.query()));
    up.set_headers = spec.headers.clone();
    up.remove_headers = spec.remove_headers.clone();
    up.timeout_ms = spec.timeout_ms;
    up.connect_timeout_ms = spec.connect_timeout_ms;
    up.websocket = spec.websocket;
    up.idle_timeout_ms = spec.idle_timeout_ms;
    up.max_duration_ms = spec.max_duration_ms;
    RequestDecision::proxy(up)
}

/// An error in the shape of the server's own.
pub(crate) fn error(
    req: &RequestHeadRef<'_>,
    status: u16,
    code: &str,
    message: String,
) -> ResponseHead {
    let mut head = ResponseHead::new(status);
    head.headers
        .push(("content-type".into(), "application/json".into()));
    head.body = Some(
        json!({ "code": code, "message": message, "requestId": req.request_id() }).to_string(),
    );
    head
}
