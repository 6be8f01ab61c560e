//! `state`: a host-side key-value namespace per plugin, shared by all of its
//! instances and kept across reloads.
//!
//! A plugin's instances are interchangeable and short-lived, so anything they
//! must agree on (a rate limiter's counters, a cache) lives here. Values are
//! JSON; every write gets a new version from one process-wide counter, so
//! versions are monotonic and `state_cas` can compare them. TTLs are in
//! milliseconds and expired entries are invisible at once (removed lazily).
//! A namespace is bounded: keys of at most [`MAX_KEY_BYTES`], values of at
//! most [`MAX_VALUE_BYTES`] of JSON, [`MAX_KEYS`] keys and
//! [`MAX_NAMESPACE_BYTES`] of keys and values together.
//!
//! Host functions (`state_functions.rs`; these take and return JSON, in the
//! `{"ok"}/{"error"}` envelope):
//!
//! | function | input | result |
//! |---|---|---|
//! | `state_get` | `{"key"}` | `{"value", "version"}` or `null` |
//! | `state_set` | `{"key", "value", "ttlMs"?}` | `{"version"}` |
//! | `state_delete` | `{"key"}` | `true` if it existed |
//! | `state_list` | `{"prefix"?, "limit"?}` | `[{"key", "value", "version"}]`, key order |
//! | `state_cas` | `{"key", "version", "value", "ttlMs"?}` (version 0 = must not exist) | `{"swapped", "version"}` |
//! | `state_incr` | `{"key", "by"?, "ttlMs"?}` (TTL set when the key is created) | `{"value", "version"}` |
//! | `state_take` | `{"key", "capacity", "windowMs", "cost"?}` (a token bucket, [`bucket`]) | `{"allowed", "remaining", "resetMs", "retryAfterMs"}` |
//!
//! `state_incr_into` and `state_take_into` are the last two without JSON:
//! they read the key from the guest's memory and write the answer there
//! (docs/capabilities.md).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::wasm::HostError;

#[path = "state_bucket.rs"]
pub(super) mod bucket;
#[path = "state_functions.rs"]
mod functions;

pub(super) use functions::StateSpec;

/// Most keys one namespace may hold.
pub(super) const MAX_KEYS: usize = 100_000;
/// Largest value (as JSON text).
pub(super) const MAX_VALUE_BYTES: usize = 1 << 20;
/// Longest key.
pub(super) const MAX_KEY_BYTES: usize = 1024;
/// Most bytes one namespace may hold: its keys plus its values' JSON text.
/// Without it, [`MAX_KEYS`] values of [`MAX_VALUE_BYTES`] would be 100 GB.
pub(super) const MAX_NAMESPACE_BYTES: usize = 64 << 20;

/// The bytes of `v` as JSON text, counted as it is written rather than
/// written into a buffer (every state write counts its value).
fn json_size(v: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, v) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

pub(super) fn no_context() -> HostError {
    HostError::new(
        "unavailable",
        "this capability is only available to plugins loaded by the server",
    )
}

/// One stored value.
#[derive(Debug, Clone, PartialEq)]
pub struct StateEntry {
    /// The value.
    pub value: Value,
    /// Its version (monotonic across the process).
    pub version: u64,
    expires: Option<Instant>,
    /// What it counts against [`MAX_NAMESPACE_BYTES`]: key and JSON bytes.
    size: usize,
}

impl StateEntry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }

    fn value_and_version(&self) -> Value {
        serde_json::json!({ "value": self.value, "version": self.version })
    }
}

/// A refused state operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A limit was hit.
    #[error("{0}")]
    Limit(String),
    /// The stored value is not what the operation needs.
    #[error("{0}")]
    Type(String),
}

impl From<StateError> for HostError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Limit(m) => HostError::new("limit_exceeded", m),
            StateError::Type(m) => HostError::new("invalid_state", m),
        }
    }
}

type Namespace = Arc<Mutex<Space>>;

/// One plugin's entries and the bytes they hold.
#[derive(Debug, Default)]
struct Space {
    entries: BTreeMap<String, StateEntry>,
    bytes: usize,
}

impl Space {
    /// Drops expired entries.
    fn purge(&mut self, now: Instant) {
        let mut freed = 0;
        self.entries.retain(|_, e| {
            let live = e.live(now);
            if !live {
                freed += e.size;
            }
            live
        });
        self.bytes -= freed;
    }

    fn remove(&mut self, key: &str) -> Option<StateEntry> {
        let e = self.entries.remove(key)?;
        self.bytes -= e.size;
        Some(e)
    }
}

