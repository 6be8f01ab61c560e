//! The host-executed proxy: what reaches the upstream and the client,
//! bodies streamed (never held whole), failures and grants.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{MIB, rule, start, upstream};
use crate::plugins::{expect_error, seen_header};
use crate::server::client;

/// How long the host waits for an upstream's answer when a rule sets no
/// `timeoutMs` (docs/plugins/proxy.md): what a rule whose own limit were
/// ignored would wait for.
const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting may take when a rule sets no `connectTimeoutMs`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_proxied_get_carries_forwarded_headers_and_no_hop_by_hop_ones() {
    let (up, _) = upstream().await;
    let server = start(
        json!({ "rules": [rule("^/svc/(.*)$", &format!("http://{up}/echo/$1"), json!({
            "headers": { "x-added": "yes" },
            "removeHeaders": ["x-remove-me"],
        }))] }),
        None,
    )
    .await;
    let res = client()
        .get(server.url("/svc/a/b?q=1"))
        // A spoofed account from an untrusted peer is never passed on.
        .header("x-forwarded-for", "6.6.6.6")
        .header("forwarded", "for=6.6.6.6")
        .header("x-remove-me", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("x-kept", "1")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-upstream"], "1");
    assert!(res.headers().get("proxy-authenticate").is_none());
    assert_eq!(
        res.headers()["x-kit"],
        "seen",
        "the plugins before the proxy see the response"
    );
    let seen: Value = res.json().await.expect("json");
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["path"], "/echo/a/b");
    assert_eq!(seen["query"], "q=1");
    let header = |n: &str| seen_header(&seen, n);
    let server_host = server.url("").trim_start_matches("http://").to_owned();
    assert_eq!(header("host"), Some(up.to_string()));
    assert_eq!(header("x-added").as_deref(), Some("yes"));
    assert_eq!(header("x-kept").as_deref(), Some("1"));
    assert_eq!(header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(header("x-forwarded-host"), Some(server_host.clone()));
    assert_eq!(
        header("forwarded"),
        Some(format!("for=127.0.0.1;proto=http;host=\"{server_host}\""))
    );
    for gone in ["x-remove-me", "keep-alive", "proxy-authorization"] {
        assert_eq!(header(gone), None, "{gone} reached the upstream: {seen}");
    }

    // A path that would climb out of what the rule forwards to is refused
    // (sent raw: HTTP clients resolve dot segments themselves).
    for path in ["/svc/../secret", "/svc/%2E%2e/secret"] {
        let addr = server_host.clone();
        let mut tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let raw = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut tcp, raw.as_bytes())
            .await
            .expect("write");
        let mut answer = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut answer)
            .await
            .expect("read");
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("INVALID_PATH"), "{path}: {answer}");
    }

    // A client speaking HTTP/2 is forwarded over HTTP/1.1, its host taken
    // from the request's authority.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let res = h2
        .get(server.url("/svc/h2"))
        .send()
        .await
        .expect("h2 request");
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    let seen: Value = res.json().await.expect("json");
    assert_eq!(seen["path"], "/echo/h2");
    assert_eq!(seen_header(&seen, "x-forwarded-host"), Some(server_host));
}

/// A rule's headers cannot reframe what the upstream reads: the body goes
/// up as the client sent it, framed by the host.
#[tokio::test]
async fn a_rule_cannot_reframe_the_request_body() {
    let (up, _) = upstream().await;
    let server = start(
        json!({ "rules": [rule("^/up$", &format!("http://{up}/upload"), json!({
            "headers": { "content-length": "3", "transfer-encoding": "chunked" },
            "removeHeaders": ["content-length"],
        }))] }),
        None,
    )
    .await;
    let res = client()
        .post(server.url("/up"))
        .body("hello world")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let got: Value = res.json().await.expect("json");
    assert_eq!(got["received"], 11, "{got}");
}

