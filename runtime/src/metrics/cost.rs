//! What guests cost across requests: the time of their calls and their
//! instances' memory, per plugin and per app version, for the
//! `buntime_guest_*` series.
//!
//! Timing every call would cost two clock reads (~40 ns) per hook, a tenth
//! of a pass-through hook, so one call in [`COST_SAMPLE`] of each guest is
//! measured (the same calls the hook duration histogram times): its wall
//! time on the instance (the guest's run and its host calls, without the
//! wait for a free instance) and the instance's memory after it. The total
//! time is estimated as the sampled sum × [`COST_SAMPLE`].
//!
//! Memory is the instance's linear memory plus its arena blocks. Linear
//! memory never shrinks, so the figure after a call is the instance's peak
//! so far; a peak reached in a call that was not sampled shows at the
//! instance's next sampled call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Cells, Histogram, HistogramSnapshot};

/// One call in this many of a guest is measured.
pub const COST_SAMPLE: u64 = 8;

/// Upper bounds of the memory buckets, in bytes: 64 KiB (one WASM page) to
/// 4 GiB (a 32-bit guest's whole address space), by factors of four.
pub const MEMORY_BUCKETS: [f64; 9] = [
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    1_073_741_824.0,
    4_294_967_296.0,
];

/// Cells of the memory histogram: the buckets, `+Inf`, the sum.
const MEMORY_CELLS: usize = MEMORY_BUCKETS.len() + 2;

/// The sampled cost of one guest (a plugin, or an app version).
#[derive(Debug, Default)]
pub struct GuestCostStats {
    /// Wall time of the sampled calls on their instance.
    pub time: Histogram,
    /// The instance's memory after each sampled call.
    memory: Cells<MEMORY_CELLS>,
    /// The most memory an instance had after a sampled call.
    peak: AtomicU64,
}

impl GuestCostStats {
    /// Records one sampled call: its time and its instance's memory after it.
    pub fn record(&self, time: Duration, memory: usize) {
        self.time.observe(time);
        let bytes = memory as u64;
        let bucket = MEMORY_BUCKETS
            .iter()
            .position(|&b| bytes as f64 <= b)
            .unwrap_or(MEMORY_BUCKETS.len());
        self.memory.add_two((bucket, 1), (MEMORY_CELLS - 1, bytes));
        // A locked instruction only for a new peak, which is rare.
        if bytes > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(bytes, Ordering::Relaxed);
        }
    }

    /// Estimated wall time of all calls, in seconds: the sampled sum times
    /// [`COST_SAMPLE`].
    pub fn estimated_seconds(&self) -> f64 {
        self.time.sum_nanos() as f64 * COST_SAMPLE as f64 / 1e9
    }

    /// Calls measured.
    pub fn sampled_calls(&self) -> u64 {
        self.time.snapshot().count
    }

    /// The largest memory seen after a sampled call, in bytes.
    pub fn peak_bytes(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// The memory histogram, in bytes.
    pub fn memory(&self) -> HistogramSnapshot {
        let cells = self.memory.get();
        let counts = &cells[..=MEMORY_BUCKETS.len()];
        HistogramSnapshot {
            sum: cells[MEMORY_CELLS - 1] as f64,
            count: counts.iter().fold(0u64, |a, n| a.wrapping_add(*n)),
            buckets: counts
                .iter()
                .enumerate()
                .map(|(i, n)| (MEMORY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), *n))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_calls_give_an_estimate_a_memory_histogram_and_a_peak() {
        let c = GuestCostStats::default();
        c.record(Duration::from_millis(2), 70_000);
        c.record(Duration::from_millis(1), 1_000_000);
        c.record(Duration::from_millis(1), 65_536);
        assert_eq!(c.sampled_calls(), 3);
        assert!((c.estimated_seconds() - 0.004 * COST_SAMPLE as f64).abs() < 1e-9);
        assert_eq!(c.peak_bytes(), 1_000_000);
        let m = c.memory();
        assert_eq!(m.count, 3);
        assert_eq!(m.sum, 1_135_536.0);
        assert_eq!(m.buckets[0], (65_536.0, 1));
        assert_eq!(m.buckets[1], (262_144.0, 1));
        assert_eq!(m.buckets[2], (1_048_576.0, 1));
        assert_eq!(m.buckets.last(), Some(&(f64::INFINITY, 0)));
    }
}
