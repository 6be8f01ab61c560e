//! Metrics that plugins register through the `metrics` capability
//! (`metrics_register`) and update by series id (`metrics_add`,
//! `metrics_set`, `metrics_observe`); the exposition writes them as
//! `buntime_plugin_<plugin>_<name>` with a `plugin` label.
//!
//! Bounded by construction: a plugin has at most [`MAX_SERIES`] series, and
//! a family's series are the product of label values declared when it is
//! registered, so no value a request carries can become a label. A series
//! is a slot set once at registration; an update finds it by index and does
//! one atomic add or store — no lock, no allocation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Deserialize;

use super::Histogram;
use crate::counter::Counter;

/// Series one plugin may register, over all its families.
pub const MAX_SERIES: usize = 128;
/// Labels one family may have.
pub const MAX_LABELS: usize = 4;

/// What a family counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Only grows (`metrics_add` with a non-negative value).
    Counter,
    /// Goes up and down (`metrics_add`, `metrics_set`).
    Gauge,
    /// Durations on the fixed duration buckets (`metrics_observe`, ns).
    Histogram,
}

/// A family as a plugin declares it (`metrics_register`'s input).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyDef {
    /// `[a-z][a-z0-9_]*`, at most 64 bytes, without the reserved suffixes.
    pub name: String,
    pub kind: Kind,
    #[serde(default)]
    pub help: String,
    /// Each label with every value it can take, in order.
    #[serde(default)]
    pub labels: Vec<LabelDef>,
}

/// One label and its values.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelDef {
    pub name: String,
    pub values: Vec<String>,
}

/// A registered family: its definition and its series' slots.
#[derive(Debug, Clone)]
pub struct Family {
    pub def: FamilyDef,
    /// The slot of its first series; series `i` (labels in mixed radix,
    /// the last label fastest) is at `first + i`.
    pub first: usize,
    pub len: usize,
}

/// One series' figures.
#[derive(Debug)]
pub enum Series {
    Counter(Box<Counter>),
    Gauge(AtomicI64),
    Histogram(Box<Histogram>),
}

/// One plugin's registered metrics.
#[derive(Debug)]
pub struct PluginMetrics {
    families: Mutex<Vec<Family>>,
    slots: Box<[OnceLock<Series>]>,
}

impl Default for PluginMetrics {
    fn default() -> Self {
        Self {
            families: Mutex::default(),
            slots: (0..MAX_SERIES).map(|_| OnceLock::new()).collect(),
        }
    }
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && n.len() <= 64
}

/// Checks a definition; the message says what is wrong and how to fix it.
fn check(def: &FamilyDef) -> Result<usize, String> {
    if !valid_name(&def.name) {
        return Err(format!(
            "metric name `{}` must be 1 to 64 of `a-z`, `0-9` and `_`, starting with a letter",
            def.name
        ));
    }
    if let Some(s) = ["_total", "_count", "_sum", "_bucket", "_created", "_info"]
        .iter()
        .find(|s| def.name.ends_with(*s))
    {
        return Err(format!(
            "metric name `{}` may not end in `{s}`: the exposition adds the suffixes",
            def.name
        ));
    }
    if def.help.len() > 200 || def.help.contains(['\n', '\r']) {
        return Err("`help` must be one line of at most 200 bytes".into());
    }
    if def.labels.len() > MAX_LABELS {
        return Err(format!("a metric has at most {MAX_LABELS} labels"));
    }
    let mut series = 1usize;
    for (i, l) in def.labels.iter().enumerate() {
        if !valid_name(&l.name) || ["plugin", "le", "quantile"].contains(&l.name.as_str()) {
            return Err(format!(
                "label `{}` must be 1 to 64 of `a-z`, `0-9` and `_`, starting with a letter, and not `plugin`, `le` or `quantile`",
                l.name
            ));
        }
        if def.labels[..i].iter().any(|o| o.name == l.name) {
            return Err(format!("label `{}` is declared twice", l.name));
        }
        if l.values.is_empty() {
            return Err(format!("label `{}` declares no values", l.name));
        }
        for (j, v) in l.values.iter().enumerate() {
            if v.is_empty() || v.len() > 64 || v.chars().any(char::is_control) {
                return Err(format!(
                    "label `{}`: value `{v}` must be 1 to 64 bytes without control characters",
                    l.name
                ));
            }
            if l.values[..j].contains(v) {
                return Err(format!("label `{}`: value `{v}` is declared twice", l.name));
            }
        }
        series = series.saturating_mul(l.values.len());
    }
    Ok(series)
}

impl PluginMetrics {
    /// Registers `def` (again: the same definition gets the same slots, so
    /// every instance may register on first use); `(first, len)`.
    pub fn register(&self, def: FamilyDef) -> Result<(usize, usize), String> {
        let len = check(&def)?;
        let mut families = self.families.lock().map_err(|_| "poisoned lock")?;
        if let Some(f) = families.iter().find(|f| f.def.name == def.name) {
            return if f.def == def {
                Ok((f.first, f.len))
            } else {
                Err(format!(
                    "metric `{}` is already registered with another kind, help or labels",
                    def.name
                ))
            };
        }
        let first = families.last().map_or(0, |f| f.first + f.len);
        if first + len > MAX_SERIES {
            return Err(format!(
                "`{}` needs {len} series and {} of the {MAX_SERIES} a plugin may have are left",
                def.name,
                MAX_SERIES - first
            ));
        }
        for slot in &self.slots[first..first + len] {
            let _ = slot.set(match def.kind {
                Kind::Counter => Series::Counter(Box::default()),
                Kind::Gauge => Series::Gauge(AtomicI64::new(0)),
                Kind::Histogram => Series::Histogram(Box::default()),
            });
        }
        families.push(Family { def, first, len });
        Ok((first, len))
    }

