//! `state_take`: a token bucket in the state namespace, checked and debited
//! in one step under the namespace's lock.
//!
//! A rate limiter that reads a counter and writes it back races its own
//! instances (two see one token left, both take it); a CAS loop is exact
//! but retries under contention. Here the refill, the check and the debit
//! happen in one critical section, so N tokens are N admissions however
//! many instances ask at once.
//!
//! The bucket holds `capacity` tokens and refills continuously at
//! `capacity / windowMs`. Its entry is an ordinary state value
//! (`{"tokens", "capacity", "windowMs", "updatedMs"}`, listed by
//! `state_list`) that expires when the bucket would be full again, so an
//! idle client costs nothing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use buntime_pdk::abi::Taken;

use super::{Ns, StateError, StateStore, json_size};

/// The stored form of a bucket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bucket {
    tokens: f64,
    capacity: u64,
    window_ms: u64,
    updated_ms: u64,
}

impl Bucket {
    /// Writes this bucket's fields over a stored bucket's (numbers only, so
    /// nothing is allocated); `false`, with `value` untouched, if it is not
    /// a stored bucket.
    fn write_over(&self, value: &mut Value) -> bool {
        let Some(fields) = value.as_object_mut() else {
            return false;
        };
        const NAMES: [&str; 4] = ["tokens", "capacity", "windowMs", "updatedMs"];
        if fields.len() != NAMES.len() || !NAMES.iter().all(|n| fields.contains_key(*n)) {
            return false;
        }
        let values = [
            Value::from(self.tokens),
            Value::from(self.capacity),
            Value::from(self.window_ms),
            Value::from(self.updated_ms),
        ];
        for (name, v) in NAMES.into_iter().zip(values) {
            if let Some(slot) = fields.get_mut(name) {
                *slot = v;
            }
        }
        true
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl StateStore {
    /// Takes `cost` tokens from the bucket at `key` (`capacity` tokens,
    /// refilled over `window_ms`), created full if absent; atomically.
    pub fn take<'n>(
        &self,
        ns: impl Into<Ns<'n>>,
        key: &str,
        capacity: u64,
        window: Duration,
        cost: u64,
    ) -> Result<Taken, StateError> {
        Self::check(key, None)?;
        let window_ms = window.as_millis() as u64;
        if capacity == 0 || window_ms == 0 {
            return Err(StateError::Limit(format!(
                "a bucket needs a capacity and a window above 0 (got capacity {capacity}, window {window_ms} ms)"
            )));
        }
        let rate = capacity as f64 / window_ms as f64; // tokens per ms
        let n = ns.into().space(self);
        let mut space = n.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let tokens = match space
            .entries
            .get(key)
            .filter(|e| e.live(std::time::Instant::now()))
        {
            Some(e) => {
                // Read in place: no copy of the stored value.
                let b = Bucket::deserialize(&e.value).map_err(|_| {
                    StateError::Type(format!("`{key}` holds {}, not a bucket", e.value))
                })?;
                // A clock that went back refills nothing; a bucket written
                // with another size keeps its tokens, capped to this one.
                let elapsed = now.saturating_sub(b.updated_ms) as f64;
                (b.tokens + elapsed * rate).min(capacity as f64)
            }
            None => capacity as f64,
        };
        let want = cost as f64;
        let allowed = tokens + 1e-9 >= want;
        let left = if allowed {
            (tokens - want).max(0.0)
        } else {
            tokens
        };
        let reset_ms = ((capacity as f64 - left) / rate).ceil() as u64;
        let retry_after_ms = if allowed {
            0
        } else {
            ((want - left) / rate).ceil().max(1.0) as u64
        };
        let bucket = Bucket {
            tokens: left,
            capacity,
            window_ms,
            updated_ms: now,
        };
        let size = json_size(&bucket);
        // Expires once full: an absent bucket is a full one.
        let ttl = Some(Duration::from_millis(reset_ms.max(1)));
        if self
            .update_in_place(&mut space, key, size, ttl, |v| bucket.write_over(v))
            .is_none()
        {
            let value = serde_json::to_value(&bucket).unwrap_or(Value::Null);
            self.insert(&mut space, key, value, size, ttl)?;
        }
        Ok(Taken {
            allowed,
            remaining: (left + 1e-9).floor() as u64,
            reset_ms,
            retry_after_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn exactly_capacity_under_contention() {
        let s = Arc::new(StateStore::default());
        let hour = Duration::from_secs(3600);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .filter(|_| s.take("p", "b", 37, hour, 1).unwrap().allowed)
                        .count()
                })
            })
            .collect();
        let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(allowed, 37);
        let t = s.take("p", "b", 37, hour, 1).unwrap();
        assert!(
            !t.allowed && t.remaining == 0 && t.retry_after_ms > 0,
            "{t:?}"
        );
    }

    #[test]
    fn a_bucket_rewritten_in_place_is_versioned_and_counted_as_a_new_one() {
        let s = StateStore::default();
        let hour = Duration::from_secs(3600);
        s.take("p", "b", 10, hour, 1).unwrap();
        let first = s.get("p", "b").unwrap();
        s.take("p", "b", 10, hour, 3).unwrap();
        let second = s.get("p", "b").unwrap();
        assert!(second.version > first.version);
        assert_eq!(second.value["tokens"].as_f64().map(f64::round), Some(6.0));
        assert_eq!(second.size, "b".len() + json_size(&second.value));
        let n = s.namespace("p");
        let space = n.lock().unwrap();
        let counted: usize = space
            .entries
            .iter()
            .map(|(k, e)| k.len() + json_size(&e.value))
            .sum();
        assert_eq!(space.bytes, counted);
    }

    #[test]
    fn refills_and_reports() {
        let s = StateStore::default();
        let first = s.take("p", "b", 2, Duration::from_millis(40), 1).unwrap();
        assert_eq!((first.allowed, first.remaining), (true, 1));
        assert!(first.reset_ms <= 20, "{first:?}");
        assert!(
            s.take("p", "b", 2, Duration::from_millis(40), 1)
                .unwrap()
                .allowed
        );
        let refused = s.take("p", "b", 2, Duration::from_millis(40), 1).unwrap();
        assert!(
            !refused.allowed && refused.retry_after_ms <= 20,
            "{refused:?}"
        );
        // Polls rather than sleeping a guessed time: the bucket refills.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while !s
            .take("p", "b", 2, Duration::from_millis(40), 1)
            .unwrap()
            .allowed
        {
            assert!(std::time::Instant::now() < deadline, "never refilled");
            std::thread::sleep(Duration::from_millis(1));
        }
        s.set("p", "n", Value::from(1), None).unwrap();
        assert!(matches!(
            s.take("p", "n", 1, Duration::from_secs(1), 1),
            Err(StateError::Type(_))
        ));
        assert!(matches!(
            s.take("p", "z", 0, Duration::from_secs(1), 1),
            Err(StateError::Limit(_))
        ));
    }
}
