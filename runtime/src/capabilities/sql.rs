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
//!
//! Every statement function also takes `"tenant"`: the tenant's own database
//! (a separate file, so tenants are isolated by construction). Tenant ids are
//! 1 to 64 letters, digits, `-` and `_`; the grant for `db` covers its tenants.
//!
//! Errors name the database and, in a batch, the statement's position.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rusqlite::types::{Value as SqlValue, ValueRef};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::events::TopicPattern;
use super::state::no_context;
use super::{Capability, CapabilitySpec, GrantContext, GrantValue, string_list};
use crate::wasm::{HostError, HostFunction, ResultEncoding};

/// Longest a statement (or a whole batch) may run.
pub(super) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most rows one query returns.
pub(super) const MAX_ROWS: usize = 10_000;

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
            function("sql_query", query_op),
            function("sql_execute", execute_op),
            function("sql_batch", batch_op),
            function("sql_tenant_create", tenant_create_op),
            function("sql_tenant_list", tenant_list_op),
            function("sql_tenant_delete", tenant_delete_op),
        ]
    }
}

/// What each `sql_*` function does with its JSON argument.
type SqlOp = fn(Arc<SqlDatabases>, Vec<u8>) -> Result<SqlJob, HostError>;

fn query_op(dbs: Arc<SqlDatabases>, req: Vec<u8>) -> Result<SqlJob, HostError> {
    let r: Statement = parse(&req)?;
    dbs.run(
        &target(&r.db, r.tenant.as_deref()),
        move |conn, deadline| query(conn, &r.sql, &r.params, deadline),
    )
}

fn execute_op(dbs: Arc<SqlDatabases>, req: Vec<u8>) -> Result<SqlJob, HostError> {
    let r: Statement = parse(&req)?;
    dbs.run(&target(&r.db, r.tenant.as_deref()), move |conn, _| {
        execute(conn, &r.sql, &r.params)
    })
}

fn batch_op(dbs: Arc<SqlDatabases>, req: Vec<u8>) -> Result<SqlJob, HostError> {
    let r: Batch = parse(&req)?;
    dbs.run(
        &target(&r.db, r.tenant.as_deref()),
        move |conn, deadline| batch(conn, &r, deadline),
    )
}

fn tenant_create_op(dbs: Arc<SqlDatabases>, req: Vec<u8>) -> Result<SqlJob, HostError> {
    let r: TenantReq = parse(&req)?;
    let name = target(&r.db, Some(&r.tenant));
    let path = dbs.path(&name)?;
    Ok(Box::new(move || {
        let existed = path.exists();
        let conn = dbs.open_or_create(&name, true)?;
        dbs.release(&name, conn);
        Ok(json!({ "created": !existed }))
    }))
}

fn tenant_list_op(dbs: Arc<SqlDatabases>, req: Vec<u8>) -> Result<SqlJob, HostError> {
    let r: TenantReq = parse(&req)?;
    let dir = dbs.tenant_dir(&r.db)?;
    Ok(Box::new(move || {
        let mut tenants: Vec<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".db")
                    .map(str::to_owned)
            })
            .collect();
        tenants.sort();
        Ok(json!(tenants))
    }))
}

