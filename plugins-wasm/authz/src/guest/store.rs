//! The PAP's store: policies in one table of the `sql` database, and each
//! instance's compiled copy of them.
//!
//! Instances share no memory, so a write bumps a counter in the plugin's
//! `state` after its statement commits, and every decision first reads that
//! counter: an instance whose copy is older reloads and recompiles the
//! table, so a change holds for the very next request on every instance.

use std::cell::RefCell;
use std::rc::Rc;

use buntime_pdk::abi::HostErrorBody;
use buntime_pdk::plugin::{sql, state};
use serde_json::{Value, json};

use crate::guest::settings;
use crate::pdp::PolicySet;
use crate::policy::{Compiled, Policy};

/// The `state` key of the policy-table version.
const VERSION: &str = "policies.version";
/// The most policies the store holds.
pub const MAX_POLICIES: usize = 10_000;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS authz_policies (\
    id TEXT PRIMARY KEY, body TEXT NOT NULL, updated_at INTEGER NOT NULL) WITHOUT ROWID";

/// Inserts a policy or replaces its stored namesake.
const UPSERT: &str = "INSERT INTO authz_policies (id, body, updated_at) VALUES (?, ?, unixepoch()) \
    ON CONFLICT(id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at";

thread_local! {
    static READY: RefCell<bool> = const { RefCell::new(false) };
    static CACHE: RefCell<Option<(u64, Rc<PolicySet>)>> = const { RefCell::new(None) };
}

/// A store failure, for a message.
pub fn describe(e: &HostErrorBody) -> String {
    format!("policy store: {}: {}", e.code, e.message)
}

fn db() -> sql::Db<'static> {
    sql::Db::new(&settings().database)
}

/// Creates the table once per instance.
fn ensure() -> Result<(), HostErrorBody> {
    if READY.with(|r| *r.borrow()) {
        return Ok(());
    }
    db().execute(SCHEMA, &[])?;
    READY.with(|r| *r.borrow_mut() = true);
    Ok(())
}

fn bump() -> Result<(), HostErrorBody> {
    state::incr(VERSION, 1, None).map(|_| ())
}

/// Every stored policy, compiled; a stored policy that no longer compiles
/// is an error (failing closed rather than dropping a deny).
fn load() -> Result<Vec<Compiled>, String> {
    ensure().map_err(|e| describe(&e))?;
    let rows = db()
        .query(
            "SELECT id, body FROM authz_policies ORDER BY id LIMIT ?",
            &[json!(MAX_POLICIES)],
        )
        .map_err(|e| describe(&e))?;
    rows.rows
        .iter()
        .map(|row| {
            let id = row.first().and_then(Value::as_str).unwrap_or_default();
            let body = row.get(1).and_then(Value::as_str).unwrap_or_default();
            serde_json::from_str(body)
                .map_err(|e| e.to_string())
                .and_then(Policy::from_json)
                .and_then(Policy::compile)
                .map_err(|e| format!("stored policy `{id}` does not compile: {e}"))
        })
        .collect()
}

/// The policy set in force, reloaded when another instance changed it.
pub fn current() -> Result<Rc<PolicySet>, String> {
    let version = state::get::<u64>(VERSION)
        .map_err(|e| describe(&e))?
        .map_or(0, |(v, _)| v);
    if let Some(set) = CACHE.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|(v, _)| *v == version)
            .map(|(_, s)| s.clone())
    }) {
        return Ok(set);
    }
    let s = settings();
    let set = Rc::new(PolicySet::new(load()?, s.algorithm, s.default_effect));
    CACHE.with(|c| *c.borrow_mut() = Some((version, set.clone())));
    Ok(set)
}

/// Writes `policy` (insert or replace); whether it is new.
pub fn upsert(policy: &Policy) -> Result<bool, HostErrorBody> {
    ensure()?;
    let body = serde_json::to_string(policy).unwrap_or_default();
    let out = db().batch(
        &[
            (
                "SELECT COUNT(*) FROM authz_policies WHERE id = ?",
                vec![json!(policy.id)],
            ),
            (UPSERT, vec![json!(policy.id), json!(body)]),
        ],
        true,
    )?;
    bump()?;
    Ok(out
        .first()
        .and_then(|r| r["rows"][0][0].as_i64())
        .is_some_and(|n| n == 0))
}

/// Removes policy `id`; whether it existed.
pub fn delete(id: &str) -> Result<bool, HostErrorBody> {
    ensure()?;
    let done = db().execute("DELETE FROM authz_policies WHERE id = ?", &[json!(id)])?;
    bump()?;
    Ok(done.rows_affected > 0)
}

/// How many policies are stored.
pub fn count() -> Result<usize, HostErrorBody> {
    ensure()?;
    let rows = db().query("SELECT COUNT(*) FROM authz_policies", &[])?;
    Ok(rows
        .rows
        .first()
        .and_then(|r| r.first())
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize)
}

/// Writes the seed policies: into an empty store only, or each one over
/// its stored namesake.
pub fn seed(policies: &[Compiled], only_if_empty: bool) -> Result<usize, HostErrorBody> {
    ensure()?;
    if policies.is_empty() || (only_if_empty && count()? > 0) {
        bump()?;
        return Ok(0);
    }
    let bodies: Vec<(String, String)> = policies
        .iter()
        .map(|p| {
            (
                p.policy.id.clone(),
                serde_json::to_string(&p.policy).unwrap_or_default(),
            )
        })
        .collect();
    let statements: Vec<(&str, Vec<Value>)> = bodies
        .iter()
        .map(|(id, body)| (UPSERT, vec![json!(id), json!(body)]))
        .collect();
    db().batch(&statements, true)?;
    bump()?;
    Ok(policies.len())
}
