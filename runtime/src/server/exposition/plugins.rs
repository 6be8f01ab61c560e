//! The plugin families: hook calls by plugin and hook, failures, requests
//! to the plugins' routes, capability calls and denials by plugin.

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::{Figures, counter, family, histogram};
use crate::metrics::HOOKS;

impl Figures {
    pub(super) fn plugins(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let chain = self.0.plugins.current();
        type Cells = fn(&crate::metrics::HookStats) -> [u64; HOOKS.len()];
        let per_hook: [(&str, &str, Cells); 3] = [
            (
                "plugin_hook_calls",
                "Hook calls, by plugin and hook.",
                |h| h.calls.get(),
            ),
            (
                "plugin_hook_errors",
                "Hook calls that failed (trap, timeout, malformed answer), by plugin and hook.",
                |h| h.errors.get(),
            ),
            (
                "plugin_hook_timeouts",
                "Hook calls stopped at their deadline, by plugin and hook.",
                |h| h.timeouts.get(),
            ),
        ];
        for (name, help, get) in per_hook {
            let mut m = family(e, name, help, MetricType::Counter)?;
            for p in &chain.plugins {
                for (hook, n) in HOOKS.iter().zip(get(&p.stats.hooks)) {
                    if n > 0 {
                        counter(&mut m, &[("plugin", &p.manifest.name), ("hook", hook)], n)?;
                    }
                }
            }
        }
        let mut m = family(
            e,
            "plugin_hook_duration_seconds",
            "Durations of hook calls, by plugin and hook; one call in 8 is timed.",
            MetricType::Histogram,
        )?;
        for p in &chain.plugins {
            for (hook, h) in HOOKS.iter().zip(&p.stats.hooks.durations) {
                let snap = h.snapshot();
                if snap.count > 0 {
                    histogram(
                        &mut m,
                        &[("plugin", &p.manifest.name), ("hook", hook)],
                        &snap,
                    )?;
                }
            }
        }
        let mut m = family(
            e,
            "plugin_skipped",
            "Failures skipped under `onError: \"open\"`, by plugin.",
            MetricType::Counter,
        )?;
        for p in &chain.plugins {
            counter(
                &mut m,
                &[("plugin", &p.manifest.name)],
                p.stats.skipped.get(),
            )?;
        }
        let mut m = family(
            e,
            "plugin_busy",
            "Hook calls not started because every instance of the plugin stayed busy past the queue wait, by plugin.",
            MetricType::Counter,
        )?;
        for p in &chain.plugins {
            counter(&mut m, &[("plugin", &p.manifest.name)], p.stats.busy.get())?;
        }
        type Counts = fn(&crate::grants::CapabilityCounts) -> [u64; crate::grants::COUNT_CELLS];
        let per_capability: [(&str, &str, Counts); 2] = [
            (
                "capability_calls",
                "Host calls a plugin's grants allowed, by plugin and capability.",
                |c| c.calls.get(),
            ),
            (
                "capability_denials_by_plugin",
                "Host calls refused for lack of a grant, by plugin and capability.",
                |c| c.denials.get(),
            ),
        ];
        for (name, help, get) in per_capability {
            let mut m = family(e, name, help, MetricType::Counter)?;
            for p in &chain.plugins {
                for (i, n) in get(&p.grants.counts).into_iter().enumerate() {
                    if n > 0 {
                        let capability = crate::grants::CapabilityCounts::label(i);
                        counter(
                            &mut m,
                            &[("plugin", &p.manifest.name), ("capability", capability)],
                            n,
                        )?;
                    }
                }
            }
        }
        let mut m = family(
            e,
            "plugin_route_requests",
            "Requests to a plugin's routes (/_/<base>/...: its handle export or its ui/), by plugin, method class and status class; refusals by the access check included.",
            MetricType::Counter,
        )?;
        for p in &chain.plugins {
            for (method, status, n) in p.stats.routes.nonzero() {
                let labels = [
                    ("plugin", p.manifest.name.as_str()),
                    ("method", method),
                    ("status", status),
                ];
                counter(&mut m, &labels, n)?;
            }
        }
        Ok(())
    }
}
