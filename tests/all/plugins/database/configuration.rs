//! Loading and configuring the database plugin: adapters and health, running alone or beside other plugins, turning it off, named databases, and a bad `databases` key.

use super::*;

/// The load order without the observability plugins (logs, metrics), which
/// are on by default and use neither the database nor keyval.
fn data_plugins(list: &Value) -> Value {
    let observability = ["@buntime/plugin-logs", "@buntime/plugin-metrics"];
    list["order"]
        .as_array()
        .expect("order")
        .iter()
        .filter(|n| !n.as_str().is_some_and(|n| observability.contains(&n)))
        .cloned()
        .collect()
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
    assert_eq!(data_plugins(&list), json!([NAME]), "{list:#}");
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
    assert_eq!(data_plugins(&list), json!([]), "{list:#}");
    assert!(
        !server.dir.path().join("data").exists(),
        "nothing was written"
    );
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
