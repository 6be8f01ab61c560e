//! The plugin chain: what loaded, in order, and what did not; and the chain
//! in force, held once for the host and once per thread shard for requests.

use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard};

use serde::Serialize;

use crate::counter::SHARDS;
use crate::plugins::discovery::Problem;
use crate::plugins::load_error::NotLoadedState;
use crate::plugins::plugin::Plugin;

/// A plugin that is not running, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotLoaded {
    /// Its name.
    pub name: String,
    /// Whether it failed, was skipped or is switched off.
    pub state: NotLoadedState,
    /// Why, naming files and fields.
    pub reason: String,
}

/// The loaded plugins, in load order, and what did not load.
#[derive(Debug, Default)]
pub struct Chain {
    /// Loaded plugins, in load order.
    pub plugins: Vec<Arc<Plugin>>,
    /// Plugins that are not running.
    pub not_loaded: Vec<NotLoaded>,
    /// Problems found while discovering (malformed manifests and the like).
    pub problems: Vec<Problem>,
}

impl Chain {
    /// The plugin called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins.iter().find(|p| p.manifest.name == name)
    }

    /// Whether any plugin has an `on_request` or `on_response` hook or may
    /// install a route table (`upstream_routes`): a chain
    /// of plugins that only serve routes (`handle`) leaves app requests
    /// alone, and they skip the hooks' bookkeeping.
    pub fn intercepts(&self) -> bool {
        self.plugins
            .iter()
            .any(|p| p.hooks.on_request || p.hooks.on_response || p.routes.is_some())
    }

    /// The plugins whose `on_request` also runs, restricted, for the core
    /// routes (`coreRoutes: "headers"`), with their places in the chain.
    pub fn core_route_plugins(&self) -> impl Iterator<Item = (usize, &Arc<Plugin>)> {
        self.plugins.iter().enumerate().filter(|(_, p)| {
            p.hooks.on_request && p.manifest.core_routes == crate::plugins::CoreRoutes::Headers
        })
    }

    /// The plugin mounted at `/_/<base>`.
    pub fn by_base(&self, base: &str) -> Option<&Arc<Plugin>> {
        self.plugins
            .iter()
            .find(|p| p.manifest.base.as_deref() == Some(base))
    }
}

/// The chain in force as a request holds it: a reference of its own to
/// the shared [`Chain`], one per thread shard ([`super::PluginHost::for_request`]).
#[derive(Debug)]
pub struct ChainHandle(Arc<Chain>);

impl std::ops::Deref for ChainHandle {
    type Target = Chain;

    fn deref(&self) -> &Chain {
        &self.0
    }
}

/// The chain in force: the shared one, and a handle to it per thread
/// shard for requests.
///
/// Every request takes the chain and drops it when done. With one shared
/// lock and one shared reference count, both cores wrote the same two cache
/// lines twice per request, each write a transfer of the line from the
/// other core. A shard's lock and its handle's count are written by its own
/// thread only (unless a task moves to another worker).
#[derive(Debug)]
pub(super) struct InForce {
    shared: RwLock<Arc<Chain>>,
    local: [LocalChain; SHARDS],
}

/// One thread shard's handle, alone on its cache line.
#[derive(Debug)]
#[repr(align(64))]
struct LocalChain(RwLock<Arc<ChainHandle>>);

impl Default for InForce {
    /// An empty chain, until the first is installed.
    fn default() -> Self {
        let empty = Arc::<Chain>::default();
        Self {
            local: std::array::from_fn(|_| LocalChain(RwLock::new(ChainHandle::to(&empty)))),
            shared: RwLock::new(empty),
        }
    }
}

impl InForce {
    /// The chain in force.
    pub(super) fn current(&self) -> Arc<Chain> {
        read(&self.shared)
    }

    /// This thread's handle to the chain in force.
    pub(super) fn for_request(&self) -> Arc<ChainHandle> {
        read(&self.local[crate::counter::shard()].0)
    }

    /// Puts `chain` in force; returns the one it replaces.
    pub(super) fn replace(&self, chain: Arc<Chain>) -> Arc<Chain> {
        let old = std::mem::replace(&mut *write(&self.shared), chain.clone());
        // A handle of its own per shard: its count is written by that
        // shard's requests only.
        for local in &self.local {
            *write(&local.0) = ChainHandle::to(&chain);
        }
        old
    }
}

impl ChainHandle {
    fn to(chain: &Arc<Chain>) -> Arc<Self> {
        Arc::new(Self(chain.clone()))
    }
}

/// A clone of what `lock` holds. A panic elsewhere cannot leave an `Arc`
/// half-written, so a poisoned lock is read as is.
fn read<T>(lock: &RwLock<Arc<T>>) -> Arc<T> {
    lock.read().unwrap_or_else(PoisonError::into_inner).clone()
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
