//! The host-side memory that backs the Extism ABI's "memory blocks".
//!
//! In the reference Extism runtime these blocks live in the linear memory of a
//! separate "kernel" WASM module. Buntime keeps them in a plain byte vector owned
//! by the store instead: every `extism:host/env` memory function becomes a
//! bounds-checked slice access in native code, with no second module to
//! instantiate and no cross-module calls. Handles are offsets into this arena;
//! offset `0` is never handed out, so it keeps its ABI meaning of "null / none".
//!
//! The arena is reset at the start of every call, as the Extism kernel is, so a
//! long-lived instance does not accumulate garbage between calls.

/// Bytes reserved at the start of the arena so that no block starts at offset 0.
const RESERVED: usize = 8;

/// Smallest block split off a freed block for reuse; smaller remainders stay with
/// the block (the same policy as the Extism kernel).
const SPLIT_THRESHOLD: u64 = 128;

/// Why an arena operation failed. Each of these is the guest's fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArenaError {
    /// A load or store touched bytes outside the arena.
    #[error("memory access out of bounds: offset {offset} + {len} bytes, arena size {size}")]
    OutOfBounds {
        /// First byte accessed.
        offset: u64,
        /// Number of bytes accessed.
        len: u64,
        /// Current size of the arena.
        size: u64,
    },
    /// A handle does not name a live block.
    #[error("invalid memory handle {0}: not an allocated block")]
    InvalidHandle(u64),
}

/// A live or freed allocation.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// Bytes reserved for the block.
    capacity: u64,
    /// Bytes in use (what `length` reports).
    used: u64,
    live: bool,
}

/// Block allocator over a growable byte vector, capped at a byte limit.
///
/// ```
/// use buntime::wasm::Arena;
/// let mut arena = Arena::new(1 << 20);
/// let h = arena.alloc_bytes(b"hello").unwrap();
/// assert_eq!(arena.block(h).unwrap(), b"hello");
/// assert_eq!(arena.length(h), 5);
/// ```
#[derive(Debug)]
pub struct Arena {
    bytes: Vec<u8>,
    /// Every block by offset, sorted: a new block always starts past the
    /// last one and a split inserts right after its parent, so a binary
    /// search finds a handle with no hashing (a call makes a few blocks).
    blocks: Vec<(u64, Block)>,
    /// Freed blocks available for reuse, by offset.
    free: Vec<u64>,
    limit: usize,
}

