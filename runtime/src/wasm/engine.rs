//! The one shared wasmtime engine: configuration, pooling, the epoch ticker,
//! the linker with every host function, and module loading.
//!
//! There is exactly one [`Engine`] per process. It owns:
//! - a `wasmtime::Engine` with the pooling instance allocator sized from the
//!   machine (falling back to on-demand allocation when the address space
//!   cannot hold the pool), copy-on-write memory images and epoch interruption;
//! - a single ticker thread that advances the epoch, so deadlines cost one
//!   thread in total rather than one per call;
//! - a `Linker` holding `extism:host/env`, WASI preview 1 and the registered
//!   `extism:host/user` functions, built once and shared by every module;
//! - the on-disk cache of compiled modules.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig};

use super::abi;
use super::cache::ModuleCache;
use super::error::LoadError;
use super::host_fn::HostFunction;
use super::loaded_code::{CodeTable, LoadedCode};
use super::module::{GuestModule, ModuleOrigin};
use super::options::GuestOptions;
use super::state::HostState;
use super::stats::EngineStats;
use super::sync_call::LongDirectCalls;
use super::ticker::Ticker;

/// How often the epoch advances; deadlines are noticed within one tick.
pub const DEFAULT_EPOCH_TICK: Duration = Duration::from_millis(5);

/// How guest instances get their memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Pooling allocator with this many instance slots.
    Pooling {
        /// Slots, i.e. the most instances alive at once.
        slots: u32,
    },
    /// Memory is mapped per instance (the fallback).
    OnDemand,
}

/// Settings for [`Engine::new`].
///
/// ```
/// use buntime::wasm::EngineConfig;
/// let config = EngineConfig::default().fuel(true);
/// assert!(config.cache_dir.is_none());
/// ```
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where compiled modules are cached; `None` disables the cache.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Instance slots for the pooling allocator; `None` sizes it from the machine.
    pub slots: Option<u32>,
    /// Largest linear memory any single guest may have (the pool's slot size).
    pub max_memory: usize,
    /// Disable pooling altogether (mostly for tests of the fallback).
    pub pooling: bool,
    /// Enable fuel metering so [`GuestOptions::fuel`] takes effect. Costs
    /// throughput, so it is off by default.
    pub fuel: bool,
    /// Bounds-check linear memory with guard pages and signal handlers
    /// instead of explicit checks. Off by default: with guard pages, every
    /// instance that grew its memory must have the growth mprotect-ed away
    /// again before its slot is reused, and that TLB shootdown is most of
    /// what a fresh instance per request (`ttl: 0`) costs; the explicit
    /// checks cost compute-heavy guests a few percent. `RUNTIME_WASM_GUARD_PAGES=1`.
    /// (Plugins run on a sibling engine with guard pages either way:
    /// [`Engine::for_long_lived_guests`].)
    pub guard_pages: bool,
    /// Write `/tmp/perf-<pid>.map` naming every compiled guest function, so
    /// `perf` shows guest frames by name (guests built with their name
    /// section, e.g. Rust with `strip = false`). `RUNTIME_WASM_PERF_MAP=1`.
    pub perf_map: bool,
    /// Epoch tick.
    pub epoch_tick: Duration,
    /// Host functions offered to guests in `extism:host/user`.
    pub host_functions: Vec<HostFunction>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            slots: None,
            max_memory: 256 << 20,
            pooling: true,
            fuel: false,
            guard_pages: false,
            perf_map: false,
            epoch_tick: DEFAULT_EPOCH_TICK,
            host_functions: Vec::new(),
        }
    }
}

impl EngineConfig {
    /// Sets the compiled-module cache directory.
    pub fn cache_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Enables or disables fuel metering.
    pub fn fuel(mut self, on: bool) -> Self {
        self.fuel = on;
        self
    }

    /// Registers a host function in `extism:host/user`.
    pub fn host_function(mut self, f: HostFunction) -> Self {
        self.host_functions.push(f);
        self
    }
}

/// State shared by the engine and every store.
#[derive(Debug)]
pub(crate) struct EngineShared {
    pub(crate) stats: EngineStats,
    pub(crate) http: reqwest::Client,
    /// The same, connecting to public addresses only.
    pub(crate) http_public: reqwest::Client,
    pub(crate) fuel: bool,
    /// The `extism:host/user` functions that may wait (async).
    pub(crate) waiting_functions: std::collections::HashSet<&'static str>,
    /// Lives as long as any module or instance does, not just the `Engine`.
    pub(crate) ticker: Ticker,
    /// Direct calls running long right now (see `wasm/sync_call.rs`).
    pub(crate) long_direct: LongDirectCalls,
    /// Log records for the plugins that subscribe to them.
    pub(crate) log_feed: crate::log_feed::LogFeed,
    /// The wall clock guests read through WASI.
    pub(crate) guest_clock: super::GuestClock,
}

