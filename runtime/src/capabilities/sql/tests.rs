//! Unit tests of the `sql` capability's request parsing and functions.

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
    let out = query_op(
        dbs.clone(),
        json!({"db": "default", "sql": slow})
            .to_string()
            .into_bytes(),
    )
    .unwrap()
    .run(|full| full())
    .unwrap();
    assert_eq!(out["rows"], json!([[300000]]));
    assert!(started.elapsed() < STATEMENT_TIMEOUT);
    // A statement that writes declines the inline attempt and still runs.
    let insert = json!({"db": "default", "sql": "INSERT INTO t VALUES (1) RETURNING v"});
    let out = query_op(dbs.clone(), insert.to_string().into_bytes())
        .unwrap()
        .run(|full| full())
        .unwrap();
    assert_eq!(out["rows"], json!([[1]]));
    // A read that fails inline is run again the blocking way, which
    // reports the error as always.
    let bad = json!({"db": "default", "sql": "SELECT nope FROM t"});
    let err = query_op(dbs.clone(), bad.to_string().into_bytes())
        .unwrap()
        .run(|full| full())
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
    job(
        &dbs,
        x,
        json!({"db": "default", "sql": "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)"}),
    )
    .unwrap();
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
    // The deadline is met in the step loop, which names the limit.
    assert_eq!(
        (err.code.as_str(), err.message),
        (
            "sql_error",
            format!(
                "database `default`: the statement ran past its {STATEMENT_TIMEOUT:?} limit and was stopped"
            )
        )
    );
    assert!(started.elapsed() < STATEMENT_TIMEOUT + Duration::from_secs(2));
}
