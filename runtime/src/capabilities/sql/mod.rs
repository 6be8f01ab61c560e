//! `sql`: named SQLite databases in the host, by grant.
//!
//! Databases live in the host, not in guests: a plugin sends statements and
//! parameters, the host runs them on the blocking pool (never on an async
//! worker) with a statement deadline, and answers typed values. Each database
//! is a file in WAL mode; `default` always exists. Grant: `"sql": ["default"]`
//! (names, `*` and `?` wildcards).
//!
//! Values are JSON: `null`, integers, reals, strings (text), and
//! `{"$blob": "<base64>"}` for blobs — both ways.
//!
//! | function | input | result |
//! |---|---|---|
//! | `sql_query` | `{"db", "sql", "params"?}` | `{"columns": [...], "rows": [[...], ...]}` |
//! | `sql_execute` | `{"db", "sql", "params"?}` | `{"rowsAffected", "lastInsertId"}` |
//! | `sql_batch` | `{"db", "statements": [{"sql", "params"?}], "transaction"?: true}` | one result per statement (rows for statements that return columns); in a transaction, one failure rolls back all |
//! | `sql_tenant_create` | `{"db", "tenant"}` | `{"created"}` |
//! | `sql_tenant_list` | `{"db"}` | `["tenant", ...]` |
//! | `sql_tenant_delete` | `{"db", "tenant"}` | `{"deleted"}` |
//! | `sql_databases` | — | `["default", ...]`: the databases that exist or are configured and that the grant covers |
//!
//! Every statement function also takes `"tenant"`: the tenant's own database
//! (a separate file, so tenants are isolated by construction). Tenant ids are
//! 1 to 64 letters, digits, `-` and `_`; the grant for `db` covers its tenants.
//!
//! Statements stay within their database ([`guard`]: no `ATTACH`, no
//! extensions, no settings pragmas, nothing that outlives the call on a
//! pooled connection; refusals are `sql_denied`), and reads create nothing
//! ([`databases`]).
//!
//! Errors name the database and, in a batch, the statement's position.

mod databases;
mod guard;
mod jobs;
mod statements;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use databases::WriteLock;
pub use databases::{DEFAULT_MAX_TENANTS, STATEMENT_FUNCTIONS, SqlDatabases};
use jobs::INLINE_BUDGET;
use jobs::{InlineAttempt, SqlJob, run_now};
use statements::{batch, execute, query};

use super::args::{argument, parse};
use super::events::TopicPattern;
use super::state::no_context;
use super::{Capability, CapabilitySpec, GrantContext, GrantValue, string_list};
use crate::capabilities::GuestContext;
use crate::telemetry::SpanParent;
use crate::wasm::{HostError, HostFunction, ResultEncoding};

/// Longest a statement (or a whole batch) may run.
pub(super) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most rows one query returns.
pub(super) const MAX_ROWS: usize = 10_000;
/// Most bytes of text and blobs one query returns (before JSON and base64):
/// rows times the largest value would otherwise be far more than the host's
/// memory (`SELECT zeroblob(…)` over a recursive count).
pub(super) const MAX_RESULT_BYTES: usize = 64 << 20;

/// The `sql` capability.
pub(super) struct SqlSpec;

/// The databases a guest may use.
#[derive(Debug, Clone, Default)]
pub struct SqlGrant {
    /// Database-name patterns.
    pub databases: Vec<TopicPattern>,
}

impl SqlGrant {
    /// Whether `db` is granted.
    pub fn allows(&self, db: &str) -> bool {
        self.databases.iter().any(|p| p.matches(db))
    }
}

impl CapabilitySpec for SqlSpec {
    fn capability(&self) -> Capability {
        Capability::SQL
    }

    fn syntax(&self) -> &'static str {
        "\"sql\": [\"default\"] (database names, `*` and `?` wildcards)"
    }

    fn parse(&self, declared: &Value, _: &GrantContext<'_>) -> Result<Option<GrantValue>, String> {
        let names = string_list(declared, "`sql`")?;
        if names.is_empty() {
            return Ok(None);
        }
        let databases = names
            .iter()
            .map(|n| TopicPattern::parse(n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Arc::new(SqlGrant { databases })))
    }

    fn host_functions(&self) -> Vec<HostFunction> {
        vec![
            function("sql_query", query_op, Some(0)),
            function("sql_execute", execute_op, Some(1)),
            function("sql_batch", batch_op, Some(2)),
            function("sql_tenant_create", tenant_create_op, None),
            function("sql_tenant_list", tenant_list_op, None),
            function("sql_tenant_delete", tenant_delete_op, None),
            databases_function(),
        ]
    }
}

