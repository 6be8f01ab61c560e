//! The process's log subscriber: the formatter (text or JSON) on stderr,
//! the level filter, the layer that fills a sampled request's `trace` span,
//! and the log feed's layer.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::telemetry::{FieldFormat, TraceLogLayer};

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
    let format = if json {
        FieldFormat::Json
    } else {
        FieldFormat::Text
    };
    // Beneath the formatter (one of the two is set), the layer that fills a
    // sampled request's `trace` span only when a line is written in it;
    // above it, the filter and the log feed's layer, which sees what the
    // filter lets through.
    let _ = tracing_subscriber::registry()
        .with(TraceLogLayer::new(format))
        .with(json.then(|| {
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
        }))
        .with((!json).then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr)))
        .with(filter)
        .with(crate::log_feed::FeedLayer)
        .try_init();
}