/// The process-wide WASM engine. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    /// What it was built with (a sibling is built from the same).
    config: EngineConfig,
    engine: wasmtime::Engine,
    linker: Linker<HostState>,
    cache: Option<ModuleCache>,
    /// The compiled code of the modules loaded now, shared by identical bytes.
    code: CodeTable,
    shared: Arc<EngineShared>,
    allocation: Allocation,
    /// The sibling for long-lived guests, built on first use; `None` when
    /// it could not be (this engine serves them: not stored here, which
    /// would make the engine own itself).
    long_lived: OnceLock<Option<Engine>>,
}

impl std::fmt::Debug for EngineInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("allocation", &self.allocation)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Builds the engine, probing whether the pooling allocator fits.
    pub fn new(config: EngineConfig) -> Result<Self, LoadError> {
        let (engine, allocation) = Self::wasmtime_engine(&config)?;
        // No proxies from the environment: a proxy would resolve names
        // itself and undo the private-address check.
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| LoadError::Engine(e.into()))?;
        let http_public = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(crate::grants::PublicOnlyResolver))
            .build()
            .map_err(|e| LoadError::Engine(e.into()))?;
        let shared = Arc::new(EngineShared {
            stats: EngineStats::default(),
            http,
            http_public,
            fuel: config.fuel,
            waiting_functions: config
                .host_functions
                .iter()
                .filter(|f| f.waits())
                .map(|f| f.name())
                .collect(),
            ticker: Ticker::start(engine.clone(), config.epoch_tick)?,
            long_direct: LongDirectCalls::default(),
            log_feed: crate::log_feed::LogFeed::default(),
            guest_clock: super::GuestClock::default(),
        });
        Self::over(config, engine, allocation, shared)
    }

    /// An engine for guests whose instances live long — the plugins' — that
    /// checks their memory bounds with guard pages instead of explicit
    /// checks, over the same shared state as this one (counters, HTTP
    /// clients, log feed, clocks; the same thread ticks its epoch).
    ///
    /// Guard pages cost an `mprotect` (a TLB shootdown on every core) when
    /// a grown instance's slot is reused, which is why apps (a fresh
    /// instance per request with `ttl: 0`) run with explicit checks; an
    /// instance that serves request after request is rarely replaced, and
    /// then each of its memory accesses skips a check (a proxied request
    /// ran about 6 % fewer instructions). Compiled code is the engine's own,
    /// so a module is compiled (or cached) once per engine. Built once, on
    /// the first call; this engine itself when it already uses guard pages,
    /// or (with a warning) when the sibling cannot be built.
    ///
    /// ```
    /// use buntime::wasm::{Engine, EngineConfig};
    /// let apps = Engine::new(EngineConfig::default()).unwrap();
    /// let plugins = apps.for_long_lived_guests();
    /// assert!(!apps.uses_guard_pages() && plugins.uses_guard_pages());
    /// assert!(std::ptr::eq(apps.stats(), plugins.stats()));
    /// // Built once: the same engine on every call.
    /// assert!(std::ptr::eq(plugins.wasmtime(), apps.for_long_lived_guests().wasmtime()));
    /// ```
    pub fn for_long_lived_guests(&self) -> Engine {
        if self.inner.config.guard_pages {
            return self.clone();
        }
        let build = || {
            let config = EngineConfig {
                guard_pages: true,
                ..self.inner.config.clone()
            };
            let sibling = Self::wasmtime_engine(&config).and_then(|(engine, allocation)| {
                let shared = self.inner.shared.clone();
                shared.ticker.tick_also(engine.clone());
                Self::over(config, engine, allocation, shared)
            });
            sibling
                .inspect_err(|e| {
                    tracing::warn!(
                        error = %e,
                        "cannot build the guard-paged engine for plugins; they run on the apps' engine (explicit bounds checks)"
                    );
                })
                .ok()
        };
        let sibling = self.inner.long_lived.get_or_init(build);
        sibling.clone().unwrap_or_else(|| self.clone())
    }

    /// Whether guest memory is bounds-checked by guard pages (else by
    /// explicit checks in the compiled code).
    pub fn uses_guard_pages(&self) -> bool {
        self.inner.config.guard_pages
    }

    /// The wasmtime engine `config` asks for: pooling if asked and it
    /// fits, else on-demand allocation.
    fn wasmtime_engine(config: &EngineConfig) -> Result<(wasmtime::Engine, Allocation), LoadError> {
        if !config.pooling {
            return Ok((Self::on_demand(config)?, Allocation::OnDemand));
        }
        let slots = config.slots.unwrap_or_else(default_slots);
        match wasmtime::Engine::new(&wasmtime_config(config, Some(slots))) {
            Ok(e) => Ok((e, Allocation::Pooling { slots })),
            Err(err) => {
                tracing::warn!(
                    error = %format!("{err:#}"),
                    slots,
                    "the pooling allocator does not fit in this address space; falling back to on-demand allocation (slower instantiation)"
                );
                Ok((Self::on_demand(config)?, Allocation::OnDemand))
            }
        }
    }

    /// The engine around `engine`: its linker, cache and code table, over
    /// `shared`.
    fn over(
        config: EngineConfig,
        engine: wasmtime::Engine,
        allocation: Allocation,
        shared: Arc<EngineShared>,
    ) -> Result<Self, LoadError> {
        let mut linker = Linker::new(&engine);
        abi::link(&mut linker, &config.host_functions).map_err(|e| LoadError::Engine(e.into()))?;
        let cache = config
            .cache_dir
            .as_ref()
            .and_then(|dir| ModuleCache::open(dir.clone(), &engine));
        Ok(Self {
            inner: Arc::new(EngineInner {
                config,
                engine,
                linker,
                cache,
                code: CodeTable::default(),
                shared,
                allocation,
                long_lived: OnceLock::new(),
            }),
        })
    }

    fn on_demand(config: &EngineConfig) -> Result<wasmtime::Engine, LoadError> {
        wasmtime::Engine::new(&wasmtime_config(config, None))
            .map_err(|e| LoadError::Engine(e.into()))
    }

    /// How instances get their memory (pooling, or the fallback).
    pub fn allocation(&self) -> Allocation {
        self.inner.allocation
    }

    /// Counters: compilations, cache hits, instances, traps, denials.
    pub fn stats(&self) -> &EngineStats {
        &self.inner.shared.stats
    }

    /// The log feed its guests write to (and the host's own records join).
    pub fn log_feed(&self) -> &crate::log_feed::LogFeed {
        &self.inner.shared.log_feed
    }

    /// The underlying wasmtime engine.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }

    /// The wall clock this engine's guests read through WASI (tests move it
    /// forward to expire what guests time by it).
    pub fn guest_clock(&self) -> &super::GuestClock {
        &self.inner.shared.guest_clock
    }

    /// Compiles (or loads from the cache) a module and prepares it for fast
    /// instantiation. Fails if the bytes are not a module or if it imports
    /// anything the host does not provide.
    pub fn load(&self, wasm: &[u8], options: GuestOptions) -> Result<GuestModule, LoadError> {
        let name = options.name.clone();
        if options.memory_limit > self.inner.config.max_memory {
            return Err(LoadError::Options {
                guest: name.to_string(),
                message: format!(
                    "memory limit of {} bytes exceeds the engine's per-instance maximum of {} bytes (raise `EngineConfig::max_memory`)",
                    options.memory_limit, self.inner.config.max_memory
                ),
            });
        }
        // Before the cache, so that a module compiled by a newer host that
        // shares the cache directory is refused here too.
        let binary = wat::parse_bytes(wasm).unwrap_or(std::borrow::Cow::Borrowed(wasm));
        super::check_abi_version(&binary).map_err(|cause| LoadError::AbiVersion {
            guest: name.to_string(),
            cause,
        })?;
        let sha256: [u8; 32] = Sha256::digest(wasm).into();
        let stats = &self.inner.shared.stats;

        if let Some(code) = self.inner.code.get(&sha256) {
            stats.shared.add(1);
            return Ok(GuestModule::new(
                code,
                options,
                ModuleOrigin::Shared,
                sha256,
                self.inner.shared.clone(),
            ));
        }

        let cached = match &self.inner.cache {
            Some(cache) => cache.load(&self.inner.engine, &sha256, stats),
            None => None,
        };
        // Only modules the rewrite produced get an arena memory attached;
        // the cache holds nothing else.
        let (module, origin, rewritten) = match cached {
            Some(m) => (m, ModuleOrigin::DiskCache, true),
            None => {
                // Bytes the rewrite cannot take go to wasmtime as they are:
                // its error says precisely what is wrong with them, and a
                // valid module it accepts still runs (its memory accessors
                // stay host calls, over an arena in host memory).
                let started = std::time::Instant::now();
                let rewritten = super::rewrite::rewrite_module(&binary);
                if let Err(e) = &rewritten {
                    tracing::debug!(guest = %name, error = %e, "module not rewritten");
                }
                let bytes = rewritten.as_deref().unwrap_or(&binary);
                let module =
                    Module::new(&self.inner.engine, bytes).map_err(|e| LoadError::Compile {
                        guest: name.to_string(),
                        cause: e.into(),
                    })?;
                stats.compiled.add(1);
                stats.compile_time.observe(started.elapsed());
                if let Some(cache) = &self.inner.cache
                    && rewritten.is_ok()
                {
                    cache.store(&sha256, &module);
                }
                (module, ModuleOrigin::Compiled, rewritten.is_ok())
            }
        };

        let pre = self
            .inner
            .linker
            .instantiate_pre(&module)
            .map_err(|e| LoadError::Link {
                guest: name.to_string(),
                cause: e.into(),
            })?;
        let code = Arc::new(LoadedCode {
            module,
            pre,
            rewritten,
            binary_heads: super::binary_heads(&binary),
        });
        self.inner.code.insert(sha256, &code);
        Ok(GuestModule::new(
            code,
            options,
            origin,
            sha256,
            self.inner.shared.clone(),
        ))
    }

    /// Distinct compiled modules in use: modules loaded from identical
    /// bytes share one (`wasm/loaded_code.rs`).
    pub fn compiled_modules(&self) -> usize {
        self.inner.code.len()
    }

    /// Loads a module from a file; errors name the path.
    pub fn load_file(
        &self,
        path: &std::path::Path,
        options: GuestOptions,
    ) -> Result<GuestModule, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.load(&bytes, options)
    }
}

