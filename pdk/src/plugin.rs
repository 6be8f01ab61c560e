//! Writing plugins: typed hooks and typed access to every capability.
//!
//! Each hook is an export declared with a macro; the macro parses the host's
//! JSON, calls your function and encodes its answer, so no author writes JSON
//! by hand:
//!
//! ```ignore
//! use buntime_pdk::plugin::{self, RequestDecision, RequestChanges};
//! use buntime_pdk::{Error, RequestHead};
//!
//! fn check(req: RequestHead) -> Result<RequestDecision, Error> {
//!     let hits = plugin::state::incr("hits", 1, None)?;
//!     Ok(RequestDecision::Continue(RequestChanges::default().set_header("x-hits", hits.to_string())))
//! }
//! buntime_pdk::on_request!(check);
//! ```
//!
//! Capability calls return `Result<_, HostErrorBody>`: a denial is an error
//! with code `capability_denied` whose message names the grant to add.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::abi::{HostErrorBody, HostResult};

pub use crate::hooks::{Event, RequestChanges, RequestDecision, ResponseChanges, ResponseView};
pub use extism_pdk::Error;

#[allow(unsafe_code, reason = "imports are foreign functions by definition")]
mod imports {
    #[link(wasm_import_module = "extism:host/user")]
    unsafe extern "C" {
        pub(super) fn state_get(h: u64) -> u64;
        pub(super) fn state_set(h: u64) -> u64;
        pub(super) fn state_delete(h: u64) -> u64;
        pub(super) fn state_list(h: u64) -> u64;
        pub(super) fn state_cas(h: u64) -> u64;
        pub(super) fn state_incr_into(
            key: u64,
            key_len: u64,
            by: u64,
            ttl_ms: u64,
            out: u64,
        ) -> u64;
        pub(super) fn state_take_into(
            key: u64,
            key_len: u64,
            capacity: u64,
            window_ms: u64,
            cost: u64,
            out: u64,
        ) -> u64;
        pub(super) fn events_publish(h: u64) -> u64;
        pub(super) fn services_call(h: u64) -> u64;
        pub(super) fn pool_stats() -> u64;
        pub(super) fn pool_apps() -> u64;
        pub(super) fn sql_query(h: u64) -> u64;
        pub(super) fn sql_execute(h: u64) -> u64;
        pub(super) fn sql_batch(h: u64) -> u64;
        pub(super) fn sql_tenant_create(h: u64) -> u64;
        pub(super) fn sql_tenant_list(h: u64) -> u64;
        pub(super) fn sql_tenant_delete(h: u64) -> u64;
        pub(super) fn sql_databases() -> u64;
        pub(super) fn fs_roots() -> u64;
        pub(super) fn fs_list(h: u64) -> u64;
        pub(super) fn fs_stat(h: u64) -> u64;
        pub(super) fn fs_read(h: u64) -> u64;
        pub(super) fn fs_write(h: u64, data: u64) -> u64;
        pub(super) fn fs_mkdir(h: u64) -> u64;
        pub(super) fn fs_rename(h: u64) -> u64;
        pub(super) fn fs_remove(h: u64) -> u64;
        pub(super) fn fs_unpack(h: u64) -> u64;
        pub(super) fn fs_pack(h: u64) -> u64;
        pub(super) fn fs_check_app(h: u64) -> u64;
        pub(super) fn metrics_snapshot() -> u64;
        pub(super) fn metrics_register(h: u64) -> u64;
        pub(super) fn metrics_add(id: u64, value: u64) -> u64;
        pub(super) fn metrics_set(id: u64, value: u64) -> u64;
        pub(super) fn metrics_observe(id: u64, nanos: u64) -> u64;
        pub(super) fn metrics_values() -> u64;
        pub(super) fn upstream_routes(h: u64) -> u64;
    }
}

