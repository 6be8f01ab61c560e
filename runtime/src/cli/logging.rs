//! The process's log subscriber: the formatter (text or JSON) on stderr,
//! its lines naming the trace they were written in, the level filter, and
//! the log feed's layer.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::telemetry::{LogFormat, TraceIdsWriter};

/// Installs the log subscriber: `RUNTIME_LOG_LEVEL` (default `info`), JSON
/// when `RUNTIME_LOG_FORMAT=json` or, unless it says otherwise, in production.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUNTIME_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let production = ["RUNTIME_ENV", "NODE_ENV"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| v == "production"));
    let json = match std::env::var("RUNTIME_LOG_FORMAT").ok().as_deref() {
        Some("json") => true,
        Some(_) => false,
        None => production,
    };
    // The formatter (one of the two is set), then the filter and the log
    // feed's layer, which sees what the filter lets through.
    let _ = tracing_subscriber::registry()
        .with(json.then(|| {
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(TraceIdsWriter::new(std::io::stderr, LogFormat::Json))
        }))
        .with((!json).then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(TraceIdsWriter::new(std::io::stderr, LogFormat::Text))
        }))
        .with(filter)
        .with(crate::log_feed::FeedLayer)
        .try_init();
}
