//! The arena's freed blocks, kept for reuse at a constant cost per allocation.
//!
//! The Extism kernel walks its blocks for the first free one that fits; a
//! guest that frees many blocks and then asks for larger ones makes every
//! allocation a walk over all of them. Here freed blocks are kept in one list
//! per power of two of their capacity, and a bitmask says which lists hold
//! any. An allocation looks at the few most recently freed blocks of its own
//! size class (so a block freed and asked for again at the same size is
//! reused), then takes a block of the smallest larger class that holds one,
//! which fits whatever its capacity. Both steps cost the same whatever the
//! number of free blocks. The price: a fitting block deeper in the request's
//! own class may be passed over for a new one.

/// One size class per bit of a `u64` capacity.
const CLASSES: usize = 64;

/// Blocks of the request's own size class looked at before larger classes.
const SAME_CLASS_PROBES: usize = 4;

/// A freed block: where it starts and how many bytes it can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FreeBlock {
    pub(crate) offset: u64,
    pub(crate) capacity: u64,
}

/// Freed blocks by size class.
#[derive(Debug, Default)]
pub(crate) struct FreeList {
    /// `classes[c]` holds blocks whose capacity is in `[2^c, 2^(c+1))`;
    /// empty until the first block is freed (most instances never free one,
    /// and instantiation should not pay for the lists).
    classes: Vec<Vec<FreeBlock>>,
    /// Bit `c` is set when `classes[c]` is not empty.
    nonempty: u64,
}

/// The size class of a capacity of at least 1.
fn class(capacity: u64) -> usize {
    (u64::BITS - 1 - capacity.max(1).leading_zeros()) as usize
}

impl FreeList {
    /// Adds a freed block.
    pub(crate) fn push(&mut self, block: FreeBlock) {
        let c = class(block.capacity);
        if self.classes.is_empty() {
            self.classes.resize_with(CLASSES, Vec::new);
        }
        self.classes[c].push(block);
        self.nonempty |= 1 << c;
    }

    /// Whether a block of at least `len` bytes would be found.
    pub(crate) fn fits(&self, len: u64) -> bool {
        self.find(len).is_some()
    }

    /// Removes and returns a block of at least `len` bytes (`len` ≥ 1).
    pub(crate) fn take(&mut self, len: u64) -> Option<FreeBlock> {
        let (c, i) = self.find(len)?;
        let block = self.classes[c].swap_remove(i);
        if self.classes[c].is_empty() {
            self.nonempty &= !(1 << c);
        }
        Some(block)
    }

    /// Forgets every block (keeping the lists' buffers for the next call).
    pub(crate) fn clear(&mut self) {
        let mut set = self.nonempty;
        while set != 0 {
            let c = set.trailing_zeros() as usize;
            self.classes[c].clear();
            set &= set - 1;
        }
        self.nonempty = 0;
    }

    /// Where a fitting block is: its class and index in that class's list.
    fn find(&self, len: u64) -> Option<(usize, usize)> {
        if self.nonempty == 0 {
            return None;
        }
        let c = class(len);
        let own = &self.classes[c];
        if let Some(i) = (0..own.len())
            .rev()
            .take(SAME_CLASS_PROBES)
            .find(|i| own[*i].capacity >= len)
        {
            return Some((c, i));
        }
        // Every block of a larger class holds at least 2^(c+1) > len bytes.
        let larger = self.nonempty & (!0u64).checked_shl(c as u32 + 1).unwrap_or(0);
        if larger == 0 {
            return None;
        }
        let k = larger.trailing_zeros() as usize;
        Some((k, self.classes[k].len() - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(offset: u64, capacity: u64) -> FreeBlock {
        FreeBlock { offset, capacity }
    }

    #[test]
    fn a_block_freed_at_one_size_is_found_again_at_that_size() {
        let mut f = FreeList::default();
        f.push(block(32, 100));
        assert!(!f.fits(101), "nothing larger is free");
        assert_eq!(f.take(100), Some(block(32, 100)));
        assert_eq!(f.take(1), None);
    }

    #[test]
    fn a_larger_class_serves_what_the_own_class_cannot() {
        let mut f = FreeList::default();
        f.push(block(32, 70));
        f.push(block(200, 5000));
        f.push(block(9000, 300));
        assert_eq!(
            f.take(100),
            Some(block(9000, 300)),
            "the smallest larger class"
        );
        assert_eq!(f.take(100), Some(block(200, 5000)));
        assert_eq!(f.take(64), Some(block(32, 70)));
        assert!(!f.fits(1));
    }

    #[test]
    fn clear_empties_every_class() {
        let mut f = FreeList::default();
        f.push(block(32, 1));
        f.push(block(64, u64::MAX));
        f.clear();
        assert!(!f.fits(1));
        assert_eq!(f.nonempty, 0);
    }

    #[test]
    fn the_cost_of_a_miss_does_not_grow_with_the_free_blocks() {
        // Thousands of small free blocks and a larger request: one bitmask test.
        let mut f = FreeList::default();
        for i in 0..10_000 {
            f.push(block(32 + i * 8, 8));
        }
        assert!(!f.fits(16));
        assert_eq!(f.take(8).map(|b| b.capacity), Some(8));
    }
}
