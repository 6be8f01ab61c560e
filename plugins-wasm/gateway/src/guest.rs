//! The wasm side of the chain: `on_init` checks the config; `on_request`
//! answers preflights, draws one token from the request's bucket (a 429
//! when there is none), sends browser navigations to the app shell, and
//! asks the host to put the CORS and rate-limit headers on whatever
//! response the request gets (on a core route, CORS only: `core_route`).
//! With the request log on, `on_response` completes the request's entry
//! with the response status and duration.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use buntime_pdk::hooks::{RequestChanges, RequestDecision, ResponseChanges, ResponseView};
use buntime_pdk::plugin::{HookBytes, Lazy, config, state};
use buntime_pdk::{Error, RequestHeadRef, ResponseHead};
use serde_json::{Value, json};

use crate::config::Gateway;
use crate::cors::Cors;
use crate::limit;

/// State keys of the counters and the log ring.
pub(crate) const REQUESTS: &str = "stat:requests";
pub(crate) const LIMITED: &str = "stat:limited";
pub(crate) const PREFLIGHTS: &str = "stat:preflights";
pub(crate) const LOG_PREFIX: &str = "log:";
/// The response header that carries a logged request's entry (`slot:seq:
/// start µs`) from `on_request` to `on_response`, which removes it. The
/// gateway sets it on the response of every request it logs, replacing any
/// an app or a later plugin set, so none can point the gateway at another
/// entry; a request it does not log skips its `on_response`.
const LOG_MARKER: &str = "x-gateway-log";

/// This instance's config, parsed on first use (each instance reads the
/// config itself: `on_init` ran on one instance only).
pub(crate) fn gateway() -> Result<&'static Gateway, Error> {
    static GATEWAY: OnceLock<Result<Gateway, String>> = OnceLock::new();
    GATEWAY
        .get_or_init(|| {
            let value = |k: &str| config(k).map(|t| parse_value(&t));
            Gateway::parse(
                value("rateLimit").as_ref(),
                value("cors").as_ref(),
                value("requestLog").as_ref(),
                value("shell").as_ref(),
            )
            .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::msg(e.clone()))
}

/// A config value: JSON text, or a string passed as it is.
fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

pub(crate) fn now_ms() -> u64 {
    now_us() / 1000
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Milliseconds since `start_us`, to the microsecond.
fn since_ms(start_us: u64) -> f64 {
    now_us().saturating_sub(start_us) as f64 / 1000.0
}

fn init(cfg: Value) -> Result<(), Error> {
    Gateway::parse(
        cfg.get("rateLimit"),
        cfg.get("cors"),
        cfg.get("requestLog"),
        cfg.get("shell"),
    )
    .map_err(|e| Error::msg(e.to_string()))?;
    Ok(())
}
buntime_pdk::on_init!(init);

/// What happened to a request, as the log and the counters record it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Allowed,
    Limited,
    Preflight,
}

/// The answer to `req` under `cors` if it is a CORS preflight (`OPTIONS`
/// with `Origin` and `Access-Control-Request-Method`): a 204 with the
/// preflight headers for an allowed origin, `Vary: Origin` alone otherwise.
fn preflight(cors: &Cors, req: &RequestHeadRef<'_>) -> Option<ResponseHead> {
    let origin = req.header("origin")?;
    if req.method() != "OPTIONS" || req.header("access-control-request-method").is_none() {
        return None;
    }
    let mut head = ResponseHead::new(204);
    if cors.allows(origin) {
        head.headers = cors.preflight_headers(origin, req.header("access-control-request-headers"));
    } else if cors.varies() {
        head.headers.push(("vary".into(), "Origin".into()));
    }
    Some(head)
}

/// The CORS headers for `req`'s response under `cors` (`expose`: the
/// response headers a browser may read besides the safe ones).
fn cors_headers(cors: &Cors, req: &RequestHeadRef<'_>, expose: &[&str]) -> Vec<(String, String)> {
    match req.header("origin").filter(|o| cors.allows(o)) {
        Some(o) => cors.response_headers(o, expose),
        None if cors.varies() => vec![("vary".into(), "Origin".into())],
        None => Vec::new(),
    }
}

/// A request to a core route (`/_/api/*` and the like; the manifest's
/// `coreRoutes`): CORS only. The host keeps nothing else from this answer,
/// and such a request is not the gateway's to count, limit, log or send to
/// the shell.
fn core_route(gw: &Gateway, req: &RequestHeadRef<'_>) -> RequestDecision {
    let Some(cors) = gw.cors.as_ref() else {
        return RequestDecision::pass();
    };
    if let Some(head) = preflight(cors, req) {
        return RequestDecision::respond(head);
    }
    RequestDecision::Continue(RequestChanges {
        response_headers: cors_headers(cors, req, &[]),
        skip_on_response: true,
        ..RequestChanges::default()
    })
}

