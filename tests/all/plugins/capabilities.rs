//! Each capability used as granted, and refused when not.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use super::{config, echo, expect_error, kit, plugins, seen_header, wait_for_state};
use crate::server::{TestServer, client, get};

#[tokio::test]
async fn a_plugin_without_grants_is_refused_every_capability() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        kit(root, "violator", "");
        config(
            root,
            r#"{ plugins: [["violator", { violate: "state,events,services,pool" }]] }"#,
        );
    })
    .await;
    let res = get(&server.url("/echo/x")).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    for cap in ["state", "events", "services", "pool"] {
        assert_eq!(
            seen_header(&body, &format!("x-denied-{cap}")).as_deref(),
            Some("capability_denied"),
            "{cap} was not refused: {body}"
        );
    }
    let metrics: Value = get(&server.url("/_/metrics"))
        .await
        .json()
        .await
        .expect("json");
    let denials = &metrics["engine"]["denialsByCapability"];
    // (`log` is refused silently, and only when the host's log level lets the
    // guest log at all; the PDK asks first. Not observable here.)
    for cap in ["state", "events", "services", "pool"] {
        assert!(
            denials[cap].as_u64().unwrap_or(0) >= 1,
            "{cap} denial not counted: {metrics:#}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn state_is_shared_by_all_instances_of_a_plugin() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        kit(
            root,
            "counter",
            r#""capabilities": { "state": true }, "limits": { "instances": 4 }"#,
        );
        config(root, r#"{ plugins: [["counter", { counter: "true" }]] }"#);
    })
    .await;
    let requests = (0..40).map(|_| {
        let url = server.url("/echo/x");
        async move { get(&url).await.status() }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let res = get(&server.url("/echo/x")).await;
    let body: Value = res.json().await.expect("json");
    assert_eq!(seen_header(&body, "x-hits").as_deref(), Some("41"));
    server.stop().await;
}

#[tokio::test]
async fn services_reach_dependencies_only() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        kit(root, "@fixtures/provider", r#""services": ["greet"]"#);
        kit(
            root,
            "consumer",
            r#""dependencies": ["@fixtures/provider"], "capabilities": { "services": true }"#,
        );
        kit(root, "stranger", "");
        config(
            root,
            r##"{ plugins: [
                "@fixtures/provider",
                ["consumer", { callService: "@fixtures/provider#greet" }],
                ["stranger", { callService: "@fixtures/provider#greet" }],
            ] }"##,
        );
    })
    .await;
    let res = get(&server.url("/echo/x")).await;
    let body: Value = res.json().await.expect("json");
    let header = |name: &str| seen_header(&body, name);
    // The stranger ran after the consumer and replaced nothing: each sets its own header.
    assert_eq!(header("x-service").as_deref(), Some("hello, kit"));
    let refused = header("x-service-error").expect("the stranger must be refused");
    assert!(refused.starts_with("capability_denied"), "{refused}");
    assert!(
        refused.contains("\"services\": [\"@scope/plugin-you-depend-on\"]"),
        "{refused}"
    );
    server.stop().await;
}

