//! A plugin's warm instances.
//!
//! Hooks run on interchangeable instances: at most `limits.instances` of
//! them exist, so at most that many calls run at once, and idle ones are
//! reused LIFO so a steady load touches few of them. A trapped or timed-out
//! instance is dropped, never reused. [`InstancePool::drain`] waits for every
//! in-flight call to finish, which is how a reload swaps plugins without
//! cutting a request short.
//!
//! Idle instances wait in per-thread lists ([`IdleLists`]), so a
//! pass-through hook, a few hundred nanoseconds of work, runs on a store in
//! its core's cache and touches no cache line the other cores write. Only
//! creating or discarding an instance changes the shared count; callers that
//! find every instance busy wait on a [`Notify`], woken one per returned
//! instance.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::idle_lists::IdleLists;
use crate::metrics::GuestCostStats;
use crate::wasm::{CallError, CallOutput, GuestInstance, GuestModule};

/// How long a call may wait for a free instance before it fails as busy.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Why no instance was handed out.
enum Refused {
    Closed,
    Full,
}

/// Instances of one plugin.
#[derive(Debug)]
pub struct InstancePool {
    module: GuestModule,
    /// Boxed: a call's future holds the instance across its await, and
    /// every future around it (the hook call, the chain's pass) is built
    /// by moving it; held inline, its bytes were copied at each level of
    /// every hook call.
    idle: IdleLists<Box<GuestInstance>>,
    /// Instances that exist (idle or running a call), at most `size`.
    live: AtomicU32,
    /// Calls waiting for a free instance.
    waiting: AtomicU32,
    /// Drained: no more calls.
    closed: AtomicBool,
    /// A call finished (an instance or a slot is free again).
    freed: Notify,
    size: u32,
    /// Instances created.
    pub created: AtomicU64,
    /// Instances discarded after a trap or timeout.
    pub discarded: AtomicU64,
}

impl InstancePool {
    /// A pool of at most `size` concurrent instances of `module`.
    pub fn new(module: GuestModule, size: usize) -> Self {
        Self {
            module,
            idle: Default::default(),
            live: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            freed: Notify::new(),
            size: size.clamp(1, 1024) as u32,
            created: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        }
    }

    /// The module.
    pub fn module(&self) -> &GuestModule {
        &self.module
    }

    /// Calls currently running.
    pub fn in_flight(&self) -> usize {
        (self.live.load(Ordering::SeqCst) as usize).saturating_sub(self.idle())
    }

    /// Warm idle instances.
    pub fn idle(&self) -> usize {
        self.idle.len()
    }