/// Which namespace a state operation works in: a plugin's name, or the
/// [`NamespaceHandle`] found for it once. A plugin's guest context keeps its
/// handle, so the calls its guests make per request skip the store's map of
/// names (a shared lock, a hash and two reference counts each).
#[derive(Debug, Clone, Copy)]
pub struct Ns<'a>(NsInner<'a>);

#[derive(Debug, Clone, Copy)]
enum NsInner<'a> {
    Named(&'a str),
    Found(&'a Namespace),
}

impl<'a> From<&'a str> for Ns<'a> {
    fn from(name: &'a str) -> Self {
        Ns(NsInner::Named(name))
    }
}

impl<'a> From<&'a NamespaceHandle> for Ns<'a> {
    fn from(handle: &'a NamespaceHandle) -> Self {
        Ns(NsInner::Found(&handle.0))
    }
}

/// A namespace found by [`StateStore::handle`]: namespaces are never
/// removed, so it stays the one its name denotes.
#[derive(Clone)]
pub struct NamespaceHandle(Namespace);

impl std::fmt::Debug for NamespaceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NamespaceHandle")
    }
}

/// A namespace found for one operation, or borrowed from a handle.
enum SpaceRef<'a> {
    Found(Namespace),
    Kept(&'a Namespace),
}

impl std::ops::Deref for SpaceRef<'_> {
    type Target = Mutex<Space>;
    fn deref(&self) -> &Mutex<Space> {
        match self {
            SpaceRef::Found(n) => n,
            SpaceRef::Kept(n) => n,
        }
    }
}

impl<'a> Ns<'a> {
    fn space(self, store: &StateStore) -> SpaceRef<'a> {
        match self.0 {
            NsInner::Named(name) => SpaceRef::Found(store.namespace(name)),
            NsInner::Found(n) => SpaceRef::Kept(n),
        }
    }
}

/// Every plugin's namespace.
///
/// ```
/// use buntime::capabilities::StateStore;
/// let store = StateStore::default();
/// let v1 = store.set("p", "k", serde_json::json!(1), None).unwrap();
/// assert_eq!(store.get("p", "k").unwrap().version, v1);
/// assert!(store.get("other", "k").is_none());
/// assert_eq!(store.increment("p", "n", 5, None).unwrap().0, 5);
/// ```
#[derive(Debug, Default)]
pub struct StateStore {
    namespaces: RwLock<HashMap<String, Namespace>>,
    versions: AtomicU64,
}

impl StateStore {
    fn namespace(&self, ns: &str) -> Namespace {
        if let Some(n) = self.namespaces.read().ok().and_then(|m| m.get(ns).cloned()) {
            return n;
        }
        let mut map = self.namespaces.write().unwrap_or_else(|p| p.into_inner());
        map.entry(ns.to_owned()).or_default().clone()
    }

    /// The namespace of plugin `ns`, found once for the calls to come.
    pub fn handle(&self, ns: &str) -> NamespaceHandle {
        NamespaceHandle(self.namespace(ns))
    }

