//! `config_get`, `var_get` and `var_set`.
//!
//! Config is the read-only map from the guest's options. Vars are a small
//! key/value store private to one instance that survives across its calls
//! (capped at `max_var_bytes`; 0 disables `var_set`). State that must be shared
//! between instances belongs in a host capability, never in vars.

use wasmtime::{Caller, Linker};

use super::super::state::HostState;
use super::{ENV_NAMESPACE, guest_fault};

type Cx<'a> = Caller<'a, HostState>;

fn key(state: &HostState, function: &str, handle: i64) -> wasmtime::Result<String> {
    let bytes = state
        .arena
        .block(handle as u64)
        .map_err(|e| guest_fault(function, e))?;
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| guest_fault(function, "the key is not valid UTF-8"))
}

pub(super) fn link(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    l.func_wrap(
        ENV_NAMESPACE,
        "config_get",
        |mut c: Cx<'_>, h: i64| -> wasmtime::Result<i64> {
            let state = c.data_mut();
            let key = key(state, "config_get", h)?;
            state.arena.free(h as u64);
            let config = state.config.clone();
            Ok(match config.get(&key) {
                Some(v) => state.arena.alloc_bytes(v.as_bytes()).unwrap_or(0) as i64,
                None => 0,
            })
        },
    )?;
    l.func_wrap(
        ENV_NAMESPACE,
        "var_get",
        |mut c: Cx<'_>, h: i64| -> wasmtime::Result<i64> {
            let state = c.data_mut();
            let key = key(state, "var_get", h)?;
            state.arena.free(h as u64);
            let HostState { vars, arena, .. } = state;
            Ok(match vars.get(&key) {
                Some(v) => arena.alloc_bytes(v).unwrap_or(0) as i64,
                None => 0,
            })
        },
    )?;
    l.func_wrap(
        ENV_NAMESPACE,
        "var_set",
        |mut c: Cx<'_>, k: i64, v: i64| -> wasmtime::Result<()> {
            let state = c.data_mut();
            if state.max_var_bytes == 0 {
                return Err(guest_fault("var_set", "vars are disabled for this guest"));
            }
            let key = key(state, "var_set", k)?;
            if v == 0 {
                state.vars.remove(&key);
                state.arena.free(k as u64);
                return Ok(());
            }
            let value = state
                .arena
                .block(v as u64)
                .map_err(|e| guest_fault("var_set", e))?
                .to_vec();
            let entry = |k: &str, v: &[u8]| k.len() + v.len() + 2 * std::mem::size_of::<Vec<u8>>();
            let used: usize = state
                .vars
                .iter()
                .filter(|(name, _)| **name != key)
                .map(|(k, v)| entry(k, v))
                .sum();
            if used + entry(&key, &value) > state.max_var_bytes {
                return Err(guest_fault(
                    "var_set",
                    format!(
                        "the variable store is full ({} bytes at most)",
                        state.max_var_bytes
                    ),
                ));
            }
            state.arena.free(v as u64);
            state.arena.free(k as u64);
            state.vars.insert(key, value);
            Ok(())
        },
    )?;
    Ok(())
}
