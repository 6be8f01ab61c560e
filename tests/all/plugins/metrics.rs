//! The metrics core plugin end to end: the snapshot follows the requests
//! made to an app, the stream delivers samples, the history stays bounded,
//! anonymous callers are refused and a revoked `metrics` grant is named.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::{config, echo};
use crate::security::{MASTER, policy, remote, start as start_with};
use crate::server::{TestServer, get};

const METRICS: &str = "@buntime/plugin-metrics";

/// A server with the echo app and the metrics plugin sampling every 100 ms,
/// keeping `history` samples.
async fn start(history: u64) -> TestServer {
    TestServer::try_start_plugins(buntime::plugins::embedded(), |root| {
        echo(root);
        let entry = json!([METRICS, { "interval": 100, "historySize": history }]);
        config(root, &json!({ "plugins": [entry] }).to_string());
    })
    .await
    .expect("server with the core plugins")
}

async fn json_at(server: &TestServer, path: &str) -> Value {
    let res = get(&server.url(path)).await;
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.expect("json")
}

fn is_ms(v: &Value) -> bool {
    v.as_f64().is_some_and(|ms| ms > 0.0)
}

#[tokio::test]
async fn the_snapshot_follows_the_requests_made_to_an_app() {
    let server = start(10).await;
    let before = json_at(&server, "/_/monitor/api").await;
    let total = before["requests"]["total"].as_u64().expect("total");
    for _ in 0..5 {
        assert_eq!(get(&server.url("/echo/x")).await.status(), 200);
    }
    let after = json_at(&server, "/_/monitor/api").await;
    assert!(
        after["requests"]["total"].as_u64() >= Some(total + 5),
        "{after:#}"
    );
    assert!(after["pool"]["requests"].as_u64() >= Some(5), "{after:#}");
    for p in ["p50", "p95", "p99", "avg"] {
        assert!(is_ms(&after["latencyMs"][p]), "{p}: {after:#}");
    }
    let plugin = after["plugins"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == METRICS))
        .unwrap_or_else(|| panic!("no figures of the plugin itself: {after:#}"));
    assert!(plugin["calls"].as_u64() >= Some(1), "{plugin}");

    let stats = json_at(&server, "/_/monitor/api/stats").await;
    let worker = stats["workers"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["app"] == "echo"))
        .unwrap_or_else(|| panic!("no echo worker: {stats:#}"));
    assert_eq!(worker["requests"], 5, "{worker}");
    assert!(is_ms(&worker["latencyMs"]["p99"]), "{worker}");
    server.stop().await;
}

/// The `data` of each `metrics` event in `text`.
fn samples(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|block| block.lines().any(|l| l == "event: metrics"))
        .filter_map(|block| {
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            serde_json::from_str(data).ok()
        })
        .collect()
}

#[tokio::test]
async fn the_stream_delivers_samples_and_the_history_stays_bounded() {
    let server = start(3).await;
    let res = get(&server.url("/_/monitor/api/sse")).await;
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while samples(&text).len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, body.next()).await {
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("fewer than two samples: {other:?}; so far: {text}"),
        }
    }
    let got = samples(&text);
    let seq = |s: &Value| s["seq"].as_u64().expect("seq");
    assert!(seq(&got[1]) > seq(&got[0]), "{got:#?}");
    for s in &got {
        assert!(s["intervalMs"].as_u64() >= Some(90), "{s}");
        assert!(s["requestsPerSecond"].is_number(), "{s}");
        assert!(s["pool"]["instances"].is_number(), "{s}");
    }

    // The open stream keeps sampling; the history keeps the last three.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let history = json_at(&server, "/_/monitor/api/history").await;
        let kept = history["samples"].as_array().cloned().unwrap_or_default();
        assert!(kept.len() <= 3, "{history:#}");
        if kept.last().map(seq) >= Some(6) {
            assert_eq!(kept.len(), 3, "{history:#}");
            let seqs: Vec<u64> = kept.iter().map(seq).collect();
            assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
            assert_eq!(history["size"], 3);
            break;
        }
        assert!(Instant::now() < deadline, "history stuck: {history:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(body);
    server.stop().await;
}

#[tokio::test]
async fn anonymous_callers_are_refused() {
    let server = start_with(policy(Some(MASTER)), buntime::plugins::embedded(), |_| {}).await;
    let anonymous = remote(&server, reqwest::Method::GET, "/_/monitor/api")
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
    let keyed = remote(&server, reqwest::Method::GET, "/_/monitor/api")
        .header("x-api-key", MASTER)
        .send()
        .await
        .expect("request");
    assert_eq!(keyed.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_read_grant_is_named_in_the_refusal() {
    let server = TestServer::try_start_plugins(buntime::plugins::embedded(), |root| {
        let entry = json!({ "name": METRICS, "capabilities": { "metrics": { "read": false } } });
        config(root, &json!({ "plugins": [entry] }).to_string());
    })
    .await
    .expect("server");
    let res = get(&server.url("/_/monitor/api")).await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.expect("json");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(r#""metrics": {"read": true}"#), "{body}");
    // Counted against the plugin and the capability.
    let text = crate::server::metrics::prometheus_text(&server.url("/_/metrics")).await;
    let series = r#"buntime_capability_denials_by_plugin_total{plugin="@buntime/plugin-metrics",capability="metrics"} "#;
    assert!(
        text.lines()
            .any(|l| l.strip_prefix(series).is_some_and(|n| n != "0")),
        "no {series}in\n{text}"
    );
    server.stop().await;
}
