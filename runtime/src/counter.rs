//! Event counters bumped by every worker thread at once.
//!
//! A plain `AtomicU64` that both cores increment on every request bounces
//! its cache line between them: under load, one such `lock inc` was a sixth
//! of a guest call's host-side cost. A [`Counter`] gives each thread its own
//! cache line (a few shards, picked once per thread) and sums them when read,
//! which only the stats endpoints do.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shards per counter: enough that the worker threads of a small machine
/// rarely share one, few enough that a counter stays small (512 bytes).
pub(crate) const SHARDS: usize = 8;

/// One shard, alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard(AtomicU64);

/// A monotonic counter that many threads add to without contending.
///
/// ```
/// use buntime::counter::Counter;
/// let requests = Counter::default();
/// requests.add(1);
/// requests.add(2);
/// assert_eq!(requests.get(), 3);
/// ```
#[derive(Debug, Default)]
pub struct Counter {
    shards: [Shard; SHARDS],
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard, assigned round-robin on first use.
    static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// This thread's shard index, `0..SHARDS`: the same for every per-thread
/// structure, so a thread's counters and idle lists stay on its own core.
pub(crate) fn shard() -> usize {
    SHARD.with(|s| match s.get() {
        Some(i) => i,
        None => {
            let i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(Some(i));
            i
        }
    })
}

impl Counter {
    /// Adds `n`; returns what this thread's shard held before, which is
    /// enough to do something on every k-th event of a thread (sampling).
    #[inline]
    pub fn add(&self, n: u64) -> u64 {
        self.shards[shard()].0.fetch_add(n, Ordering::Relaxed)
    }

    /// The total over every thread.
    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.0.load(Ordering::Relaxed)))
    }
}

/// `N` monotonic cells sharded like [`Counter`], so that counting a request
/// under one of a few label combinations costs one uncontended atomic add
/// (the metrics' label cells, re-exported as `crate::metrics::Cells`).
#[derive(Debug)]
pub struct Cells<const N: usize> {
    shards: [CellShard<N>; SHARDS],
}

/// One thread shard of [`Cells`], on cache lines of its own.
#[derive(Debug)]
#[repr(align(64))]
struct CellShard<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Cells<N> {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| CellShard(std::array::from_fn(|_| AtomicU64::new(0)))),
        }
    }
}

impl<const N: usize> Cells<N> {
    /// Adds `n` to cell `i` (ignored past the end); returns what this
    /// thread's shard of the cell held before, enough to do something on
    /// every k-th event of a thread (sampling).
    #[inline]
    pub fn add(&self, i: usize, n: u64) -> u64 {
        match self.shards[shard()].0.get(i) {
            Some(c) => c.fetch_add(n, Ordering::Relaxed),
            None => 0,
        }
    }

    /// This thread's shard of every cell, for several adds at once.
    #[inline]
    pub(crate) fn local(&self) -> &[AtomicU64; N] {
        &self.shards[shard()].0
    }

    /// The totals of every cell over every thread.
    pub fn get(&self) -> [u64; N] {
        let mut out = [0u64; N];
        for s in &self.shards {
            for (o, c) in out.iter_mut().zip(&s.0) {
                *o = o.wrapping_add(c.load(Ordering::Relaxed));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_from_many_threads_are_all_counted() {
        let c = std::sync::Arc::new(Counter::default());
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.add(1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(c.get(), 12_000);
    }
}