/// Calls an envelope host function with `input` as JSON.
fn call<T: DeserializeOwned>(
    f: unsafe extern "C" fn(u64) -> u64,
    input: &impl Serialize,
) -> Result<T, HostErrorBody> {
    let bytes = serde_json::to_vec(input).map_err(internal)?;
    let handle = crate::io::write_block(&bytes);
    if handle == 0 {
        return Err(internal("the host has no room for the argument"));
    }
    #[allow(unsafe_code, reason = "a host import")]
    // SAFETY: `handle` is a live block holding the argument.
    let out = unsafe { f(handle) };
    crate::io::free_block(handle);
    decode(out)
}

fn call0<T: DeserializeOwned>(f: unsafe extern "C" fn() -> u64) -> Result<T, HostErrorBody> {
    #[allow(unsafe_code, reason = "a host import")]
    // SAFETY: takes no arguments and returns a block handle.
    let out = unsafe { f() };
    decode(out)
}

fn decode<T: DeserializeOwned>(handle: u64) -> Result<T, HostErrorBody> {
    if handle == 0 {
        return Err(internal("the host returned no result"));
    }
    let bytes = crate::io::read_block(handle);
    crate::io::free_block(handle);
    serde_json::from_slice::<HostResult<T>>(&bytes)
        .map_err(internal)?
        .into_result()
}

fn internal(e: impl std::fmt::Display) -> HostErrorBody {
    HostErrorBody {
        code: "internal".into(),
        message: e.to_string(),
    }
}

/// `state`: the plugin's host-side key-value namespace, shared by all its
/// instances (grant: `"state": true`).
pub mod state {
    use std::time::Duration;

    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    use super::{HostErrorBody, call, decode, imports};

    // The arguments and answers as typed structs rather than `json!` maps:
    // the same JSON, written and read without building a map per call.
    // `incr` and `take` run on every request of a rate-limiting plugin: they
    // pass the key's address and get their answer written into the guest's
    // memory (`state_incr_into`, `state_take_into`), no JSON either way.

    fn ttl(t: Option<Duration>) -> Option<u64> {
        t.map(|d| d.as_millis().min(u64::MAX as u128) as u64)
    }

    #[derive(Serialize)]
    struct Key<'a> {
        key: &'a str,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Write<'a, T> {
        key: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
        value: &'a T,
        ttl_ms: Option<u64>,
    }

    #[derive(Deserialize)]
    struct Versioned<T> {
        value: T,
        version: u64,
    }

    /// `state_set`'s and `state_cas`'s answers (a missing field reads as
    /// zero or false).
    #[derive(Deserialize)]
    struct Written {
        #[serde(default)]
        swapped: bool,
        #[serde(default)]
        version: u64,
    }

    /// The value at `key` and its version.
    pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<(T, u64)>, HostErrorBody> {
        let v: Option<Versioned<T>> = call(imports::state_get, &Key { key })?;
        Ok(v.map(|v| (v.value, v.version)))
    }

    /// Stores `value` (expiring after `ttl`); returns its version.
    pub fn set<T: Serialize>(
        key: &str,
        value: &T,
        ttl_after: Option<Duration>,
    ) -> Result<u64, HostErrorBody> {
        let w: Written = call(
            imports::state_set,
            &Write {
                key,
                version: None,
                value,
                ttl_ms: ttl(ttl_after),
            },
        )?;
        Ok(w.version)
    }

    /// Removes `key`; whether it existed.
    pub fn delete(key: &str) -> Result<bool, HostErrorBody> {
        call(imports::state_delete, &Key { key })
    }

    /// One listed entry.
    #[derive(Debug, Clone, Deserialize)]
    pub struct Entry {
        /// Its key.
        pub key: String,
        /// Its value.
        pub value: Value,
        /// Its version.
        pub version: u64,
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn list(prefix: &str, limit: usize) -> Result<Vec<Entry>, HostErrorBody> {
        #[derive(Serialize)]
        struct List<'a> {
            prefix: &'a str,
            limit: usize,
        }
        call(imports::state_list, &List { prefix, limit })
    }

