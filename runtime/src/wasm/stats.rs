//! Engine-wide counters: read by the metrics endpoints, bumped on the hot
//! path without locks or shared cache lines ([`Counter`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::counter::Counter;

/// Counters of the engine's work and of guest misbehaviour.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Modules compiled from WASM bytes.
    pub compiled: Counter,
    /// Modules loaded from the on-disk cache.
    pub cache_hits: Counter,
    /// Modules that share the compiled code of an identical module already
    /// loaded (no compilation, no second copy).
    pub shared: Counter,
    /// Cache files rejected as corrupt or incompatible (then recompiled).
    pub cache_rejected: Counter,
    /// Instances created.
    pub instances: Counter,
    /// Calls that trapped.
    pub traps: Counter,
    /// Calls stopped at their deadline.
    pub timeouts: Counter,
    /// Guest calls run directly on the caller's stack (no fiber).
    pub direct_calls: Counter,
    /// Guest calls run on a fiber (the guest may wait, or computes for long).
    pub fiber_calls: Counter,
    /// Host calls refused for lack of a grant.
    pub denials: Counter,
    /// Guest log lines written.
    pub guest_log_lines: Counter,
    /// Guest log lines dropped by the per-instance rate limit.
    pub guest_log_dropped: Counter,
    denials_by_capability: Mutex<BTreeMap<&'static str, u64>>,
    /// Time to compile a module from WASM bytes (the load-time rewrite and
    /// the code generation).
    pub compile_time: crate::metrics::Histogram,
}

impl EngineStats {
    pub(crate) fn record_denial(&self, capability: &'static str) {
        self.denials.add(1);
        if let Ok(mut map) = self.denials_by_capability.lock() {
            *map.entry(capability).or_default() += 1;
        }
    }

    /// Denials so far, by capability name.
    pub fn denials_by_capability(&self) -> BTreeMap<&'static str, u64> {
        self.denials_by_capability
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}
