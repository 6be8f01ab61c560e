//! The core routes: one table, from which the router, the fast check that
//! sends every other request straight to the plugin chain, and each
//! route's protection are all derived.
//!
//! | method and path | who may call it |
//! |---|---|
//! | `GET /_/api/health`, `/_/api/health/live`, `/_/api/health/ready` | anyone |
//! | `GET /.well-known/buntime` | anyone |
//! | `GET /_/api/apps` | `apps:read` |
//! | `GET /_/metrics` | `workers:read`, or anyone with `RUNTIME_METRICS_PUBLIC=true` |
//! | `GET /_/stats`, `GET /_/sse` | `workers:read` |
//! | `GET /_/api/plugins` | `plugins:read` |
//! | `POST /_/api/plugins/reload`, `POST /_/api/plugins/{name}/{reload,enable,disable}` | `plugins:config` |
//! | `GET /_/api/keys`, `GET /_/api/keys/meta` | `keys:read` |
//! | `POST /_/api/keys` | `keys:create` |
//! | `DELETE /_/api/keys/{id}` | `keys:revoke` |
//!
//! Any other path under `/_/api/` is a core path too (answered 404).

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};

use super::{AppState, api, guard, keys_api, pipeline, plugins_api, request_id};
use crate::access::Permission;

/// The prefix under which every path belongs to the core API.
pub(crate) const API_PREFIX: &str = "/_/api/";

/// Who may call a core route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard {
    /// Anyone.
    Public,
    /// A caller holding the permission.
    Needs(Permission),
    /// `workers:read`, unless the operator made metrics public.
    Metrics,
}

/// One core route.
pub(crate) struct CoreRoute {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    pub(crate) guard: Guard,
    handler: fn(MethodFilter) -> MethodRouter<AppState>,
}

/// Every core route.
pub(crate) static CORE_ROUTES: &[CoreRoute] = &[
    CoreRoute {
        method: Method::GET,
        path: "/_/api/health",
        guard: Guard::Public,
        handler: |m| on(m, api::health),
    },
    CoreRoute {
        method: Method::GET,
        path: "/_/api/health/live",
        guard: Guard::Public,
        handler: |m| on(m, api::live),
    },
    CoreRoute {
        method: Method::GET,
        path: "/_/api/health/ready",
        guard: Guard::Public,
        handler: |m| on(m, api::ready),
    },
    CoreRoute {
        method: Method::GET,
        path: "/.well-known/buntime",
        guard: Guard::Public,
        handler: |m| on(m, api::well_known),
    },
    CoreRoute {
        method: Method::GET,
        path: "/_/api/apps",
        guard: Guard::Needs(Permission::AppsRead),
        handler: |m| on(m, api::apps),
    },
    CoreRoute {
        method: Method::GET,
        path: "/_/metrics",
        guard: Guard::Metrics,
        handler: |m| on(m, api::metrics),
    },
    CoreRoute {
        method: Method::GET,
        path: "/_/stats",
        guard: Guard::Needs(Permission::WorkersRead),
        handler: |m| on(m, api::stats),
    },
    CoreRoute {
        method: Method::GET,
        path: "/_/sse",
        guard: Guard::Needs(Permission::WorkersRead),
        handler: |m| on(m, api::sse),
    },
    CoreRoute {
        method: Method::GET,
        path: "/_/api/plugins",
        guard: Guard::Needs(Permission::PluginsRead),
        handler: |m| on(m, plugins_api::list),
    },
    CoreRoute {
        method: Method::POST,
        path: "/_/api/plugins/reload",
        guard: Guard::Needs(Permission::PluginsConfig),
        handler: |m| on(m, plugins_api::reload),
    },
    CoreRoute {
        method: Method::POST,
        path: "/_/api/plugins/{*rest}",
        guard: Guard::Needs(Permission::PluginsConfig),
        handler: |m| on(m, plugins_api::action),
    },
    CoreRoute {
        method: Method::GET,
        path: "/_/api/keys",
        guard: Guard::Needs(Permission::KeysRead),
        handler: |m| on(m, keys_api::list),
    },
    CoreRoute {
        method: Method::GET,
        path: "/_/api/keys/meta",
        guard: Guard::Needs(Permission::KeysRead),
        handler: |m| on(m, keys_api::meta),
    },
    CoreRoute {
        method: Method::POST,
        path: "/_/api/keys",
        guard: Guard::Needs(Permission::KeysCreate),
        handler: |m| on(m, keys_api::create),
    },
    CoreRoute {
        method: Method::DELETE,
        path: "/_/api/keys/{id}",
        guard: Guard::Needs(Permission::KeysRevoke),
        handler: |m| on(m, keys_api::revoke),
    },
];

