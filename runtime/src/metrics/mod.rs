//! The recording side of the Prometheus metrics: the server-wide HTTP
//! figures, the label classes a request is counted under, and a histogram
//! cheap enough for the hot path, and the process figures. The exposition
//! (`server/exposition.rs`) reads these and the pool, plugin and engine
//! counters at scrape time.
//!
//! Nothing here allocates, locks or formats on the hot path. Label sets are
//! fixed small enums (method class, status class, hook) that index arrays of
//! atomics held by the thing they describe (an app version's pool, a
//! plugin), so a request costs an index computation and an atomic add or two
//! on its own thread's cache line ([`crate::counter`]). prometheus-client's
//! own `Histogram` takes a mutex on every observation, so the histograms are
//! kept here and only encoded through prometheus-client.

pub mod cost;
pub mod plugin;
mod process;

use std::time::Duration;

pub use cost::GuestCostStats;
pub(crate) use process::ProcessFigures;

pub use crate::counter::Cells;
use crate::counter::Counter;

/// Upper bounds of the duration buckets, in seconds: half a millisecond to
/// ten seconds, the span of a warm call to a guest at its deadline.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The same bounds in nanoseconds, for the comparison on the hot path.
const BUCKET_NANOS: [u64; 14] = {
    let mut out = [0u64; 14];
    let mut i = 0;
    while i < 14 {
        out[i] = (DURATION_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

/// Cells of a [`Histogram`]: one per bucket, the `+Inf` bucket, the sum.
const HISTOGRAM_CELLS: usize = BUCKET_NANOS.len() + 2;

/// A duration histogram over [`DURATION_BUCKETS`]: an observation is two
/// atomic adds on the thread's own shard (its bucket and the sum).
#[derive(Debug, Default)]
pub struct Histogram {
    cells: Cells<HISTOGRAM_CELLS>,
}

/// What a [`Histogram`] holds, read at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Sum of the observations, in seconds.
    pub sum: f64,
    /// Observations.
    pub count: u64,
    /// Counts per bucket (not cumulative: the encoder adds them up), by
    /// upper bound, `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// Records one duration.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let nanos = d.as_nanos().min(u64::MAX as u128) as u64;
        self.observe_nanos(nanos);
    }

    /// Records one duration given in nanoseconds.
    #[inline]
    pub fn observe_nanos(&self, nanos: u64) {
        let bucket = BUCKET_NANOS
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(BUCKET_NANOS.len());
        self.cells
            .add_two((bucket, 1), (HISTOGRAM_CELLS - 1, nanos));
    }

    /// Sum of the observations, in nanoseconds.
    pub fn sum_nanos(&self) -> u64 {
        self.cells.get()[HISTOGRAM_CELLS - 1]
    }

    /// The buckets, count and sum.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let cells = self.cells.get();
        let counts = &cells[..=BUCKET_NANOS.len()];
        let buckets = counts
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    DURATION_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY),
                    *n,
                )
            })
            .collect();
        HistogramSnapshot {
            sum: cells[HISTOGRAM_CELLS - 1] as f64 / 1e9,
            count: counts.iter().fold(0u64, |a, n| a.wrapping_add(*n)),
            buckets,
        }
    }
}

/// The class of a request method, a label bounded whatever clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodClass {
    /// `GET`, `HEAD`.
    Read,
    /// `POST`, `PUT`, `PATCH`, `DELETE`.
    Write,
    /// `OPTIONS` and any other method.
    Other,
}

impl MethodClass {
    /// Every class, in label order.
    pub const ALL: [Self; 3] = [Self::Read, Self::Write, Self::Other];

    /// The class of `method`.
    #[inline]
    pub fn of(method: &http::Method) -> Self {
        match *method {
            http::Method::GET | http::Method::HEAD => Self::Read,
            http::Method::POST | http::Method::PUT | http::Method::PATCH | http::Method::DELETE => {
                Self::Write
            }
            _ => Self::Other,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Other => "other",
        }
    }
}

/// Status classes `1xx` to `5xx`, in label order.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Label combinations of [`RequestCounts`]: method class × status class.
pub const REQUEST_CELLS: usize = MethodClass::ALL.len() * STATUS_CLASSES.len();

/// Requests counted by method class and status class.
#[derive(Debug, Default)]
pub struct RequestCounts {
    cells: Cells<REQUEST_CELLS>,
}

impl RequestCounts {
    /// Counts one answered request.
    #[inline]
    pub fn record(&self, method: MethodClass, status: http::StatusCode) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.cells
            .add(method as usize * STATUS_CLASSES.len() + class, 1);
    }

    /// Every non-zero count with its method and status class labels.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> {
        let cells = self.cells.get();
        (0..REQUEST_CELLS).filter_map(move |i| {
            let n = cells[i];
            (n > 0).then(|| {
                let method = MethodClass::ALL[i / STATUS_CLASSES.len()].label();
                (method, STATUS_CLASSES[i % STATUS_CLASSES.len()], n)
            })
        })
    }
}

/// Server-wide HTTP figures, kept in the server state.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Every request answered, by method and status class.
    pub requests: RequestCounts,
    /// Requests begun; minus those answered or dropped, the requests in flight.
    pub begun: Counter,
    /// Requests dropped before a response was made (the client went away).
    pub dropped: Counter,
    /// Client connections accepted.
    pub opened: Counter,
    /// Client connections closed.
    pub closed: Counter,
    /// Requests answered by static sites, by `name@version`.
    pub static_sites: KeyedRequests,
}

