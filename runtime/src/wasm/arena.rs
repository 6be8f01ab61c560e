//! The memory that backs the Extism ABI's "memory blocks".
//!
//! In the reference Extism runtime these blocks live in the linear memory of a
//! separate "kernel" WASM module, which allocates them. Buntime allocates them
//! on the host: the block table is this struct, in Rust, and the bytes live in
//! a second linear memory that the load-time rewrite (`rewrite.rs`) adds to
//! every module. Handles are offsets into that memory; offset `0` is never
//! handed out, so it keeps its ABI meaning of "null / none".
//!
//! Keeping the bytes in guest-addressable memory is what lets the rewrite
//! compile the PDKs' eight-byte loads and stores inline. For that, the first
//! [`RESERVED`] bytes are a header this arena keeps current and the inline
//! accessors read: the end of the bytes in use ([`HEADER_USED`]) and where the
//! copy of the call's input is ([`HEADER_INPUT_BASE`], [`HEADER_INPUT_LEN`]; a
//! length of 0 until the input is copied). The guest cannot write the header:
//! the accessors refuse offsets below [`RESERVED`], as the host does.
//!
//! The arena is reset at the start of every call, as the Extism kernel is, so a
//! long-lived instance does not accumulate garbage between calls.

use std::ptr::NonNull;

/// Header field: end of the bytes in use (`u64`, little-endian).
pub(crate) const HEADER_USED: u64 = 0;
/// Header field: offset of the input's copy, when there is one.
pub(crate) const HEADER_INPUT_BASE: u64 = 8;
/// Header field: length of the input's copy; 0 while there is none.
pub(crate) const HEADER_INPUT_LEN: u64 = 16;
/// Bytes reserved at the start of the arena (the header), so that no block
/// starts at offset 0.
pub(crate) const RESERVED: usize = 32;

/// The size of a WASM page, the arena memory's unit of growth.
const PAGE: usize = 64 << 10;

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

/// Whether an allocation of some size fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    /// It fits in the memory as it is.
    Fits,
    /// It fits once the arena memory has grown by this many pages.
    Grow(u64),
    /// It would pass the arena's limit.
    Full,
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

/// Where the arena's bytes are.
enum Backing {
    /// A vector of the arena's own, which grows as needed: an arena not (yet)
    /// attached to an instance's memory (unit tests, examples).
    Owned(Vec<u8>),
    /// The instance's arena memory, `len` bytes at `base`.
    ///
    /// A raw view rather than `wasmtime::Memory::data_mut`, which needs the
    /// whole store borrowed: host functions reach the arena through the
    /// store's data, and the bytes must be there too. This is sound because
    /// the memory belongs to the same store as this arena and outlives it;
    /// only the rewrite's accessors (guest code that runs while no host code
    /// does) and this arena touch it — the guest's own code cannot name it,
    /// since modules are validated before the rewrite adds it, so nothing
    /// but the host grows it; and the view is refreshed after every growth,
    /// the only thing that can move or resize it ([`Arena::remap`]).
    Wasm {
        memory: wasmtime::Memory,
        base: NonNull<u8>,
        len: usize,
    },
}

// SAFETY: the view points into memory owned by the store that owns this
// arena, and moves between threads with it; it is never shared.
#[allow(
    unsafe_code,
    reason = "the arena's view of its wasm memory (see `Backing::Wasm`)"
)]
unsafe impl Send for Backing {}

impl std::fmt::Debug for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Owned(v) => f.debug_tuple("Owned").field(&v.len()).finish(),
            Self::Wasm { len, .. } => f.debug_struct("Wasm").field("len", len).finish(),
        }
    }
}

#[allow(
    unsafe_code,
    reason = "the arena's view of its wasm memory (see `Backing::Wasm`)"
)]
impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Owned(v) => v,
            // SAFETY: see `Backing::Wasm`.
            Self::Wasm { base, len, .. } => unsafe {
                std::slice::from_raw_parts(base.as_ptr(), *len)
            },
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Self::Owned(v) => v,
            // SAFETY: see `Backing::Wasm`.
            Self::Wasm { base, len, .. } => unsafe {
                std::slice::from_raw_parts_mut(base.as_ptr(), *len)
            },
        }
    }
}

