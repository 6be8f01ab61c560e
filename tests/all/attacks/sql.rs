//! SQL cannot leave its grant: statements reaching the `sql` capability —
//! from a plugin with a `sql` grant or through the database plugin's query
//! route — cannot attach or create other database files, load extensions,
//! change durability or connection settings, or leave state on a pooled
//! connection for the next caller; the schema-reading pragmas still work.

use std::path::Path;

use serde_json::{Value, json};

use crate::plugins::{config, kit};
use crate::server::{TestServer, client};

/// The core plugins with the database plugin's query route open, and the
/// kit plugin at `/_/store` granted `sql` on `default`.
async fn start() -> TestServer {
    TestServer::try_start_plugins(buntime::plugins::embedded(), |root| {
        config(
            root,
            r#"{ "plugins": [["@buntime/plugin-database", { "query": true }], { "name": "@buntime/plugin-keyval", "enabled": false }, "store"] }"#,
        );
        kit(
            root,
            "store",
            r#""base": "store", "capabilities": { "sql": ["default"] }"#,
        );
    })
    .await
    .expect("server with the core plugins")
}

/// `POST /_/database/api/query` with `sql`: status and JSON body.
async fn query(server: &TestServer, sql: &str) -> (u16, Value) {
    let res = client()
        .post(server.url("/_/database/api/query"))
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.expect("json"))
}

/// The kit plugin's `sql_execute` of `sql`: status and JSON body.
async fn execute(server: &TestServer, sql: &str) -> (u16, Value) {
    let res = client()
        .post(server.url("/_/store/sql"))
        .json(&json!({ "op": "execute", "sql": sql }))
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.expect("json"))
}

/// Asserts the query route refused `sql` with 403 `SQL_DENIED` and a message
/// containing `why`.
async fn refused(server: &TestServer, sql: &str, why: &str) {
    let (status, body) = query(server, sql).await;
    assert_eq!(status, 403, "{sql}: {body}");
    assert_eq!(body["code"], "SQL_DENIED", "{sql}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(why), "{sql}: {message}");
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn attach_and_vacuum_into_create_no_file_outside_the_data_dir() {
    let server = start().await;
    let outside = server.dir.path().join("escaped.db");
    let attach = format!("ATTACH DATABASE '{}' AS x", outside.display());
    refused(
        &server,
        &attach,
        "ATTACH and VACUUM are not allowed: a sql grant covers only its own database",
    )
    .await;
    // The same from a plugin's own grant; VACUUM runs only outside a
    // transaction, so not through the query route.
    query(&server, "CREATE TABLE t (v)").await;
    let into = format!("VACUUM INTO '{}'", outside.display());
    for sql in [attach.as_str(), &into, "VACUUM"] {
        let (status, body) = execute(&server, sql).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("sql_denied")),
            "{sql}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap_or_default().contains(
                "ATTACH and VACUUM are not allowed: a sql grant covers only its own database"
            ),
            "{sql}: {body}"
        );
    }
    assert!(
        !outside.exists(),
        "ATTACH / VACUUM INTO created {}",
        outside.display()
    );
    assert_eq!(
        files(server.dir.path()),
        ["apps", "buntime.jsonc", "data", "plugins"]
    );
    server.stop().await;
}

#[tokio::test]
async fn extensions_durability_and_schema_pragmas_are_refused_and_reads_allowed() {
    let server = start().await;
    refused(
        &server,
        "SELECT load_extension('/tmp/evil')",
        "load_extension() is not allowed",
    )
    .await;
    for pragma in [
        "PRAGMA synchronous = OFF",
        "PRAGMA journal_mode = OFF",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA writable_schema = ON",
        "PRAGMA cache_size = -1000000",
        "PRAGMA user_version = 7",
    ] {
        refused(
            &server,
            pragma,
            "is not allowed: durability and connection settings are the host's",
        )
        .await;
    }
    // The host's settings are still in force, and readable.
    let (status, body) = query(&server, "PRAGMA journal_mode").await;
    assert_eq!(
        (status, &body["rows"]),
        (200, &json!([{"journal_mode": "wal"}])),
        "{body}"
    );
    let (_, body) = query(&server, "PRAGMA synchronous").await;
    assert_eq!(body["rows"], json!([{"synchronous": 1}]), "NORMAL: {body}");
    // Schema-reading pragmas work, as statements and as table functions.
    query(
        &server,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
    )
    .await;
    let (status, body) = query(&server, "PRAGMA table_info(notes)").await;
    assert_eq!(
        (status, body["rowCount"].as_u64()),
        (200, Some(2)),
        "{body}"
    );
    let (status, body) = query(&server, "PRAGMA index_list(notes)").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = query(&server, "PRAGMA user_version").await;
    assert_eq!(
        (status, &body["rows"]),
        (200, &json!([{"user_version": 0}])),
        "{body}"
    );
    let schema = client()
        .get(server.url("/_/database/api/tables/notes/schema"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        schema.status(),
        200,
        "pragma_table_info() still serves the schema route"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_callers_temporary_objects_and_transactions_never_reach_the_next_caller() {
    let server = start().await;
    query(&server, "CREATE TABLE t (v)").await;
    // A temporary trigger on a pooled connection would fire for every later
    // caller's writes on it; a temporary table would shadow `t`.
    refused(
        &server,
        "CREATE TEMP TRIGGER spy AFTER INSERT ON t BEGIN DELETE FROM t; END",
        "temporary tables, indexes, views and triggers are not allowed",
    )
    .await;
    refused(&server, "CREATE TEMP TABLE t (v)", "temporary tables").await;
    // A plugin's BEGIN would leave a transaction open on the connection.
    let (status, body) = execute(&server, "BEGIN").await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("BEGIN, COMMIT, ROLLBACK and SAVEPOINT are not allowed"),
        "{body}"
    );
    // Every connection the pool holds serves the next callers cleanly.
    for i in 0..5 {
        let (status, body) = execute(&server, &format!("INSERT INTO t VALUES ({i})")).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = query(&server, "SELECT count(*) AS n FROM temp.sqlite_schema").await;
        assert_eq!((status, &body["rows"]), (200, &json!([{"n": 0}])), "{body}");
    }
    let (_, body) = query(&server, "SELECT count(*) AS n FROM t").await;
    assert_eq!(
        body["rows"],
        json!([{"n": 5}]),
        "every insert committed: {body}"
    );
    server.stop().await;
}
