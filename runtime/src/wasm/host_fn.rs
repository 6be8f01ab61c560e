//! Buntime's host functions in `extism:host/user`, each guarded by a grant.
//!
//! These follow the Extism PDKs' `host_fn` convention: every parameter and the
//! result are `i64`, and a parameter that carries data is a memory-block
//! handle. A [`HostFunction`] declares the [`Capability`] it needs; the engine
//! wraps it so that every call first checks the caller's grants. A denial is
//! logged (with the grant to add), counted, and returned to the guest:
//! as an error envelope for [`ResultEncoding::Envelope`] functions, which the
//! guest can handle, or as a trap for raw ones.
//!
//! The implementation receives the store's [`HostState`] synchronously (to read
//! argument blocks and take what it needs) and returns a `'static` future for
//! any I/O, which runs without holding the store; its bytes become the result
//! block. A function that never waits ([`HostFunction::new_sync`]) returns its
//! result directly: a guest whose imports are all such functions is called
//! without a fiber (see `wasm/sync_call.rs`), which is most of the cost of a
//! short call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::grants::{Capability, Denial};

use super::state::HostState;

/// The import namespace of Buntime's own host functions.
pub const USER_NAMESPACE: &str = "extism:host/user";

/// A guest-visible failure of a host function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct HostError {
    /// Stable machine-readable code, e.g. `capability_denied`, `invalid_argument`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl HostError {
    /// Builds an error.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The argument was malformed.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new("invalid_argument", message)
    }
}

/// A refusal of the host function `function` (its name in
/// `extism:host/user`): what exactly was refused and the manifest entry that
/// would allow it.
pub(crate) fn user_denial(
    capability: Capability,
    function: &str,
    detail: String,
    hint: String,
) -> Denial {
    Denial {
        capability,
        function: format!("{USER_NAMESPACE}::{function}"),
        detail,
        hint,
    }
}

/// A denial reaches the guest as `capability_denied`, with the function,
/// what was refused and the manifest entry to add.
impl From<Denial> for HostError {
    fn from(denial: Denial) -> Self {
        Self::new("capability_denied", denial.to_string())
    }
}

/// The future a host function returns: its result bytes (`None` = handle 0).
pub type HostFuture = Pin<Box<dyn Future<Output = Result<Option<Vec<u8>>, HostError>> + Send>>;

/// What a host function that does not wait returns: its result bytes
/// (`None` = handle 0).
pub type HostOutput = Result<Option<Vec<u8>>, HostError>;

type AsyncImplementation = dyn Fn(&mut HostState, &[u64]) -> HostFuture + Send + Sync;
pub(crate) type SyncImplementation = dyn Fn(&mut HostState, &[u64]) -> HostOutput + Send + Sync;

pub(crate) type MemoryImplementation =
    dyn Fn(&mut HostState, &mut GuestMemory<'_>, &[u64]) -> HostOutput + Send + Sync;

/// A host function's body: one that may wait for I/O, or one that does not.
#[derive(Clone)]
pub(crate) enum Implementation {
    /// Returns a future; callers of the guest need a fiber.
    Async(Arc<AsyncImplementation>),
    /// Returns at once.
    Sync(Arc<SyncImplementation>),
    /// Returns at once, reading its arguments from and writing its answer
    /// to the guest's memory (no blocks, no JSON).
    Memory(Arc<MemoryImplementation>),
}

/// The guest's linear memory as a [`HostFunction::new_memory`] function
/// sees it: ranges are checked, and a range outside the memory is an
/// `invalid_argument` error naming the function.
pub struct GuestMemory<'a> {
    function: &'static str,
    bytes: &'a mut [u8],
}

