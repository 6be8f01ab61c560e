//! The instances of one app version: warm reuse, recycling, concurrency.
//!
//! `ttl: 0` apps get a fresh instance per request (ephemeral). Warm apps keep
//! idle instances for reuse; an instance is retired when its sliding TTL runs
//! out, after `maxRequests` requests, after any failure (a trapped or timed-out
//! instance is never reused), or when it has been idle for `idleTimeout`
//! (`on_idle`, then `on_terminate`). At most `maxConcurrency` instances run at
//! once; up to `maxQueue` requests wait for one, and beyond that the pool
//! answers "busy" (503 with `Retry-After`).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::capabilities::{EventBus, WORKER_SPAWN, WORKER_TERMINATE};
use crate::config::AppConfig;
use crate::counter::Counter;
use crate::telemetry::CallSpanFields;
use crate::wasm::{CallError, CallOutput, GuestInstance, GuestModule};

/// An idle warm instance.
#[derive(Debug)]
struct Idle {
    instance: GuestInstance,
    created: Instant,
    last_used: Instant,
    requests: u64,
}

/// One warm instance waiting for work, as `/_/stats` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleInstance {
    /// Requests it has served.
    pub requests: u64,
    /// Since it was created.
    pub age: Duration,
    /// Since its last request.
    pub idle: Duration,
}

/// Why the pool could not serve a request.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Every instance is busy and the queue is full.
    #[error("`{0}` is at its concurrency limit and its queue is full")]
    Busy(String),
    /// The guest failed.
    #[error(transparent)]
    Call(#[from] CallError),
}

/// Counters of one app version.
#[derive(Debug, Default)]
pub struct AppStats {
    /// Requests served (successfully or not).
    pub requests: Counter,
    /// Requests that failed in the guest.
    pub errors: Counter,
    /// Of the errors, calls stopped at their deadline.
    pub timeouts: Counter,
    /// Requests answered busy.
    pub rejected: Counter,
    /// Instances created.
    pub created: Counter,
    /// Instances retired normally (TTL, maxRequests, idle, eviction).
    pub retired: Counter,
    /// Instances discarded after a failure.
    pub failed: Counter,
    /// Of the retired, instances recycled after `maxRequests` requests.
    pub recycled: Counter,
    /// Reuses of a warm instance.
    pub hits: Counter,
    /// Requests that needed a new instance.
    pub misses: Counter,
    /// Latencies (the wait for an instance and the call); their sum is
    /// [`AppStats::latency_us`].
    pub duration: crate::metrics::Histogram,
    /// How long requests that found every instance busy waited for one
    /// (those that got one; a request served at once is not counted).
    pub queue_wait: crate::metrics::Histogram,
    /// Answered requests by method and status class, counted by the
    /// server once the response is built.
    pub responses: crate::metrics::RequestCounts,
    /// Time and memory of one call in [`crate::metrics::cost::COST_SAMPLE`],
    /// on the instance only.
    pub cost: crate::metrics::GuestCostStats,
}

impl AppStats {
    /// Sum of request latencies, in microseconds.
    pub fn latency_us(&self) -> u64 {
        self.duration.sum_nanos() / 1000
    }
}

/// The pool of one `name@version`.
#[derive(Debug)]
pub struct AppPool {
    key: String,
    module: GuestModule,
    config: AppConfig,
    /// Boxed: a call holds its instance across the guest call's await, and
    /// the futures around it are built by moving it (see `plugins::instances`).
    #[allow(
        clippy::vec_box,
        reason = "moved out of the list by pointer, not by value"
    )]
    idle: Mutex<Vec<Box<Idle>>>,
    slots: Semaphore,
    waiting: AtomicUsize,
    created_at: Instant,
    events: Option<EventBus>,
    /// What the spans of its calls are named and carry.
    span_fields: CallSpanFields,
    /// Counters.
    pub stats: AppStats,
}

impl AppPool {
    /// A pool for `module` run with `config`.
    pub fn new(key: String, module: GuestModule, config: AppConfig) -> Arc<Self> {
        Self::with_events(key, module, config, None)
    }

