//! The REST API under `/api` — the original keyval plugin's paths and JSON
//! shapes. Every handler reads its input, calls [`crate::ops`] (or the
//! queue, index, watch modules) and answers JSON; every failure is a
//! [`Failure`] with a status and a message naming the field.

use std::time::Instant;

use buntime_pdk::http::percent_decode;
use buntime_pdk::plugin::config;
use buntime_pdk::{Request, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::json::{RawValues, value_text};
use crate::keys::{self, Key};
use crate::ops::{self, Selector};
use crate::store::{Access, EntryOut, Store, versionstamp};
use crate::{Failure, atomic, fts, metrics, queue, watch, watch_routes};

pub(crate) type Outcome = Result<Response, Failure>;

pub(crate) fn ok<T: Serialize + ?Sized>(value: &T) -> Response {
    Response::new(200)
        .header("content-type", "application/json")
        .body(serde_json::to_string(value).unwrap_or_default())
}

/// Answers one request.
pub fn handle(req: &Request) -> Response {
    let started = Instant::now();
    let path = req.path().trim_end_matches('/').to_owned();
    let segments: Vec<String> = path.split('/').skip(1).map(percent_decode).collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (op, result) = route(req, &seg, &segments);
    if let Some(op) = op {
        metrics::record(
            op,
            started.elapsed(),
            result.as_ref().is_err_and(|f| f.0 >= 500),
        );
    }
    result.unwrap_or_else(|f| f.response())
}

fn route(req: &Request, seg: &[&str], raw: &[String]) -> (Option<&'static str>, Outcome) {
    let m = req.method();
    match (m, seg) {
        ("GET", ["api", "keys"]) => (Some("list"), list_get(req)),
        ("POST", ["api", "keys", "list"]) => (Some("list"), list_post(req)),
        ("GET", ["api", "keys", "count"]) => (Some("count"), count(req)),
        ("GET", ["api", "keys", "paginate"]) => (Some("list"), paginate(req)),
        ("POST", ["api", "keys", "batch"]) => (Some("batch"), batch_get(req)),
        ("POST", ["api", "keys", "delete-batch"]) => (Some("delete"), delete_batch(req)),
        ("GET", ["api", "keys", ..]) => (Some("get"), get(req, &raw[2..])),
        ("PUT", ["api", "keys", _, ..]) => (Some("set"), put(req, &raw[2..])),
        ("DELETE", ["api", "keys", ..]) => (Some("delete"), delete(req, &raw[2..])),
        ("POST", ["api", "atomic"]) => (Some("atomic"), commit(req)),
        ("POST", ["api", "queue", "enqueue"]) => (Some("enqueue"), enqueue(req)),
        ("GET", ["api", "queue", "poll"]) => (Some("dequeue"), poll(req)),
        ("GET", ["api", "queue", "listen"]) => (None, listen(req)),
        ("POST", ["api", "queue", "ack"]) => (Some("ack"), ack(req, true)),
        ("POST", ["api", "queue", "nack"]) => (Some("nack"), ack(req, false)),
        ("GET", ["api", "queue", "stats"]) => (None, with_store(req, queue::stats)),
        ("GET", ["api", "queue", "dlq"]) => (None, dlq_list(req)),
        ("DELETE", ["api", "queue", "dlq"]) => {
            (None, with_store(req, |s| queue::dlq_delete(s, None)))
        }
        ("GET", ["api", "queue", "dlq", id]) => (None, dlq_one(req, id, queue::dlq_get)),
        ("DELETE", ["api", "queue", "dlq", id]) => {
            (None, dlq_one(req, id, |s, i| queue::dlq_delete(s, Some(i))))
        }
        ("POST", ["api", "queue", "dlq", id, "requeue"]) => {
            (None, dlq_one(req, id, queue::dlq_requeue))
        }
        ("GET", ["api", "metrics"]) => (None, metrics_json(req)),
        ("GET", ["api", "watch"]) => (None, watch_routes::keys(req)),
        ("GET", ["api", "watch", "poll"]) => (None, watch_routes::keys_poll(req)),
        ("GET", ["api", "watch", "prefix"]) => (None, watch_routes::prefix(req)),
        ("GET", ["api", "watch", "prefix", "poll"]) => (None, watch_routes::prefix_poll(req)),
        ("POST", ["api", "indexes"]) => (None, index_create(req)),
        ("GET", ["api", "indexes"]) => (None, with_store(req, fts::list)),
        ("DELETE", ["api", "indexes"]) => (None, index_delete(req)),
        ("GET", ["api", "search"]) => (Some("search"), search_get(req)),
        ("POST", ["api", "search"]) => (Some("search"), search_post(req)),
        ("GET", ["api", "health"]) => (None, health(req)),
        _ => (
            None,
            Err(Failure(
                404,
                "NOT_FOUND",
                format!("no route {m} {}; see docs/plugins/keyval.md", req.path()),
            )),
        ),
    }
}

/// The tenant a request names: the one its host names (`x-vhost-tenant`,
/// which only the vhosts plugin can set), else `?tenant=` or the tenant header.
fn tenant(req: &Request) -> Option<String> {
    if let Some(t) = req.header("x-vhost-tenant") {
        return Some(t.to_owned());
    }
    req.head()
        .query_param("tenant")
        .or_else(|| {
            let header = config("tenantHeader").unwrap_or_else(|| "x-tenant-id".into());
            req.header(&header).map(str::to_owned)
        })
        .filter(|t| !t.is_empty())
}

/// The request's store for reading: an unknown tenant is a 404.
pub(crate) fn store(req: &Request) -> Result<Store, Failure> {
    Store::open(tenant(req), Access::Read)
}

/// The request's store for a write, which creates the tenant.
fn store_for_write(req: &Request) -> Result<Store, Failure> {
    Store::open(tenant(req), Access::Write)
}

fn with_store<T: Serialize>(
    req: &Request,
    f: impl FnOnce(&Store) -> Result<T, Failure>,
) -> Outcome {
    Ok(ok(&f(&store(req)?)?))
}

fn body(req: &Request) -> Result<Value, Failure> {
    Ok(body_with_text(req)?.0)
}

/// The body as a tree and as its text (where values are taken from, as sent).
fn body_with_text(req: &Request) -> Result<(Value, String), Failure> {
    let bytes = req.body();
    if bytes.is_empty() {
        return Ok((Value::Null, String::new()));
    }
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|e| Failure::bad(format!("the body is not valid JSON: {e}")))?;
    let tree = serde_json::from_str(&text)
        .map_err(|e| Failure::bad(format!("the body is not valid JSON: {e}")))?;
    Ok((tree, text))
}

