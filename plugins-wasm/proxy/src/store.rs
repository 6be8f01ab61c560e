//! Where the dynamic rules live: one row of the `sql` database `default`
//! (table `proxy_rules`), the list as JSON with a version that every write
//! bumps, so they survive restarts and a write is a compare-and-swap.
//!
//! After a write commits, the list is installed as the route table under
//! its new version (`guest::install`): the host holds the one table every
//! request is matched against, whichever instance wrote it.

use std::cell::Cell;

use buntime_pdk::Error;
use buntime_pdk::plugin::sql;
use serde_json::{Value, json};

use crate::rules::RuleSpec;

/// The database the rules are kept in.
const DB: &str = "default";

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS proxy_rules (\
    k INTEGER PRIMARY KEY CHECK (k = 1), version INTEGER NOT NULL, body TEXT NOT NULL)";

thread_local! {
    /// Whether this instance has made sure the table exists.
    static READY: Cell<bool> = const { Cell::new(false) };
}

/// A storage failure, naming where.
fn failed(e: &buntime_pdk::abi::HostErrorBody) -> Error {
    Error::msg(format!(
        "proxy rules store (sql database `{DB}`, table `proxy_rules`): {}: {}",
        e.code, e.message
    ))
}

/// Creates the table once per instance.
fn ensure() -> Result<(), Error> {
    if READY.with(Cell::get) {
        return Ok(());
    }
    sql::execute(DB, SCHEMA, &[]).map_err(|e| failed(&e))?;
    READY.with(|r| r.set(true));
    Ok(())
}

/// The stored rules and the version they were read at (0: none stored).
pub(crate) fn load() -> Result<(Vec<RuleSpec>, u64), Error> {
    ensure()?;
    let rows = sql::query(DB, "SELECT version, body FROM proxy_rules WHERE k = 1", &[])
        .map_err(|e| failed(&e))?;
    let Some(row) = rows.rows.first() else {
        return Ok((Vec::new(), 0));
    };
    let version = row.first().and_then(Value::as_u64).unwrap_or(0);
    let body = row.get(1).and_then(Value::as_str).unwrap_or("[]");
    let list = serde_json::from_str(body).map_err(|e| {
        Error::msg(format!(
            "proxy rules store: the stored list is not a list of rules: {e}"
        ))
    })?;
    Ok((list, version))
}

/// Writes `list` if the stored version is still `version`; whether it did.
pub(crate) fn swap(version: u64, list: &[RuleSpec]) -> Result<bool, Error> {
    ensure()?;
    let body = serde_json::to_string(list).map_err(|e| Error::msg(e.to_string()))?;
    let done = if version == 0 {
        sql::execute(
            DB,
            "INSERT INTO proxy_rules (k, version, body) VALUES (1, 1, ?) ON CONFLICT(k) DO NOTHING",
            &[json!(body)],
        )
    } else {
        sql::execute(
            DB,
            "UPDATE proxy_rules SET version = version + 1, body = ? WHERE k = 1 AND version = ?",
            &[json!(body), json!(version)],
        )
    }
    .map_err(|e| failed(&e))?;
    Ok(done.rows_affected == 1)
}
