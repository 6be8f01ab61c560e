//! The store's operations, shared by the REST routes and the `kv` service:
//! get, get many, set, delete (a key or a subtree), list, count.

use base64::Engine as _;
use serde_json::Value;

use crate::Failure;
use crate::atomic::{self, Mutation, Outcome};
use crate::filter;
use crate::keys::{self, Key};
use crate::store::{Entry, EntryOut, LIVE, Store, blob, prefix_end, versionstamp};
use crate::watch;

/// Most keys in one batch request, and most entries in one list page.
pub const MAX_BATCH: usize = 1000;

/// The live entry at `key`, as JSON (`None`: absent).
pub fn get(store: &Store, key: &Key) -> Result<Option<EntryOut>, Failure> {
    Ok(store.get(&keys::encode(key))?.map(|e| e.out()))
}

/// Each key's entry, in order; absent keys have `value` and `versionstamp` null.
pub fn get_many(store: &Store, list: &[Key]) -> Result<Vec<EntryOut>, Failure> {
    if list.len() > MAX_BATCH {
        return Err(Failure::bad(format!(
            "at most {MAX_BATCH} keys per request"
        )));
    }
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let encoded: Vec<Vec<u8>> = list.iter().map(|k| keys::encode(k)).collect();
    let marks = vec!["?"; encoded.len()].join(", ");
    let found = store.entries(
        &format!(
            "SELECT key, value, versionstamp FROM kv_entries WHERE key IN ({marks}) AND {LIVE}"
        ),
        &encoded.iter().map(|k| blob(k)).collect::<Vec<_>>(),
    )?;
    Ok(encoded
        .iter()
        .map(|k| watch::change(k, found.iter().find(|e| &e.key == k)))
        .collect())
}

/// Sets `key` to `value` (JSON text); returns the versionstamp.
pub fn set(
    store: &Store,
    key: &Key,
    value: String,
    expire_in: Option<i64>,
) -> Result<String, Failure> {
    let m = Mutation::Set {
        key: keys::encode(key),
        value,
        expire_in,
    };
    match atomic::commit(store, &[], &[m])? {
        Outcome::Committed {
            versionstamp: v,
            changes,
        } => {
            watch::publish(store, &changes);
            Ok(versionstamp(v))
        }
        Outcome::CheckFailed => Err(Failure(
            500,
            "INTERNAL",
            "a commit without checks failed a check".into(),
        )),
    }
}

/// Deletes `key` (`exact`) or `key` and every key under it, optionally only
/// entries matching `filter`; returns how many were deleted.
pub fn delete(
    store: &Store,
    key: &Key,
    exact: bool,
    filter: Option<&Value>,
) -> Result<u64, Failure> {
    let k = keys::encode(key);
    let mut sql = if exact {
        "DELETE FROM kv_entries WHERE key = ?".to_owned()
    } else {
        "DELETE FROM kv_entries WHERE (key = ? OR (key > ? AND key < ?))".to_owned()
    };
    let mut params = if exact {
        vec![blob(&k)]
    } else {
        vec![blob(&k), blob(&k), blob(&prefix_end(&k))]
    };
    if let Some(f) = filter {
        let c = filter::compile(f).map_err(Failure::bad)?;
        sql.push_str(&format!(" AND ({})", c.sql));
        params.extend(c.params);
    }
    sql.push_str(" RETURNING key");
    let rows = store.sql().query(&sql, &params)?;
    let changes: Vec<(Vec<u8>, Option<Entry>)> = rows
        .rows
        .iter()
        .map(|r| (crate::store::unblob(&r[0]), None))
        .collect();
    watch::publish(store, &changes);
    Ok(changes.len() as u64)
}

/// What a list or count covers.
#[derive(Debug, Default, Clone)]
pub struct Selector {
    /// Keys strictly under this prefix.
    pub prefix: Option<Key>,
    /// From this key (inclusive).
    pub start: Option<Key>,
    /// Up to this key (exclusive).
    pub end: Option<Key>,
}