/// A page of entries: `{entries, cursor, hasMore}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PageOut {
    entries: Vec<EntryOut>,
    cursor: Option<String>,
    has_more: bool,
}

impl From<ops::Page> for PageOut {
    fn from(page: ops::Page) -> Self {
        Self {
            has_more: page.cursor.is_some(),
            cursor: page.cursor,
            entries: page.entries,
        }
    }
}

pub(crate) fn param(req: &Request, name: &str) -> Option<String> {
    req.head().query_param(name)
}

pub(crate) fn number(req: &Request, name: &str, default: i64) -> Result<i64, Failure> {
    match param(req, name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| Failure::bad(format!("`{name}` must be a whole number, found `{v}`"))),
    }
}

pub(crate) fn flag(req: &Request, name: &str, default: bool) -> bool {
    match param(req, name).as_deref() {
        None => default,
        Some(v) => v.is_empty() || v == "true" || v == "1",
    }
}

pub(crate) fn limit(v: i64) -> Result<usize, Failure> {
    usize::try_from(v)
        .ok()
        .filter(|l| (1..=ops::MAX_BATCH).contains(l))
        .ok_or_else(|| {
            Failure::bad(format!(
                "`limit` must be 1 to {}, found {v}",
                ops::MAX_BATCH
            ))
        })
}

pub(crate) fn key_param(req: &Request, name: &str) -> Result<Option<Key>, Failure> {
    param(req, name)
        .map(|t| keys::from_text(&t).map_err(|e| Failure::bad(format!("`{name}`: {e}"))))
        .transpose()
}

