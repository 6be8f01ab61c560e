//! Per-instance host state: what the `extism:host/env` functions work on.
//!
//! One [`HostState`] lives in each wasmtime `Store`. It holds the memory-block
//! arena, the current call's input, output and error, the guest's config and
//! vars, the last outbound HTTP response's status and headers, resource limits,
//! the guest's grants, and a typed map of call-scoped extensions that Buntime's
//! own host functions use (for example the HTTP request body of an app call).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wasmtime::{ResourceLimiter, StoreLimits};

use super::arena::Arena;
use super::engine::EngineShared;
use super::options::{GuestData, GuestOptions};
use crate::grants::{Capability, Denial, Grants};

/// Where the output of the current call lives in the arena.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OutputRange {
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// Store data for one guest instance.
pub struct HostState {
    pub(crate) arena: Arena,
    pub(crate) input: Bytes,
    /// Arena copy of `input`, made the first time the guest reads the input
    /// (`Some(0)`: it did not fit).
    pub(crate) input_handle: Option<u64>,
    pub(crate) output: OutputRange,
    pub(crate) error: u64,
    /// The guest's exported `memory`, once a host function needed it.
    pub(crate) memory: Option<wasmtime::Memory>,
    pub(crate) config: Arc<BTreeMap<String, String>>,
    pub(crate) vars: HashMap<String, Vec<u8>>,
    pub(crate) max_var_bytes: usize,
    pub(crate) http_status: u16,
    pub(crate) http_headers: BTreeMap<String, String>,
    pub(crate) max_http_response_bytes: u64,
    pub(crate) limits: MemoryLimiter,
    pub(crate) grants: Arc<Grants>,
    pub(crate) deadline: Option<Instant>,
    /// The current call runs without a fiber (it cannot yield).
    pub(crate) direct: bool,
    /// Epoch checks the current direct call has met past its first deadline.
    pub(crate) ticks_past: u8,
    /// The current direct call counts in [`super::sync_call::LongDirectCalls`].
    pub(crate) long_direct: bool,
    /// The current direct call was stopped to keep a worker thread free.
    pub(crate) preempted: bool,
    /// The current direct call just came back from a host function that
    /// held it off its worker for a tick or more
    /// ([`HostState::block_off_worker`]): the epoch check that follows
    /// measured the host's time, not the guest's, and is not counted.
    pub(crate) returned_from_blocking: bool,
    pub(crate) guest_name: Arc<str>,
    pub(crate) wasi: Option<wasmtime_wasi::p1::WasiP1Ctx>,
    pub(crate) shared: Arc<EngineShared>,
    pub(crate) context: Option<GuestData>,
    pub(crate) log_requires_grant: bool,
    pub(crate) log_limiter: LogLimiter,
    /// Call-scoped values for Buntime's host functions, cleared after each call.
    pub extensions: http::Extensions,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("guest", &self.guest_name)
            .field("arena_bytes", &self.arena.size())
            .field("vars", &self.vars.len())
            .finish_non_exhaustive()
    }
}

impl HostState {
    /// Runs `work`, which blocks this thread (database or file work), for a
    /// sync host function ([`super::HostFunction::new_sync`]): on a
    /// multi-thread runtime after `tokio::task::block_in_place` has handed
    /// the worker's other tasks to another thread, elsewhere simply here.
    ///
    /// A guest called without a fiber meets an epoch check right after a
    /// host function that held it for a tick or more; that check measured
    /// the host's time, so it does not count towards the call turning long
    /// (`sync_call.rs`). A guest making several slow calls is thus not
    /// stopped to keep a worker free: its worker was free meanwhile.
    ///
    /// ```no_run
    /// use buntime::wasm::{HostFunction, ResultEncoding};
    /// let scan = HostFunction::ungated_sync("scan", 0, ResultEncoding::Raw, |state, _| {
    ///     let n = state.block_off_worker(|| std::fs::read_dir("/tmp").map(|d| d.count()).unwrap_or(0));
    ///     Ok(Some(n.to_string().into_bytes()))
    /// });
    /// ```
    pub fn block_off_worker<T>(&mut self, work: impl FnOnce() -> T) -> T {
        super::sync_call::block_off_worker(self, work)
    }

    pub(crate) fn new(
        options: &GuestOptions,
        guest_name: Arc<str>,
        shared: Arc<EngineShared>,
        wasi: bool,
    ) -> Self {
        let memory_limit = options.memory_limit;
        Self {
            arena: Arena::new(memory_limit),
            input: Bytes::new(),
            input_handle: None,
            output: OutputRange::default(),
            error: 0,
            memory: None,
            config: options.config.clone(),
            vars: HashMap::new(),
            max_var_bytes: options.max_var_bytes,
            http_status: 0,
            http_headers: BTreeMap::new(),
            max_http_response_bytes: options.max_http_response_bytes,
            limits: MemoryLimiter::new(memory_limit),
            grants: options.grants.clone(),
            deadline: None,
            direct: false,
            ticks_past: 0,
            long_direct: false,
            returned_from_blocking: false,
            preempted: false,
            guest_name,
            wasi: wasi.then(|| {
                wasmtime_wasi::WasiCtxBuilder::new()
                    .wall_clock(shared.guest_clock.wasi())
                    .build_p1()
            }),
            shared,
            context: options.context.clone(),
            log_requires_grant: options.log_requires_grant,
            log_limiter: LogLimiter::new(options.log_rate),
            extensions: http::Extensions::new(),
        }
    }