    /// Like [`AppPool::new`], publishing `worker_spawn` and `worker_terminate`
    /// on `events`.
    pub fn with_events(
        key: String,
        module: GuestModule,
        config: AppConfig,
        events: Option<EventBus>,
    ) -> Arc<Self> {
        let slots = Semaphore::new(config.max_concurrency);
        Arc::new(Self {
            span_fields: CallSpanFields::app(&key),
            key,
            module,
            config,
            idle: Mutex::new(Vec::new()),
            slots,
            waiting: AtomicUsize::new(0),
            created_at: Instant::now(),
            events,
            stats: AppStats::default(),
        })
    }

    /// `name@version`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What the spans of its calls are named and carry.
    pub(crate) fn span_fields(&self) -> &CallSpanFields {
        &self.span_fields
    }

    /// The app's compiled module.
    pub fn module(&self) -> &GuestModule {
        &self.module
    }

    /// The app's settings.
    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// Instances currently handling a request (or being created for one).
    pub fn active(&self) -> usize {
        self.config
            .max_concurrency
            .saturating_sub(self.slots.available_permits())
    }

    /// Requests waiting for an instance (at most `maxQueue`).
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Idle warm instances.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|i| i.len()).unwrap_or(0)
    }

    /// The idle warm instances, most recently used last.
    pub fn idle_instances(&self) -> Vec<IdleInstance> {
        self.idle
            .lock()
            .map(|idle| {
                idle.iter()
                    .map(|s| IdleInstance {
                        requests: s.requests,
                        age: s.created.elapsed(),
                        idle: s.last_used.elapsed(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Age of the pool.
    pub fn age(&self) -> Duration {
        self.created_at.elapsed()
    }

    /// Runs `export` with `input` and call-scoped `extensions` on an instance.
    pub async fn call(
        &self,
        export: &str,
        input: Bytes,
        extensions: http::Extensions,
    ) -> (Result<CallOutput, PoolError>, http::Extensions) {
        let started = Instant::now();
        let n = self.stats.requests.add(1);
        let sampled = n.is_multiple_of(crate::metrics::cost::COST_SAMPLE);
        let busy = || PoolError::Busy(self.key.clone());
        // A free slot is taken without touching the queue's counters.
        let _permit = match self.slots.try_acquire() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::NoPermits)
                if self.waiting.load(Ordering::Relaxed) < self.config.max_queue =>
            {
                // Counted while it waits, uncounted however the wait ends
                // (a client that goes away drops this future mid-wait).
                let _queued = Queued::enter(&self.waiting);
                // Boxed in a statement of its own (the boxing would save
                // nothing in the `match`: its scrutinee's temporaries live
                // across the await).
                let acquire = Box::pin(self.slots.acquire());
                match acquire.await {
                    Ok(p) => {
                        self.stats.queue_wait.observe(started.elapsed());
                        p
                    }
                    Err(_) => return (Err(busy()), extensions),
                }
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                self.stats.rejected.add(1);
                return (Err(busy()), extensions);
            }
            Err(tokio::sync::TryAcquireError::Closed) => return (Err(busy()), extensions),
        };
        self.call_on_instance(export, input, extensions, started, sampled)
            .await
    }

    fn record_latency(&self, started: Instant, done: Instant) {
        self.stats.duration.observe(done.duration_since(started));
    }

    /// Runs the call; records its latency (from `started`) on every path,
    /// and its cost when `sampled`.
    async fn call_on_instance(
        &self,
        export: &str,
        input: Bytes,
        extensions: http::Extensions,
        started: Instant,
        sampled: bool,
    ) -> (Result<CallOutput, PoolError>, http::Extensions) {
        let mut slot = match self.take_idle() {
            Some(idle) => {
                self.stats.hits.add(1);
                idle
            }
            None => {
                self.stats.misses.add(1);
                // Boxed, as the other rare paths here: their futures would
                // otherwise enlarge (and be copied with) every call's.
                let instantiate = Box::pin(self.module.instantiate());
                match instantiate.await {
                    Ok(instance) => {
                        self.stats.created.add(1);
                        self.publish(WORKER_SPAWN, "created");
                        let now = Instant::now();
                        Box::new(Idle {
                            instance,
                            created: now,
                            last_used: now,
                            requests: 0,
                        })
                    }
                    Err(e) => {
                        self.stats.errors.add(1);
                        self.record_latency(started, Instant::now());
                        return (Err(e.into()), extensions);
                    }
                }
            }
        };
        let call_started = sampled.then(Instant::now);
        let (result, extensions) = slot.instance.call_with(export, input, extensions).await;
        slot.requests += 1;
        // One clock read serves the latency, the sliding TTL and the cost.
        slot.last_used = Instant::now();
        if let Some(call_started) = call_started {
            self.stats.cost.record(
                slot.last_used.duration_since(call_started),
                slot.instance.memory_bytes(),
            );
        }
        self.record_latency(started, slot.last_used);
        if let Err(e) = &result {
            self.stats.errors.add(1);
            if matches!(e, CallError::Timeout(_)) {
                self.stats.timeouts.add(1);
            }
        }
        self.give_back(slot).await;
        (result.map_err(PoolError::from), extensions)
    }

    /// A healthy idle instance, most recently used first; expired ones are retired.
    fn take_idle(&self) -> Option<Box<Idle>> {
        if self.config.ttl.is_zero() {
            return None;
        }
        let mut idle = self.idle.lock().ok()?;
        while let Some(slot) = idle.pop() {
            if self.healthy(&slot) {
                return Some(slot);
            }
            self.note_retired("expired");
            // Dropped without `on_terminate`: it is past its TTL; the
            // background reclaim normally gets there first and says goodbye.
        }
        None
    }

    fn healthy(&self, slot: &Idle) -> bool {
        slot.last_used.elapsed() < self.config.ttl && self.reusable(slot)
    }

    /// [`AppPool::healthy`] without the TTL check, for an instance that was
    /// used just now (its sliding TTL starts over).
    fn reusable(&self, slot: &Idle) -> bool {
        !slot.instance.is_poisoned()
            && (self.config.max_requests == 0 || slot.requests < self.config.max_requests)
    }

    async fn give_back(&self, mut slot: Box<Idle>) {
        if slot.instance.is_poisoned() {
            self.stats.failed.add(1);
            self.publish(WORKER_TERMINATE, "failed");
            return;
        }
        if !self.config.ttl.is_zero() && self.reusable(&slot) {
            if let Ok(mut idle) = self.idle.lock() {
                idle.push(slot);
            }
            return;
        }
        let retiring = Box::pin(retire(&mut slot.instance));
        retiring.await;
        self.note_retired(if self.config.ttl.is_zero() {
            "ephemeral"
        } else {
            self.stats.recycled.add(1);
            "recycled"
        });
    }

    /// Retires idle instances that have been idle for `idleTimeout` or are
    /// past their TTL: `on_idle`, then `on_terminate`. Returns how many.
    pub async fn reclaim(&self) -> usize {
        let now = Instant::now();
        let expired: Vec<Box<Idle>> = match self.idle.lock() {
            Ok(mut idle) => {
                let (keep, go): (Vec<Box<Idle>>, Vec<Box<Idle>>) = idle.drain(..).partition(|s| {
                    now.duration_since(s.last_used) < self.config.idle_timeout && self.healthy(s)
                });
                *idle = keep;
                go
            }
            Err(_) => Vec::new(),
        };
        let n = expired.len();
        for mut slot in expired {
            if slot.instance.has_export("on_idle") {
                let _ = slot.instance.call("on_idle", Bytes::new()).await;
            }
            retire(&mut slot.instance).await;
            self.note_retired("idle");
        }
        n
    }

    /// Retires every idle instance (eviction, shutdown).
    pub async fn drain(&self) {
        let all: Vec<Box<Idle>> = self
            .idle
            .lock()
            .map(|mut i| i.drain(..).collect())
            .unwrap_or_default();
        for mut slot in all {
            retire(&mut slot.instance).await;
            self.note_retired("drained");
        }
    }

    fn note_retired(&self, reason: &str) {
        self.stats.retired.add(1);
        self.publish(WORKER_TERMINATE, reason);
    }

    fn publish(&self, topic: &str, reason: &str) {
        if let Some(bus) = self.events.as_ref().filter(|b| b.wants_lifecycle()) {
            bus.publish_host(
                topic,
                serde_json::json!({"app": self.key, "reason": reason}),
            );
        }
    }
}

/// Tells an instance it is being retired.
async fn retire(instance: &mut GuestInstance) {
    if instance.has_export("on_terminate") && !instance.is_poisoned() {
        let _ = instance.call("on_terminate", Bytes::new()).await;
    }
}

/// A request counted in a pool's queue for as long as it waits.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::Relaxed);
        Self(waiting)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
