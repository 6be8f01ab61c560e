//! `/_/gateway/api`: counters, the buckets, the request log and the config.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/stats` | the counters, active buckets, what is on |
//! | `GET /api/config` | the effective config |
//! | `GET /api/rate-limit/metrics` | `{totalRequests, blockedRequests, allowedRequests, activeBuckets}` |
//! | `GET /api/rate-limit/buckets?limit` | the buckets not full, with their tokens now |
//! | `DELETE /api/rate-limit/buckets/<key>` | refills one bucket |
//! | `POST /api/rate-limit/clear` | refills every bucket |
//! | `GET /api/logs?limit&ip&outcome` | the request log, newest first |
//! | `DELETE /api/logs` | empties it |
//! | `GET /api/logs/stats` | the log's entries by outcome, method and status |
//! | `GET /api/metrics/history?limit` | the counters per second, oldest first |
//! | `DELETE /api/metrics/history` | empties it |
//! | `GET /api/sse` | an event stream: a `stats` snapshot every second |

use std::collections::BTreeMap;

use buntime_pdk::plugin::state;
use buntime_pdk::{Error, Request, Response};
use serde_json::{Value, json};

use crate::guest::{LIMITED, LOG_PREFIX, PREFLIGHTS, REQUESTS, gateway, now_ms};
use crate::history::HISTORY_PREFIX;
use crate::limit::BUCKET_PREFIX;

/// Most entries one listing reads from the state.
const LIST_MAX: usize = 10_000;

fn error(status: u16, code: &str, message: impl Into<String>) -> Result<Response, Error> {
    Ok(Response::json(&json!({ "code": code, "message": message.into() }))?.status(status))
}

fn counter(key: &str) -> Result<u64, Error> {
    Ok(state::get::<u64>(key)?.map_or(0, |(v, _)| v))
}

/// Percent-decodes a path segment (bucket keys hold `:`).
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A bucket as listed: its tokens refilled up to now.
fn bucket(e: &state::Entry, now: u64) -> Value {
    let v = &e.value;
    let capacity = v["capacity"].as_f64().unwrap_or(0.0);
    let window = v["windowMs"].as_f64().unwrap_or(1.0).max(1.0);
    let elapsed = now.saturating_sub(v["updatedMs"].as_u64().unwrap_or(now)) as f64;
    let tokens = (v["tokens"].as_f64().unwrap_or(0.0) + elapsed * capacity / window).min(capacity);
    json!({
        "key": e.key,
        "tokens": (tokens * 1000.0).floor() / 1000.0,
        "capacity": v["capacity"],
        "windowMs": v["windowMs"],
    })
}

/// Deletes every entry under `prefix`; how many there were.
fn clear(prefix: &str) -> Result<u64, Error> {
    let mut n = 0;
    loop {
        let batch = state::list(prefix, LIST_MAX)?;
        if batch.is_empty() {
            return Ok(n);
        }
        for e in batch {
            n += u64::from(state::delete(&e.key)?);
        }
    }
}

fn buckets() -> Result<Vec<state::Entry>, Error> {
    Ok(state::list(BUCKET_PREFIX, LIST_MAX)?)
}

fn metrics() -> Result<Value, Error> {
    let total = counter(REQUESTS)?;
    let blocked = counter(LIMITED)?;
    let preflights = counter(PREFLIGHTS)?;
    Ok(json!({
        "totalRequests": total,
        "blockedRequests": blocked,
        "preflightRequests": preflights,
        "allowedRequests": total.saturating_sub(blocked + preflights),
        "activeBuckets": buckets()?.len(),
    }))
}

fn logs() -> Result<Vec<Value>, Error> {
    let mut entries: Vec<Value> = state::list(LOG_PREFIX, LIST_MAX)?
        .into_iter()
        .map(|e| e.value)
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e["seq"].as_u64().unwrap_or(0)));
    Ok(entries)
}

fn config() -> Result<Value, Error> {
    let gw = gateway()?;
    let rate = gw.rate.as_ref().map(|r| {
        let limit = |l: &crate::config::Limit| {
            json!({
                "id": l.id, "requests": l.requests, "windowMs": l.window.as_millis() as u64,
                "keyBy": format!("{:?}", l.key_by), "paths": l.paths, "methods": l.methods,
            })
        };
        json!({
            "routes": r.routes.iter().map(limit).collect::<Vec<_>>(),
            "default": r.default.as_ref().map(limit),
            "excludePaths": r.exclude,
        })
    });
    Ok(json!({
        "rateLimit": rate,
        "cors": gw.cors.as_ref().map(|c| c.describe()),
        "requestLog": gw.log.map(|l| json!({ "size": l.size, "sampleRate": l.sample_rate })),
        "shell": gw.shell.as_ref().map(|s| json!({ "app": s.app, "excludes": s.excludes })),
    }))
}

