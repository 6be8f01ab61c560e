//! The server's figures as one JSON value, for the `metrics` capability
//! (`metrics_snapshot`): what the metrics plugin samples. Read from the same
//! atomics as the `/_/metrics` exposition, at the time of the call.

use std::sync::Weak;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::Shared;
use crate::metrics::{DURATION_BUCKETS, HistogramSnapshot};

/// The server's figures, read through a weak reference: the plugin host
/// (which the server holds) keeps this view, and must not keep the server.
pub(super) struct ServerMetrics(pub(super) Weak<Shared>);

/// A histogram as `{"count", "sum", "counts"}`: `sum` in seconds, `counts`
/// per bucket of [`DURATION_BUCKETS`] and `+Inf` last, not cumulative.
fn histogram(h: &HistogramSnapshot) -> Value {
    let counts: Vec<u64> = h.buckets.iter().map(|(_, n)| *n).collect();
    json!({ "count": h.count, "sum": h.sum, "counts": counts })
}

/// Adds `b` into `a`, bucket by bucket.
fn merge(a: &mut HistogramSnapshot, b: &HistogramSnapshot) {
    a.count = a.count.wrapping_add(b.count);
    a.sum += b.sum;
    for (x, y) in a.buckets.iter_mut().zip(&b.buckets) {
        x.1 = x.1.wrapping_add(y.1);
    }
}

impl crate::capabilities::MetricsView for ServerMetrics {
    fn snapshot(&self) -> Value {
        let Some(state) = self.0.upgrade() else {
            return Value::Null;
        };
        let pools = state.pools.snapshot();
        let apps: Vec<Value> = pools
            .iter()
            .map(|p| {
                let (app, version) = p.key().rsplit_once('@').unwrap_or((p.key(), ""));
                let s = &p.stats;
                json!({
                    "app": app,
                    "version": version,
                    "requests": s.requests.get(),
                    "errors": s.errors.get(),
                    "timeouts": s.timeouts.get(),
                    "rejected": s.rejected.get(),
                    "hits": s.hits.get(),
                    "misses": s.misses.get(),
                    "instances": p.active() + p.idle_count(),
                    "idle": p.idle_count(),
                    "busy": p.active(),
                    "queued": p.queued(),
                    "duration": histogram(&s.duration.snapshot()),
                })
            })
            .collect();
        let chain = state.plugins.current();
        let plugins: Vec<Value> = chain
            .plugins
            .iter()
            .map(|p| {
                let hooks = &p.stats.hooks;
                let sum = |cells: [u64; crate::metrics::HOOKS.len()]| {
                    cells.iter().fold(0u64, |a, n| a.wrapping_add(*n))
                };
                let mut duration = crate::metrics::Histogram::default().snapshot();
                for h in &hooks.durations {
                    merge(&mut duration, &h.snapshot());
                }
                json!({
                    "name": p.manifest.name,
                    "calls": sum(hooks.calls.get()),
                    "errors": sum(hooks.errors.get()),
                    "timeouts": sum(hooks.timeouts.get()),
                    "skipped": p.stats.skipped.get(),
                    "busy": p.stats.busy.get(),
                    "duration": histogram(&duration),
                })
            })
            .collect();
        let http = &state.http;
        let mut by_status = serde_json::Map::new();
        let mut answered = 0u64;
        for (_, status, n) in http.requests.nonzero() {
            answered = answered.wrapping_add(n);
            let entry = by_status.entry(status).or_insert(json!(0));
            *entry = json!(entry.as_u64().unwrap_or(0).wrapping_add(n));
        }
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        json!({
            "timestamp": timestamp,
            "uptimeMs": state.started.elapsed().as_millis() as u64,
            "buckets": DURATION_BUCKETS,
            "http": {
                "requests": answered,
                "byStatus": by_status,
                "inFlight": http.in_flight(),
                "connectionsOpen": http.open_connections(),
                "connections": http.opened.get(),
            },
            "pool": {
                "appVersions": pools.len(),
                "evictions": state.pools.evictions.load(Ordering::Relaxed),
            },
            "apps": apps,
            "plugins": plugins,
            "engine": super::api::engine_metrics(state.pools.engine().stats()),
        })
    }
}