    /// The guest's name, for logs and errors.
    pub fn guest_name(&self) -> &str {
        &self.guest_name
    }

    /// The guest's grants.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// The data attached with [`GuestOptions::context`], if it is a `T`.
    pub fn context<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.context.clone()?.downcast::<T>().ok()
    }

    /// The data attached with [`GuestOptions::context`], borrowed: what a
    /// host function that only reads it uses (no reference count touched,
    /// as [`Self::context`] does, on a path taken per call).
    pub fn context_ref<T: std::any::Any + Send + Sync>(&self) -> Option<&T> {
        self.context.as_deref()?.downcast_ref::<T>()
    }

    /// Refuses a call that its grant does not cover, from inside the host
    /// function (`function`, its name in `extism:host/user`): the [`Denial`]
    /// says what exactly was refused (`detail`) and the manifest entry that
    /// would allow it (`hint`); it is logged and counted like the engine's
    /// own denials, and reaches the guest as `capability_denied`.
    pub fn deny(
        &self,
        capability: Capability,
        function: &str,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> super::HostError {
        self.denial(capability, function, detail.into(), hint.into())
            .into()
    }

    /// [`HostState::deny`]'s [`Denial`] itself, logged and counted (the
    /// engine's grant check returns it as it is).
    pub(crate) fn denial(
        &self,
        capability: Capability,
        function: &str,
        detail: String,
        hint: String,
    ) -> Denial {
        self.shared.stats.record_denial(capability.name());
        self.grants.counts.denials.add(capability.index(), 1);
        let denial = super::host_fn::user_denial(capability, function, detail, hint);
        tracing::warn!(guest = %self.guest_name, capability = capability.name(), function, "{denial}");
        denial
    }

    /// Counts refusals of `capability` found away from the store (on the
    /// blocking pool), as [`HostState::deny`] does.
    pub(crate) fn denial_counter(&self, capability: Capability) -> impl Fn() + Send + 'static {
        let shared = self.shared.clone();
        let counts = self.grants.counts.clone();
        let guest = self.guest_name.clone();
        move || {
            shared.stats.record_denial(capability.name());
            counts.denials.add(capability.index(), 1);
            tracing::warn!(guest = %guest, capability = capability.name(), "capability denied");
        }
    }

    /// The bytes of the memory block at `handle`.
    pub fn block(&self, handle: u64) -> Result<&[u8], super::arena::ArenaError> {
        self.arena.block(handle)
    }

    /// Time left before this call's deadline, if it has one.
    pub fn time_remaining(&self) -> Option<std::time::Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Prepares for a new call: clears the arena, output, error, the last HTTP
    /// response's status and headers, and the memory-growth flag. (Extensions
    /// are swapped in and out by [`super::GuestInstance::call_with`].)
    pub(crate) fn begin_call(&mut self, input: Bytes, deadline: Option<Instant>) {
        self.arena.reset();
        self.input = input;
        self.input_handle = None;
        self.output = OutputRange::default();
        self.error = 0;
        self.deadline = deadline;
        self.http_status = 0;
        // Most calls set no header: clearing an empty map is not free.
        if !self.http_headers.is_empty() {
            self.http_headers.clear();
        }
        self.limits.denied_growth = false;
    }
}

/// The token bucket of an instance's log lines: it holds up to `burst`
/// tokens, refills at `per_second`, and each line takes one.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    per_second: f64,
    burst: f64,
    tokens: f64,
    /// When the bucket was last refilled (`None` before the first line).
    last: Option<Instant>,
    /// Lines dropped since the last one written.
    pub(crate) dropped: u64,
}

impl LogLimiter {
    fn new((per_second, burst): (u32, u32)) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: None,
            dropped: 0,
        }
    }

    /// Whether a line may be written now; a refused line is counted in
    /// `dropped`.
    pub(crate) fn admit(&mut self) -> bool {
        if self.per_second == 0.0 {
            return true;
        }
        let now = Instant::now();
        if let Some(last) = self.last {
            let refill = now.duration_since(last).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

/// Caps linear memory growth at a per-instance limit.
///
/// Growth beyond the limit makes `memory.grow` return -1, so a guest that
/// checks can recover; the Rust and C allocators turn it into a trap. The
/// memory-block arena is capped at the same limit separately.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limits: StoreLimits,
    pub(crate) denied_growth: bool,
}

impl MemoryLimiter {
    fn new(memory_limit: usize) -> Self {
        Self {
            limits: wasmtime::StoreLimitsBuilder::new()
                .memory_size(memory_limit)
                .instances(4)
                .tables(8)
                .memories(2)
                .build(),
            denied_growth: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.limits.memory_growing(current, desired, maximum)?;
        if !ok {
            self.denied_growth = true;
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