    /// Takes an idle instance, or reserves room for a new one (`Ok(None)`).
    /// When every instance is busy and `queue` is set, the caller is counted
    /// as waiting before the final look, so a release that follows wakes it.
    fn try_take(&self, queue: bool) -> Result<Option<Box<GuestInstance>>, Refused> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Refused::Closed);
        }
        let taken = self.take_or_reserve(queue)?;
        // Looked at again after taking: a drain that began meanwhile either
        // counts this call as in flight or is seen here, never neither.
        if self.closed.load(Ordering::SeqCst) {
            self.give_back(taken);
            return Err(Refused::Closed);
        }
        Ok(taken)
    }

    fn take_or_reserve(&self, queue: bool) -> Result<Option<Box<GuestInstance>>, Refused> {
        if let Some(instance) = self.idle.pop() {
            return Ok(Some(instance));
        }
        let reserved = self
            .live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.size).then_some(n + 1)
            });
        if reserved.is_ok() {
            return Ok(None);
        }
        if queue {
            self.waiting.fetch_add(1, Ordering::SeqCst);
        }
        // An instance given back between the first look and the count above
        // did not see this caller waiting; look again.
        match self.idle.pop() {
            Some(instance) => {
                if queue {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                }
                Ok(Some(instance))
            }
            None => Err(Refused::Full),
        }
    }

    /// Waits (up to [`QUEUE_WAIT`]) for an instance; the caller is already
    /// counted in `waiting`, and stops being counted however this ends —
    /// dropped mid-wait (a client that went away) included.
    async fn take_waiting(&self) -> Result<Option<Box<GuestInstance>>, CallError> {
        let mut waiter = Waiter {
            pool: self,
            served: false,
        };
        let deadline = tokio::time::Instant::now() + QUEUE_WAIT;
        let result = loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release in between wakes it.
            freed.as_mut().enable();
            match self.try_take(false) {
                Ok(instance) => break Ok(instance),
                Err(Refused::Closed) => break Err(CallError::Draining),
                Err(Refused::Full) => {}
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                break Err(CallError::Busy(QUEUE_WAIT));
            }
        };
        waiter.served = result.is_ok();
        result
    }

    /// Ends a call: the instance goes back to this thread's idle list if it
    /// may be reused, else its room is freed.
    fn give_back(&self, instance: Option<Box<GuestInstance>>) {
        match instance {
            Some(i) => self.idle.push(i),
            None => {
                self.live.fetch_sub(1, Ordering::SeqCst);
            }
        }
        // One instance freed, one waiter woken (a drain waits here too); a
        // waiter that cannot use it passes the wake-up on.
        if self.waiting.load(Ordering::SeqCst) > 0 || self.closed.load(Ordering::SeqCst) {
            self.freed.notify_one();
        }
    }

    /// Runs `export` on a free instance; with `cost`, records the call's
    /// time on the instance and the instance's memory after it.
    pub async fn call(
        &self,
        export: &str,
        input: Bytes,
        extensions: http::Extensions,
        cost: Option<&GuestCostStats>,
    ) -> (Result<CallOutput, CallError>, http::Extensions) {
        // The common case takes a free slot without arming a timer. The
        // rare paths (waiting, instantiating) are boxed so that their
        // futures do not enlarge — and get copied with — every call's.
        let taken = match self.try_take(true) {
            Ok(instance) => Ok(instance),
            Err(Refused::Closed) => Err(CallError::Draining),
            Err(Refused::Full) => {
                // Boxed in a statement of its own: a temporary of the
                // statement that awaits lives across the await, and so in
                // this future's state, boxed or not.
                let waiting = Box::pin(self.take_waiting());
                waiting.await
            }
        };
        let idle = match taken {
            Ok(idle) => idle,
            Err(e) => return (Err(e), extensions),
        };
        // From here the call holds one of the `live` places until it gives
        // its instance back; if this future is dropped first (mid
        // instantiation or mid call), the lease frees the place.
        let lease = Lease { pool: self };
        let mut instance = match idle {
            Some(i) => i,
            None => {
                let instantiate = Box::pin(self.module.instantiate());
                match instantiate.await {
                    Ok(i) => {
                        self.created.fetch_add(1, Ordering::Relaxed);
                        Box::new(i)
                    }
                    Err(e) => return (Err(e), extensions),
                }
            }
        };
        let started = cost.map(|_| Instant::now());
        let (result, extensions) = instance.call_with(export, input, extensions).await;
        if let (Some(cost), Some(started)) = (cost, started) {
            cost.record(started.elapsed(), instance.memory_bytes());
        }
        if instance.is_poisoned() {
            self.discarded.fetch_add(1, Ordering::Relaxed);
        } else {
            lease.give_back(instance);
        }
        (result, extensions)
    }

    /// Stops new calls, waits (up to `grace`) for running ones, and returns
    /// one healthy instance for a last call such as `on_shutdown`.
    pub async fn drain(&self, grace: Duration) -> Option<GuestInstance> {
        let deadline = tokio::time::Instant::now() + grace;
        self.closed.store(true, Ordering::SeqCst);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.in_flight() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                break;
            }
        }
        let idle = self.idle.take_all();
        self.live.fetch_sub(idle.len() as u32, Ordering::SeqCst);
        let last = idle.into_iter().next().map(|i| *i);
        // Calls still waiting see `closed` and give up.
        self.freed.notify_waiters();
        last
    }
}

/// A call's claim on one of the pool's `live` places. Given back with its
/// instance when the call ends well; dropped otherwise — a failed
/// instantiation, a discarded instance, or a caller that stopped waiting
/// (its future dropped) — which frees the place and wakes a waiter.
struct Lease<'a> {
    pool: &'a InstancePool,
}

impl Lease<'_> {
    fn give_back(self, instance: Box<GuestInstance>) {
        self.pool.give_back(Some(instance));
        std::mem::forget(self);
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.pool.give_back(None);
    }
}

