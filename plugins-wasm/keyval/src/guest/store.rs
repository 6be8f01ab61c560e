//! The SQL side: the schema, one [`Store`] per tenant, and reading entries.
//!
//! Everything lives in one SQLite database (the `database` config, default
//! `default`) or, for a tenant, that database's tenant file — so tenants are
//! isolated by construction. Time comes from SQLite (`unixepoch('subsec')`,
//! milliseconds), so every instance agrees on it.

use std::cell::RefCell;
use std::collections::HashSet;

use base64::Engine as _;
use buntime_pdk::plugin::{config, sql};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::Failure;
use crate::keys;

pub use crate::sqltime::{LIVE, NOW_MS};

/// The tables, created on first use of a database or tenant. `kv_guard`
/// aborts a transaction from inside SQL: inserting a non-null value into one
/// of its columns fails that column's named CHECK constraint, and the whole
/// batch rolls back (how atomic checks stay inside the write transaction).
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS kv_entries (key BLOB PRIMARY KEY, value TEXT NOT NULL, versionstamp INTEGER NOT NULL, expires_at INTEGER) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS kv_entries_expiry ON kv_entries(expires_at) WHERE expires_at IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS kv_meta (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO kv_meta (id, version) VALUES (1, 0)",
    "CREATE TABLE IF NOT EXISTS kv_guard (\
        check_failed INTEGER CONSTRAINT kv_check_failed CHECK (check_failed IS NULL), \
        not_integer INTEGER CONSTRAINT kv_not_integer CHECK (not_integer IS NULL), \
        overflow INTEGER CONSTRAINT kv_overflow CHECK (overflow IS NULL), \
        not_array INTEGER CONSTRAINT kv_not_array CHECK (not_array IS NULL))",
    // A table of its own (not a column of `kv_guard`) so databases made
    // before it existed get it from this `IF NOT EXISTS` too.
    "CREATE TABLE IF NOT EXISTS kv_guard_size (\
        too_large INTEGER CONSTRAINT kv_too_large CHECK (too_large IS NULL))",
    "CREATE TABLE IF NOT EXISTS kv_queue (id INTEGER PRIMARY KEY AUTOINCREMENT, value TEXT NOT NULL, \
        ready_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL, \
        backoff TEXT NOT NULL, keys_if_undelivered TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending', \
        locked_until INTEGER, last_error TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS kv_queue_ready ON kv_queue(status, ready_at)",
    "CREATE TABLE IF NOT EXISTS kv_dlq (id INTEGER PRIMARY KEY AUTOINCREMENT, original_id INTEGER NOT NULL, \
        value TEXT NOT NULL, error_message TEXT, attempts INTEGER NOT NULL, backoff TEXT NOT NULL, \
        keys_if_undelivered TEXT NOT NULL, original_created_at INTEGER NOT NULL, failed_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS kv_indexes (id INTEGER PRIMARY KEY AUTOINCREMENT, prefix BLOB NOT NULL UNIQUE, \
        fields TEXT NOT NULL, tokenize TEXT NOT NULL, created_at INTEGER NOT NULL)",
];

thread_local! {
    /// Databases whose schema this instance has ensured.
    static READY: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

/// Forgets which databases have their schema, so each is ensured again.
pub fn forget_ready() {
    READY.with(|r| r.borrow_mut().clear());
}

/// An entry as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The encoded key.
    pub key: Vec<u8>,
    /// The value's JSON text.
    pub value: String,
    /// Its versionstamp.
    pub versionstamp: i64,
}

/// An entry as the API answers it: `{"key", "value", "versionstamp"}`, the
/// value spliced in from its stored JSON text — never parsed into a tree and
/// printed again, so it reads back exactly as it was written (member order,
/// number spelling). An absent key has `value` and `versionstamp` null.
///
/// Build responses holding it with `Serialize` types, not `json!`: a
/// `json!` tree would parse the value (and sort its members).
#[derive(Debug, Serialize)]
pub struct EntryOut {
    /// The key's parts as JSON.
    pub key: Value,
    /// The stored value.
    pub value: Box<RawValue>,
    /// 20 hex digits; `None` for an absent key.
    pub versionstamp: Option<String>,
}

impl EntryOut {
    /// The entry of an absent key.
    pub fn absent(key: &[u8]) -> Self {
        Self {
            key: key_json(key),
            value: raw("null"),
            versionstamp: None,
        }
    }
}

/// A stored value's text as a [`RawValue`] (`null` if it is not JSON,
/// which the store never holds).
pub fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned())
        .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
}

/// An encoded key as JSON parts (`null` if it does not decode).
pub fn key_json(key: &[u8]) -> Value {
    keys::decode(key).map_or(Value::Null, |k| keys::to_json(&k))
}

