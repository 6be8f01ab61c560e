//! Allocating memory blocks from host functions.
//!
//! The arena's bytes live in the instance's arena memory (see `arena.rs`),
//! which starts at one page. When a block does not fit, the memory grows —
//! and growing a wasmtime memory needs the store, which a host function
//! reaches through its `Caller`. So every host-side allocation goes through
//! these helpers, which allocate and, only when the block does not fit,
//! grow the memory (within the guest's memory limit) and allocate again.

use wasmtime::AsContextMut;

use super::super::arena::Room;
use super::super::state::HostState;

/// Makes room for a block of `len` bytes; `false` when it cannot fit under
/// the guest's memory limit. After `true`, [`Arena::alloc`] of `len` bytes
/// succeeds without growing.
///
/// [`Arena::alloc`]: super::super::Arena::alloc
pub(crate) fn reserve(mut cx: impl AsContextMut<Data = HostState>, len: u64) -> bool {
    let mut cx = cx.as_context_mut();
    let arena = &cx.data().arena;
    let pages = match arena.room(len) {
        Room::Fits => return true,
        Room::Full => return false,
        Room::Grow(pages) => pages,
    };
    let Some(memory) = arena.memory() else {
        return false;
    };
    if memory.grow(&mut cx, pages).is_err() {
        return false;
    }
    let (base, size) = (memory.data_ptr(&cx), memory.data_size(&cx));
    // SAFETY: the arena memory's pointer and size, just read after growing.
    #[allow(
        unsafe_code,
        reason = "the arena's view of its wasm memory (see `Backing::Wasm`)"
    )]
    unsafe {
        cx.data_mut().arena.remap(base, size)
    };
    true
}

/// Allocates a zeroed block of `len` bytes, growing the arena memory if
/// needed; `None` when it cannot fit (the ABI's handle 0).
pub(crate) fn alloc(mut cx: impl AsContextMut<Data = HostState>, len: u64) -> Option<u64> {
    let mut cx = cx.as_context_mut();
    match cx.data_mut().arena.alloc(len) {
        Some(handle) => Some(handle),
        None if reserve(&mut cx, len) => cx.data_mut().arena.alloc(len),
        None => None,
    }
}

/// Copies `data` into a new block, growing the arena memory if needed.
pub(crate) fn alloc_bytes(mut cx: impl AsContextMut<Data = HostState>, data: &[u8]) -> Option<u64> {
    let mut cx = cx.as_context_mut();
    match cx.data_mut().arena.alloc_bytes(data) {
        Some(handle) => Some(handle),
        None if reserve(&mut cx, data.len() as u64) => cx.data_mut().arena.alloc_bytes(data),
        None => None,
    }
}