/// Size of the instance pool: one slot per 16 MiB of RAM, between 64 and 1000.
fn default_slots() -> u32 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(16 << 30);
    (total / (16 << 20)).clamp(64, 1000) as u32
}

fn wasmtime_config(config: &EngineConfig, slots: Option<u32>) -> wasmtime::Config {
    let mut c = wasmtime::Config::new();
    c.epoch_interruption(true)
        .consume_fuel(config.fuel)
        .memory_init_cow(true)
        // Lets the rewrite's small accessors (rewrite.rs) be compiled into
        // the guest's loops rather than called.
        .compiler_inlining(wasmtime::Inlining::Yes)
        // No wasm backtrace on traps: with inlined code, capturing one took
        // wasmtime up to a second per trap in a debug build, and a guest can
        // trap at will. The trap itself (its code and message) is kept.
        .wasm_backtrace_max_frames(None)
        .max_wasm_stack(512 << 10);
    if config.perf_map {
        c.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if !config.guard_pages {
        // Explicit bounds checks: no protections to reset when a slot is reused.
        c.signals_based_traps(false).memory_guard_size(0);
    }
    if let Some(slots) = slots {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(slots)
            // Each instance has its own memory and the arena's (rewrite.rs).
            .total_memories(slots.saturating_mul(2))
            .max_memories_per_module(2)
            .total_tables(slots)
            .total_stacks(slots)
            .max_memory_size(config.max_memory)
            // Keep a little of each slot resident so reuse does not fault it in again.
            // A reused slot is reset in place for its first 2 MiB (a Rust
            // guest's 1 MiB stack, data and first heap pages) rather than
            // unmapped: with PAGEMAP_SCAN (Linux 6.7+) only the pages the
            // last instance dirtied are restored, and they stay resident, so
            // the next instance neither faults them in nor costs an madvise.
            // Without it the reset would be a memset of the whole window, so
            // older kernels keep only 64 KiB.
            .linear_memory_keep_resident(if pagemap_scan_likely() {
                2 << 20
            } else {
                64 << 10
            })
            .pagemap_scan(wasmtime::Enabled::Auto)
            .table_keep_resident(16 << 10)
            // What lies beyond is returned to the kernel in batches.
            .decommit_batch_size(16);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    c
}

/// Whether the kernel has PAGEMAP_SCAN (Linux 6.7 or later). wasmtime
/// probes the ioctl itself (`Enabled::Auto`); this only sizes the window
/// that is reset in place.
fn pagemap_scan_likely() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 7)
}