/// Whether `path` is a core route's: under `/_/api/`, or one of the
/// table's other paths. Apps never start with `/_/` or `/.`, so for
/// nearly every request one byte decides.
pub(crate) fn is_core(path: &str) -> bool {
    if !matches!(path.as_bytes().get(1), Some(b'_' | b'.')) {
        return false;
    }
    path.starts_with(API_PREFIX) || CORE_ROUTES.iter().any(|r| r.path == path)
}

/// Whether `path` matches the table's `pattern` as the router matches it:
/// `{name}` one non-empty segment, `{*name}` the non-empty rest.
fn matches(pattern: &str, path: &str) -> bool {
    let Some(open) = pattern.find('{') else {
        return pattern == path;
    };
    let Some(rest) = path.strip_prefix(&pattern[..open]) else {
        return false;
    };
    if pattern[open..].starts_with("{*") {
        !rest.is_empty()
    } else {
        !rest.is_empty() && !rest.contains('/')
    }
}

/// The guard of the core route the router serves `method path` with:
/// `None` when no route has that path (the router's fallback, the plugin
/// chain, answers it), `Guard::Public` when the path has routes but none
/// for the method (the router's `405` reveals nothing). `HEAD` is served by
/// `GET` routes.
pub(crate) fn guard_of(method: &Method, path: &str) -> Option<Guard> {
    let mut found = None;
    for r in CORE_ROUTES.iter().filter(|r| matches(r.path, path)) {
        if r.method == method || (r.method == Method::GET && method == Method::HEAD) {
            return Some(r.guard);
        }
        found = Some(Guard::Public);
    }
    found
}

/// The router of the core routes, each behind its guard, with the plugin
/// chain as the fallback (for unknown paths under `/_/api/`).
pub(crate) fn core_router(state: AppState) -> Router {
    let mut router = Router::new();
    for r in CORE_ROUTES {
        let Ok(filter) = MethodFilter::try_from(r.method.clone()) else {
            continue;
        };
        let mut route = (r.handler)(filter);
        if r.guard != Guard::Public {
            route = route.route_layer(axum::middleware::from_fn_with_state(
                (state.clone(), r.guard),
                guard::core_route,
            ));
        }
        router = router.route(r.path, route);
    }
    router
        .fallback(pipeline::handle)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_id::layer,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_routes_and_everything_else() {
        for core in [
            "/_/api/health",
            "/_/api/health/live",
            "/_/api/apps",
            "/_/api/plugins",
            "/_/api/plugins/reload",
            "/_/api/keys/7",
            "/_/metrics",
            "/_/stats",
            "/_/sse",
            "/.well-known/buntime",
        ] {
            assert!(is_core(core), "{core}");
        }
        for chain in [
            "/",
            "/hello/",
            "/_/keyval/x",
            "/_/metrics/x",
            "/_/api",
            "/_x",
        ] {
            assert!(!is_core(chain), "{chain}");
        }
    }

    #[test]
    fn guards_by_method_and_path() {
        let get = Method::GET;
        assert_eq!(guard_of(&get, "/_/api/health"), Some(Guard::Public));
        assert_eq!(
            guard_of(&Method::HEAD, "/_/stats"),
            Some(Guard::Needs(Permission::WorkersRead))
        );
        assert_eq!(guard_of(&Method::OPTIONS, "/_/stats"), Some(Guard::Public));
        assert_eq!(guard_of(&get, "/_/metrics"), Some(Guard::Metrics));
        assert_eq!(
            guard_of(&Method::DELETE, "/_/api/keys/7"),
            Some(Guard::Needs(Permission::KeysRevoke))
        );
        assert_eq!(
            guard_of(&Method::POST, "/_/api/plugins/@a/b/reload"),
            Some(Guard::Needs(Permission::PluginsConfig))
        );
        for fallback in [
            "/_/api/nope",
            "/_/api/keys/7/x",
            "/_/api/plugins/",
            "/_/api/health/",
        ] {
            assert_eq!(guard_of(&get, fallback), None, "{fallback}");
        }
    }

    #[test]
    fn the_table_is_well_formed() {
        for r in CORE_ROUTES {
            assert!(
                MethodFilter::try_from(r.method.clone()).is_ok(),
                "{}",
                r.path
            );
            // Outside the API prefix a path is compared whole by `is_core`.
            assert!(
                r.path.starts_with(API_PREFIX) || !r.path.contains('{'),
                "{}",
                r.path
            );
            assert!(is_core(r.path) || r.path.contains('{'), "{}", r.path);
        }
    }
}
