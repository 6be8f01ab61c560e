//! One record of the log feed and its JSON form (what subscribers get).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::Level;

/// Where a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The host itself (a `tracing` event).
    Runtime,
    /// An app's `log_*` call.
    App,
    /// A plugin's `log_*` call.
    Plugin,
}

/// A log record as subscribers receive it (camelCase JSON).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRecord {
    /// Milliseconds since the Unix epoch.
    pub time: u64,
    /// The same instant as RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: &'static str,
    /// The text (for runtime records followed by their fields as `key=value`).
    pub message: String,
    /// Who wrote it.
    pub source: Source,
    /// The app (`name@version`), when known.
    #[serde(serialize_with = "shared_text")]
    pub app: Option<Arc<str>>,
    /// The plugin, when known.
    #[serde(serialize_with = "shared_text")]
    pub plugin: Option<Arc<str>>,
    /// The `tracing` target of a runtime record (its module).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'static str>,
    /// The request it was written for, when known.
    pub request_id: Option<String>,
    /// The W3C trace id, when tracing knows it; `null` otherwise.
    pub trace_id: Option<String>,
    /// `level` as a value, for filtering by topic.
    #[serde(skip)]
    pub severity: Level,
}

impl LogRecord {
    /// A record of `level` from `source`, stamped now.
    pub fn new(level: Level, source: Source, message: String) -> Self {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64);
        Self {
            time,
            timestamp: rfc3339_millis(time),
            level: level_name(level),
            message,
            source,
            app: None,
            plugin: None,
            target: None,
            request_id: None,
            trace_id: None,
            severity: level,
        }
    }
}

/// An optional shared name as a JSON string or `null`.
fn shared_text<S: serde::Serializer>(v: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    v.as_deref().serialize(s)
}

/// `level` in lower case.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// The feed topic of `level`: `log.error` … `log.trace`.
pub fn topic(level: Level) -> &'static str {
    match level {
        Level::ERROR => "log.error",
        Level::WARN => "log.warn",
        Level::INFO => "log.info",
        Level::DEBUG => "log.debug",
        Level::TRACE => "log.trace",
    }
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (the proleptic
/// Gregorian calendar, days to civil date after Howard Hinnant's algorithm).
fn rfc3339_millis(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339_millis;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339_millis(1_798_761_599_999),
            "2026-12-31T23:59:59.999Z"
        );
    }
}