/// Block allocator over the arena's bytes, capped at a byte limit.
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
    backing: Backing,
    /// End of the bytes in use (the next fresh block starts here).
    used: usize,
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
        let mut arena = Self {
            backing: Backing::Owned(vec![0; RESERVED]),
            used: RESERVED,
            blocks: Vec::new(),
            free: Vec::new(),
            limit: limit.max(RESERVED),
        };
        arena.write_header(HEADER_USED, RESERVED as u64);
        arena
    }

    /// Moves the arena into an instance's arena memory (`len` bytes at
    /// `base`), which from now on holds its bytes and grows by `memory.grow`.
    ///
    /// # Safety
    ///
    /// `base` and `len` must be `memory`'s current data pointer and size,
    /// `memory` must belong to the store that owns this arena, and nothing
    /// but this arena and the rewrite's accessors may use it.
    #[allow(
        unsafe_code,
        reason = "the arena's view of its wasm memory (see `Backing::Wasm`)"
    )]
    pub(crate) unsafe fn attach(&mut self, memory: wasmtime::Memory, base: *mut u8, len: usize) {
        let Some(base) = NonNull::new(base) else {
            return;
        };
        if len < RESERVED {
            return;
        }
        // The arena can use what fits in whole pages below its limit.
        self.limit = self.limit.max(PAGE) / PAGE * PAGE;
        self.backing = Backing::Wasm { memory, base, len };
        self.reset();
    }

    /// Refreshes the view of the arena memory after it grew.
    ///
    /// # Safety
    ///
    /// As for [`Arena::attach`], with the memory's new pointer and size.
    #[allow(
        unsafe_code,
        reason = "the arena's view of its wasm memory (see `Backing::Wasm`)"
    )]
    pub(crate) unsafe fn remap(&mut self, base: *mut u8, new_len: usize) {
        if let Backing::Wasm { base: b, len, .. } = &mut self.backing
            && let Some(base) = NonNull::new(base)
        {
            *b = base;
            *len = new_len;
        }
    }

    /// The arena memory, once attached.
    pub(crate) fn memory(&self) -> Option<wasmtime::Memory> {
        match &self.backing {
            Backing::Wasm { memory, .. } => Some(*memory),
            Backing::Owned(_) => None,
        }
    }

    /// Drops every block; called at the start of each guest call.
    pub fn reset(&mut self) {
        self.used = RESERVED;
        if let Backing::Owned(v) = &mut self.backing {
            v.truncate(RESERVED);
        }
        self.blocks.clear();
        self.free.clear();
        self.write_header(HEADER_USED, RESERVED as u64);
        self.write_header(HEADER_INPUT_LEN, 0);
    }

    fn write_header(&mut self, field: u64, value: u64) {
        let at = field as usize;
        self.backing.bytes_mut()[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// Records that block `handle` holds a copy of the call's `len`-byte
    /// input, so the inline input accessors read it there.
    pub(crate) fn set_input_copy(&mut self, handle: u64, len: u64) {
        self.write_header(HEADER_INPUT_BASE, handle);
        self.write_header(HEADER_INPUT_LEN, len);
    }

    /// Bytes currently held (what counts against the limit).
    pub fn size(&self) -> usize {
        self.used
    }

    /// Whether a block of `len` bytes fits now, after growth, or not at all.
    pub(crate) fn room(&self, len: u64) -> Room {
        if len == 0 || self.fits_freed(len) {
            return Room::Fits;
        }
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|len| self.used.checked_add(len))
            .filter(|end| *end <= self.limit)
        else {
            return Room::Full;
        };
        match &self.backing {
            Backing::Wasm { len: mapped, .. } if end > *mapped => {
                Room::Grow((end - *mapped).div_ceil(PAGE) as u64)
            }
            _ => Room::Fits,
        }
    }

    fn fits_freed(&self, len: u64) -> bool {
        self.free
            .iter()
            .any(|h| self.get(*h).is_some_and(|b| b.capacity >= len))
    }

    /// Allocates a zeroed block of `len` bytes; returns `None` when it does
    /// not fit (see [`Arena::room`]; the ABI reports that to the guest as
    /// handle `0`) or `len` is 0.
    pub fn alloc(&mut self, len: u64) -> Option<u64> {
        let handle = self.alloc_uninit(len)?;
        let start = handle as usize;
        self.backing.bytes_mut()[start..start + len as usize].fill(0);
        Some(handle)
    }

    /// Allocates a block whose bytes are left as they were.
    fn alloc_uninit(&mut self, len: u64) -> Option<u64> {
        if len == 0 {
            return None;
        }
        if let Some(handle) = self.reuse(len) {
            return Some(handle);
        }
        let offset = self.used;
        let end = offset.checked_add(usize::try_from(len).ok()?)?;
        if end > self.limit {
            return None;
        }
        match &mut self.backing {
            Backing::Owned(v) => v.resize(end, 0),
            Backing::Wasm { len: mapped, .. } if end > *mapped => return None,
            Backing::Wasm { .. } => {}
        }
        self.used = end;
        self.write_header(HEADER_USED, end as u64);
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
        Some(handle)
    }

    /// Copies `data` into a new block and returns its handle.
    pub fn alloc_bytes(&mut self, data: &[u8]) -> Option<u64> {
        let handle = self.alloc_uninit(data.len() as u64)?;
        let start = handle as usize;
        self.backing.bytes_mut()[start..start + data.len()].copy_from_slice(data);
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
        Ok(&self.backing.bytes()[range])
    }

    fn range(&self, offset: u64, len: u64) -> Result<std::ops::Range<usize>, ArenaError> {
        let size = self.used as u64;
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
        Ok(self.backing.bytes()[r.start])
    }

    /// Reads eight little-endian bytes.
    #[inline]
    pub fn load_u64(&self, offset: u64) -> Result<u64, ArenaError> {
        let r = self.range(offset, 8)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.backing.bytes()[r]);
        Ok(u64::from_le_bytes(word))
    }

    /// Writes one byte.
    #[inline]
    pub fn store_u8(&mut self, offset: u64, value: u8) -> Result<(), ArenaError> {
        let r = self.range(offset, 1)?;
        self.backing.bytes_mut()[r.start] = value;
        Ok(())
    }

    /// Writes eight little-endian bytes.
    #[inline]
    pub fn store_u64(&mut self, offset: u64, value: u64) -> Result<(), ArenaError> {
        let r = self.range(offset, 8)?;
        self.backing.bytes_mut()[r].copy_from_slice(&value.to_le_bytes());
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
        let mut a = Arena::new(100);
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
