//! The `/_/metrics` exposition: a prometheus-client [`Collector`] that reads
//! the server's figures at scrape time and writes them in the Prometheus
//! text format (0.0.4) or OpenMetrics 1.0.
//!
//! Scrapes are rare next to requests, so all the work of naming and
//! labelling happens here: walking the warm pools and the plugin chain,
//! splitting `name@version` keys, formatting numbers. The plugin families
//! are in `exposition/plugins.rs`, the guests' cost in `exposition/cost.rs`.

mod cost;
mod plugins;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::AppState;
use crate::metrics::HistogramSnapshot;

/// The text format a scrape asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// `text/plain; version=0.0.4`.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of an exposition in this format.
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The exposition of everything `state` counts, in `format`.
pub(super) fn render(state: &AppState, format: Format) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry
        .sub_registry_with_prefix("buntime")
        .register_collector(Box::new(Figures(state.clone())));
    // Unprefixed: the standard `process_*` names.
    registry.register_collector(Box::new(crate::metrics::ProcessFigures {
        started: state.started,
    }));
    let mut out = String::with_capacity(16 * 1024);
    match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

/// The server's figures, read when encoded.
#[derive(Debug)]
struct Figures(AppState);

/// Labels of one series.
type Labels<'a> = [(&'a str, &'a str)];

/// Splits a pool key, `name@version`, into its labels.
fn app_labels(key: &str) -> (&str, &str) {
    key.rsplit_once('@').unwrap_or((key, ""))
}

fn counter(m: &mut MetricEncoder<'_>, labels: &Labels<'_>, v: u64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(v).encode(m.encode_family(&labels)?)
}

fn counter_f64(
    m: &mut MetricEncoder<'_>,
    labels: &Labels<'_>,
    v: f64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(v).encode(m.encode_family(&labels)?)
}

fn gauge(m: &mut MetricEncoder<'_>, labels: &Labels<'_>, v: i64) -> Result<(), std::fmt::Error> {
    ConstGauge::new(v).encode(m.encode_family(&labels)?)
}

fn histogram(
    m: &mut MetricEncoder<'_>,
    labels: &Labels<'_>,
    h: &HistogramSnapshot,
) -> Result<(), std::fmt::Error> {
    m.encode_family(&labels)?
        .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)
}

/// Starts a metric family: writes its descriptor, returns the encoder of its samples.
fn family<'e>(
    encoder: &'e mut DescriptorEncoder<'_>,
    name: &'e str,
    help: &str,
    kind: MetricType,
) -> Result<MetricEncoder<'e>, std::fmt::Error> {
    encoder.encode_descriptor(name, help, None, kind)
}

impl Collector for Figures {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.http(&mut e)?;
        self.pools(&mut e)?;
        self.plugins(&mut e)?;
        self.guests(&mut e)?;
        self.engine(&mut e)?;
        self.registered(&mut e)
    }
}

impl Figures {
    fn http(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let http = &self.0.http;
        let mut m = family(
            e,
            "http_server_requests",
            "Requests answered by the server, by method class and status class.",
            MetricType::Counter,
        )?;
        for (method, status, n) in http.requests.nonzero() {
            counter(&mut m, &[("method", method), ("status", status)], n)?;
        }
        let m = family(
            e,
            "http_requests_in_flight",
            "Requests being served.",
            MetricType::Gauge,
        )?;
        ConstGauge::new(http.in_flight() as i64).encode(m)?;
        let m = family(
            e,
            "http_connections_open",
            "Client connections open.",
            MetricType::Gauge,
        )?;
        ConstGauge::new(http.open_connections() as i64).encode(m)?;
        let m = family(
            e,
            "event_streams_open",
            "Server-sent event streams open (plugin routes and /_/api/sse).",
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.0.plugins.services().events.open_streams() as i64).encode(m)?;
        let m = family(
            e,
            "http_connections",
            "Client connections accepted.",
            MetricType::Counter,
        )?;
        ConstCounter::new(http.opened.get()).encode(m)
    }