    /// Adds `n` to a counter (negative ignored) or a gauge.
    #[inline]
    pub fn add(&self, id: u64, n: i64) {
        match self.slot(id) {
            Some(Series::Counter(c)) if n >= 0 => {
                c.add(n as u64);
            }
            Some(Series::Gauge(g)) => {
                g.fetch_add(n, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Sets a gauge.
    #[inline]
    pub fn set(&self, id: u64, v: i64) {
        if let Some(Series::Gauge(g)) = self.slot(id) {
            g.store(v, Ordering::Relaxed);
        }
    }

    /// Records a duration in a histogram.
    #[inline]
    pub fn observe(&self, id: u64, nanos: u64) {
        if let Some(Series::Histogram(h)) = self.slot(id) {
            h.observe_nanos(nanos);
        }
    }

    #[inline]
    fn slot(&self, id: u64) -> Option<&Series> {
        self.slots.get(usize::try_from(id).ok()?)?.get()
    }

    /// The families registered, with a way to read each series.
    pub fn families(&self) -> Vec<Family> {
        self.families.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// The series at slot `id`.
    pub fn series(&self, id: usize) -> Option<&Series> {
        self.slots.get(id)?.get()
    }
}

impl Family {
    /// The label values of its series `i`.
    pub fn labels_of(&self, mut i: usize) -> Vec<(&str, &str)> {
        let mut out = Vec::with_capacity(self.def.labels.len());
        for l in self.def.labels.iter().rev() {
            let n = l.values.len().max(1);
            out.push((l.name.as_str(), l.values[i % n].as_str()));
            i /= n;
        }
        out.reverse();
        out
    }
}

/// Every plugin's metrics, by plugin name; kept across reloads, like `state`.
#[derive(Debug, Default)]
pub struct PluginMetricsStore {
    plugins: Mutex<HashMap<String, Arc<PluginMetrics>>>,
}

impl PluginMetricsStore {
    /// The metrics of `plugin` (created empty on first use).
    pub fn of(&self, plugin: &str) -> Arc<PluginMetrics> {
        match self.plugins.lock() {
            Ok(mut m) => m.entry(plugin.to_owned()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Every plugin with metrics, sorted by name.
    pub fn all(&self) -> Vec<(String, Arc<PluginMetrics>)> {
        let mut all: Vec<_> = self
            .plugins
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// The metric-name part for `plugin`: its name without scope and without a
/// `plugin-` prefix, lower case, other characters as `_`
/// (`@buntime/plugin-keyval` → `keyval`).
pub fn short_name(plugin: &str) -> String {
    let base = plugin.rsplit('/').next().unwrap_or(plugin);
    let base = base.strip_prefix("plugin-").unwrap_or(base);
    base.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, kind: Kind, labels: &[(&str, &[&str])]) -> FamilyDef {
        FamilyDef {
            name: name.into(),
            kind,
            help: "h".into(),
            labels: labels
                .iter()
                .map(|(n, v)| LabelDef {
                    name: (*n).into(),
                    values: v.iter().map(|s| (*s).into()).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn series_are_the_product_of_declared_values() {
        let m = PluginMetrics::default();
        let ops = def(
            "ops",
            Kind::Counter,
            &[("op", &["get", "set"]), ("ok", &["y", "n"])],
        );
        assert_eq!(m.register(ops.clone()), Ok((0, 4)));
        // Registering again (another instance) gets the same slots.
        assert_eq!(m.register(ops), Ok((0, 4)));
        let f = &m.families()[0];
        assert_eq!(f.labels_of(1), [("op", "get"), ("ok", "n")]);
        assert_eq!(f.labels_of(2), [("op", "set"), ("ok", "y")]);
        m.add(2, 3);
        m.add(2, -1); // ignored on a counter
        assert!(matches!(m.series(2), Some(Series::Counter(c)) if c.get() == 3));
        assert_eq!(m.register(def("size", Kind::Gauge, &[])), Ok((4, 1)));
        m.set(4, -7);
        assert!(matches!(m.series(4), Some(Series::Gauge(g)) if g.load(Ordering::Relaxed) == -7));
    }

    #[test]
    fn registrations_are_bounded_and_checked() {
        let m = PluginMetrics::default();
        let many: Vec<String> = (0..MAX_SERIES + 1).map(|i| i.to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let err = m
            .register(def("big", Kind::Counter, &[("n", &many)]))
            .unwrap_err();
        assert!(err.contains("series"), "{err}");
        for bad in ["Ops", "ops_total", "", "9x"] {
            assert!(m.register(def(bad, Kind::Counter, &[])).is_err(), "{bad}");
        }
        assert!(
            m.register(def("x", Kind::Counter, &[("plugin", &["a"])]))
                .is_err()
        );
        m.register(def("x", Kind::Counter, &[])).expect("x");
        let err = m.register(def("x", Kind::Gauge, &[])).unwrap_err();
        assert!(err.contains("already registered"), "{err}");
        assert_eq!(short_name("@buntime/plugin-keyval"), "keyval");
        assert_eq!(short_name("acme-limiter"), "acme_limiter");
    }
}
