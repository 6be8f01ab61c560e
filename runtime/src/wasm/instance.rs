//! One live guest instance and the call protocol of the Extism ABI.
//!
//! A call: reset the arena, hand over the input, arm the deadline, run the
//! export on a wasmtime fiber (so host functions may await I/O without
//! blocking a tokio worker), then read the output or the error the guest set.
//! A trap, timeout or memory overrun poisons the instance: it refuses further
//! calls and its owner must discard it. Nothing a guest does can panic the host.

use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::{Extern, Instance, Store, Trap, TypedFunc, UpdateDeadline};

use super::error::CallError;
use super::module::GuestModule;
use super::state::HostState;

/// Extra time granted past a deadline before an awaiting host call is
/// abandoned; the epoch check normally stops the guest well before this.
const DEADLINE_GRACE: Duration = Duration::from_millis(25);

/// The result of a successful call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutput {
    /// The export's return code (0 when it returns nothing).
    pub rc: i32,
    /// The bytes the guest set with `output_set`.
    pub output: Bytes,
}

/// A live instance of a [`GuestModule`].
///
/// ```no_run
/// # async fn demo(module: buntime::wasm::GuestModule) -> Result<(), buntime::wasm::CallError> {
/// let mut instance = module.instantiate().await?;
/// let out = instance.call("greet", "Buntime").await?;
/// assert_eq!(&out.output[..], b"Hello, Buntime!");
/// # Ok(()) }
/// ```
pub struct GuestInstance {
    store: Store<HostState>,
    instance: Instance,
    module: GuestModule,
    poisoned: bool,
    calls: u64,
    /// Export handles already looked up and type-checked, so a call does not
    /// re-check the signature. A handful per module, so a scan beats hashing;
    /// they are borrowed, not cloned, per call (cloning a `TypedFunc` bumps
    /// two reference counts in wasmtime's type registry).
    funcs: Vec<(Box<str>, Export)>,
    /// The exported `memory`, looked up once: its size is read after every
    /// call (cost accounting), where a lookup by name showed in profiles.
    memory: Option<wasmtime::Memory>,
}

/// A callable export, typed once.
enum Export {
    Unit(TypedFunc<(), ()>),
    Rc(TypedFunc<(), i32>),
}

impl std::fmt::Debug for GuestInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestInstance")
            .field("module", &self.module)
            .field("poisoned", &self.poisoned)
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

impl GuestInstance {
    pub(crate) fn new(
        mut store: Store<HostState>,
        instance: Instance,
        module: GuestModule,
    ) -> Self {
        let memory = match module
            .memory_export()
            .and_then(|e| instance.get_module_export(&mut store, e))
        {
            Some(Extern::Memory(m)) => Some(m),
            _ => None,
        };
        Self {
            store,
            instance,
            module,
            poisoned: false,
            calls: 0,
            funcs: Vec::new(),
            memory,
        }
    }