/// [`RequestCounts`] per key from a bounded set (a static site's
/// `name@version`: the installed versions). A request takes a read lock
/// and a map lookup; only a key's first request takes the write lock. A
/// key stays until the process ends, so its counters never go back.
#[derive(Debug, Default)]
pub struct KeyedRequests {
    by_key: std::sync::RwLock<std::collections::HashMap<String, std::sync::Arc<RequestCounts>>>,
}

impl KeyedRequests {
    /// Counts one answered request of `key`.
    pub fn record(&self, key: &str, method: MethodClass, status: http::StatusCode) {
        if let Ok(map) = self.by_key.read()
            && let Some(counts) = map.get(key)
        {
            counts.record(method, status);
            return;
        }
        if let Ok(mut map) = self.by_key.write() {
            map.entry(key.to_owned())
                .or_default()
                .record(method, status);
        }
    }

    /// Every key with its counts.
    pub fn all(&self) -> Vec<(String, std::sync::Arc<RequestCounts>)> {
        self.by_key
            .read()
            .map(|m| m.iter().map(|(k, c)| (k.clone(), c.clone())).collect())
            .unwrap_or_default()
    }
}

impl HttpStats {
    /// Requests in flight now.
    pub fn in_flight(&self) -> u64 {
        // Read the ends first: a request ending between the reads is then
        // never counted as ended but not begun.
        let answered = self.requests.nonzero().map(|(_, _, n)| n).sum::<u64>();
        let ended = answered.wrapping_add(self.dropped.get());
        self.begun.get().saturating_sub(ended)
    }

    /// Client connections open now.
    pub fn open_connections(&self) -> u64 {
        let closed = self.closed.get();
        self.opened.get().saturating_sub(closed)
    }
}

/// Counts a request as in flight until dropped, then as answered with its
/// status or as dropped: two atomic adds per request, no clock read.
#[derive(Debug)]
pub(crate) struct Counted<'a> {
    stats: &'a HttpStats,
    method: MethodClass,
    status: Option<http::StatusCode>,
}

impl<'a> Counted<'a> {
    #[inline]
    pub(crate) fn enter(stats: &'a HttpStats, method: MethodClass) -> Self {
        stats.begun.add(1);
        Self {
            stats,
            method,
            status: None,
        }
    }

    /// The response has been made with `status`.
    #[inline]
    pub(crate) fn answered(&mut self, status: http::StatusCode) {
        self.status = Some(status);
    }
}

impl Drop for Counted<'_> {
    #[inline]
    fn drop(&mut self) {
        match self.status {
            Some(s) => self.stats.requests.record(self.method, s),
            None => {
                self.stats.dropped.add(1);
            }
        }
    }
}

/// The hooks a plugin's calls are counted under; any other export (a
/// service) is `service`, so a plugin's label set stays bounded.
pub const HOOKS: [&str; 6] = [
    "on_init",
    "on_request",
    "on_response",
    "handle",
    "on_event",
    "service",
];

/// Index of `hook` in [`HOOKS`].
#[inline]
pub fn hook_index(hook: &str) -> usize {
    HOOKS[..HOOKS.len() - 1]
        .iter()
        .position(|h| *h == hook)
        .unwrap_or(HOOKS.len() - 1)
}

/// A plugin's figures per hook ([`HOOKS`]).
#[derive(Debug, Default)]
pub struct HookStats {
    /// Calls per hook.
    pub calls: Cells<{ HOOKS.len() }>,
    /// Failed calls per hook (trap, timeout, malformed answer).
    pub errors: Cells<{ HOOKS.len() }>,
    /// Calls stopped at their deadline, per hook.
    pub timeouts: Cells<{ HOOKS.len() }>,
    /// Durations of the timed calls per hook.
    pub durations: [Histogram; HOOKS.len()],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_each_observation_in_its_bucket() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets.first(), Some(&(0.0005, 1)));
        assert_eq!(s.buckets.iter().find(|b| b.0 == 0.005), Some(&(0.005, 1)));
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert!((s.sum - 60.0033).abs() < 1e-9);
    }

    #[test]
    fn requests_are_counted_by_method_and_status_class() {
        let r = RequestCounts::default();
        r.record(MethodClass::of(&http::Method::GET), http::StatusCode::OK);
        r.record(
            MethodClass::of(&http::Method::HEAD),
            http::StatusCode::NO_CONTENT,
        );
        r.record(
            MethodClass::of(&http::Method::DELETE),
            http::StatusCode::NOT_FOUND,
        );
        r.record(
            MethodClass::of(&http::Method::OPTIONS),
            http::StatusCode::BAD_GATEWAY,
        );
        let got: Vec<_> = r.nonzero().collect();
        assert_eq!(
            got,
            [("read", "2xx", 2), ("write", "4xx", 1), ("other", "5xx", 1)]
        );
    }

    #[test]
    fn unknown_exports_count_as_service() {
        assert_eq!(HOOKS[hook_index("on_request")], "on_request");
        assert_eq!(HOOKS[hook_index("resolve")], "service");
    }
}
