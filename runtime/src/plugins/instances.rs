//! A plugin's warm instances.
//!
//! Hooks run on interchangeable instances: up to `limits.instances` at once,
//! reused LIFO so a steady load touches few of them. A trapped or timed-out
//! instance is dropped, never reused. [`InstancePool::drain`] waits for every
//! in-flight call to finish, which is how a reload swaps plugins without
//! cutting a request short.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::wasm::{CallError, CallOutput, GuestInstance, GuestModule};

/// How long a call may wait for a free instance before it fails as busy.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Instances of one plugin.
#[derive(Debug)]
pub struct InstancePool {
    module: GuestModule,
    idle: Mutex<Vec<GuestInstance>>,
    slots: Semaphore,
    size: u32,
    /// Instances created.
    pub created: AtomicU64,
    /// Instances discarded after a trap or timeout.
    pub discarded: AtomicU64,
}

impl InstancePool {
    /// A pool of at most `size` concurrent instances of `module`.
    pub fn new(module: GuestModule, size: usize) -> Self {
        let size = size.clamp(1, 1024) as u32;
        Self {
            module,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(size as usize),
            size,
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
        self.size as usize - self.slots.available_permits()
    }

    /// Warm idle instances.
    pub fn idle(&self) -> usize {
        self.idle.lock().map(|i| i.len()).unwrap_or(0)
    }

    /// Runs `export` on a free instance.
    pub async fn call(
        &self,
        export: &str,
        input: Bytes,
        extensions: http::Extensions,
    ) -> (Result<CallOutput, CallError>, http::Extensions) {
        // The common case takes a free slot without arming a timer.
        let permit = match self.slots.try_acquire() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => {
                return (Err(CallError::Discarded), extensions);
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                match tokio::time::timeout(QUEUE_WAIT, self.slots.acquire()).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return (Err(CallError::Discarded), extensions),
                    Err(_) => return (Err(CallError::Timeout(QUEUE_WAIT)), extensions),
                }
            }
        };
        let mut instance = match self.take() {
            Some(i) => i,
            None => match self.module.instantiate().await {
                Ok(i) => {
                    self.created.fetch_add(1, Ordering::Relaxed);
                    i
                }
                Err(e) => return (Err(e), extensions),
            },
        };
        let (result, extensions) = instance.call_with(export, input, extensions).await;
        if instance.is_poisoned() {
            self.discarded.fetch_add(1, Ordering::Relaxed);
        } else if let Ok(mut idle) = self.idle.lock() {
            idle.push(instance);
        }
        drop(permit);
        (result, extensions)
    }

    fn take(&self) -> Option<GuestInstance> {
        self.idle.lock().ok()?.pop()
    }

    /// Stops new calls, waits (up to `grace`) for running ones, and returns
    /// one healthy instance for a last call such as `on_shutdown`.
    pub async fn drain(&self, grace: Duration) -> Option<GuestInstance> {
        let all = tokio::time::timeout(grace, self.slots.acquire_many(self.size)).await;
        if let Ok(Ok(permits)) = all {
            permits.forget();
        }
        self.slots.close();
        let mut idle = self.idle.lock().ok()?;
        let last = idle.pop();
        idle.clear();
        last
    }
}
