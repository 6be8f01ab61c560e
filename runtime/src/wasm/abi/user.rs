//! Links the registered `extism:host/user` functions, each behind its grant check.

use wasmtime::{Caller, FuncType, Linker, Val, ValType};

use super::super::host_fn::{HostFunction, ResultEncoding, USER_NAMESPACE, envelope};
use super::super::state::HostState;

pub(super) fn link(l: &mut Linker<HostState>, functions: &[HostFunction]) -> wasmtime::Result<()> {
    for f in functions {
        let ty = FuncType::new(
            l.engine(),
            std::iter::repeat_n(ValType::I64, f.params),
            [ValType::I64],
        );
        let f = f.clone();
        l.func_new_async(USER_NAMESPACE, f.name, ty, move |mut c: Caller<'_, HostState>, params, results| {
            let f = f.clone();
            Box::new(async move {
                let args: Vec<u64> = params.iter().map(|v| v.i64().unwrap_or(0) as u64).collect();
                let outcome = match f.check(c.data()) {
                    Err(denial) => Err(super::super::host_fn::HostError::new("capability_denied", denial.to_string())),
                    Ok(()) => {
                        let future = (f.implementation)(c.data_mut(), &args);
                        future.await
                    }
                };
                let bytes = match f.encoding {
                    ResultEncoding::Envelope => Some(envelope(outcome)),
                    ResultEncoding::Raw => outcome.map_err(|e| {
                        wasmtime::Error::msg(format!("{USER_NAMESPACE}::{}: {e}", f.name))
                    })?,
                };
                let handle = match bytes {
                    Some(b) if !b.is_empty() => c.data_mut().alloc_bytes(&b).ok_or_else(|| {
                        wasmtime::Error::msg(format!(
                            "{USER_NAMESPACE}::{}: the guest's memory limit leaves no room for a {}-byte result",
                            f.name,
                            b.len()
                        ))
                    })?,
                    _ => 0,
                };
                results[0] = Val::I64(handle as i64);
                Ok(())
            })
        })?;
    }
    Ok(())
}