impl fmt::Debug for GuestMemory<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestMemory")
            .field("function", &self.function)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl<'a> GuestMemory<'a> {
    pub(crate) fn new(function: &'static str, bytes: &'a mut [u8]) -> Self {
        Self { function, bytes }
    }

    fn range(&self, at: u64, len: u64) -> Result<std::ops::Range<usize>, HostError> {
        usize::try_from(at)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(start, len)| Some(start..start.checked_add(len)?))
            .filter(|r| r.end <= self.bytes.len())
            .ok_or_else(|| {
                HostError::invalid_argument(format!(
                    "{USER_NAMESPACE}::{}: {len} bytes at {at} are outside the guest's {} bytes of memory",
                    self.function,
                    self.bytes.len()
                ))
            })
    }

    /// The UTF-8 text of `len` bytes at `at`.
    pub fn str(&self, at: u64, len: u64) -> Result<&str, HostError> {
        let r = self.range(at, len)?;
        std::str::from_utf8(&self.bytes[r]).map_err(|_| {
            HostError::invalid_argument(format!(
                "{USER_NAMESPACE}::{}: the text at {at} is not valid UTF-8",
                self.function
            ))
        })
    }

    /// Fails unless `len` bytes at `at` are inside the memory: a function
    /// checks where its answer goes before it changes anything, so a bad
    /// address costs the guest its call, not an update it never hears of.
    pub fn check(&self, at: u64, len: u64) -> Result<(), HostError> {
        self.range(at, len).map(drop)
    }

    /// Copies `bytes` to `at`.
    pub fn write(&mut self, at: u64, bytes: &[u8]) -> Result<(), HostError> {
        let r = self.range(at, bytes.len() as u64)?;
        self.bytes[r].copy_from_slice(bytes);
        Ok(())
    }
}

/// How a host function's result reaches the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultEncoding {
    /// The result block holds the raw bytes; errors trap the guest.
    Raw,
    /// The result block holds `{"ok": <json>}` or `{"error": {"code", "message"}}`;
    /// the implementation's bytes must be JSON.
    Envelope,
}

/// One function in `extism:host/user`.
///
/// ```
/// use buntime::wasm::{HostFunction, HostError, ResultEncoding};
/// use buntime::capabilities::Capability;
/// let reverse = HostFunction::new("reverse", Capability::new("test"), 1, ResultEncoding::Raw, |state, args| {
///     let bytes = state.block(args[0]).map(|b| b.iter().rev().copied().collect::<Vec<u8>>());
///     Box::pin(async move { bytes.map(Some).map_err(|e| HostError::invalid_argument(e.to_string())) })
/// });
/// assert_eq!(reverse.name(), "reverse");
/// ```
#[derive(Clone)]
pub struct HostFunction {
    pub(crate) name: &'static str,
    pub(crate) capability: Option<Capability>,
    /// How the grant is written in a manifest, for denials (see
    /// [`HostFunction::grant_hint`]).
    pub(crate) grant_hint: Option<&'static str>,
    pub(crate) params: usize,
    pub(crate) encoding: ResultEncoding,
    pub(crate) implementation: Implementation,
}

impl fmt::Debug for HostFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostFunction")
            .field("name", &self.name)
            .field("capability", &self.capability)
            .field("params", &self.params)
            .field("encoding", &self.encoding)
            .field("waits", &self.waits())
            .finish_non_exhaustive()
    }
}

impl HostFunction {
    /// A function that needs `capability`, takes `params` i64 arguments and
    /// returns one i64 (a result handle, 0 for none).
    pub fn new(
        name: &'static str,
        capability: Capability,
        params: usize,
        encoding: ResultEncoding,
        implementation: impl Fn(&mut HostState, &[u64]) -> HostFuture + Send + Sync + 'static,
    ) -> Self {
        let implementation = Implementation::Async(Arc::new(implementation));
        Self::gated(name, capability, params, encoding, implementation)
    }

    /// The function `name` behind `capability`, with no grant hint.
    fn gated(
        name: &'static str,
        capability: Capability,
        params: usize,
        encoding: ResultEncoding,
        implementation: Implementation,
    ) -> Self {
        Self {
            name,
            capability: Some(capability),
            grant_hint: None,
            params,
            encoding,
            implementation,
        }
    }

    /// A function that needs `capability` and never waits: it does its work
    /// right away (no I/O, short critical sections only). Guests that import
    /// only such functions are called without a fiber.
    ///
    /// ```
    /// use buntime::wasm::{HostFunction, ResultEncoding};
    /// use buntime::capabilities::Capability;
    /// let len = HostFunction::new_sync("len", Capability::new("test"), 1, ResultEncoding::Envelope, |state, args| {
    ///     let n = state.block(args[0]).map(|b| b.len()).unwrap_or(0);
    ///     Ok(Some(n.to_string().into_bytes()))
    /// });
    /// assert!(!len.waits());
    /// ```
    pub fn new_sync(
        name: &'static str,
        capability: Capability,
        params: usize,
        encoding: ResultEncoding,
        implementation: impl Fn(&mut HostState, &[u64]) -> HostOutput + Send + Sync + 'static,
    ) -> Self {
        let implementation = Implementation::Sync(Arc::new(implementation));
        Self::gated(name, capability, params, encoding, implementation)
    }

