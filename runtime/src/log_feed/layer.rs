//! The `tracing` layer that turns the host's own log events into feed
//! records. Installed by `buntime serve` next to the formatter, so it sees
//! exactly what `RUNTIME_LOG_LEVEL` lets through; it changes no filtering.
//!
//! **The trace id.** A sampled request runs inside the `trace` span
//! (`telemetry/log_span.rs`, field `trace_id`). While a feed is on, the
//! layer keeps that field in the span's extensions when the span is created
//! (under the server's subscriber the span carries its ids in its extensions
//! from the start, its fields filled later), and a record takes it from the
//! innermost `trace` span around its event: the host's own lines inside a
//! sampled request name its trace.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::{ACTIVE, LogRecord, Source, each_wanting, in_delivery};

/// The name of the span that carries a sampled request's trace id.
const TRACE_SPAN: &str = "trace";

/// A `trace` span's trace id, in its extensions.
struct TraceId(String);

/// Reads the `trace_id` field of a `trace` span.
#[derive(Default)]
struct TraceField(Option<String>);

impl Visit for TraceField {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "trace_id" {
            self.0 = Some(format!("{value:?}"));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "trace_id" {
            self.0 = Some(value.to_owned());
        }
    }
}

/// The trace id of the innermost `trace` span around `event`, if any.
fn trace_id_of<S>(event: &Event<'_>, ctx: &Context<'_, S>) -> Option<String>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    ctx.event_scope(event)?.find_map(|span| {
        let extensions = span.extensions();
        match extensions.get::<TraceId>() {
            Some(t) => Some(t.0.clone()),
            None => crate::telemetry::log_span::trace_id(&extensions),
        }
    })
}

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
    /// Keeps a `trace` span's trace id, while a feed is on (a sampled
    /// request's span opened before the feed turned on has none).
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if ACTIVE.load(Ordering::Relaxed) == 0 || attrs.metadata().name() != TRACE_SPAN {
            return;
        }
        let mut field = TraceField::default();
        attrs.record(&mut field);
        if let (Some(trace_id), Some(span)) = (field.0, ctx.span(id)) {
            span.extensions_mut().insert(TraceId(trace_id));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
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
                r.trace_id = trace_id_of(event, &ctx);
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
