//! Event counters bumped by every worker thread at once.
//!
//! A plain `AtomicU64` that both cores increment on every request bounces
//! its cache line between them: under load, one such `lock inc` was a sixth
//! of a guest call's host-side cost. A [`Counter`] gives each thread its own
//! cache line (a shard) and sums the shards when read, which only the stats
//! endpoints do.
//!
//! A shard is *owned* by one live thread at a time (`SHARDS` − 1 of them;
//! a thread claims one on its first add, frees it when it exits), and the
//! owner adds with a plain load and store: no locked instruction, which on
//! x86 also waits for every earlier store to drain and so cost a guest call
//! far more than the add itself. Threads that find every owned shard taken
//! share the last one, add to it atomically, and look for a free one again
//! every so often (short-lived threads, such as a blocking pool's, may have
//! held them). A shard freed by an exiting thread keeps its count for the
//! next owner.
//!
//! The same shard index places a thread's idle instances and caches
//! (`shard`), which only need it to be mostly one thread's.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shards per counter: enough that the worker threads of a small machine
/// each own one, few enough that a counter stays small (512 bytes).
pub(crate) const SHARDS: usize = 8;

/// The shard of threads that own none, added to atomically.
const SHARED: usize = SHARDS - 1;

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

/// Which owned shards have a live owner: bit `i` for shard `i`.
static OWNED: AtomicUsize = AtomicUsize::new(0);

/// A thread's owned shard, if it has one; frees it when the thread exits.
struct Slot(Cell<Option<usize>>);

impl Slot {
    /// Claims a free owned shard, if there is one.
    fn claim(&self) -> Option<usize> {
        let mut taken = OWNED.load(Ordering::Relaxed);
        loop {
            let free = (!taken).trailing_zeros() as usize;
            if free >= SHARED {
                return None;
            }
            // Acquire: this thread's first load of the shard sees the
            // last store of its previous owner (released below).
            match OWNED.compare_exchange_weak(
                taken,
                taken | (1 << free),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.0.set(Some(free));
                    return Some(free);
                }
                Err(now) => taken = now,
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(index) = self.0.take() {
            // This thread's adds from here on (other thread-locals'
            // destructors) go to the shared shard.
            let _ = PLACE.try_with(|p| p.set(Some(SHARED_PLACE)));
            OWNED.fetch_and(!(1 << index), Ordering::Release);
        }
    }
}

/// The place of a thread without an owned shard.
const SHARED_PLACE: (usize, bool) = (SHARED, false);

/// How many adds a thread without an owned shard makes before it looks
/// for a free one again (threads that held them may have exited since).
const RETRY_EVERY: u32 = 1024;

thread_local! {
    static SLOT: Slot = const { Slot(Cell::new(None)) };
    /// The owned shard once claimed, read without the destructor
    /// registration check of `SLOT`.
    static PLACE: Cell<Option<(usize, bool)>> = const { Cell::new(None) };
    /// Adds until a thread without an owned shard looks again.
    static RETRY: Cell<u32> = const { Cell::new(0) };
}

/// This thread's shard and whether it owns it.
#[inline]
fn place() -> (usize, bool) {
    match PLACE.with(Cell::get) {
        Some(place) => place,
        None => unowned(),
    }
}

/// [`place`] for a thread that owns no shard (yet): it claims a free one
/// now and then, and meanwhile adds to the shared one.
#[cold]
fn unowned() -> (usize, bool) {
    let due = RETRY.with(|r| {
        let n = r.get();
        r.set(if n == 0 { RETRY_EVERY } else { n - 1 });
        n == 0
    });
    if due
        // During the thread's exit the slot may be gone: share then.
        && let Ok(Some(index)) = SLOT.try_with(Slot::claim)
    {
        let place = (index, true);
        PLACE.with(|p| p.set(Some(place)));
        return place;
    }
    SHARED_PLACE
}

/// This thread's shard index, `0..SHARDS`: the same for every per-thread
/// structure, so a thread's counters and idle lists stay on its own core.
pub(crate) fn shard() -> usize {
    place().0
}

/// Adds `n` to `cell`, a cell of this thread's shard; returns what it held.
#[inline]
fn add_to(cell: &AtomicU64, owned: bool, n: u64) -> u64 {
    if owned {
        // Only this thread writes an owned shard.
        let was = cell.load(Ordering::Relaxed);
        cell.store(was.wrapping_add(n), Ordering::Relaxed);
        was
    } else {
        cell.fetch_add(n, Ordering::Relaxed)
    }
}

impl Counter {
    /// Adds `n`; returns what this thread's shard held before, which is
    /// enough to do something on every k-th event of a thread (sampling).
    #[inline]
    pub fn add(&self, n: u64) -> u64 {
        let (i, owned) = place();
        add_to(&self.shards[i].0, owned, n)
    }

    /// The total over every thread.
    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.0.load(Ordering::Relaxed)))
    }
}

/// `N` monotonic cells sharded like [`Counter`], so that counting a request
/// under one of a few label combinations costs one uncontended add
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
        let (s, owned) = place();
        match self.shards[s].0.get(i) {
            Some(c) => add_to(c, owned, n),
            None => 0,
        }
    }

    /// Adds `n` to cell `i` and `m` to cell `j` (each ignored past the
    /// end), finding this thread's shard once.
    #[inline]
    pub(crate) fn add_two(&self, (i, n): (usize, u64), (j, m): (usize, u64)) {
        let (s, owned) = place();
        let shard = &self.shards[s].0;
        if let Some(c) = shard.get(i) {
            add_to(c, owned, n);
        }
        if let Some(c) = shard.get(j) {
            add_to(c, owned, m);
        }
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

    /// Threads that come and go (more in all than there are shards, a few
    /// at a time, as a blocking pool's do) hand their shards on: every add
    /// is counted.
    #[test]
    fn shards_freed_by_exiting_threads_keep_their_counts_for_the_next_owner() {
        let c = std::sync::Arc::new(Cells::<2>::default());
        for _ in 0..10 {
            let threads: Vec<_> = (0..3)
                .map(|_| {
                    let c = c.clone();
                    std::thread::spawn(move || {
                        for _ in 0..1000 {
                            c.add(0, 1);
                            c.add_two((0, 1), (1, 2));
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("thread");
            }
        }
        assert_eq!(c.get(), [60_000, 60_000]);
    }
}
