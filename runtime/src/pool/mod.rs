//! The worker pool: one [`AppPool`] per app version, an LRU over them.
//!
//! At most `RUNTIME_POOL_SIZE` app versions keep compiled modules and warm
//! instances; the least recently used is evicted (its idle instances get
//! `on_terminate`). A background task reclaims idle instances. Because a pool
//! hands out its most recently used idle instance first (LIFO), a steady load
//! keeps reusing the same few instances and the surplus really does go idle and
//! get reclaimed, rather than every instance being touched just often enough
//! to never expire.

mod app_pool;
mod view;

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;

pub use app_pool::{AppPool, AppStats, IdleInstance, PoolError};

use crate::capabilities::{Capability, EventBus, GrantContext, Grants};
use crate::config::AppConfig;
use crate::routing::AppVersion;
use crate::wasm::{Engine, GuestOptions};

/// Every warm app version, bounded by an LRU.
#[derive(Debug)]
pub struct Pools {
    engine: Engine,
    lru: Mutex<LruCache<String, Warm>>,
    capacity: usize,
    events: std::sync::OnceLock<EventBus>,
    /// App versions evicted so far.
    pub evictions: std::sync::atomic::AtomicU64,
    /// Evictions by app version (`name@version`), kept after the version
    /// has left the pool; bounded by the versions installed.
    evicted: Mutex<std::collections::BTreeMap<String, u64>>,
}

/// A warm app version and the identity of the dir it was loaded from.
#[derive(Debug, Clone)]
struct Warm {
    source: Option<(u64, u64)>,
    pool: Arc<AppPool>,
}

/// Why an app could not be loaded into the pool.
#[derive(Debug, thiserror::Error)]
pub enum LoadAppError {
    /// The app's `worker.jsonc` is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The module could not be loaded.
    #[error(transparent)]
    Module(#[from] crate::wasm::LoadError),
    /// The app's `capabilities` are invalid.
    #[error("`{0}`: worker.jsonc `capabilities`: {1}")]
    Grants(String, crate::capabilities::GrantError),
    /// The module could not be read from the app dir.
    #[error("`{0}`: cannot read the module: {1}")]
    Read(String, crate::routing::OpenError),
    /// The compile task failed.
    #[error("compiling `{0}` was interrupted")]
    Interrupted(String),
}

impl Pools {
    /// A pool registry keeping at most `capacity` app versions.
    pub fn new(engine: Engine, capacity: usize) -> Arc<Self> {
        let cap = NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Arc::new(Self {
            engine,
            lru: Mutex::new(LruCache::new(cap)),
            capacity: cap.get(),
            events: std::sync::OnceLock::new(),
            evictions: Default::default(),
            evicted: Default::default(),
        })
    }

    /// Publishes instance lifecycle events (`worker_spawn`, `worker_terminate`)
    /// on `bus` from now on. Set once.
    pub fn set_events(&self, bus: EventBus) {
        let _ = self.events.set(bus);
    }

    /// The engine apps run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// How many app versions are kept warm at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The pool of `app`, loading (compiling off the async threads) on a miss.
    /// `module_file` is relative to the app's dir and is read below it (see
    /// [`crate::routing::AppDir`]), so a symlink leading out is never run.
    pub async fn get(
        &self,
        app: &AppVersion,
        module_file: &std::path::Path,
        config: &AppConfig,
    ) -> Result<Arc<AppPool>, LoadAppError> {
        let source = app.identity();
        if let Some(pool) = self
            .lru
            .lock()
            .ok()
            .and_then(|mut l| l.get(app.key()).cloned())
            // A dir replaced under the same name is loaded again.
            .filter(|w| source.is_none() || w.source == source)
        {
            return Ok(pool.pool);
        }
        let key = app.key().to_owned();
        let engine = self.engine.clone();
        let file = module_file.to_owned();
        let app_owned = app.clone();
        let mut options = GuestOptions::new(key.as_str())
            .timeout(config.timeout)
            .memory_limit(config.memory as usize);
        for (k, v) in &config.env {
            options = options.config(k.clone(), v.clone());
        }
        // Apps may always log; outbound HTTP they declare in worker.jsonc.
        // (The other capabilities belong to plugins, which have an identity
        // for state, events and services.)
        if let Some(other) = config
            .capabilities
            .keys()
            .find(|k| *k != "http" && *k != "log")
        {
            return Err(LoadAppError::Grants(
                key.clone(),
                crate::capabilities::GrantError::Invalid {
                    capability: other.clone(),
                    reason: "apps may declare `http` and `log`; the others are for plugins".into(),
                },
            ));
        }
        let declared = serde_json::Value::Object(config.capabilities.clone().into_iter().collect());
        let grants = Grants::parse(&declared, &GrantContext::default())
            .map_err(|e| LoadAppError::Grants(key.clone(), e))?
            .with(Capability::LOG);
        options = options.grants(grants);
        let read_key = key.clone();
        let module = tokio::task::spawn_blocking(move || {
            let bytes = app_owned
                .open_dir()
                .and_then(|dir| dir.read(&file))
                .map_err(|e| LoadAppError::Read(read_key, e))?;
            engine.load(&bytes, options).map_err(LoadAppError::from)
        })
        .await
        .map_err(|_| LoadAppError::Interrupted(key.clone()))??;
        let pool = AppPool::with_events(
            key.clone(),
            module,
            config.clone(),
            self.events.get().cloned(),
        );
        let warm = Warm {
            source,
            pool: pool.clone(),
        };
        let pushed_out = match self.lru.lock() {
            Ok(mut lru) => {
                if let Some(existing) = lru.get(&key).filter(|w| w.source == source) {
                    return Ok(existing.pool.clone());
                }
                lru.push(key.clone(), warm)
            }
            Err(_) => None,
        };
        if let Some((k, old)) = pushed_out {
            // Another version evicted, or this one's replaced dir.
            if k != key {
                self.evictions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Ok(mut evicted) = self.evicted.lock() {
                    *evicted.entry(k).or_default() += 1;
                }
            }
            tokio::spawn(async move { old.pool.drain().await });
        }
        Ok(pool)
    }

    /// Forgets a cached app version (e.g. after its files changed).
    pub fn forget(&self, key: &str) -> Option<Arc<AppPool>> {
        self.lru
            .lock()
            .ok()
            .and_then(|mut l| l.pop(key))
            .map(|w| w.pool)
    }

    /// How often each app version (`name@version`) was evicted, for those
    /// evicted at least once.
    pub fn evictions_by_version(&self) -> Vec<(String, u64)> {
        self.evicted
            .lock()
            .map(|e| e.iter().map(|(k, n)| (k.clone(), *n)).collect())
            .unwrap_or_default()
    }

    /// Every warm app version.
    pub fn snapshot(&self) -> Vec<Arc<AppPool>> {
        self.lru
            .lock()
            .map(|l| l.iter().map(|(_, w)| w.pool.clone()).collect())
            .unwrap_or_default()
    }

    /// Reclaims idle instances in every pool; returns how many.
    pub async fn reclaim(&self) -> usize {
        let mut n = 0;
        for pool in self.snapshot() {
            n += pool.reclaim().await;
        }
        n
    }

    /// Runs [`Pools::reclaim`] every `every` until the returned handle is dropped or aborted.
    pub fn spawn_reclaimer(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let pools = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pools) = pools.upgrade() else { break };
                pools.reclaim().await;
            }
        })
    }

    /// Retires every idle instance of every pool (shutdown).
    pub async fn shutdown(&self) {
        for pool in self.snapshot() {
            pool.drain().await;
        }
    }
}
