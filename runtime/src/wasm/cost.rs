//! Metering of single guest calls, for the per-request cost breakdown.
//!
//! A caller that wants to know what a call cost puts a [`CostMeter`] in the
//! call's extensions; the engine then times the guest's run and reads its
//! instance's memory, and appends a [`GuestCost`] to the meter. Calls
//! without a meter pay one lookup in their extensions and nothing else, so
//! the breakdown is a debugging aid the operator turns on, never a tax on
//! every request.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// What one guest call cost.
#[derive(Debug, Clone)]
pub struct GuestCost {
    /// The guest's name (a plugin's name, or an app's `name@version`).
    pub guest: Arc<str>,
    /// The export called (`on_request`, `handle`, …).
    pub export: String,
    /// Wall time from the call's start to its end on the instance: the
    /// guest's own run and its synchronous host calls, plus any wait in an
    /// awaiting host call (an outbound `http` request, say). Time spent
    /// waiting for a free instance is not included.
    pub time: Duration,
    /// The instance's memory after the call: linear memory (which never
    /// shrinks, so this is its peak) plus the arena's blocks.
    pub memory: usize,
}

/// Collects the [`GuestCost`] of every metered call, in call order.
///
/// Cloning shares the collection, so one meter can ride along a request's
/// calls: each call's extensions get a clone.
///
/// # Example
///
/// ```
/// use buntime::wasm::CostMeter;
///
/// let meter = CostMeter::default();
/// let mut extensions = http::Extensions::new();
/// extensions.insert(meter.clone());
/// // … `instance.call_with("handle", input, extensions)` …
/// assert!(meter.take().is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct CostMeter(Arc<Mutex<Vec<GuestCost>>>);

impl CostMeter {
    /// Appends one call's cost.
    pub(crate) fn record(&self, cost: GuestCost) {
        // A poisoned lock only means another recording panicked: the list
        // itself is still whole.
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(cost);
    }

    /// The costs recorded so far, leaving the meter empty.
    pub fn take(&self) -> Vec<GuestCost> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