impl Selector {
    /// Reads `prefix`, `start`, `end` from a JSON object whose values are
    /// key arrays or `/`-separated text.
    pub fn from_json(v: &Value) -> Result<Self, Failure> {
        let key = |name: &str| -> Result<Option<Key>, Failure> {
            match &v[name] {
                Value::Null => Ok(None),
                Value::String(s) => keys::from_text(s).map(Some),
                other => keys::from_json(other).map(Some),
            }
            .map_err(|e| Failure::bad(format!("`{name}`: {e}")))
        };
        Ok(Self {
            prefix: key("prefix")?,
            start: key("start")?,
            end: key("end")?,
        })
    }

    /// SQL over `key` and its parameters.
    fn condition(&self) -> (String, Vec<Value>) {
        let mut parts = Vec::new();
        let mut params = Vec::new();
        let prefix = self.prefix.as_ref().map(|p| keys::encode(p));
        match (&self.start, &prefix) {
            (Some(s), _) => {
                parts.push("key >= ?");
                params.push(blob(&keys::encode(s)));
            }
            (None, Some(p)) => {
                parts.push("key > ?");
                params.push(blob(p));
            }
            (None, None) => {}
        }
        if let Some(p) = &prefix {
            if self.start.is_some() {
                parts.push("key > ?");
                params.push(blob(p));
            }
            parts.push("key < ?");
            params.push(blob(&prefix_end(p)));
        }
        if let Some(e) = &self.end {
            parts.push("key < ?");
            params.push(blob(&keys::encode(e)));
        }
        if parts.is_empty() {
            ("1".into(), params)
        } else {
            (parts.join(" AND "), params)
        }
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    /// The entries, in key order (or reverse).
    pub entries: Vec<EntryOut>,
    /// Where the next page starts (opaque), if there may be more.
    pub cursor: Option<String>,
}

/// Lists live entries in `sel`, `limit` at most, after `cursor`.
pub fn list(
    store: &Store,
    sel: &Selector,
    limit: usize,
    reverse: bool,
    cursor: Option<&str>,
    filter: Option<&Value>,
) -> Result<Page, Failure> {
    if limit == 0 || limit > MAX_BATCH {
        return Err(Failure::bad(format!(
            "`limit` must be 1 to {MAX_BATCH}, found {limit}"
        )));
    }
    let (cond, mut params) = sel.condition();
    let mut sql =
        format!("SELECT key, value, versionstamp FROM kv_entries WHERE {cond} AND {LIVE}");
    if let Some(c) = cursor {
        let after = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c)
            .map_err(|_| Failure::bad("`cursor` is not a cursor returned by this API"))?;
        sql.push_str(if reverse {
            " AND key < ?"
        } else {
            " AND key > ?"
        });
        params.push(blob(&after));
    }
    if let Some(f) = filter {
        let c = filter::compile(f).map_err(Failure::bad)?;
        sql.push_str(&format!(" AND ({})", c.sql));
        params.extend(c.params);
    }
    // The limit is a number we checked, written into the SQL: SQLite's
    // planner reads a bound `LIMIT ?` next to `ORDER BY`, which makes it
    // re-prepare the statement on every run (a tenth of a list's cost).
    let order = if reverse { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY key {order} LIMIT {}", limit + 1));
    let mut found = store.entries(&sql, &params)?;
    let more = found.len() > limit;
    found.truncate(limit);
    let cursor = more
        .then(|| found.last())
        .flatten()
        .map(|e| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&e.key));
    Ok(Page {
        entries: found.iter().map(Entry::out).collect(),
        cursor,
    })
}

/// Counts live entries in `sel`.
pub fn count(store: &Store, sel: &Selector) -> Result<u64, Failure> {
    let (cond, params) = sel.condition();
    let rows = store.sql().query(
        &format!("SELECT count(*) FROM kv_entries WHERE {cond} AND {LIVE}"),
        &params,
    )?;
    Ok(rows.rows.first().and_then(|r| r[0].as_u64()).unwrap_or(0))
}
