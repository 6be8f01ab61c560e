//! The gateway's `/_/gateway/api` routes end to end: buckets, the request
//! log (sampling, status and duration, the live stream), stats and the
//! per-second history.

use buntime::access::AccessPolicy;
use serde_json::{Value, json};

use super::*;

#[tokio::test]
async fn the_api_reports_and_clears_buckets_and_logs() {
    let cfg = json!({
        "rateLimit": { "requests": 2, "window": "1h", "excludePaths": ["/_/gateway/**"] },
        "requestLog": { "size": 5, "sampleRate": 1 }
    });
    let server = start(AccessPolicy::default(), cfg, &[]).await;
    for _ in 0..3 {
        send(&server, "GET", "/echo/", &[]).await;
    }
    let (status, _, m) = send(&server, "GET", "/_/gateway/api/rate-limit/metrics", &[]).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["blockedRequests"], 1, "{m}");
    assert_eq!(m["activeBuckets"], 1, "{m}");
    assert!(m["totalRequests"].as_u64().is_some_and(|n| n >= 3), "{m}");

    let (_, _, b) = send(&server, "GET", "/_/gateway/api/rate-limit/buckets", &[]).await;
    let key = b["buckets"][0]["key"]
        .as_str()
        .expect("a bucket")
        .to_owned();
    assert_eq!(key, "rl:default:ip:127.0.0.1", "{b}");
    assert_eq!(b["buckets"][0]["capacity"], 2);

    // Deleting the bucket refills it.
    let path = format!(
        "/_/gateway/api/rate-limit/buckets/{}",
        key.replace(':', "%3A")
    );
    assert_eq!(send(&server, "DELETE", &path, &[]).await.0, 200);
    assert_eq!(send(&server, "DELETE", &path, &[]).await.0, 404);
    assert_eq!(send(&server, "GET", "/echo/", &[]).await.0, 200);
    let (status, _, c) = send(&server, "POST", "/_/gateway/api/rate-limit/clear", &[]).await;
    assert_eq!((status, &c["cleared"]), (200, &json!(1)), "{c}");

    // The log keeps the last 5 requests, newest first.
    let (_, _, logs) = send(&server, "GET", "/_/gateway/api/logs?limit=10", &[]).await;
    let logs = logs["logs"].as_array().expect("logs").clone();
    assert_eq!(logs.len(), 5, "{logs:?}");
    let seqs: Vec<u64> = logs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    let (_, _, limited) = send(&server, "GET", "/_/gateway/api/logs?outcome=limited", &[]).await;
    for e in limited["logs"].as_array().unwrap() {
        assert_eq!(e["outcome"], "limited");
        assert_eq!(e["ip"], "127.0.0.1");
    }
    let (_, _, stats) = send(&server, "GET", "/_/gateway/api/logs/stats", &[]).await;
    assert_eq!(stats["entries"], 5, "{stats}");
    assert_eq!(
        send(&server, "DELETE", "/_/gateway/api/logs", &[]).await.0,
        200
    );
    let (_, _, stats) = send(&server, "GET", "/_/gateway/api/stats", &[]).await;
    assert!(
        stats["logEntries"].as_u64().is_some_and(|n| n <= 1),
        "{stats}"
    );
    let (_, _, cfg) = send(&server, "GET", "/_/gateway/api/config", &[]).await;
    assert_eq!(cfg["rateLimit"]["default"]["requests"], 2, "{cfg}");

    // The stream sends a `stats` snapshot when it opens (then every second).
    let stats = first_sse_event(&server, "/_/gateway/api/sse").await;
    assert_eq!(stats["name"], "stats", "{stats}");
    assert!(
        stats["data"]["rateLimit"]["totalRequests"]
            .as_u64()
            .is_some(),
        "{stats}"
    );
    assert!(stats["data"]["recentLogs"].is_array(), "{stats}");
    server.stop().await;
}

