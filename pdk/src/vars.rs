//! The guest's config and vars, one host call each.
//!
//! The same config and vars that `extism_pdk::config` and `extism_pdk::var`
//! reach through the Extism functions (`config_get`, `var_get`, `var_set`),
//! read and written with `buntime:host/memory`'s `config_read`, `var_read`
//! and `var_write` (see `docs/abi.md` §4): the key goes to the host as an
//! address and a length, and the value is copied straight into (or out of)
//! guest memory. Reading a config key and a var and setting the var took
//! about forty host calls with `extism_pdk`, thirteen through host blocks,
//! and three here. Both APIs see the same config and vars.

use crate::Error;

#[allow(unsafe_code, reason = "imports are foreign functions by definition")]
mod imports {
    #[link(wasm_import_module = "buntime:host/memory")]
    unsafe extern "C" {
        pub(super) fn config_read(key: u64, key_len: u64, dest: u64, cap: u64) -> i64;
        pub(super) fn var_read(key: u64, key_len: u64, dest: u64, cap: u64) -> i64;
        pub(super) fn var_write(key: u64, key_len: u64, src: u64, len: u64);
    }
}

/// A value's first buffer: config values and vars are usually short, so
/// most reads take one call; a longer value takes a second, sized exactly.
const FIRST_READ: usize = 64;

fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::msg("config and var keys cannot be empty"));
    }
    Ok(())
}

/// Reads the value of `key` with `read(key, key_len, dest, cap)`, which
/// returns the value's length (copying it only if it fits) or -1 for none.
#[allow(
    unsafe_code,
    reason = "the host writes into the vector's spare capacity"
)]
fn read_value(
    key: &str,
    read: impl Fn(u64, u64, u64, u64) -> i64,
) -> Result<Option<Vec<u8>>, Error> {
    check_key(key)?;
    let mut buf: Vec<u8> = Vec::with_capacity(FIRST_READ);
    for _ in 0..2 {
        let len = read(
            key.as_ptr() as u64,
            key.len() as u64,
            buf.as_mut_ptr() as u64,
            buf.capacity() as u64,
        );
        let Ok(len) = usize::try_from(len) else {
            return Ok(None);
        };
        if len <= buf.capacity() {
            // SAFETY: the host copied exactly `len` bytes to the start of
            // the buffer, which has room for them.
            unsafe { buf.set_len(len) };
            return Ok(Some(buf));
        }
        buf.reserve_exact(len);
    }
    // Only another writer between the two reads could do this, and a guest
    // instance runs one call at a time.
    Err(Error::msg(format!(
        "the value of `{key}` changed while it was read"
    )))
}

/// The app's or plugin's config value `key` (`env` in `worker.jsonc`, the
/// `config` of a plugin), if set. An empty value reads as unset.
#[allow(unsafe_code, reason = "host imports")]
pub fn config(key: &str) -> Result<Option<String>, Error> {
    // SAFETY: `config_read` reads the key's bytes and writes at most `cap`
    // bytes at `dest`, both ranges inside this guest's memory.
    let value = read_value(key, |k, kl, d, c| unsafe {
        imports::config_read(k, kl, d, c)
    })?;
    value
        .map(|v| {
            String::from_utf8(v).map_err(|_| Error::msg(format!("config `{key}` is not UTF-8")))
        })
        .transpose()
}

/// The instance's var `key` (kept across calls on the same instance), if set.
#[allow(unsafe_code, reason = "host imports")]
pub fn var(key: &str) -> Result<Option<Vec<u8>>, Error> {
    // SAFETY: as for `config`, with `var_read`.
    read_value(key, |k, kl, d, c| unsafe { imports::var_read(k, kl, d, c) })
}

/// Sets the instance's var `key` to `value` (an empty value removes it).
#[allow(unsafe_code, reason = "host imports")]
pub fn set_var(key: &str, value: &[u8]) -> Result<(), Error> {
    check_key(key)?;
    // SAFETY: the host copies `key.len()` and `value.len()` bytes from these
    // addresses, which are live for the call.
    unsafe {
        imports::var_write(
            key.as_ptr() as u64,
            key.len() as u64,
            value.as_ptr() as u64,
            value.len() as u64,
        )
    };
    Ok(())
}

/// Removes the instance's var `key`.
pub fn remove_var(key: &str) -> Result<(), Error> {
    set_var(key, &[])
}
