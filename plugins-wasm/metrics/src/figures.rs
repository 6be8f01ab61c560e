//! The host's snapshot (`metrics_snapshot`) and what the routes make of it:
//! the summary (`GET /api`), the per-app stats (`GET /api/stats`), and a
//! [`Sample`] over the interval between two snapshots (the history and the
//! stream). Percentiles are estimated from the duration histograms as
//! Prometheus's `histogram_quantile` does: linear within the bucket that
//! holds the rank.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A duration histogram: counts per bucket (not cumulative), `+Inf` last.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Histogram {
    /// Observations.
    #[serde(default)]
    pub count: u64,
    /// Their sum, in seconds.
    #[serde(default)]
    pub sum: f64,
    /// Per bucket of [`Snapshot::buckets`], then `+Inf`.
    #[serde(default)]
    pub counts: Vec<u64>,
}

/// The server-wide HTTP figures.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Http {
    pub requests: u64,
    pub by_status: BTreeMap<String, u64>,
    pub in_flight: u64,
    pub connections_open: u64,
    pub connections: u64,
}

/// One warm app version.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct App {
    pub app: String,
    pub version: String,
    pub requests: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub rejected: u64,
    pub hits: u64,
    pub misses: u64,
    pub instances: u64,
    pub idle: u64,
    pub busy: u64,
    pub queued: u64,
    pub duration: Histogram,
}

/// One loaded plugin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Plugin {
    pub name: String,
    pub calls: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub skipped: u64,
    pub busy: u64,
    pub duration: Histogram,
}

/// The pool as a whole.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Pool {
    pub app_versions: u64,
    pub evictions: u64,
}

/// What `metrics_snapshot` answers (the fields used here).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Snapshot {
    /// Unix time of the snapshot, ms.
    pub timestamp: u64,
    pub uptime_ms: u64,
    /// Upper bounds of the histogram buckets, seconds (`+Inf` implied).
    pub buckets: Vec<f64>,
    pub http: Http,
    pub pool: Pool,
    pub apps: Vec<App>,
    pub plugins: Vec<Plugin>,
    pub engine: Value,
}

/// p50, p95 and p99 in milliseconds; `None` without observations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl Percentiles {
    /// The percentiles of per-bucket `counts` over `bounds` (seconds).
    pub fn of(bounds: &[f64], counts: &[u64]) -> Self {
        Self {
            p50: quantile(bounds, counts, 0.50),
            p95: quantile(bounds, counts, 0.95),
            p99: quantile(bounds, counts, 0.99),
        }
    }
}

/// The `q` quantile of per-bucket `counts` (the last one `+Inf`) over the
/// upper `bounds` in seconds, in milliseconds: linear within the bucket
/// holding the rank; a rank in `+Inf` is the highest finite bound.
pub fn quantile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let Some(&upper) = bounds.get(i) else {
                return bounds.last().map(|b| b * 1000.0);
            };
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let within = (rank - below as f64) / n as f64;
            return Some((lower + (upper - lower) * within) * 1000.0);
        }
        below += n;
    }
    bounds.last().map(|b| b * 1000.0)
}

/// Adds `b` into `a`, bucket by bucket.
fn add(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.wrapping_add(*y);
    }
}

/// The request durations of every app, one histogram.
fn all_apps(s: &Snapshot) -> Vec<u64> {
    let mut counts = Vec::new();
    for a in &s.apps {
        add(&mut counts, &a.duration.counts);
    }
    counts
}

fn ratio(n: f64, d: f64) -> f64 {
    if d > 0.0 { n / d } else { 0.0 }
}

/// The pool figures: the pool's own and the sums over its app versions.
fn pool(s: &Snapshot) -> Value {
    let sum = |f: fn(&App) -> u64| s.apps.iter().map(f).sum::<u64>();
    let (hits, misses) = (sum(|a| a.hits), sum(|a| a.misses));
    json!({
        "appVersions": s.pool.app_versions,
        "evictions": s.pool.evictions,
        "instances": sum(|a| a.instances),
        "idle": sum(|a| a.idle),
        "busy": sum(|a| a.busy),
        "queued": sum(|a| a.queued),
        "requests": sum(|a| a.requests),
        "errors": sum(|a| a.errors),
        "hits": hits,
        "misses": misses,
        "hitRate": (ratio(hits as f64, (hits + misses) as f64) * 10000.0).round() / 100.0,
    })
}

