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
use jobs::{InlineAttempt, SqlJob, run_blocking};
use statements::{batch, execute, query};

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

fn parse<T: for<'de> Deserialize<'de>>(input: &[u8]) -> Result<T, HostError> {
    serde_json::from_slice(input).map_err(|e| HostError::invalid_argument(e.to_string()))
}

/// An `sql_*` host function: checks the grant for the named database, then
/// runs `op` on the blocking pool; a statement function (`timed`: its cell
/// in [`SqlDatabases::durations`]) is timed from the call to the answer.
fn function(name: &'static str, op: SqlOp, timed: Option<usize>) -> HostFunction {
    HostFunction::new(
        name,
        Capability::SQL,
        1,
        ResultEncoding::Envelope,
        move |state, args| {
            let prepared = (|| {
                let cx = GuestContext::of(state)?;
                let input = state
                    .block(args[0])
                    .map_err(|e| HostError::invalid_argument(e.to_string()))?
                    .to_vec();
                let db: DbName = parse(&input)?;
                let granted = state
                    .grants()
                    .get::<SqlGrant>(Capability::SQL)
                    .is_some_and(|g| g.allows(&db.db));
                if !granted {
                    state.record_denial(Capability::SQL);
                    return Err(HostError::new(
                        "capability_denied",
                        format!(
                            "database `{}` is not granted; add it to the manifest's `capabilities`: {{\"sql\": [\"{}\"]}}",
                            db.db, db.db
                        ),
                    ));
                }
                // Under a traced request the statement is a client span.
                let span = SpanParent::of(&state.extensions).map(|parent| {
                    let text = serde_json::from_slice::<StatementText>(&input)
                        .ok()
                        .and_then(|t| t.sql);
                    parent.sql(state.guest_name(), name, &db.db, text)
                });
                let dbs = cx.host.sql.clone().ok_or_else(no_context)?;
                Ok((op(dbs.clone(), input)?, dbs, span))
            })();
            Box::pin(async move {
                let (job, dbs, span) = prepared?;
                let started = std::time::Instant::now();
                let out = run_blocking(job).await;
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
            })
        },
    )
}

