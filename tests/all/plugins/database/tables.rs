//! Tables over the query endpoint: schema, paged rows, table names looked up rather than spliced into SQL, malformed bodies.

use super::*;

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
