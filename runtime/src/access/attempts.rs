//! Failed API-key attempts per client address.
//!
//! Keys are 256-bit random values, so guessing one is hopeless; the master
//! key is an operator's string of at least 16 characters, and may be weaker.
//! Each client address therefore has a token bucket of failures: an unknown,
//! revoked or expired key takes a token, and an address whose bucket is
//! empty has every keyed request refused (`429`, `Retry-After`) until it
//! refills — the right key too, or the refusals would still tell a guesser
//! which guess was right. IPv6 clients count by their /64, the block one
//! host is usually given.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use crate::config::{ATTEMPT_WINDOW, FAILED_ATTEMPTS, MAX_ATTEMPT_WINDOW, MAX_FAILED_ATTEMPTS};
/// Most addresses tracked at once; past it, new addresses share one bucket.
const MAX_TRACKED: usize = 65_536;

/// The buckets of failed attempts.
#[derive(Debug)]
pub struct FailedAttempts {
    capacity: f64,
    window: Duration,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl Default for FailedAttempts {
    fn default() -> Self {
        Self::new(FAILED_ATTEMPTS, ATTEMPT_WINDOW)
    }
}

impl FailedAttempts {
    /// `capacity` failures per address, refilled over `window`.
    pub fn new(capacity: u32, window: Duration) -> Self {
        Self {
            capacity: f64::from(capacity.max(1)),
            window,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket an address counts in.
    fn key(addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            IpAddr::V6(v6) => IpAddr::V4(
                v6.to_ipv4_mapped()
                    .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            ),
            v4 => v4,
        }
    }

    /// The tokens of a bucket now.
    fn refilled(&self, (tokens, at): (f64, Instant), now: Instant) -> f64 {
        let rate = self.capacity / self.window.as_secs_f64();
        (tokens + now.duration_since(at).as_secs_f64() * rate).min(self.capacity)
    }

    /// How long `addr` must wait before trying a key again, if it must.
    pub fn blocked(&self, addr: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let tokens = self.refilled(*buckets.get(&Self::key(addr))?, now);
        (tokens < 1.0).then(|| {
            let rate = self.capacity / self.window.as_secs_f64();
            Duration::from_secs_f64((1.0 - tokens) / rate)
        })
    }

    /// Records a failed attempt from `addr`.
    pub fn failed(&self, addr: IpAddr) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = Self::key(addr);
        if !buckets.contains_key(&key) && buckets.len() >= MAX_TRACKED {
            // Full buckets hold nothing worth keeping.
            buckets.retain(|_, b| self.refilled(*b, now) < self.capacity);
            if buckets.len() >= MAX_TRACKED {
                key = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
            }
        }
        let bucket = buckets.entry(key).or_insert((self.capacity, now));
        let tokens = self.refilled(*bucket, now);
        *bucket = ((tokens - 1.0).max(0.0), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_failures_and_others_are_not() {
        let a = FailedAttempts::new(3, Duration::from_secs(3600));
        let me: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(a.blocked(me), None);
            a.failed(me);
        }
        let wait = a.blocked(me).expect("blocked");
        assert!(
            wait > Duration::from_secs(1000) && wait <= Duration::from_secs(1200),
            "{wait:?}"
        );
        assert_eq!(a.blocked("203.0.113.8".parse().unwrap()), None);
        // One IPv6 host's /64 is one bucket.
        for last in 1..=3 {
            a.failed(format!("2001:db8:1:2::{last}").parse().unwrap());
        }
        assert!(a.blocked("2001:db8:1:2:ffff::1".parse().unwrap()).is_some());
        assert_eq!(a.blocked("2001:db8:1:3::1".parse().unwrap()), None);
        // An IPv4-mapped address is its IPv4 address.
        assert!(a.blocked("::ffff:203.0.113.7".parse().unwrap()).is_some());
    }

    #[test]
    fn buckets_refill_over_the_window() {
        let a = FailedAttempts::new(2, Duration::from_millis(20));
        let me: IpAddr = "198.51.100.1".parse().unwrap();
        a.failed(me);
        a.failed(me);
        assert!(a.blocked(me).is_some());
        let deadline = Instant::now() + Duration::from_secs(5);
        while a.blocked(me).is_some() {
            assert!(Instant::now() < deadline, "never refilled");
            std::thread::yield_now();
        }
    }
}