/// `sql_databases`: the database names the caller may use.
fn databases_function() -> HostFunction {
    HostFunction::new(
        "sql_databases",
        Capability::SQL,
        0,
        ResultEncoding::Envelope,
        move |state, _| {
            let listed = (|| {
                let cx = GuestContext::of(state)?;
                let dbs = cx.host.sql.clone().ok_or_else(no_context)?;
                let grant = state.grants().get::<SqlGrant>(Capability::SQL).cloned();
                Ok::<_, HostError>((dbs, grant))
            })();
            Box::pin(async move {
                let (dbs, grant) = listed?;
                let names = tokio::task::spawn_blocking(move || dbs.names())
                    .await
                    .map_err(|_| HostError::new("internal", "the database task was interrupted"))?;
                let allowed: Vec<String> = names
                    .into_iter()
                    .filter(|n| grant.as_ref().is_some_and(|g| g.allows(n)))
                    .collect();
                serde_json::to_vec(&allowed)
                    .map(Some)
                    .map_err(|e| HostError::new("internal", e.to_string()))
            })
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
mod tests {
    use std::time::Instant;

    use super::*;

    fn job(dbs: &Arc<SqlDatabases>, op: SqlOp, req: Value) -> Result<Value, HostError> {
        op(dbs.clone(), req.to_string().into_bytes())?.run_here()
    }

    /// A quick read runs on the asking worker; one that outlasts
    /// [`INLINE_BUDGET`] is stopped there and finished the blocking way with
    /// the right answer; a read that writes is never tried inline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_run_inline_within_the_budget_and_finish_elsewhere_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = SqlDatabases::new(dir.path());
        job(
            &dbs,
            execute_op,
            json!({"db": "default", "sql": "CREATE TABLE t (v)"}),
        )
        .unwrap();
        let quick = |c: &rusqlite::Connection, d| Some(query(c, "SELECT 41 + 1", &[], d, None));
        assert_eq!(
            dbs.try_inline("default", quick).unwrap()["rows"],
            json!([[42]]),
            "an idle connection exists after the first job: the read ran inline"
        );
        // About a million steps: far past the budget, well within the timeout.
        let slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) SELECT count(*) FROM n";
        assert!(
            dbs.try_inline("default", |c, d| Some(query(c, slow, &[], d, None)))
                .is_none(),
            "stopped at the budget"
        );
        let started = Instant::now();
        let out = run_blocking(
            query_op(
                dbs.clone(),
                json!({"db": "default", "sql": slow})
                    .to_string()
                    .into_bytes(),
            )
            .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(out["rows"], json!([[300000]]));
        assert!(started.elapsed() < STATEMENT_TIMEOUT);
        // A statement that writes declines the inline attempt and still runs.
        let insert = json!({"db": "default", "sql": "INSERT INTO t VALUES (1) RETURNING v"});
        let out = run_blocking(query_op(dbs.clone(), insert.to_string().into_bytes()).unwrap())
            .await
            .unwrap();
        assert_eq!(out["rows"], json!([[1]]));
        // A read that fails inline is run again the blocking way, which
        // reports the error as always.
        let bad = json!({"db": "default", "sql": "SELECT nope FROM t"});
        let err = run_blocking(query_op(dbs.clone(), bad.to_string().into_bytes()).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.code, "sql_error");
        assert!(
            err.message
                .contains("database `default`: no such column: nope"),
            "{}",
            err.message
        );
    }

    #[test]
    fn typed_values_round_trip_and_batches_are_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = SqlDatabases::new(dir.path());
        let (q, x, b): (SqlOp, SqlOp, SqlOp) = (query_op, execute_op, batch_op);
        job(&dbs, x, json!({"db": "default", "sql": "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)"})).unwrap();
        job(
            &dbs,
            x,
            json!({"db": "default", "sql": "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
            "params": [7, 1.5, "text", {"$blob": "AAEC"}, null]}),
        )
        .unwrap();
        let rows = job(&dbs, q, json!({"db": "default", "sql": "SELECT * FROM t"})).unwrap();
        assert_eq!(rows["columns"], json!(["i", "r", "s", "b", "n"]));
        assert_eq!(
            rows["rows"],
            json!([[7, 1.5, "text", {"$blob": "AAEC"}, null]])
        );

        let err = job(
            &dbs,
            b,
            json!({"db": "default", "statements": [
                {"sql": "INSERT INTO t (i) VALUES (1)"},
                {"sql": "INSERT INTO nope VALUES (1)"},
            ]}),
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("database `default`: statement 2: no such table: nope"),
            "{}",
            err.message
        );
        let count = job(
            &dbs,
            q,
            json!({"db": "default", "sql": "SELECT count(*) FROM t"}),
        )
        .unwrap();
        assert_eq!(
            count["rows"],
            json!([[1]]),
            "the failed batch was rolled back"
        );
        assert!(dir.path().join("default.db").exists());
    }

    #[test]
    fn tenants_are_separate_databases_created_listed_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = SqlDatabases::new(dir.path());
        let (q, x): (SqlOp, SqlOp) = (query_op, execute_op);
        let missing = job(
            &dbs,
            q,
            json!({"db": "kv", "tenant": "acme", "sql": "SELECT 1"}),
        )
        .unwrap_err();
        assert_eq!(missing.code, "not_found");
        for t in ["acme", "globex"] {
            let r = job(&dbs, tenant_create_op, json!({"db": "kv", "tenant": t})).unwrap();
            assert_eq!(r["created"], true);
            job(
                &dbs,
                x,
                json!({"db": "kv", "tenant": t, "sql": "CREATE TABLE t (v TEXT)"}),
            )
            .unwrap();
        }
        job(
            &dbs,
            x,
            json!({"db": "kv", "tenant": "acme", "sql": "INSERT INTO t VALUES ('a')"}),
        )
        .unwrap();
        let other = job(
            &dbs,
            q,
            json!({"db": "kv", "tenant": "globex", "sql": "SELECT count(*) FROM t"}),
        )
        .unwrap();
        assert_eq!(
            other["rows"],
            json!([[0]]),
            "tenants do not see each other's rows"
        );
        assert_eq!(
            job(&dbs, tenant_list_op, json!({"db": "kv"})).unwrap(),
            json!(["acme", "globex"])
        );
        assert_eq!(
            job(
                &dbs,
                tenant_delete_op,
                json!({"db": "kv", "tenant": "acme"})
            )
            .unwrap()["deleted"],
            true
        );
        assert_eq!(
            job(&dbs, tenant_list_op, json!({"db": "kv"})).unwrap(),
            json!(["globex"])
        );
        let bad = job(
            &dbs,
            tenant_create_op,
            json!({"db": "kv", "tenant": "../x"}),
        )
        .unwrap_err();
        assert_eq!(bad.code, "invalid_argument");
        // A database name is checked on its own: with a `/` it is not a way
        // to name a tenant, and a bad one is reported as the database's.
        let slash = job(&dbs, q, json!({"db": "kv/globex", "sql": "SELECT 1"})).unwrap_err();
        assert_eq!(slash.code, "invalid_argument");
        assert!(
            slash
                .message
                .contains("`kv/globex` is not a valid database name"),
            "{}",
            slash.message
        );
        let bad_db = job(
            &dbs,
            tenant_create_op,
            json!({"db": "../x", "tenant": "ok"}),
        )
        .unwrap_err();
        assert!(
            bad_db
                .message
                .contains("`../x` is not a valid database name"),
            "{}",
            bad_db.message
        );
    }

    #[test]
    fn runaway_statements_stop_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = SqlDatabases::new(dir.path());
        let q: SqlOp = query_op;
        let started = Instant::now();
        let err = job(&dbs, q, json!({"db": "default",
            "sql": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"}))
        .unwrap_err();
        assert!(
            err.message.contains("limit") || err.message.contains("interrupt"),
            "{}",
            err.message
        );
        assert!(started.elapsed() < STATEMENT_TIMEOUT + Duration::from_secs(2));
    }
}
