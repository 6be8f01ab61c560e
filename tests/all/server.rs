//! The server end to end: a real listener on loopback, real HTTP, apps on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use buntime::pool::Pools;
use buntime::routing::Catalog;
use buntime::server::{AppState, ConnectionLimits, serve_with};
use buntime::wasm::{Engine, EngineConfig, abi::body_functions};
use buntime_fixtures as fx;

/// A running server over a temporary worker dir.
pub struct TestServer {
    pub base: String,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(setup: impl FnOnce(&Path)) -> Self {
        Self::start_with_pool(16, setup).await
    }

    /// Like [`TestServer::start`] with `pool_size` app versions kept warm.
    pub async fn start_with_pool(pool_size: usize, setup: impl FnOnce(&Path)) -> Self {
        Self::start_full(pool_size, ConnectionLimits::default(), setup).await
    }

    /// Full control: pool size and connection limits.
    pub async fn start_full(
        pool_size: usize,
        limits: ConnectionLimits,
        setup: impl FnOnce(&Path),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        setup(dir.path());
        let mut config = EngineConfig::default();
        config.host_functions.extend(body_functions());
        let engine = Engine::new(config).expect("engine");
        let state = AppState {
            catalog: Arc::new(Catalog::new(vec![dir.path().to_owned()])),
            pools: Pools::new(engine, pool_size),
            started: std::time::Instant::now(),
            shutting_down: Arc::default(),
            app_settings: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(
            listener,
            state,
            async move {
                let _ = rx.await;
            },
            limits,
        ));
        Self {
            base,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signals shutdown and waits for the server to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("join").expect("serve");
        }
    }
}

/// Installs the echo app at `dir/<rel>/app.wasm` with an optional worker.jsonc.
pub fn install_echo(root: &Path, rel: &str, worker: Option<&str>) -> PathBuf {
    let dir = root.join(rel);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(fx::APP_ECHO, dir.join("app.wasm")).expect("copy wasm");
    if let Some(w) = worker {
        std::fs::write(dir.join("worker.jsonc"), w).expect("worker.jsonc");
    }
    dir
}

fn install_site(root: &Path) {
    let site = root.join("site");
    std::fs::create_dir_all(site.join("assets")).expect("mkdir");
    std::fs::write(
        site.join("index.html"),
        "<html><head><title>t</title></head><body>spa</body></html>",
    )
    .expect("write");
    std::fs::write(site.join("assets/app.js"), "console.log('hi')").expect("write");
    std::fs::write(root.join("secret.txt"), "top secret").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(root.join("secret.txt"), site.join("leak.txt")).expect("symlink");
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .send()
        .await
        .expect("request")
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_resolve_like_npm_ranges() {
    let server = TestServer::start(|root| {
        for v in ["1.0.0", "1.2.0", "1.2.5", "1.10.1", "2.0.0"] {
            install_echo(root, &format!("echo/{v}"), None);
        }
        install_echo(root, "echo@3.0.0-rc.1", None);
    })
    .await;
    let table: &[(&str, &str)] = &[
        ("/echo/", "echo@2.0.0"),
        ("/echo@1.0.0/", "echo@1.0.0"),
        ("/echo@1/", "echo@1.10.1"),
        ("/echo@1.2/", "echo@1.2.5"),
        ("/echo@~1.2.0/", "echo@1.2.5"),
        ("/echo@^1.2/", "echo@1.10.1"),
        ("/echo@%3E%3D1%20%3C2/", "echo@1.10.1"),
        ("/echo@%3E%3D1.2.0%20%3C1.3.0/", "echo@1.2.5"),
        ("/echo@2/", "echo@2.0.0"),
        ("/echo@%3C1.2/", "echo@1.0.0"),
        ("/echo@1.x/", "echo@1.10.1"),
        ("/echo@3.0.0-rc.1/", "echo@3.0.0-rc.1"),
        ("/echo@*/", "echo@2.0.0"),
    ];
    for (path, want) in table {
        let res = get(&server.url(path)).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(
            res.headers()
                .get("x-buntime-app")
                .and_then(|v| v.to_str().ok()),
            Some(*want),
            "{path}"
        );
    }
    let res = get(&server.url("/echo@9/")).await;
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["code"], "VERSION_NOT_FOUND");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("1.10.1")),
        "{body}"
    );
    assert!(
        body["requestId"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    let res = get(&server.url("/nope/")).await;
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["code"], "APP_NOT_FOUND");
    let res = get(&server.url("/echo@not-a-range/")).await;
    assert_eq!(res.status(), 400);
    server.stop().await;
}

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
async fn static_sites_serve_files_with_spa_fallback_and_etags() {
    let server = TestServer::start(install_site).await;
    let res = get(&server.url("/site/")).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html")
    );
    let etag = res.headers()["etag"].to_str().expect("etag").to_owned();
    assert!(res.text().await.expect("text").contains("spa"));

    let res = client()
        .get(server.url("/site/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 304);

    let res = get(&server.url("/site/assets/app.js")).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .contains("javascript")
    );

    let res = get(&server.url("/site/deep/client/route")).await;
    assert_eq!(
        res.status(),
        200,
        "navigation paths fall back to the entrypoint"
    );
    assert!(res.text().await.expect("text").contains("spa"));
    assert_eq!(
        get(&server.url("/site/missing.js")).await.status(),
        404,
        "assets do not fall back"
    );

    let res = client()
        .get(server.url("/site/assets/app.js"))
        .header("range", "bytes=0-6")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 206);
    assert_eq!(res.text().await.expect("text"), "console");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_traversal_is_refused_in_every_encoding() {
    let server = TestServer::start(install_site).await;
    let attempts = [
        "/site/../secret.txt",
        "/site/%2e%2e/secret.txt",
        "/site/%2E%2E%2Fsecret.txt",
        "/site/..%2fsecret.txt",
        "/site/..%5csecret.txt",
        "/site/assets/..%2f..%2fsecret.txt",
        "/site/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/site/.%2e/secret.txt",
        "/site/leak.txt",
        "/site/secret.txt%00.html",
    ];
    for path in attempts {
        // Send the path exactly as written (no client-side normalisation).
        let body = raw_get(&server.base, path).await;
        assert!(
            !body.contains("top secret"),
            "{path} leaked the file: {body}"
        );
        assert!(
            body.starts_with("HTTP/1.1 404") || body.starts_with("HTTP/1.1 400"),
            "{path}: {}",
            body.lines().next().unwrap_or("")
        );
    }
    server.stop().await;
}