impl Arena {
    /// Creates an empty arena that never grows beyond `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            bytes: vec![0; RESERVED],
            blocks: Vec::new(),
            free: Vec::new(),
            limit: limit.max(RESERVED),
        }
    }

    /// Drops every block; called at the start of each guest call.
    pub fn reset(&mut self) {
        self.bytes.truncate(RESERVED);
        self.blocks.clear();
        self.free.clear();
    }

    /// Bytes currently held (what counts against the limit).
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Allocates a block of `len` bytes; returns `None` when the limit would be
    /// exceeded (the ABI reports that to the guest as handle `0`) or `len` is 0.
    pub fn alloc(&mut self, len: u64) -> Option<u64> {
        if len == 0 {
            return None;
        }
        if let Some(handle) = self.reuse(len) {
            return Some(handle);
        }
        let offset = self.bytes.len();
        let new_len = offset.checked_add(usize::try_from(len).ok()?)?;
        if new_len > self.limit {
            return None;
        }
        self.bytes.resize(new_len, 0);
        let handle = offset as u64;
        self.blocks.push((
            handle,
            Block {
                capacity: len,
                used: len,
                live: true,
            },
        ));
        Some(handle)
    }

    /// Where the block starting at `handle` sits in `blocks`.
    fn index(&self, handle: u64) -> Option<usize> {
        self.blocks.binary_search_by_key(&handle, |(h, _)| *h).ok()
    }

    fn get(&self, handle: u64) -> Option<&Block> {
        self.index(handle).map(|i| &self.blocks[i].1)
    }

    /// First fit over freed blocks, splitting large ones.
    fn reuse(&mut self, len: u64) -> Option<u64> {
        let pos = self
            .free
            .iter()
            .position(|h| self.get(*h).is_some_and(|b| b.capacity >= len))?;
        let handle = self.free.swap_remove(pos);
        let i = self.index(handle)?;
        let block = &mut self.blocks[i].1;
        if block.capacity - len >= SPLIT_THRESHOLD {
            let rest = handle + len;
            let rest_cap = block.capacity - len;
            block.capacity = len;
            self.blocks.insert(
                i + 1,
                (
                    rest,
                    Block {
                        capacity: rest_cap,
                        used: 0,
                        live: false,
                    },
                ),
            );
            self.free.push(rest);
        }
        let block = &mut self.blocks[i].1;
        block.used = len;
        block.live = true;
        let start = handle as usize;
        self.bytes[start..start + len as usize].fill(0);
        Some(handle)
    }

    /// Copies `data` into a new block and returns its handle.
    pub fn alloc_bytes(&mut self, data: &[u8]) -> Option<u64> {
        let handle = self.alloc(data.len() as u64)?;
        let start = handle as usize;
        self.bytes[start..start + data.len()].copy_from_slice(data);
        Some(handle)
    }

    /// Marks a block free. Unknown handles are ignored, as in the Extism kernel.
    pub fn free(&mut self, handle: u64) {
        if let Some(i) = self.index(handle)
            && let block = &mut self.blocks[i].1
            && block.live
        {
            block.live = false;
            self.free.push(handle);
        }
    }

    /// Length of the live block at `handle`, or 0 if it is not one.
    pub fn length(&self, handle: u64) -> u64 {
        match self.get(handle) {
            Some(b) if b.live => b.used,
            _ => 0,
        }
    }

    /// The bytes of the live block at `handle`.
    pub fn block(&self, handle: u64) -> Result<&[u8], ArenaError> {
        match self.get(handle) {
            Some(b) if b.live => self.slice(handle, b.used),
            _ => Err(ArenaError::InvalidHandle(handle)),
        }
    }

    /// A bounds-checked view of `len` bytes at `offset`.
    pub fn slice(&self, offset: u64, len: u64) -> Result<&[u8], ArenaError> {
        let range = self.range(offset, len)?;
        Ok(&self.bytes[range])
    }

    fn range(&self, offset: u64, len: u64) -> Result<std::ops::Range<usize>, ArenaError> {
        let size = self.bytes.len() as u64;
        match offset.checked_add(len) {
            Some(end) if offset >= RESERVED as u64 && end <= size => {
                Ok(offset as usize..end as usize)
            }
            _ => Err(ArenaError::OutOfBounds { offset, len, size }),
        }
    }

    /// Reads one byte.
    #[inline]
    pub fn load_u8(&self, offset: u64) -> Result<u8, ArenaError> {
        let r = self.range(offset, 1)?;
        Ok(self.bytes[r.start])
    }

    /// Reads eight little-endian bytes.
    #[inline]
    pub fn load_u64(&self, offset: u64) -> Result<u64, ArenaError> {
        let r = self.range(offset, 8)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.bytes[r]);
        Ok(u64::from_le_bytes(word))
    }

    /// Writes one byte.
    #[inline]
    pub fn store_u8(&mut self, offset: u64, value: u8) -> Result<(), ArenaError> {
        let r = self.range(offset, 1)?;
        self.bytes[r.start] = value;
        Ok(())
    }

    /// Writes eight little-endian bytes.
    #[inline]
    pub fn store_u64(&mut self, offset: u64, value: u64) -> Result<(), ArenaError> {
        let r = self.range(offset, 8)?;
        self.bytes[r].copy_from_slice(&value.to_le_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_never_zero_and_lengths_track_blocks() {
        let mut a = Arena::new(1024);
        let h1 = a.alloc(10).unwrap();
        let h2 = a.alloc(3).unwrap();
        assert!(h1 > 0 && h2 > h1);
        assert_eq!(a.length(h1), 10);
        assert_eq!(a.length(h2), 3);
        assert_eq!(a.length(h1 + 1), 0, "interior offsets are not handles");
        assert_eq!(a.alloc(0), None);
    }

    #[test]
    fn the_limit_is_enforced() {
        let mut a = Arena::new(64);
        assert!(a.alloc(40).is_some());
        assert_eq!(a.alloc(40), None);
    }

    #[test]
    fn freed_blocks_are_reused_and_split() {
        let mut a = Arena::new(1 << 16);
        let big = a.alloc(1000).unwrap();
        a.free(big);
        assert_eq!(a.length(big), 0);
        let small = a.alloc(10).unwrap();
        assert_eq!(small, big, "first fit reuses the freed block");
        let next = a.alloc(500).unwrap();
        assert_eq!(next, big + 10, "the remainder was split off");
        assert_eq!(a.size(), RESERVED + 1000);
    }

    #[test]
    fn out_of_bounds_accesses_are_errors() {
        let mut a = Arena::new(1024);
        let h = a.alloc(8).unwrap();
        assert!(a.load_u64(h).is_ok());
        assert!(a.load_u64(h + 1).is_err());
        assert!(
            a.load_u8(0).is_err(),
            "the reserved prefix is not addressable"
        );
        assert!(a.store_u64(u64::MAX - 3, 1).is_err(), "overflow is caught");
        assert!(a.slice(h, u64::MAX).is_err());
        assert!(a.block(12345).is_err());
    }

    #[test]
    fn reset_forgets_everything() {
        let mut a = Arena::new(1024);
        let h = a.alloc_bytes(b"abc").unwrap();
        a.reset();
        assert_eq!(a.length(h), 0);
        assert_eq!(a.size(), RESERVED);
    }
}
