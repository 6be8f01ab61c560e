//! When a guest call may run without a fiber, and what keeps that safe.
//!
//! A fiber lets host functions await I/O in the middle of a guest call, and
//! lets a busy guest yield at each epoch tick. Entering and leaving one is
//! also most of what a short call costs. So a call runs directly on the
//! caller's stack (`TypedFunc::call`) when all of these hold:
//!
//! - the module imports no host function that waits (no `http_request`, no
//!   WASI function outside `abi::wasi::SYNC_FUNCTIONS`, no Buntime function
//!   registered with [`super::HostFunction::new`]), so the guest can never
//!   need to suspend;
//! - no earlier call of the module kept running a whole epoch tick past
//!   its first epoch check ([`SlowGuests`]):
//!   a guest known to compute for long goes back to the fiber, where it
//!   yields its tokio worker at every tick. Only a module's first long call
//!   holds its worker for its whole run, like any CPU-bound request;
//! - the caller is not itself inside a host function on some guest's fiber
//!   ([`InHostCall`]), because a guest call there would run on that fiber's
//!   small stack.
//!
//! The deadline is enforced the same way on both paths: the epoch check traps
//! the guest once its deadline has passed.
//!
//! A direct call cannot yield, so while it runs it holds its tokio worker.
//! One long call of a module not yet known to be slow is allowed to; but if
//! every worker were held that way (concurrent first calls of a guest that
//! loops, or of several slow guests) nothing else — health checks, static
//! files, the shutdown signal — would run until their deadlines. So
//! [`LongDirectCalls`] lets at most one worker fewer than the runtime has
//! be held by direct calls past their first tick; a call that would take
//! the last one is stopped ([`super::CallError::Preempted`]), and its
//! module, now known to be slow, runs on the fiber from then on.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use wasmtime::Store;

use super::module::GuestModule;
use super::state::HostState;

thread_local! {
    /// Host-function futures being polled on this thread right now.
    static HOST_CALL_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Whether this thread may run a guest call without a fiber now.
pub(crate) fn stack_allows() -> bool {
    HOST_CALL_DEPTH.with(|d| d.get() == 0)
}

/// A host function's future, marked while it is polled so that guest calls
/// it makes (e.g. `services_call`) take the fiber path.
pub(crate) struct InHostCall<F: ?Sized>(pub(crate) Pin<Box<F>>);

impl<F: Future + ?Sized> Future for InHostCall<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        struct Depth;
        impl Drop for Depth {
            fn drop(&mut self) {
                HOST_CALL_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
            }
        }
        HOST_CALL_DEPTH.with(|d| d.set(d.get() + 1));
        let _depth = Depth;
        self.0.as_mut().poll(cx)
    }
}

/// Per module: whether a direct call ever ran past one epoch tick.
#[derive(Debug, Default)]
pub(crate) struct SlowGuests(AtomicBool);

impl SlowGuests {
    /// Whether the module is known to compute for long.
    pub(crate) fn is_slow(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Remembers that a direct call ran past a tick.
    pub(crate) fn mark_slow(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Direct calls, engine-wide, that have run past a tick and so hold their
/// worker thread for long.
#[derive(Debug, Default)]
pub(crate) struct LongDirectCalls(AtomicUsize);

impl LongDirectCalls {
    /// Counts one more long direct call, unless the runtime's workers would
    /// then all be held: `false`, and the caller must stop the call.
    pub(crate) fn try_enter(&self) -> bool {
        let budget = long_call_budget();
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < budget).then_some(n + 1)
            })
            .is_ok()
    }

    /// A long direct call ended.
    pub(crate) fn leave(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How many workers long direct calls may hold: all but one of the current
/// runtime's, and at least one (a single-threaded runtime has nothing to
/// keep free, and its one call must be able to run).
fn long_call_budget() -> usize {
    tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_workers())
        .unwrap_or(1)
        .saturating_sub(1)
        .max(1)
}

/// The epoch check of a direct call that has not reached its deadline:
/// counts the check and, the moment the call turns long, claims one of the
/// long-call places. `false`: none is left, stop the call.
pub(crate) fn on_direct_tick(state: &mut HostState) -> bool {
    if std::mem::take(&mut state.returned_from_blocking) {
        return true;
    }
    state.ticks_past = state.ticks_past.saturating_add(1);
    if state.ticks_past < SLOW_AFTER_CHECKS || state.long_direct {
        return true;
    }
    if state.shared.long_direct.try_enter() {
        state.long_direct = true;
        hand_off_worker();
        true
    } else {
        state.preempted = true;
        false
    }
}

/// Whether this thread runs in a multi-thread tokio runtime, the one kind
/// where `block_in_place` may hand the worker on.
fn on_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// See [`HostState::block_off_worker`].
pub(crate) fn block_off_worker<T>(state: &mut HostState, work: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = if on_multi_thread_runtime() {
        tokio::task::block_in_place(work)
    } else {
        work()
    };
    // Only a hold of a tick or more is discounted: the worker's core has
    // then moved to another thread (`block_in_place` hands it over at
    // once), and a guest cannot dodge the count with quick calls between
    // bursts of its own computing.
    if state.direct && started.elapsed() >= state.shared.ticker.clock().tick() {
        state.returned_from_blocking = true;
    }
    out
}

/// Gives this thread's tokio worker — its queued tasks and the I/O it
/// drives — to another thread, so that a call about to hold this thread for
/// long strands nothing behind it.
fn hand_off_worker() {
    if on_multi_thread_runtime() {
        // `block_in_place` gives the worker's core to a new thread, but takes
        // it back when the closure returns if that thread has not picked it
        // up yet; a millisecond lets it, on a call already ten long.
        tokio::task::block_in_place(|| std::thread::sleep(std::time::Duration::from_millis(1)));
    }
}

/// How many epoch checks a direct call must meet before its module counts
/// as slow. One is not enough: a call that the OS deschedules for a few
/// milliseconds (two busy threads per core under load) meets one check as
/// soon as it runs again, however short it is, and would send a fast module
/// to the fiber for good. A second check needs another whole tick of running.
const SLOW_AFTER_CHECKS: u8 = 2;

/// Runs `call` (a guest call or an instantiation) on this thread's stack,
/// without a fiber. The first epoch check comes two ticks out and each later
/// one a tick after the last, so only a call that kept running for a whole
/// tick after its first check marks the module slow.
pub(crate) fn run_direct<R>(
    store: &mut Store<HostState>,
    module: &GuestModule,
    call: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    store.data_mut().direct = true;
    store.set_epoch_deadline(2);
    let result = call(store);
    let state = store.data_mut();
    state.direct = false;
    state.returned_from_blocking = false;
    if std::mem::take(&mut state.long_direct) {
        state.shared.long_direct.leave();
    }
    if std::mem::take(&mut state.ticks_past) >= SLOW_AFTER_CHECKS {
        module.mark_slow();
    }
    result
}
