//! Core routes, SSE, connection limits and graceful shutdown.

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_routes_report_health_apps_and_metrics() {
    let server = TestServer::start(|root| {
        install_echo(root, "echo/1.0.0", None);
        install_site(root);
    })
    .await;
    let health: serde_json::Value = get(&server.url("/_/api/health"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(get(&server.url("/_/api/health/live")).await.status(), 200);
    assert_eq!(get(&server.url("/_/api/health/ready")).await.status(), 200);
    let apps: serde_json::Value = get(&server.url("/_/api/apps"))
        .await
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = apps["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert!(names.contains(&"echo") && names.contains(&"site"), "{apps}");
    get(&server.url("/echo/")).await;
    get(&server.url("/echo/")).await;
    let m: serde_json::Value = get(&server.url("/_/metrics"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(m["requests"], 2);
    assert_eq!(
        m["instancesCreated"], 2,
        "ephemeral by default: one instance per request"
    );
    let s: serde_json::Value = get(&server.url("/_/stats"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(s["workers"][0]["app"], "echo@1.0.0");
    let wk: serde_json::Value = get(&server.url("/.well-known/buntime"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(wk["runtime"], "buntime");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_request_finish() {
    let server = TestServer::start(|root| {
        install_echo(root, "work/1.0.0", Some(r#"{ timeout: "20s", ttl: "1m" }"#));
    })
    .await;
    // Warm up so the timed request does not include compilation.
    assert_eq!(get(&server.url("/work/work?n=10")).await.status(), 200);
    let url = server.url("/work/work?n=400000000");
    let in_flight = tokio::spawn(async move {
        let res = get(&url).await;
        (res.status(), res.text().await.unwrap_or_default())
    });
    // Stop only once the request is being worked on (or already done).
    wait_until_active(&server, 1).await;
    let base = server.base.clone();
    server.stop().await;
    let (status, body) = in_flight.await.expect("join");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("worked"), "{body}");
    // The listener is closed.
    assert!(
        reqwest::get(format!("{base}/_/api/health/live"))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_live_stats() {
    let server = TestServer::start(|root| {
        install_echo(root, "echo/1.0.0", None);
    })
    .await;
    get(&server.url("/echo/")).await;
    let mut res = get(&server.url("/_/sse")).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/event-stream")
    );
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), res.chunk())
            .await
            .expect("an event within 5 s")
            .expect("read")
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.starts_with("event: stats\n"), "{seen}");
    assert!(seen.contains("echo@1.0.0"), "{seen}");
    drop(res);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_and_header_floods_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_millis(300),
        max_headers: 20,
        ..ConnectionLimits::default()
    };
    let server = TestServer::start_full(4, limits, |_| {}).await;
    let addr = server.base.trim_start_matches("http://").to_owned();

    // A client that starts a request and never finishes its headers.
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /_/api/health HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    // A server that ignored the 300 ms limit would close at the default
    // header timeout (10 s); half of that tells the two apart and leaves a
    // loaded machine room.
    let cut_within = ConnectionLimits::default().header_read_timeout / 2;
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(cut_within, slow.read_to_end(&mut buf)).await;
    let took = started.elapsed();
    assert!(
        read.is_ok(),
        "the server kept a stalled connection open for {cut_within:?}"
    );
    assert!(
        took >= Duration::from_millis(250),
        "closed after {took:?}, before the 300 ms header timeout"
    );
    assert!(
        buf.is_empty(),
        "a stalled request gets no answer, only a close: {}",
        String::from_utf8_lossy(&buf)
    );

    // Too many header lines.
    let mut flood = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let mut req = String::from("GET /_/api/health HTTP/1.1\r\nhost: x\r\n");
    for i in 0..50 {
        req.push_str(&format!("x-h{i}: v\r\n"));
    }
    req.push_str("connection: close\r\n\r\n");
    flood.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), flood.read_to_end(&mut out))
        .await
        .expect("the flood's connection is closed")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "a header flood is refused with a 431: {text}"
    );

    // Normal requests still work.
    assert_eq!(get(&server.url("/_/api/health")).await.status(), 200);
    server.stop().await;
}

/// A loopback listener that records the paths it is asked for.
async fn notify_listener() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let record = record.clone();
        async move {
            record.lock().expect("lock").push(uri.path().to_owned());
            "ok"
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn idle_instances_get_on_idle_then_on_terminate_and_recycled_ones_on_terminate() {
    let (notify, seen) = notify_listener().await;
    let worker = format!(
        r#"{{ ttl: "1m", timeout: "1s", idleTimeout: "1s", maxRequests: 2,
             env: {{ NOTIFY_URL: "{notify}" }},
             capabilities: {{ http: ["http://127.0.0.1:*"] }} }}"#
    );
    // The app reaches a loopback listener: a private address, which the
    // operator's ceiling must allow.
    let server = TestServer::start_plugins(|root| {
        install_echo(root, "apps/echo", Some(&worker));
        std::fs::write(
            root.join("buntime.jsonc"),
            r#"{ apps: { ceiling: { capabilities: { http: { allow: ["*"], privateNetworks: true } } } } }"#,
        )
        .expect("buntime.jsonc");
    })
    .await;
    // Two requests on one instance: the second reaches maxRequests, so the
    // instance is retired with on_terminate (no on_idle).
    for _ in 0..2 {
        assert_eq!(get(&server.url("/echo/count")).await.status(), 200);
    }
    // A third creates a fresh instance that then goes idle: on_idle, then on_terminate.
    assert_eq!(
        get(&server.url("/echo/count"))
            .await
            .text()
            .await
            .expect("text"),
        "1"
    );
    // The idle instance's hooks come after its 1 s `idleTimeout`; the
    // margin is for a loaded machine (only a failing test waits this long).
    let calls =
        crate::support::eventually("three lifecycle hooks", Duration::from_secs(15), || async {
            let calls = seen.lock().expect("lock").clone();
            if calls.len() >= 3 {
                Ok(calls)
            } else {
                Err(calls)
            }
        })
        .await;
    assert_eq!(calls, ["/terminate", "/idle", "/terminate"]);
    server.stop().await;
}

#[tokio::test]
async fn stats_list_each_warm_instance() {
    let server = TestServer::start(|root| {
        install_echo(root, "echo/1.0.0", Some(r#"{ ttl: "1m" }"#));
    })
    .await;
    for _ in 0..3 {
        assert_eq!(get(&server.url("/echo/count")).await.status(), 200);
    }
    let s: serde_json::Value = get(&server.url("/_/stats"))
        .await
        .json()
        .await
        .expect("json");
    let instances = s["workers"][0]["instances"]
        .as_array()
        .expect("instances")
        .clone();
    assert_eq!(instances.len(), 1, "{s:#}");
    assert_eq!(instances[0]["state"], "idle");
    assert_eq!(instances[0]["requests"], 3);
    assert!(instances[0]["idleSeconds"].as_f64().expect("idle") < 5.0);
    assert!(
        instances[0]["ageSeconds"].as_f64().expect("age")
            >= instances[0]["idleSeconds"].as_f64().expect("idle")
    );
    server.stop().await;
}
