//! Per-guest settings: limits, config, grants.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::grants::Grants;

/// Host-side data a guest's host functions work on, opaque to the engine
/// (the capabilities put their `GuestContext` here).
pub(crate) type GuestData = Arc<dyn std::any::Any + Send + Sync>;

/// Default cap on a guest's linear memory and on its memory-block arena.
pub const DEFAULT_MEMORY_LIMIT: usize = 64 << 20;

/// Default cap on the bytes an outbound HTTP response may bring into a guest
/// (the Extism default).
pub const DEFAULT_MAX_HTTP_RESPONSE_BYTES: u64 = 50 << 20;

/// Default cap on the bytes a guest may keep in vars (the Extism default).
pub const DEFAULT_MAX_VAR_BYTES: usize = 1 << 20;

/// Default rate of guest log lines per instance: lines per second.
pub const DEFAULT_LOG_LINES_PER_SECOND: u32 = 100;

/// Default burst of guest log lines per instance: lines logged at once after
/// a quiet spell, before the rate applies.
pub const DEFAULT_LOG_BURST: u32 = 200;

/// How one guest module runs: the Extism manifest's knobs plus Buntime's grants.
///
/// ```
/// use std::time::Duration;
/// use buntime::wasm::GuestOptions;
/// let opts = GuestOptions::new("hello")
///     .timeout(Duration::from_millis(200))
///     .memory_limit(16 << 20)
///     .config("greeting", "hi");
/// assert_eq!(opts.name(), "hello");
/// ```
#[derive(Debug, Clone)]
pub struct GuestOptions {
    pub(crate) name: Arc<str>,
    pub(crate) config: Arc<BTreeMap<String, String>>,
    pub(crate) grants: Arc<Grants>,
    pub(crate) memory_limit: usize,
    pub(crate) timeout: Option<Duration>,
    pub(crate) fuel: Option<u64>,
    pub(crate) max_var_bytes: usize,
    pub(crate) max_http_response_bytes: u64,
    pub(crate) context: Option<GuestData>,
    pub(crate) log_requires_grant: bool,
    pub(crate) log_rate: (u32, u32),
}

impl GuestOptions {
    /// Options with the defaults: nothing granted, 64 MiB of memory, no
    /// timeout, no fuel limit.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            config: Arc::default(),
            grants: Arc::default(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            timeout: None,
            fuel: None,
            max_var_bytes: DEFAULT_MAX_VAR_BYTES,
            max_http_response_bytes: DEFAULT_MAX_HTTP_RESPONSE_BYTES,
            context: None,
            log_requires_grant: false,
            log_rate: (DEFAULT_LOG_LINES_PER_SECOND, DEFAULT_LOG_BURST),
        }
    }

    /// The guest's name, used in logs and errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a read-only config entry (`config_get`).
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config).insert(key.into(), value.into());
        self
    }

    /// Replaces the grants.
    pub fn grants(mut self, grants: Grants) -> Self {
        self.grants = Arc::new(grants);
        self
    }

    /// Caps linear memory and the memory-block arena, each, at `bytes`.
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Each call traps when it runs longer than this.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Each call traps after executing this much fuel. Only effective on an
    /// engine built with fuel metering enabled.
    pub fn fuel(mut self, fuel: u64) -> Self {
        self.fuel = Some(fuel);
        self
    }

    /// Caps the bytes kept in vars; 0 disables `var_set`.
    pub fn max_var_bytes(mut self, bytes: usize) -> Self {
        self.max_var_bytes = bytes;
        self
    }

    /// Caps the body an outbound HTTP response may bring in.
    pub fn max_http_response_bytes(mut self, bytes: u64) -> Self {
        self.max_http_response_bytes = bytes;
        self
    }

    /// Attaches the data that capability host functions work on (for
    /// plugins, the capabilities' `GuestContext`); one per guest.
    pub fn context<T: std::any::Any + Send + Sync>(mut self, context: Arc<T>) -> Self {
        self.context = Some(context);
        self
    }

    /// Makes `log_*` calls need the `log` grant (plugins); without it they
    /// are dropped and counted as denials.
    pub fn log_requires_grant(mut self, on: bool) -> Self {
        self.log_requires_grant = on;
        self
    }

    /// Limits each instance's `log_*` lines to `per_second` on average and
    /// `burst` at once; lines past the limit are dropped and counted, and
    /// one line saying how many were dropped is logged when logging
    /// resumes. A `per_second` of 0 lifts the limit.
    pub fn log_rate(mut self, per_second: u32, burst: u32) -> Self {
        self.log_rate = (per_second, burst);
        self
    }

    /// The attached data, if it is a `T`.
    pub fn guest_context<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.context.clone()?.downcast::<T>().ok()
    }
}