    /// A function that needs `capability`, never waits, and takes guest
    /// addresses and integers rather than blocks: it reads its text from
    /// and writes its answer into the guest's memory, so a call costs one
    /// transition and no JSON (the `state` counters and buckets, called by
    /// busy plugins on every request). It returns `Ok(None)` (handle 0)
    /// when it answered in memory; an error reaches the guest as an
    /// envelope block (`{"error": ...}`), as from [`ResultEncoding::Envelope`].
    ///
    /// ```
    /// use buntime::wasm::{HostFunction, HostError};
    /// use buntime::capabilities::Capability;
    /// // (text, text_len, out): writes the text's length at `out`.
    /// let len = HostFunction::new_memory("text_len", Capability::new("test"), 3, |_, memory, args| {
    ///     let n = memory.str(args[0], args[1])?.len() as u64;
    ///     memory.write(args[2], &n.to_le_bytes())?;
    ///     Ok(None)
    /// });
    /// assert!(!len.waits());
    /// ```
    pub fn new_memory(
        name: &'static str,
        capability: Capability,
        params: usize,
        implementation: impl Fn(&mut HostState, &mut GuestMemory<'_>, &[u64]) -> HostOutput
        + Send
        + Sync
        + 'static,
    ) -> Self {
        let implementation = Implementation::Memory(Arc::new(implementation));
        Self::gated(
            name,
            capability,
            params,
            ResultEncoding::Envelope,
            implementation,
        )
    }

    /// [`HostFunction::new_sync`] without a grant (part of the app or plugin
    /// protocol itself).
    pub fn ungated_sync(
        name: &'static str,
        params: usize,
        encoding: ResultEncoding,
        implementation: impl Fn(&mut HostState, &[u64]) -> HostOutput + Send + Sync + 'static,
    ) -> Self {
        Self {
            capability: None,
            ..Self::new_sync(name, Capability::new(""), params, encoding, implementation)
        }
    }

    /// Whether calls to it may wait (its guests then run on a fiber).
    pub fn waits(&self) -> bool {
        matches!(self.implementation, Implementation::Async(_))
    }

    /// A function every guest may call (part of the app or plugin protocol
    /// itself, such as reading the request body).
    pub fn ungated(
        name: &'static str,
        params: usize,
        encoding: ResultEncoding,
        implementation: impl Fn(&mut HostState, &[u64]) -> HostFuture + Send + Sync + 'static,
    ) -> Self {
        Self {
            capability: None,
            ..Self::new(name, Capability::new(""), params, encoding, implementation)
        }
    }

    /// Sets how the function's grant is written in a manifest, which a
    /// denial quotes so the operator knows what to add (the capabilities set
    /// their declaration syntax; the default is `"<capability>": true`).
    pub fn grant_hint(mut self, hint: &'static str) -> Self {
        self.grant_hint = Some(hint);
        self
    }

    /// The function's import name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The capability it needs, if any.
    pub fn capability(&self) -> Option<Capability> {
        self.capability
    }

    /// Checks the grant; on denial logs, counts and returns the denial.
    pub(crate) fn check(&self, state: &HostState) -> Result<(), Denial> {
        let Some(cap) = self.capability else {
            return Ok(());
        };
        if state.grants().allows(cap) {
            state.grants().counts.calls.add(cap.index(), 1);
            return Ok(());
        }
        Err(state.denial(
            cap,
            self.name,
            format!("`{}` was not granted", cap.name()),
            self.grant_hint
                .map_or_else(|| format!("\"{}\": true", cap.name()), str::to_owned),
        ))
    }
}

/// Wraps implementation output in the envelope.
pub(crate) fn envelope(result: Result<Option<Vec<u8>>, HostError>) -> Vec<u8> {
    match result {
        Ok(Some(json)) => {
            let mut out = Vec::with_capacity(json.len() + 8);
            out.extend_from_slice(b"{\"ok\":");
            out.extend_from_slice(&json);
            out.push(b'}');
            out
        }
        Ok(None) => b"{\"ok\":null}".to_vec(),
        Err(e) => serde_json::json!({"error": {"code": e.code, "message": e.message}})
            .to_string()
            .into_bytes(),
    }
}