    fn pools(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let pools = self.0.pools.snapshot();
        let mut m = family(
            e,
            "http_requests",
            "Requests answered by an app (a WASM app or a static site), by app, version, method class and status class.",
            MetricType::Counter,
        )?;
        // Summed by key: a version dir that turned from a site into a WASM
        // app (or back) must still give one series per label set.
        let mut by_app = std::collections::BTreeMap::new();
        let sites = self.0.http.static_sites.all();
        let counts = pools
            .iter()
            .map(|p| (p.key(), &p.stats.responses))
            .chain(sites.iter().map(|(k, c)| (k.as_str(), &**c)));
        for (key, responses) in counts {
            for (method, status, n) in responses.nonzero() {
                *by_app.entry((key, method, status)).or_insert(0u64) += n;
            }
        }
        for ((key, method, status), n) in by_app {
            let (app, version) = app_labels(key);
            let labels = [
                ("app", app),
                ("version", version),
                ("method", method),
                ("status", status),
            ];
            counter(&mut m, &labels, n)?;
        }
        type Histo = (
            &'static str,
            &'static str,
            fn(&crate::pool::AppStats) -> &crate::metrics::Histogram,
        );
        let histograms: [Histo; 2] = [
            (
                "app_request_duration_seconds",
                "Time a request spent in its app's pool: the wait for an instance and the guest call.",
                |s| &s.duration,
            ),
            (
                "pool_queue_wait_seconds",
                "Time requests that found every instance of their app version busy waited for one.",
                |s| &s.queue_wait,
            ),
        ];
        for (name, help, get) in histograms {
            let mut m = family(e, name, help, MetricType::Histogram)?;
            for p in &pools {
                let (app, version) = app_labels(p.key());
                histogram(
                    &mut m,
                    &[("app", app), ("version", version)],
                    &get(&p.stats).snapshot(),
                )?;
            }
        }
        type Figure = (&'static str, &'static str, fn(&crate::pool::AppPool) -> i64);
        let gauges: [Figure; 4] = [
            (
                "pool_instances",
                "Instances of an app version, busy or idle.",
                |p| (p.active() + p.idle_count()) as i64,
            ),
            (
                "pool_instances_idle",
                "Warm instances waiting for a request.",
                |p| p.idle_count() as i64,
            ),
            ("pool_instances_busy", "Instances serving a request.", |p| {
                p.active() as i64
            }),
            ("pool_queued", "Requests waiting for an instance.", |p| {
                p.queued() as i64
            }),
        ];
        for (name, help, get) in gauges {
            let mut m = family(e, name, help, MetricType::Gauge)?;
            for p in &pools {
                let (app, version) = app_labels(p.key());
                gauge(&mut m, &[("app", app), ("version", version)], get(p))?;
            }
        }
        type Count = (
            &'static str,
            &'static str,
            fn(&crate::pool::AppStats) -> u64,
        );
        let counters: [Count; 10] = [
            ("pool_calls", "Calls to an app version's pool.", |s| {
                s.requests.get()
            }),
            (
                "pool_errors",
                "Calls that failed in the guest (trap, timeout, instantiation).",
                |s| s.errors.get(),
            ),
            (
                "pool_timeouts",
                "Calls stopped at the app's deadline (`timeout`).",
                |s| s.timeouts.get(),
            ),
            (
                "pool_rejected",
                "Calls answered busy: every instance busy, queue full.",
                |s| s.rejected.get(),
            ),
            ("pool_instantiations", "Instances created.", |s| {
                s.created.get()
            }),
            (
                "pool_retired",
                "Instances retired normally (TTL, maxRequests, idle).",
                |s| s.retired.get(),
            ),
            (
                "pool_discarded",
                "Instances discarded after a failure.",
                |s| s.failed.get(),
            ),
            (
                "pool_recycled",
                "Instances retired after serving `maxRequests` requests (also counted as retired).",
                |s| s.recycled.get(),
            ),
            ("pool_warm_hits", "Calls served by a warm instance.", |s| {
                s.hits.get()
            }),
            (
                "pool_cold_starts",
                "Calls that needed a new instance.",
                |s| s.misses.get(),
            ),
        ];
        for (name, help, get) in counters {
            let mut m = family(e, name, help, MetricType::Counter)?;
            for p in &pools {
                let (app, version) = app_labels(p.key());
                counter(&mut m, &[("app", app), ("version", version)], get(&p.stats))?;
            }
        }
        let m = family(
            e,
            "pool_evictions",
            "App versions evicted from the pool (RUNTIME_POOL_SIZE).",
            MetricType::Counter,
        )?;
        let evictions = self
            .0
            .pools
            .evictions
            .load(std::sync::atomic::Ordering::Relaxed);
        ConstCounter::new(evictions).encode(m)?;
        let mut m = family(
            e,
            "pool_app_evictions",
            "Times an app version was evicted from the pool (RUNTIME_POOL_SIZE), by app and version.",
            MetricType::Counter,
        )?;
        for (key, n) in self.0.pools.evictions_by_version() {
            let (app, version) = app_labels(&key);
            counter(&mut m, &[("app", app), ("version", version)], n)?;
        }
        let m = family(
            e,
            "pool_app_versions",
            "App versions kept warm.",
            MetricType::Gauge,
        )?;
        ConstGauge::new(pools.len() as i64).encode(m)
    }

