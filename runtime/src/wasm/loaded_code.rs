//! Compiled code shared between modules loaded from the same bytes.
//!
//! Many apps (and every version of an app that did not change its module)
//! ship byte-identical WASM. Compiled, a small module is several times its
//! size in machine code — the load-time rewrite inlines the memory accessors
//! into every copy loop — and that code, the module's copy-on-write memory
//! image and its resolved imports are the same for every copy. So the engine
//! keeps one [`LoadedCode`] per sha256 of the bytes while any module uses it:
//! a second load of the same bytes costs a hash and a table lookup, and the
//! process holds one copy of the code. What differs per module (name,
//! limits, grants, configuration) lives in [`super::GuestModule`], around
//! the shared code.
//!
//! The table holds weak references: when the last module using some code is
//! dropped (its app removed, a new version loaded), the code is freed, and
//! the dead entry goes at the next insertion.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use wasmtime::{InstancePre, Module};

use super::state::HostState;

/// A compiled module with its imports resolved against the engine's linker.
pub(crate) struct LoadedCode {
    pub(crate) module: Module,
    pub(crate) pre: InstancePre<HostState>,
    /// Whether the module is the load-time rewrite's output (it then has
    /// the arena memory).
    pub(crate) rewritten: bool,
    /// The exports that read the binary request head
    /// ([`super::binary_heads`]).
    pub(crate) binary_heads: super::BinaryHeads,
}

/// The code of every module loaded now, by the sha256 of its WASM bytes.
#[derive(Default)]
pub(crate) struct CodeTable {
    entries: Mutex<HashMap<[u8; 32], Weak<LoadedCode>>>,
}

impl CodeTable {
    /// The code already loaded from bytes with this sha256, if any module
    /// still uses it.
    pub(crate) fn get(&self, sha256: &[u8; 32]) -> Option<Arc<LoadedCode>> {
        self.lock().get(sha256).and_then(Weak::upgrade)
    }

    /// Records `code` as the code of bytes with this sha256, and forgets
    /// the entries no module uses any more. Two loads of the same new bytes
    /// at once both compile; the later one's code is kept for the next.
    pub(crate) fn insert(&self, sha256: [u8; 32], code: &Arc<LoadedCode>) {
        let mut entries = self.lock();
        entries.retain(|_, weak| weak.strong_count() > 0);
        entries.insert(sha256, Arc::downgrade(code));
    }

    /// Distinct compiled modules in use.
    pub(crate) fn len(&self) -> usize {
        self.lock()
            .values()
            .filter(|weak| weak.strong_count() > 0)
            .count()
    }

    /// The table; a panic while it was locked cannot have left the map
    /// half-changed, so a poisoned lock is used as is.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Weak<LoadedCode>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for CodeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeTable")
            .field("modules", &self.len())
            .finish()
    }
}
