//! The `tracing` layer that turns the host's own log events into feed
//! records. Installed by `buntime serve` next to the formatter, so it sees
//! exactly what `RUNTIME_LOG_LEVEL` lets through; it changes no filtering.
//!
//! **The trace id.** A record written while a sampled request runs on the
//! thread (`telemetry/log_ids.rs`) names its trace.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::{ACTIVE, LogRecord, Source, each_wanting, in_delivery};

/// The layer. Costs one atomic load per event while no feed is on.
#[derive(Debug, Clone, Copy, Default)]
pub struct FeedLayer;

/// Guest lines reach the feed from the `log_*` functions, with their app or
/// plugin and request; their `tracing` copy is skipped here.
const GUEST_TARGET: &str = "buntime::guest";

impl<S> Layer<S> for FeedLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if ACTIVE.load(Ordering::Relaxed) == 0 {
            return;
        }
        let meta = event.metadata();
        let level = *meta.level();
        if meta.target().starts_with(GUEST_TARGET) || in_delivery() {
            return;
        }
        let mut record: Option<LogRecord> = None;
        each_wanting(level, |feed| {
            let r = record.get_or_insert_with(|| {
                let mut v = Fields::default();
                event.record(&mut v);
                let mut message = std::mem::take(&mut v.message);
                message.push_str(&v.rest);
                let mut r = LogRecord::new(level, Source::Runtime, message);
                r.target = Some(meta.target());
                r.app = v.app;
                r.plugin = v.plugin;
                r.request_id = v.request_id;
                r.trace_id = crate::telemetry::log_ids::current_trace_id();
                r
            });
            feed.push(r.clone());
        });
    }

    /// No opinion on levels: the formatter's filter decides what exists.
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::OFF)
    }
}

/// The message, then the other fields as ` key=value`; the fields that name
/// an app, a plugin or a request fill the record's own fields as well.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    app: Option<Arc<str>>,
    plugin: Option<Arc<str>>,
    request_id: Option<String>,
}

impl Fields {
    fn text(&mut self, field: &Field, value: &str) -> bool {
        match field.name() {
            "message" => self.message.push_str(value),
            "app" => self.app = Some(value.into()),
            "plugin" => self.plugin = Some(value.into()),
            "request_id" | "requestId" => self.request_id = Some(value.to_owned()),
            _ => return false,
        }
        true
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.text(field, value) {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if !self.text(field, &text) {
            let _ = write!(self.rest, " {}={text}", field.name());
        }
    }
}
