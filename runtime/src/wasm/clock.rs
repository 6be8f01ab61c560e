//! The wall clock guests read through WASI (`clock_time_get`): the host's
//! clock shifted by an offset that starts at zero.
//!
//! The offset exists so that tests of anything a guest expires by its own
//! clock (the authn plugin's sessions, for one) can move one engine's
//! guests hours ahead at once instead of waiting; nothing in the server
//! moves it. It is per engine, so servers in the same process (parallel
//! tests) keep their own time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The guests' wall clock of one engine.
#[derive(Debug, Clone, Default)]
pub struct GuestClock {
    /// Milliseconds added to the host's clock.
    ahead_ms: Arc<AtomicU64>,
}

impl GuestClock {
    /// Moves every guest's wall clock `by` forward (it never goes back).
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.ahead_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// How far ahead of the host's clock the guests are.
    pub fn ahead(&self) -> Duration {
        Duration::from_millis(self.ahead_ms.load(Ordering::Relaxed))
    }

    /// The clock handed to a guest's WASI context.
    pub(crate) fn wasi(&self) -> impl wasmtime_wasi::HostWallClock + 'static {
        Shifted(self.clone())
    }
}

struct Shifted(GuestClock);

impl wasmtime_wasi::HostWallClock for Shifted {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        let host = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        host.saturating_add(self.0.ahead())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime_wasi::HostWallClock;

    #[test]
    fn advancing_moves_the_guests_clock_only() {
        let clock = GuestClock::default();
        let wasi = clock.wasi();
        let before = wasi.now();
        clock.advance(Duration::from_secs(3600));
        let after = wasi.now();
        assert!(after >= before + Duration::from_secs(3600));
        assert!(after < before + Duration::from_secs(3700));
        assert!(GuestClock::default().wasi().now() < after - Duration::from_secs(3000));
    }
}
