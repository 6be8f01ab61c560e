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
//! the accessors never touch offsets below [`RESERVED`].
//!
//! Loads and stores follow the Extism kernel (its default, bounds-checking
//! build): anything inside the arena memory past the header can be read and
//! written, a load outside it answers 0 and a store outside it is ignored.
//! Bytes that hold nothing of the current call read as 0, as the kernel's
//! memory (zeroed at each reset) does; they are not zeroed at reset here, only
//! treated as zeros ([`Arena::live_end`]), so a call pays nothing for the bytes
//! its predecessor used.
//!
//! What the guest makes the host keep is bounded: each block costs
//! [`BLOCK_COST`] bytes of bookkeeping, counted with the bytes against the
//! arena's limit; and an allocation costs the same however many blocks are
//! free (`free_list.rs`).
//!
//! The arena is reset at the start of every call, as the Extism kernel is, so a
//! long-lived instance does not accumulate garbage between calls.

use std::collections::BTreeMap;
use std::ptr::NonNull;

use bytes::Bytes;

use super::free_list::{FreeBlock, FreeList};

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

/// Host memory charged to the arena's limit for each block: its entry in the
/// block table and in a free list, twice over for the growth slack of the
/// vectors that hold them.
pub const BLOCK_COST: usize =
    2 * (std::mem::size_of::<(u64, Block)>() + std::mem::size_of::<FreeBlock>());

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
    /// A vector of the arena's own, grown in whole pages up to the limit as
    /// the arena memory is: an arena not attached to an instance's memory
    /// (modules the rewrite did not take, unit tests, examples).
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
    /// End of what the guest stored past the blocks this call (see
    /// [`Arena::live_end`]).
    written: usize,
    /// The blocks made fresh, by offset, sorted: a new block always starts
    /// past the last one, so a binary search finds a handle with no hashing
    /// (a call makes a few blocks).
    blocks: Vec<(u64, Block)>,
    /// Blocks made from the remainder of a split freed block, by offset:
    /// they start between the others. Empty in most calls.
    carved: BTreeMap<u64, Block>,
    /// Freed blocks available for reuse.
    free: FreeList,
    /// Blocks made this call (fresh, and remainders split off), each
    /// charged [`BLOCK_COST`] against the limit.
    records: usize,
    limit: usize,
}

