//! The epoch ticker thread, and the coarse clock it keeps.
//!
//! One thread advances wasmtime's epoch every tick (of each engine sharing
//! it), which is how a running guest notices its deadline without a clock
//! read in its code. The same thread stamps the time of each tick into a
//! [`CoarseClock`], so arming a call's deadline is an atomic load rather
//! than a `clock_gettime` — about a tenth of a pass-through plugin hook's
//! cost otherwise.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::LoadError;

/// A clock that advances once per epoch tick: never ahead of the real time,
/// at most a tick (plus the ticker's scheduling delay) behind it.
#[derive(Debug)]
pub(crate) struct CoarseClock {
    base: Instant,
    /// Nanoseconds from `base` to the last tick.
    nanos: AtomicU64,
    tick: Duration,
}

impl CoarseClock {
    fn new(tick: Duration) -> Self {
        Self {
            base: Instant::now(),
            nanos: AtomicU64::new(0),
            tick,
        }
    }

    /// The time of the last tick.
    pub(crate) fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    /// The time between two ticks.
    pub(crate) fn tick(&self) -> Duration {
        self.tick
    }

    /// A deadline `timeout` from now that is never early: the coarse time is
    /// up to a tick behind, so a tick is added (a call may run up to one tick
    /// past its timeout, as the epoch check already allows).
    pub(crate) fn deadline_in(&self, timeout: Duration) -> Instant {
        self.now() + self.tick + timeout
    }

    fn stamp(&self) {
        let nanos = self.base.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.nanos.store(nanos, Ordering::Relaxed);
    }
}

/// The single thread that advances the coarse clock and the epoch of every
/// wasmtime engine sharing it (an engine and its sibling for long-lived
/// guests, [`super::Engine::for_long_lived_guests`]).
#[derive(Debug)]
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    clock: Arc<CoarseClock>,
    engines: Arc<Mutex<Vec<wasmtime::Engine>>>,
}

impl Ticker {
    pub(crate) fn start(engine: wasmtime::Engine, tick: Duration) -> Result<Self, LoadError> {
        let stop = Arc::new(AtomicBool::new(false));
        let clock = Arc::new(CoarseClock::new(tick));
        let engines = Arc::new(Mutex::new(vec![engine]));
        let flag = stop.clone();
        let stamps = clock.clone();
        let ticked = engines.clone();
        let handle = std::thread::Builder::new()
            .name("buntime-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    // The time first, then the epoch: a guest that sees the
                    // new epoch compares its deadline with a fresh clock.
                    stamps.stamp();
                    for engine in ticked.lock().unwrap_or_else(PoisonError::into_inner).iter() {
                        engine.increment_epoch();
                    }
                }
            })
            .map_err(|e| {
                LoadError::Engine(anyhow::anyhow!("cannot start the epoch ticker thread: {e}"))
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
            clock,
            engines,
        })
    }

    /// Advances `engine`'s epoch too, from the next tick on.
    pub(crate) fn tick_also(&self, engine: wasmtime::Engine) {
        self.engines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(engine);
    }

    /// The clock this ticker keeps.
    pub(crate) fn clock(&self) -> &CoarseClock {
        &self.clock
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_deadlines_are_never_early() {
        // The promise holds while the clock is at most one tick stale (the
        // ticker stamps it every tick). A tick of a second keeps a stalled
        // test thread from outliving it; the clock is still 3 ms behind,
        // which a deadline without the tick's margin would not survive.
        let tick = Duration::from_secs(1);
        let clock = CoarseClock::new(tick);
        std::thread::sleep(Duration::from_millis(3));
        let timeout = Duration::from_millis(20);
        assert!(clock.now() + Duration::from_millis(3) <= Instant::now());
        assert!(clock.deadline_in(timeout) >= Instant::now() + timeout);
        // A stamp reads the time it was taken: between these two instants.
        let before = Instant::now();
        clock.stamp();
        let after = Instant::now();
        assert!(before <= clock.now() && clock.now() <= after);
        assert_eq!(clock.deadline_in(timeout), clock.now() + tick + timeout);
    }
}
