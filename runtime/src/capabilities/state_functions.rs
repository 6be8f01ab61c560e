//! The `state` capability's host functions: each reads its JSON argument,
//! runs one [`StateStore`] operation in the calling plugin's namespace (the
//! handle its guest context keeps) and answers JSON.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::super::args::{argument, parse, to_json};
use super::super::{Capability, CapabilitySpec, GrantContext, GrantValue, parse_flag};
use super::{Ns, StateStore};
use crate::capabilities::GuestContext;
use crate::wasm::{HostError, HostFunction, HostState, ResultEncoding};

/// The `state` capability.
pub(in crate::capabilities) struct StateSpec;

impl CapabilitySpec for StateSpec {
    fn capability(&self) -> Capability {
        Capability::STATE
    }

    fn syntax(&self) -> &'static str {
        "\"state\": true"
    }

    fn parse(&self, declared: &Value, _: &GrantContext<'_>) -> Result<Option<GrantValue>, String> {
        parse_flag(declared)
    }

    fn host_functions(&self) -> Vec<HostFunction> {
        vec![
            function("state_get", |store, ns, input| {
                let req: KeyReq = parse(input)?;
                to_json(store.get(ns, &req.key).map(|e| e.value_and_version()))
            }),
            function("state_set", |store, ns, input| {
                let req: SetReq = parse(input)?;
                let version = store.set(ns, &req.key, req.value, ttl(req.ttl_ms))?;
                to_json(Answer {
                    version,
                    ..Answer::default()
                })
            }),
            function("state_delete", |store, ns, input| {
                let req: KeyReq = parse(input)?;
                to_json(store.delete(ns, &req.key))
            }),
            function("state_list", |store, ns, input| {
                let req: ListReq = parse(input)?;
                let limit = req.limit.unwrap_or(1000).min(10_000);
                to_json(store.list(ns, req.prefix.as_deref().unwrap_or(""), limit))
            }),
            function("state_cas", |store, ns, input| {
                let req: CasReq = parse(input)?;
                let (swapped, version) = store.compare_and_swap(
                    ns,
                    &req.key,
                    req.version,
                    req.value,
                    ttl(req.ttl_ms),
                )?;
                to_json(Answer {
                    swapped: Some(swapped),
                    version,
                    ..Answer::default()
                })
            }),
            function("state_incr", |store, ns, input| {
                let req: IncrReq = parse(input)?;
                let (value, version) =
                    store.increment(ns, &req.key, req.by.unwrap_or(1), ttl(req.ttl_ms))?;
                to_json(Answer {
                    value: Some(value),
                    version,
                    ..Answer::default()
                })
            }),
            function("state_take", |store, ns, input| {
                let req: TakeReq = parse(input)?;
                to_json(store.take(
                    ns,
                    &req.key,
                    req.capacity,
                    Duration::from_millis(req.window_ms),
                    req.cost.unwrap_or(1),
                )?)
            }),
            // The counter and the bucket without JSON or blocks: the key is
            // read from the guest's memory and the answer written there.
            HostFunction::new_memory(
                "state_incr_into",
                Capability::STATE,
                5,
                |state, memory, args| {
                    let [key, key_len, by, ttl_ms, out] = arity(args)?;
                    memory.check(out, 8)?;
                    let cx = GuestContext::of_ref(state)?;
                    let (value, _) = cx.host.state.increment(
                        &cx.state,
                        memory.str(key, key_len)?,
                        by as i64,
                        ttl(Some(ttl_ms).filter(|&ms| (ms as i64) > 0)),
                    )?;
                    memory.write(out, &value.to_le_bytes())?;
                    Ok(None)
                },
            ),
            HostFunction::new_memory(
                "state_take_into",
                Capability::STATE,
                6,
                |state, memory, args| {
                    let [key, key_len, capacity, window_ms, cost, out] = arity(args)?;
                    memory.check(out, 32)?;
                    let cx = GuestContext::of_ref(state)?;
                    let taken = cx.host.state.take(
                        &cx.state,
                        memory.str(key, key_len)?,
                        capacity,
                        Duration::from_millis(window_ms),
                        cost,
                    )?;
                    let mut answer = [0u8; 32];
                    let fields = [
                        u64::from(taken.allowed),
                        taken.remaining,
                        taken.reset_ms,
                        taken.retry_after_ms,
                    ];
                    for (slot, v) in answer.chunks_exact_mut(8).zip(fields) {
                        slot.copy_from_slice(&v.to_le_bytes());
                    }
                    memory.write(out, &answer)?;
                    Ok(None)
                },
            ),
        ]
    }
}

/// The answers of `state_set` (`version`), `state_cas` (`swapped`,
/// `version`) and `state_incr` (`value`, `version`), written without a map
/// built per call.
#[derive(Default, Serialize)]
struct Answer {
    #[serde(skip_serializing_if = "Option::is_none")]
    swapped: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<i64>,
    version: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyReq {
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SetReq {
    key: String,
    value: Value,
    ttl_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListReq {
    prefix: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CasReq {
    key: String,
    version: u64,
    value: Value,
    ttl_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IncrReq {
    key: String,
    by: Option<i64>,
    ttl_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TakeReq {
    key: String,
    capacity: u64,
    window_ms: u64,
    cost: Option<u64>,
}

/// The arguments of a function linked with `N` parameters (the linker
/// passes exactly that many).
fn arity<const N: usize>(args: &[u64]) -> Result<[u64; N], HostError> {
    args.try_into().map_err(|_| {
        HostError::new(
            "internal",
            format!("{} arguments, expected {N}", args.len()),
        )
    })
}

fn ttl(ms: Option<u64>) -> Option<Duration> {
    ms.filter(|&ms| ms > 0).map(Duration::from_millis)
}

/// One state operation: the store, the caller's namespace, the JSON argument.
type StateOp = fn(&StateStore, Ns<'_>, &[u8]) -> Result<Option<Vec<u8>>, HostError>;

/// A `state_*` host function: reads its JSON argument and the caller's
/// namespace, runs `op` synchronously (no I/O, a short critical section).
fn function(name: &'static str, op: StateOp) -> HostFunction {
    HostFunction::new_sync(
        name,
        Capability::STATE,
        1,
        ResultEncoding::Envelope,
        move |state: &mut HostState, args| {
            let cx = GuestContext::of_ref(state)?;
            let input = argument(state, args[0])?;
            op(&cx.host.state, (&cx.state).into(), input)
        },
    )
}
