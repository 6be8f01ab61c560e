//! Running statements: JSON values to SQLite and back, queries, executes and
//! batches (atomic in a transaction).

use std::time::Instant;

use base64::Engine as _;
use rusqlite::types::{Value as SqlValue, ValueRef};
use serde_json::{Map, Value, json};

use super::{Batch, MAX_RESULT_BYTES, MAX_ROWS, STATEMENT_TIMEOUT, WriteLock, guard};

fn to_sql(v: &Value) -> Result<SqlValue, String> {
    Ok(match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().ok_or("a number out of range")?),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Object(o) if o.len() == 1 && o.contains_key("$blob") => {
            let text = o["$blob"].as_str().ok_or("`$blob` must be base64 text")?;
            SqlValue::Blob(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("`$blob` is not base64: {e}"))?,
            )
        }
        other => {
            return Err(format!(
                "{other} is not a SQL value (null, number, string or {{\"$blob\"}})"
            ));
        }
    })
}

fn from_sql(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => {
            let mut m = Map::new();
            m.insert(
                "$blob".into(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            );
            Value::Object(m)
        }
    }
}

fn params(values: &[Value]) -> Result<Vec<SqlValue>, String> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| to_sql(v).map_err(|e| format!("parameter {}: {e}", i + 1)))
        .collect()
}

fn timed_out(e: &rusqlite::Error, deadline: Instant) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::OperationInterrupted)
        || Instant::now() > deadline
}

/// Runs a statement that returns rows. `writer`: the lock to take if the
/// statement writes (`None` inside a batch, which holds it already).
pub(super) fn query(
    conn: &rusqlite::Connection,
    sql: &str,
    values: &[Value],
    deadline: Instant,
    writer: Option<&WriteLock>,
) -> Result<Value, String> {
    query_within(conn, sql, values, deadline, writer, &mut 0)
}

/// [`query`], with `spent` the bytes of text and blobs the job's earlier
/// statements returned: a batch shares one [`MAX_RESULT_BYTES`].
fn query_within(
    conn: &rusqlite::Connection,
    sql: &str,
    values: &[Value],
    deadline: Instant,
    writer: Option<&WriteLock>,
    spent: &mut usize,
) -> Result<Value, String> {
    let values = params(values)?;
    let mut stmt = conn.prepare_cached(sql).map_err(|e| e.to_string())?;
    let _turn = writer.filter(|_| !stmt.readonly()).map(WriteLock::hold);
    let columns: Vec<String> = stmt
        .column_names()
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    let n = columns.len();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(values.iter()))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    loop {
        match rows.next() {
            Ok(Some(row)) => {
                if out.len() >= MAX_ROWS {
                    return Err(format!(
                        "the query returns more than {MAX_ROWS} rows; add LIMIT"
                    ));
                }
                let mut cells = Vec::with_capacity(n);
                for i in 0..n {
                    let cell = row.get_ref(i).map_err(|e| e.to_string())?;
                    *spent += match cell {
                        ValueRef::Text(b) | ValueRef::Blob(b) => b.len(),
                        _ => 8,
                    };
                    if *spent > MAX_RESULT_BYTES {
                        return Err(format!(
                            "the query returns more than {MAX_RESULT_BYTES} bytes; add LIMIT or select fewer columns"
                        ));
                    }
                    cells.push(from_sql(cell));
                }
                out.push(Value::Array(cells));
            }
            Ok(None) => break,
            Err(e) if timed_out(&e, deadline) => {
                return Err(format!(
                    "the statement ran past its {STATEMENT_TIMEOUT:?} limit and was stopped"
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(json!({ "columns": columns, "rows": out }))
}

/// Runs a statement that returns no rows; `writer` as for [`query`].
pub(super) fn execute(
    conn: &rusqlite::Connection,
    sql: &str,
    values: &[Value],
    writer: Option<&WriteLock>,
) -> Result<Value, String> {
    let values = params(values)?;
    let _turn = writer.map(WriteLock::hold);
    let changed = conn
        .prepare_cached(sql)
        .and_then(|mut st| st.execute(rusqlite::params_from_iter(values.iter())))
        .map_err(|e| e.to_string())?;
    Ok(json!({ "rowsAffected": changed, "lastInsertId": conn.last_insert_rowid() }))
}

pub(super) fn batch(
    conn: &mut rusqlite::Connection,
    b: &Batch,
    deadline: Instant,
    writer: &WriteLock,
) -> Result<Value, String> {
    let run = |conn: &rusqlite::Connection| -> Result<Vec<Value>, String> {
        let mut results = Vec::new();
        let mut spent = 0;
        for (i, s) in b.statements.iter().enumerate() {
            let returns_rows = conn
                .prepare_cached(&s.sql)
                .map(|st| st.column_count() > 0)
                .map_err(|e| format!("statement {}: {e}", i + 1))?;
            let r = if returns_rows {
                query_within(conn, &s.sql, &s.params, deadline, None, &mut spent)
            } else {
                execute(conn, &s.sql, &s.params, None)
            };
            results.push(r.map_err(|e| format!("statement {}: {e}", i + 1))?);
        }
        Ok(results)
    };
    // Writers take the database's write turn for the whole batch. (A
    // statement that cannot be prepared yet, e.g. over a table an earlier
    // statement creates, counts as a write.)
    let writes = b.statements.iter().any(|s| {
        conn.prepare_cached(&s.sql)
            .map_or(true, |st| !st.readonly())
    });
    let _turn = writes.then(|| writer.hold());
    if !b.transaction {
        return run(conn).map(Value::Array);
    }
    // A transaction that writes takes SQLite's write lock up front
    // (IMMEDIATE): a deferred one that reads first and writes later fails
    // with SQLITE_BUSY, without waiting, when another connection wrote
    // meanwhile.
    // The host's own transaction control, past the guard (which refuses
    // it to guests).
    let begin = if writes { "BEGIN IMMEDIATE" } else { "BEGIN" };
    guard::trusted(|| conn.execute_batch(begin)).map_err(|e| e.to_string())?;
    let results = run(conn).and_then(|results| {
        guard::trusted(|| conn.execute_batch("COMMIT"))
            .map(|()| results)
            .map_err(|e| e.to_string())
    });
    if results.is_err() && !conn.is_autocommit() {
        // If even this fails, the connection is not pooled again.
        let _ = guard::trusted(|| conn.execute_batch("ROLLBACK"));
    }
    results.map(Value::Array)
}