/// A caller counted in `waiting`; uncounted when it stops waiting, however
/// that happens. A wake-up it consumed without being served goes on to the
/// next waiter.
struct Waiter<'a> {
    pool: &'a InstancePool,
    served: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.pool.waiting.fetch_sub(1, Ordering::SeqCst);
        if !self.served {
            self.pool.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::wasm::{Engine, EngineConfig, GuestOptions};

    /// A pool of at most `size` instances of a module whose `noop` export
    /// does nothing.
    fn pool(size: usize) -> Arc<InstancePool> {
        let engine = Engine::new(EngineConfig {
            slots: Some(8),
            ..EngineConfig::default()
        })
        .expect("engine");
        let module = engine
            .load(
                br#"(module (memory (export "memory") 1) (func (export "noop")))"#,
                GuestOptions::new("pool-test"),
            )
            .expect("module");
        Arc::new(InstancePool::new(module, size))
    }

    async fn noop(pool: &InstancePool) -> Result<CallOutput, CallError> {
        pool.call("noop", Bytes::new(), http::Extensions::new(), None)
            .await
            .0
    }

    /// Polls until `read` gives `want` (a waiter registers on another
    /// task), by deadline rather than by a count of tries: on a loaded
    /// machine each try can take long. Only a failing test waits the whole
    /// 10 s, and says what it last read.
    async fn until<T: PartialEq + std::fmt::Debug>(what: &str, want: T, read: impl Fn() -> T) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = read();
            if seen == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: {want:?} awaited for 10 s, still {seen:?}"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn sequential_calls_reuse_one_instance() {
        let pool = pool(4);
        for _ in 0..5 {
            noop(&pool).await.expect("call");
        }
        assert_eq!(pool.created.load(Ordering::Relaxed), 1);
        assert_eq!(pool.idle(), 1);
        assert_eq!(pool.in_flight(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_waits_for_the_only_instance_and_gets_it_when_released() {
        let pool = pool(1);
        noop(&pool).await.expect("first call creates the instance");
        // Hold the only instance, as a call in progress does.
        let held = pool
            .try_take(true)
            .ok()
            .flatten()
            .expect("the idle instance");
        assert_eq!(pool.in_flight(), 1);
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { noop(&pool).await }
        });
        until("callers waiting", 1, || pool.waiting.load(Ordering::SeqCst)).await;
        assert!(!waiter.is_finished(), "at most one instance runs at once");
        pool.give_back(Some(held));
        waiter
            .await
            .expect("join")
            .expect("served by the released instance");
        assert_eq!(pool.waiting.load(Ordering::SeqCst), 0);
        assert_eq!(
            pool.created.load(Ordering::Relaxed),
            1,
            "no second instance"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_that_goes_away_is_uncounted_and_passes_its_wake_up_on() {
        let pool = pool(1);
        noop(&pool).await.expect("first call");
        let held = pool.try_take(true).ok().flatten().expect("instance");
        let gone = tokio::spawn({
            let pool = pool.clone();
            async move { noop(&pool).await }
        });
        until("callers waiting", 1, || pool.waiting.load(Ordering::SeqCst)).await;
        let patient = tokio::spawn({
            let pool = pool.clone();
            async move { noop(&pool).await }
        });
        until("callers waiting", 2, || pool.waiting.load(Ordering::SeqCst)).await;
        gone.abort();
        let aborted = gone.await.expect_err("the waiter cannot have been served");
        assert!(aborted.is_cancelled(), "{aborted:?}");
        until("callers waiting", 1, || pool.waiting.load(Ordering::SeqCst)).await;
        pool.give_back(Some(held));
        patient
            .await
            .expect("join")
            .expect("the remaining waiter is served");
        assert_eq!(pool.waiting.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_dropped_mid_call_frees_its_place() {
        let pool = pool(1);
        // Room reserved for a new instance, as a call about to instantiate.
        assert!(matches!(pool.try_take(true), Ok(None)));
        assert_eq!(pool.live.load(Ordering::SeqCst), 1);
        // Its future is dropped before the instance exists.
        drop(Lease { pool: &pool });
        assert_eq!(pool.live.load(Ordering::SeqCst), 0);
        noop(&pool).await.expect("the place is free again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drain_waits_for_calls_in_flight_then_refuses_new_ones() {
        let pool = pool(2);
        noop(&pool).await.expect("first call");
        let held = pool.try_take(true).ok().flatten().expect("instance");
        let drain = tokio::spawn({
            let pool = pool.clone();
            async move { pool.drain(Duration::from_secs(30)).await.is_some() }
        });
        until("the pool closed", true, || {
            pool.closed.load(Ordering::SeqCst)
        })
        .await;
        assert!(!drain.is_finished(), "a call is still in flight");
        assert!(
            matches!(noop(&pool).await, Err(CallError::Draining)),
            "a draining pool starts no new call"
        );
        pool.give_back(Some(held));
        assert!(
            drain.await.expect("join"),
            "the drain returns an instance for a last call"
        );
        assert_eq!(pool.live.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_waits_past_the_queue_limit_is_busy_not_a_timeout() {
        let pool = pool(1);
        noop(&pool).await.expect("first call");
        let _held = pool.try_take(true).ok().flatten().expect("instance");
        let waited = tokio::time::Instant::now();
        assert!(matches!(noop(&pool).await, Err(CallError::Busy(w)) if w == QUEUE_WAIT));
        assert!(waited.elapsed() >= QUEUE_WAIT);
        assert_eq!(pool.waiting.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_past_its_grace_returns_without_the_busy_instance() {
        let pool = pool(1);
        noop(&pool).await.expect("first call");
        let _held = pool.try_take(true).ok().flatten().expect("instance");
        assert!(pool.drain(Duration::from_secs(1)).await.is_none());
        assert_eq!(pool.in_flight(), 1);
    }
}
