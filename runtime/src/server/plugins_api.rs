//! `/_/api/plugins`: what is loaded, reload, enable and disable.
//!
//! | route | does |
//! |---|---|
//! | `GET /_/api/plugins` | the chain in load order (version, base, dependencies, grants, hooks, counters) and what did not load, with why |
//! | `POST /_/api/plugins/reload` | reloads every plugin (drain, swap, `on_shutdown` on the old ones) |
//! | `POST /_/api/plugins/{name}/reload` | reloads one plugin |
//! | `POST /_/api/plugins/{name}/enable`, `.../disable` | enables or disables one, then reloads |
//!
//! Scoped names are written as they are: `/_/api/plugins/@acme/auth/reload`.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ErrorDetail, ErrorKind};
use crate::plugins::{Chain, PluginError};

/// `GET /_/api/plugins`.
pub(crate) async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(describe(&state.plugins.current(), state.error_detail))
}

/// `POST /_/api/plugins/reload`.
pub(crate) async fn reload(State(state): State<AppState>) -> Response {
    respond(state.plugins.reload().await, state.error_detail)
}

/// `POST /_/api/plugins/{*rest}` where rest is `<name>/reload|enable|disable`.
pub(crate) async fn action(State(state): State<AppState>, Path(rest): Path<String>) -> Response {
    let Some((name, verb)) = rest.rsplit_once('/') else {
        return ApiError::new(
            ErrorKind::NotFound,
            "use /_/api/plugins/<name>/reload, /enable or /disable",
        )
        .into_response();
    };
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8_lossy()
        .into_owned();
    let result = match verb {
        "reload" => state.plugins.reload_one(&name).await,
        "enable" => state.plugins.set_enabled(&name, true).await,
        "disable" => state.plugins.set_enabled(&name, false).await,
        other => {
            return ApiError::new(
                ErrorKind::NotFound,
                format!("unknown action `{other}`: use reload, enable or disable"),
            )
            .into_response();
        }
    };
    respond(result, state.error_detail)
}

fn respond(result: Result<std::sync::Arc<Chain>, PluginError>, detail: ErrorDetail) -> Response {
    match result {
        Ok(chain) => Json(describe(&chain, detail)).into_response(),
        Err(e) => {
            let kind = match &e {
                PluginError::Unknown(_) => ErrorKind::PluginNotFound,
                PluginError::HasDependents { .. } => ErrorKind::PluginHasDependents,
                PluginError::Config(_) => ErrorKind::ConfigInvalid,
                PluginError::Required { .. } | PluginError::LoadFailed { .. } => {
                    ErrorKind::PluginLoadFailed
                }
            };
            let err = ApiError::new(kind, e.to_string());
            // Config and load failures quote files and guest errors.
            match e {
                PluginError::Unknown(_) | PluginError::HasDependents { .. } => err,
                _ => err.internal(),
            }
            .into_response()
        }
    }
}

/// The chain as JSON. In production ([`ErrorDetail::Hidden`]) no plugin
/// dir is shown and the reasons and problems, which quote files and guest
/// errors, are left to the log (where loading wrote them).
fn describe(chain: &Chain, detail: ErrorDetail) -> Value {
    let hidden = detail == ErrorDetail::Hidden;
    const IN_THE_LOG: &str = "details in the server log";
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let loaded: Vec<Value> = chain
        .plugins
        .iter()
        .map(|p| {
            let calls = p.stats.calls();
            json!({
                "name": p.manifest.name,
                "version": p.manifest.version.to_string(),
                "state": "loaded",
                "base": p.manifest.base,
                "source": if hidden && p.source != "embedded" { "directory" } else { p.source.as_str() },
                "dependencies": p.manifest.dependencies,
                "optionalDependencies": p.manifest.optional_dependencies,
                "capabilities": p.grants.names().collect::<Vec<_>>(),
                "hooks": p.hooks.names(),
                "services": p.manifest.services,
                "onError": p.manifest.on_error,
                "coreRoutes": p.manifest.core_routes,
                "menus": p.manifest.menus,
                "publicRoutes": p.public_routes.describe(),
                "instances": {
                    "max": p.manifest.limits.instances,
                    "idle": p.instances.idle(),
                    "inFlight": p.instances.in_flight(),
                    "created": get(&p.instances.created),
                    "discarded": get(&p.instances.discarded),
                },
                "stats": {
                    "calls": calls,
                    "errors": p.stats.errors.get(),
                    "timeouts": p.stats.timeouts.get(),
                    "skipped": p.stats.skipped.get(),
                    "avgLatencyUs": (p.stats.latency_ns.get() as f64
                        / p.stats.timed_calls.get().max(1) as f64
                        / 1000.0),
                },
            })
        })
        .collect();
    json!({
        "order": chain.plugins.iter().map(|p| p.manifest.name.clone()).collect::<Vec<_>>(),
        "plugins": loaded,
        "notLoaded": chain.not_loaded.iter().map(|n| json!({
            "name": n.name,
            "state": n.state,
            "reason": if hidden { IN_THE_LOG } else { n.reason.as_str() },
        })).collect::<Vec<_>>(),
        "problems": chain.problems.iter().map(|p| json!({
            "plugin": p.plugin,
            "message": if hidden { IN_THE_LOG } else { p.message.as_str() },
        })).collect::<Vec<_>>(),
    })
}