impl Arena {
    /// Creates an empty arena that never grows beyond `limit` bytes.
    pub fn new(limit: usize) -> Self {
        let mut arena = Self {
            backing: Backing::Owned(vec![0; RESERVED]),
            used: RESERVED,
            written: RESERVED,
            blocks: Vec::new(),
            carved: BTreeMap::new(),
            free: FreeList::default(),
            records: 0,
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
        self.written = RESERVED;
        self.blocks.clear();
        // Rarely used (blocks carved out of others): clearing an empty map
        // is not free.
        if !self.carved.is_empty() {
            self.carved.clear();
        }
        self.free.clear();
        self.records = 0;
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

    /// Bytes of blocks currently held.
    pub fn size(&self) -> usize {
        self.used
    }

    /// Host memory charged for `records` blocks.
    fn bookkeeping(records: usize) -> usize {
        records.saturating_mul(BLOCK_COST)
    }

    /// What the arena holds against its limit: the blocks' bytes and the
    /// host's bookkeeping of them.
    pub fn charged(&self) -> usize {
        self.used.saturating_add(Self::bookkeeping(self.records))
    }

    /// Whether `end` bytes of blocks and one more block record fit the limit.
    fn within_limit(&self, end: usize) -> bool {
        end.checked_add(Self::bookkeeping(self.records + 1))
            .is_some_and(|total| total <= self.limit)
    }

    /// Whether a block of `len` bytes fits now, after growth, or not at all.
    pub(crate) fn room(&self, len: u64) -> Room {
        if len == 0 || self.free.fits(len) {
            return Room::Fits;
        }
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|len| self.used.checked_add(len))
            .filter(|end| self.within_limit(*end))
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

    /// Allocates a zeroed block of `len` bytes; returns `None` when it does
    /// not fit (see `Arena::room`; the ABI reports that to the guest as
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
        if !self.within_limit(end) {
            return None;
        }
        match &mut self.backing {
            // In whole pages, as the arena memory grows, so that accesses
            // past the blocks answer the same with either backing.
            Backing::Owned(v) if end > v.len() => {
                v.resize(end.next_multiple_of(PAGE).min(self.limit), 0);
            }
            Backing::Owned(_) => {}
            Backing::Wasm { len: mapped, .. } if end > *mapped => return None,
            Backing::Wasm { .. } => {}
        }
        self.used = end;
        self.records += 1;
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

    fn get(&self, handle: u64) -> Option<&Block> {
        match self.blocks.binary_search_by_key(&handle, |(h, _)| *h) {
            Ok(i) => Some(&self.blocks[i].1),
            Err(_) if self.carved.is_empty() => None,
            Err(_) => self.carved.get(&handle),
        }
    }

    fn get_mut(&mut self, handle: u64) -> Option<&mut Block> {
        match self.blocks.binary_search_by_key(&handle, |(h, _)| *h) {
            Ok(i) => Some(&mut self.blocks[i].1),
            Err(_) => self.carved.get_mut(&handle),
        }
    }

    /// Reuses a freed block (see `free_list.rs`), splitting off what it
    /// has to spare as a new free block.
    fn reuse(&mut self, len: u64) -> Option<u64> {
        let FreeBlock {
            offset: handle,
            mut capacity,
        } = self.free.take(len)?;
        if capacity - len >= SPLIT_THRESHOLD && self.within_limit(self.used) {
            self.free.push(FreeBlock {
                offset: handle + len,
                capacity: capacity - len,
            });
            self.records += 1;
            capacity = len;
        }
        let block = Block {
            capacity,
            used: len,
            live: true,
        };
        match self.get_mut(handle) {
            Some(b) => *b = block,
            None => {
                self.carved.insert(handle, block);
            }
        }
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
        if let Some(block) = self.get_mut(handle)
            && block.live
        {
            block.live = false;
            let capacity = block.capacity;
            self.free.push(FreeBlock {
                offset: handle,
                capacity,
            });
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

    /// Where a guest access of `width` bytes at `offset` lands, if it is
    /// inside the arena memory and past the header (the kernel's bounds).
    fn in_bounds(&self, offset: u64, width: u64) -> Option<usize> {
        let end = offset.checked_add(width)?;
        (offset >= RESERVED as u64 && end <= self.backing.bytes().len() as u64)
            .then_some(offset as usize)
    }

    /// Where the bytes of this call end: its blocks, then whatever the guest
    /// stored past them. The memory beyond may still hold an earlier call's
    /// bytes; they read as zeros.
    fn live_end(&self) -> usize {
        self.used.max(self.written)
    }

    fn load<const N: usize>(&self, offset: u64) -> [u8; N] {
        let mut word = [0u8; N];
        if let Some(start) = self.in_bounds(offset, N as u64) {
            let live = self.live_end().saturating_sub(start).min(N);
            word[..live].copy_from_slice(&self.backing.bytes()[start..start + live]);
        }
        word
    }

    fn store(&mut self, offset: u64, word: &[u8]) {
        let Some(start) = self.in_bounds(offset, word.len() as u64) else {
            return;
        };
        let live = self.live_end();
        let end = start + word.len();
        let bytes = self.backing.bytes_mut();
        if start > live {
            // Keep "past the live end reads as zeros" true of what lies between.
            bytes[live..start].fill(0);
        }
        bytes[start..end].copy_from_slice(word);
        self.written = self.written.max(end);
    }

    /// Reads one byte; 0 outside the arena.
    #[inline]
    pub fn load_u8(&self, offset: u64) -> u8 {
        self.load::<1>(offset)[0]
    }

    /// Reads eight little-endian bytes; 0 unless all eight are inside the arena.
    #[inline]
    pub fn load_u64(&self, offset: u64) -> u64 {
        u64::from_le_bytes(self.load::<8>(offset))
    }

    /// Writes one byte; ignored outside the arena.
    #[inline]
    pub fn store_u8(&mut self, offset: u64, value: u8) {
        self.store(offset, &[value]);
    }

    /// Writes eight little-endian bytes; ignored unless all eight are inside
    /// the arena.
    #[inline]
    pub fn store_u64(&mut self, offset: u64, value: u64) {
        self.store(offset, &value.to_le_bytes());
    }

    /// Whether `offset` is inside the arena, past the header.
    pub(crate) fn contains(&self, offset: u64) -> bool {
        self.in_bounds(offset, 1).is_some()
    }

    /// Whether the kernel's `output_set` accepts `len` bytes at `offset`:
    /// its first and last byte inside the arena (for an empty range, the
    /// byte before `offset` stands for the last).
    pub(crate) fn output_in_bounds(&self, offset: u64, len: u64) -> bool {
        match len {
            0 => self.contains(offset) && offset.checked_sub(1).is_some_and(|p| self.contains(p)),
            _ => self.in_bounds(offset, len).is_some(),
        }
    }

    /// A copy of `len` bytes at `offset` (zeros past [`Arena::live_end`]),
    /// or `None` outside the arena.
    pub(crate) fn copy_out(&self, offset: u64, len: u64) -> Option<Bytes> {
        let start = self.in_bounds(offset, len)?;
        let len = len as usize;
        let bytes = self.backing.bytes();
        let live = self.live_end().saturating_sub(start).min(len);
        if live == len {
            return Some(Bytes::copy_from_slice(&bytes[start..start + len]));
        }
        let mut out = vec![0; len];
        out[..live].copy_from_slice(&bytes[start..start + live]);
        Some(out.into())
    }
}

#[cfg(test)]
#[path = "arena_tests.rs"]
mod tests;
