//! Cancellation never leaks capacity: a client that goes away mid-request
//! frees the plugin instance, the app slot and the queue place it held.

use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::guests;
use crate::plugins::install_plugin;
use crate::server::{TestServer, client, get};

/// Opens a connection and sends a request on it without waiting for the
/// answer; dropping the stream is the client going away.
async fn send_and_hold(base: &str, path: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes())
        .await
        .expect("write");
    stream
}

async fn json(server: &TestServer, path: &str) -> Value {
    get(&server.url(path)).await.json().await.expect("json")
}

/// Polls `read` until `wanted` holds (up to 5 s); the last value otherwise.
async fn until(
    server: &TestServer,
    path: &str,
    read: impl Fn(&Value) -> Value,
    wanted: Value,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let seen = read(&json(server, path).await);
        if seen == wanted || tokio::time::Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_hook_frees_its_plugin_instance() {
    let server = TestServer::start_plugins(|root| {
        let wasm = root.join("spinner.wat");
        std::fs::write(&wasm, guests::plugin(1000)).expect("wat");
        install_plugin(
            root,
            "spinner",
            r#"{ "name": "spinner", "version": "1.0.0", "limits": { "instances": 1, "timeout": "30s" } }"#,
            wasm.to_str().expect("utf-8 path"),
        );
        crate::plugins::echo(root);
    })
    .await;
    let in_flight = |v: &Value| v["plugins"][0]["instances"]["inFlight"].clone();
    // Compiled and warm before the rounds.
    assert_eq!(get(&server.url("/echo/")).await.status(), 200);
    for round in 0..3 {
        let held = send_and_hold(&server.base, &guests::long_path("/echo/", 1200)).await;
        let seen = until(&server, "/_/api/plugins", in_flight, 1.into()).await;
        assert_eq!(seen, 1, "round {round}: the spinning hook never started");
        drop(held);
        let seen = until(&server, "/_/api/plugins", in_flight, 0.into()).await;
        assert_eq!(seen, 0, "round {round}: the instance was not freed");
    }
    // The plugin's one instance place is free: a normal request passes
    // (with the place leaked it would wait for it, then fail).
    assert_eq!(get(&server.url("/echo/")).await.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_the_queue_frees_its_place() {
    let server = TestServer::start(|root| {
        let dir = root.join("one");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("app.wasm"), guests::app(1000, false, true)).expect("app");
        std::fs::write(
            dir.join("worker.jsonc"),
            r#"{ timeout: "30s", ttl: "1m", maxConcurrency: 1, maxQueue: 1 }"#,
        )
        .expect("worker.jsonc");
    })
    .await;
    let pool = |field: &'static str| move |v: &Value| v["workers"][0][field].clone();
    // One request spinning in the only slot, one waiting behind it.
    let running = send_and_hold(&server.base, &guests::long_path("/one/", 1200)).await;
    assert_eq!(
        until(&server, "/_/stats", pool("active"), 1.into()).await,
        1
    );
    let queued = send_and_hold(&server.base, "/one/").await;
    assert_eq!(
        until(&server, "/_/stats", pool("queued"), 1.into()).await,
        1
    );
    // The waiting client leaves: its queue place is free again.
    drop(queued);
    assert_eq!(
        until(&server, "/_/stats", pool("queued"), 0.into()).await,
        0,
        "the queue still counts a client that left"
    );
    // So another request can wait in it (a full queue would answer 503)...
    let waiting = tokio::spawn({
        let url = server.url("/one/");
        async move { get(&url).await.status() }
    });
    assert_eq!(
        until(&server, "/_/stats", pool("queued"), 1.into()).await,
        1
    );
    // ...and is served once the spinning client leaves and frees the slot.
    drop(running);
    let status = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served after the slot was freed")
        .expect("join");
    assert_eq!(status, 200);
    assert_eq!(
        until(&server, "/_/stats", pool("active"), 0.into()).await,
        0
    );
    // One request waited and was served: the one that left is not counted.
    let metrics = client()
        .get(server.url("/_/metrics"))
        .header("accept", "text/plain")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"buntime_pool_queue_wait_seconds_count{app="one",version="latest"} 1"#),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("queue_wait"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    server.stop().await;
}
