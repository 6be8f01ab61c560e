//! Atomic commits: checks and mutations in one SQL transaction.
//!
//! The checks are statements of the same batch as the mutations, run first
//! inside the transaction: a failing check inserts into `kv_guard`, whose
//! CHECK constraint aborts the batch, so nothing can change between a check
//! and the writes it guards. Every commit bumps `kv_meta.version` once; the
//! new value is the commit's versionstamp, shared by all its mutations and
//! strictly greater than any before it.

use serde_json::{Value, json};

use crate::Failure;
use crate::json::{RawValues, integer_operand, tagged_bigint};
use crate::keys;
use crate::store::{Entry, LIVE, NOW_MS, Store, blob, entry_of, parse_versionstamp};

/// The most checks plus mutations in one commit.
pub const MAX_OPERATIONS: usize = 1000;

/// `key` must have `versionstamp` (`None`: must not exist).
#[derive(Debug, Clone)]
pub struct Check {
    /// The encoded key.
    pub key: Vec<u8>,
    /// The expected versionstamp.
    pub versionstamp: Option<i64>,
}

/// One write of a commit.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Store a JSON value, optionally expiring `expire_in` ms from now.
    Set {
        key: Vec<u8>,
        value: String,
        expire_in: Option<i64>,
    },
    /// Remove the key.
    Delete { key: Vec<u8> },
    /// Add to a 64-bit integer (absent: start from zero). `tagged`: the
    /// operand was a tagged bigint, so the result is stored tagged.
    Sum { key: Vec<u8>, by: i64, tagged: bool },
    /// Keep the smaller integer.
    Min {
        key: Vec<u8>,
        with: i64,
        tagged: bool,
    },
    /// Keep the larger integer.
    Max {
        key: Vec<u8>,
        with: i64,
        tagged: bool,
    },
    /// Add elements to the end of an array (JSON array text).
    Append { key: Vec<u8>, items: String },
    /// Add elements to the start of an array.
    Prepend { key: Vec<u8>, items: String },
}

impl Mutation {
    /// The key it writes.
    pub fn key(&self) -> &[u8] {
        match self {
            Self::Set { key, .. }
            | Self::Delete { key }
            | Self::Sum { key, .. }
            | Self::Min { key, .. }
            | Self::Max { key, .. }
            | Self::Append { key, .. }
            | Self::Prepend { key, .. } => key,
        }
    }
}

/// What a commit did.
#[derive(Debug)]
pub enum Outcome {
    /// Committed: the versionstamp, and each written key's new entry (`None`: deleted).
    Committed {
        versionstamp: i64,
        changes: Vec<(Vec<u8>, Option<Entry>)>,
    },
    /// A check failed; nothing was written.
    CheckFailed,
}

