//! `GET /metrics`: per-operation counters.

use super::*;

#[tokio::test]
async fn metrics_count_operations() {
    let kv = Kv::start().await;
    let (status, before) = kv.get("/metrics").await;
    assert_eq!(status, 200, "{before}");
    let calls = |m: &Value, op: &str| m["operations"][op]["calls"].as_i64().unwrap_or(-1);
    for op in [
        "get", "set", "delete", "list", "atomic", "enqueue", "dequeue", "ack",
    ] {
        assert_eq!(calls(&before, op), 0, "{op}: {before}");
    }

    kv.set("m/1", &json!(1)).await;
    kv.set("m/2", &json!(2)).await;
    assert_eq!(kv.get("/keys/m/1").await.0, 200);
    assert_eq!(kv.get("/keys/m/2").await.0, 200);
    assert_eq!(kv.get("/keys/m/3").await.0, 404);
    assert_eq!(kv.get("/keys?prefix=m").await.0, 200);
    kv.atomic(&json!({ "mutations": [{ "type": "delete", "key": ["m", 2] }] }))
        .await;
    assert_eq!(kv.delete("/keys/m/1").await.0, 200);
    kv.enqueue(&json!({ "value": 1 })).await;
    let m = kv.poll().await.expect("message");
    kv.post("/queue/ack", &json!({ "id": m["id"] })).await;

    let (_, after) = kv.get("/metrics").await;
    for (op, n) in [
        ("set", 2),
        ("get", 3),
        ("list", 1),
        ("atomic", 1),
        ("delete", 1),
        ("enqueue", 1),
        ("dequeue", 1),
        ("ack", 1),
        ("nack", 0),
        ("search", 0),
    ] {
        assert_eq!(calls(&after, op), n, "{op}: {after}");
        assert_eq!(after["operations"][op]["errors"], 0, "{op}: {after}");
    }
    assert!(
        after["operations"]["get"]["avgLatencyMs"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0),
        "{after}"
    );

    let res = kv
        .http
        .get(kv.url("/metrics/prometheus"))
        .send()
        .await
        .expect("prometheus");
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"]
        .to_str()
        .expect("ct")
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = res.text().await.expect("text");
    assert!(
        text.contains("# TYPE keyval_operations_total counter"),
        "{text}"
    );
    assert!(
        text.contains("keyval_operations_total{operation=\"get\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("keyval_operations_total{operation=\"set\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("keyval_errors_total{operation=\"get\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("keyval_latency_ms_avg{operation=\"get\"} "),
        "{text}"
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
    }
    kv.server.stop().await;
}
