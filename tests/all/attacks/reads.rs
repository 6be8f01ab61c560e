//! Reads create nothing: a client naming an unknown tenant or an
//! unconfigured database gets a 404 and leaves no file behind; tenants and
//! databases are made by writes. What a client can keep open or pile up —
//! event streams, full-text indexes — is capped, and a closed stream frees
//! its slot.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::plugins::config;
use crate::server::{TestServer, client};

/// The core plugins, the database plugin's query route open.
async fn start() -> TestServer {
    TestServer::try_start_plugins(buntime::plugins::embedded(), |root| {
        config(
            root,
            r#"{ "plugins": [["@buntime/plugin-database", { "query": true }]] }"#,
        );
    })
    .await
    .expect("server with the core plugins")
}

/// Every file and dir under `dir`, relative to it, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            out.push(path.strip_prefix(dir).expect("under dir").to_owned());
        }
    }
    out.sort();
    out
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn reads_of_unknown_databases_and_tenants_are_404_and_create_no_file() {
    let server = start().await;
    let data = server.dir.path().join("data");
    let url = |p: &str| server.url(p);
    // Warm up both plugins on their configured database, which exists.
    let (status, _) = send(client().get(url("/_/keyval/api/keys/warm"))).await;
    assert_eq!(status, 404);
    let (status, _) = send(client().get(url("/_/database/api/tables"))).await;
    assert_eq!(status, 200);
    let before = tree(&data);

    let h = |name: &str| ("x-tenant-id", name.to_owned());
    let reads: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "db tables",
            client().get(url("/_/database/api/tables?database=ghost")),
        ),
        (
            "db rows",
            client().get(url("/_/database/api/tables/t/rows?database=ghost")),
        ),
        (
            "db schema",
            client().get(url("/_/database/api/tables/t/schema?database=ghost")),
        ),
        (
            "db tenants",
            client().get(url("/_/database/api/tenants?database=ghost")),
        ),
        (
            "db tenant",
            client().get(url("/_/database/api/tables?tenant=ghost")),
        ),
        (
            "db query",
            client()
                .post(url("/_/database/api/query"))
                .json(&json!({"sql": "SELECT * FROM sqlite_schema", "database": "ghost"})),
        ),
        (
            "kv get",
            client()
                .get(url("/_/keyval/api/keys/a/1"))
                .header(h("ghost").0, h("ghost").1),
        ),
        (
            "kv list",
            client().get(url("/_/keyval/api/keys?prefix=a&tenant=ghost")),
        ),
        (
            "kv count",
            client().get(url("/_/keyval/api/keys/count?tenant=ghost")),
        ),
        (
            "kv watch",
            client().get(url("/_/keyval/api/watch?keys=a&tenant=ghost")),
        ),
        (
            "kv search",
            client().get(url("/_/keyval/api/search?query=x&tenant=ghost")),
        ),
        (
            "kv poll",
            client().get(url("/_/keyval/api/queue/poll?tenant=ghost")),
        ),
        (
            "kv stats",
            client().get(url("/_/keyval/api/queue/stats?tenant=ghost")),
        ),
        (
            "kv indexes",
            client().get(url("/_/keyval/api/indexes?tenant=ghost")),
        ),
        (
            "kv delete",
            client().delete(url("/_/keyval/api/keys/a?tenant=ghost")),
        ),
    ];
    for (what, req) in reads {
        let (status, body) = send(req).await;
        assert_eq!(status, 404, "{what}: {body}");
        assert_eq!(body["code"], "NOT_FOUND", "{what}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("does not exist"), "{what}: {message}");
    }
    let (status, body) = send(client().get(url("/_/database/api/health?database=ghost"))).await;
    assert_eq!(status, 503, "health names the missing database: {body}");
    assert_eq!(tree(&data), before, "no file or dir was created by a read");

    // Writes create them.
    let (status, body) = send(
        client()
            .put(url("/_/keyval/api/keys/a/1?tenant=ghost"))
            .json(&json!(1)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(data.join("default.tenants/ghost.db").exists());
    let (status, body) = send(client().get(url("/_/keyval/api/keys/a/1?tenant=ghost"))).await;
    assert_eq!((status, &body["value"]), (200, &json!(1)), "{body}");
    let (status, body) = send(
        client()
            .post(url("/_/database/api/query"))
            .json(&json!({"sql": "CREATE TABLE t (v)", "database": "ghost"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(data.join("ghost.db").exists());
    server.stop().await;
}

/// Opens a keyval watch stream; the response (its body unread) holds it open.
async fn watch(server: &TestServer) -> reqwest::Response {
    client()
        .get(server.url("/_/keyval/api/watch?keys=k&initial=false"))
        .send()
        .await
        .expect("request")
}

/// A watch stream opened as soon as a closed one's slot is free again (the
/// server notices a closed connection on its own time).
async fn once_a_slot_frees(server: &TestServer) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let res = watch(server).await;
        if res.status() == 200 {
            return res;
        }
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_opening_too_many_streams_is_refused_until_one_closes() {
    let server = start().await;
    let per_client = buntime::capabilities::DEFAULT_MAX_STREAMS_PER_CLIENT;
    let mut open = Vec::new();
    for i in 0..per_client {
        let res = watch(&server).await;
        assert_eq!(res.status(), 200, "stream {i}");
        open.push(res);
    }
    let refused = watch(&server).await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["code"], "TOO_MANY_STREAMS", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("this client has {per_client} event streams open")),
        "{body}"
    );
    // The stats stream counts too.
    let sse = client()
        .get(server.url("/_/sse"))
        .send()
        .await
        .expect("request");
    assert_eq!(sse.status(), 429);
    // Closing one frees its slot (the server notices the closed connection).
    drop(open.pop());
    open.push(once_a_slot_frees(&server).await);
    drop(open);
    server.stop().await;
}

/// The server-wide cap (`RUNTIME_MAX_STREAMS`) holds across kinds of stream
/// (plugin streams and `/_/sse`) and below the per-client one.
#[tokio::test]
async fn the_server_refuses_streams_past_its_total_until_one_closes() {
    let server =
        TestServer::try_start_plugins_configured(
            buntime::plugins::embedded(),
            |_| {},
            |state| {
                state.plugins.services().events.set_stream_limits(
                    buntime::capabilities::StreamLimits {
                        total: 2,
                        per_client: 10,
                    },
                )
            },
        )
        .await
        .expect("server with the core plugins");
    let mut open = vec![watch(&server).await];
    let sse = client()
        .get(server.url("/_/sse"))
        .send()
        .await
        .expect("request");
    assert_eq!(sse.status(), 200);
    open.push(sse);
    assert_eq!(open[0].status(), 200);
    let refused = watch(&server).await;
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["code"], "STREAMS_EXHAUSTED", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("the server has 2 event streams open"),
        "{body}"
    );
    drop(open.remove(0));
    open.push(once_a_slot_frees(&server).await);
    drop(open);
    server.stop().await;
}

#[tokio::test]
async fn full_text_indexes_per_tenant_are_capped() {
    let server = start().await;
    let url = server.url("/_/keyval/api/indexes?tenant=acme");
    for i in 0..16 {
        let (status, body) = send(
            client()
                .post(&url)
                .json(&json!({"prefix": ["p", i], "options": {"fields": ["title"]}})),
        )
        .await;
        assert_eq!(status, 201, "index {i}: {body}");
    }
    let (status, body) = send(
        client()
            .post(&url)
            .json(&json!({"prefix": ["p", 99], "options": {"fields": ["title"]}})),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "TOO_MANY_INDEXES", "{body}");
    // Another tenant has its own allowance.
    let (status, body) = send(
        client()
            .post(server.url("/_/keyval/api/indexes?tenant=globex"))
            .json(&json!({"prefix": ["p"], "options": {"fields": ["title"]}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    server.stop().await;
}
