//! The `trace` log span of a sampled request: the `tracing` span whose
//! `trace_id` and `span_id` fields name the request's trace in every log
//! line written while it runs.
//!
//! The log formatter formats a span's fields when the span opens, whether
//! or not a line is ever written inside it; for a request that logs nothing
//! (nearly all of them) that was most of what the span cost. Under the
//! server's own subscriber ([`TraceLogLayer`] installed beneath the
//! formatter, as `buntime serve` does) the span opens with its two fields
//! empty and the ids beside it, and the layer writes them into the
//! formatter's fields just before the first line inside the span is
//! formatted: the lines read as if the fields had been there from the
//! start. Under any other subscriber (an embedder's, a test's) the span
//! opens with its fields set.

use std::cell::Cell;

use opentelemetry::trace::SpanContext;
use tracing::field::{Empty, Value, display};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{DefaultFields, JsonFields};
use tracing_subscriber::fmt::{FormatFields, FormattedFields};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{Extensions, LookupSpan};

use super::propagation;

/// The span's name.
const TRACE_SPAN: &str = "trace";

thread_local! {
    /// The ids of the `trace` span being opened on this thread, for the
    /// layer to take as it opens.
    static OPENING: Cell<Option<Ids>> = const { Cell::new(None) };
}

/// A trace's ids as lowercase hex.
#[derive(Debug, Clone, Copy)]
struct Ids {
    trace: [u8; 32],
    span: [u8; 16],
}

impl Ids {
    fn of(context: &SpanContext) -> Self {
        let (trace, span) = propagation::ids_hex(context);
        Self { trace, span }
    }
}

/// In a lazily filled `trace` span's extensions: its ids, and whether the
/// formatter has them yet.
#[derive(Debug)]
struct Lazy {
    ids: Ids,
    written: bool,
}

/// Which field formatter the formatter above [`TraceLogLayer`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldFormat {
    /// `tracing_subscriber`'s `DefaultFields` (the text format).
    Text,
    /// `JsonFields` (the JSON format).
    Json,
}

/// The layer that fills `trace` spans' fields when a line is written in
/// them (see the module doc). Goes beneath the `fmt` layer, whose field
/// formatter `format` names, so that it sees each event first.
#[derive(Debug, Clone, Copy)]
pub struct TraceLogLayer {
    format: FieldFormat,
}

impl TraceLogLayer {
    /// The layer for a formatter using `format`.
    pub fn new(format: FieldFormat) -> Self {
        Self { format }
    }
}

/// Opens the `trace` span of a sampled request whose server span is
/// `context`.
pub(crate) fn open(context: &SpanContext) -> tracing::Span {
    let ids = Ids::of(context);
    let lazy = tracing::dispatcher::get_default(|d| d.is::<TraceLogLayer>());
    if lazy {
        OPENING.set(Some(ids));
        let span = tracing::error_span!(TRACE_SPAN, trace_id = Empty, span_id = Empty);
        // Left when the span is disabled (no layer took them).
        OPENING.set(None);
        return span;
    }
    tracing::error_span!(
        TRACE_SPAN,
        trace_id = %ascii(&ids.trace),
        span_id = %ascii(&ids.span)
    )
}

/// The trace id of a lazily filled `trace` span, from its extensions (for
/// the log feed, whether or not the formatter has it yet).
pub(crate) fn trace_id(extensions: &Extensions<'_>) -> Option<String> {
    extensions
        .get::<Lazy>()
        .map(|lazy| ascii(&lazy.ids.trace).to_owned())
}

