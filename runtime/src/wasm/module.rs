//! A compiled, linked guest module, ready to instantiate in microseconds.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use wasmtime::{Extern, ExternType, Module, ModuleExport, Store, ValType};

use super::engine::EngineShared;
use super::error::CallError;
use super::instance::GuestInstance;
use super::loaded_code::LoadedCode;
use super::options::GuestOptions;
use super::state::HostState;
use super::sync_call::{SlowGuests, run_direct, stack_allows};

/// Where a module's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleOrigin {
    /// Compiled from WASM bytes by this process.
    Compiled,
    /// Loaded from the on-disk cache (no compilation).
    DiskCache,
    /// The code of a module with the same bytes loaded earlier, still in
    /// use, shared (no compilation, no second copy in memory).
    Shared,
}

/// A loaded module: compiled code plus an `InstancePre` with every import
/// resolved, shared by all its instances. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GuestModule {
    inner: Arc<ModuleInner>,
}

struct ModuleInner {
    /// The compiled code, shared with every module of the same bytes.
    code: Arc<LoadedCode>,
    options: GuestOptions,
    origin: ModuleOrigin,
    sha256: [u8; 32],
    exports: BTreeSet<String>,
    /// Exports callable through the Extism ABI, with their result count (0 or 1).
    callable: HashMap<String, usize>,
    /// Whether the module imports host functions that await (HTTP, Buntime's
    /// own async ones, WASI's file functions other than `fd_write`).
    awaits: bool,
    /// Whether the module imports `buntime_request_client`.
    reads_client: bool,
    /// Whether the module imports a `log_*` function.
    logs: bool,
    /// The exports sent the binary request head.
    binary_heads: super::BinaryHeads,
    wasi: bool,
    /// The rewrite's arena memory (`rewrite.rs`), found once here rather
    /// than by name at every instantiation; `None` if the module is not the
    /// rewrite's output (the arena then lives in host memory).
    arena: Option<ModuleExport>,
    /// The guest's exported `memory` (its size is read for cost
    /// accounting), and the runtime initializer its toolchain exports
    /// (`_initialize` or `__wasm_call_ctors`, taking and returning
    /// nothing), found once here: by name, each instantiation paid a hash
    /// of the name per lookup.
    memory: Option<ModuleExport>,
    initializer: Option<ModuleExport>,
    /// Whether a direct call once ran for more than an epoch tick.
    slow: SlowGuests,
    shared: Arc<EngineShared>,
}

impl std::fmt::Debug for ModuleInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestModule")
            .field("name", &self.options.name)
            .field("origin", &self.origin)
            .field("exports", &self.exports)
            .field("wasi", &self.wasi)
            .finish_non_exhaustive()
    }
}

impl GuestModule {
    pub(crate) fn new(
        code: Arc<LoadedCode>,
        options: GuestOptions,
        origin: ModuleOrigin,
        sha256: [u8; 32],
        shared: Arc<EngineShared>,
    ) -> Self {
        let module = &code.module;
        let exports = module
            .exports()
            .filter(|e| matches!(e.ty(), ExternType::Func(_)))
            .map(|e| e.name().to_owned())
            .collect();
        let callable = module
            .exports()
            .filter_map(|e| match e.ty() {
                ExternType::Func(f) if f.params().len() == 0 => {
                    let results: Vec<ValType> = f.results().collect();
                    match results.as_slice() {
                        [] => Some((e.name().to_owned(), 0)),
                        [ValType::I32] => Some((e.name().to_owned(), 1)),
                        _ => None,
                    }
                }
                _ => None,
            })
            .collect();
        let wasi = module
            .imports()
            .any(|i| i.module() == super::abi::wasi::NAMESPACE);
        let awaits = module.imports().any(|i| match i.module() {
            super::host_fn::USER_NAMESPACE => shared.waiting_functions.contains(i.name()),
            super::abi::ENV_NAMESPACE => i.name() == "http_request",
            super::abi::wasi::NAMESPACE => super::abi::wasi::waits(i.name()),
            _ => false,
        });
        let reads_client = module.imports().any(|i| {
            i.module() == super::host_fn::USER_NAMESPACE && i.name() == super::abi::REQUEST_CLIENT
        });
        let logs = module
            .imports()
            .any(|i| i.module() == super::abi::ENV_NAMESPACE && i.name().starts_with("log_"));
        // A module the rewrite refused keeps its own exports, whatever
        // their names: none of its memories is the arena.
        let arena = code
            .rewritten
            .then(|| module.get_export_index(super::ARENA_EXPORT))
            .flatten();
        let memory = match module.get_export("memory") {
            Some(ExternType::Memory(_)) => module.get_export_index("memory"),
            _ => None,
        };
        let binary_heads = code.binary_heads;
        let initializer = ["_initialize", "__wasm_call_ctors"]
            .into_iter()
            .find(|name| match module.get_export(name) {
                Some(ExternType::Func(f)) => f.params().len() == 0 && f.results().len() == 0,
                _ => false,
            })
            .and_then(|name| module.get_export_index(name));
        Self {
            inner: Arc::new(ModuleInner {
                arena,
                memory,
                initializer,
                code,
                options,
                origin,
                sha256,
                exports,
                callable,
                awaits,
                reads_client,
                logs,
                binary_heads,
                wasi,
                slow: SlowGuests::default(),
                shared,
            }),
        }
    }