fn query_selector(req: &Request) -> Result<Selector, Failure> {
    Ok(Selector {
        prefix: key_param(req, "prefix")?,
        start: key_param(req, "start")?,
        end: key_param(req, "end")?,
    })
}

fn list_get(req: &Request) -> Outcome {
    let sel = query_selector(req)?;
    let page = ops::list(
        &store(req)?,
        &sel,
        limit(number(req, "limit", 100)?)?,
        flag(req, "reverse", false),
        None,
        None,
    )?;
    Ok(ok(&page.entries))
}

fn list_post(req: &Request) -> Outcome {
    let b = body(req)?;
    let sel = Selector::from_json(&b)?;
    let lim = limit(b["limit"].as_i64().unwrap_or(100))?;
    let filter = b.get("where").filter(|w| !w.is_null());
    let cursor = b["cursor"].as_str();
    let page = ops::list(
        &store(req)?,
        &sel,
        lim,
        b["reverse"].as_bool().unwrap_or(false),
        cursor,
        filter,
    )?;
    if b.get("cursor").is_some() || b.get("paginate").is_some() {
        return Ok(ok(&PageOut::from(page)));
    }
    Ok(ok(&page.entries))
}

fn paginate(req: &Request) -> Outcome {
    let sel = query_selector(req)?;
    let cursor = param(req, "cursor").filter(|c| !c.is_empty());
    let page = ops::list(
        &store(req)?,
        &sel,
        limit(number(req, "limit", 100)?)?,
        flag(req, "reverse", false),
        cursor.as_deref(),
        None,
    )?;
    Ok(ok(&PageOut::from(page)))
}

fn count(req: &Request) -> Outcome {
    let n = ops::count(&store(req)?, &query_selector(req)?)?;
    Ok(ok(&json!({ "count": n })))
}

fn path_key(raw: &[String]) -> Result<Key, Failure> {
    keys::from_path(raw).map_err(|e| Failure::bad(format!("the key in the path: {e}")))
}

fn get(req: &Request, raw: &[String]) -> Outcome {
    let key = path_key(raw)?;
    match ops::get(&store(req)?, &key)? {
        Some(e) => Ok(ok(&e)),
        None => Err(Failure(
            404,
            "NOT_FOUND",
            format!("no entry at {}", keys::to_json(&key)),
        )),
    }
}

fn put(req: &Request, raw: &[String]) -> Outcome {
    let key = path_key(raw)?;
    let bytes = req.body();
    let value = std::str::from_utf8(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|text| value_text(text).map_err(|e| e.to_string()))
        .map_err(|e| Failure::bad(format!("the body must be the JSON value to store: {e}")))?;
    let expire_in = match param(req, "expiresIn") {
        None => None,
        Some(v) => atomic::expire_in(Some(&json!(v.parse::<i64>().map_err(|_| {
            Failure::bad(format!(
                "`expiresIn` is a positive number of milliseconds, found `{v}`"
            ))
        })?)))
        .map_err(Failure::bad)?,
    };
    let vs = ops::set(&store_for_write(req)?, &key, value, expire_in)?;
    Ok(ok(&json!({ "ok": true, "versionstamp": vs })))
}

fn delete(req: &Request, raw: &[String]) -> Outcome {
    let key = path_key(raw)?;
    if key.is_empty() {
        // The empty key is the prefix of everything: one slip would empty
        // the store, so it is refused rather than honoured.
        return Err(Failure::bad(
            "name the key or prefix to delete (DELETE /api/keys/<key>); deleting every entry at once is not offered",
        ));
    }
    let b = body(req)?;
    let exact = b["exact"].as_bool().unwrap_or(false);
    let filter = b.get("where").filter(|w| !w.is_null());
    let n = ops::delete(&store(req)?, &key, exact, filter)?;
    Ok(ok(&json!({ "deletedCount": n })))
}

