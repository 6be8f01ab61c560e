//! Memory blocks, input, output and errors: the kernel half of the Extism ABI.
//!
//! The PDKs move data eight bytes per call. The load-time rewrite
//! (`rewrite.rs`) compiles `load_*`, `store_*` and `input_load_*` inline for
//! every access inside the blocks or the input's copy, so these functions see
//! only the rest: the first input read of a call (which makes the copy), and
//! accesses past the blocks.
//!
//! Every function answers as the Extism kernel (its default, bounds-checking
//! build) does, never with a trap: a load outside the arena (or an input load
//! past the input's end) is 0, a store outside it is ignored, and so are an
//! `output_set` or `error_set` pointing outside it. The bounds are the
//! arena's own, so no guest value reaches host memory (see `arena.rs`).

use bytes::Bytes;
use wasmtime::{Caller, Linker};

use super::super::state::HostState;
use super::{ENV_NAMESPACE, blocks};

type Cx<'a> = Caller<'a, HostState>;

pub(super) fn link(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let ns = ENV_NAMESPACE;
    l.func_wrap(ns, "alloc", |mut c: Cx<'_>, n: i64| -> i64 {
        blocks::alloc(&mut c, n as u64).unwrap_or(0) as i64
    })?;
    l.func_wrap(ns, "free", |mut c: Cx<'_>, h: i64| {
        let state = c.data_mut();
        if state.input_handle == Some(h as u64) && state.arena.length(h as u64) != 0 {
            // As in the kernel, freeing the input's block empties the input:
            // `input_length` is 0 from now on and every input read answers 0.
            state.input = Bytes::new();
            state.arena.set_input_copy(h as u64, 0);
        }
        state.arena.free(h as u64);
    })?;
    l.func_wrap(ns, "length", |c: Cx<'_>, h: i64| -> i64 {
        c.data().arena.length(h as u64) as i64
    })?;
    l.func_wrap(ns, "length_unsafe", |c: Cx<'_>, h: i64| -> i64 {
        c.data().arena.length(h as u64) as i64
    })?;
    l.func_wrap(ns, "load_u8", |c: Cx<'_>, p: i64| -> i32 {
        i32::from(c.data().arena.load_u8(p as u64))
    })?;
    l.func_wrap(ns, "load_u64", |c: Cx<'_>, p: i64| -> i64 {
        c.data().arena.load_u64(p as u64) as i64
    })?;
    l.func_wrap(ns, "store_u8", |mut c: Cx<'_>, p: i64, v: i32| {
        c.data_mut().arena.store_u8(p as u64, v as u8)
    })?;
    l.func_wrap(ns, "store_u64", |mut c: Cx<'_>, p: i64, v: i64| {
        c.data_mut().arena.store_u64(p as u64, v as u64)
    })?;
    l.func_wrap(ns, "input_length", |c: Cx<'_>| -> i64 {
        c.data().input.len() as i64
    })?;
    l.func_wrap(ns, "input_load_u8", |mut c: Cx<'_>, off: i64| -> i32 {
        copy_input(&mut c);
        let input = &c.data().input;
        usize::try_from(off)
            .ok()
            .and_then(|i| input.get(i))
            .map_or(0, |b| i32::from(*b))
    })?;
    l.func_wrap(ns, "input_load_u64", |mut c: Cx<'_>, off: i64| -> i64 {
        copy_input(&mut c);
        let input = &c.data().input;
        usize::try_from(off)
            .ok()
            .and_then(|i| input.get(i..i.checked_add(8)?))
            .map_or(0, |b| {
                let mut w = [0u8; 8];
                w.copy_from_slice(b);
                u64::from_le_bytes(w) as i64
            })
    })?;
    l.func_wrap(ns, "input_offset", |mut c: Cx<'_>| -> i64 {
        copy_input(&mut c).unwrap_or(0) as i64
    })?;
    l.func_wrap(ns, "output_set", |mut c: Cx<'_>, off: i64, len: i64| {
        let state = c.data_mut();
        if state.arena.output_in_bounds(off as u64, len as u64) {
            state.output.offset = off as u64;
            state.output.len = len as u64;
        }
    })?;
    l.func_wrap(ns, "output_length", |c: Cx<'_>| -> i64 {
        c.data().output.len as i64
    })?;
    l.func_wrap(ns, "output_offset", |c: Cx<'_>| -> i64 {
        c.data().output.offset as i64
    })?;
    l.func_wrap(ns, "error_set", |mut c: Cx<'_>, h: i64| {
        // Any offset inside the arena is kept, as by the kernel; only a
        // block's handle makes the call fail with its message (`finish`).
        let state = c.data_mut();
        if h == 0 || state.arena.contains(h as u64) {
            state.error = h as u64;
        }
    })?;
    l.func_wrap(ns, "error_get", |c: Cx<'_>| -> i64 {
        c.data().error as i64
    })?;
    l.func_wrap(ns, "memory_bytes", |c: Cx<'_>| -> i64 {
        c.data().arena.size() as i64
    })?;
    l.func_wrap(ns, "reset", |mut c: Cx<'_>| {
        // The kernel's reset forgets the input as well as every block.
        let state = c.data_mut();
        let deadline = state.deadline;
        state.begin_call(Bytes::new(), deadline);
    })?;
    Ok(())
}

/// The input as a memory block, copied into the arena the first time a
/// call asks for it (by `input_offset`, or by the first `input_load_*`, after
/// which the rewrite's inline accessors read the copy). `None` when the
/// input is empty or does not fit under the memory limit; the `input_load_*`
/// functions then read the host's copy.
fn copy_input(c: &mut Cx<'_>) -> Option<u64> {
    if let Some(h) = c.data().input_handle {
        return Some(h).filter(|h| *h != 0);
    }
    let input = c.data().input.clone();
    let h = blocks::alloc_bytes(&mut *c, &input).unwrap_or(0);
    let state = c.data_mut();
    state.input_handle = Some(h);
    if h != 0 {
        state.arena.set_input_copy(h, input.len() as u64);
    }
    Some(h).filter(|h| *h != 0)
}