    /// The guest's name.
    pub fn name(&self) -> &str {
        self.inner.options.name()
    }

    /// Whether the module was compiled now, loaded from the cache or shares
    /// the code of an identical module.
    pub fn origin(&self) -> ModuleOrigin {
        self.inner.origin
    }

    /// The sha256 of the module's WASM bytes.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.inner.sha256
    }

    /// Whether the module exports a function called `name`.
    pub fn has_export(&self, name: &str) -> bool {
        self.inner.exports.contains(name)
    }

    /// The names of the module's exported functions.
    pub fn exports(&self) -> impl Iterator<Item = &str> {
        self.inner.exports.iter().map(String::as_str)
    }

    /// The result count (0 or 1) of an export callable through the ABI.
    pub(crate) fn callable(&self, name: &str) -> Option<usize> {
        self.inner.callable.get(name).copied()
    }

    /// Whether calls may park in an awaiting host function (then a timer,
    /// not only the epoch, must bound them).
    pub(crate) fn awaits(&self) -> bool {
        self.inner.awaits
    }

    /// The guest's exported `memory`, if it exports one.
    pub(crate) fn memory_export(&self) -> Option<&ModuleExport> {
        self.inner.memory.as_ref()
    }

    /// The runtime initializer to call once per instance, if any.
    pub(crate) fn initializer(&self) -> Option<&ModuleExport> {
        self.inner.initializer.as_ref()
    }

    /// Whether a call may run without a fiber now (see `wasm/sync_call.rs`).
    pub(crate) fn runs_direct(&self) -> bool {
        !self.inner.awaits && !self.inner.slow.is_slow() && stack_allows()
    }

    /// Remembers that a direct call ran for more than a tick: later calls
    /// use the fiber, where a busy guest yields its worker.
    pub(crate) fn mark_slow(&self) {
        if !self.inner.slow.is_slow() {
            tracing::debug!(guest = %self.name(), "a call ran for more than an epoch tick; later calls run on a fiber");
        }
        self.inner.slow.mark_slow();
    }

    /// Whether the module reads the request's client
    /// (`buntime_request_client`): only then does a caller resolve it.
    pub fn reads_client(&self) -> bool {
        self.inner.reads_client
    }

    /// The exports that declare they read the binary request head
    /// (`buntime_pdk::head_binary`, `docs/abi.md` §14): they are sent that
    /// in place of JSON.
    pub fn binary_heads(&self) -> super::BinaryHeads {
        self.inner.binary_heads
    }

    /// Whether the module can log (imports a `log_*` function): only then
    /// are its calls tagged for the log feed.
    pub fn logs(&self) -> bool {
        self.inner.logs
    }

    /// The log feed of the module's engine.
    pub fn log_feed(&self) -> &crate::log_feed::LogFeed {
        &self.inner.shared.log_feed
    }

    /// Whether the module imports WASI preview 1.
    pub fn uses_wasi(&self) -> bool {
        self.inner.wasi
    }

    /// The options the module was loaded with.
    pub fn options(&self) -> &GuestOptions {
        &self.inner.options
    }

    /// The underlying wasmtime module.
    pub fn wasmtime_module(&self) -> &Module {
        &self.inner.code.module
    }

    /// Creates a fresh instance and runs the guest's language runtime
    /// initializer (`_initialize` or `__wasm_call_ctors`) if it has one.
    pub async fn instantiate(&self) -> Result<GuestInstance, CallError> {
        let inner = &self.inner;
        let state = HostState::new(
            &inner.options,
            inner.options.name.clone(),
            inner.shared.clone(),
            inner.wasi,
        );
        let mut store = Store::new(inner.code.pre.module().engine(), state);
        store.limiter(|s| &mut s.limits);
        GuestInstance::configure_store(&mut store);
        // A start function runs here: it gets the module's deadline like
        // any call, so one that never returns costs only this request.
        let timeout = inner.options.timeout;
        store.data_mut().deadline = timeout.map(|t| inner.shared.ticker.clock().deadline_in(t));
        store.set_epoch_deadline(1);
        let instance = if self.runs_direct() {
            run_direct(&mut store, self, |store| inner.code.pre.instantiate(store))
        } else {
            inner.code.pre.instantiate_async(&mut store).await
        };
        let state = store.data_mut();
        state.deadline = None;
        let instance = instance.map_err(|e| match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) if std::mem::take(&mut state.preempted) => {
                CallError::Preempted
            }
            Some(wasmtime::Trap::Interrupt) => {
                inner.shared.stats.timeouts.add(1);
                CallError::Timeout(timeout.unwrap_or_default())
            }
            _ => CallError::Instantiate(format!("{e:#}")),
        })?;
        inner.shared.stats.instances.add(1);
        if let Some(export) = &inner.arena
            && let Some(Extern::Memory(arena)) = instance.get_module_export(&mut store, export)
        {
            let (base, len) = (arena.data_ptr(&store), arena.data_size(&store));
            // SAFETY: the memory was just created in this store and is the
            // rewrite's arena memory, which the guest's own code cannot name.
            #[allow(
                unsafe_code,
                reason = "the arena's view of its wasm memory (see `Backing::Wasm`)"
            )]
            unsafe {
                store.data_mut().arena.attach(arena, base, len)
            };
        }
        let mut guest = GuestInstance::new(store, instance, self.clone());
        guest.initialize_runtime().await?;
        Ok(guest)
    }
}
