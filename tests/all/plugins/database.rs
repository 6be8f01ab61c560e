//! `@buntime/plugin-database`, the embedded core plugin, end to end: its
//! routes under `/_/database/api/*` over the host's SQLite files in
//! `dir/data`, configured through `buntime.jsonc`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{config, expect_error, kit, loaded, not_loaded, plugins};
use crate::server::{TestServer, client, get};

const NAME: &str = "@buntime/plugin-database";
const KEYVAL: &str = "@buntime/plugin-keyval";

/// The database plugin alone, with the query endpoint open. (Keyval, the
/// other core plugin, is turned off so that it keeps no tables of its own in
/// `default`; it is not needed: see
/// `the_database_plugin_needs_no_other_plugin`.)
const QUERY_ON: &str = r#"{ "plugins": [
  ["@buntime/plugin-database", { "query": true }],
  { "name": "@buntime/plugin-keyval", "enabled": false }
] }"#;

/// `buntime.jsonc` with the database plugin configured by `config` (a JSON
/// object) and keyval off.
fn database_config(config: &str) -> String {
    format!(
        r#"{{ "plugins": [["@buntime/plugin-database", {config}], {{ "name": "{KEYVAL}", "enabled": false }}] }}"#
    )
}

/// A server with the core plugins and, when given, this `buntime.jsonc`.
async fn start(buntime_jsonc: Option<&str>) -> TestServer {
    TestServer::try_start_plugins(buntime::plugins::embedded(), |root| {
        if let Some(text) = buntime_jsonc {
            config(root, text);
        }
    })
    .await
    .expect("server with the core plugins")
}

fn api(server: &TestServer, path: &str) -> String {
    server.url(&format!("/_/database/api{path}"))
}

/// Status and JSON body of `res`, after checking it is JSON.
async fn json_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/json", "status {status}");
    let body = res.json().await.expect("a JSON body");
    (status, body)
}

async fn get_json(server: &TestServer, path: &str) -> (u16, Value) {
    json_of(get(&api(server, path)).await).await
}

async fn post_json(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    json_of(
        client()
            .post(api(server, path))
            .json(body)
            .send()
            .await
            .expect("request"),
    )
    .await
}

/// `POST /api/query` (with `query` appended to the URL) that must succeed.
async fn sql(server: &TestServer, query: &str, statement: &str) -> Value {
    let (status, body) = post_json(
        server,
        &format!("/query{query}"),
        &json!({ "sql": statement }),
    )
    .await;
    assert_eq!(status, 200, "{statement}: {body}");
    body
}