fn check(input: HookBytes) -> Result<RequestDecision, Error> {
    let gw = gateway()?;
    let req = input.request()?;
    if req.core_route() {
        return Ok(core_route(gw, &req));
    }
    let start_us = now_us();
    // Only a rate limit and the request log need the client's address: a
    // CORS-only gateway makes no host call for it.
    let client = if gw.rate.is_some() || gw.log.is_some() {
        buntime_pdk::client()
    } else {
        None
    };
    let address = limit::address(client.as_ref());
    if let Some(head) = gw.cors.as_ref().and_then(|c| preflight(c, &req)) {
        record(gw, &req, address, Outcome::Preflight, start_us)?;
        return Ok(RequestDecision::respond(head));
    }
    let expose: &[&str] = if gw.rate.is_some() {
        &limit::EXPOSED
    } else {
        &[]
    };
    let mut headers = gw
        .cors
        .as_ref()
        .map_or_else(Vec::new, |c| cors_headers(c, &req, expose));
    if let Some(rule) = gw
        .rate
        .as_ref()
        .and_then(|r| r.limit_for(req.method(), req.path()))
    {
        let taken = state::take(
            &limit::bucket_key(
                rule,
                &req,
                address,
                client.as_ref().and_then(|c| c.api_key_hash.as_deref()),
            ),
            rule.requests,
            rule.window,
            1,
        )?;
        headers.extend(limit::headers(
            rule.requests,
            taken.remaining,
            taken.reset_ms,
        ));
        if !taken.allowed {
            let retry = limit::seconds(taken.retry_after_ms).max(1);
            let mut head = ResponseHead::new(429);
            head.headers = headers;
            head.headers.push(("retry-after".into(), retry.to_string()));
            head.headers
                .push(("content-type".into(), "application/json".into()));
            head.body = Some(
                json!({
                    "code": "RATE_LIMITED",
                    "message": format!("more than {} requests in {:?}; retry in {retry} s", rule.requests, rule.window),
                    "requestId": req.request_id(),
                })
                .to_string(),
            );
            record(gw, &req, address, Outcome::Limited, start_us)?;
            return Ok(RequestDecision::respond(head));
        }
    }
    // A logged request carries its marker to `on_response`; any other skips
    // that hook (no entry to complete, so a marker someone else set on its
    // response points the gateway at nothing).
    let marker = record(gw, &req, address, Outcome::Allowed, start_us)?;
    let skip_on_response = marker.is_none();
    if let Some(marker) = marker {
        headers.push((LOG_MARKER.into(), marker));
    }
    let path = gw.shell.as_ref().and_then(|s| {
        s.route(
            req.method(),
            req.path(),
            req.header("sec-fetch-dest"),
            req.header("accept"),
            req.header("cookie"),
        )
    });
    Ok(RequestDecision::Continue(RequestChanges {
        response_headers: headers,
        path,
        skip_on_response,
        ..RequestChanges::default()
    }))
}
buntime_pdk::on_request!(check);

/// Counts the request and, when the log samples it, writes its entry into
/// the ring (slot `seq % size`, so the newest replaces the oldest). An
/// answer of the gateway's own is logged with its status; for a request let
/// through, the answer is the marker `on_response` completes the entry by.
fn record(
    gw: &Gateway,
    req: &RequestHeadRef<'_>,
    address: &str,
    outcome: Outcome,
    start_us: u64,
) -> Result<Option<String>, Error> {
    let seq = u64::try_from(state::incr(REQUESTS, 1, None)?).unwrap_or(0);
    crate::history::note(seq, start_us / 1000)?;
    match outcome {
        Outcome::Limited => {
            state::incr(LIMITED, 1, None)?;
        }
        Outcome::Preflight => {
            state::incr(PREFLIGHTS, 1, None)?;
        }
        Outcome::Allowed => {}
    }
    let Some(log) = gw.log.filter(|l| seq > 0 && l.sampled(seq)) else {
        return Ok(None);
    };
    let status = match outcome {
        Outcome::Allowed => None,
        Outcome::Limited => Some(429),
        Outcome::Preflight => Some(204),
    };
    let mut entry = json!({
        "seq": seq,
        "time": start_us / 1000,
        "method": req.method(),
        "path": req.path().chars().take(512).collect::<String>(),
        "ip": address,
        "origin": req.header("origin").map(|o| o.chars().take(256).collect::<String>()),
        "outcome": match outcome {
            Outcome::Allowed => "allowed",
            Outcome::Limited => "limited",
            Outcome::Preflight => "preflight",
        },
        "requestId": req.request_id(),
        "status": status,
        "durationMs": null,
    });
    if status.is_some() {
        entry["durationMs"] = json!(since_ms(start_us));
    }
    let slot = seq % log.size;
    state::set(&format!("{LOG_PREFIX}{slot:05}"), &entry, None)?;
    Ok(Some(format!("{slot}:{seq}:{start_us}")))
}

/// Completes the entry of a logged request with the status it is answered
/// and how long that took, and removes the marker.
fn finish(res: Lazy<ResponseView>) -> Result<ResponseChanges, Error> {
    if gateway()?.log.is_none() {
        return Ok(ResponseChanges::default());
    }
    let res = res.get()?;
    let Some(marker) = res
        .headers
        .iter()
        .find(|(k, _)| k == LOG_MARKER)
        .map(|(_, v)| v.as_str())
    else {
        return Ok(ResponseChanges::default());
    };
    let mut parts = marker.split(':').map(str::parse::<u64>);
    if let (Some(Ok(slot)), Some(Ok(seq)), Some(Ok(start_us))) =
        (parts.next(), parts.next(), parts.next())
    {
        let key = format!("{LOG_PREFIX}{slot:05}");
        // The slot may hold a newer request's entry by now: left alone.
        if let Some((mut entry, version)) = state::get::<Value>(&key)?
            && entry["seq"] == seq
        {
            entry["status"] = json!(res.status);
            entry["durationMs"] = json!(since_ms(start_us));
            state::cas(&key, version, &entry, None)?;
        }
    }
    Ok(ResponseChanges {
        remove_headers: vec![LOG_MARKER.into()],
        ..ResponseChanges::default()
    })
}
buntime_pdk::on_response!(finish);
