//! The exports: `on_init` checks the config, `on_event` stores the feed's
//! records in the ring, `handle` serves `/_/logs/api` (queries, stats,
//! the tail, clear, and appending a line).

use buntime_pdk::hooks::Event;
use buntime_pdk::plugin::{config, state};
use buntime_pdk::{Error, Request, Response};
use serde_json::{Value, json};

use crate::query::{self, Query};

/// `state` keys: the sequence of the newest record, the sequence the last
/// clear reached, the host's drop count, and the ring's slots.
const SEQ: &str = "seq";
const CLEARED: &str = "cleared";
const DROPPED: &str = "dropped";
const SLOT: &str = "r:";

/// `maxEntries` when the config does not say.
const DEFAULT_CAPACITY: usize = 1000;
/// The largest `maxEntries`: the ring must fit the plugin's `state`
/// namespace (64 MiB) with room for long messages.
const MAX_CAPACITY: usize = 10_000;

fn capacity_of(value: &Value) -> Result<usize, String> {
    match value {
        Value::Null => Ok(DEFAULT_CAPACITY),
        v => v
            .as_u64()
            .map(|n| n as usize)
            .filter(|n| (1..=MAX_CAPACITY).contains(n))
            .ok_or_else(|| {
                format!("`maxEntries` must be a whole number from 1 to {MAX_CAPACITY}, found {v}")
            }),
    }
}

/// The configured capacity (checked by `on_init`).
fn capacity() -> usize {
    config("maxEntries")
        .and_then(|t| t.parse().ok())
        .filter(|n| (1..=MAX_CAPACITY).contains(n))
        .unwrap_or(DEFAULT_CAPACITY)
}

fn init(cfg: Value) -> Result<(), Error> {
    capacity_of(&cfg["maxEntries"]).map_err(Error::msg)?;
    Ok(())
}
buntime_pdk::on_init!(init);

fn number(key: &str) -> Result<u64, Error> {
    Ok(state::get::<u64>(key)?.map_or(0, |(n, _)| n))
}

/// Stores a batch of the feed: one atomic step reserves its sequence
/// numbers, then each record goes to its slot (overwriting the oldest).
fn receive(event: Event) -> Result<(), Error> {
    let Some(records) = event.data["records"].as_array() else {
        return Ok(());
    };
    if records.is_empty() {
        return Ok(());
    }
    let cap = capacity() as u64;
    let last = state::incr(SEQ, records.len() as i64, None)? as u64;
    let first = last + 1 - records.len() as u64;
    for (i, record) in records.iter().enumerate() {
        let seq = first + i as u64;
        let mut record = record.clone();
        record["seq"] = json!(seq);
        state::set(&format!("{SLOT}{}", seq % cap), &record, None)?;
    }
    if let Some(dropped) = event.data["dropped"].as_u64() {
        state::set(DROPPED, &dropped, None)?;
    }
    Ok(())
}
buntime_pdk::on_event!(receive);

/// The live records, newest first: those of the last `capacity` sequence
/// numbers that a clear has not removed.
fn buffer() -> Result<(Vec<Value>, u64), Error> {
    let cap = capacity();
    let last = number(SEQ)?;
    let floor = number(CLEARED)?.max(last.saturating_sub(cap as u64));
    let mut records: Vec<Value> = state::list(SLOT, MAX_CAPACITY)?
        .into_iter()
        .map(|e| e.value)
        .filter(|r| r["seq"].as_u64().is_some_and(|s| s > floor && s <= last))
        .collect();
    records.sort_by_key(|r| std::cmp::Reverse(r["seq"].as_u64().unwrap_or(0)));
    Ok((records, last))
}

fn stats_of(records: &[Value], received: u64) -> Result<Value, Error> {
    Ok(query::stats(
        records,
        capacity(),
        received,
        number(DROPPED)?,
    ))
}