    /// Writes `value` only if the current version is `version` (0: only if
    /// absent). Returns whether it wrote and the version now current.
    pub fn cas<T: Serialize>(
        key: &str,
        version: u64,
        value: &T,
        ttl_after: Option<Duration>,
    ) -> Result<(bool, u64), HostErrorBody> {
        let w: Written = call(
            imports::state_cas,
            &Write {
                key,
                version: Some(version),
                value,
                ttl_ms: ttl(ttl_after),
            },
        )?;
        Ok((w.swapped, w.version))
    }

    /// Adds `by` to the integer at `key` atomically; returns the new value.
    /// `ttl` applies when the key is created (a fixed window).
    pub fn incr(key: &str, by: i64, ttl_after: Option<Duration>) -> Result<i64, HostErrorBody> {
        let mut value = [0u8; 8];
        let ttl_ms = ttl(ttl_after).unwrap_or(0);
        #[allow(unsafe_code, reason = "a host import")]
        // SAFETY: the host reads `key.len()` bytes at `key` and writes 8
        // bytes at `value`, both live for the call.
        let error = unsafe {
            imports::state_incr_into(
                key.as_ptr() as u64,
                key.len() as u64,
                by as u64,
                ttl_ms,
                value.as_mut_ptr() as u64,
            )
        };
        answered(error)?;
        Ok(i64::from_le_bytes(value))
    }

    pub use crate::abi::Taken;

    /// Takes `cost` tokens from the token bucket at `key` (`capacity`
    /// tokens, refilled continuously over `window`), created full if
    /// absent. Refill, check and debit are one atomic step in the host, so
    /// concurrent instances never admit more than the bucket holds.
    pub fn take(
        key: &str,
        capacity: u64,
        window: Duration,
        cost: u64,
    ) -> Result<Taken, HostErrorBody> {
        let mut answer = [0u64; 4];
        #[allow(unsafe_code, reason = "a host import")]
        // SAFETY: the host reads `key.len()` bytes at `key` and writes 32
        // bytes at `answer`, both live for the call.
        let error = unsafe {
            imports::state_take_into(
                key.as_ptr() as u64,
                key.len() as u64,
                capacity,
                window.as_millis().min(u64::MAX as u128) as u64,
                cost,
                answer.as_mut_ptr() as u64,
            )
        };
        answered(error)?;
        // Little-endian u64s: wasm is little-endian, so each is as written.
        let [allowed, remaining, reset_ms, retry_after_ms] = answer.map(u64::from_le);
        Ok(Taken {
            allowed: allowed != 0,
            remaining,
            reset_ms,
            retry_after_ms,
        })
    }

    /// The outcome of a function that answers in the guest's memory: 0 when
    /// it did, else the handle of its error envelope.
    fn answered(error: u64) -> Result<(), HostErrorBody> {
        if error == 0 {
            return Ok(());
        }
        decode::<Value>(error)?;
        Err(super::internal(
            "the host answered a call that answers in memory with a value",
        ))
    }
}

/// `events`: publishing (grant: `"events": {"publish": [...]}`).
pub mod events {
    use serde::Serialize;
    use serde_json::Value;

    use super::{HostErrorBody, call, imports};

    /// Publishes `data` on `topic`. `data` is serialized as it is (a
    /// `RawValue` keeps its member order and number spelling on the way to
    /// event streams).
    pub fn publish<T: Serialize>(topic: &str, data: &T) -> Result<(), HostErrorBody> {
        #[derive(Serialize)]
        struct Publish<'a, T> {
            topic: &'a str,
            data: &'a T,
        }
        let _: Value = call(imports::events_publish, &Publish { topic, data })?;
        Ok(())
    }
}

/// `services`: calling another plugin's service (grant: `"services": [...]`,
/// and the plugin must be a dependency).
pub mod services {
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::{HostErrorBody, call, imports};