fn routes(req: Request) -> Result<Response, Error> {
    let path = req.path().trim_end_matches('/');
    let method = req.method();
    let limit = |default: usize| {
        req.head()
            .query_param("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(default)
            .clamp(1, LIST_MAX)
    };
    match (method, path) {
        ("GET", "/api/stats") => {
            let mut m = metrics()?;
            m["rateLimit"] = json!(gateway()?.rate.is_some());
            m["cors"] = json!(gateway()?.cors.is_some());
            m["logEntries"] = json!(state::list(LOG_PREFIX, LIST_MAX)?.len());
            Response::json(&m)
        }
        ("GET", "/api/config") => Response::json(&config()?),
        // The host drives the stream: it calls `sse_tick` when it opens and
        // every second after (nothing is published on the topic).
        ("GET", "/api/sse") => Ok(Response::new(200)
            .events(vec!["gateway/stats".into()])
            .poll("sse_tick", json!({}), 1000)),
        ("GET", "/api/rate-limit/metrics") => Response::json(&metrics()?),
        ("GET", "/api/rate-limit/buckets") => {
            let now = now_ms();
            let list: Vec<Value> = buckets()?
                .iter()
                .take(limit(100))
                .map(|e| bucket(e, now))
                .collect();
            Response::json(&json!({ "buckets": list }))
        }
        ("POST", "/api/rate-limit/clear") => {
            Response::json(&json!({ "cleared": clear(BUCKET_PREFIX)? }))
        }
        ("DELETE", p) if p.starts_with("/api/rate-limit/buckets/") => {
            let raw = &p["/api/rate-limit/buckets/".len()..];
            let Some(key) = decode(raw).filter(|k| k.starts_with(BUCKET_PREFIX)) else {
                return error(
                    400,
                    "INVALID_KEY",
                    format!("`{raw}` is not a bucket key (they start with `{BUCKET_PREFIX}`)"),
                );
            };
            if state::delete(&key)? {
                Response::json(&json!({ "deleted": key }))
            } else {
                error(
                    404,
                    "NOT_FOUND",
                    format!("no bucket `{key}` (a full bucket is not kept)"),
                )
            }
        }
        ("GET", "/api/logs") => {
            let ip = req.head().query_param("ip");
            let outcome = req.head().query_param("outcome");
            let list: Vec<Value> = logs()?
                .into_iter()
                .filter(|e| ip.as_deref().is_none_or(|ip| e["ip"] == ip))
                .filter(|e| outcome.as_deref().is_none_or(|o| e["outcome"] == o))
                .take(limit(100))
                .collect();
            Response::json(&json!({ "logs": list }))
        }
        ("GET", "/api/metrics/history") => {
            // Keys sort by time: the newest `limit`, oldest first.
            let all = state::list(HISTORY_PREFIX, LIST_MAX)?;
            let skip = all.len().saturating_sub(limit(100));
            let list: Vec<Value> = all.into_iter().skip(skip).map(|e| e.value).collect();
            Response::json(&json!({ "history": list }))
        }
        ("DELETE", "/api/metrics/history") => {
            Response::json(&json!({ "cleared": clear(HISTORY_PREFIX)? }))
        }
        ("DELETE", "/api/logs") => Response::json(&json!({ "cleared": clear(LOG_PREFIX)? })),
        ("GET", "/api/logs/stats") => {
            let entries = logs()?;
            let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
            let mut methods: BTreeMap<String, u64> = BTreeMap::new();
            let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
            for e in &entries {
                let status = e["status"]
                    .as_u64()
                    .map_or_else(|| "pending".to_owned(), |s| s.to_string());
                *statuses.entry(status).or_default() += 1;
                *outcomes
                    .entry(e["outcome"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
                *methods
                    .entry(e["method"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            Response::json(&json!({
                "entries": entries.len(),
                "byOutcome": outcomes,
                "byMethod": methods,
                "byStatus": statuses,
                "oldest": entries.last().map(|e| e["time"].clone()),
                "newest": entries.first().map(|e| e["time"].clone()),
            }))
        }
        (_, p) if p.starts_with("/api") => error(
            404,
            "NOT_FOUND",
            format!("no gateway route `{method} {p}`; see docs/plugins/gateway.md"),
        ),
        _ => Ok(Response::new(404)),
    }
}
buntime_pdk::app!(routes);

/// One `stats` event of `/api/sse`: the counters, what is on, the newest
/// log entries.
fn snapshot(_: Value) -> Result<Value, Error> {
    let gw = gateway()?;
    let recent: Vec<Value> = logs()?.into_iter().take(10).collect();
    Ok(json!([{
        "event": "stats",
        "data": {
            "timestamp": now_ms(),
            "rateLimit": metrics()?,
            "cors": gw.cors.as_ref().map(|c| c.describe()),
            "recentLogs": recent,
        }
    }]))
}
buntime_pdk::service!(sse_tick, snapshot);
