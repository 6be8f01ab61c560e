//! A plugin's warm instances.
//!
//! Hooks run on interchangeable instances: up to `limits.instances` at once,
//! reused LIFO so a steady load touches few of them. A trapped or timed-out
//! instance is dropped, never reused. [`InstancePool::drain`] waits for every
//! in-flight call to finish, which is how a reload swaps plugins without
//! cutting a request short.
//!
//! Taking and returning an instance is one short critical section each (the
//! idle list and the in-flight count share a lock), because a pass-through
//! hook costs only a few hundred nanoseconds and a semaphore beside a mutex
//! was a tenth of that. Callers that find every instance busy wait on a
//! [`Notify`], woken one per returned instance.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::wasm::{CallError, CallOutput, GuestInstance, GuestModule};

/// How long a call may wait for a free instance before it fails as busy.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// What the lock guards.
#[derive(Debug, Default)]
struct Slots {
    idle: Vec<GuestInstance>,
    in_flight: u32,
    /// Calls waiting for a free instance.
    waiting: u32,
    /// Drained: no more calls.
    closed: bool,
}

/// Why no instance was handed out.
enum Refused {
    Closed,
    Full,
}

/// Instances of one plugin.
#[derive(Debug)]
pub struct InstancePool {
    module: GuestModule,
    slots: Mutex<Slots>,
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
            slots: Mutex::new(Slots::default()),
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
        self.slots.lock().map(|s| s.in_flight as usize).unwrap_or(0)
    }

    /// Warm idle instances.
    pub fn idle(&self) -> usize {
        self.slots.lock().map(|s| s.idle.len()).unwrap_or(0)
    }

    /// Takes a slot (and an idle instance, if there is one). When all are
    /// busy and `queue` is set, the caller is counted as waiting (under the
    /// same lock, so a release that follows knows to wake it).
    fn try_take(&self, queue: bool) -> Result<Option<GuestInstance>, Refused> {
        let mut s = self.slots.lock().map_err(|_| Refused::Closed)?;
        if s.closed {
            return Err(Refused::Closed);
        }
        if s.in_flight < self.size {
            s.in_flight += 1;
            return Ok(s.idle.pop());
        }
        if queue {
            s.waiting += 1;
        }
        Err(Refused::Full)
    }

    /// Waits (up to [`QUEUE_WAIT`]) for a slot.
    async fn take_waiting(&self) -> Result<Option<GuestInstance>, CallError> {
        let deadline = tokio::time::Instant::now() + QUEUE_WAIT;
        let result = loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release in between wakes it.
            freed.as_mut().enable();
            match self.try_take(false) {
                Ok(instance) => break Ok(instance),
                Err(Refused::Closed) => break Err(CallError::Discarded),
                Err(Refused::Full) => {}
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                break Err(CallError::Timeout(QUEUE_WAIT));
            }
        };
        if let Ok(mut s) = self.slots.lock() {
            s.waiting -= 1;
        }
        // A wake-up this waiter consumed but did not use goes to the next.
        if result.is_err() {
            self.freed.notify_one();
        }
        result
    }

    /// Gives the slot back, with the instance if it may be reused.
    fn give_back(&self, instance: Option<GuestInstance>) {
        let waiting = match self.slots.lock() {
            Ok(mut s) => {
                s.in_flight -= 1;
                if let Some(i) = instance {
                    s.idle.push(i);
                }
                s.waiting > 0 || s.closed
            }
            Err(_) => true,
        };
        // One slot freed, one waiter woken (a drain waits here too); a
        // waiter that cannot use it passes the wake-up on.
        if waiting {
            self.freed.notify_one();
        }
    }

    /// Runs `export` on a free instance.
    pub async fn call(
        &self,
        export: &str,
        input: Bytes,
        extensions: http::Extensions,
    ) -> (Result<CallOutput, CallError>, http::Extensions) {
        // The common case takes a free slot without arming a timer.
        let taken = match self.try_take(true) {
            Ok(instance) => Ok(instance),
            Err(Refused::Closed) => Err(CallError::Discarded),
            Err(Refused::Full) => self.take_waiting().await,
        };
        let idle = match taken {
            Ok(idle) => idle,
            Err(e) => return (Err(e), extensions),
        };
        let mut instance = match idle {
            Some(i) => i,
            None => match self.module.instantiate().await {
                Ok(i) => {
                    self.created.fetch_add(1, Ordering::Relaxed);
                    i
                }
                Err(e) => {
                    self.give_back(None);
                    return (Err(e), extensions);
                }
            },
        };
        let (result, extensions) = instance.call_with(export, input, extensions).await;
        if instance.is_poisoned() {
            self.discarded.fetch_add(1, Ordering::Relaxed);
            self.give_back(None);
        } else {
            self.give_back(Some(instance));
        }
        (result, extensions)
    }

    /// Stops new calls, waits (up to `grace`) for running ones, and returns
    /// one healthy instance for a last call such as `on_shutdown`.
    pub async fn drain(&self, grace: Duration) -> Option<GuestInstance> {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut s = self.slots.lock().ok()?;
                s.closed = true;
                if s.in_flight == 0 {
                    break;
                }
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                break;
            }
        }
        let last = {
            let mut s = self.slots.lock().ok()?;
            let last = s.idle.pop();
            s.idle.clear();
            last
        };
        // Calls still waiting see `closed` and give up.
        self.freed.notify_waiters();
        last
    }
}
