//! The guest's config and vars, moved in one host call each way.
//!
//! The same Extism functions (`config_get`, `var_get`, `var_set`) that
//! `extism_pdk::config` and `extism_pdk::var` call, with the keys and values
//! copied through `buntime:host/memory` (see [`crate::io`]) instead of eight
//! bytes, or one, per host call: reading a config key and a var and setting
//! the var took about forty host calls with `extism_pdk`, and takes thirteen
//! here. Values are the same blocks, so both APIs see the same config and
//! vars.

use extism_pdk::extism;

use crate::Error;
use crate::io::{free_block, read_block, write_block};

/// `key` as a host block. `config_get`, `var_get` and `var_set` free the key
/// (and `var_set` the value) themselves, as the Extism kernel does, so the
/// caller must not: the block may already hold the answer.
fn key_block(key: &str) -> Result<u64, Error> {
    if key.is_empty() {
        return Err(Error::msg("config and var keys cannot be empty"));
    }
    match write_block(key.as_bytes()) {
        0 => Err(Error::msg("the host has no room for the key")),
        handle => Ok(handle),
    }
}

/// Reads the block a host function returned (0: none) and frees it.
fn take_block(handle: u64) -> Option<Vec<u8>> {
    (handle != 0).then(|| {
        let bytes = read_block(handle);
        free_block(handle);
        bytes
    })
}

/// The app's or plugin's config value `key` (`env` in `worker.jsonc`, the
/// `config` of a plugin), if set.
#[allow(unsafe_code, reason = "host imports")]
pub fn config(key: &str) -> Result<Option<String>, Error> {
    // SAFETY: `config_get` takes a live key block and returns a block the
    // guest owns (or 0).
    let value = take_block(unsafe { extism::config_get(key_block(key)?) });
    value
        .map(|v| {
            String::from_utf8(v).map_err(|_| Error::msg(format!("config `{key}` is not UTF-8")))
        })
        .transpose()
}

/// The instance's var `key` (kept across calls on the same instance), if set.
#[allow(unsafe_code, reason = "host imports")]
pub fn var(key: &str) -> Result<Option<Vec<u8>>, Error> {
    // SAFETY: as for `config`, with `var_get`.
    Ok(take_block(unsafe { extism::var_get(key_block(key)?) }))
}

/// Sets the instance's var `key` to `value`.
#[allow(unsafe_code, reason = "host imports")]
pub fn set_var(key: &str, value: &[u8]) -> Result<(), Error> {
    let k = key_block(key)?;
    let v = write_block(value);
    if v == 0 && !value.is_empty() {
        free_block(k);
        return Err(Error::msg("the host has no room for the value"));
    }
    // SAFETY: both blocks are live; the host copies the value and frees both.
    unsafe { extism::var_set(k, v) };
    Ok(())
}

/// Removes the instance's var `key`.
#[allow(unsafe_code, reason = "host imports")]
pub fn remove_var(key: &str) -> Result<(), Error> {
    // SAFETY: a live key block (freed by the host); value 0 removes the var.
    unsafe { extism::var_set(key_block(key)?, 0) };
    Ok(())
}
