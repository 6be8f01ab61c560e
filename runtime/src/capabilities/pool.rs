//! `pool`: reading the worker pool's state.
//!
//! Grant: `"pool": true`.
//!
//! | function | input | result |
//! |---|---|---|
//! | `pool_stats` | none (handle 0) | `{"apps", "capacity", "evictions", "workers": [{"app", "active", "idle", "requests", "errors"}]}` |
//! | `pool_apps` | none | `[{"name", "versions": [...]}]` |
//! | `pool_public_routes` | none | `{"<app>": <publicRoutes>}`: each app's newest version's `worker.jsonc` `publicRoutes`, for apps that set them (read on the blocking pool: JSONC parsing needs more stack than a guest call has) |

use serde_json::{Value, json};

use super::state::no_context;
use super::{Capability, CapabilitySpec, GrantContext, GrantValue, parse_flag};
use crate::capabilities::GuestContext;
use crate::wasm::{HostError, HostFunction, ResultEncoding};

/// The `pool` capability.
pub(super) struct PoolSpec;

impl CapabilitySpec for PoolSpec {
    fn capability(&self) -> Capability {
        Capability::POOL
    }

    fn syntax(&self) -> &'static str {
        "\"pool\": true"
    }

    fn parse(&self, declared: &Value, _: &GrantContext<'_>) -> Result<Option<GrantValue>, String> {
        parse_flag(declared)
    }

    fn host_functions(&self) -> Vec<HostFunction> {
        vec![
            HostFunction::new_sync(
                "pool_stats",
                Capability::POOL,
                0,
                ResultEncoding::Envelope,
                |state, _| {
                    (|| {
                        let cx = GuestContext::of(state)?;
                        let pools = cx.host.pools.as_ref().ok_or_else(no_context)?;
                        serde_json::to_vec(&pools.stats())
                            .map(Some)
                            .map_err(|e| HostError::new("internal", e.to_string()))
                    })()
                },
            ),
            HostFunction::new_sync(
                "pool_apps",
                Capability::POOL,
                0,
                ResultEncoding::Envelope,
                |state, _| {
                    (|| {
                        let cx = GuestContext::of(state)?;
                        let catalog = cx.host.catalog.as_ref().ok_or_else(no_context)?;
                        let apps: Vec<Value> = catalog
                            .all()
                            .into_iter()
                            .map(|(name, versions)| {
                                let versions: Vec<String> = versions
                                    .iter()
                                    .map(|v| {
                                        v.version
                                            .as_ref()
                                            .map_or("latest".into(), |v| v.to_string())
                                    })
                                    .collect();
                                json!({"name": name, "versions": versions})
                            })
                            .collect();
                        serde_json::to_vec(&apps)
                            .map(Some)
                            .map_err(|e| HostError::new("internal", e.to_string()))
                    })()
                },
            ),
            HostFunction::new(
                "pool_public_routes",
                Capability::POOL,
                0,
                ResultEncoding::Envelope,
                |state, _| {
                    let catalog = GuestContext::of(state)
                        .and_then(|cx| cx.host.catalog.clone().ok_or_else(no_context));
                    Box::pin(async move {
                        let catalog = catalog?;
                        let routes = tokio::task::spawn_blocking(move || public_routes(&catalog))
                            .await
                            .map_err(|_| HostError::new("internal", "the task was interrupted"))?;
                        serde_json::to_vec(&routes)
                            .map(Some)
                            .map_err(|e| HostError::new("internal", e.to_string()))
                    })
                },
            ),
        ]
    }
}

/// Each app's `publicRoutes`, from its newest version's `worker.jsonc`; an
/// app whose file does not parse has none (the app itself fails to load).
fn public_routes(catalog: &crate::routing::Catalog) -> serde_json::Map<String, Value> {
    catalog
        .all()
        .into_iter()
        .filter_map(|(name, versions)| {
            let config = crate::config::AppConfig::load(&versions.last()?.dir).ok()?;
            (!config.public_routes.is_null()).then_some((name, config.public_routes))
        })
        .collect()
}
