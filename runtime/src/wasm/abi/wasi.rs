//! WASI preview 1, as Buntime grants it: clocks and randomness, no
//! environment, no files, and standard output and error that discard what
//! is written (`WasiCtxBuilder`'s defaults; see `state.rs`).
//!
//! wasmtime links most of WASI's file functions as async functions, which a
//! guest can only call on a fiber. Of those, a `wasm32-wasip1` Rust guest
//! imports only `fd_write` (its panic messages and `print!` go there), and
//! with nothing behind the standard streams a write never has anything to
//! wait for. So `fd_write` is linked here as a plain function that answers
//! as wasmtime's does for Buntime's context, and a guest whose WASI imports
//! are all in [`SYNC_FUNCTIONS`] (and whose other imports do not wait) can
//! be called without a fiber (see `wasm/sync_call.rs`).

use wasmtime::{Caller, Extern, Linker};

use super::super::state::HostState;

/// WASI's module name.
pub(crate) const NAMESPACE: &str = "wasi_snapshot_preview1";

/// The WASI functions linked as plain (non-async) functions: wasmtime's
/// own sync ones, and `fd_write` (below). Any other WASI import may wait.
/// A test (`wasi_direct` in tests/all) calls each of them without a fiber,
/// so a wasmtime upgrade that made one async would fail it.
pub(crate) const SYNC_FUNCTIONS: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "proc_exit",
    "proc_raise",
    "sched_yield",
    "random_get",
    "fd_write",
];

/// Whether the WASI function `name` may wait (its callers need a fiber).
pub(crate) fn waits(name: &str) -> bool {
    !SYNC_FUNCTIONS.contains(&name)
}

// WASI errno values.
const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const FAULT: i32 = 21;

/// Links every WASI function (wasmtime's), then `fd_write` in place of
/// wasmtime's async one.
pub(super) fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_async(linker, |s: &mut HostState| {
        // Only modules that import WASI are linked against these functions, and
        // their stores are always created with a WASI context.
        s.wasi
            .as_mut()
            .expect("a WASI context exists for every module that imports WASI")
    })?;
    linker.allow_shadowing(true);
    let defined = linker
        .func_wrap(NAMESPACE, "fd_write", fd_write)
        .map(|_| ());
    linker.allow_shadowing(false);
    defined
}

/// `fd_write(fd, iovs, iovs_len, nwritten) -> errno`, as wasmtime answers it
/// for a context whose only descriptors are its three standard streams,
/// with output and error discarding what they get: the iovec array and the
/// first non-empty buffer must lie in memory (else `EFAULT`); a write to
/// descriptor 1 or 2 takes that whole buffer and reports its length; any
/// other descriptor is `EBADF`.
fn fd_write(
    mut c: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> wasmtime::Result<i32> {
    let Some(Extern::Memory(memory)) = c.get_export("memory") else {
        return Err(wasmtime::Error::msg(
            "wasi_snapshot_preview1::fd_write: the module exports no `memory`",
        ));
    };
    let data = memory.data_mut(&mut c);
    let Some(written) = first_non_empty(data, iovs as u32, iovs_len as u32) else {
        return Ok(FAULT);
    };
    if fd != 1 && fd != 2 {
        return Ok(BADF);
    }
    let Some(out) = slice_mut(data, nwritten as u32, 4) else {
        return Ok(FAULT);
    };
    out.copy_from_slice(&written.to_le_bytes());
    Ok(SUCCESS)
}

/// The length of the first non-empty buffer of the iovec array at `iovs`
/// (0 if all are empty); `None` if the array or that buffer is outside
/// `data`.
fn first_non_empty(data: &mut [u8], iovs: u32, len: u32) -> Option<u32> {
    for i in 0..len {
        let at = iovs.checked_add(i.checked_mul(8)?)?;
        let iov = slice_mut(data, at, 8)?;
        let buf = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let buf_len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        if buf_len == 0 {
            continue;
        }
        slice_mut(data, buf, buf_len)?;
        return Some(buf_len);
    }
    Some(0)
}

fn slice_mut(data: &mut [u8], at: u32, len: u32) -> Option<&mut [u8]> {
    let start = usize::try_from(at).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    data.get_mut(start..end)
}