/// What each `sql_*` function does with its JSON argument.
type SqlOp = fn(Arc<SqlDatabases>, Vec<u8>) -> Result<SqlJob, HostError>;

fn query_op(dbs: Arc<SqlDatabases>, req: Vec<u8>) -> Result<SqlJob, HostError> {
    let r: Arc<Statement> = Arc::new(parse(&req)?);
    let name = target(&r.db, r.tenant.as_deref())?;
    let quick = {
        let (dbs, r, name) = (dbs.clone(), r.clone(), name.clone());
        Box::new(move || {
            dbs.try_inline(&name, |conn, deadline| {
                // Only reads: a write waits for the database's write turn
                // and may checkpoint the WAL, neither of which belongs on
                // an async worker.
                let readonly = conn.prepare_cached(&r.sql).ok()?.readonly();
                readonly.then(|| query(conn, &r.sql, &r.params, deadline, None))
            })
        }) as InlineAttempt
    };
    let full = dbs.run(&name, vec![r.sql.clone()], move |conn, deadline, writer| {
        query(conn, &r.sql, &r.params, deadline, Some(writer))
    })?;
    Ok(full.with_inline(quick))
}

fn execute_op(dbs: Arc<SqlDatabases>, req: Vec<u8>) -> Result<SqlJob, HostError> {
    let r: Statement = parse(&req)?;
    dbs.run(
        &target(&r.db, r.tenant.as_deref())?,
        vec![r.sql.clone()],
        move |conn, _, writer| execute(conn, &r.sql, &r.params, Some(writer)),
    )
}

fn batch_op(dbs: Arc<SqlDatabases>, req: Vec<u8>) -> Result<SqlJob, HostError> {
    let r: Batch = parse(&req)?;
    let statements = r.statements.iter().map(|s| s.sql.clone()).collect();
    dbs.run(
        &target(&r.db, r.tenant.as_deref())?,
        statements,
        move |conn, deadline, writer| batch(conn, &r, deadline, writer),
    )
}

fn tenant_create_op(dbs: Arc<SqlDatabases>, req: Vec<u8>) -> Result<SqlJob, HostError> {
    let r: TenantReq = parse(&req)?;
    let name = target(&r.db, Some(&r.tenant))?;
    let path = dbs.path(&name)?;
    Ok(SqlJob::new(move || {
        let existed = path.exists();
        if !existed {
            // Creation holds the database's write turn, so two creations
            // cannot both pass the count.
            let writer = dbs.writer(&r.db);
            let _turn = writer.hold();
            let count = dbs.tenants(&r.db)?.len();
            if count >= dbs.max_tenants && !path.exists() {
                return Err(HostError::new(
                    "limit_exceeded",
                    format!(
                        "database `{}` has {count} tenants, the most allowed; delete unused ones or raise RUNTIME_MAX_TENANTS (now {})",
                        r.db, dbs.max_tenants
                    ),
                ));
            }
            let conn = dbs.open_or_create(&name, true)?;
            dbs.release(&name, conn);
            return Ok(json!({ "created": true }));
        }
        let conn = dbs.open_or_create(&name, true)?;
        dbs.release(&name, conn);
        Ok(json!({ "created": !existed }))
    }))
}

fn tenant_list_op(dbs: Arc<SqlDatabases>, req: Vec<u8>) -> Result<SqlJob, HostError> {
    let r: TenantReq = parse(&req)?;
    dbs.tenant_dir(&r.db)?;
    Ok(SqlJob::new(move || {
        if !dbs.known(&r.db)? {
            return Err(HostError::new(
                "not_found",
                format!("database `{}` does not exist", r.db),
            ));
        }
        Ok(json!(dbs.tenants(&r.db)?))
    }))
}

