//! Engine-wide counters. Plain atomics: read by the metrics endpoints, bumped
//! on the hot path without locks.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the engine's work and of guest misbehaviour.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Modules compiled from WASM bytes.
    pub compiled: AtomicU64,
    /// Modules loaded from the on-disk cache.
    pub cache_hits: AtomicU64,
    /// Cache files rejected as corrupt or incompatible (then recompiled).
    pub cache_rejected: AtomicU64,
    /// Instances created.
    pub instances: AtomicU64,
    /// Calls that trapped.
    pub traps: AtomicU64,
    /// Calls stopped at their deadline.
    pub timeouts: AtomicU64,
    /// Guest calls run directly on the caller's stack (no fiber).
    pub direct_calls: AtomicU64,
    /// Guest calls run on a fiber (the guest may wait, or computes for long).
    pub fiber_calls: AtomicU64,
    /// Host calls refused for lack of a grant.
    pub denials: AtomicU64,
    denials_by_capability: Mutex<BTreeMap<&'static str, u64>>,
}

impl EngineStats {
    pub(crate) fn record_denial(&self, capability: &'static str) {
        self.denials.fetch_add(1, Ordering::Relaxed);
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

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
