//! Per-operation counters (calls, errors, total latency) in the plugin's
//! host state, so every instance adds to the same numbers; JSON and
//! Prometheus text.

use buntime_pdk::plugin::state;
use serde_json::{Map, Value, json};

/// The operations counted.
pub const OPERATIONS: [&str; 12] = [
    "get", "set", "delete", "list", "count", "batch", "atomic", "enqueue", "dequeue", "ack",
    "nack", "search",
];

/// Records one call of `op` that took `micros` and failed or not. Counting
/// must never fail a request, so errors here are ignored.
pub fn record(op: &str, micros: u64, failed: bool) {
    let _ = state::incr(&format!("m:{op}:calls"), 1, None);
    let _ = state::incr(
        &format!("m:{op}:us"),
        i64::try_from(micros).unwrap_or(i64::MAX),
        None,
    );
    if failed {
        let _ = state::incr(&format!("m:{op}:errors"), 1, None);
    }
}

fn read(key: &str) -> i64 {
    state::get::<i64>(key).ok().flatten().map_or(0, |(v, _)| v)
}

/// `{"operations": {"get": {"calls", "errors", "avgLatencyMs"}, ...}}`.
pub fn json() -> Value {
    let mut ops = Map::new();
    for op in OPERATIONS {
        let calls = read(&format!("m:{op}:calls"));
        let us = read(&format!("m:{op}:us"));
        let errors = read(&format!("m:{op}:errors"));
        let avg = if calls > 0 {
            us as f64 / calls as f64 / 1000.0
        } else {
            0.0
        };
        ops.insert(
            op.into(),
            // `count` is the original's name for `calls`.
            json!({ "calls": calls, "count": calls, "errors": errors, "avgLatencyMs": avg }),
        );
    }
    json!({ "operations": ops })
}

/// The same in Prometheus text format.
pub fn prometheus() -> String {
    let m = json();
    let mut out = String::from(
        "# HELP keyval_operations_total Keyval operations.\n# TYPE keyval_operations_total counter\n",
    );
    let ops = m["operations"].as_object().cloned().unwrap_or_default();
    for (op, v) in &ops {
        out.push_str(&format!(
            "keyval_operations_total{{operation=\"{op}\"}} {}\n",
            v["calls"]
        ));
    }
    out.push_str("# HELP keyval_errors_total Keyval operations that failed.\n# TYPE keyval_errors_total counter\n");
    for (op, v) in &ops {
        out.push_str(&format!(
            "keyval_errors_total{{operation=\"{op}\"}} {}\n",
            v["errors"]
        ));
    }
    out.push_str("# HELP keyval_latency_ms_avg Average latency per operation.\n# TYPE keyval_latency_ms_avg gauge\n");
    for (op, v) in &ops {
        out.push_str(&format!(
            "keyval_latency_ms_avg{{operation=\"{op}\"}} {}\n",
            v["avgLatencyMs"]
        ));
    }
    out
}
