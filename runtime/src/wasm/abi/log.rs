//! `log_*` and `get_log_level`: guest logging into the host's `tracing`.
//!
//! Messages are attributed to the guest (`guest` field, target
//! `buntime::guest`) and truncated past [`MAX_LOG_MESSAGE`] so a guest cannot
//! flood the log with one call, nor with many: each instance has a token
//! bucket of lines (`GuestOptions::log_rate`, by default 100 lines a second
//! and bursts of 200). Lines past it are dropped and counted
//! (`EngineStats::guest_log_dropped`); the next line written is preceded by
//! one saying how many were dropped. A dropped line is still a successful
//! call for the guest.
//!
//! Lines also go to the log feed (`crate::log_feed`) when a plugin
//! subscribes to their level, whatever the process's own log level, with
//! the app or plugin and the request they were written for.
//!
//! Handles are taken as the Extism runtime takes them: 0 is an empty
//! message; a handle that is not a block is an error only when the level is
//! enabled (a filtered-out line is not read at all).

use tracing::Level;
use tracing::level_filters::LevelFilter;
use wasmtime::{Caller, Linker};

use super::super::state::HostState;
use super::{ENV_NAMESPACE, guest_fault};
use crate::grants::Capability;
use crate::log_feed::{LogRecord, LogTag, Source};

/// Longest message kept from one `log_*` call.
pub(super) const MAX_LOG_MESSAGE: usize = 16 << 10;

type Cx<'a> = Caller<'a, HostState>;

fn log(c: &mut Cx<'_>, level: Level, function: &str, h: i64) -> wasmtime::Result<()> {
    let state = c.data_mut();
    if state.log_requires_grant && !state.grants.allows(Capability::LOG) {
        // Not logged as a warning per call: that would let the guest flood
        // the log through the very channel it was denied. Counted instead.
        state.shared.stats.record_denial(Capability::LOG.name());
        state.arena.free(h as u64);
        return Ok(());
    }
    let enabled = LevelFilter::current() >= level;
    // The feed has its own level (what its subscribers asked for), and a
    // line written while the guest handles the feed is not fed back.
    let fed = state.shared.log_feed.wants(level)
        && state
            .extensions
            .get::<crate::log_feed::FeedDelivery>()
            .is_none();
    if enabled || fed {
        let bytes = match h {
            0 => &[][..],
            h => state
                .arena
                .block(h as u64)
                .map_err(|e| guest_fault(function, e))?,
        };
        if !state.log_limiter.admit() {
            state.shared.stats.guest_log_dropped.add(1);
            state.arena.free(h as u64);
            return Ok(());
        }
        let dropped = std::mem::take(&mut state.log_limiter.dropped);
        let guest: &str = &state.guest_name;
        if dropped > 0 && enabled {
            tracing::warn!(target: "buntime::guest", guest, dropped, "{dropped} log lines dropped (the guest logged faster than its rate limit)");
        }
        state.shared.stats.guest_log_lines.add(1);
        let cut = bytes.len().min(MAX_LOG_MESSAGE);
        let text = String::from_utf8_lossy(&bytes[..cut]);
        let suffix = if cut < bytes.len() {
            " …(truncated)"
        } else {
            ""
        };
        if enabled {
            // One guest line is one line of the server's log: a guest (or a
            // client whose text a plugin logs) cannot forge lines or
            // terminal escapes. The feed below keeps the text as written.
            let text = one_line(&text);
            let line = || match level {
                Level::ERROR => tracing::error!(target: "buntime::guest", guest, "{text}{suffix}"),
                Level::WARN => tracing::warn!(target: "buntime::guest", guest, "{text}{suffix}"),
                Level::INFO => tracing::info!(target: "buntime::guest", guest, "{text}{suffix}"),
                Level::DEBUG => tracing::debug!(target: "buntime::guest", guest, "{text}{suffix}"),
                Level::TRACE => tracing::trace!(target: "buntime::guest", guest, "{text}{suffix}"),
            };
            // A traced call's line names the call's span, current while
            // the call runs (`telemetry/current.rs`).
            line();
        }
        if fed {
            let record = guest_record(state, level, format!("{text}{suffix}"));
            state.shared.log_feed.push(record);
        }
    }
    state.arena.free(h as u64);
    Ok(())
}

/// `text` with its control characters (line breaks, escape sequences; not
/// tabs) written as Rust escapes (`\n`, `\u{1b}`); borrowed when it has none.
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    let control = |c: char| c.is_control() && c != '\t';
    if !text.contains(control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if control(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A feed record of a guest's line: an app's or a plugin's, with the
/// request the call serves when the server tagged it.
fn guest_record(state: &HostState, level: Level, message: String) -> LogRecord {
    let source = if state.log_requires_grant {
        Source::Plugin
    } else {
        Source::App
    };
    let mut record = LogRecord::new(level, source, message);
    match source {
        Source::Plugin => record.plugin = Some(state.guest_name.clone()),
        _ => record.app = Some(state.guest_name.clone()),
    }
    if let Some(tag) = state.extensions.get::<LogTag>() {
        record.request_id = Some(tag.request_id.clone());
        record.trace_id = tag.trace_id.clone();
    }
    record
}

pub(super) fn link(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let ns = ENV_NAMESPACE;
    l.func_wrap(ns, "log_trace", |mut c: Cx<'_>, h: i64| {
        log(&mut c, Level::TRACE, "log_trace", h)
    })?;
    l.func_wrap(ns, "log_debug", |mut c: Cx<'_>, h: i64| {
        log(&mut c, Level::DEBUG, "log_debug", h)
    })?;
    l.func_wrap(ns, "log_info", |mut c: Cx<'_>, h: i64| {
        log(&mut c, Level::INFO, "log_info", h)
    })?;
    l.func_wrap(ns, "log_warn", |mut c: Cx<'_>, h: i64| {
        log(&mut c, Level::WARN, "log_warn", h)
    })?;
    l.func_wrap(ns, "log_error", |mut c: Cx<'_>, h: i64| {
        log(&mut c, Level::ERROR, "log_error", h)
    })?;
    l.func_wrap(ns, "get_log_level", |c: Cx<'_>| -> i32 {
        log_level(c.data().shared.log_feed.level())
    })?;
    Ok(())
}

/// The Extism numbering: trace 0, debug 1, info 2, warn 3, error 4, off
/// `i32::MAX`. The most verbose of the process's level and the log feed's
/// (`fed`): PDKs skip the call below it, and the feed must still get it.
fn log_level(fed: Option<Level>) -> i32 {
    let own = LevelFilter::current();
    let level = match fed {
        Some(f) if LevelFilter::from_level(f) > own => Some(f),
        _ => own.into_level(),
    };
    match level {
        None => i32::MAX,
        Some(Level::TRACE) => 0,
        Some(Level::DEBUG) => 1,
        Some(Level::INFO) => 2,
        Some(Level::WARN) => 3,
        Some(Level::ERROR) => 4,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_guest_line_stays_one_line_without_escape_sequences() {
        assert!(matches!(
            super::one_line("plain\ttext"),
            std::borrow::Cow::Borrowed("plain\ttext")
        ));
        assert_eq!(
            super::one_line("ok\nINFO forged\r\n\u{1b}[2J"),
            "ok\\nINFO forged\\r\\n\\u{1b}[2J"
        );
    }
}
