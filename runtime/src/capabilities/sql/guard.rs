//! What SQL from a guest may do on a connection of the `sql` capability.
//!
//! A grant names databases; the statements a guest sends must not reach
//! past them or change how the host keeps them. SQLite's own mechanisms
//! enforce that on every connection, whatever the caller (a plugin with a
//! `sql` grant, the database plugin's query route), with no parsing of SQL:
//!
//! - an **authorizer** refuses, while a statement is prepared: `ATTACH` and
//!   `DETACH` (and so `VACUUM`, which attaches a scratch database, and
//!   `VACUUM INTO`, which writes a new file); `load_extension()`; every
//!   `PRAGMA` outside [`READ_PRAGMAS`] and [`INSPECT_PRAGMAS`] (so durability
//!   settings, `writable_schema` and other connection state stay the
//!   host's); temporary tables, views, indexes and triggers, and `BEGIN`,
//!   `COMMIT`, `ROLLBACK` and `SAVEPOINT` — state that would outlive the call
//!   on a pooled connection and reach the next caller (a transaction is a
//!   `sql_batch`);
//! - **limits**: no attached databases at all (`SQLITE_LIMIT_ATTACHED` 0),
//!   strings and blobs of at most [`MAX_VALUE_BYTES`];
//! - **defensive mode** (`SQLITE_DBCONFIG_DEFENSIVE`: no `writable_schema`,
//!   no writes to shadow tables, no `journal_mode=OFF`), an untrusted schema
//!   (`SQLITE_DBCONFIG_TRUSTED_SCHEMA` off: functions with side effects never
//!   run from a view or trigger), and extension loading off.
//!
//! The host's own statements (opening a transaction for a batch, committing
//! it) run inside [`trusted`]. A refusal is recorded ([`take_denial`]), so the
//! error the guest sees says what was refused and why, not SQLite's bare
//! "not authorized".

use std::cell::{Cell, RefCell};

use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;

/// Largest string or blob a statement may make or bind (`SQLITE_LIMIT_LENGTH`),
/// in bytes: far above any value the core plugins store, far below what
/// would strain the host's memory.
pub(super) const MAX_VALUE_BYTES: i32 = 32 << 20;

/// Pragmas a guest may run only to read them (no `= value`, no argument):
/// the settings and counters a client may want to see.
pub(super) const READ_PRAGMAS: [&str; 12] = [
    "application_id",
    "data_version",
    "encoding",
    "foreign_keys",
    "freelist_count",
    "journal_mode",
    "page_count",
    "page_size",
    "schema_version",
    "synchronous",
    "user_version",
    "compile_options",
];

/// Pragmas that inspect the schema or check the file, with or without an
/// argument (a table or index name, a row count): they change nothing.
pub(super) const INSPECT_PRAGMAS: [&str; 10] = [
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

thread_local! {
    /// Set while the host runs its own statement on this thread.
    static TRUSTED: Cell<bool> = const { Cell::new(false) };
    /// Why the last statement prepared on this thread was refused.
    static DENIED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Applies the rules of this module to a freshly opened connection (after the
/// host has set its own pragmas).
pub(super) fn harden(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_ATTACH_CREATE, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_ATTACH_WRITE, false)?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)?;
    conn.authorizer(Some(authorize));
    Ok(())
}

/// Runs `f` with the host's own statements allowed (transaction control).
pub(super) fn trusted<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            TRUSTED.with(|t| t.set(self.0));
        }
    }
    let _reset = Reset(TRUSTED.with(|t| t.replace(true)));
    f()
}

/// Forgets any refusal recorded on this thread (before a job starts).
pub(super) fn clear_denial() {
    DENIED.with(|d| d.borrow_mut().take());
}

/// The reason the last refused statement on this thread was refused.
pub(super) fn take_denial() -> Option<String> {
    DENIED.with(|d| d.borrow_mut().take())
}

/// `message` (an SQLite error) with the recorded reason in place of SQLite's
/// "not authorized", and whether a statement was refused.
pub(super) fn explain(message: String) -> (String, bool) {
    match take_denial() {
        // At prepare; "authorization denied" when refused while running
        // (VACUUM attaches its scratch database then).
        Some(reason) if message.contains("not authorized") => {
            (message.replace("not authorized", &reason), true)
        }
        Some(reason) if message.contains("authorization denied") => {
            (message.replace("authorization denied", &reason), true)
        }
        _ => (message, false),
    }
}