fn tenant_delete_op(dbs: Arc<SqlDatabases>, req: Vec<u8>) -> Result<SqlJob, HostError> {
    let r: TenantReq = parse(&req)?;
    let name = target(&r.db, Some(&r.tenant));
    let path = dbs.path(&name)?;
    Ok(Box::new(move || {
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
struct Batch {
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
/// runs `op` on the blocking pool.
fn function(name: &'static str, op: SqlOp) -> HostFunction {
    HostFunction::new(
        name,
        Capability::SQL,
        1,
        ResultEncoding::Envelope,
        move |state, args| {
            let prepared = (|| {
                let cx = state.context().ok_or_else(no_context)?.clone();
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
                let dbs = cx.host.sql.clone().ok_or_else(no_context)?;
                op(dbs, input)
            })();
            Box::pin(async move {
                let job = prepared?;
                let out = tokio::task::spawn_blocking(job).await.map_err(|_| {
                    HostError::new("internal", "the database task was interrupted")
                })??;
                serde_json::to_vec(&out)
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantReq {
    db: String,
    #[serde(default)]
    tenant: String,
}

/// The database a request addresses: `db`, or tenant `t` of it as `db/t`.
fn target(db: &str, tenant: Option<&str>) -> String {
    match tenant {
        Some(t) => format!("{db}/{t}"),
        None => db.to_owned(),
    }
}

/// Work for the blocking pool.
type SqlJob = Box<dyn FnOnce() -> Result<Value, HostError> + Send>;

/// The named databases of a server.
///
/// ```
/// use buntime::capabilities::SqlDatabases;
/// let dir = tempfile::tempdir().unwrap();
/// let dbs = SqlDatabases::new(dir.path());
/// assert!(dbs.path("default").unwrap().ends_with("default.db"));
/// assert!(dbs.path("../etc").is_err());
/// ```
#[derive(Debug)]
pub struct SqlDatabases {
    dir: PathBuf,
    named: HashMap<String, PathBuf>,
    idle: Mutex<HashMap<String, Vec<rusqlite::Connection>>>,
}

impl SqlDatabases {
    /// Databases as files in `dir` (`<name>.db`).
    pub fn new(dir: &Path) -> Arc<Self> {
        Arc::new(Self {
            dir: dir.to_owned(),
            named: HashMap::new(),
            idle: Mutex::default(),
        })
    }

    /// The file of database `name`: a configured path, or `<dir>/<name>.db`.
    /// Names are letters, digits, `-` and `_` (so a name cannot leave the dir).
    /// A tenant's database is `db/tenant`, the file `<dir>/<db>.tenants/<tenant>.db`.
    pub fn path(&self, name: &str) -> Result<PathBuf, HostError> {
        if let Some((db, tenant)) = name.split_once('/') {
            valid_name(tenant, "tenant id")?;
            return Ok(self.tenant_dir(db)?.join(format!("{tenant}.db")));
        }
        if let Some(p) = self.named.get(name) {
            return Ok(p.clone());
        }
        valid_name(name, "database name")?;
        Ok(self.dir.join(format!("{name}.db")))
    }

    /// The directory of `db`'s tenant databases.
    fn tenant_dir(&self, db: &str) -> Result<PathBuf, HostError> {
        valid_name(db, "database name")?;
        Ok(self.dir.join(format!("{db}.tenants")))
    }

    fn open(&self, name: &str) -> Result<rusqlite::Connection, HostError> {
        // A database is created on first use; a tenant's only by `sql_tenant_create`.
        self.open_or_create(name, !name.contains('/'))
    }

    fn open_or_create(&self, name: &str, create: bool) -> Result<rusqlite::Connection, HostError> {
        if let Some(c) = self
            .idle
            .lock()
            .ok()
            .and_then(|mut m| m.get_mut(name)?.pop())
        {
            return Ok(c);
        }
        let path = self.path(name)?;
        if !create && !path.exists() {
            let (db, tenant) = name.split_once('/').unwrap_or((name, ""));
            return Err(HostError::new(
                "not_found",
                format!(
                    "tenant `{tenant}` of database `{db}` does not exist; create it with sql_tenant_create"
                ),
            ));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                HostError::new(
                    "unavailable",
                    format!("database `{name}`: cannot create {}: {e}", parent.display()),
                )
            })?;
        }
        let conn = rusqlite::Connection::open(&path)
            .map_err(|e| HostError::new("unavailable", format!("database `{name}`: {e}")))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.busy_timeout(STATEMENT_TIMEOUT))
            .map_err(|e| HostError::new("unavailable", format!("database `{name}`: {e}")))?;
        Ok(conn)
    }

    fn release(&self, name: &str, conn: rusqlite::Connection) {
        if let Ok(mut m) = self.idle.lock() {
            let list = m.entry(name.to_owned()).or_default();
            if list.len() < 8 {
                list.push(conn);
            }
        }
    }

    /// Prepares a job running `work` on a connection to `name` with a deadline.
    fn run(
        self: Arc<Self>,
        name: &str,
        work: impl FnOnce(&mut rusqlite::Connection, Instant) -> Result<Value, String> + Send + 'static,
    ) -> Result<SqlJob, HostError> {
        let name = name.to_owned();
        self.path(&name)?;
        Ok(Box::new(move || {
            let mut conn = self.open(&name)?;
            let deadline = Instant::now() + STATEMENT_TIMEOUT;
            conn.progress_handler(10_000, Some(move || Instant::now() > deadline));
            let result = work(&mut conn, deadline);
            conn.progress_handler(0, None::<fn() -> bool>);
            self.release(&name, conn);
            result.map_err(|m| HostError::new("sql_error", format!("database `{name}`: {m}")))
        }))
    }
}

/// 1 to 64 letters, digits, `-` and `_`: safe as a file name.
fn valid_name(name: &str, what: &str) -> Result<(), HostError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(HostError::invalid_argument(format!(
            "`{name}` is not a valid {what}: use 1 to 64 letters, digits, `-` and `_`"
        )))
    }
}

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

fn query(
    conn: &rusqlite::Connection,
    sql: &str,
    values: &[Value],
    deadline: Instant,
) -> Result<Value, String> {
    let values = params(values)?;
    let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
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
                    cells.push(row.get_ref(i).map(from_sql).map_err(|e| e.to_string())?);
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

fn execute(conn: &rusqlite::Connection, sql: &str, values: &[Value]) -> Result<Value, String> {
    let values = params(values)?;
    let changed = conn
        .execute(sql, rusqlite::params_from_iter(values.iter()))
        .map_err(|e| e.to_string())?;
    Ok(json!({ "rowsAffected": changed, "lastInsertId": conn.last_insert_rowid() }))
}

fn batch(conn: &mut rusqlite::Connection, b: &Batch, deadline: Instant) -> Result<Value, String> {
    let run = |conn: &rusqlite::Connection| -> Result<Vec<Value>, String> {
        let mut results = Vec::new();
        for (i, s) in b.statements.iter().enumerate() {
            let returns_rows = conn
                .prepare(&s.sql)
                .map(|st| st.column_count() > 0)
                .map_err(|e| format!("statement {}: {e}", i + 1))?;
            let r = if returns_rows {
                query(conn, &s.sql, &s.params, deadline)
            } else {
                execute(conn, &s.sql, &s.params)
            };
            results.push(r.map_err(|e| format!("statement {}: {e}", i + 1))?);
        }
        Ok(results)
    };
    if !b.transaction {
        return run(conn).map(Value::Array);
    }
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    let results = run(&tx)?; // dropping `tx` on error rolls back
    tx.commit().map_err(|e| e.to_string())?;
    Ok(Value::Array(results))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(dbs: &Arc<SqlDatabases>, op: SqlOp, req: Value) -> Result<Value, HostError> {
        op(dbs.clone(), req.to_string().into_bytes())?()
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