    /// Calls `function` of `plugin` with `input`, serialized as it is (pass
    /// a `RawValue` to keep member order and number spelling; take one as
    /// `O` to get the output's text unparsed).
    pub fn call_service<I: Serialize, O: DeserializeOwned>(
        plugin: &str,
        function: &str,
        input: &I,
    ) -> Result<O, HostErrorBody> {
        #[derive(Serialize)]
        struct Call<'a, I> {
            plugin: &'a str,
            function: &'a str,
            input: &'a I,
        }
        call(
            imports::services_call,
            &Call {
                plugin,
                function,
                input,
            },
        )
    }
}

/// `pool`: the worker pool's state (grant: `"pool": true`).
pub mod pool {
    use serde_json::Value;

    use super::{HostErrorBody, call0, imports};

    /// Pool counters and per-app worker stats.
    pub fn stats() -> Result<Value, HostErrorBody> {
        call0(imports::pool_stats)
    }

    /// Installed apps and their versions.
    pub fn apps() -> Result<Value, HostErrorBody> {
        call0(imports::pool_apps)
    }
}

pub mod metrics;

/// `upstream`: a route table the host runs for this plugin (grant: the
/// `upstream` URLs its targets may reach).
///
/// Installed routes answer at the plugin's place in the chain without a
/// call into the plugin: the host matches each request against them in
/// order and forwards a match itself, as if `on_request` had answered
/// `proxy`; a request none matches goes on to `on_request` (if exported)
/// or down the chain. Each route is a rule in the proxy plugin's format
/// (`pattern`, `target`, `rewrite`, `methods`, `headers`, `removeHeaders`,
/// `public`, `websocket` and the timeouts; docs/capabilities.md §14).
pub mod upstream {
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    use super::{HostErrorBody, call, imports};

    #[derive(Serialize)]
    struct Install<'a> {
        version: u64,
        routes: &'a [Value],
    }

    #[derive(Deserialize)]
    struct Installed {
        installed: bool,
    }

    /// Replaces the plugin's route table with `routes`, tagged `version`:
    /// a table older than the installed one is not installed (`Ok(false)`),
    /// so instances racing to install what they each stored leave the
    /// newest. A rule that does not check is an error naming it
    /// (`routes[i]`), and the installed table stays.
    pub fn install_routes(version: u64, routes: &[Value]) -> Result<bool, HostErrorBody> {
        let answer: Installed = call(imports::upstream_routes, &Install { version, routes })?;
        Ok(answer.installed)
    }
}

/// The request body in `on_request` (only when the manifest sets
/// `requestBody`; empty otherwise) or in `handle`.
pub fn request_body() -> Vec<u8> {
    crate::guest::request_body_bytes()
}

pub mod fs;
mod input;
pub mod sql;

use input::parse_input;
pub use input::{HookBytes, HookInput, Lazy};

/// The plugin's config value `key` (from its manifest defaults and
/// `buntime.jsonc`), as text; JSON for non-string values.
pub fn config(key: &str) -> Option<String> {
    crate::vars::config(key).ok().flatten()
}

/// Runs a hook: parses its JSON input as `I`, calls `f`, writes `O` as JSON.
/// A failure sets the error message and returns 1. Used by the hook macros.
pub fn run_hook<I: DeserializeOwned, O: Serialize>(f: fn(I) -> Result<O, Error>) -> i32 {
    finish_hook(
        parse_input::<I>().and_then(f),
        |_| false,
        |out| Ok(serde_json::to_vec(out)?),
    )
}

/// Runs `on_request` or `on_response`: an answer for which `unchanged`
/// holds is the empty output (no change), not serialized at all; the input
/// is read only as `I` asks (see [`Lazy`]).
#[doc(hidden)]
pub fn run_hook_with<I: HookInput, O: HookAnswer>(
    f: fn(I) -> Result<O, Error>,
    unchanged: fn(&O) -> bool,
) -> i32 {
    finish_hook(I::read().and_then(f), unchanged, |out| Ok(out.wire()))
}

