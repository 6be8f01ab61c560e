//! Moving bytes between the guest and the host in one call each, through
//! the `buntime:host/memory` functions (see `docs/abi.md`), instead of the
//! Extism PDK's eight bytes per host call: a 1 KiB input is one call
//! instead of ~130.

use extism_pdk::extism;

#[allow(unsafe_code, reason = "imports are foreign functions by definition")]
mod imports {
    #[link(wasm_import_module = "buntime:host/memory")]
    unsafe extern "C" {
        pub(super) fn input_read(dest: u64);
        pub(super) fn block_read(handle: u64, dest: u64);
        pub(super) fn block_write(src: u64, len: u64) -> u64;
    }
}

/// The call's input.
#[allow(unsafe_code, reason = "host imports")]
pub fn input() -> Vec<u8> {
    // SAFETY: `input_length` takes nothing; `input_read` writes exactly
    // `input_length` bytes at the start of a buffer of that length.
    unsafe {
        let len = extism::input_length() as usize;
        let mut buf = vec![0u8; len];
        if len > 0 {
            imports::input_read(buf.as_mut_ptr() as u64);
        }
        buf
    }
}

/// The bytes of host block `handle` (the block stays allocated).
#[allow(unsafe_code, reason = "host imports")]
pub fn read_block(handle: u64) -> Vec<u8> {
    // SAFETY: `block_read` writes exactly `length(handle)` bytes into a
    // buffer of that length; an invalid handle has length 0 and is not read.
    unsafe {
        let len = extism::length(handle) as usize;
        let mut buf = vec![0u8; len];
        if len > 0 {
            imports::block_read(handle, buf.as_mut_ptr() as u64);
        }
        buf
    }
}

/// A new host block holding `bytes` (0 if the host is out of memory).
#[allow(unsafe_code, reason = "host imports")]
pub fn write_block(bytes: &[u8]) -> u64 {
    // SAFETY: the host reads `bytes.len()` bytes at `bytes`' address.
    unsafe { imports::block_write(bytes.as_ptr() as u64, bytes.len() as u64) }
}

/// Sets the call's output to `bytes`.
#[allow(unsafe_code, reason = "host imports")]
pub fn output(bytes: &[u8]) -> Result<(), extism_pdk::Error> {
    let handle = write_block(bytes);
    if handle == 0 && !bytes.is_empty() {
        return Err(extism_pdk::Error::msg(
            "the host has no room for the output",
        ));
    }
    // SAFETY: `handle` is the live block just written, `bytes.len()` long.
    unsafe { extism::output_set(handle, bytes.len() as u64) };
    Ok(())
}

/// Frees host block `handle`.
#[allow(unsafe_code, reason = "host imports")]
pub fn free_block(handle: u64) {
    // SAFETY: freeing a block the caller owns and no longer uses; the host
    // ignores unknown handles.
    unsafe { extism::free(handle) }
}