/// `GET /api/tables` with `query`, as the list of names.
async fn tables(server: &TestServer, query: &str) -> Value {
    let (status, body) = get_json(server, &format!("/tables{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["tables"].clone()
}

/// Every file under `dir` whose name contains `.db`, relative to `dir`.
fn db_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().contains(".db") {
                out.push(path.strip_prefix(dir).expect("under dir").to_owned());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn adapters_health_and_a_closed_query_endpoint_without_configuration() {
    let server = start(None).await;

    let (status, body) = get_json(&server, "/adapters").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "adapters": [{ "type": "sqlite", "name": "default", "default": true }],
            "default": "default",
        })
    );

    let (status, body) = get_json(&server, "/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "status": "ok", "databases": { "default": { "status": "ok" } } })
    );

    // Arbitrary SQL stays closed until the operator opens it.
    let (status, body) = post_json(&server, "/query", &json!({ "sql": "SELECT 1" })).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "QUERY_DISABLED");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains(r#"["@buntime/plugin-database", {"query": true}]"#),
        "{body}"
    );

    // Unknown routes and methods are JSON 404s.
    let (status, body) = get_json(&server, "/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "NOT_FOUND");
    let res = client()
        .put(api(&server, "/tables"))
        .send()
        .await
        .expect("request");
    let (status, body) = json_of(res).await;
    assert_eq!(status, 404);
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("no route PUT /api/tables"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_database_plugin_needs_no_other_plugin() {
    // Keyval depends on the database plugin, not the other way round: with
    // keyval turned off, the database plugin loads alone and works.
    let server = start(Some(&format!(
        r#"{{ "plugins": [{{ "name": "{KEYVAL}", "enabled": false }}] }}"#
    )))
    .await;
    let list = plugins(&server).await;
    assert_eq!(list["order"], json!([NAME]), "{list:#}");
    let keyval = not_loaded(&list, KEYVAL);
    assert_eq!(keyval["state"], "disabled", "{keyval}");
    assert_eq!(get(&server.url("/_/keyval/")).await.status(), 404);
    let db = loaded(&list, NAME);
    assert_eq!(db["source"], "embedded");
    assert_eq!(db["base"], "database");
    assert_eq!(db["capabilities"], json!(["log", "sql"]));
    assert_eq!(db["dependencies"], json!([]));

    let (status, body) = post_json(&server, "/tenants", &json!({ "id": "acme" })).await;
    assert_eq!((status, &body["created"]), (201, &json!(true)), "{body}");
    let (status, body) = get_json(&server, "/tables?tenant=acme").await;
    assert_eq!((status, &body["tables"]), (200, &json!([])), "{body}");
    let (status, body) = get_json(&server, "/health").await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn core_plugins_load_beside_a_plugins_list() {
    // A `plugins` list that names only a third-party plugin: the core
    // plugins load anyway, the database plugin first (keyval needs it).
    let server = TestServer::try_start_plugins(buntime::plugins::embedded(), |root| {
        kit(root, "other", "");
        config(root, r#"{ "plugins": ["other"] }"#);
    })
    .await
    .expect("server");
    let list = plugins(&server).await;
    assert_eq!(loaded(&list, NAME)["source"], "embedded");
    loaded(&list, "other");
    let order: Vec<&str> = list["order"]
        .as_array()
        .expect("order")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let at = |name: &str| order.iter().position(|n| *n == name);
    assert!(at(NAME).is_some() && at(NAME) < at(KEYVAL), "{order:?}");
    let (status, body) = get_json(&server, "/health").await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn the_core_plugin_can_be_turned_off_in_buntime_jsonc() {
    let server = start(Some(
        r#"{ "plugins": [{ "name": "@buntime/plugin-database", "enabled": false }] }"#,
    ))
    .await;
    let list = plugins(&server).await;
    assert_eq!(not_loaded(&list, NAME)["state"], "disabled");
    assert_eq!(get(&api(&server, "/adapters")).await.status(), 404);
    // What needs it is left out with it.
    let keyval = not_loaded(&list, KEYVAL);
    assert_eq!(keyval["state"], "skipped", "{keyval}");
    assert!(
        keyval["reason"].as_str().expect("reason").contains(NAME),
        "{keyval}"
    );
    assert_eq!(list["order"], json!([]));
    assert!(
        !server.dir.path().join("data").exists(),
        "nothing was written"
    );
    server.stop().await;
}

#[tokio::test]
async fn tenants_are_created_listed_and_deleted() {
    let server = start(None).await;
    let dir = server.dir.path().to_owned();

    let (status, body) = get_json(&server, "/tenants").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "database": "default", "tenants": [] }));

    let (status, body) = post_json(&server, "/tenants", &json!({ "id": "acme" })).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({ "database": "default", "id": "acme", "created": true })
    );
    assert!(dir.join("data/default.tenants/acme.db").is_file());

    let (status, body) = post_json(&server, "/tenants", &json!({ "id": "acme" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["created"], false);

    let (status, _) = post_json(&server, "/tenants", &json!({ "id": "globex" })).await;
    assert_eq!(status, 201);
    let (_, body) = get_json(&server, "/tenants").await;
    assert_eq!(body["tenants"], json!(["acme", "globex"]));

    let res = client()
        .delete(api(&server, "/tenants/acme"))
        .send()
        .await
        .expect("request");
    let (status, body) = json_of(res).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "database": "default", "id": "acme", "deleted": true })
    );
    assert!(!dir.join("data/default.tenants/acme.db").exists());
    let (_, body) = get_json(&server, "/tenants").await;
    assert_eq!(body["tenants"], json!(["globex"]));

    // Gone, and never there, are the same 404.
    for id in ["acme", "missing"] {
        let res = client()
            .delete(api(&server, &format!("/tenants/{id}")))
            .send()
            .await
            .expect("request");
        let body = expect_error(
            res,
            404,
            &format!("tenant `{id}` of database `default` does not exist"),
        )
        .await;
        assert_eq!(body["code"], "NOT_FOUND");
    }

    // A deleted tenant can be created again, empty.
    let (status, _) = post_json(&server, "/tenants", &json!({ "id": "acme" })).await;
    assert_eq!(status, 201);
    server.stop().await;
}