/// A hook's answer and its wire form (`RequestDecision::to_json`,
/// `ResponseChanges::to_json`: serde_json's bytes, written by hand).
#[doc(hidden)]
pub trait HookAnswer {
    /// The answer as JSON.
    fn wire(&self) -> Vec<u8>;
}

impl HookAnswer for crate::hooks::RequestDecision {
    fn wire(&self) -> Vec<u8> {
        self.to_json()
    }
}

impl HookAnswer for crate::hooks::ResponseChanges {
    fn wire(&self) -> Vec<u8> {
        self.to_json()
    }
}

fn finish_hook<O>(
    result: Result<O, Error>,
    unchanged: fn(&O) -> bool,
    wire: fn(&O) -> Result<Vec<u8>, Error>,
) -> i32 {
    let result = result.and_then(|out| {
        if unchanged(&out) {
            return Ok(());
        }
        crate::io::output(&wire(&out)?)
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            crate::guest::set_error(&format!("{e:#}"));
            1
        }
    }
}

/// Declares `on_request`: `fn(RequestHead) -> Result<RequestDecision, Error>`
/// (or `fn(Lazy<RequestHead>)`, which reads the head only when asked, or
/// `fn(HookBytes)`, which reads it into a borrowed view).
#[macro_export]
macro_rules! on_request {
    ($f:path) => {
        $crate::declare_abi_version!();
        $crate::declare_binary_head!($crate::head_binary::ON_REQUEST);
        #[unsafe(no_mangle)]
        pub extern "C" fn on_request() -> i32 {
            $crate::plugin::run_hook_with::<_, $crate::hooks::RequestDecision>(
                $f,
                $crate::hooks::RequestDecision::is_pass,
            )
        }
    };
}

/// Declares `on_response`: `fn(ResponseView) -> Result<ResponseChanges, Error>`
/// (or `fn(Lazy<ResponseView>)`).
#[macro_export]
macro_rules! on_response {
    ($f:path) => {
        $crate::declare_abi_version!();
        #[unsafe(no_mangle)]
        pub extern "C" fn on_response() -> i32 {
            $crate::plugin::run_hook_with::<_, $crate::hooks::ResponseChanges>(
                $f,
                $crate::hooks::ResponseChanges::is_empty,
            )
        }
    };
}

/// Declares `on_init`: `fn(serde_json::Value) -> Result<(), Error>`; the
/// value is the plugin's config. An error fails the plugin's load with your
/// message (validate your config here).
#[macro_export]
macro_rules! on_init {
    ($f:path) => {
        $crate::declare_abi_version!();
        #[unsafe(no_mangle)]
        pub extern "C" fn on_init() -> i32 {
            $crate::plugin::run_hook::<$crate::serde_json::Value, ()>($f)
        }
    };
}

/// Declares `on_event`: `fn(Event) -> Result<(), Error>`.
#[macro_export]
macro_rules! on_event {
    ($f:path) => {
        $crate::declare_abi_version!();
        #[unsafe(no_mangle)]
        pub extern "C" fn on_event() -> i32 {
            $crate::plugin::run_hook::<$crate::hooks::Event, ()>($f)
        }
    };
}

/// Declares `on_shutdown`: `fn(()) -> Result<(), Error>`.
#[macro_export]
macro_rules! on_shutdown {
    ($f:path) => {
        $crate::declare_abi_version!();
        #[unsafe(no_mangle)]
        pub extern "C" fn on_shutdown() -> i32 {
            $crate::plugin::run_hook::<(), ()>($f)
        }
    };
}

/// Declares a service other plugins may call: `service!(name, f)` with
/// `f: fn(I) -> Result<O, Error>` for any serde `I` and `O`. List `name`
/// under `services` in the manifest.
#[macro_export]
macro_rules! service {
    ($name:ident, $f:path) => {
        $crate::declare_abi_version!();
        #[unsafe(no_mangle)]
        pub extern "C" fn $name() -> i32 {
            $crate::plugin::run_hook($f)
        }
    };
}
