//! Full-text indexes over the values under a key prefix (SQLite FTS5).
//!
//! An index is an FTS5 table plus triggers on `kv_entries`, so every write
//! under the prefix is indexed inside its own transaction — no separate
//! indexing step that could miss a write. The only client text that reaches
//! DDL is checked first: field paths must be dotted identifiers
//! ([`crate::filter::valid_field`]) and the tokenizer one of a fixed list;
//! the prefix is embedded as a hex blob literal.

use serde_json::{Value, json};

use crate::Failure;
use crate::filter;
use crate::keys;
use crate::store::{EntryOut, LIVE, NOW_MS, Store, blob, entry_of, key_json, prefix_end, unblob};

/// The tokenizers an index may use.
pub const TOKENIZERS: [&str; 4] = ["unicode61", "porter", "ascii", "trigram"];
/// Most fields in one index.
const MAX_FIELDS: usize = 16;
/// Most indexes per tenant unless the `maxIndexes` config says otherwise.
const DEFAULT_MAX_INDEXES: u64 = 16;

/// The most indexes one tenant (or the root) may have: config `maxIndexes`.
fn max_indexes() -> u64 {
    buntime_pdk::plugin::config("maxIndexes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_INDEXES)
}

/// `POST /indexes {prefix, options: {fields, tokenize}}`.
pub fn create(
    store: &Store,
    prefix: &[u8],
    fields: &[String],
    tokenize: &str,
) -> Result<Value, Failure> {
    if fields.is_empty() || fields.len() > MAX_FIELDS {
        return Err(Failure::bad(format!(
            "an index needs 1 to {MAX_FIELDS} `fields`"
        )));
    }
    for f in fields {
        if !filter::valid_field(f) {
            return Err(Failure::bad(format!(
                "`{f}` is not a field path: use names of letters, digits and `_` joined by `.`"
            )));
        }
    }
    if !TOKENIZERS.contains(&tokenize) {
        return Err(Failure::bad(format!(
            "`{tokenize}` is not a tokenizer; use one of {}",
            TOKENIZERS.join(", ")
        )));
    }
    let exists = store
        .sql()
        .query("SELECT 1 FROM kv_indexes WHERE prefix = ?", &[blob(prefix)])?;
    if !exists.rows.is_empty() {
        return Err(Failure(
            409,
            "CONFLICT",
            "an index on this prefix exists; delete it first".into(),
        ));
    }
    // Counted again inside the insert, so two creations cannot both pass.
    let max = max_indexes();
    let added = store.sql().execute(
        &format!(
            "INSERT INTO kv_indexes (prefix, fields, tokenize, created_at) \
             SELECT ?, ?, ?, {NOW_MS} WHERE (SELECT count(*) FROM kv_indexes) < ?"
        ),
        &[
            blob(prefix),
            json!(Value::from(fields.to_vec()).to_string()),
            json!(tokenize),
            json!(max),
        ],
    )?;
    if added.rows_affected == 0 {
        return Err(Failure(
            429,
            "TOO_MANY_INDEXES",
            format!(
                "this tenant has {max} full-text indexes, the most allowed; delete one \
                 (DELETE /indexes?prefix=…) or raise the plugin's `maxIndexes` config"
            ),
        ));
    }
    let id = added.last_insert_id;
    let t = format!("kv_fts_{id}");
    let cols: Vec<String> = (0..fields.len()).map(|i| format!("f{i}")).collect();
    let extracts: Vec<String> = fields
        .iter()
        .map(|f| format!("json_extract(new.value, '$.{f}')"))
        .collect();
    let lo = keys::hex(prefix);
    let hi = keys::hex(&prefix_end(prefix));
    let when = |row: &str| format!("{row}.key > X'{lo}' AND {row}.key < X'{hi}'");
    let insert = format!(
        "INSERT INTO {t}_keys (key) VALUES (new.key); \
         INSERT INTO {t} (rowid, {}) VALUES ((SELECT rid FROM {t}_keys WHERE key = new.key), {});",
        cols.join(", "),
        extracts.join(", ")
    );
    let remove = format!(
        "DELETE FROM {t} WHERE rowid = (SELECT rid FROM {t}_keys WHERE key = old.key); \
         DELETE FROM {t}_keys WHERE key = old.key;"
    );
    let ddl = [
        format!(
            "CREATE VIRTUAL TABLE {t} USING fts5({}, tokenize = '{tokenize}')",
            cols.join(", ")
        ),
        format!(
            "CREATE TABLE {t}_keys (rid INTEGER PRIMARY KEY AUTOINCREMENT, key BLOB NOT NULL UNIQUE)"
        ),
        format!(
            "CREATE TRIGGER {t}_ai AFTER INSERT ON kv_entries WHEN {} BEGIN {insert} END",
            when("new")
        ),
        format!(
            "CREATE TRIGGER {t}_ad AFTER DELETE ON kv_entries WHEN {} BEGIN {remove} END",
            when("old")
        ),
        format!(
            "CREATE TRIGGER {t}_au AFTER UPDATE ON kv_entries WHEN {} BEGIN {remove} {insert} END",
            when("new")
        ),
        // Index what is already there.
        format!(
            "INSERT INTO {t}_keys (key) SELECT key FROM kv_entries WHERE key > X'{lo}' AND key < X'{hi}' ORDER BY key"
        ),
        format!(
            "INSERT INTO {t} (rowid, {}) SELECT m.rid, {} FROM {t}_keys m JOIN kv_entries new ON new.key = m.key",
            cols.join(", "),
            extracts.join(", ")
        ),
    ];
    let statements: Vec<(&str, Vec<Value>)> = ddl.iter().map(|s| (s.as_str(), vec![])).collect();
    if let Err(e) = store.sql().batch(&statements, true) {
        let _ = store
            .sql()
            .execute("DELETE FROM kv_indexes WHERE id = ?", &[json!(id)]);
        return Err(e.into());
    }
    Ok(json!({ "ok": true, "prefix": key_json(prefix), "fields": fields, "tokenize": tokenize }))
}

/// `GET /indexes`: an array, as the original answers it.
pub fn list(store: &Store) -> Result<Value, Failure> {
    let rows = store.sql().query(
        "SELECT prefix, fields, tokenize, created_at FROM kv_indexes ORDER BY prefix",
        &[],
    )?;
    let items: Vec<Value> = rows
        .rows
        .iter()
        .map(|r| {
            json!({
                "prefix": key_json(&unblob(&r[0])),
                "fields": serde_json::from_str::<Value>(r[1].as_str().unwrap_or("[]")).unwrap_or(Value::Null),
                "tokenize": r[2],
                "createdAt": r[3],
            })
        })
        .collect();
    Ok(Value::Array(items))
}

fn index_id(store: &Store, prefix: &[u8]) -> Result<i64, Failure> {
    let rows = store.sql().query(
        "SELECT id FROM kv_indexes WHERE prefix = ?",
        &[blob(prefix)],
    )?;
    rows.rows
        .first()
        .and_then(|r| r[0].as_i64())
        .ok_or_else(|| {
            Failure(
                404,
                "NOT_FOUND",
                format!("no index on prefix {}", key_json(prefix)),
            )
        })
}

/// `DELETE /indexes?prefix=`.
pub fn delete(store: &Store, prefix: &[u8]) -> Result<Value, Failure> {
    let id = index_id(store, prefix)?;
    let t = format!("kv_fts_{id}");
    let drops = [
        format!("DROP TRIGGER IF EXISTS {t}_ai"),
        format!("DROP TRIGGER IF EXISTS {t}_ad"),
        format!("DROP TRIGGER IF EXISTS {t}_au"),
        format!("DROP TABLE IF EXISTS {t}"),
        format!("DROP TABLE IF EXISTS {t}_keys"),
        format!("DELETE FROM kv_indexes WHERE id = {id}"),
    ];
    let statements: Vec<(&str, Vec<Value>)> = drops.iter().map(|s| (s.as_str(), vec![])).collect();
    store.sql().batch(&statements, true)?;
    Ok(json!({ "ok": true }))
}

/// `search(prefix, query, {limit, where})`: entries under an indexed prefix
/// matching an FTS5 query, best first.
pub fn search(
    store: &Store,
    prefix: &[u8],
    query: &str,
    limit: i64,
    filter: Option<&Value>,
) -> Result<Vec<EntryOut>, Failure> {
    if query.trim().is_empty() {
        return Err(Failure::bad("`query` is empty"));
    }
    let id = index_id(store, prefix)?;
    let t = format!("kv_fts_{id}");
    let mut params = vec![json!(query)];
    let mut extra = String::new();
    if let Some(f) = filter {
        let c = filter::compile(f).map_err(Failure::bad)?;
        extra = format!(" AND ({})", c.sql);
        params.extend(c.params);
    }
    params.push(json!(limit));
    let sql = format!(
        "SELECT e.key, e.value, e.versionstamp FROM {t} f JOIN {t}_keys m ON m.rid = f.rowid \
         JOIN kv_entries e ON e.key = m.key WHERE {t} MATCH ? AND {LIVE}{extra} ORDER BY f.rank LIMIT ?"
    );
    let rows = store.sql().query(&sql, &params).map_err(|e| {
        if !query_error(&e.message) {
            return e.into();
        }
        let hint = if e.message.contains("no such column") {
            " (a column filter names an index column: f0 for the first of `fields`, f1 for the second, …)"
        } else {
            ""
        };
        Failure::bad(format!(
            "the search query is not valid FTS5 syntax: {}{hint}",
            e.message
        ))
    })?;
    Ok(rows.rows.iter().map(|r| entry_of(r).out()).collect())
}

/// Whether a failed search is the client's FTS5 query (the only client text
/// in the statement: the filter is bound parameters and checked paths).
/// SQLite reports query errors as `fts5: syntax error near …`, `unterminated
/// string`, `no such column: x` (a column filter) or `unknown special query`.
fn query_error(message: &str) -> bool {
    [
        "fts5",
        "syntax error",
        "unterminated string",
        "no such column",
        "unknown special query",
    ]
    .iter()
    .any(|m| message.contains(m))
}