impl<S> Layer<S> for TraceLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != TRACE_SPAN {
            return;
        }
        let Some(ids) = OPENING.take() else {
            return;
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Lazy {
                ids,
                written: false,
            });
        }
    }

    /// An event about to be formatted: the innermost `trace` span around
    /// it gets its fields now, if it has not yet.
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            if span.name() != TRACE_SPAN {
                continue;
            }
            let mut extensions = span.extensions_mut();
            let Some(lazy) = extensions.get_mut::<Lazy>() else {
                return;
            };
            if lazy.written {
                return;
            }
            lazy.written = true;
            let ids = lazy.ids;
            let fields = span.metadata().fields();
            let (Some(trace_field), Some(span_field)) =
                (fields.field("trace_id"), fields.field("span_id"))
            else {
                return;
            };
            let trace_id = display(ascii(&ids.trace));
            let span_id = display(ascii(&ids.span));
            let values = [
                (&trace_field, Some(&trace_id as &dyn Value)),
                (&span_field, Some(&span_id as &dyn Value)),
            ];
            let values = fields.value_set(&values);
            let record = Record::new(&values);
            // As the formatter's own `on_record` adds recorded fields.
            match self.format {
                FieldFormat::Text => {
                    if let Some(formatted) = extensions.get_mut::<FormattedFields<DefaultFields>>()
                    {
                        let _ = DefaultFields::default().add_fields(formatted, &record);
                    }
                }
                FieldFormat::Json => {
                    if let Some(formatted) = extensions.get_mut::<FormattedFields<JsonFields>>() {
                        let _ = JsonFields::default().add_fields(formatted, &record);
                    }
                }
            }
            return;
        }
    }
}

/// Hex digits as text.
fn ascii(hex: &[u8]) -> &str {
    std::str::from_utf8(hex).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt as _;

    /// Collects what the formatter writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
        }
    }

    fn context() -> SpanContext {
        SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        )
    }

    /// Two lines inside a span, one after it, through `subscriber`.
    fn log(subscriber: impl Subscriber + Send + Sync + 'static) {
        tracing::subscriber::with_default(subscriber, || {
            let span = open(&context());
            span.in_scope(|| {
                tracing::info!(n = 1, "first");
                tracing::warn!("second");
            });
            tracing::info!("outside");
            let quiet = open(&context());
            drop(quiet);
        });
    }

    fn text<S>(lines: &Lines, ansi: bool) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let lines = lines.clone();
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .without_time()
            .with_writer(move || lines.clone())
    }

    fn json<S>(lines: &Lines) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let lines = lines.clone();
        tracing_subscriber::fmt::layer()
            .json()
            .without_time()
            .with_writer(move || lines.clone())
    }

    /// The same lines with the layer and with eager fields, in the text
    /// format with and without colours, and in JSON.
    #[test]
    fn lazily_filled_fields_read_as_eager_ones() {
        for ansi in [false, true] {
            let (lazy, eager) = (Lines::default(), Lines::default());
            log(tracing_subscriber::registry()
                .with(TraceLogLayer::new(FieldFormat::Text))
                .with(text(&lazy, ansi)));
            log(tracing_subscriber::registry().with(text(&eager, ansi)));
            let text = lazy.text();
            assert_eq!(text, eager.text());
            assert!(
                text.lines().next().unwrap().contains("00f067aa0ba902b7")
                    && text.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
                "{text}"
            );
            assert_eq!(
                text.matches("4bf92f3577b34da6a3ce929d0e0e4736").count(),
                2,
                "{text}"
            );
        }
        let (lazy, eager) = (Lines::default(), Lines::default());
        log(tracing_subscriber::registry()
            .with(TraceLogLayer::new(FieldFormat::Json))
            .with(json(&lazy)));
        log(tracing_subscriber::registry().with(json(&eager)));
        assert_eq!(lazy.text(), eager.text());
        assert!(
            lazy.text()
                .contains(r#""trace_id":"4bf92f3577b34da6a3ce929d0e0e4736""#),
            "{}",
            lazy.text()
        );
    }

    #[test]
    fn without_the_layer_the_fields_are_set_at_once() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        log(subscriber);
        assert!(
            lines.text().contains(
                "trace{trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7}:"
            ),
            "{}",
            lines.text()
        );
    }
}