#[tokio::test]
async fn invalid_tenant_ids_are_refused_and_write_nothing_outside_the_data_dir() {
    let server = start(Some(QUERY_ON)).await;
    let dir = server.dir.path().to_owned();

    let long = "a".repeat(65);
    for id in ["../x", "../../x", "a/b", "a b", "", "x.db", long.as_str()] {
        let (status, body) = post_json(&server, "/tenants", &json!({ "id": id })).await;
        assert_eq!(status, 400, "`{id}`: {body}");
        assert_eq!(body["code"], "BAD_REQUEST");
        let message = body["message"].as_str().expect("message");
        assert!(
            message.contains("is not a valid tenant id")
                && message.contains("1 to 64 letters, digits, `-` and `_`"),
            "`{id}`: {message}"
        );
    }
    // The same ids in the other places a tenant is named.
    let res = client()
        .delete(api(&server, "/tenants/..%2Fx"))
        .send()
        .await
        .expect("request");
    expect_error(res, 400, "`../x` is not a valid tenant id").await;
    let (status, body) = get_json(&server, "/tables?tenant=..%2Fx").await;
    assert_eq!(status, 400, "{body}");
    let res = client()
        .get(api(&server, "/tables"))
        .header("x-tenant-id", "../x")
        .send()
        .await
        .expect("request");
    expect_error(res, 400, "`../x` is not a valid tenant id").await;
    let (status, body) = post_json(
        &server,
        "/query",
        &json!({ "sql": "CREATE TABLE t (v)", "tenant": "../x" }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // A database name cannot leave the data dir either.
    let (status, body) = post_json(
        &server,
        "/tenants",
        &json!({ "id": "ok", "database": "../x" }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("is not a valid database name"),
        "{body}"
    );

    // No database file was made anywhere, and no tenant is listed.
    assert_eq!(db_files(&dir), Vec::<PathBuf>::new());
    assert!(!dir.join("x.db").exists() && !dir.join("data/x.db").exists());
    let (_, body) = get_json(&server, "/tenants").await;
    assert_eq!(body["tenants"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn tables_schema_and_rows_of_a_table_made_through_the_query_endpoint() {
    let server = start(Some(QUERY_ON)).await;
    let dir = server.dir.path().to_owned();

    let created = sql(
        &server,
        "",
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL)",
    )
    .await;
    assert_eq!(created["rowsAffected"], 0);
    assert_eq!(created["rows"], json!([]));
    let inserted = sql(
        &server,
        "",
        "INSERT INTO people (name, score) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 25) \
         SELECT 'p' || i, i * 0.5 FROM n",
    )
    .await;
    assert_eq!(inserted["rowsAffected"], 25);
    assert_eq!(inserted["rowCount"], 25);
    assert_eq!(inserted["lastInsertId"], 25);
    // How long the statement took, in ms.
    assert!(
        inserted["duration"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{inserted}"
    );

    // The write is on disk, in the data dir.
    assert!(dir.join("data/default.db").is_file());

    // A parameterised select answers objects keyed by column.
    let (status, selected) = post_json(
        &server,
        "/query",
        &json!({ "sql": "SELECT id, name FROM people WHERE score > ? ORDER BY id LIMIT 2", "params": [12] }),
    )
    .await;
    assert_eq!(status, 200, "{selected}");
    assert_eq!(selected["columns"], json!(["id", "name"]));
    assert_eq!(selected["rows"], json!([{ "id": 25, "name": "p25" }]));
    assert_eq!(selected["rowCount"], 1);
    assert!(selected["duration"].as_f64().is_some(), "{selected}");

    // A statement SQLite refuses is a 400 naming the database.
    let (status, body) = post_json(
        &server,
        "/query",
        &json!({ "sql": "SELECT * FROM missing" }),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "SQL_ERROR");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("database `default`: statement 1: no such table: missing"),
        "{body}"
    );

    assert_eq!(tables(&server, "").await, json!(["people"]));

    let (status, body) = get_json(&server, "/tables/people/schema").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "table": "people",
            "columns": [
                { "name": "id", "type": "INTEGER", "nullable": false, "pk": true },
                { "name": "name", "type": "TEXT", "nullable": false, "pk": false },
                { "name": "score", "type": "REAL", "nullable": true, "pk": false },
            ],
        })
    );

    // Only a lone INTEGER PRIMARY KEY (the rowid) is implied NOT NULL;
    // SQLite lets NULL into the columns of any other primary key.
    sql(
        &server,
        "",
        "CREATE TABLE pairs (a INTEGER, b TEXT, PRIMARY KEY (a, b))",
    )
    .await;
    let (_, body) = get_json(&server, "/tables/pairs/schema").await;
    assert_eq!(
        body["columns"],
        json!([
            { "name": "a", "type": "INTEGER", "nullable": true, "pk": true },
            { "name": "b", "type": "TEXT", "nullable": true, "pk": true },
        ])
    );

    let (status, body) = get_json(&server, "/tables/people/rows").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["table"], "people");
    assert_eq!(body["columns"], json!(["id", "name", "score"]));
    assert_eq!(
        (body["limit"].as_u64(), body["offset"].as_u64()),
        (Some(100), Some(0))
    );
    assert_eq!(body["total"], 25);
    let rows = body["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 25);
    assert_eq!(rows[0], json!({ "id": 1, "name": "p1", "score": 0.5 }));

    // A missing table.
    let (status, body) = get_json(&server, "/tables/ghosts/rows").await;
    assert_eq!(status, 404);
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("no table `ghosts` in database `default`"),
        "{body}"
    );
    let (status, _) = get_json(&server, "/tables/ghosts/schema").await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn rows_are_paged_and_bad_page_parameters_are_refused() {
    let server = start(Some(QUERY_ON)).await;
    sql(&server, "", "CREATE TABLE n (i INTEGER)").await;
    sql(
        &server,
        "",
        "INSERT INTO n WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1200) SELECT i FROM c",
    )
    .await;
    let page = |body: &Value| -> Vec<i64> {
        body["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["i"].as_i64().expect("i"))
            .collect()
    };

    let (status, body) = get_json(&server, "/tables/n/rows?limit=3&offset=10").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(page(&body), vec![11, 12, 13]);
    assert_eq!(
        (&body["limit"], &body["offset"], &body["total"]),
        (&json!(3), &json!(10), &json!(1200))
    );

    // The last page is short; past the end is empty, not an error.
    let (_, body) = get_json(&server, "/tables/n/rows?limit=5&offset=1198").await;
    assert_eq!(page(&body), vec![1199, 1200]);
    let (status, body) = get_json(&server, "/tables/n/rows?offset=5000").await;
    assert_eq!(status, 200);
    assert_eq!((page(&body), &body["total"]), (vec![], &json!(1200)));

    // The largest page is 1000 rows.
    let (status, body) = get_json(&server, "/tables/n/rows?limit=1000").await;
    assert_eq!(status, 200);
    assert_eq!(page(&body).len(), 1000);

    for (query, needle) in [
        ("limit=0", "`limit` must be 1 to 1000, found 0"),
        ("limit=1001", "`limit` must be 1 to 1000, found 1001"),
        (
            "limit=abc",
            "`limit` must be a whole number from 0 to 9223372036854775807, found `abc`",
        ),
        (
            "limit=-1",
            "`limit` must be a whole number from 0 to 9223372036854775807, found `-1`",
        ),
        (
            "limit=",
            "`limit` must be a whole number from 0 to 9223372036854775807, found ``",
        ),
        (
            "offset=abc",
            "`offset` must be a whole number from 0 to 9223372036854775807, found `abc`",
        ),
        (
            "offset=1.5",
            "`offset` must be a whole number from 0 to 9223372036854775807, found `1.5`",
        ),
        (
            "offset=9223372036854775808",
            "`offset` must be a whole number from 0 to 9223372036854775807, found `9223372036854775808`",
        ),
    ] {
        let res = get(&api(&server, &format!("/tables/n/rows?{query}"))).await;
        let body = expect_error(res, 400, needle).await;
        assert_eq!(body["code"], "BAD_REQUEST", "{query}: {body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn table_names_are_looked_up_never_spliced_into_sql() {
    let server = start(Some(QUERY_ON)).await;
    sql(&server, "", "CREATE TABLE t (v TEXT)").await;
    sql(&server, "", "INSERT INTO t VALUES ('kept')").await;

    for name in [
        // x"; DROP TABLE t; --
        "x%22%3B%20DROP%20TABLE%20t%3B%20--",
        // t"; DROP TABLE t; --
        "t%22%3B%20DROP%20TABLE%20t%3B%20--",
        // t" --
        "t%22%20--",
        // t WHERE 1=1; DELETE FROM t
        "t%20WHERE%201%3D1%3B%20DELETE%20FROM%20t",
        // ../../etc/passwd
        "..%2F..%2Fetc%2Fpasswd",
        "sqlite_schema",
        "%00",
    ] {
        for route in ["rows", "schema"] {
            let (status, body) = get_json(&server, &format!("/tables/{name}/{route}")).await;
            assert_eq!(status, 404, "{name}/{route}: {body}");
            assert_eq!(body["code"], "NOT_FOUND");
        }
        let (status, _) = get_json(&server, &format!("/tables/{name}/rows?tenant=x")).await;
        assert_eq!(status, 404, "{name} with a missing tenant");
    }
    // The query endpoint runs one statement, not a script.
    let (status, body) = post_json(
        &server,
        "/query",
        &json!({ "sql": "SELECT 1; DROP TABLE t" }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "SQL_ERROR");
    assert_eq!(tables(&server, "").await, json!(["t"]));
    let (_, body) = get_json(&server, "/tables/t/rows").await;
    assert_eq!(body["rows"], json!([{ "v": "kept" }]));

    // Names SQL would need quoted are read as they are.
    sql(&server, "", r#"CREATE TABLE "we""ird; --" (v TEXT)"#).await;
    sql(&server, "", r#"INSERT INTO "we""ird; --" VALUES ('odd')"#).await;
    sql(&server, "", r#"CREATE TABLE "a+b" (v TEXT)"#).await;
    sql(&server, "", r#"INSERT INTO "a+b" VALUES ('plus')"#).await;
    let (status, body) = get_json(&server, "/tables/we%22ird%3B%20--/rows").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["table"], r#"we"ird; --"#);
    assert_eq!(body["rows"], json!([{ "v": "odd" }]));
    // In a path, `+` is a plus, not a space.
    let (status, body) = get_json(&server, "/tables/a+b/rows").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["table"], "a+b");
    assert_eq!(body["rows"], json!([{ "v": "plus" }]));
    let (status, body) = get_json(&server, "/tables/a%2Bb/schema").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["table"], "a+b");
    assert_eq!(
        tables(&server, "").await,
        json!(["a+b", "t", r#"we"ird; --"#])
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_bodies_are_bad_requests() {
    let server = start(Some(QUERY_ON)).await;
    for (path, body) in [
        ("/tenants", "{not json"),
        ("/tenants", ""),
        ("/tenants", r#"{"id": 5}"#),
        ("/tenants", r#"{"id": "a", "extra": true}"#),
        ("/query", "{not json"),
        ("/query", r#"{"params": []}"#),
        ("/query", r#"{"sql": "SELECT 1", "params": "no"}"#),
    ] {
        let res = client()
            .post(api(&server, path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let (status, answer) = json_of(res).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(answer["code"], "BAD_REQUEST");
        assert!(
            answer["message"]
                .as_str()
                .expect("message")
                .starts_with("the body must be JSON like"),
            "{path} {body}: {answer}"
        );
    }
    // A parameter that is not a SQL value.
    let (status, body) = post_json(
        &server,
        "/query",
        &json!({ "sql": "SELECT ?", "params": [[1, 2]] }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("parameter 1"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn tenants_are_isolated_whether_named_in_the_query_or_the_header() {
    let server = start(Some(QUERY_ON)).await;
    for id in ["a", "b"] {
        let (status, _) = post_json(&server, "/tenants", &json!({ "id": id })).await;
        assert_eq!(status, 201);
    }
    sql(&server, "?tenant=a", "CREATE TABLE only_a (v TEXT)").await;
    sql(&server, "?tenant=a", "INSERT INTO only_a VALUES ('secret')").await;

    assert_eq!(tables(&server, "?tenant=a").await, json!(["only_a"]));
    assert_eq!(tables(&server, "?tenant=b").await, json!([]));
    assert_eq!(tables(&server, "").await, json!([]));
    let (_, body) = get_json(&server, "/tables?tenant=a").await;
    assert_eq!(body["tenant"], "a");
    let (_, body) = get_json(&server, "/tables").await;
    assert_eq!(body["tenant"], Value::Null);

    let with_header = |path: &str, tenant: &str| {
        client()
            .get(api(&server, path))
            .header("x-tenant-id", tenant)
            .send()
    };
    let (status, body) = json_of(with_header("/tables", "a").await.expect("request")).await;
    assert_eq!((status, &body["tables"]), (200, &json!(["only_a"])));
    let (status, body) = json_of(with_header("/tables", "b").await.expect("request")).await;
    assert_eq!((status, &body["tables"]), (200, &json!([])));
    let (status, body) = json_of(
        with_header("/tables/only_a/rows", "a")
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([{ "v": "secret" }]));
    let (status, _) = json_of(
        with_header("/tables/only_a/rows", "b")
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 404, "tenant b cannot read tenant a's table");
    let (status, _) = get_json(&server, "/tables/only_a/rows").await;
    assert_eq!(status, 404, "the root cannot read tenant a's table");
    // `?tenant=` wins over the header.
    let (_, body) = json_of(with_header("/tables?tenant=b", "a").await.expect("request")).await;
    assert_eq!(body["tables"], json!([]));

    // The query endpoint takes the tenant in its body, too.
    let (status, body) = post_json(
        &server,
        "/query",
        &json!({ "sql": "SELECT count(*) AS n FROM only_a", "tenant": "a" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([{ "n": 1 }]));
    let (status, body) = post_json(
        &server,
        "/query",
        &json!({ "sql": "SELECT count(*) FROM only_a", "tenant": "b" }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("no such table: only_a"),
        "{body}"
    );

    // A tenant that was never created is a 404, and is not created by asking.
    let (status, body) = get_json(&server, "/tables?tenant=nobody").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("tenant `nobody` of database `default` does not exist"),
        "{body}"
    );
    let (_, body) = get_json(&server, "/tenants").await;
    assert_eq!(body["tenants"], json!(["a", "b"]));

    // Deleting a tenant deletes its data.
    let res = client()
        .delete(api(&server, "/tenants/a"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    post_json(&server, "/tenants", &json!({ "id": "a" })).await;
    assert_eq!(tables(&server, "?tenant=a").await, json!([]));
    server.stop().await;
}

#[tokio::test]
async fn the_tenant_header_is_configurable() {
    let server = start(Some(&database_config(
        r#"{ "query": true, "tenantHeader": "x-org" }"#,
    )))
    .await;
    post_json(&server, "/tenants", &json!({ "id": "acme" })).await;
    sql(&server, "?tenant=acme", "CREATE TABLE mine (v)").await;
    let res = client()
        .get(api(&server, "/tables"))
        .header("x-org", "acme")
        .send()
        .await
        .expect("request");
    let (_, body) = json_of(res).await;
    assert_eq!(body["tables"], json!(["mine"]));
    // The default header no longer selects a tenant.
    let res = client()
        .get(api(&server, "/tables"))
        .header("x-tenant-id", "acme")
        .send()
        .await
        .expect("request");
    let (_, body) = json_of(res).await;
    assert_eq!(
        (&body["tenant"], &body["tables"]),
        (&Value::Null, &json!([]))
    );
    server.stop().await;
}

#[tokio::test]
async fn the_default_database_is_configurable() {
    let server = start(Some(&database_config(
        r#"{ "query": true, "default": "main" }"#,
    )))
    .await;
    let dir = server.dir.path().to_owned();
    let (_, body) = get_json(&server, "/adapters").await;
    assert_eq!(
        body,
        json!({
            "adapters": [
                { "type": "sqlite", "name": "default", "default": false },
                { "type": "sqlite", "name": "main", "default": true },
            ],
            "default": "main",
        })
    );
    sql(&server, "", "CREATE TABLE m (v)").await;
    assert!(dir.join("data/main.db").is_file());
    assert_eq!(tables(&server, "").await, json!(["m"]));
    let (_, body) = get_json(&server, "/tables").await;
    assert_eq!(body["database"], "main");
    assert_eq!(tables(&server, "?database=default").await, json!([]));
    let (status, body) = post_json(&server, "/tenants", &json!({ "id": "t1" })).await;
    assert_eq!(status, 201);
    assert_eq!(body["database"], "main");
    assert!(dir.join("data/main.tenants/t1.db").is_file());
    server.stop().await;
}

#[tokio::test]
async fn named_databases_in_buntime_jsonc_live_where_configured() {
    let server = start(Some(
        r#"{
          // relative to this file's directory
          "databases": { "analytics": "analytics.db", "archive": { "path": "dbs/archive.db" } },
          "plugins": [
            ["@buntime/plugin-database", { "query": true }],
            { "name": "@buntime/plugin-keyval", "enabled": false }
          ]
        }"#,
    ))
    .await;
    let dir = server.dir.path().to_owned();

    // Configured databases are listed before they have a file.
    let (status, body) = get_json(&server, "/adapters").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["adapters"],
        json!([
            { "type": "sqlite", "name": "analytics", "default": false },
            { "type": "sqlite", "name": "archive", "default": false },
            { "type": "sqlite", "name": "default", "default": true },
        ])
    );

    sql(
        &server,
        "?database=analytics",
        "CREATE TABLE events (at TEXT)",
    )
    .await;
    let (status, body) = post_json(
        &server,
        "/query",
        &json!({ "sql": "CREATE TABLE old (v)", "database": "archive" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(dir.join("analytics.db").is_file());
    assert!(dir.join("dbs/archive.db").is_file());
    assert!(!dir.join("data/analytics.db").exists());
    assert!(!dir.join("data/archive.db").exists());

    assert_eq!(
        tables(&server, "?database=analytics").await,
        json!(["events"])
    );
    assert_eq!(tables(&server, "?database=archive").await, json!(["old"]));
    assert_eq!(tables(&server, "").await, json!([]));
    // `?type=` is another spelling of `?database=`; `sqlite`, an adapter
    // type, means the default database.
    assert_eq!(tables(&server, "?type=analytics").await, json!(["events"]));
    assert_eq!(tables(&server, "?database=sqlite").await, json!([]));
    let (status, _) = get_json(&server, "/tables/events/schema?database=analytics").await;
    assert_eq!(status, 200);

    let (status, body) = get_json(&server, "/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    for name in ["analytics", "archive", "default"] {
        assert_eq!(body["databases"][name]["status"], "ok", "{body}");
    }
    let (status, body) = get_json(&server, "/health?database=analytics").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({ "status": "ok", "databases": { "analytics": { "status": "ok" } } })
    );
    // A health check of a name that cannot be a database fails it.
    let (status, body) = get_json(&server, "/health?database=..%2Fx").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "error");
    assert_eq!(
        body["databases"]["../x"],
        json!({
            "status": "error",
            "message": "`../x` is not a valid database name: use 1 to 64 letters, digits, `-` and `_`",
        })
    );
    server.stop().await;
}

#[tokio::test]
async fn a_bad_databases_key_stops_the_server_naming_file_and_field() {
    let result = TestServer::try_start_plugins(buntime::plugins::embedded(), |root| {
        config(root, r#"{ "databases": { "../up": "x.db" } }"#);
    })
    .await;
    let Err(err) = result else {
        panic!("the server started with an invalid `databases`");
    };
    let message = err.to_string();
    assert!(
        message.contains("buntime.jsonc: `databases.../up`: a database name is 1 to 64"),
        "{message}"
    );
}