fn json_response(status: u16, value: &Value) -> Response {
    Response::new(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(value.to_string())
}

fn bad_request(message: String) -> Response {
    json_response(400, &json!({ "code": "BAD_REQUEST", "message": message }))
}

/// `GET /api`: `{logs, stats}`, the records that pass the filters.
fn list(req: &Request) -> Result<Response, Error> {
    let q = match Query::parse(&req.head().query_params()) {
        Ok(q) => q,
        Err(e) => return Ok(bad_request(e)),
    };
    let (records, received) = buffer()?;
    let logs: Vec<&Value> = records
        .iter()
        .filter(|r| q.keeps(r))
        .take(q.limit)
        .collect();
    let stats = stats_of(&records, received)?;
    Ok(json_response(200, &json!({ "logs": logs, "stats": stats })))
}

/// `GET /api/sse`: a live tail, one `log` event per record, narrowed like
/// the query (`level`, `source`, `app`, `plugin`, `requestId`, `search`;
/// the host checks each record against them, see [`Query::conditions`]).
fn tail(req: &Request) -> Result<Response, Error> {
    let q = match Query::parse(&req.head().query_params()) {
        Ok(q) => q,
        Err(e) => return Ok(bad_request(e)),
    };
    let levels = q
        .levels
        .clone()
        .unwrap_or_else(|| vec!["error".into(), "warn".into(), "info".into()]);
    let topics = levels.iter().map(|l| format!("log.{l}")).collect();
    let mut res = Response::new(200).events(topics).event_name("log");
    for condition in q.conditions() {
        res = res.event_match(condition);
    }
    Ok(res)
}

/// The largest `POST /api` body: one line, not a bulk import.
const MAX_APPEND_BYTES: usize = 16 * 1024;

/// `POST /api` with `{"level"?, "message"}`: appends a line. It is written
/// as this plugin's log line, so it travels the feed like any other (the
/// host stamps its time and the POST's request id, every subscriber and
/// open tail gets it) and lands in the buffer when its level is one this
/// plugin receives. `202`: the feed delivers it a moment later.
fn append(req: &Request) -> Result<Response, Error> {
    let body = req.body();
    if body.len() > MAX_APPEND_BYTES {
        return Ok(json_response(
            413,
            &json!({
                "code": "TOO_LARGE",
                "message": format!("a line is at most {MAX_APPEND_BYTES} bytes of JSON, found {}", body.len()),
            }),
        ));
    }
    let line: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return Ok(bad_request(
                "the body must be a JSON object `{\"level\", \"message\"}`".into(),
            ));
        }
    };
    let level = match &line["level"] {
        Value::Null => "info".to_owned(),
        Value::String(l) => match query::levels(l) {
            Ok(mut one) if one.len() == 1 => one.remove(0),
            _ => {
                return Ok(bad_request(format!(
                    "`level` must be one of error, warn, info, debug, trace, found `{l}`"
                )));
            }
        },
        other => return Ok(bad_request(format!("`level` must be a string, found {other}"))),
    };
    let Some(message) = line["message"].as_str().filter(|m| !m.is_empty()) else {
        return Ok(bad_request("`message` must be a non-empty string".into()));
    };
    match level.as_str() {
        "error" => extism_pdk::error!("{message}"),
        "warn" => extism_pdk::warn!("{message}"),
        "debug" => extism_pdk::debug!("{message}"),
        "trace" => extism_pdk::trace!("{message}"),
        _ => extism_pdk::info!("{message}"),
    }
    Ok(json_response(202, &json!({ "level": level })))
}

/// `POST /api/clear`: empties the buffer (the records stay in their slots,
/// below the clear mark, until overwritten).
fn clear() -> Result<Response, Error> {
    let (records, last) = buffer()?;
    state::set(CLEARED, &last, None)?;
    Ok(json_response(200, &json!({ "cleared": records.len() })))
}

fn serve(req: Request) -> Result<Response, Error> {
    let path = req.path().trim_end_matches('/');
    match (req.method(), path) {
        ("GET", "/api") => list(&req),
        ("GET", "/api/stats") => {
            let (records, received) = buffer()?;
            Ok(json_response(200, &stats_of(&records, received)?))
        }
        ("GET", "/api/sse") => tail(&req),
        ("POST", "/api") => append(&req),
        ("POST", "/api/clear") => clear(),
        _ => Ok(json_response(
            404,
            &json!({
                "code": "NOT_FOUND",
                "message": format!("no route {} {path}; see docs/plugins/logs.md", req.method()),
            }),
        )),
    }
}
buntime_pdk::app!(serve);