#[tokio::test]
async fn events_reach_subscribers_and_stream_to_clients() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        kit(
            root,
            "publisher",
            r#""capabilities": { "events": { "publish": ["kit.*"] } }"#,
        );
        kit(
            root,
            "subscriber",
            r#""base": "sub", "capabilities": { "state": true, "events": { "subscribe": ["kit.*", "worker_spawn"] } }"#,
        );
        config(root, r#"{ plugins: [["publisher", { publish: "kit.hit" }], "subscriber"] }"#);
    })
    .await;

    // A client listens on the subscriber's event stream.
    let stream = client()
        .get(server.url("/_/sub/events"))
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/event-stream")
    );
    let mut body = stream.bytes_stream();

    assert_eq!(get(&server.url("/echo/x")).await.status(), 200);

    let mut seen = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            if seen.contains("event: kit.hit") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no event streamed; got {seen:?}");
    assert!(seen.contains("\"source\":\"publisher\""), "{seen}");
    drop(body);

    // on_event ran for the published topic (every request through the chain
    // publishes, the stream's own included) and for the lifecycle event.
    assert!(wait_for_state(&server, "sub", "event:kit.hit", 1).await >= 1);
    assert_eq!(
        wait_for_state(&server, "sub", "event:worker_spawn", 1).await,
        1,
        "one app instance was spawned"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_plugin_may_not_stream_or_publish_outside_its_grant() {
    let server = TestServer::start_plugins(|root| {
        kit(root, "narrow", r#""base": "narrow", "capabilities": { "events": { "publish": ["narrow.*"], "subscribe": ["narrow.*"] } }"#);
        config(root, r#"{ plugins: [["narrow", { stream: "other.*" }]] }"#);
    })
    .await;
    let res = get(&server.url("/_/narrow/events")).await;
    expect_error(res, 403, "\"subscribe\": [\"other.*\"]").await;
    let res = get(&server.url("/_/narrow/publish?topic=elsewhere.x")).await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "capability_denied");
    assert_eq!(
        get(&server.url("/_/narrow/publish?topic=narrow.ok"))
            .await
            .status(),
        204
    );
    server.stop().await;
}

#[tokio::test]
async fn outbound_http_is_bounded_by_url_patterns_and_private_networks() {
    let server = TestServer::start_plugins(|root| {
        kit(root, "explicit", r#""base": "explicit", "capabilities": { "http": ["http://127.0.0.1:*"] }"#);
        kit(root, "wildcard", r#""base": "wildcard", "capabilities": { "http": ["*"] }"#);
        kit(root, "private", r#""base": "private", "capabilities": { "http": { "allow": ["http://*:*"], "privateNetworks": true } }"#);
        kit(root, "none", r#""base": "none""#);
    })
    .await;
    let target = server.url("/_/api/health/live");
    let fetch = |base: &str| server.url(&format!("/_/{base}/http?url={target}"));
    let ok = get(&fetch("explicit")).await;
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.expect("text").contains("ok"));
    assert_eq!(get(&fetch("private")).await.status(), 200);

    let wildcard = get(&fetch("wildcard")).await;
    expect_error(wildcard, 502, "private address").await;

    let none = get(&fetch("none")).await;
    expect_error(none, 502, "is not allowed").await;
    server.stop().await;
}

#[tokio::test]
async fn the_pool_capability_reads_pool_stats() {
    let server = TestServer::start_plugins(|root| {
        echo(root);
        kit(
            root,
            "ops",
            r#""base": "ops", "capabilities": { "pool": true }"#,
        );
        kit(root, "nosy", r#""base": "nosy""#);
    })
    .await;
    assert_eq!(get(&server.url("/echo/x")).await.status(), 200);
    let stats: Value = get(&server.url("/_/ops/pool"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(stats["capacity"], 16);
    assert!(stats["workers"].to_string().contains("echo"), "{stats}");
    let refused = get(&server.url("/_/nosy/pool")).await;
    expect_error(refused, 403, "\"pool\": true").await;
    // Both kits loaded: the refusal is the grant's, not a failed load's.
    let list = plugins(&server).await;
    assert_eq!(list["notLoaded"], serde_json::json!([]), "{list}");
    server.stop().await;
}

#[tokio::test]
async fn plugin_loaded_events_reach_subscribers_at_start_and_on_reload() {
    let server = TestServer::start_plugins(|root| {
        kit(
            root,
            "watcher",
            r#""base": "watcher", "capabilities": { "state": true, "events": { "subscribe": ["plugin_loaded"] } }"#,
        );
        kit(root, "other", "");
    })
    .await;
    let seen = wait_for_state(&server, "watcher", "event:plugin_loaded", 2).await;
    assert_eq!(seen, 2, "one event per loaded plugin at start");
    let res = client()
        .post(server.url("/_/api/plugins/other/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(res.status(), 200);
    let seen = wait_for_state(&server, "watcher", "event:plugin_loaded", 3).await;
    assert_eq!(seen, 3, "and one for the reloaded plugin");
    server.stop().await;
}

#[tokio::test]
async fn sql_runs_typed_statements_on_granted_databases_only() {
    let server = TestServer::start_plugins(|root| {
        kit(
            root,
            "store",
            r#""base": "store", "capabilities": { "sql": ["default"] }"#,
        );
    })
    .await;
    let sql = |body: Value| {
        let url = server.url("/_/store/sql");
        async move { client().post(url).json(&body).send().await.expect("send") }
    };
    let res = sql(serde_json::json!({"op": "execute", "sql": "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, score REAL)"})).await;
    assert_eq!(res.status(), 200);
    let res = sql(serde_json::json!({"op": "execute", "sql": "INSERT INTO notes (body, score) VALUES (?, ?)", "params": ["first", 0.5]})).await;
    let done: Value = res.json().await.expect("json");
    assert_eq!(
        done,
        serde_json::json!({"rowsAffected": 1, "lastInsertId": 1})
    );

    let failed = sql(serde_json::json!({"op": "batch", "statements": [
        {"sql": "INSERT INTO notes (body) VALUES (?)", "params": ["second"]},
        {"sql": "INSERT INTO missing VALUES (1)"},
    ]}))
    .await;
    assert_eq!(failed.status(), 422);
    let body: Value = failed.json().await.expect("json");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains("database `default`: statement 2: no such table: missing"),
        "{message}"
    );

    let rows: Value = sql(
        serde_json::json!({"op": "query", "sql": "SELECT id, body, score FROM notes ORDER BY id"}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(rows["columns"], serde_json::json!(["id", "body", "score"]));
    assert_eq!(
        rows["rows"],
        serde_json::json!([[1, "first", 0.5]]),
        "the failed batch left nothing behind"
    );

    let refused = sql(serde_json::json!({"op": "query", "db": "secrets", "sql": "SELECT 1"})).await;
    // A denial like every other: the function, what was refused, the grant.
    expect_error(
        refused,
        403,
        "capability `sql` denied for `extism:host/user::sql_query`: database `secrets` is not granted; grant it in the guest's manifest (`capabilities`: \"sql\": [\"secrets\"])",
    )
    .await;
    assert!(server.dir.path().join("data/default.db").is_file());
    server.stop().await;
}

#[tokio::test]
async fn registering_metrics_is_refused_without_the_register_grant() {
    let server = TestServer::start_plugins(|root| {
        kit(
            root,
            "counted",
            r#""base": "counted", "capabilities": { "metrics": { "register": true } }"#,
        );
        // Reading the server's figures does not allow registering series.
        kit(
            root,
            "reader",
            r#""base": "reader", "capabilities": { "metrics": { "read": true } }"#,
        );
        kit(root, "plain", r#""base": "plain""#);
    })
    .await;
    let counted = get(&server.url("/_/counted/metrics")).await;
    assert_eq!(counted.status(), 204);
    // The refusal names the grant to add: the `register` field when the
    // plugin holds `metrics` for reading, the whole grant when it does not.
    for (base, grant) in [
        ("reader", r#""metrics": {"register": true}"#),
        (
            "plain",
            r#""metrics": true or {"read": true, "register": true}"#,
        ),
    ] {
        let refused = get(&server.url(&format!("/_/{base}/metrics"))).await;
        let body = expect_error(refused, 403, grant).await;
        assert_eq!(body["code"], "capability_denied", "{body}");
    }
    let text = crate::server::metrics::prometheus_text(&server.url("/_/metrics")).await;
    let registered: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("kit_hits"))
        .collect();
    assert_eq!(registered.len(), 1, "{registered:?}");
    assert!(
        registered[0].contains(r#"plugin="counted""#) && registered[0].ends_with(" 1"),
        "{registered:?}"
    );
    for plugin in ["reader", "plain"] {
        let series = format!(
            r#"buntime_capability_denials_by_plugin_total{{plugin="{plugin}",capability="metrics"}} 1"#
        );
        assert!(text.lines().any(|l| l == series), "no {series} in\n{text}");
    }
    server.stop().await;
}
