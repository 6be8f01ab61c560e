//! The wasm side: the routes, the history in the plugin's `state` and the
//! stream's poll export.
//!
//! Samples are taken when the figures are read (a route or a stream's poll)
//! and the last sample is at least an interval old. The history, the last
//! base and the sequence number live in `state`, shared by every instance:
//! whichever instance answers, it reads the same history, and a compare-
//! and-swap on the base lets only one of them take each sample.

use buntime_pdk::abi::HostErrorBody;
use buntime_pdk::plugin::{config, metrics, state};
use buntime_pdk::{Error, Request, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::figures::{Base, Sample, Snapshot, stats, summary};

/// The topic the stream is declared on (nothing publishes it: the poll
/// export produces the events).
const TOPIC: &str = "metrics/samples";
/// The most samples a history holds, whatever the config says.
const MAX_HISTORY: u64 = 10_000;

fn config_u64(key: &str, default: u64) -> u64 {
    config(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The time between two samples, ms (at least 50).
fn interval() -> u64 {
    config_u64("interval", 1000).max(50)
}

/// The samples kept (1 to [`MAX_HISTORY`]).
fn history_size() -> u64 {
    config_u64("historySize", 300).clamp(1, MAX_HISTORY)
}

fn history_key(seq: u64) -> String {
    format!("h:{seq:012}")
}

/// An error answer in the server's shape.
fn failure(status: u16, code: &str, message: impl Into<String>) -> Response {
    Response::new(status)
        .header("content-type", "application/json")
        .body(json!({ "code": code, "message": message.into() }).to_string())
}

fn host_failure(e: &HostErrorBody) -> Response {
    match e.code.as_str() {
        "capability_denied" => failure(403, "CAPABILITY_DENIED", e.message.clone()),
        _ => failure(503, "METRICS_UNAVAILABLE", e.message.clone()),
    }
}

/// The host's figures now.
fn snapshot() -> Result<Snapshot, HostErrorBody> {
    let v = metrics::snapshot()?;
    serde_json::from_value(v).map_err(|e| HostErrorBody {
        code: "internal".into(),
        message: format!("the host's snapshot does not parse: {e}"),
    })
}

/// Takes a sample of `snap` into the history if the last one is at least
/// an interval old (a tenth of it as slack for timer jitter); the first
/// call only records the base.
fn sample(snap: &Snapshot) -> Result<(), HostErrorBody> {
    let now = Base::of(snap);
    let Some((prev, version)) = state::get::<Base>("base")? else {
        state::cas("base", 0, &now, None)?;
        return Ok(());
    };
    if now.t.saturating_sub(prev.t) * 10 < interval() * 9 {
        return Ok(());
    }
    // Only the instance whose swap succeeds records this interval.
    if !state::cas("base", version, &now, None)?.0 {
        return Ok(());
    }
    let seq = u64::try_from(state::incr("seq", 1, None)?).unwrap_or(0);
    let mut s = Sample::between(&prev, &now, snap);
    s.seq = seq;
    state::set(&history_key(seq), &s, None)?;
    let size = history_size();
    if seq > size {
        state::delete(&history_key(seq - size))?;
    }
    Ok(())
}

/// The history, oldest first: at most `limit` of the last samples. Samples
/// past the history's size (left by a larger `historySize`) are dropped.
fn history(limit: u64) -> Result<Vec<Sample>, HostErrorBody> {
    let entries = state::list("h:", MAX_HISTORY as usize)?;
    let size = history_size() as usize;
    let stale = entries.len().saturating_sub(size);
    for e in &entries[..stale] {
        state::delete(&e.key)?;
    }
    let kept = &entries[stale..];
    let skip = kept.len().saturating_sub(limit as usize);
    Ok(kept[skip..]
        .iter()
        .filter_map(|e| serde_json::from_value(e.value.clone()).ok())
        .collect())
}

fn serve(req: Request) -> Result<Response, Error> {
    let path = req.path().trim_end_matches('/');
    match (req.method(), path) {
        ("GET", "/api") => with_snapshot(|s| Response::json(&summary(s))),
        ("GET", "/api/stats") => with_snapshot(|s| Response::json(&stats(s))),
        ("GET", "/api/history") => {
            let limit = req
                .head()
                .query_param("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(MAX_HISTORY);
            with_snapshot(|_| {
                let samples = match history(limit) {
                    Ok(s) => s,
                    Err(e) => return Ok(host_failure(&e)),
                };
                Response::json(&json!({
                    "intervalMs": interval(),
                    "size": history_size(),
                    "samples": samples,
                }))
            })
        }
        ("GET", "/api/sse") => sse(),
        (_, "/api" | "/api/stats" | "/api/history" | "/api/sse") => Ok(failure(
            405,
            "METHOD_NOT_ALLOWED",
            "only GET is served here",
        )),
        _ => Ok(failure(
            404,
            "NOT_FOUND",
            format!("no route `{path}`; routes: /api, /api/stats, /api/history, /api/sse"),
        )),
    }
}
buntime_pdk::app!(serve);

/// Reads the figures, samples them if due, and answers with `f`.
fn with_snapshot(f: impl FnOnce(&Snapshot) -> Result<Response, Error>) -> Result<Response, Error> {
    let snap = match snapshot() {
        Ok(s) => s,
        Err(e) => return Ok(host_failure(&e)),
    };
    if let Err(e) = sample(&snap) {
        return Ok(host_failure(&e));
    }
    f(&snap)
}

/// `GET /api/sse`: a `metrics` event per new sample, polled every interval.
fn sse() -> Result<Response, Error> {
    // Refuse at once, rather than as an error event, when the figures
    // cannot be read.
    if let Err(e) = snapshot() {
        return Ok(host_failure(&e));
    }
    let stream = match state::incr("streams", 1, None) {
        Ok(n) => n,
        Err(e) => return Ok(host_failure(&e)),
    };
    Ok(Response::new(200)
        .events(vec![TOPIC.to_owned()])
        .event_name("metrics")
        .poll("stream", json!({ "stream": stream }), interval()))
}

/// One event of a stream.
#[derive(Serialize)]
struct Produced {
    event: &'static str,
    data: Sample,
}

/// The `stream` export: samples if due, then sends the samples this stream
/// has not sent yet (on its first call, the latest one).
fn poll_stream(input: Value) -> Result<Vec<Produced>, Error> {
    let id = input["stream"].as_i64().unwrap_or(0);
    let snap = snapshot().map_err(|e| Error::msg(e.message))?;
    sample(&snap).map_err(|e| Error::msg(e.message))?;
    let key = format!("s:{id}");
    let sent = state::get::<u64>(&key).map_err(|e| Error::msg(e.message))?;
    let last = state::get::<u64>("seq")
        .map_err(|e| Error::msg(e.message))?
        .map_or(0, |(seq, _)| seq);
    if last == 0 {
        return Ok(Vec::new());
    }
    let after = sent.map_or(last - 1, |(seq, _)| seq);
    // At most the last ten (a client that fell behind skips the rest).
    let mut out = Vec::new();
    for seq in (after + 1).max(last.saturating_sub(9))..=last {
        if let Some((data, _)) = state::get::<Sample>(&history_key(seq)).map_err(|e| Error::msg(e.message))? {
            out.push(Produced {
                event: "metrics",
                data,
            });
        }
    }
    // Forgotten a while after the stream stops polling.
    let ttl = std::time::Duration::from_millis((interval() * 10).max(60_000));
    state::set(&key, &last.max(after), Some(ttl)).map_err(|e| Error::msg(e.message))?;
    Ok(out)
}
buntime_pdk::service!(stream, poll_stream);