fn authorize(cx: AuthContext<'_>) -> Authorization {
    if TRUSTED.with(Cell::get) {
        return Authorization::Allow;
    }
    match refusal(&cx.action) {
        None => Authorization::Allow,
        Some(reason) => {
            DENIED.with(|d| *d.borrow_mut() = Some(reason));
            Authorization::Deny
        }
    }
}

/// Why `action` is refused, or `None` when it is allowed.
fn refusal(action: &AuthAction<'_>) -> Option<String> {
    const OWN: &str = "a sql grant covers only its own database";
    const POOLED: &str = "connections are shared between calls, and this would outlive the call";
    Some(match action {
        // VACUUM attaches a scratch database, VACUUM INTO the new file.
        AuthAction::Attach { .. } => format!("ATTACH and VACUUM are not allowed: {OWN}"),
        AuthAction::Detach { .. } => format!("DETACH is not allowed: {OWN}"),
        AuthAction::Function { function_name }
            if function_name.eq_ignore_ascii_case("load_extension") =>
        {
            "load_extension() is not allowed: extensions run native code in the host".into()
        }
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            let inspect = INSPECT_PRAGMAS.contains(&name.as_str());
            let read = READ_PRAGMAS.contains(&name.as_str()) && pragma_value.is_none();
            if inspect || read {
                return None;
            }
            format!(
                "PRAGMA {pragma_name} is not allowed: durability and connection settings are the host's; \
                 a guest may read {} and run {}",
                READ_PRAGMAS.join(", "),
                INSPECT_PRAGMAS.join(", ")
            )
        }
        AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. } => {
            format!("temporary tables, indexes, views and triggers are not allowed: {POOLED}")
        }
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => format!(
            "BEGIN, COMMIT, ROLLBACK and SAVEPOINT are not allowed ({POOLED}); \
             run statements together in one transaction with sql_batch"
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::super::{SqlDatabases, SqlOp, batch_op, execute_op, query_op, tenant_list_op};
    use crate::wasm::HostError;

    fn job(dbs: &Arc<SqlDatabases>, op: SqlOp, req: Value) -> Result<Value, HostError> {
        op(dbs.clone(), req.to_string().into_bytes())?.run_here()
    }

    fn refused(dbs: &Arc<SqlDatabases>, sql: &str, why: &str) {
        let err = job(dbs, execute_op, json!({"db": "default", "sql": sql})).unwrap_err();
        assert_eq!(err.code, "sql_denied", "{sql}: {}", err.message);
        assert!(err.message.contains(why), "{sql}: {}", err.message);
    }

    #[test]
    fn statements_that_leave_the_database_or_change_its_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = SqlDatabases::new(dir.path());
        let outside = dir.path().join("outside.db");
        let attach = format!("ATTACH '{}' AS x", outside.display());
        refused(&dbs, &attach, "ATTACH and VACUUM are not allowed");
        refused(&dbs, "DETACH main", "DETACH is not allowed");
        let into = format!("VACUUM INTO '{}'", outside.display());
        refused(&dbs, &into, "ATTACH and VACUUM are not allowed");
        refused(&dbs, "VACUUM", "ATTACH and VACUUM are not allowed");
        assert!(
            !outside.exists(),
            "no file was created outside the database"
        );
        refused(
            &dbs,
            "SELECT load_extension('x')",
            "load_extension() is not allowed",
        );
        for pragma in [
            "PRAGMA synchronous = OFF",
            "PRAGMA journal_mode = OFF",
            "PRAGMA writable_schema = ON",
            "PRAGMA user_version = 3",
            "PRAGMA temp_store_directory = '/tmp'",
        ] {
            refused(
                &dbs,
                pragma,
                "is not allowed: durability and connection settings",
            );
        }
        let setting = |p: &str| {
            job(
                &dbs,
                query_op,
                json!({"db": "default", "sql": format!("PRAGMA {p}")}),
            )
            .unwrap()["rows"][0][0]
                .clone()
        };
        assert_eq!(setting("journal_mode"), json!("wal"));
        assert_eq!(setting("synchronous"), json!(1), "NORMAL");
        job(
            &dbs,
            execute_op,
            json!({"db": "default", "sql": "CREATE TABLE t (a INTEGER PRIMARY KEY, b)"}),
        )
        .unwrap();
        let info = job(
            &dbs,
            query_op,
            json!({"db": "default", "sql": "PRAGMA table_info(t)"}),
        )
        .unwrap();
        assert_eq!(info["rows"].as_array().unwrap().len(), 2);
        let tvf = json!({"db": "default", "sql": "SELECT name FROM pragma_table_info(?)", "params": ["t"]});
        assert_eq!(
            job(&dbs, query_op, tvf).unwrap()["rows"],
            json!([["a"], ["b"]])
        );
    }

    #[test]
    fn a_query_cannot_make_the_host_hold_more_than_its_result_budget() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = SqlDatabases::new(dir.path());
        let huge = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100) \
                    SELECT zeroblob(16 << 20) FROM c";
        let err = job(&dbs, query_op, json!({"db": "default", "sql": huge})).unwrap_err();
        assert!(err.message.contains("bytes; add LIMIT"), "{}", err.message);
        // A batch shares one budget.
        let third = json!({"sql": "SELECT zeroblob(30 << 20)"});
        let batch = json!({"db": "default", "statements": [third, third, third]});
        let err = job(&dbs, batch_op, batch).unwrap_err();
        assert!(
            err.message
                .contains("statement 3: the query returns more than"),
            "{}",
            err.message
        );
        let over = json!({"db": "default", "sql": "SELECT zeroblob(33554433)"});
        let err = job(&dbs, query_op, over).unwrap_err();
        assert!(err.message.contains("too big"), "{}", err.message);
    }

    #[test]
    fn nothing_a_call_does_outlives_it_on_a_pooled_connection() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = SqlDatabases::new(dir.path());
        refused(&dbs, "CREATE TEMP TABLE t (v)", "temporary tables");
        refused(&dbs, "CREATE TEMP VIEW v AS SELECT 1", "temporary tables");
        refused(
            &dbs,
            "BEGIN",
            "BEGIN, COMMIT, ROLLBACK and SAVEPOINT are not allowed",
        );
        refused(
            &dbs,
            "SAVEPOINT s",
            "BEGIN, COMMIT, ROLLBACK and SAVEPOINT are not allowed",
        );
        job(
            &dbs,
            execute_op,
            json!({"db": "default", "sql": "CREATE TABLE t (v)"}),
        )
        .unwrap();
        refused(
            &dbs,
            "CREATE TEMP TRIGGER spy AFTER INSERT ON t BEGIN DELETE FROM t; END",
            "temporary tables",
        );
        // A batch's own transaction still works, and one that fails midway
        // leaves the connection in autocommit for the next caller.
        let batch = json!({"db": "default", "statements": [
            {"sql": "INSERT INTO t VALUES (1)"},
            {"sql": "INSERT INTO nope VALUES (1)"},
        ]});
        job(&dbs, batch_op, batch).unwrap_err();
        job(
            &dbs,
            execute_op,
            json!({"db": "default", "sql": "INSERT INTO t VALUES (2)"}),
        )
        .unwrap();
        let rows = job(
            &dbs,
            query_op,
            json!({"db": "default", "sql": "SELECT v FROM t"}),
        )
        .unwrap();
        assert_eq!(rows["rows"], json!([[2]]));
        let idle = dbs.idle.lock().unwrap();
        assert!(
            idle["default"]
                .iter()
                .all(rusqlite::Connection::is_autocommit)
        );
    }

    #[test]
    fn reads_of_a_database_that_does_not_exist_create_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = SqlDatabases::new(dir.path());
        for sql in ["SELECT 1", "SELECT * FROM t", "INSERT INTO t VALUES (1)"] {
            let err = job(&dbs, query_op, json!({"db": "ghost", "sql": sql})).unwrap_err();
            assert_eq!(err.code, "not_found", "{sql}: {}", err.message);
        }
        let err = job(&dbs, tenant_list_op, json!({"db": "ghost"})).unwrap_err();
        assert_eq!(err.code, "not_found");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no file");
        assert!(dbs.idle.lock().unwrap().is_empty(), "no connection");
        // A write creates it; `default` exists from the start.
        job(
            &dbs,
            execute_op,
            json!({"db": "ghost", "sql": "CREATE TABLE t (v)"}),
        )
        .unwrap();
        assert!(dir.path().join("ghost.db").exists());
        job(&dbs, query_op, json!({"db": "default", "sql": "SELECT 1"})).unwrap();
        assert_eq!(
            job(&dbs, tenant_list_op, json!({"db": "ghost"})).unwrap(),
            json!([])
        );
    }
}