async fn raw_get(base: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_is_served_without_a_restart() {
    let server = TestServer::start(|root| {
        install_echo(root, "live/1.0.0", None);
    })
    .await;
    let res = get(&server.url("/live/")).await;
    assert_eq!(res.headers()["x-buntime-app"], "live@1.0.0");
    install_echo(server.dir.path(), "live/1.1.0", None);
    tokio::time::sleep(buntime::routing::CACHE_TTL + Duration::from_millis(100)).await;
    let res = get(&server.url("/live/")).await;
    assert_eq!(res.headers()["x-buntime-app"], "live@1.1.0");
    // A brand-new app is visible at once (misses are not cached).
    install_echo(server.dir.path(), "fresh/1.0.0", None);
    assert_eq!(get(&server.url("/fresh/")).await.status(), 200);
    server.stop().await;
}

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
async fn a_bad_worker_config_is_a_clear_500_naming_file_and_field() {
    let server = TestServer::start(|root| {
        install_echo(root, "bad/1.0.0", Some(r#"{ ttl: "10s", timeout: "30s" }"#));
        install_echo(root, "typo/1.0.0", Some(r#"{ tll: 5 }"#));
    })
    .await;
    let body: serde_json::Value = get(&server.url("/bad/")).await.json().await.expect("json");
    assert_eq!(body["code"], "APP_CONFIG_INVALID");
    let msg = body["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("worker.jsonc") && msg.contains("`ttl`") && msg.contains("at least `timeout`"),
        "{msg}"
    );
    let body: serde_json::Value = get(&server.url("/typo/")).await.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("unknown field `tll`"),
        "{body}"
    );
    server.stop().await;
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
    let mut held = false;
    for _ in 0..200 {
        let stats: serde_json::Value = get(&server.url("/_/stats"))
            .await
            .json()
            .await
            .expect("json");
        if stats["workers"][0]["active"] == 1 {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(held, "the spinning request never started");
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
    // Stop only once the request is being worked on.
    for _ in 0..500 {
        let stats: serde_json::Value = get(&server.url("/_/stats"))
            .await
            .json()
            .await
            .expect("json");
        if stats["workers"][0]["active"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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

    // Keep one instance busy with back-to-back requests; the other one idles.
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
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
        "the idle instance was never reclaimed under load"
    );
    server.stop().await;
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
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept a stalled connection open");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed only after {:?}",
        started.elapsed()
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
    let _ = tokio::time::timeout(Duration::from_secs(5), flood.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "a header flood must be refused: {text}"
    );
    assert!(!text.starts_with("HTTP/1.1 200"), "{text}");

    // Normal requests still work.
    assert_eq!(get(&server.url("/_/api/health")).await.status(), 200);
    server.stop().await;
}
