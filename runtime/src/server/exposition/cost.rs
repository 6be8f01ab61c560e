//! The `guest_*` families: what plugins and app versions cost across
//! requests, from the sampled calls of `metrics/cost.rs`.
//!
//! One series per guest: `guest` is a plugin's name or an app's
//! `name@version` (as in the `Server-Timing` breakdown), `kind` is `plugin`
//! or `app`. Both sets are bounded (the loaded plugins, the warm pools).

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::{Figures, counter_f64, family, gauge, histogram};
use crate::metrics::GuestCostStats;

impl Figures {
    /// Every guest with its kind and cost figures.
    fn guest_costs(&self) -> Vec<(String, &'static str, CostRef)> {
        let mut out = Vec::new();
        for p in &self.0.plugins.current().plugins {
            out.push((
                p.manifest.name.clone(),
                "plugin",
                CostRef::Plugin(p.clone()),
            ));
        }
        for p in self.0.pools.snapshot() {
            out.push((p.key().to_owned(), "app", CostRef::App(p)));
        }
        out
    }

    pub(super) fn guests(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let guests = self.guest_costs();
        let mut m = family(
            e,
            "guest_call_seconds",
            "Estimated wall time of guest calls on their instance (the guest's run and its host calls), by guest and kind: the sum over one call in 8, times 8.",
            MetricType::Counter,
        )?;
        for (guest, kind, c) in &guests {
            counter_f64(
                &mut m,
                &[("guest", guest), ("kind", kind)],
                c.get().estimated_seconds(),
            )?;
        }
        let mut m = family(
            e,
            "guest_call_duration_seconds",
            "Wall time of the sampled guest calls (one in 8) on their instance, by guest and kind.",
            MetricType::Histogram,
        )?;
        for (guest, kind, c) in &guests {
            histogram(
                &mut m,
                &[("guest", guest), ("kind", kind)],
                &c.get().time.snapshot(),
            )?;
        }
        let mut m = family(
            e,
            "guest_memory_bytes",
            "Memory of the instance after a sampled guest call (one in 8): linear memory plus arena blocks, by guest and kind.",
            MetricType::Histogram,
        )?;
        for (guest, kind, c) in &guests {
            histogram(
                &mut m,
                &[("guest", guest), ("kind", kind)],
                &c.get().memory(),
            )?;
        }
        let mut m = family(
            e,
            "guest_memory_peak_bytes",
            "The most memory an instance of the guest had after a sampled call, by guest and kind.",
            MetricType::Gauge,
        )?;
        for (guest, kind, c) in &guests {
            let peak = i64::try_from(c.get().peak_bytes()).unwrap_or(i64::MAX);
            gauge(&mut m, &[("guest", guest), ("kind", kind)], peak)?;
        }
        Ok(())
    }
}

/// A guest whose cost figures are read: a plugin or an app version's pool.
enum CostRef {
    Plugin(std::sync::Arc<crate::plugins::Plugin>),
    App(std::sync::Arc<crate::pool::AppPool>),
}

impl CostRef {
    fn get(&self) -> &GuestCostStats {
        match self {
            Self::Plugin(p) => &p.stats.cost,
            Self::App(p) => &p.stats.cost,
        }
    }
}
