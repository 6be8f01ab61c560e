//! Per-operation metrics in the host's registry (the `metrics`
//! capability): calls, errors (5xx answers) and a duration histogram per
//! operation, shared by every instance and written by the host's
//! `/_/metrics` as `buntime_plugin_keyval_*`; the JSON route reads them back.

use std::sync::OnceLock;
use std::time::Duration;

use buntime_pdk::plugin::metrics::{self, Family, Kind};
use serde_json::{Map, Value, json};

/// The operations counted.
pub const OPERATIONS: [&str; 12] = [
    "get", "set", "delete", "list", "count", "batch", "atomic", "enqueue", "dequeue", "ack",
    "nack", "search",
];

/// The registered families: calls, errors, durations.
struct Families {
    calls: Family,
    errors: Family,
    duration: Family,
}

/// This instance's handles on the families, registered on first use (the
/// same definition answers the same series in every instance). `None` when
/// the host refused them: counting must never fail a request.
fn families() -> Option<&'static Families> {
    static FAMILIES: OnceLock<Option<Families>> = OnceLock::new();
    FAMILIES
        .get_or_init(|| {
            let labels: &[(&str, &[&str])] = &[("operation", &OPERATIONS)];
            Some(Families {
                calls: metrics::register(
                    "operations",
                    Kind::Counter,
                    "Keyval operations, by operation.",
                    labels,
                )
                .ok()?,
                errors: metrics::register(
                    "operation_errors",
                    Kind::Counter,
                    "Keyval operations answered with a server error, by operation.",
                    labels,
                )
                .ok()?,
                duration: metrics::register(
                    "operation_duration_seconds",
                    Kind::Histogram,
                    "Durations of keyval operations, by operation.",
                    labels,
                )
                .ok()?,
            })
        })
        .as_ref()
}

/// Records one call of `op` that took `elapsed` and failed or not.
pub fn record(op: &str, elapsed: Duration, failed: bool) {
    let Some(f) = families() else { return };
    if let Some(s) = f.calls.series(&[op]) {
        s.add(1);
    }
    if failed && let Some(s) = f.errors.series(&[op]) {
        s.add(1);
    }
    if let Some(s) = f.duration.series(&[op]) {
        s.observe(elapsed);
    }
}

/// The series of family `name` in `values`, by operation.
fn by_operation<'a>(values: &'a Value, name: &str) -> impl Iterator<Item = (&'a str, &'a Value)> {
    values
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |f| f["name"] == name)
        .flat_map(|f| f["series"].as_array().into_iter().flatten())
        .filter_map(|s| Some((s["labels"]["operation"].as_str()?, s)))
}

/// `{"operations": {"get": {"calls", "count", "errors", "avgLatencyMs"}, ...}}`.
pub fn json() -> Value {
    // Registering first makes a fresh server answer zeros, not nothing.
    let _ = families();
    let values = metrics::values().unwrap_or(Value::Null);
    let mut ops = Map::new();
    for op in OPERATIONS {
        ops.insert(
            op.into(),
            json!({ "calls": 0, "count": 0, "errors": 0, "avgLatencyMs": 0.0 }),
        );
    }
    for (op, s) in by_operation(&values, "operations") {
        if let Some(o) = ops.get_mut(op) {
            // `count` is the original's name for `calls`.
            o["calls"] = s["value"].clone();
            o["count"] = s["value"].clone();
        }
    }
    for (op, s) in by_operation(&values, "operation_errors") {
        if let Some(o) = ops.get_mut(op) {
            o["errors"] = s["value"].clone();
        }
    }
    for (op, s) in by_operation(&values, "operation_duration_seconds") {
        let count = s["count"].as_f64().unwrap_or(0.0);
        if let Some(o) = ops.get_mut(op)
            && count > 0.0
        {
            o["avgLatencyMs"] = json!(s["sum"].as_f64().unwrap_or(0.0) / count * 1000.0);
        }
    }
    json!({ "operations": ops })
}