fn tenant_delete_op(dbs: Arc<SqlDatabases>, req: Vec<u8>) -> Result<SqlJob, HostError> {
    let r: TenantReq = parse(&req)?;
    let name = target(&r.db, Some(&r.tenant))?;
    let path = dbs.path(&name)?;
    Ok(SqlJob::new(move || {
        if let Ok(mut idle) = dbs.idle.lock() {
            idle.remove(&name);
        }
        let existed = path.exists();
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
        Ok(json!({ "deleted": existed }))
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Statement {
    db: String,
    #[serde(default)]
    tenant: Option<String>,
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Batch {
    db: String,
    #[serde(default)]
    tenant: Option<String>,
    statements: Vec<BatchStatement>,
    #[serde(default = "yes")]
    transaction: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchStatement {
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
}

/// An `sql_*` host function: checks the grant for the named database, then
/// runs `op` ([`run_now`]); a statement function (`timed`: its cell in
/// [`SqlDatabases::durations`]) is timed from the call to the answer.
fn function(name: &'static str, op: SqlOp, timed: Option<usize>) -> HostFunction {
    HostFunction::new_sync(
        name,
        Capability::SQL,
        1,
        ResultEncoding::Envelope,
        move |state, args| {
            let cx = GuestContext::of(state)?;
            let input = argument(state, args[0])?.to_vec();
            let db: DbName = parse(&input)?;
            let granted = state
                .grants()
                .get::<SqlGrant>(Capability::SQL)
                .is_some_and(|g| g.allows(&db.db));
            if !granted {
                return Err(state.deny(
                    Capability::SQL,
                    name,
                    format!("database `{}` is not granted", db.db),
                    format!("\"sql\": [\"{}\"]", db.db),
                ));
            }
            // Under a traced request the statement is a client span.
            let span = SpanParent::with_current(|parent| {
                parent.map(|parent| {
                    let text = serde_json::from_slice::<StatementText>(&input)
                        .ok()
                        .and_then(|t| t.sql);
                    parent.sql(state.guest_name(), name, &db.db, text)
                })
            });
            let dbs = cx.host.sql.clone().ok_or_else(no_context)?;
            let job = op(dbs.clone(), input)?;
            let started = std::time::Instant::now();
            let out = run_now(state, job);
            if let Some(h) = timed.and_then(|i| dbs.durations.get(i)) {
                h.observe(started.elapsed());
            }
            if let Some(span) = span {
                span.end(out.as_ref().err().map(|e| ("sql_error", e.to_string())));
            }
            let out = out?;
            serde_json::to_vec(&out)
                .map(Some)
                .map_err(|e| HostError::new("internal", e.to_string()))
        },
    )
}

/// `sql_databases`: the database names the caller may use.
fn databases_function() -> HostFunction {
    HostFunction::new_sync(
        "sql_databases",
        Capability::SQL,
        0,
        ResultEncoding::Envelope,
        move |state, _| {
            let cx = GuestContext::of(state)?;
            let dbs = cx.host.sql.clone().ok_or_else(no_context)?;
            let grant = state.grants().get::<SqlGrant>(Capability::SQL).cloned();
            // A directory listing: file system work, like a statement's.
            let names = state.block_off_worker(move || dbs.names());
            let allowed: Vec<String> = names
                .into_iter()
                .filter(|n| grant.as_ref().is_some_and(|g| g.allows(n)))
                .collect();
            serde_json::to_vec(&allowed)
                .map(Some)
                .map_err(|e| HostError::new("internal", e.to_string()))
        },
    )
}

#[derive(Deserialize)]
struct DbName {
    db: String,
}

/// The statement of a single-statement call, for its span.
#[derive(Deserialize)]
struct StatementText {
    sql: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantReq {
    db: String,
    #[serde(default)]
    tenant: String,
}

/// The database a request addresses: `db`, or tenant `t` of it as `db/t`.
/// Both are checked here, so an error names the part that is wrong and a
/// `db` holding a `/` cannot pass for a tenant.
fn target(db: &str, tenant: Option<&str>) -> Result<String, HostError> {
    databases::valid_name(db, "database name")?;
    match tenant {
        Some(t) => {
            databases::valid_name(t, "tenant id")?;
            Ok(format!("{db}/{t}"))
        }
        None => Ok(db.to_owned()),
    }
}

#[cfg(test)]
mod tests;
