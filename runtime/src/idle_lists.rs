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

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::counter::{SHARDS, shard};

/// One thread's list, alone on its cache line.
#[derive(Debug)]
#[repr(align(64))]
struct List<T>(Mutex<Vec<T>>);

impl<T> List<T> {
    /// The list; a panic elsewhere while it was locked cannot have left a
    /// `Vec` half-changed, so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Per-thread LIFO lists of idle items.
#[derive(Debug)]
pub struct IdleLists<T> {
    lists: [List<T>; SHARDS],
}

impl<T> Default for IdleLists<T> {
    fn default() -> Self {
        Self {
            lists: std::array::from_fn(|_| List(Mutex::new(Vec::new()))),
        }
    }
}

impl<T> IdleLists<T> {
    /// Puts `item` on this thread's list.
    pub fn push(&self, item: T) {
        self.lists[shard()].lock().push(item);
    }

    /// The item this thread put back last; when its list is empty, the
    /// most recent one of another thread's.
    pub fn pop(&self) -> Option<T> {
        let own = shard();
        (0..SHARDS).find_map(|i| self.lists[(own + i) % SHARDS].lock().pop())
    }

    /// Items in all lists.
    pub fn len(&self) -> usize {
        self.lists.iter().map(|l| l.lock().len()).sum()
    }

    /// Whether every list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns every item.
    pub fn take_all(&self) -> Vec<T> {
        self.lists
            .iter()
            .flat_map(|l| l.lock().split_off(0))
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
