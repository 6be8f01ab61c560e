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
//! Handles are taken as the Extism runtime takes them: 0 is an empty
//! message; a handle that is not a block is an error only when the level is
//! enabled (a filtered-out line is not read at all).

use tracing::Level;
use tracing::level_filters::LevelFilter;
use wasmtime::{Caller, Linker};

use super::super::state::HostState;
use super::{ENV_NAMESPACE, guest_fault};
use crate::grants::Capability;

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
    if enabled {
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
        if dropped > 0 {
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
        match level {
            Level::ERROR => tracing::error!(target: "buntime::guest", guest, "{text}{suffix}"),
            Level::WARN => tracing::warn!(target: "buntime::guest", guest, "{text}{suffix}"),
            Level::INFO => tracing::info!(target: "buntime::guest", guest, "{text}{suffix}"),
            Level::DEBUG => tracing::debug!(target: "buntime::guest", guest, "{text}{suffix}"),
            Level::TRACE => tracing::trace!(target: "buntime::guest", guest, "{text}{suffix}"),
        }
    }
    state.arena.free(h as u64);
    Ok(())
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
    l.func_wrap(ns, "get_log_level", |_: Cx<'_>| -> i32 { log_level() })?;
    Ok(())
}

/// The Extism numbering: trace 0, debug 1, info 2, warn 3, error 4, off `i32::MAX`.
fn log_level() -> i32 {
    match LevelFilter::current().into_level() {
        None => i32::MAX,
        Some(Level::TRACE) => 0,
        Some(Level::DEBUG) => 1,
        Some(Level::INFO) => 2,
        Some(Level::WARN) => 3,
        Some(Level::ERROR) => 4,
    }
}
