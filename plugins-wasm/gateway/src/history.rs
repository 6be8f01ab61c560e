//! The counters' history for `/_/gateway/api/metrics/history`: a snapshot
//! of the counters per second that saw requests, kept an hour.
//!
//! The plugin has no timer: the first request an instance sees in a new
//! second writes that second's snapshot, if no instance has (a write only
//! if absent). So an instance pays two state calls once a second, not per
//! request, and a second without requests has no snapshot (the counters
//! did not move in it).

use std::cell::Cell;
use std::time::Duration;

use buntime_pdk::Error;
use buntime_pdk::plugin::state;
use serde_json::json;

use crate::guest::{LIMITED, PREFLIGHTS};

/// The state key prefix of the snapshots: `hist:<second since the epoch>`.
pub(crate) const HISTORY_PREFIX: &str = "hist:";
/// How long a snapshot is kept: an hour, so at most 3 600 of them.
pub(crate) const KEEP: Duration = Duration::from_secs(3600);

thread_local! {
    /// The last second this instance wrote (or found) a snapshot for.
    static LAST: Cell<u64> = const { Cell::new(0) };
}

/// Notes request `seq` (the requests counter after it) at `now_ms`: the
/// first of its second writes the second's snapshot.
pub(crate) fn note(seq: u64, now_ms: u64) -> Result<(), Error> {
    let second = now_ms / 1000;
    if LAST.with(Cell::get) == second {
        return Ok(());
    }
    LAST.with(|l| l.set(second));
    let count = |key: &str| -> Result<u64, Error> {
        Ok(state::get::<u64>(key)?.map_or(0, |(v, _)| v))
    };
    let blocked = count(LIMITED)?;
    let preflights = count(PREFLIGHTS)?;
    let snapshot = json!({
        "timestamp": second * 1000,
        "totalRequests": seq,
        "blockedRequests": blocked,
        "preflightRequests": preflights,
        "allowedRequests": seq.saturating_sub(blocked + preflights),
    });
    // Zero-padded so the listing (in key order) is in time order.
    state::cas(
        &format!("{HISTORY_PREFIX}{second:012}"),
        0,
        &snapshot,
        Some(KEEP),
    )?;
    Ok(())
}