/// `GET /api`: the figures since the server started.
pub fn summary(s: &Snapshot) -> Value {
    let uptime = s.uptime_ms as f64 / 1000.0;
    let counts = all_apps(s);
    let (count, sum) = s
        .apps
        .iter()
        .fold((0u64, 0.0), |(c, t), a| (c + a.duration.count, t + a.duration.sum));
    let plugins: Vec<Value> = s
        .plugins
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "calls": p.calls,
                "errors": p.errors,
                "timeouts": p.timeouts,
                "skipped": p.skipped,
                "busy": p.busy,
                "latencyMs": Percentiles::of(&s.buckets, &p.duration.counts),
            })
        })
        .collect();
    json!({
        "timestamp": s.timestamp,
        "uptimeMs": s.uptime_ms,
        "requests": {
            "total": s.http.requests,
            "perSecond": ratio(s.http.requests as f64, uptime),
            "byStatus": s.http.by_status,
        },
        "latencyMs": {
            "p50": quantile(&s.buckets, &counts, 0.50),
            "p95": quantile(&s.buckets, &counts, 0.95),
            "p99": quantile(&s.buckets, &counts, 0.99),
            "avg": (count > 0).then(|| sum / count as f64 * 1000.0),
        },
        "inFlight": s.http.in_flight,
        "connections": { "open": s.http.connections_open, "total": s.http.connections },
        "pool": pool(s),
        "plugins": plugins,
        "engine": s.engine,
    })
}

/// `GET /api/stats`: `{pool, workers}`, a worker being an app version.
pub fn stats(s: &Snapshot) -> Value {
    let workers: Vec<Value> = s
        .apps
        .iter()
        .map(|a| {
            json!({
                "app": a.app,
                "version": a.version,
                "requests": a.requests,
                "errors": a.errors,
                "timeouts": a.timeouts,
                "rejected": a.rejected,
                "instances": a.instances,
                "idle": a.idle,
                "busy": a.busy,
                "queued": a.queued,
                "latencyMs": Percentiles::of(&s.buckets, &a.duration.counts),
            })
        })
        .collect();
    json!({ "pool": pool(s), "workers": workers })
}

/// The cumulative figures a sample is the difference of: kept between
/// samples, in the plugin's `state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Base {
    /// Unix time, ms.
    pub t: u64,
    pub requests: u64,
    /// `5xx` answers.
    pub errors: u64,
    /// Request durations of every app, per bucket.
    pub counts: Vec<u64>,
    /// Per plugin: calls and errors.
    pub plugins: BTreeMap<String, [u64; 2]>,
}

impl Base {
    /// The cumulative figures of `s`.
    pub fn of(s: &Snapshot) -> Self {
        Self {
            t: s.timestamp,
            requests: s.http.requests,
            errors: s.http.by_status.get("5xx").copied().unwrap_or(0),
            counts: all_apps(s),
            plugins: s
                .plugins
                .iter()
                .map(|p| (p.name.clone(), [p.calls, p.errors]))
                .collect(),
        }
    }
}

/// One plugin's figures over a sample's interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginRate {
    pub calls: u64,
    pub calls_per_second: f64,
    pub errors: u64,
}

/// The pool at a sample's time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolNow {
    pub app_versions: u64,
    pub instances: u64,
    pub idle: u64,
    pub busy: u64,
    pub queued: u64,
}

/// The figures over one interval: an entry of the history, an event of the
/// stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Its place in the history (1, 2, …), set when stored.
    pub seq: u64,
    /// Unix time at its end, ms.
    pub timestamp: u64,
    /// The interval it covers, ms.
    pub interval_ms: u64,
    /// Requests answered in the interval.
    pub requests: u64,
    pub requests_per_second: f64,
    /// `5xx` answers per second.
    pub errors_per_second: f64,
    /// Request durations of the apps in the interval.
    pub latency_ms: Percentiles,
    pub in_flight: u64,
    pub connections_open: u64,
    pub pool: PoolNow,
    pub plugins: BTreeMap<String, PluginRate>,
}