impl Entry {
    /// The entry as the API answers it.
    pub fn out(&self) -> EntryOut {
        EntryOut {
            key: key_json(&self.key),
            value: raw(&self.value),
            versionstamp: Some(versionstamp(self.versionstamp)),
        }
    }
}

/// A versionstamp as clients see it: 20 hex digits, so text order is
/// numeric order.
pub fn versionstamp(v: i64) -> String {
    // By hand: `format!("{v:020x}")` was a twentieth of a list's cost in
    // the guest. Same output (the top four digits are always 0).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = v as u64;
    let mut out = [b'0'; 20];
    for digit in out.iter_mut().rev() {
        *digit = HEX[(n & 0xF) as usize];
        n >>= 4;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// Parses a versionstamp from a client.
pub fn parse_versionstamp(text: &str) -> Result<i64, Failure> {
    if text.len() == 20
        && let Ok(v) = i64::from_str_radix(text, 16)
    {
        return Ok(v);
    }
    Err(Failure::bad(format!(
        "`{text}` is not a versionstamp (20 hex digits, as returned by a write)"
    )))
}

/// A blob parameter.
pub fn blob(bytes: &[u8]) -> Value {
    json!({ "$blob": base64::engine::general_purpose::STANDARD.encode(bytes) })
}

/// Reads a blob cell.
pub fn unblob(v: &Value) -> Vec<u8> {
    v.get("$blob")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default()
}

/// The upper bound of a prefix range: every key under `prefix` is below it.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    end.push(0xFF);
    end
}

/// The keyval data of one tenant (or of the root, `tenant: None`).
#[derive(Debug, Clone)]
pub struct Store {
    db: String,
    /// The tenant, if any.
    pub tenant: Option<String>,
}

/// What a request does with a tenant's data: a read (or a delete) of a
/// tenant that does not exist is a 404 and creates nothing; a write creates
/// the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads, deletes, queue answers: the tenant must exist.
    Read,
    /// Writes that add data: set, atomic, enqueue, index creation.
    Write,
}

impl Store {
    /// The store for `tenant`, its schema ensured. A tenant seen for the
    /// first time is created by a [`Access::Write`]; for a read it must
    /// exist (404 otherwise, and nothing is created).
    pub fn open(tenant: Option<String>, access: Access) -> Result<Self, Failure> {
        let store = Self {
            db: config("database").unwrap_or_else(|| "default".into()),
            tenant,
        };
        let id = format!("{}/{}", store.db, store.tenant.as_deref().unwrap_or(""));
        if READY.with(|r| r.borrow().contains(&id)) {
            return Ok(store);
        }
        if let Some(t) = &store.tenant
            && access == Access::Write
        {
            sql::create_tenant(&store.db, t).map_err(|e| match e.code.as_str() {
                "limit_exceeded" => Failure(429, "TOO_MANY_TENANTS", e.message),
                _ => e.into(),
            })?;
        }
        let statements: Vec<(&str, Vec<Value>)> = SCHEMA.iter().map(|s| (*s, Vec::new())).collect();
        store.sql().batch(&statements, true).map_err(|e| {
            match (&store.tenant, e.code.as_str()) {
                (Some(t), "not_found") => Failure(
                    404,
                    "NOT_FOUND",
                    format!(
                        "tenant `{t}` does not exist: a tenant is created by its first write \
                         (PUT /keys, POST /atomic, POST /queue/enqueue, POST /indexes)"
                    ),
                ),
                _ => e.into(),
            }
        })?;
        READY.with(|r| r.borrow_mut().insert(id));
        Ok(store)
    }

    /// The database handle.
    pub fn sql(&self) -> sql::Db<'_> {
        sql::Db::new(&self.db).tenant(self.tenant.as_deref())
    }

    /// Runs a query returning `key, value, versionstamp` rows as entries.
    pub fn entries(&self, query: &str, params: &[Value]) -> Result<Vec<Entry>, Failure> {
        let rows = self.sql().query(query, params)?;
        Ok(rows.rows.iter().map(|r| entry_of(r)).collect())
    }

    /// The live entry at `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Entry>, Failure> {
        let q = format!("SELECT key, value, versionstamp FROM kv_entries WHERE key = ? AND {LIVE}");
        Ok(self.entries(&q, &[blob(key)])?.into_iter().next())
    }
}

/// An entry from a `key, value, versionstamp` row.
pub fn entry_of(row: &[Value]) -> Entry {
    Entry {
        key: row.first().map(unblob).unwrap_or_default(),
        value: row
            .get(1)
            .and_then(Value::as_str)
            .unwrap_or("null")
            .to_owned(),
        versionstamp: row.get(2).and_then(Value::as_i64).unwrap_or(0),
    }
}
