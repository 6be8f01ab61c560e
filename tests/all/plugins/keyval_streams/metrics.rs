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

    // The same series in the host's exposition; the plugin's own text
    // route is gone.
    assert_eq!(kv.get("/metrics/prometheus").await.0, 404);
    let text = crate::server::metrics::prometheus_text(&kv.server.url("/_/metrics")).await;
    let series = |name: &str, op: &str| {
        format!(
            "buntime_plugin_keyval_{name}{{plugin=\"@buntime/plugin-keyval\",operation=\"{op}\"}}"
        )
    };
    assert!(
        text.contains("# TYPE buntime_plugin_keyval_operations_total counter"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} 3\n", series("operations_total", "get"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} 2\n", series("operations_total", "set"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} 0\n", series("operation_errors_total", "get"))),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{} 3\n",
            series("operation_duration_seconds_count", "get")
        )),
        "{text}"
    );
    // The host counts keyval's capability calls and times its statements.
    for series in [
        "buntime_capability_calls_total{plugin=\"@buntime/plugin-keyval\",capability=\"sql\"} ",
        "buntime_capability_calls_total{plugin=\"@buntime/plugin-keyval\",capability=\"metrics\"} ",
        "buntime_sql_statement_duration_seconds_count{function=\"query\"} ",
        "buntime_sql_statement_duration_seconds_count{function=\"execute\"} ",
    ] {
        let n = text
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.parse::<f64>().ok());
        assert!(n.is_some_and(|n| n > 0.0), "{series}: {n:?}\n{text}");
    }
    crate::server::metrics::promtool_check(&text);
    kv.server.stop().await;
}
