//! The feed's own rules: nothing while off, levels, the bounded queue, the
//! `tracing` layer's fields and trace id, and no feedback from delivery.

use std::collections::HashMap;

use tracing::Level;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

use super::{FeedLayer, LogFeed, LogRecord, QUEUE_CAPACITY, Source, delivering};

fn with_layer(f: impl FnOnce()) {
    let subscriber = tracing_subscriber::registry()
        .with(LevelFilter::TRACE)
        .with(FeedLayer);
    tracing::subscriber::with_default(subscriber, f);
}

/// The trace id of every record queued so far, by its message.
fn trace_ids_by_message(
    rx: &mut tokio::sync::mpsc::Receiver<LogRecord>,
) -> HashMap<String, Option<String>> {
    let mut by_message = HashMap::new();
    while let Ok(r) = rx.try_recv() {
        by_message.insert(r.message, r.trace_id);
    }
    by_message
}

#[test]
fn an_unsubscribed_feed_takes_nothing() {
    let feed = LogFeed::default();
    let mut rx = feed.take_receiver().expect("receiver");
    assert!(!feed.wants(Level::ERROR));
    with_layer(|| tracing::error!("nobody listens"));
    assert!(rx.try_recv().is_err());
    assert_eq!(feed.queued(), 0);
}

#[test]
fn runtime_events_become_records_at_the_wanted_levels() {
    let feed = LogFeed::default();
    let mut rx = feed.take_receiver().expect("receiver");
    feed.set_level(Some(Level::INFO));
    with_layer(|| {
        tracing::info!(
            app = "hello@1.0.0",
            request_id = "r-1",
            n = 3,
            "served {}",
            "fine"
        );
        tracing::debug!("too verbose");
        tracing::warn!(target: "buntime::guest", guest = "x", "a guest line (fed elsewhere)");
    });
    let r = rx.try_recv().expect("one record");
    assert_eq!(r.level, "info");
    assert_eq!(r.source, Source::Runtime);
    assert_eq!(r.message, "served fine n=3");
    assert_eq!(r.app.as_deref(), Some("hello@1.0.0"));
    assert_eq!(r.request_id.as_deref(), Some("r-1"));
    assert!(r.trace_id.is_none());
    assert!(rx.try_recv().is_err(), "debug and guest events are not fed");
    feed.set_level(None);
}

#[tokio::test]
async fn what_delivery_logs_is_not_fed_back() {
    let feed = LogFeed::default();
    let mut rx = feed.take_receiver().expect("receiver");
    feed.set_level(Some(Level::TRACE));
    let subscriber = tracing_subscriber::registry()
        .with(LevelFilter::TRACE)
        .with(FeedLayer);
    let _guard = tracing::subscriber::set_default(subscriber);
    delivering(async { tracing::warn!("on_event failed") }).await;
    assert!(rx.try_recv().is_err());
    tracing::warn!("outside delivery");
    assert!(rx.try_recv().is_ok());
    feed.set_level(None);
}

#[test]
fn a_full_queue_drops_and_counts() {
    let feed = LogFeed::default();
    let _rx = feed.take_receiver().expect("receiver");
    for _ in 0..QUEUE_CAPACITY + 5 {
        feed.push(LogRecord::new(Level::INFO, Source::App, String::new()));
    }
    assert_eq!(feed.queued(), QUEUE_CAPACITY as u64);
    assert_eq!(feed.dropped(), 5);
}

#[test]
fn a_runtime_record_inside_a_trace_span_carries_its_trace_id() {
    let feed = LogFeed::default();
    let mut rx = feed.take_receiver().expect("receiver");
    feed.set_level(Some(Level::INFO));
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    with_layer(|| {
        // The span `telemetry/spans.rs` opens for a sampled request, with a
        // span of a hook inside it.
        let trace =
            tracing::error_span!("trace", trace_id = %trace_id, span_id = "00f067aa0ba902b7");
        let _t = trace.enter();
        let hook = tracing::error_span!("span", span_id = "b7ad6b7169203331");
        let _h = hook.enter();
        tracing::warn!("traced-line");
        drop(_h);
        drop(_t);
        tracing::warn!("untraced-line");
    });
    let by_message = trace_ids_by_message(&mut rx);
    assert_eq!(
        by_message.get("traced-line"),
        Some(&Some(trace_id.to_owned()))
    );
    assert_eq!(by_message.get("untraced-line"), Some(&None));
    feed.set_level(None);
}

/// Under the server's subscriber the `trace` span's fields are filled only
/// when a line is written; the feed's record has the trace id all the same.
#[test]
fn a_record_inside_a_lazily_filled_trace_span_carries_its_trace_id() {
    use crate::telemetry::{FieldFormat, TraceLogLayer};
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let feed = LogFeed::default();
    let mut rx = feed.take_receiver().expect("receiver");
    feed.set_level(Some(Level::INFO));
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let context = SpanContext::new(
        TraceId::from_hex(trace_id).unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    );
    let subscriber = tracing_subscriber::registry()
        .with(TraceLogLayer::new(FieldFormat::Text))
        .with(LevelFilter::TRACE)
        .with(FeedLayer);
    tracing::subscriber::with_default(subscriber, || {
        let trace = crate::telemetry::log_span::open(&context);
        trace.in_scope(|| {
            tracing::warn!("first-line");
            tracing::warn!("second-line");
        });
        tracing::warn!("untraced-line");
    });
    let by_message = trace_ids_by_message(&mut rx);
    for line in ["first-line", "second-line"] {
        assert_eq!(
            by_message.get(line),
            Some(&Some(trace_id.to_owned())),
            "{line}"
        );
    }
    assert_eq!(by_message.get("untraced-line"), Some(&None));
    feed.set_level(None);
}