    fn engine(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stats = self.0.pools.engine().stats();
        let counters = [
            (
                "engine_modules_compiled",
                "Modules compiled from WASM bytes.",
                &stats.compiled,
            ),
            (
                "engine_cache_hits",
                "Modules loaded from the on-disk cache.",
                &stats.cache_hits,
            ),
            (
                "engine_modules_shared",
                "Modules that reuse the compiled code of identical bytes already loaded.",
                &stats.shared,
            ),
            (
                "engine_cache_rejected",
                "Cache files rejected as corrupt or incompatible.",
                &stats.cache_rejected,
            ),
            (
                "engine_instances",
                "Instances created (apps and plugins).",
                &stats.instances,
            ),
            ("engine_traps", "Guest calls that trapped.", &stats.traps),
            (
                "engine_timeouts",
                "Guest calls stopped at their deadline.",
                &stats.timeouts,
            ),
            (
                "engine_guest_log_lines",
                "Guest log lines written.",
                &stats.guest_log_lines,
            ),
            (
                "engine_guest_log_dropped",
                "Guest log lines dropped by the per-instance rate limit.",
                &stats.guest_log_dropped,
            ),
        ];
        for (name, help, c) in counters {
            let m = family(e, name, help, MetricType::Counter)?;
            ConstCounter::new(c.get()).encode(m)?;
        }
        let feed = self.0.pools.engine().log_feed();
        let feed_counters = [
            (
                "log_feed_records",
                "Log records queued for the plugins that subscribe to the log feed.",
                feed.queued(),
            ),
            (
                "log_feed_dropped",
                "Log records dropped because the log feed's queue was full.",
                feed.dropped(),
            ),
        ];
        for (name, help, n) in feed_counters {
            let m = family(e, name, help, MetricType::Counter)?;
            ConstCounter::new(n).encode(m)?;
        }
        let mut m = family(
            e,
            "capability_denials",
            "Host calls refused for lack of a grant, by capability.",
            MetricType::Counter,
        )?;
        for (capability, n) in stats.denials_by_capability() {
            counter(&mut m, &[("capability", capability)], n)?;
        }
        let mut m = family(
            e,
            "engine_compile_duration_seconds",
            "Time to compile a module from WASM bytes.",
            MetricType::Histogram,
        )?;
        let compile = stats.compile_time.snapshot();
        m.encode_histogram::<NoLabelSet>(compile.sum, compile.count, &compile.buckets, None)?;
        if let Some(sql) = &self.0.plugins.services().sql {
            let mut m = family(
                e,
                "sql_statement_duration_seconds",
                "Durations of sql capability statements (query, execute, batch), from the call to the answer.",
                MetricType::Histogram,
            )?;
            for (function, h) in crate::capabilities::STATEMENT_FUNCTIONS
                .iter()
                .zip(&sql.durations)
            {
                histogram(&mut m, &[("function", function)], &h.snapshot())?;
            }
        }
        let m = family(
            e,
            "uptime_seconds",
            "Seconds since the server started.",
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.0.started.elapsed().as_secs() as i64).encode(m)
    }

    /// The metrics plugins registered (`metrics` capability), as
    /// `plugin_<short>_<name>` with a `plugin` label. Two plugins whose
    /// short names meet share a family if the kinds agree; a family of
    /// another kind under a name already written is left out (its help and
    /// type would contradict the first).
    fn registered(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::collections::BTreeMap;

        use crate::metrics::plugin::{Family, Kind, PluginMetrics, Series, short_name};
        type Members = Vec<(String, std::sync::Arc<PluginMetrics>, Family)>;
        let mut by_name: BTreeMap<String, Members> = BTreeMap::new();
        for (plugin, metrics) in self.0.plugins.services().plugin_metrics.all() {
            for f in metrics.families() {
                let name = format!("plugin_{}_{}", short_name(&plugin), f.def.name);
                // The host's own plugin families keep their names.
                if name.starts_with("plugin_hook_") {
                    continue;
                }
                by_name
                    .entry(name)
                    .or_default()
                    .push((plugin.clone(), metrics.clone(), f));
            }
        }
        for (name, members) in &by_name {
            let Some((_, _, first)) = members.first() else {
                continue;
            };
            let kind = first.def.kind;
            let metric_type = match kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            let name = match kind {
                Kind::Histogram if !name.ends_with("_seconds") => format!("{name}_seconds"),
                _ => name.clone(),
            };
            let help = match first.def.help.as_str() {
                "" => "Registered by a plugin.",
                h => h,
            };
            let mut m = family(e, &name, help, metric_type)?;
            for (plugin, metrics, f) in members.iter().filter(|m| m.2.def.kind == kind) {
                for i in 0..f.len {
                    let mut labels = vec![("plugin", plugin.as_str())];
                    labels.extend(f.labels_of(i));
                    match metrics.series(f.first + i) {
                        Some(Series::Counter(c)) => counter(&mut m, &labels, c.get())?,
                        Some(Series::Gauge(g)) => gauge(
                            &mut m,
                            &labels,
                            g.load(std::sync::atomic::Ordering::Relaxed),
                        )?,
                        Some(Series::Histogram(h)) => histogram(&mut m, &labels, &h.snapshot())?,
                        None => {}
                    }
                }
            }
        }
        Ok(())
    }
}
