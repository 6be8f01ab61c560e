//! `buntime:host/memory`: whole-block copies between the host and a guest's
//! linear memory, one call each.
//!
//! The Extism ABI moves data eight bytes per host call (`load_u64`,
//! `store_u64`, `input_load_u64`): ~130 calls for a 1 KiB input, each a
//! guest-to-host transition of ~9 ns, which is most of what a small call
//! costs. These three functions do the same work in one call and a
//! `memcpy`. They are optional: `buntime-pdk` uses them, any Extism PDK keeps
//! working without them (see `docs/abi.md`).
//!
//! | function | signature | does |
//! |---|---|---|
//! | `input_read` | `(dest: i64)` | copies the call's input (`input_length` bytes) to `dest` |
//! | `block_read` | `(handle: i64, dest: i64)` | copies block `handle` (`length` bytes) to `dest` |
//! | `block_write` | `(src: i64, len: i64) -> i64` | a new block holding `len` bytes from `src`; 0 if the arena is full |
//!
//! Addresses are in the guest's exported `memory`; a range outside it is a
//! trap naming the function, never a host fault.

use wasmtime::{Caller, Linker, Memory};

use super::super::state::HostState;

/// The import module of the bulk functions.
pub(super) const MEMORY_NAMESPACE: &str = "buntime:host/memory";

type Cx<'a> = Caller<'a, HostState>;

fn fault(function: &str, detail: impl std::fmt::Display) -> wasmtime::Error {
    wasmtime::Error::msg(format!("{MEMORY_NAMESPACE}::{function}: {detail}"))
}

/// The guest's exported `memory`, looked up by name once per instance.
fn guest_memory(c: &mut Cx<'_>, function: &str) -> wasmtime::Result<Memory> {
    if let Some(memory) = c.data().memory {
        return Ok(memory);
    }
    let memory = c
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| fault(function, "the module exports no `memory`"))?;
    c.data_mut().memory = Some(memory);
    Ok(memory)
}

/// `memory[at .. at + len]`, checked.
fn range(
    function: &str,
    memory: &[u8],
    at: i64,
    len: usize,
) -> wasmtime::Result<std::ops::Range<usize>> {
    usize::try_from(at)
        .ok()
        .and_then(|start| Some(start..start.checked_add(len)?))
        .filter(|r| r.end <= memory.len())
        .ok_or_else(|| {
            fault(
                function,
                format!(
                    "{len} bytes at {at} are outside the guest's {} bytes of memory",
                    memory.len()
                ),
            )
        })
}

pub(super) fn link(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let ns = MEMORY_NAMESPACE;
    l.func_wrap(
        ns,
        "input_read",
        |mut c: Cx<'_>, dest: i64| -> wasmtime::Result<()> {
            let memory = guest_memory(&mut c, "input_read")?;
            let (mem, state) = memory.data_and_store_mut(&mut c);
            let input = &state.input;
            let r = range("input_read", mem, dest, input.len())?;
            mem[r].copy_from_slice(input);
            Ok(())
        },
    )?;
    l.func_wrap(
        ns,
        "block_read",
        |mut c: Cx<'_>, handle: i64, dest: i64| -> wasmtime::Result<()> {
            let memory = guest_memory(&mut c, "block_read")?;
            let (mem, state) = memory.data_and_store_mut(&mut c);
            let block = state
                .arena
                .block(handle as u64)
                .map_err(|e| fault("block_read", e))?;
            let r = range("block_read", mem, dest, block.len())?;
            mem[r].copy_from_slice(block);
            Ok(())
        },
    )?;
    l.func_wrap(
        ns,
        "block_write",
        |mut c: Cx<'_>, src: i64, len: i64| -> wasmtime::Result<i64> {
            let memory = guest_memory(&mut c, "block_write")?;
            let len =
                usize::try_from(len).map_err(|_| fault("block_write", "a negative length"))?;
            // Grow the arena first: the copy below borrows the whole store.
            super::blocks::reserve(&mut c, len as u64);
            let (mem, state) = memory.data_and_store_mut(&mut c);
            let r = range("block_write", mem, src, len)?;
            Ok(state.arena.alloc_bytes(&mem[r]).unwrap_or(0) as i64)
        },
    )?;
    Ok(())
}