    /// Installs the deadline check, run by wasmtime at each epoch tick: trap
    /// once the call's deadline has passed, otherwise yield to the executor so
    /// a busy guest shares its tokio worker thread — or, in a direct call,
    /// which cannot yield, note that the guest computes for long.
    pub(crate) fn configure_store(store: &mut Store<HostState>) {
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            match state.deadline {
                Some(deadline) if Instant::now() >= deadline => Ok(UpdateDeadline::Interrupt),
                _ if state.direct => Ok(if super::sync_call::on_direct_tick(state) {
                    UpdateDeadline::Continue(1)
                } else {
                    UpdateDeadline::Interrupt
                }),
                _ => Ok(UpdateDeadline::Yield(1)),
            }
        });
    }

    /// Runs `call` without a fiber.
    fn run_direct<R>(
        &mut self,
        call: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> wasmtime::Result<R> {
        super::sync_call::run_direct(&mut self.store, &self.module, call)
    }

    /// The module this is an instance of.
    pub fn module(&self) -> &GuestModule {
        &self.module
    }

    /// Whether an earlier failure means this instance must be discarded.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Calls made on this instance so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Whether the instance exports `name`.
    pub fn has_export(&self, name: &str) -> bool {
        self.module.has_export(name)
    }

    /// Bytes of linear memory plus arena currently held (the arena's blocks
    /// and the host's bookkeeping of them, as counted against its limit).
    pub fn memory_bytes(&mut self) -> usize {
        let arena = self.store.data().arena.charged();
        let linear = self.memory.map_or(0, |m| m.data_size(&self.store));
        arena + linear
    }

    /// Runs the guest language's initializer, as the Extism runtime does.
    pub(crate) async fn initialize_runtime(&mut self) -> Result<(), CallError> {
        // Its type was checked when the module was loaded.
        let Some(Extern::Func(f)) = self
            .module
            .initializer()
            .and_then(|e| self.instance.get_module_export(&mut self.store, e))
        else {
            return Ok(());
        };
        let deadline = self.module.options().timeout.map(|t| Instant::now() + t);
        self.arm(deadline);
        let result = if self.module.runs_direct() {
            self.run_direct(|store| f.call(store, &[], &mut []))
        } else {
            f.call_async(&mut self.store, &[], &mut []).await
        };
        self.store.data_mut().deadline = None;
        if let Err(e) = result {
            self.poisoned = true;
            return Err(self.classify(e, false));
        }
        Ok(())
    }

    fn arm(&mut self, deadline: Option<Instant>) {
        if self.module.options().fuel.is_some() || self.store.data().shared.fuel {
            let fuel = self.module.options().fuel.unwrap_or(u64::MAX);
            let _ = self.store.set_fuel(fuel);
        }
        self.store.data_mut().deadline = deadline;
        self.store.set_epoch_deadline(1);
    }

    /// Calls the export `name` with `input`.
    pub async fn call(
        &mut self,
        name: &str,
        input: impl Into<Bytes>,
    ) -> Result<CallOutput, CallError> {
        self.call_with(name, input, http::Extensions::new()).await.0
    }

    /// Calls `name` with call-scoped `extensions` that Buntime's host functions
    /// read and write (for example [`super::abi::RequestBody`]); returns them
    /// after the call so the caller can take what the guest wrote.
    pub async fn call_with(
        &mut self,
        name: &str,
        input: impl Into<Bytes>,
        extensions: http::Extensions,
    ) -> (Result<CallOutput, CallError>, http::Extensions) {
        // Metering is asked for per call (see `cost.rs`): one lookup when not.
        let meter = extensions
            .get::<super::CostMeter>()
            .cloned()
            .map(|m| (m, Instant::now()));
        self.store.data_mut().extensions = extensions;
        let result = self.call_inner(name, input.into()).await;
        if let Some((meter, started)) = meter {
            let time = started.elapsed();
            meter.record(super::GuestCost {
                guest: self.store.data().guest_name.clone(),
                export: name.to_owned(),
                time,
                memory: self.memory_bytes(),
            });
        }
        (
            result,
            std::mem::take(&mut self.store.data_mut().extensions),
        )
    }

    async fn call_inner(&mut self, name: &str, input: Bytes) -> Result<CallOutput, CallError> {
        if self.poisoned {
            return Err(CallError::Discarded);
        }
        let index = match self.funcs.iter().position(|(n, _)| &**n == name) {
            Some(i) => i,
            None => self.export(name)?,
        };
        let timeout = self.module.options().timeout;
        let clock = self.store.data().shared.ticker.clock();
        let deadline = timeout.map(|t| clock.deadline_in(t));
        self.store.data_mut().begin_call(input, deadline);
        self.arm(deadline);
        self.calls += 1;

        let stats = &self.store.data().shared.stats;
        let func = &self.funcs[index].1;
        if self.module.runs_direct() {
            stats.direct_calls.add(1);
            let outcome =
                super::sync_call::run_direct(&mut self.store, &self.module, |store| match func {
                    Export::Unit(f) => f.call(store, ()).map(|()| 0),
                    Export::Rc(f) => f.call(store, ()),
                });
            return self.finish(outcome);
        }
        stats.fiber_calls.add(1);
        let store = &mut self.store;
        let timer = deadline.filter(|_| self.module.awaits());
        // Boxed: the fiber call and its timer are several times the size of
        // the rest of this future, and every caller's future embeds this one
        // (and is copied whole when created) — a cost the direct path, the
        // common one, would otherwise pay on every call.
        let outcome = Box::pin(async move {
            let call = async move {
                match func {
                    Export::Unit(f) => f.call_async(store, ()).await.map(|()| 0),
                    Export::Rc(f) => f.call_async(store, ()).await,
                }
            };
            // Pure computation is bounded by the epoch check; only a guest that
            // can park in an awaiting host call needs a timer as well.
            match timer {
                Some(d) => match tokio::time::timeout_at((d + DEADLINE_GRACE).into(), call).await {
                    Ok(r) => r,
                    // The guest was parked in an awaiting host call past its
                    // deadline; the fiber was dropped mid-call.
                    Err(_) => Err(wasmtime::Error::new(Trap::Interrupt)),
                },
                None => call.await,
            }
        })
        .await;
        self.finish(outcome)
    }

    /// Looks `name` up, checks it has an Extism export's type and caches the
    /// typed handle; returns its index in `funcs`.
    fn export(&mut self, name: &str) -> Result<usize, CallError> {
        let Some(n_results) = self.module.callable(name) else {
            return Err(match self.instance.get_func(&mut self.store, name) {
                Some(f) => CallError::NotFound(format!(
                    "{name} (has signature {:?}; Extism exports take no parameters and return at most one i32)",
                    f.ty(&self.store)
                )),
                None => CallError::NotFound(name.to_owned()),
            });
        };
        let f = self
            .instance
            .get_func(&mut self.store, name)
            .ok_or_else(|| CallError::NotFound(name.to_owned()))?;
        let typed = if n_results == 1 {
            f.typed::<(), i32>(&self.store).map(Export::Rc)
        } else {
            f.typed::<(), ()>(&self.store).map(Export::Unit)
        }
        .map_err(|e| CallError::NotFound(format!("{name}: {e}")))?;
        self.funcs.push((name.into(), typed));
        Ok(self.funcs.len() - 1)
    }

    /// Reads the call's output or error; `outcome` is the export's return
    /// code or its failure.
    fn finish(&mut self, outcome: wasmtime::Result<i32>) -> Result<CallOutput, CallError> {
        let (outcome, rc) = match outcome {
            Ok(rc) => (Ok(()), rc),
            Err(e) => (Err(e), 0),
        };
        let state = self.store.data_mut();
        // The input goes now, on the thread that made it and while its
        // buffer is in this core's cache: kept until the instance's next
        // call, its drop came a request later, often on another core, and
        // was most of what starting a call cost.
        state.input = Bytes::new();
        // Read the clock only for a failure: a success needs no deadline check.
        let deadline = state.deadline.take();
        let error_message = match state.error {
            0 => None,
            h => match state.arena.block(h) {
                Ok(bytes) if !bytes.is_empty() => Some(String::from_utf8_lossy(bytes).into_owned()),
                _ => None,
            },
        };
        match outcome {
            Ok(()) => {
                if let Some(message) = error_message {
                    return Err(CallError::Guest { rc, message });
                }
                let out = state.output;
                // `output_set` accepted only ranges inside the arena, which
                // never shrinks during a call.
                let output = if out.len == 0 {
                    Bytes::new()
                } else {
                    match state.arena.copy_out(out.offset, out.len) {
                        Some(b) => b,
                        None => {
                            return Err(CallError::Trap(format!(
                                "invalid output range: {} bytes at {}",
                                out.len, out.offset
                            )));
                        }
                    }
                };
                Ok(CallOutput { rc, output })
            }
            Err(e) => {
                if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                    let code = exit.0;
                    if code == 0 && error_message.is_none() {
                        let out = state.output;
                        let output = state
                            .arena
                            .copy_out(out.offset, out.len)
                            .unwrap_or_default();
                        return Ok(CallOutput { rc: 0, output });
                    }
                    self.poisoned = true;
                    return Err(match error_message {
                        Some(message) => CallError::Guest { rc: code, message },
                        None => CallError::Exit(code),
                    });
                }
                self.poisoned = true;
                let overran = deadline.is_some_and(|d| Instant::now() >= d);
                let err = self.classify(e, overran);
                // As in the Extism runtime: a message the guest set before
                // failing wins, with return code -1.
                Err(match error_message {
                    Some(message) => CallError::Guest { rc: -1, message },
                    None => err,
                })
            }
        }
    }

    /// Sorts a failure; `overran` says the deadline had passed, which makes a
    /// host call that gave up waiting (e.g. an HTTP request) a timeout too.
    fn classify(&mut self, e: wasmtime::Error, overran: bool) -> CallError {
        let trap = e.downcast_ref::<Trap>();
        let preempted = std::mem::take(&mut self.store.data_mut().preempted);
        let timed_out = matches!(trap, Some(Trap::Interrupt)) || (overran && trap.is_none());
        let stats = &self.store.data().shared.stats;
        let err = match trap {
            Some(Trap::Interrupt) if preempted => CallError::Preempted,
            _ if timed_out => {
                stats.timeouts.add(1);
                CallError::Timeout(self.module.options().timeout.unwrap_or_default())
            }
            Some(Trap::OutOfFuel) => CallError::OutOfFuel,
            _ if self.store.data().limits.denied_growth => CallError::OutOfMemory {
                limit: self.module.options().memory_limit,
            },
            Some(trap) => CallError::Trap(trap.to_string()),
            None => CallError::HostFunction(e.root_cause().to_string()),
        };
        if !matches!(err, CallError::Timeout(_) | CallError::Preempted) {
            stats.traps.add(1);
        }
        tracing::debug!(guest = %self.module.name(), error = %err, detail = %format!("{e:?}"), "guest call failed; discarding the instance");
        err
    }
}
