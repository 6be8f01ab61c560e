//! Links the registered `extism:host/user` functions, each behind its grant check.
//!
//! Functions that wait are linked as async functions (their guests run on a
//! fiber); functions that do not are linked as plain ones, so a guest that
//! imports only those can be called directly (see `wasm/sync_call.rs`).

use wasmtime::{Caller, FuncType, Linker, Val, ValType};

use std::sync::Arc;

use super::super::host_fn::{
    GuestMemory, HostError, HostFunction, HostOutput, Implementation, MemoryImplementation,
    ResultEncoding, SyncImplementation, USER_NAMESPACE, envelope,
};
use super::super::state::HostState;
use super::super::sync_call::InHostCall;

pub(super) fn link(l: &mut Linker<HostState>, functions: &[HostFunction]) -> wasmtime::Result<()> {
    for f in functions {
        let ty = FuncType::new(
            l.engine(),
            std::iter::repeat_n(ValType::I64, f.params),
            [ValType::I64],
        );
        let f = f.clone();
        match f.implementation.clone() {
            Implementation::Sync(run) => link_sync(l, ty, f, run)?,
            Implementation::Memory(run) => link_memory(l, ty, f, run)?,
            Implementation::Async(run) => {
                l.func_new_async(
                    USER_NAMESPACE,
                    f.name,
                    ty,
                    move |mut c: Caller<'_, HostState>, params, results| {
                        let f = f.clone();
                        let run = run.clone();
                        Box::new(async move {
                            let outcome = match f.check(c.data()) {
                                Err(denial) => Err(denial.into()),
                                Ok(()) => {
                                    let future = with_args(params, |args| run(c.data_mut(), args));
                                    InHostCall(future).await
                                }
                            };
                            results[0] = Val::I64(result_handle(&f, &mut c, outcome)? as i64);
                            Ok(())
                        })
                    },
                )?;
            }
        }
    }
    Ok(())
}

/// Links a function that does not wait.
fn link_sync(
    l: &mut Linker<HostState>,
    ty: FuncType,
    f: HostFunction,
    run: Arc<SyncImplementation>,
) -> wasmtime::Result<()> {
    let (module, name) = (USER_NAMESPACE, f.name);
    let call = move |c: &mut Caller<'_, HostState>, args: &[u64]| -> wasmtime::Result<i64> {
        let outcome = match f.check(c.data()) {
            Err(denial) => Err(denial.into()),
            Ok(()) => run(c.data_mut(), args),
        };
        Ok(result_handle(&f, c, outcome)? as i64)
    };
    wrap_typed(l, module, name, ty, call)
}

/// Links a function that does not wait and works on the guest's memory
/// (its arguments are addresses and integers, not blocks).
fn link_memory(
    l: &mut Linker<HostState>,
    ty: FuncType,
    f: HostFunction,
    run: Arc<MemoryImplementation>,
) -> wasmtime::Result<()> {
    let (module, name) = (USER_NAMESPACE, f.name);
    let call = move |c: &mut Caller<'_, HostState>, args: &[u64]| -> wasmtime::Result<i64> {
        let outcome = match f.check(c.data()) {
            Err(denial) => Err(denial.into()),
            Ok(()) => match super::bulk::exported_memory(c) {
                Some(memory) => {
                    let (bytes, state) = memory.data_and_store_mut(&mut *c);
                    run(state, &mut GuestMemory::new(f.name, bytes), args)
                }
                None => Err(HostError::new(
                    "invalid_argument",
                    "the module exports no `memory`",
                )),
            },
        };
        // Answered in memory: handle 0, no envelope block.
        if let Ok(None) = outcome {
            return Ok(0);
        }
        Ok(result_handle(&f, c, outcome)? as i64)
    };
    wrap_typed(l, module, name, ty, call)
}

/// Links `call` under `module::name`. The common arities are linked as
/// typed functions: wasmtime then passes the arguments in registers, with no
/// `Val` array to check and no argument vector to allocate per call (state,
/// metrics and events calls are made per request by busy plugins).
fn wrap_typed(
    l: &mut Linker<HostState>,
    module: &'static str,
    name: &'static str,
    ty: FuncType,
    call: impl Fn(&mut Caller<'_, HostState>, &[u64]) -> wasmtime::Result<i64> + Send + Sync + 'static,
) -> wasmtime::Result<()> {
    type C<'a> = Caller<'a, HostState>;
    let arity = ty.params().len();
    match arity {
        0 => l.func_wrap(module, name, move |mut c: C<'_>| call(&mut c, &[]))?,
        1 => l.func_wrap(module, name, move |mut c: C<'_>, a: i64| {
            call(&mut c, &[a as u64])
        })?,
        2 => l.func_wrap(module, name, move |mut c: C<'_>, a: i64, b: i64| {
            call(&mut c, &[a as u64, b as u64])
        })?,
        3 => l.func_wrap(module, name, move |mut c: C<'_>, a: i64, b: i64, d: i64| {
            call(&mut c, &[a as u64, b as u64, d as u64])
        })?,
        4 => l.func_wrap(
            module,
            name,
            move |mut c: C<'_>, a: i64, b: i64, d: i64, e: i64| {
                call(&mut c, &[a as u64, b as u64, d as u64, e as u64])
            },
        )?,
        5 => l.func_wrap(
            module,
            name,
            move |mut c: C<'_>, a: i64, b: i64, d: i64, e: i64, g: i64| {
                call(&mut c, &[a as u64, b as u64, d as u64, e as u64, g as u64])
            },
        )?,
        6 => l.func_wrap(
            module,
            name,
            move |mut c: C<'_>, a: i64, b: i64, d: i64, e: i64, g: i64, h: i64| {
                call(
                    &mut c,
                    &[a as u64, b as u64, d as u64, e as u64, g as u64, h as u64],
                )
            },
        )?,
        _ => l.func_new(module, name, ty, move |mut c: C<'_>, params, results| {
            results[0] = Val::I64(with_args(params, |args| call(&mut c, args))?);
            Ok(())
        })?,
    };
    Ok(())
}

/// `f` of a call's arguments as the implementations take them: on the
/// stack for up to eight (every function Buntime links has fewer), in a
/// `Vec` beyond. A `Vec` per call was one allocation of an async host
/// function's round trip.
fn with_args<R>(params: &[Val], f: impl FnOnce(&[u64]) -> R) -> R {
    let arg = |v: &Val| v.i64().unwrap_or(0) as u64;
    let mut stack = [0u64; 8];
    if params.len() > stack.len() {
        return f(&params.iter().map(arg).collect::<Vec<_>>());
    }
    for (slot, v) in stack.iter_mut().zip(params) {
        *slot = arg(v);
    }
    f(&stack[..params.len()])
}

/// The result block's handle (0 for none); a raw function's error traps.
fn result_handle(
    f: &HostFunction,
    c: &mut Caller<'_, HostState>,
    outcome: HostOutput,
) -> wasmtime::Result<u64> {
    let bytes = match f.encoding {
        ResultEncoding::Envelope => Some(envelope(outcome)),
        ResultEncoding::Raw => outcome
            .map_err(|e| wasmtime::Error::msg(format!("{USER_NAMESPACE}::{}: {e}", f.name)))?,
    };
    Ok(match bytes {
        Some(b) if !b.is_empty() => super::blocks::alloc_bytes(c, &b).ok_or_else(|| {
            wasmtime::Error::msg(format!(
                "{USER_NAMESPACE}::{}: the guest's memory limit leaves no room for a {}-byte result",
                f.name,
                b.len()
            ))
        })?,
        _ => 0,
    })
}