#[tokio::test]
async fn large_bodies_stream_both_ways_without_being_held() {
    let (up, shared) = upstream().await;
    let server = start(
        json!({ "rules": [
            rule("^/up$", &format!("http://{up}/upload"), json!({})),
            rule("^/down$", &format!("http://{up}/download"), json!({})),
        ] }),
        None,
    )
    .await;

    // Up: the upstream has the first MiB while the client still holds the
    // other 63; only then is the rest sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    let sending = tokio::spawn(
        client()
            .post(server.url("/up"))
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    );
    tx.send(vec![1u8; MIB]).await.expect("first MiB");
    let mut received = shared.received.subscribe();
    tokio::time::timeout(Duration::from_secs(10), received.wait_for(|n| *n > 0))
        .await
        .expect("the upstream got the start of the body before the client finished sending")
        .expect("watch");
    for _ in 1..64 {
        tx.send(vec![1u8; MIB]).await.expect("next MiB");
    }
    drop(tx);
    let res = sending.await.expect("join").expect("upload");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["received"], 64 * MIB as u64);

    // Down: the client has the first MiB while the upstream still holds
    // the other 63 (it sends them only when told).
    let res = client()
        .get(server.url("/down?mib=64"))
        .send()
        .await
        .expect("download");
    assert_eq!(res.status(), 200);
    let mut stream = res.bytes_stream();
    let mut total = 0usize;
    while total == 0 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the start of the body arrived before the upstream finished")
            .expect("a chunk")
            .expect("bytes");
        total += chunk.len();
    }
    shared.go.notify_one();
    while let Some(chunk) = stream.next().await {
        total += chunk.expect("bytes").len();
    }
    assert_eq!(total, 64 * MIB);
}