    fn next_version(&self) -> u64 {
        self.versions.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Checks the key and the value's size; returns the value's JSON size.
    fn check(key: &str, value: Option<&Value>) -> Result<usize, StateError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(StateError::Limit(format!(
                "keys must be 1 to {MAX_KEY_BYTES} bytes long, this one is {}",
                key.len()
            )));
        }
        let size = value.map_or(0, json_size);
        if size > MAX_VALUE_BYTES {
            return Err(StateError::Limit(format!(
                "a value may be at most {MAX_VALUE_BYTES} bytes of JSON; this one is {size}"
            )));
        }
        Ok(size)
    }

    /// Stores `value` (`value_size` bytes of JSON) at `key`, within the
    /// namespace's caps on keys and bytes (expired entries are dropped to
    /// make room first).
    fn insert(
        &self,
        space: &mut Space,
        key: &str,
        value: Value,
        value_size: usize,
        ttl: Option<Duration>,
    ) -> Result<u64, StateError> {
        let size = key.len() + value_size;
        let fits = |s: &Space| {
            let old = s.entries.get(key).map(|e| e.size);
            let keys_ok = old.is_some() || s.entries.len() < MAX_KEYS;
            let bytes_ok = s.bytes - old.unwrap_or(0) + size <= MAX_NAMESPACE_BYTES;
            (keys_ok, bytes_ok)
        };
        if fits(space) != (true, true) {
            space.purge(Instant::now());
            match fits(space) {
                (false, _) => {
                    return Err(StateError::Limit(format!(
                        "the namespace holds {MAX_KEYS} keys, its maximum; delete some or set TTLs"
                    )));
                }
                (_, false) => {
                    return Err(StateError::Limit(format!(
                        "the namespace holds {} bytes of keys and values; {size} more would pass its maximum of {MAX_NAMESPACE_BYTES}; delete some or set TTLs",
                        space.bytes
                    )));
                }
                _ => {}
            }
        }
        let version = self.next_version();
        let expires = ttl.map(|t| Instant::now() + t);
        // An existing key is updated in place: no second copy of the key,
        // no tree rebalancing (counters and buckets are written per request).
        if let Some(e) = space.entries.get_mut(key) {
            let old = e.size;
            *e = StateEntry {
                value,
                version,
                expires,
                size,
            };
            space.bytes = space.bytes - old + size;
            return Ok(version);
        }
        space.bytes += size;
        space.entries.insert(
            key.to_owned(),
            StateEntry {
                value,
                version,
                expires,
                size,
            },
        );
        Ok(version)
    }

    /// Rewrites the live entry at `key` in place with `change`, which says
    /// whether the value was of the shape it rewrites, as a value of
    /// `new_size` bytes of JSON; returns the new version. `None`, with the
    /// value untouched, when there is no live entry, or the namespace's cap
    /// would be passed (the caller then stores a whole new value, which
    /// reports that). `ttl` is the entry's new lifetime; `None` keeps its
    /// expiry. A value rewritten per request (a counter, a bucket) then
    /// allocates nothing.
    fn update_in_place(
        &self,
        space: &mut Space,
        key: &str,
        new_size: usize,
        ttl: Option<Duration>,
        change: impl FnOnce(&mut Value) -> bool,
    ) -> Option<u64> {
        let now = Instant::now();
        let size = key.len() + new_size;
        let e = space.entries.get_mut(key).filter(|e| e.live(now))?;
        if space.bytes - e.size + size > MAX_NAMESPACE_BYTES || !change(&mut e.value) {
            return None;
        }
        let old = std::mem::replace(&mut e.size, size);
        e.version = self.next_version();
        if let Some(ttl) = ttl {
            e.expires = Some(now + ttl);
        }
        space.bytes = space.bytes - old + size;
        Some(e.version)
    }

    /// The live entry at `key`.
    pub fn get<'n>(&self, ns: impl Into<Ns<'n>>, key: &str) -> Option<StateEntry> {
        let n = ns.into().space(self);
        let map = n.lock().unwrap_or_else(|p| p.into_inner());
        map.entries
            .get(key)
            .filter(|e| e.live(Instant::now()))
            .cloned()
    }

    /// Stores `value`; returns its version.
    pub fn set<'n>(
        &self,
        ns: impl Into<Ns<'n>>,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
    ) -> Result<u64, StateError> {
        let size = Self::check(key, Some(&value))?;
        let n = ns.into().space(self);
        let mut map = n.lock().unwrap_or_else(|p| p.into_inner());
        self.insert(&mut map, key, value, size, ttl)
    }

    /// Removes `key`; whether a live entry was there.
    pub fn delete<'n>(&self, ns: impl Into<Ns<'n>>, key: &str) -> bool {
        let n = ns.into().space(self);
        let mut map = n.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key).is_some_and(|e| e.live(Instant::now()))
    }

    /// Live entries whose key starts with `prefix`, in key order.
    pub fn list<'n>(&self, ns: impl Into<Ns<'n>>, prefix: &str, limit: usize) -> Vec<Value> {
        let n = ns.into().space(self);
        let mut map = n.lock().unwrap_or_else(|p| p.into_inner());
        map.purge(Instant::now());
        map.entries
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, e)| serde_json::json!({"key": k, "value": e.value, "version": e.version}))
            .collect()
    }

    /// Writes `value` only if the live entry's version is `expected` (0: only
    /// if absent). Returns whether it wrote, and the version now current.
    pub fn compare_and_swap<'n>(
        &self,
        ns: impl Into<Ns<'n>>,
        key: &str,
        expected: u64,
        value: Value,
        ttl: Option<Duration>,
    ) -> Result<(bool, u64), StateError> {
        let size = Self::check(key, Some(&value))?;
        let n = ns.into().space(self);
        let mut map = n.lock().unwrap_or_else(|p| p.into_inner());
        let current = map
            .entries
            .get(key)
            .filter(|e| e.live(Instant::now()))
            .map_or(0, |e| e.version);
        if current != expected {
            return Ok((false, current));
        }
        Ok((true, self.insert(&mut map, key, value, size, ttl)?))
    }

    /// Adds `by` to the integer at `key` (absent = 0), atomically. The TTL
    /// applies when the key is created, so a fixed window expires on time.
    pub fn increment<'n>(
        &self,
        ns: impl Into<Ns<'n>>,
        key: &str,
        by: i64,
        ttl: Option<Duration>,
    ) -> Result<(i64, u64), StateError> {
        Self::check(key, None)?;
        let n = ns.into().space(self);
        let mut map = n.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let live = map.entries.get(key).filter(|e| e.live(now));
        let (current, expires) = match live {
            Some(e) => (
                e.value.as_i64().ok_or_else(|| {
                    StateError::Type(format!("`{key}` holds {}, not an integer", e.value))
                })?,
                e.expires,
            ),
            None => (0, ttl.map(|t| now + t)),
        };
        let was_live = live.is_some();
        let sum = current.checked_add(by).ok_or_else(|| {
            StateError::Limit(format!(
                "incrementing `{key}` by {by} overflows a 64-bit integer"
            ))
        })?;
        let value = Value::from(sum);
        let size = json_size(&value);
        // A live counter is rewritten where it is (a counter per request, in
        // a namespace that may hold thousands of keys: two tree lookups
        // rather than the four of a whole new entry).
        if was_live
            && let Some(version) = self.update_in_place(&mut map, key, size, None, |v| {
                *v = value.clone();
                true
            })
        {
            return Ok((sum, version));
        }
        let version = self.insert(&mut map, key, value, size, None)?;
        if let Some(e) = map.entries.get_mut(key) {
            e.expires = expires;
        }
        Ok((sum, version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_and_ttl() {
        let s = StateStore::default();
        let (ok, v) = s
            .compare_and_swap("p", "k", 0, Value::from("a"), None)
            .unwrap();
        assert!(ok);
        assert_eq!(
            s.compare_and_swap("p", "k", 0, Value::from("b"), None)
                .unwrap(),
            (false, v)
        );
        assert!(
            s.compare_and_swap("p", "k", v, Value::from("b"), None)
                .unwrap()
                .0
        );
        s.set("p", "t", Value::from(1), Some(Duration::from_millis(1)))
            .unwrap();
        // Expiry is measured on `Instant`, and a sleep never ends early: at
        // least 3 ms pass, so the 1 ms entry is gone whatever the load.
        std::thread::sleep(Duration::from_millis(3));
        assert!(s.get("p", "t").is_none());
        assert_eq!(s.list("p", "", 10).len(), 1);
    }

    #[test]
    fn a_namespace_holds_a_bounded_number_of_bytes() {
        let s = StateStore::default();
        let big = Value::from("x".repeat(MAX_VALUE_BYTES - 2));
        let fit = MAX_NAMESPACE_BYTES / (MAX_VALUE_BYTES + 2);
        for i in 0..fit {
            s.set("p", &format!("k{i}"), big.clone(), None).unwrap();
        }
        let err = s.set("p", "one-more", big.clone(), None).unwrap_err();
        assert!(
            matches!(&err, StateError::Limit(m) if m.contains("bytes of keys and values")),
            "{err}"
        );
        // Replacing an entry counts only the difference; deleting frees room.
        s.set("p", "k0", big.clone(), None).unwrap();
        assert!(s.delete("p", "k1"));
        s.set("p", "one-more", big.clone(), None).unwrap();
        // Another plugin has its own budget.
        s.set("q", "k", big, None).unwrap();
    }

    #[test]
    fn an_increment_in_place_keeps_the_ttl_and_counts_its_bytes() {
        let s = StateStore::default();
        s.increment("p", "n", 5, Some(Duration::from_secs(60)))
            .unwrap();
        let before = s.get("p", "n").unwrap();
        let (sum, version) = s.increment("p", "n", 995, None).unwrap();
        let after = s.get("p", "n").unwrap();
        assert_eq!((sum, after.value.as_i64()), (1000, Some(1000)));
        assert!(version > before.version && after.version == version);
        assert_eq!(after.expires, before.expires);
        let n = s.namespace("p");
        let space = n.lock().unwrap();
        assert_eq!(space.bytes, "n".len() + "1000".len());
    }

    #[test]
    fn increment_refuses_non_integers() {
        let s = StateStore::default();
        s.set("p", "k", Value::from("x"), None).unwrap();
        assert!(matches!(
            s.increment("p", "k", 1, None),
            Err(StateError::Type(_))
        ));
    }
}