/// The first event of the stream at `path`: `{"name", "data"}`.
async fn first_sse_event(server: &TestServer, path: &str) -> Value {
    use futures_util::StreamExt;
    let res = client().get(server.url(path)).send().await.expect("stream");
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(end) = buf.find("\n\n") {
            let block = &buf[..end];
            let field = |k: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_owned()))
            };
            let data = field("data:").expect("data");
            return json!({
                "name": field("event:"),
                "data": serde_json::from_str::<Value>(&data).expect("JSON data"),
            });
        }
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream is open")
            .expect("a chunk");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn a_sampled_log_keeps_that_share_of_requests() {
    let cfg = json!({ "requestLog": { "size": 100, "sampleRate": 0.25 } });
    let server = start(AccessPolicy::default(), cfg, &[]).await;
    for _ in 0..20 {
        assert_eq!(send(&server, "GET", "/echo/", &[]).await.0, 200);
    }
    // 20 requests to the app; the log listing is the 21st request.
    let (_, _, logs) = send(&server, "GET", "/_/gateway/api/logs?limit=100", &[]).await;
    assert_eq!(logs["logs"].as_array().map(Vec::len), Some(5), "{logs}");
    server.stop().await;
}

#[tokio::test]
async fn log_entries_carry_the_response_status_and_duration() {
    let cfg = json!({ "requestLog": { "size": 5, "sampleRate": 1 } });
    // A plugin behind the gateway forges the gateway's marker, pointing at
    // the first request's entry with a start of 0 (a duration of decades).
    let server = crate::security::start(AccessPolicy::default(), gateway_only(), |root| {
        kit(root, "forger", "");
        setup(
            root,
            &cfg,
            &[json!(["forger", { "responseHeader": "x-gateway-log=1:1:0" }])],
        );
    })
    .await;
    let (status, head, _) = send(&server, "GET", "/echo/", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&head, "x-gateway-log"),
        None,
        "the marker never reaches the client"
    );
    let (status, _, _) = send(&server, "GET", "/nothing-here", &[]).await;
    assert_eq!(status, 404);

    let (_, _, logs) = send(&server, "GET", "/_/gateway/api/logs?limit=10", &[]).await;
    let entries = logs["logs"].as_array().expect("logs");
    let entry = |path: &str| {
        entries
            .iter()
            .find(|e| e["path"] == path)
            .unwrap_or_else(|| panic!("no entry for {path}: {logs}"))
            .clone()
    };
    let echo = entry("/echo/");
    assert_eq!(echo["status"], 200, "{echo}");
    let took = echo["durationMs"].as_f64().expect("a duration");
    assert!((0.0..60_000.0).contains(&took), "{echo}");
    let missing = entry("/nothing-here");
    assert_eq!(missing["status"], 404, "{missing}");
    assert!(missing["durationMs"].as_f64().is_some(), "{missing}");

    // The listing above is complete by now; this request is not yet.
    let (_, _, stats) = send(&server, "GET", "/_/gateway/api/logs/stats", &[]).await;
    assert_eq!(stats["byStatus"]["200"], 2, "{stats}");
    assert_eq!(stats["byStatus"]["404"], 1, "{stats}");
    assert_eq!(stats["byStatus"]["pending"], 1, "{stats}");
    server.stop().await;
}

#[tokio::test]
async fn the_metrics_history_keeps_the_counters_per_second() {
    let server = start(AccessPolicy::default(), json!({ "requestLog": null }), &[]).await;
    for _ in 0..3 {
        assert_eq!(send(&server, "GET", "/echo/", &[]).await.0, 200);
    }
    let history = "/_/gateway/api/metrics/history";
    let (status, _, h) = send(&server, "GET", history, &[]).await;
    assert_eq!(status, 200, "{h}");
    let list = h["history"].as_array().expect("history").clone();
    assert!(!list.is_empty(), "{h}");
    assert!(
        list[0]["totalRequests"].as_u64().is_some_and(|n| n >= 1),
        "{h}"
    );
    for pair in list.windows(2) {
        assert!(
            pair[0]["timestamp"].as_u64() < pair[1]["timestamp"].as_u64(),
            "{h}"
        );
        assert!(
            pair[0]["totalRequests"].as_u64() <= pair[1]["totalRequests"].as_u64(),
            "{h}"
        );
    }
    for e in &list {
        for field in ["blockedRequests", "preflightRequests", "allowedRequests"] {
            assert!(e[field].as_u64().is_some(), "{field}: {e}");
        }
    }

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        * 1000;
    let (status, _, c) = send(&server, "DELETE", history, &[]).await;
    assert_eq!(status, 200, "{c}");
    assert!(c["cleared"].as_u64().is_some_and(|n| n >= 1), "{c}");
    let (_, _, h) = send(&server, "GET", history, &[]).await;
    for e in h["history"].as_array().expect("history") {
        assert!(
            e["timestamp"].as_u64().is_some_and(|t| t >= before),
            "an entry from before the clear: {h}"
        );
    }
    server.stop().await;
}
