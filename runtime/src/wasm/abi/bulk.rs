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
//! | `config_read` | `(key: i64, key_len: i64, dest: i64, cap: i64) -> i64` | config value `key` copied to `dest` if it fits in `cap`; its length, or -1 if unset |
//! | `var_read` | `(key: i64, key_len: i64, dest: i64, cap: i64) -> i64` | the same for var `key` |
//! | `var_write` | `(key: i64, key_len: i64, src: i64, len: i64)` | sets var `key` to `len` bytes from `src` (0 deletes it) |
//!
//! The last three are `config_get`, `var_get` and `var_set` without blocks:
//! reading a config value through the Extism functions takes five host calls
//! (write the key, get, length, read, free), and the key and value are each
//! copied twice; here it is one call and one copy.
//!
//! Addresses are in the guest's exported `memory`; a range outside it is a
//! trap naming the function, never a host fault.

use wasmtime::{Caller, Linker, Memory};

use super::super::state::HostState;
use super::config::{VARS_DISABLED, store_var};

/// The import module of the bulk functions.
pub(super) const MEMORY_NAMESPACE: &str = "buntime:host/memory";

type Cx<'a> = Caller<'a, HostState>;

fn fault(function: &str, detail: impl std::fmt::Display) -> wasmtime::Error {
    wasmtime::Error::msg(format!("{MEMORY_NAMESPACE}::{function}: {detail}"))
}

/// The guest's exported `memory`, looked up by name once per instance
/// (also for the `extism:host/user` functions that work on it).
pub(super) fn exported_memory(c: &mut Cx<'_>) -> Option<Memory> {
    if let Some(memory) = c.data().memory {
        return Some(memory);
    }
    let memory = c.get_export("memory").and_then(|e| e.into_memory())?;
    c.data_mut().memory = Some(memory);
    Some(memory)
}

/// [`exported_memory`], or a fault naming `function`.
fn guest_memory(c: &mut Cx<'_>, function: &str) -> wasmtime::Result<Memory> {
    exported_memory(c).ok_or_else(|| fault(function, "the module exports no `memory`"))
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

/// A length argument as a `usize`.
fn length(function: &str, len: i64) -> wasmtime::Result<usize> {
    usize::try_from(len).map_err(|_| fault(function, format!("a negative length ({len})")))
}

/// The key at `memory[at .. at + len]`: non-empty UTF-8.
fn key<'a>(function: &str, memory: &'a [u8], at: i64, len: i64) -> wasmtime::Result<&'a str> {
    let r = range(function, memory, at, length(function, len)?)?;
    match std::str::from_utf8(&memory[r]) {
        Ok("") => Err(fault(function, "the key is empty")),
        Ok(key) => Ok(key),
        Err(_) => Err(fault(function, "the key is not valid UTF-8")),
    }
}

/// Copies `value` to `memory[dest ..]` if it fits in `cap` bytes and returns
/// its length either way (a guest whose buffer was too small asks again with
/// a larger one); -1 when there is no value. An empty value counts as none,
/// as with `config_get` (there are no empty blocks).
fn answer(
    function: &str,
    memory: &mut [u8],
    value: Option<&[u8]>,
    dest: i64,
    cap: i64,
) -> wasmtime::Result<i64> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(-1);
    };
    if value.len() <= length(function, cap)? {
        let r = range(function, memory, dest, value.len())?;
        memory[r].copy_from_slice(value);
    }
    Ok(value.len() as i64)
}

/// `config_read` and `var_read`: the key at `args[0]` (`args[1]` bytes)
/// looked up with `lookup`, answered into `args[2]` (capacity `args[3]`).
fn read_entry(
    mut c: Cx<'_>,
    function: &str,
    [k, k_len, dest, cap]: [i64; 4],
    lookup: impl for<'s> Fn(&'s HostState, &str) -> Option<&'s [u8]>,
) -> wasmtime::Result<i64> {
    let memory = guest_memory(&mut c, function)?;
    let (mem, state) = memory.data_and_store_mut(&mut c);
    let value = lookup(state, key(function, mem, k, k_len)?);
    answer(function, mem, value, dest, cap)
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
            let len = length("block_write", len)?;
            // Grow the arena first: the copy below borrows the whole store.
            super::blocks::reserve(&mut c, len as u64);
            let (mem, state) = memory.data_and_store_mut(&mut c);
            let r = range("block_write", mem, src, len)?;
            Ok(state.arena.alloc_bytes(&mem[r]).unwrap_or(0) as i64)
        },
    )?;
    l.func_wrap(
        ns,
        "config_read",
        |c: Cx<'_>, k: i64, k_len: i64, dest: i64, cap: i64| -> wasmtime::Result<i64> {
            read_entry(c, "config_read", [k, k_len, dest, cap], |state, key| {
                state.config.get(key).map(String::as_bytes)
            })
        },
    )?;
    l.func_wrap(
        ns,
        "var_read",
        |c: Cx<'_>, k: i64, k_len: i64, dest: i64, cap: i64| -> wasmtime::Result<i64> {
            read_entry(c, "var_read", [k, k_len, dest, cap], |state, key| {
                state.vars.get(key).map(Vec::as_slice)
            })
        },
    )?;
    l.func_wrap(
        ns,
        "var_write",
        |mut c: Cx<'_>, k: i64, k_len: i64, src: i64, len: i64| -> wasmtime::Result<()> {
            let memory = guest_memory(&mut c, "var_write")?;
            let (mem, state) = memory.data_and_store_mut(&mut c);
            if state.max_var_bytes == 0 {
                return Err(fault("var_write", VARS_DISABLED));
            }
            let key = key("var_write", mem, k, k_len)?;
            let value = &mem[range("var_write", mem, src, length("var_write", len)?)?];
            if value.is_empty() {
                state.vars.remove(key);
                return Ok(());
            }
            store_var(&mut state.vars, state.max_var_bytes, key, value)
                .map_err(|e| fault("var_write", e))
        },
    )?;
    Ok(())
}