fn key_list(b: &Value) -> Result<Vec<Key>, Failure> {
    let Some(items) = b["keys"].as_array() else {
        return Err(Failure::bad(
            "the body needs `keys`: a list of keys, e.g. {\"keys\": [[\"a\", 1]]}",
        ));
    };
    if items.len() > ops::MAX_BATCH {
        return Err(Failure::bad(format!(
            "at most {} keys per request",
            ops::MAX_BATCH
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, k)| {
            match k {
                Value::String(s) => keys::from_text(s),
                other => keys::from_json(other),
            }
            .map_err(|e| Failure::bad(format!("keys[{i}]: {e}")))
        })
        .collect()
}

fn batch_get(req: &Request) -> Outcome {
    let keys = key_list(&body(req)?)?;
    Ok(ok(&ops::get_many(&store(req)?, &keys)?))
}

fn delete_batch(req: &Request) -> Outcome {
    let b = body(req)?;
    let keys = key_list(&b)?;
    let exact = b["exact"].as_bool().unwrap_or(false);
    let filter = b.get("where").filter(|w| !w.is_null());
    let s = store(req)?;
    let mut n = 0;
    for k in &keys {
        n += ops::delete(&s, k, exact, filter)?;
    }
    Ok(ok(&json!({ "deletedCount": n })))
}

fn commit(req: &Request) -> Outcome {
    let (tree, text) = body_with_text(req)?;
    let (checks, mutations) = atomic::parse(&tree, &RawValues::of(&text))?;
    let s = store_for_write(req)?;
    match atomic::commit(&s, &checks, &mutations)? {
        atomic::Outcome::Committed { versionstamp: v, changes } => {
            watch::publish(&s, &changes);
            Ok(ok(&json!({ "ok": true, "versionstamp": versionstamp(v) })))
        }
        atomic::Outcome::CheckFailed => Ok(Response::new(409)
            .header("content-type", "application/json")
            .body(
                json!({ "ok": false, "error": "conflict", "message": "a check failed: an entry changed since it was read; nothing was written" })
                    .to_string(),
            )),
    }
}

fn enqueue(req: &Request) -> Outcome {
    let (tree, text) = body_with_text(req)?;
    Ok(ok(&queue::enqueue(
        &store_for_write(req)?,
        &tree,
        &RawValues::of(&text),
    )?))
}

/// `GET /queue/poll`: `{"message": …}`, `null` when none is ready (the
/// original's shape).
fn poll(req: &Request) -> Outcome {
    #[derive(Serialize)]
    struct PollOut {
        message: Option<queue::Message>,
    }
    Ok(ok(&PollOut {
        message: queue::dequeue(&store(req)?)?,
    }))
}

fn ack(req: &Request, positive: bool) -> Outcome {
    let b = body(req)?;
    let delivery = queue::Delivery::of(&b)?;
    let s = store(req)?;
    let r = if positive {
        queue::ack(&s, delivery)?
    } else {
        queue::nack(&s, delivery, b["error"].as_str())?
    };
    Ok(ok(&r))
}

/// `GET /queue/listen`: an SSE stream of `message` events, each a dequeued
/// message (ack or nack it). The host calls [`queue_listen`] when the
/// stream opens, whenever something is enqueued, and every second (delayed
/// messages and expired locks).
fn listen(req: &Request) -> Outcome {
    let s = store(req)?;
    Ok(Response::new(200)
        .events(vec![queue::topic(&s)])
        .event_name("message")
        .poll("queue_listen", json!({ "tenant": s.tenant }), 1000))
}

/// One event of a listen stream.
#[derive(Debug, Serialize)]
pub struct Produced {
    event: &'static str,
    data: queue::Message,
}

/// The `queue_listen` export: dequeues at most 10 messages for a listen stream.
pub fn queue_listen(input: Value) -> Result<Vec<Produced>, buntime_pdk::Error> {
    let tenant = input["tenant"].as_str().map(str::to_owned);
    let s = Store::open(tenant, Access::Read).map_err(|f| buntime_pdk::Error::msg(f.2))?;
    let mut out = Vec::new();
    while out.len() < 10 {
        match queue::dequeue(&s).map_err(|f| buntime_pdk::Error::msg(f.2))? {
            Some(m) => out.push(Produced {
                event: "message",
                data: m,
            }),
            None => break,
        }
    }
    Ok(out)
}

/// `GET /queue/dlq`: an array of dead letters (the original's shape).
fn dlq_list(req: &Request) -> Outcome {
    let l = limit(number(req, "limit", 100)?)? as i64;
    let offset = number(req, "offset", 0)?.max(0);
    with_store(req, |s| queue::dlq_list(s, l, offset))
}

fn dlq_one<T: Serialize>(
    req: &Request,
    id: &str,
    f: impl FnOnce(&Store, i64) -> Result<T, Failure>,
) -> Outcome {
    let id = queue::id_of(&json!(id))?;
    with_store(req, |s| f(s, id))
}

fn prefix_of(v: &Value) -> Result<Vec<u8>, Failure> {
    let key = match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => keys::from_text(s),
        other => keys::from_json(other),
    }
    .map_err(|e| Failure::bad(format!("`prefix`: {e}")))?;
    Ok(keys::encode(&key))
}

fn index_create(req: &Request) -> Outcome {
    let b = body(req)?;
    let prefix = prefix_of(&b["prefix"])?;
    // `{prefix, options: {fields, tokenize}}`, or the original client's
    // `{prefix, fields, tokenize}`.
    let options = if b.get("options").is_some_and(|o| !o.is_null()) {
        &b["options"]
    } else {
        &b
    };
    let fields: Vec<String> = serde_json::from_value(options["fields"].clone()).map_err(|_| {
        Failure::bad("`options.fields` is a list of field paths, e.g. [\"title\", \"body\"]")
    })?;
    let tokenize = options["tokenize"].as_str().unwrap_or("unicode61");
    let created = fts::create(&store_for_write(req)?, &prefix, &fields, tokenize)?;
    Ok(Response::new(201)
        .header("content-type", "application/json")
        .body(created.to_string()))
}

fn index_delete(req: &Request) -> Outcome {
    // `?prefix=`, or the original client's body `{"prefix": [...]}`.
    let prefix = match param(req, "prefix") {
        Some(p) => prefix_of(&Value::String(p))?,
        None => prefix_of(&body(req)?["prefix"])?,
    };
    with_store(req, |s| fts::delete(s, &prefix))
}

fn search_get(req: &Request) -> Outcome {
    let prefix = prefix_of(
        &param(req, "prefix")
            .map(Value::String)
            .unwrap_or(Value::Null),
    )?;
    let query = param(req, "query").unwrap_or_default();
    let l = limit(number(req, "limit", 100)?)? as i64;
    with_store(req, |s| fts::search(s, &prefix, &query, l, None))
}

fn search_post(req: &Request) -> Outcome {
    let b = body(req)?;
    let prefix = prefix_of(&b["prefix"])?;
    let query = b["query"].as_str().unwrap_or_default().to_owned();
    // `limit` and `where` at the top, or under `options` (the original
    // server's shape).
    let opts = &b["options"];
    let l = limit(
        b["limit"]
            .as_i64()
            .or(opts["limit"].as_i64())
            .unwrap_or(100),
    )? as i64;
    let filter = [b.get("where"), opts.get("where")]
        .into_iter()
        .flatten()
        .find(|w| !w.is_null());
    with_store(req, |s| fts::search(s, &prefix, &query, l, filter))
}

/// `GET /metrics`: the operation counters, and (as the original answers)
/// the store's queue counts and storage: `{entries, sizeBytes}` of the live
/// entries.
fn metrics_json(req: &Request) -> Outcome {
    let mut out = metrics::json();
    let s = store(req)?;
    let rows = s.sql().query(
        &format!(
            "SELECT count(*), coalesce(sum(length(key) + length(CAST(value AS BLOB))), 0) \
             FROM kv_entries WHERE {}",
            crate::store::LIVE
        ),
        &[],
    )?;
    let r = rows.rows.first().cloned().unwrap_or_default();
    out["storage"] = json!({ "entries": r.first(), "sizeBytes": r.get(1) });
    out["queue"] = queue::stats(&s)?;
    Ok(ok(&out))
}

fn health(req: &Request) -> Outcome {
    let s = store(req)?;
    s.sql().query("SELECT count(*) FROM kv_meta", &[])?;
    Ok(ok(&json!({ "status": "ok" })))
}
