//! Tenants: created, listed and deleted; invalid ids refused; isolation by query parameter or header; the tenant header and default database settings.

use super::*;

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
