//! `config_get`, `var_get` and `var_set`.
//!
//! Config is the read-only map from the guest's options. Vars are a small
//! key/value store private to one instance that survives across its calls
//! (capped at `max_var_bytes`; 0 disables `var_set`). State that must be shared
//! between instances belongs in a host capability, never in vars.

use std::collections::HashMap;

use wasmtime::{Caller, Linker};

use super::super::arena::Arena;
use super::super::state::HostState;
use super::{ENV_NAMESPACE, blocks, guest_fault};

type Cx<'a> = Caller<'a, HostState>;

/// The key in block `handle`, borrowed from the arena. Handle 0 is the
/// empty key, as in the Extism runtime; any other handle must be a block.
fn key<'a>(arena: &'a Arena, function: &str, handle: i64) -> wasmtime::Result<&'a str> {
    if handle == 0 {
        return Ok("");
    }
    let bytes = arena
        .block(handle as u64)
        .map_err(|e| guest_fault(function, e))?;
    std::str::from_utf8(bytes).map_err(|_| guest_fault(function, "the key is not valid UTF-8"))
}

// The functions borrow the state's fields apart (config, vars, arena) rather
// than cloning: a guest reads its config and vars on every request, and the
// config map is one `Arc` shared by every instance of the module, so a clone
// per call was a reference count bounced between the cores.
pub(super) fn link(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    l.func_wrap(
        ENV_NAMESPACE,
        "config_get",
        |mut c: Cx<'_>, h: i64| -> wasmtime::Result<i64> {
            let HostState { config, arena, .. } = c.data_mut();
            let value = config.get(key(arena, "config_get", h)?);
            arena.free(h as u64);
            Ok(match value {
                Some(v) => match arena.alloc_bytes(v.as_bytes()) {
                    Some(handle) => handle as i64,
                    // The arena memory must grow first (rare: the value
                    // is copied so the store can be borrowed to grow it).
                    None => {
                        let v = v.clone();
                        blocks::alloc_bytes(&mut c, v.as_bytes()).unwrap_or(0) as i64
                    }
                },
                None => 0,
            })
        },
    )?;
    l.func_wrap(
        ENV_NAMESPACE,
        "var_get",
        |mut c: Cx<'_>, h: i64| -> wasmtime::Result<i64> {
            let HostState { vars, arena, .. } = c.data_mut();
            let value = vars.get(key(arena, "var_get", h)?);
            arena.free(h as u64);
            Ok(match value {
                Some(v) => match arena.alloc_bytes(v) {
                    Some(handle) => handle as i64,
                    None => {
                        let v = v.clone();
                        blocks::alloc_bytes(&mut c, &v).unwrap_or(0) as i64
                    }
                },
                None => 0,
            })
        },
    )?;
    l.func_wrap(
        ENV_NAMESPACE,
        "var_set",
        |mut c: Cx<'_>, k: i64, v: i64| -> wasmtime::Result<()> {
            let HostState {
                vars,
                arena,
                max_var_bytes,
                ..
            } = c.data_mut();
            if *max_var_bytes == 0 {
                return Err(guest_fault("var_set", VARS_DISABLED));
            }
            let key = key(arena, "var_set", k)?;
            if v == 0 {
                vars.remove(key);
                arena.free(k as u64);
                return Ok(());
            }
            let value = arena
                .block(v as u64)
                .map_err(|e| guest_fault("var_set", e))?;
            store_var(vars, *max_var_bytes, key, value).map_err(|e| guest_fault("var_set", e))?;
            arena.free(v as u64);
            arena.free(k as u64);
            Ok(())
        },
    )?;
    Ok(())
}

/// Why a `var_set` (or `var_write`) of a guest with no var store traps.
pub(super) const VARS_DISABLED: &str = "vars are disabled for this guest";

/// Sets var `key` to `value` within the store's cap of `max` bytes (each
/// entry counts its key, its value and two vector headers; as in the Extism
/// runtime, a var being replaced still counts with its old value, so the cap
/// refuses exactly what Extism refuses); the store is unchanged when the cap
/// would be exceeded. An existing var keeps its
/// buffer; only a new key allocates. Shared by `var_set` and
/// `buntime:host/memory::var_write`, which refuse a guest without vars
/// (`max == 0`, [`VARS_DISABLED`]) before they look at the key.
pub(super) fn store_var(
    vars: &mut HashMap<String, Vec<u8>>,
    max: usize,
    key: &str,
    value: &[u8],
) -> Result<(), String> {
    let entry = |k: &str, v: &[u8]| k.len() + v.len() + 2 * std::mem::size_of::<Vec<u8>>();
    let used: usize = vars.iter().map(|(k, v)| entry(k, v)).sum();
    if used + entry(key, value) > max {
        return Err(format!("the variable store is full ({max} bytes at most)"));
    }
    match vars.get_mut(key) {
        Some(old) => {
            old.clear();
            old.extend_from_slice(value);
        }
        None => {
            vars.insert(key.to_owned(), value.to_vec());
        }
    }
    Ok(())
}
