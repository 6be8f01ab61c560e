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
fn a_runtime_record_written_in_a_trace_carries_its_trace_id() {
    use crate::telemetry::log_ids::{TraceIds, scoped};
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let feed = LogFeed::default();
    let mut rx = feed.take_receiver().expect("receiver");
    feed.set_level(Some(Level::INFO));
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let ids = TraceIds::of(&SpanContext::new(
        TraceId::from_hex(trace_id).unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    ));
    with_layer(|| {
        // As while a sampled request's future is polled.
        scoped(ids, || {
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