/// The largest value a mutation may store, in bytes of JSON.
pub fn max_value_bytes() -> usize {
    buntime_pdk::plugin::config("maxValueBytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(65_536)
}

/// Checks a value's size.
pub fn check_value(value: &str) -> Result<(), Failure> {
    let max = max_value_bytes();
    if value.len() > max {
        return Err(Failure(
            413,
            "VALUE_TOO_LARGE",
            format!(
                "the value is {} bytes of JSON; at most {max} (config `maxValueBytes`)",
                value.len()
            ),
        ));
    }
    Ok(())
}

const VERSION: &str = "(SELECT version FROM kv_meta WHERE id = 1)";

fn expired() -> String {
    format!("(expires_at IS NOT NULL AND expires_at <= {NOW_MS})")
}

/// The upsert for sum/min/max/append/prepend: an absent or expired entry
/// becomes the operand; a live one is combined with `combined` (SQL over
/// `value` and `excluded.value`).
fn combine(combined: &str) -> String {
    let expired = expired();
    format!(
        "INSERT INTO kv_entries (key, value, versionstamp, expires_at) VALUES (?, CAST(? AS TEXT), {VERSION}, NULL) \
         ON CONFLICT(key) DO UPDATE SET \
         value = CASE WHEN {expired} THEN excluded.value ELSE CAST({combined} AS TEXT) END, \
         versionstamp = excluded.versionstamp, \
         expires_at = CASE WHEN {expired} THEN NULL ELSE expires_at END"
    )
}

/// SQL: the integer `column` holds — a JSON integer, or a tagged bigint
/// (`{"__type":"bigint","value":"<digits>"}`, digits written the canonical
/// way within 64 bits); NULL for anything else.
fn integer_of(column: &str) -> String {
    let digits = format!("json_extract({column}, '$.value')");
    format!(
        "(CASE WHEN json_type({column}) = 'integer' THEN CAST({column} AS INTEGER) \
         WHEN {} AND json_type({column}, '$.value') = 'text' \
         AND CAST(CAST({digits} AS INTEGER) AS TEXT) = {digits} THEN CAST({digits} AS INTEGER) END)",
        tagged(column)
    )
}

/// SQL: whether `column` is a tagged bigint.
fn tagged(column: &str) -> String {
    format!("(json_type({column}) = 'object' AND json_extract({column}, '$.__type') = 'bigint')")
}

/// SQL: the integer `n` stored as the operands were: tagged when either
/// was, a JSON integer otherwise.
fn integer_result(n: &str) -> String {
    format!(
        "CASE WHEN {} OR {} THEN json_object('__type', 'bigint', 'value', CAST({n} AS TEXT)) ELSE {n} END",
        tagged("value"),
        tagged("excluded.value")
    )
}

fn guard(column: &str, condition: &str) -> String {
    format!(
        "INSERT INTO kv_guard ({column}) SELECT 1 FROM kv_entries WHERE key = ? AND {LIVE} AND {condition}"
    )
}

/// Commits `checks` and `mutations` atomically.
pub fn commit(store: &Store, checks: &[Check], mutations: &[Mutation]) -> Result<Outcome, Failure> {
    if checks.len() + mutations.len() > MAX_OPERATIONS {
        return Err(Failure::bad(format!(
            "a commit has at most {MAX_OPERATIONS} checks and mutations together"
        )));
    }
    // (statement, what it is for an error message)
    let mut statements: Vec<(String, Vec<Value>)> = Vec::new();
    let mut about: Vec<String> = Vec::new();
    let mut push = |sql: String, params: Vec<Value>, what: String| {
        statements.push((sql, params));
        about.push(what);
    };
    for (i, c) in checks.iter().enumerate() {
        let what = format!("check {i}");
        match c.versionstamp {
            Some(v) => push(
                format!(
                    "INSERT INTO kv_guard (check_failed) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM kv_entries WHERE key = ? AND versionstamp = ? AND {LIVE})"
                ),
                vec![blob(&c.key), json!(v)],
                what,
            ),
            None => push(
                format!(
                    "INSERT INTO kv_guard (check_failed) SELECT 1 WHERE EXISTS (SELECT 1 FROM kv_entries WHERE key = ? AND {LIVE})"
                ),
                vec![blob(&c.key)],
                what,
            ),
        }
    }
    push(
        "UPDATE kv_meta SET version = version + 1 WHERE id = 1".into(),
        vec![],
        "version".into(),
    );
    for (i, m) in mutations.iter().enumerate() {
        let what = format!("mutation {i}");
        let k = blob(m.key());
        match m {
            Mutation::Set {
                value, expire_in, ..
            } => {
                check_value(value)?;
                let (expiry, mut extra) = match expire_in {
                    Some(ms) => (format!("{NOW_MS} + ?"), vec![json!(ms)]),
                    None => ("NULL".to_owned(), vec![]),
                };
                let mut params = vec![k, json!(value)];
                params.append(&mut extra);
                push(
                    format!(
                        "INSERT INTO kv_entries (key, value, versionstamp, expires_at) VALUES (?, ?, {VERSION}, {expiry}) \
                         ON CONFLICT(key) DO UPDATE SET value = excluded.value, versionstamp = excluded.versionstamp, expires_at = excluded.expires_at"
                    ),
                    params,
                    what,
                );
            }
            Mutation::Delete { .. } => {
                push("DELETE FROM kv_entries WHERE key = ?".into(), vec![k], what);
            }
            Mutation::Sum { by, tagged, .. } => {
                let current = integer_of("value");
                push(
                    guard("not_integer", &format!("{current} IS NULL")),
                    vec![k.clone()],
                    what.clone(),
                );
                push(
                    guard("overflow", &format!("typeof({current} + ?) != 'integer'")),
                    vec![k.clone(), json!(by)],
                    what.clone(),
                );
                push(
                    combine(&integer_result(&format!(
                        "{current} + {}",
                        integer_of("excluded.value")
                    ))),
                    vec![k, json!(operand_text(*by, *tagged))],
                    what,
                );
            }
            Mutation::Min { with, tagged, .. } | Mutation::Max { with, tagged, .. } => {
                let f = if matches!(m, Mutation::Min { .. }) {
                    "min"
                } else {
                    "max"
                };
                let current = integer_of("value");
                push(
                    guard("not_integer", &format!("{current} IS NULL")),
                    vec![k.clone()],
                    what.clone(),
                );
                push(
                    combine(&integer_result(&format!(
                        "{f}({current}, {})",
                        integer_of("excluded.value")
                    ))),
                    vec![k, json!(operand_text(*with, *tagged))],
                    what,
                );
            }
            Mutation::Append { items, .. } | Mutation::Prepend { items, .. } => {
                check_value(items)?;
                let (first, second) = if matches!(m, Mutation::Append { .. }) {
                    ("value", "excluded.value")
                } else {
                    ("excluded.value", "value")
                };
                push(
                    guard("not_array", "json_type(value) != 'array'"),
                    vec![k.clone()],
                    what.clone(),
                );
                push(
                    combine(&format!(
                        "CASE WHEN {second} = '[]' THEN {first} WHEN {first} = '[]' THEN {second} \
                         ELSE substr({first}, 1, length({first}) - 1) || ',' || substr({second}, 2) END"
                    )),
                    vec![k.clone(), json!(items)],
                    what.clone(),
                );
                // The combined array must fit the limit too, or repeated
                // appends would grow a value past it.
                push(
                    "INSERT INTO kv_guard_size (too_large) SELECT 1 FROM kv_entries \
                     WHERE key = ? AND length(CAST(value AS BLOB)) > ?"
                        .into(),
                    vec![k, json!(max_value_bytes())],
                    what,
                );
            }
        }
    }
    // Expired entries go a few at a time, on the partial index.
    push(
        format!(
            "DELETE FROM kv_entries WHERE key IN (SELECT key FROM kv_entries WHERE expires_at <= {NOW_MS} LIMIT 100)"
        ),
        vec![],
        "expiry sweep".into(),
    );
    let mut written: Vec<Vec<u8>> = mutations.iter().map(|m| m.key().to_vec()).collect();
    written.sort();
    written.dedup();
    if !written.is_empty() {
        let marks = vec!["?"; written.len()].join(", ");
        push(
            format!("SELECT key, value, versionstamp FROM kv_entries WHERE key IN ({marks})"),
            written.iter().map(|k| blob(k)).collect(),
            "read back".into(),
        );
    }
    push(format!("SELECT {VERSION}"), vec![], "versionstamp".into());

    let refs: Vec<(&str, Vec<Value>)> = statements
        .iter()
        .map(|(s, p)| (s.as_str(), p.clone()))
        .collect();
    let results = match store.sql().batch(&refs, true) {
        Ok(r) => r,
        Err(e) if e.message.contains("kv_check_failed") => return Ok(Outcome::CheckFailed),
        Err(e) => {
            let what = statement_index(&e.message)
                .and_then(|i| about.get(i))
                .cloned()
                .unwrap_or_default();
            let reason = if e.message.contains("kv_not_integer") {
                "sum, min and max need the current value to be an integer"
            } else if e.message.contains("kv_overflow") {
                "the sum overflows a 64-bit integer"
            } else if e.message.contains("kv_not_array") {
                "append and prepend need the current value to be an array"
            } else if e.message.contains("kv_too_large") {
                return Err(Failure(
                    413,
                    "VALUE_TOO_LARGE",
                    format!(
                        "{what}: the value would grow past {} bytes of JSON (config `maxValueBytes`); nothing was written",
                        max_value_bytes()
                    ),
                ));
            } else {
                return Err(e.into());
            };
            return Err(Failure(
                400,
                "INVALID_MUTATION",
                format!("{what}: {reason}; nothing was written"),
            ));
        }
    };
    let version = results
        .last()
        .and_then(|r| r["rows"][0][0].as_i64())
        .unwrap_or(0);
    let mut found: Vec<Entry> = Vec::new();
    if !written.is_empty()
        && let Some(rows) = results
            .get(results.len() - 2)
            .and_then(|r| r["rows"].as_array())
    {
        found = rows
            .iter()
            .filter_map(|r| r.as_array().map(|cells| entry_of(cells)))
            .collect();
    }
    let changes = written
        .into_iter()
        .map(|k| {
            let e = found.iter().find(|e| e.key == k).cloned();
            (k, e)
        })
        .collect();
    Ok(Outcome::Committed {
        versionstamp: version,
        changes,
    })
}

/// An integer operand as stored when the key is absent.
fn operand_text(n: i64, tagged: bool) -> String {
    if tagged {
        tagged_bigint(n)
    } else {
        n.to_string()
    }
}

/// `statement N:` in a host error (1-based) → a 0-based index.
fn statement_index(message: &str) -> Option<usize> {
    let rest = message.split("statement ").nth(1)?;
    let n: usize = rest.split(':').next()?.trim().parse().ok()?;
    n.checked_sub(1)
}

/// Parses the JSON body of `POST /api/atomic` (also used by the `kv`
/// service): `body` as a tree for its structure, `raw` for the values, which
/// are stored as the text sent.
pub fn parse(body: &Value, raw: &RawValues<'_>) -> Result<(Vec<Check>, Vec<Mutation>), Failure> {
    let mut checks = Vec::new();
    for (i, c) in body["checks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let key = keys::from_json(&c["key"])
            .map_err(|e| Failure::bad(format!("checks[{i}].key: {e}")))?;
        let versionstamp = match &c["versionstamp"] {
            Value::Null => None,
            Value::String(s) => Some(parse_versionstamp(s)?),
            other => {
                return Err(Failure::bad(format!(
                    "checks[{i}].versionstamp: a string or null, found {other}"
                )));
            }
        };
        checks.push(Check {
            key: keys::encode(&key),
            versionstamp,
        });
    }
    let mut mutations = Vec::new();
    for (i, m) in body["mutations"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let at = |e: String| Failure::bad(format!("mutations[{i}]: {e}"));
        let key = keys::encode(&keys::from_json(&m["key"]).map_err(|e| at(format!("key: {e}")))?);
        let kind = m["type"].as_str().unwrap_or("");
        let int = || integer_operand(&m["value"]).map_err(&at);
        // The value as sent; a tree only for an explicit `null`, which has
        // no raw member.
        let text = || {
            raw.mutation(i)
                .or_else(|| m.get("value").map(Value::to_string))
        };
        mutations.push(match kind {
            "set" => Mutation::Set {
                key,
                value: text().ok_or_else(|| at("`set` needs `value`".into()))?,
                expire_in: expire_in(m.get("expiresIn").or_else(|| m.get("expireIn")))
                    .map_err(&at)?,
            },
            "delete" => Mutation::Delete { key },
            "sum" => {
                let (by, tagged) = int()?;
                Mutation::Sum { key, by, tagged }
            }
            "min" | "max" => {
                let (with, tagged) = int()?;
                if kind == "min" {
                    Mutation::Min { key, with, tagged }
                } else {
                    Mutation::Max { key, with, tagged }
                }
            }
            "append" | "prepend" => {
                let Value::Array(_) = &m["value"] else {
                    return Err(at(format!("`{kind}` takes an array `value`")));
                };
                let items = text().unwrap_or_else(|| m["value"].to_string());
                if kind == "append" {
                    Mutation::Append { key, items }
                } else {
                    Mutation::Prepend { key, items }
                }
            }
            other => {
                return Err(at(format!(
                    "unknown mutation type `{other}` (set, delete, sum, min, max, append, prepend)"
                )));
            }
        });
    }
    if mutations.is_empty() && checks.is_empty() {
        return Err(Failure::bad("a commit needs `checks` and/or `mutations`"));
    }
    Ok((checks, mutations))
}

/// `expiresIn` in milliseconds (positive), if given.
pub fn expire_in(v: Option<&Value>) -> Result<Option<i64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(n) => match n.as_i64() {
            Some(ms) if ms > 0 => Ok(Some(ms)),
            _ => Err(format!(
                "`expiresIn` is a positive number of milliseconds, found {n}"
            )),
        },
    }
}