impl Sample {
    /// The figures between `prev` and `now` (counters that went back, as
    /// when an app version left the pool, count as zero).
    pub fn between(prev: &Base, now: &Base, s: &Snapshot) -> Self {
        let interval_ms = now.t.saturating_sub(prev.t);
        let secs = interval_ms as f64 / 1000.0;
        let requests = now.requests.saturating_sub(prev.requests);
        let counts: Vec<u64> = now
            .counts
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(prev.counts.get(i).copied().unwrap_or(0)))
            .collect();
        let plugins = now
            .plugins
            .iter()
            .map(|(name, [calls, errors])| {
                let [c0, e0] = prev.plugins.get(name).copied().unwrap_or_default();
                let calls = calls.saturating_sub(c0);
                let rate = PluginRate {
                    calls,
                    calls_per_second: ratio(calls as f64, secs),
                    errors: errors.saturating_sub(e0),
                };
                (name.clone(), rate)
            })
            .collect();
        let sum = |f: fn(&App) -> u64| s.apps.iter().map(f).sum::<u64>();
        Self {
            seq: 0,
            timestamp: now.t,
            interval_ms,
            requests,
            requests_per_second: ratio(requests as f64, secs),
            errors_per_second: ratio(now.errors.saturating_sub(prev.errors) as f64, secs),
            latency_ms: Percentiles::of(&s.buckets, &counts),
            in_flight: s.http.in_flight,
            connections_open: s.http.connections_open,
            pool: PoolNow {
                app_versions: s.pool.app_versions,
                instances: sum(|a| a.instances),
                idle: sum(|a| a.idle),
                busy: sum(|a| a.busy),
                queued: sum(|a| a.queued),
            },
            plugins,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: [f64; 3] = [0.001, 0.01, 0.1];

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        // 10 in (0, 1 ms], 10 in (1, 10 ms].
        let counts = [10, 10, 0, 0];
        assert_eq!(quantile(&BOUNDS, &counts, 0.5), Some(1.0));
        let p75 = quantile(&BOUNDS, &counts, 0.75).unwrap();
        assert!((p75 - 5.5).abs() < 1e-9, "{p75}");
        assert_eq!(quantile(&BOUNDS, &[0, 0, 0, 0], 0.5), None);
        // A rank in +Inf is the highest finite bound.
        assert_eq!(quantile(&BOUNDS, &[0, 0, 0, 3], 0.99), Some(100.0));
    }

    #[test]
    fn a_sample_is_the_difference_of_two_bases() {
        let snap = Snapshot {
            buckets: BOUNDS.to_vec(),
            ..Default::default()
        };
        let prev = Base {
            t: 1_000,
            requests: 10,
            errors: 1,
            counts: vec![5, 5, 0, 0],
            plugins: [("p".to_owned(), [4, 0])].into(),
        };
        let now = Base {
            t: 3_000,
            requests: 30,
            errors: 3,
            counts: vec![5, 25, 0, 0],
            plugins: [("p".to_owned(), [8, 1]), ("q".to_owned(), [2, 0])].into(),
        };
        let s = Sample::between(&prev, &now, &snap);
        assert_eq!(s.interval_ms, 2_000);
        assert_eq!(s.requests, 20);
        assert_eq!(s.requests_per_second, 10.0);
        assert_eq!(s.errors_per_second, 1.0);
        assert!(s.latency_ms.p50.is_some_and(|p| p > 1.0 && p <= 10.0));
        assert_eq!(s.plugins["p"].calls, 4);
        assert_eq!(s.plugins["p"].errors, 1);
        assert_eq!(s.plugins["q"].calls_per_second, 1.0);
        // A counter that went back (an app version evicted) counts as zero.
        let back = Sample::between(&now, &prev, &snap);
        assert_eq!(back.requests, 0);
    }
}