#[tokio::test]
async fn an_upstream_down_is_502_and_a_slow_one_504_at_its_timeout() {
    let (up, _) = upstream().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let server = start(
        json!({ "rules": [
            rule("^/dead", &format!("http://{dead}"), json!({})),
            rule("^/slow", &format!("http://{up}/slow"), json!({ "timeoutMs": 300 })),
        ] }),
        None,
    )
    .await;

    let res = client()
        .get(server.url("/dead/x"))
        .send()
        .await
        .expect("req");
    assert_eq!(res.headers()["x-kit"], "seen");
    let body = expect_error(res, 502, &format!("http://{dead}")).await;
    assert_eq!(body["code"], "UPSTREAM_UNAVAILABLE");
    assert!(body["requestId"].as_str().is_some_and(|id| !id.is_empty()));

    let started = Instant::now();
    let res = client()
        .post(server.url("/slow"))
        .body("x")
        .send()
        .await
        .expect("req");
    let took = started.elapsed();
    let body = expect_error(res, 504, "300 ms").await;
    assert_eq!(body["code"], "UPSTREAM_TIMEOUT");
    // Not before its 300 ms, and well before the 30 s a rule without
    // `timeoutMs` waits (half of it leaves a loaded machine room).
    assert!(
        took >= Duration::from_millis(300) && took < DEFAULT_UPSTREAM_TIMEOUT / 2,
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn a_target_outside_the_grant_is_refused_naming_the_grant() {
    let (up, _) = upstream().await;
    let server = start(
        json!({ "rules": [rule("^/svc/", &format!("http://{up}/echo/x"), json!({}))] }),
        Some(json!({ "upstream": { "allow": ["https://*:*"] } })),
    )
    .await;
    let res = client().get(server.url("/svc/")).send().await.expect("req");
    let body = expect_error(res, 502, &format!("\"upstream\": [\"http://{up}\"]")).await;
    assert_eq!(body["code"], "UPSTREAM_DENIED");
    let metrics: Value = crate::server::get(&server.url("/_/metrics"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        metrics["engine"]["denialsByCapability"]["upstream"], 1,
        "the denial is counted: {metrics:#}"
    );
}

#[tokio::test]
async fn private_addresses_are_refused_after_dns_unless_granted() {
    let (up, _) = upstream().await;
    let port = up.port();
    let server = start(
        json!({ "rules": [
            rule("^/ip/", &format!("http://127.0.0.1:{port}/echo/x"), json!({})),
            rule("^/name/", &format!("http://localhost:{port}/echo/x"), json!({})),
        ] }),
        Some(json!({ "upstream": { "privateNetworks": false } })),
    )
    .await;
    for path in ["/ip/", "/name/"] {
        let res = client().get(server.url(path)).send().await.expect("req");
        let body = expect_error(res, 502, "private address").await;
        assert_eq!(body["code"], "UPSTREAM_DENIED", "{path}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("privateNetworks")),
            "{body}"
        );
    }
}

#[tokio::test]
async fn an_upload_longer_than_the_timeout_is_not_a_slow_upstream() {
    let (up, _) = upstream().await;
    let server = start(
        json!({ "rules": [rule("^/up$", &format!("http://{up}/upload"), json!({ "timeoutMs": 1000 }))] }),
        None,
    )
    .await;
    // 15 pieces 100 ms apart: 1.5 s in all, never 1 s of silence.
    let stream = futures_util::stream::unfold(0u32, |i| async move {
        if i == 15 {
            return None;
        }
        if i > 0 {
            // Paces the upload: 10x under the timeout, so only a machine
            // stalled for a whole second could stretch a gap past it.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some((Ok::<_, std::io::Error>(vec![1u8; 1024]), i + 1))
    });
    let started = Instant::now();
    let res = client()
        .post(server.url("/up"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("upload");
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["received"], 15 * 1024);
}

#[tokio::test]
async fn the_client_a_trusted_proxy_reports_is_forwarded() {
    let (up, _) = upstream().await;
    let rules = json!({ "rules": [rule("^/svc/", &format!("http://{up}/echo/x"), json!({}))] });
    // Loopback is a trusted proxy here.
    let server = crate::security::start(
        crate::security::policy(None),
        buntime::plugins::embedded(),
        |root| super::setup(root, rules, None),
    )
    .await;
    let res = client()
        .get(server.url("/svc/"))
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "shop.example.com")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let seen: Value = res.json().await.expect("json");
    let header = |n: &str| seen_header(&seen, n);
    assert_eq!(header("x-forwarded-for").as_deref(), Some("203.0.113.7"));
    assert_eq!(header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        header("x-forwarded-host").as_deref(),
        Some("shop.example.com")
    );
    assert_eq!(
        header("forwarded").as_deref(),
        Some("for=203.0.113.7;proto=https;host=\"shop.example.com\"")
    );
}

#[tokio::test]
async fn an_upstream_that_never_accepts_is_504_at_the_connect_timeout() {
    // A listener whose accept queue is full and never drained: the kernel
    // drops further handshakes, so connecting hangs until the timeout (a
    // non-routable address would need a network the test may not have).
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let full = listener.local_addr().expect("addr");
    let mut queued = Vec::new();
    // Linux queues backlog + 1 handshakes; fill it until one hangs.
    loop {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(full),
        )
        .await
        {
            Ok(Ok(stream)) => queued.push(stream),
            Ok(Err(e)) => panic!("filling the backlog: {e}"),
            Err(_) => break,
        }
        assert!(queued.len() < 64, "the backlog never filled");
    }
    let server = start(
        json!({ "rules": [rule("^/full", &format!("http://{full}"), json!({ "connectTimeoutMs": 300 }))] }),
        None,
    )
    .await;
    let started = Instant::now();
    let res = client()
        .get(server.url("/full/x"))
        .send()
        .await
        .expect("req");
    let took = started.elapsed();
    assert_eq!(res.headers()["x-kit"], "seen");
    let body = expect_error(res, 504, &format!("http://{full}")).await;
    assert_eq!(body["code"], "UPSTREAM_TIMEOUT");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("300 ms") && m.contains("connecting")),
        "{body}"
    );
    // Not before its 300 ms, and before half the 5 s a rule without
    // `connectTimeoutMs` waits.
    assert!(
        took >= Duration::from_millis(300) && took < DEFAULT_CONNECT_TIMEOUT / 2,
        "answered after {took:?}"
    );
    drop(listener);
}
