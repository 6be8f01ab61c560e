//! Idle warm instances kept per thread.
//!
//! A warm instance's store is a few cache lines of state the host touches on
//! every call. Kept in one shared list, an instance runs on whichever core
//! takes it next and its first touches there miss the cache (under load this
//! was the hottest instruction of a guest call), and the list's lock bounces
//! between the cores on every take and return. [`IdleLists`] gives each
//! thread its own list (the shards of [`crate::counter`]): an item goes back
//! to the list of the thread that just used it, that thread takes it again
//! first, and only a thread whose list is empty looks in the others'.
//!
//! The price: a steady trickle of requests spread over the threads keeps an
//! item warm per thread rather than one in all, so this suits instances that
//! are never reclaimed for idleness (a plugin's). App instances are kept in
//! one LIFO list, where a serial client reuses one instance and the others
//! go idle and are reclaimed.
//!
//! ```
//! use buntime::idle_lists::IdleLists;
//! let idle = IdleLists::default();
//! idle.push("warm");
//! assert_eq!(idle.len(), 1);
//! assert_eq!(idle.pop(), Some("warm"));
//! assert_eq!(idle.pop(), None);
//! ```

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::counter::{SHARDS, shard};

/// One thread's list, alone on its cache line, behind a spin lock.
///
/// Written by hand rather than a `std::sync::Mutex` because of what it
/// costs per guest call: a take and a return are two lock/unlock pairs, and
/// the mutex's unlock is an atomic swap (it has to see whether a thread
/// sleeps on the lock), so four locked instructions per call, which showed
/// as a few percent of a request through no-op plugins. Here the unlock is
/// a plain release store. The lock is held for one `Vec` push or pop, and
/// another thread takes it only when its own list is empty, so a waiter
/// spins briefly and then yields.
#[repr(align(64))]
struct List<T> {
    locked: AtomicBool,
    items: UnsafeCell<Vec<T>>,
}

// SAFETY: `items` is reached only through `List::with`, which holds
// `locked`: one thread at a time has the `&mut Vec<T>`, so sharing a
// `List` is as safe as sending its items.
#[allow(unsafe_code, reason = "the spin lock guards `items` (see `List`)")]
unsafe impl<T: Send> Sync for List<T> {}

impl<T> List<T> {
    fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
            items: UnsafeCell::new(Vec::new()),
        }
    }

    /// Runs `f` on the list with the lock held. `f` only pushes, pops or
    /// moves items (it never runs code that could take a lock again).
    #[allow(unsafe_code, reason = "the spin lock guards `items` (see `List`)")]
    fn with<R>(&self, f: impl FnOnce(&mut Vec<T>) -> R) -> R {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    // The holder may have been preempted.
                    std::thread::yield_now();
                }
            }
        }
        /// Releases the lock however `f` ends.
        struct Unlock<'a>(&'a AtomicBool);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _unlock = Unlock(&self.locked);
        // SAFETY: `locked` is held until `_unlock` drops, after `f`
        // returns, so this is the only reference to `items`.
        f(unsafe { &mut *self.items.get() })
    }
}

/// Per-thread LIFO lists of idle items.
pub struct IdleLists<T> {
    lists: [List<T>; SHARDS],
}

impl<T> Default for IdleLists<T> {
    fn default() -> Self {
        Self {
            lists: std::array::from_fn(|_| List::new()),
        }
    }
}

impl<T> std::fmt::Debug for IdleLists<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleLists")
            .field("len", &self.len())
            .finish()
    }
}

impl<T> IdleLists<T> {
    /// Puts `item` on this thread's list.
    pub fn push(&self, item: T) {
        self.lists[shard()].with(|list| list.push(item));
    }

    /// The item this thread put back last; when its list is empty, the
    /// most recent one of another thread's.
    pub fn pop(&self) -> Option<T> {
        let own = shard();
        (0..SHARDS).find_map(|i| self.lists[(own + i) % SHARDS].with(Vec::pop))
    }

    /// Items in all lists.
    pub fn len(&self) -> usize {
        self.lists.iter().map(|l| l.with(|list| list.len())).sum()
    }

    /// Whether every list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns every item.
    pub fn take_all(&self) -> Vec<T> {
        self.lists
            .iter()
            .flat_map(|l| l.with(std::mem::take))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_takes_back_its_own_items_first_and_others_when_it_has_none() {
        let idle = std::sync::Arc::new(IdleLists::default());
        idle.push("mine");
        let other = idle.clone();
        let their_shard = std::thread::spawn(move || {
            other.push("theirs");
            shard()
        })
        .join()
        .expect("thread");
        assert_eq!(idle.len(), 2);
        if their_shard != shard() {
            // Pushed last, but on the other thread's list.
            assert_eq!(idle.pop(), Some("mine"));
            assert_eq!(idle.pop(), Some("theirs"));
        }
        idle.take_all();
        assert!(idle.is_empty());
    }

    /// Threads on more shards than there are, pushing and popping on their
    /// own lists and (when empty) on the others': every item comes out once.
    #[test]
    fn threads_pushing_and_popping_at_once_lose_and_repeat_nothing() {
        let idle = std::sync::Arc::new(IdleLists::default());
        let threads: Vec<_> = (0..2 * SHARDS as u32)
            .map(|t| {
                let idle = idle.clone();
                std::thread::spawn(move || {
                    let mut taken = Vec::new();
                    for i in 0..5_000 {
                        idle.push(t * 5_000 + i);
                        if i % 3 != 0 {
                            taken.extend(idle.pop());
                        }
                    }
                    taken
                })
            })
            .collect();
        let mut all: Vec<u32> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("thread"))
            .collect();
        all.extend(idle.take_all());
        all.sort_unstable();
        assert_eq!(all, (0..2 * SHARDS as u32 * 5_000).collect::<Vec<_>>());
    }

    #[test]
    fn take_all_empties_every_thread_s_list() {
        let idle = std::sync::Arc::new(IdleLists::default());
        idle.push(0);
        let other = idle.clone();
        std::thread::spawn(move || other.push(1))
            .join()
            .expect("thread");
        let mut all = idle.take_all();
        all.sort();
        assert_eq!(all, vec![0, 1]);
        assert!(idle.is_empty());
    }
}
