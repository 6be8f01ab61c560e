//! The wasm side of the chain: `on_init` checks the config; `on_request`
//! answers preflights, draws one token from the request's bucket (a 429
//! when there is none), sends browser navigations to the app shell, and
//! asks the host to put the CORS and rate-limit headers on whatever
//! response the request gets.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use buntime_pdk::hooks::{RequestChanges, RequestDecision};
use buntime_pdk::plugin::{config, state};
use buntime_pdk::{Error, RequestHead, ResponseHead};
use serde_json::{Value, json};

use crate::config::Gateway;
use crate::limit;

/// State keys of the counters and the log ring.
pub(crate) const REQUESTS: &str = "stat:requests";
pub(crate) const LIMITED: &str = "stat:limited";
pub(crate) const PREFLIGHTS: &str = "stat:preflights";
pub(crate) const LOG_PREFIX: &str = "log:";

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
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

fn check(req: RequestHead) -> Result<RequestDecision, Error> {
    let gw = gateway()?;
    // Only a rate limit and the request log need the client's address: a
    // CORS-only gateway makes no host call for it.
    let client = if gw.rate.is_some() || gw.log.is_some() {
        buntime_pdk::client()
    } else {
        None
    };
    let address = limit::address(client.as_ref());
    let origin = req.header("origin");
    let cors = gw.cors.as_ref();
    let allowed = cors.zip(origin).filter(|(c, o)| c.allows(o));

    if let Some(c) = cors
        && req.method == "OPTIONS"
        && origin.is_some()
        && req.header("access-control-request-method").is_some()
    {
        let mut head = ResponseHead::new(204);
        match allowed {
            Some((c, o)) => {
                head.headers = c.preflight_headers(o, req.header("access-control-request-headers"))
            }
            None if c.varies() => head.headers.push(("vary".into(), "Origin".into())),
            None => {}
        }
        record(gw, &req, address, Outcome::Preflight)?;
        return Ok(RequestDecision::respond(head));
    }

    let mut headers = match allowed {
        Some((c, o)) => {
            let expose: &[&str] = if gw.rate.is_some() {
                &limit::EXPOSED
            } else {
                &[]
            };
            c.response_headers(o, expose)
        }
        None if cors.is_some_and(|c| c.varies()) => vec![("vary".into(), "Origin".into())],
        None => Vec::new(),
    };
    if let Some(rule) = gw
        .rate
        .as_ref()
        .and_then(|r| r.limit_for(&req.method, &req.path))
    {
        let taken = state::take(
            &limit::bucket_key(rule, &req, address),
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
                    "requestId": req.request_id,
                })
                .to_string(),
            );
            record(gw, &req, address, Outcome::Limited)?;
            return Ok(RequestDecision::respond(head));
        }
    }
    record(gw, &req, address, Outcome::Allowed)?;
    let path = gw.shell.as_ref().and_then(|s| {
        s.route(
            &req.method,
            &req.path,
            req.header("sec-fetch-dest"),
            req.header("accept"),
            req.header("cookie"),
        )
    });
    Ok(RequestDecision::Continue(RequestChanges {
        response_headers: headers,
        path,
        ..RequestChanges::default()
    }))
}
buntime_pdk::on_request!(check);

/// Counts the request and, when the log samples it, writes its entry into
/// the ring (slot `seq % size`, so the newest replaces the oldest).
fn record(gw: &Gateway, req: &RequestHead, address: &str, outcome: Outcome) -> Result<(), Error> {
    let seq = u64::try_from(state::incr(REQUESTS, 1, None)?).unwrap_or(0);
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
        return Ok(());
    };
    let entry = json!({
        "seq": seq,
        "time": now_ms(),
        "method": req.method,
        "path": req.path.chars().take(512).collect::<String>(),
        "ip": address,
        "origin": req.header("origin").map(|o| o.chars().take(256).collect::<String>()),
        "outcome": match outcome {
            Outcome::Allowed => "allowed",
            Outcome::Limited => "limited",
            Outcome::Preflight => "preflight",
        },
        "requestId": req.request_id,
    });
    state::set(&format!("{LOG_PREFIX}{:05}", seq % log.size), &entry, None)?;
    Ok(())
}
