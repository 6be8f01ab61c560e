//! `metrics`: the server's figures (grant: `"metrics": {"read": true}`),
//! and the plugin's own metrics in the host's `/_/metrics` (grant:
//! `"metrics": {"register": true}`).
//!
//! ```ignore
//! use buntime_pdk::plugin::metrics::{self, Kind};
//! let ops = metrics::register("operations", Kind::Counter, "Operations.", &[("op", &["get", "set"])])?;
//! if let Some(s) = ops.series(&["get"]) { s.add(1); }
//! ```

use serde_json::{Value, json};

use super::{HostErrorBody, call, call0, imports};

/// The server's figures now: HTTP, apps (with duration histograms),
/// pool, plugins, engine (docs/capabilities.md, `metrics`).
pub fn snapshot() -> Result<Value, HostErrorBody> {
    call0(imports::metrics_snapshot)
}

/// What a family counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Durations, on the host's duration buckets.
    Histogram,
}

/// A registered family: finds the series of a combination of label values.
#[derive(Debug, Clone)]
pub struct Family {
    id: u64,
    labels: Vec<Vec<String>>,
}

/// One series of a family: updated with one host call, no JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Series(u64);

/// Registers a family (again: the same definition answers the same
/// family, so every instance may register on first use). `labels` are
/// each label with every value it can take.
pub fn register(
    name: &str,
    kind: Kind,
    help: &str,
    labels: &[(&str, &[&str])],
) -> Result<Family, HostErrorBody> {
    let kind = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    };
    let defs: Vec<Value> = labels
        .iter()
        .map(|(n, v)| json!({ "name": n, "values": v }))
        .collect();
    let out: Value = call(
        imports::metrics_register,
        &json!({ "name": name, "kind": kind, "help": help, "labels": defs }),
    )?;
    Ok(Family {
        id: out["id"].as_u64().unwrap_or(0),
        labels: labels
            .iter()
            .map(|(_, v)| v.iter().map(|s| (*s).to_owned()).collect())
            .collect(),
    })
}

impl Family {
    /// The series of `values` (one per label, in order); `None` if one
    /// is not a declared value.
    pub fn series(&self, values: &[&str]) -> Option<Series> {
        if values.len() != self.labels.len() {
            return None;
        }
        let mut index = 0u64;
        for (declared, v) in self.labels.iter().zip(values) {
            let i = declared.iter().position(|d| d == v)?;
            index = index * declared.len() as u64 + i as u64;
        }
        Some(Series(self.id + index))
    }
}

impl Series {
    /// Adds `n` (a counter ignores a negative `n`).
    pub fn add(self, n: i64) {
        #[allow(unsafe_code, reason = "a host import")]
        // SAFETY: takes two integers, returns 0.
        unsafe {
            imports::metrics_add(self.0, n as u64);
        }
    }

    /// Sets a gauge.
    pub fn set(self, v: i64) {
        #[allow(unsafe_code, reason = "a host import")]
        // SAFETY: takes two integers, returns 0.
        unsafe {
            imports::metrics_set(self.0, v as u64);
        }
    }

    /// Records a duration in a histogram.
    pub fn observe(self, d: std::time::Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX >> 1);
        #[allow(unsafe_code, reason = "a host import")]
        // SAFETY: takes two integers, returns 0.
        unsafe {
            imports::metrics_observe(self.0, nanos);
        }
    }
}

/// The plugin's own families with their values: `[{"name", "id",
/// "series": [{"labels", "value"} | {"labels", "count", "sum"}]}]`.
pub fn values() -> Result<Value, HostErrorBody> {
    call0(imports::metrics_values)
}
