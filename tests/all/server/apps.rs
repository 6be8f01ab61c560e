//! PDK apps through the pool: bodies, warm and ephemeral instances, timeouts,
//! limits, the queue, the LRU and idle reclaim.

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdk_app_gets_its_path_query_headers_and_body() {
    let server = TestServer::start(|root| {
        install_echo(root, "echo/1.0.0", None);
    })
    .await;
    let res = client()
        .post(server.url("/echo@1.0.0/some/path?x=1"))
        .header("x-test", "yes")
        .header("x-request-id", "abc-123")
        .body("hello")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    assert_eq!(res.headers()["x-app"], "echo");
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["path"], "/some/path");
    assert_eq!(body["query"], "x=1");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["x-test"], "yes");
    assert_eq!(body["body"], "hello");

    let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let res = client()
        .post(server.url("/echo/binary"))
        .body(payload.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.expect("body").to_vec(), payload);

    // Without one (or with an unusable one) the server makes a fresh id.
    let mut ids = std::collections::HashSet::new();
    for sent in [None, Some("bad id with spaces"), None] {
        let mut req = client().get(server.url("/echo/id"));
        if let Some(v) = sent {
            req = req.header("x-request-id", v);
        }
        let res = req.send().await.expect("request");
        let id = res.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_ne!(Some(id.as_str()), sent);
        assert_eq!(id.split('-').count(), 3, "{id}");
        assert!(ids.insert(id.clone()), "{id} was handed out twice");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_apps_reuse_instances_and_ephemeral_apps_do_not() {
    let server = TestServer::start(|root| {
        install_echo(root, "warm/1.0.0", Some(r#"{ ttl: "1m", maxRequests: 3 }"#));
        install_echo(root, "cold/1.0.0", Some(r#"{ ttl: 0 }"#));
    })
    .await;
    let mut warm = Vec::new();
    let mut cold = Vec::new();
    for _ in 0..5 {
        warm.push(
            get(&server.url("/warm/count"))
                .await
                .text()
                .await
                .expect("text"),
        );
        cold.push(
            get(&server.url("/cold/count"))
                .await
                .text()
                .await
                .expect("text"),
        );
    }
    // maxRequests: 3 recycles the instance after its third request.
    assert_eq!(warm, ["1", "2", "3", "1", "2"]);
    assert_eq!(cold, ["1", "1", "1", "1", "1"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_only_the_request_that_overran() {
    let server = TestServer::start(|root| {
        install_echo(
            root,
            "slow/1.0.0",
            Some(r#"{ timeout: "300ms", ttl: "1m" }"#),
        );
    })
    .await;
    let spin = tokio::spawn({
        let url = server.url("/slow/spin");
        async move { get(&url).await }
    });
    for _ in 0..5 {
        let res = get(&server.url("/slow/count")).await;
        assert_eq!(res.status(), 200);
    }
    let res = spin.await.expect("join");
    assert_eq!(res.status(), 504);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["code"], "APP_TIMEOUT");
    // The exposition counts it under the app's timeouts and 5xx answers.
    let text = client()
        .get(server.url("/_/metrics"))
        .header("accept", "text/plain")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        r#"buntime_pool_timeouts_total{app="slow",version="1.0.0"} 1"#,
        r#"buntime_http_requests_total{app="slow",version="1.0.0",method="read",status="5xx"} 1"#,
        r#"buntime_http_requests_total{app="slow",version="1.0.0",method="read",status="2xx"} 5"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_with_413() {
    let server = TestServer::start(|root| {
        install_echo(root, "small/1.0.0", Some(r#"{ maxBodySize: "1kb" }"#));
    })
    .await;
    let res = client()
        .post(server.url("/small/"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 413);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    // Without a content-length (chunked), the limit still holds.
    let stream = futures_stream(vec![vec![b'y'; 700], vec![b'y'; 700]]);
    let res = client()
        .post(server.url("/small/"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 413);
    let res = client()
        .post(server.url("/small/"))
        .body(vec![b'x'; 512])
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    server.stop().await;
}

fn futures_stream(
    chunks: Vec<Vec<u8>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::iter(chunks.into_iter().map(Ok))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after() {
    let server = TestServer::start(|root| {
        install_echo(
            root,
            "one/1.0.0",
            Some(r#"{ timeout: "2s", maxConcurrency: 1, maxQueue: 0 }"#),
        );
    })
    .await;
    let busy = tokio::spawn({
        let url = server.url("/one/spin");
        async move { get(&url).await.status() }
    });
    // Wait until the spinning request holds the only slot.
    assert!(
        wait_until_active(&server, 1).await,
        "the spinning request never started"
    );
    let res = get(&server.url("/one/count")).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["code"], "APP_BUSY");
    assert_eq!(busy.await.expect("join"), 504);
    // The slot is free again.
    assert_eq!(get(&server.url("/one/count")).await.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lru_keeps_at_most_pool_size_app_versions() {
    let server = TestServer::start_with_pool(2, |root| {
        for app in ["a", "b", "c"] {
            install_echo(root, &format!("{app}/1.0.0"), None);
        }
    })
    .await;
    for app in ["a", "b", "c", "a"] {
        assert_eq!(get(&server.url(&format!("/{app}/"))).await.status(), 200);
    }
    let m: serde_json::Value = get(&server.url("/_/metrics"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(m["apps"], 2);
    assert_eq!(m["evictions"], 2, "c evicted a, then a evicted b");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_are_reclaimed_while_others_stay_busy() {
    let server = TestServer::start(|root| {
        install_echo(
            root,
            "busy/1.0.0",
            Some(r#"{ timeout: "1s", ttl: "1m", idleTimeout: "1s", maxConcurrency: 4 }"#),
        );
    })
    .await;
    // The app compiles on its first request; with that out of the way the
    // two below arrive together.
    assert_eq!(get(&server.url("/busy/work?n=1")).await.status(), 200);
    // Two concurrent requests leave two warm instances.
    let url = server.url("/busy/work?n=100000000");
    let (a, b) = tokio::join!(get(&url), get(&url));
    assert_eq!(
        (a.status(), b.status()),
        (reqwest::StatusCode::OK, reqwest::StatusCode::OK)
    );
    let stats: serde_json::Value = get(&server.url("/_/stats"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(stats["workers"][0]["idle"], 2, "{stats}");

    // Keep one instance busy with back-to-back requests; the other one idles
    // and goes after its 1 s `idleTimeout` (the margin is for a loaded
    // machine; only a failing test waits it out).
    let within = Duration::from_secs(10);
    let deadline = std::time::Instant::now() + within;
    let mut reclaimed_while_busy = false;
    while std::time::Instant::now() < deadline {
        assert_eq!(
            get(&server.url("/busy/work?n=20000000")).await.status(),
            200
        );
        let m: serde_json::Value = get(&server.url("/_/metrics"))
            .await
            .json()
            .await
            .expect("json");
        if m["instancesRetired"].as_u64().unwrap_or(0) >= 1 {
            reclaimed_while_busy = true;
            break;
        }
    }
    assert!(
        reclaimed_while_busy,
        "the idle instance was not reclaimed under load within {within:?}"
    );
    server.stop().await;
}
